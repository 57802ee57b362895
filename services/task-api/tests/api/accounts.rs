//! Accounts: tokens on every route, a client user's view limited to its client's sites
//! and granted platforms (another client's site answers 404 and stays as it was), password
//! logins, token revocation and the audit log.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, client_with_token};
use crate::sites::{full_site, put_ok, setup};

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A client user of `client` with a password, and an API token of it.
async fn client_user(app: &TestApp, name: &str, client: &str) -> String {
    put_ok(
        app,
        &format!("/api/v1/users/{name}"),
        json!({"role": "client", "client": client, "password": "correct horse battery"}),
    )
    .await;
    let (status, token) = app.post(&format!("/api/v1/users/{name}/tokens"), json!({"name": "script"})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    token["token"].as_str().unwrap().to_owned()
}

/// What a client user must not change: the other client's site, its tasks, and the counts.
async fn snapshot(app: &TestApp, uri: &str, task: &str) -> (Value, Value, i64, i64, i64) {
    let (_, site) = app.get(&format!("/api/v1/sites/{uri}")).await;
    let (_, task) = app.get(&format!("/api/v1/tasks/{task}")).await;
    (site, task, app.count("sites").await, app.count("tasks").await, app.count("batches").await)
}

#[tokio::test]
async fn a_client_user_sees_and_acts_only_on_its_clients_sites() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    put_ok(&app, "/api/v1/clients/globex", json!({"title": "Globex"})).await;
    put_ok(&app, "/api/v1/platforms/platform_other", json!({"root": "/var/aegir/platforms/other"})).await;
    let mut mine = full_site();
    mine["client"] = json!("acme");
    mine.as_object_mut().unwrap().remove("aliases");
    put_ok(&app, "/api/v1/sites/mine.acme.test", mine.clone()).await;
    let mut theirs = mine;
    theirs["client"] = json!("globex");
    put_ok(&app, "/api/v1/sites/theirs.globex.test", theirs.clone()).await;
    let (status, _) = app.put("/api/v1/clients/acme/platforms/platform_wp", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);

    // The other client's task and archive.
    let (status, their_task) =
        app.post("/api/v1/tasks", json!({"context": "@theirs.globex.test", "task": "ping"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{their_task}");
    let their_task = their_task["id"].as_str().unwrap().to_owned();
    let backup = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backups (id, site, archive_site, compression, size, sha256, database_bytes, files_bytes, entries,
                              origin, created_at)
         VALUES ($1, 'theirs.globex.test', 'theirs.globex.test', 'zstd', 1, $2, 0, 0, 1, 'backup', now())",
    )
    .bind(backup)
    .bind("a".repeat(64))
    .execute(&app.pool)
    .await
    .unwrap();

    let token = client_user(&app, "alice", "acme").await;
    let alice = client_with_token(&token);
    let url = |path: &str| app.url(path);
    let before = snapshot(&app, "theirs.globex.test", &their_task).await;

    use reqwest::Method as M;
    let theirs_body = {
        let mut body = theirs.clone();
        body["client"] = json!("acme");
        body
    };
    let not_found: Vec<(M, String, Option<Value>)> = vec![
        (M::GET, "/api/v1/sites/theirs.globex.test".into(), None),
        (M::PUT, "/api/v1/sites/theirs.globex.test".into(), Some(theirs_body)),
        (M::DELETE, "/api/v1/sites/theirs.globex.test".into(), None),
        (M::GET, "/api/v1/sites/theirs.globex.test/backups".into(), None),
        (M::GET, format!("/api/v1/backups/{backup}"), None),
        (M::POST, "/api/v1/tasks".into(), Some(json!({"context": "@theirs.globex.test", "task": "verify"}))),
        (M::POST, "/api/v1/tasks".into(), Some(json!({"context": "@theirs.globex.test", "task": "delete"}))),
        (
            M::POST,
            "/api/v1/tasks".into(),
            Some(json!({"context": "@mine.acme.test", "task": "restore", "backup": backup.to_string()})),
        ),
        (M::GET, format!("/api/v1/tasks/{their_task}"), None),
        (M::GET, format!("/api/v1/tasks/{their_task}/log"), None),
        (M::POST, format!("/api/v1/tasks/{their_task}/cancel"), None),
        (M::GET, "/api/v1/platforms/platform_other".into(), None),
        (M::GET, "/api/v1/clients/globex".into(), None),
    ];
    for (method, path, body) in not_found {
        let (status, answer) = send(&alice, method.clone(), url(&path), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("theirs.globex.test`,"), "{answer}");
        assert!(!answer.to_string().contains("archive of"), "{answer}");
    }
    let forbidden: Vec<(M, &str, Option<Value>)> = vec![
        (M::GET, "/api/v1/servers", None),
        (M::GET, "/api/v1/servers/server_master", None),
        (M::PUT, "/api/v1/servers/server_x", Some(json!({"http": {"service_type": "nginx"}}))),
        (M::DELETE, "/api/v1/servers/server_web", None),
        (M::PUT, "/api/v1/platforms/platform_x", Some(json!({"root": "/var/aegir/platforms/x"}))),
        (M::DELETE, "/api/v1/platforms/platform_other", None),
        (M::PUT, "/api/v1/clients/globex", Some(json!({"title": "Mine now"}))),
        (M::DELETE, "/api/v1/clients/globex", None),
        (M::PUT, "/api/v1/clients/acme/platforms/platform_other", None),
        (M::POST, "/api/v1/batches", Some(json!({"platform": "@platform_other", "task": "verify"}))),
        (M::POST, "/api/v1/tasks", Some(json!({"context": "@platform_wp", "task": "verify"}))),
        (M::GET, "/api/v1/users", None),
        (M::PUT, "/api/v1/users/mallory", Some(json!({"role": "admin", "password": "0123456789ab"}))),
        (M::POST, "/api/v1/users/admin/tokens", Some(json!({"name": "mine"}))),
        (M::GET, "/api/v1/audit", None),
        // A site on a platform not granted to its client, or of another client.
        (
            M::PUT,
            "/api/v1/sites/new.acme.test",
            Some(json!({"platform": "@platform_other", "db_server": "@server_master"})),
        ),
        (
            M::PUT,
            "/api/v1/sites/new.acme.test",
            Some(json!({"platform": "@platform_wp", "db_server": "@server_master", "client": "globex"})),
        ),
    ];
    for (method, path, body) in forbidden {
        let (status, answer) = send(&alice, method.clone(), url(path), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{method} {path}: {answer}");
    }
    assert_eq!(snapshot(&app, "theirs.globex.test", &their_task).await, before, "nothing changed");
    let (_, task) = app.get(&format!("/api/v1/tasks/{their_task}")).await;
    assert_eq!(task["status"], "queued");
    let (status, _) = app.get("/api/v1/sites/new.acme.test").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/api/v1/backups/{backup}")).await;
    assert_eq!(status, StatusCode::OK);

    // Lists hold its client's sites, tasks and platforms only.
    let (status, list) = send(&alice, M::GET, url("/api/v1/sites"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["uri"], "mine.acme.test");
    let (_, list) = send(&alice, M::GET, url("/api/v1/sites?client=globex"), None).await;
    assert_eq!(list["total"], 0, "{list}");
    let (_, list) = send(&alice, M::GET, url("/api/v1/sites?search=globex"), None).await;
    assert_eq!(list["total"], 0, "{list}");
    let (_, list) = send(&alice, M::GET, url("/api/v1/platforms"), None).await;
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!((names, &list["total"]), (vec!["platform_wp"], &json!(1)), "{list}");
    let (_, list) = send(&alice, M::GET, url("/api/v1/clients"), None).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["name"], "acme");
    for query in ["", "?context=@theirs.globex.test", "?context=@platform_wp"] {
        let (status, list) = send(&alice, M::GET, url(&format!("/api/v1/tasks{query}")), None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["total"], 0, "{query}: {list}");
    }

    // Its own: a new site on a granted platform (its client filled in), tasks, reads.
    let (status, site) = send(
        &alice,
        M::PUT,
        url("/api/v1/sites/new.acme.test"),
        Some(json!({"platform": "@platform_wp", "db_server": "@server_master"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{site}");
    assert_eq!(site["client"], "acme");
    let (status, task) =
        send(&alice, M::POST, url("/api/v1/tasks"), Some(json!({"context": "@mine.acme.test", "task": "ping"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let id = task["id"].as_str().unwrap();
    let (status, _) = send(&alice, M::GET, url(&format!("/api/v1/tasks/{id}")), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = send(&alice, M::GET, url("/api/v1/tasks"), None).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], id);
    let (status, cancelled) = send(&alice, M::POST, url(&format!("/api/v1/tasks/{id}/cancel")), None).await;
    assert!(status.is_success(), "{status} {cancelled}");
    let (status, site) = send(&alice, M::GET, url("/api/v1/sites/mine.acme.test"), None).await;
    assert_eq!((status, &site["uri"]), (StatusCode::OK, &json!("mine.acme.test")));
    let (status, _) = send(&alice, M::DELETE, url("/api/v1/sites/new.acme.test"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A batch takes its client's sites only; another's batch is not found.
    sqlx::query("UPDATE sites SET status = 'enabled'").execute(&app.pool).await.unwrap();
    let (status, theirs_batch) =
        app.post("/api/v1/batches", json!({"platform": "@platform_wp", "task": "verify"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{theirs_batch}");
    assert_eq!(theirs_batch["summary"]["total"], 2, "{theirs_batch}");
    let (status, batch) =
        send(&alice, M::POST, url("/api/v1/batches"), Some(json!({"platform": "@platform_wp", "task": "verify"})))
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    assert_eq!(batch["summary"]["total"], 1, "{batch}");
    let sites: Vec<String> = sqlx::query_scalar("SELECT site FROM batch_items WHERE batch_id = $1")
        .bind(Uuid::parse_str(batch["id"].as_str().unwrap()).unwrap())
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(sites, ["mine.acme.test"]);
    let (status, _) =
        send(&alice, M::GET, url(&format!("/api/v1/batches/{}", batch["id"].as_str().unwrap())), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) =
        send(&alice, M::GET, url(&format!("/api/v1/batches/{}", theirs_batch["id"].as_str().unwrap())), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    // Refused attempts are in the audit log too, with who made them.
    let (_, audit) = app.get("/api/v1/audit?user=alice&limit=200").await;
    let refused = audit["items"].as_array().unwrap().iter().any(|r| {
        r["action"] == "DELETE /api/v1/sites/{uri}"
            && r["target"] == "/api/v1/sites/theirs.globex.test"
            && r["status"] == 404
    });
    assert!(refused, "{audit}");
    let (status, me) = send(&alice, M::GET, url("/api/v1/me"), None).await;
    assert_eq!(
        (status, &me["user"], &me["role"], &me["client"]),
        (StatusCode::OK, &json!("alice"), &json!("client"), &json!("acme"))
    );
    app.stop().await;
}

#[tokio::test]
async fn every_api_route_but_the_login_needs_a_token() {
    let app = TestApp::spawn().await;
    let anonymous = reqwest::Client::new();
    let sites_before = app.count("sites").await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/sites"),
        (reqwest::Method::GET, "/api/v1/servers"),
        (reqwest::Method::PUT, "/api/v1/clients/acme"),
        (reqwest::Method::PUT, "/api/v1/sites/www.example.com"),
        (reqwest::Method::POST, "/api/v1/tasks"),
        (reqwest::Method::GET, "/api/v1/users"),
        (reqwest::Method::GET, "/api/v1/audit"),
    ] {
        let (status, answer) = send(&anonymous, method.clone(), app.url(path), Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
        assert!(answer["error"]["message"].as_str().unwrap().contains("Authorization: Bearer"), "{answer}");
    }
    // The token task-api wrote at start is an admin's.
    assert!(app.admin_token.starts_with("aegir_"));
    let (_, me) = app.get("/api/v1/me").await;
    assert_eq!((&me["user"], &me["role"]), (&json!("admin"), &json!("admin")));
    let wrong = client_with_token("aegir_0000");
    let (status, _) = send(&wrong, reqwest::Method::GET, app.url("/api/v1/sites"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("clients").await, 0);
    assert_eq!(app.count("sites").await, sites_before);
    let doc: Value = anonymous.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{}", doc["components"]);
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/api/v1/login"]["post"]["security"], json!([]));
    for (path, method) in
        [("/api/v1/users/{name}", "put"), ("/api/v1/users/{name}/tokens", "post"), ("/api/v1/audit", "get")]
    {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is missing from the OpenAPI document");
    }
    for path in ["/healthz", "/api/openapi.json", "/metrics"] {
        let response = anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn passwords_log_in_tokens_are_revoked_and_the_audit_log_says_who_did_what_from_where() {
    let app = TestApp::spawn().await;
    put_ok(&app, "/api/v1/clients/acme", json!({"title": "Acme"})).await;
    let script_token = client_user(&app, "bob", "acme").await;
    let anonymous = reqwest::Client::new();
    let login = |password: &str| {
        anonymous.post(app.url("/api/v1/login")).json(&json!({"user": "bob", "password": password})).send()
    };

    // A forged X-Forwarded-For is not believed (no proxy is trusted here).
    let refused = anonymous
        .post(app.url("/api/v1/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"user": "bob", "password": "wrong horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "unauthorized");
    let unknown = anonymous
        .post(app.url("/api/v1/login"))
        .json(&json!({"user": "nobody", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    let accepted = login("correct horse battery").await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    let cookie = accepted.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("aegir_session=aegir_") && cookie.contains("HttpOnly"), "{cookie}");
    let session: Value = accepted.json().await.unwrap();
    assert_eq!(
        (&session["user"], &session["role"], &session["client"]),
        (&json!("bob"), &json!("client"), &json!("acme"))
    );
    let session_token = session["token"].as_str().unwrap().to_owned();
    let (status, me) =
        send(&client_with_token(&session_token), reqwest::Method::GET, app.url("/api/v1/me"), None).await;
    assert_eq!((status, &me["user"]), (StatusCode::OK, &json!("bob")));
    let by_cookie =
        anonymous.get(app.url("/api/v1/me")).header("cookie", cookie.split(';').next().unwrap()).send().await.unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);

    // Revoked tokens and disabled users are refused.
    let script = client_with_token(&script_token);
    let (status, _) = send(&script, reqwest::Method::GET, app.url("/api/v1/me"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, tokens) = app.get("/api/v1/users/bob/tokens").await;
    let script_id = tokens["items"].as_array().unwrap().iter().find(|t| t["name"] == "script").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tokens["items"][0]["last_used_at"].is_string(), "{tokens}");
    // Written at most once a minute, so a client's requests do not queue on the token's row.
    let last_used = |tokens: &Value| {
        let items = tokens["items"].as_array().unwrap();
        items.iter().find(|t| t["id"] == script_id.as_str()).unwrap()["last_used_at"].clone()
    };
    let first_use = last_used(&tokens);
    assert!(first_use.is_string(), "{tokens}");
    let (status, _) = send(&script, reqwest::Method::GET, app.url("/api/v1/me"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = app.get("/api/v1/users/bob/tokens").await;
    assert_eq!(last_used(&again), first_use, "a second use within the minute writes nothing");
    assert!(!tokens.to_string().contains(&script_token), "a token is shown once only");
    let (status, _) = app.delete(&format!("/api/v1/users/bob/tokens/{script_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&script, reqwest::Method::GET, app.url("/api/v1/me"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    put_ok(&app, "/api/v1/users/bob", json!({"role": "client", "client": "acme", "disabled": true})).await;
    let (status, _) = send(&client_with_token(&session_token), reqwest::Method::GET, app.url("/api/v1/me"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(login("correct horse battery").await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Only hashes are stored.
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT token_hash, prefix FROM api_tokens").fetch_all(&app.pool).await.unwrap();
    for (hash, prefix) in &stored {
        assert!(hash.len() == 64 && hash != &script_token && hash != &session_token);
        assert_eq!(prefix.len(), 12);
    }
    let password: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'bob'").fetch_one(&app.pool).await.unwrap();
    assert!(password.starts_with("$argon2id$"), "{password}");

    // The audit log: who, what, on what, the outcome, from where; newest first, by pages.
    let (status, audit) = app.get("/api/v1/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    let row = |action: &str, status: i64| {
        rows.iter()
            .find(|r| r["action"] == action && r["status"] == status)
            .unwrap_or_else(|| panic!("no {action} {status}: {audit}"))
    };
    let created = row("PUT /api/v1/users/{name}", 201);
    assert_eq!((&created["user"], &created["target"]), (&json!("admin"), &json!("/api/v1/users/bob")));
    assert_eq!(created["remote_addr"], "127.0.0.1");
    assert!(created["token_id"].is_string() && created["at"].is_string());
    let failed = row("POST /api/v1/login", 401);
    assert_eq!((&failed["user"], &failed["target"]), (&Value::Null, &json!("user bob")));
    assert_eq!(failed["remote_addr"], "127.0.0.1");
    assert_eq!(row("POST /api/v1/login", 200)["user"], "bob");
    row("DELETE /api/v1/users/{name}/tokens/{id}", 204);
    assert!(!audit.to_string().contains(&session_token) && !audit.to_string().contains("correct horse"));
    let (_, first) = app.get("/api/v1/audit?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_i64().unwrap();
    let (_, second) = app.get(&format!("/api/v1/audit?limit=2&before={next}")).await;
    assert!(second["items"][0]["id"].as_i64().unwrap() < next);
    app.stop().await;
}

#[tokio::test]
async fn a_user_whose_password_is_guessed_at_is_refused_for_a_while() {
    let app = TestApp::spawn().await;
    put_ok(&app, "/api/v1/users/carol", json!({"role": "admin", "password": "correct horse battery"})).await;
    let anonymous = reqwest::Client::new();
    let login = |password: &'static str| {
        anonymous.post(app.url("/api/v1/login")).json(&json!({"user": "carol", "password": password})).send()
    };
    for _ in 0..10 {
        assert_eq!(login("guess").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let refused = login("correct horse battery").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let answer: Value = refused.json().await.unwrap();
    assert!(answer["error"]["message"].as_str().unwrap().contains("wait"), "{answer}");
    // Other users log in as before.
    put_ok(&app, "/api/v1/users/dave", json!({"role": "admin", "password": "correct horse battery"})).await;
    let dave = anonymous
        .post(app.url("/api/v1/login"))
        .json(&json!({"user": "dave", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dave.status(), StatusCode::OK);
    app.stop().await;
}
