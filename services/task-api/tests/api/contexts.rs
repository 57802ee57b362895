//! Servers, platforms, clients and sites: save, read, list, delete, and every refusal.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

fn master() -> serde_json::Value {
    json!({
        "remote_host": "localhost",
        "http": {"service_type": "nginx", "port": 80},
        "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306, "admin_user": "root", "admin_password": "s3cret-pw"}
    })
}

#[tokio::test]
async fn servers_are_saved_read_listed_and_deleted() {
    let app = TestApp::spawn().await;

    let (status, created) = app.put("/api/v1/servers/server_master", master()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "server_master");
    assert_eq!(created["context"], "@server_master");
    assert_eq!(created["http"], json!({"service_type": "nginx", "port": 80, "version": null}));
    assert_eq!(created["db"]["admin_password_set"], true);
    assert_eq!(created["status"], "new");
    assert_eq!(created["verified_at"], serde_json::Value::Null);

    // Defaults: remote_host `localhost`, db.host = remote_host, db.port 3306, no http.
    let (status, db_only) = app
        .put(
            "/api/v1/servers/server_db1",
            json!({"remote_host": "db1.example.com", "db": {"service_type": "mysql", "admin_user": "admin"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{db_only}");
    assert_eq!(db_only["http"], serde_json::Value::Null);
    assert_eq!(db_only["db"]["host"], "db1.example.com");
    assert_eq!(db_only["db"]["port"], 3306);
    assert_eq!(db_only["db"]["admin_password_set"], false);

    // An update without the password keeps the stored one.
    let mut update = master();
    update["db"].as_object_mut().unwrap().remove("admin_password");
    update["http"]["port"] = json!(8080);
    let (status, updated) = app.put("/api/v1/servers/server_master", update).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["http"]["port"], 8080);
    assert_eq!(updated["db"]["admin_password_set"], true);
    assert_eq!(updated["created_at"], created["created_at"]);
    let stored: String = sqlx::query_scalar("SELECT db_admin_password FROM servers WHERE name = 'server_master'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "s3cret-pw");

    let (status, one) = app.get("/api/v1/servers/server_master").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, updated);

    let (status, list) = app.get("/api/v1/servers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 2);
    let names: Vec<_> = list["items"].as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, [json!("server_db1"), json!("server_master")]);
    let (_, page) = app.get("/api/v1/servers?limit=1&offset=1").await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "server_master");

    for path in ["/api/v1/servers", "/api/v1/servers/server_master"] {
        let text = app.get_text(path).await;
        assert!(!text.contains("s3cret-pw") && !text.contains("admin_password\""), "{path} shows the password: {text}");
    }

    let (status, _) = app.delete("/api/v1/servers/server_db1").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(&app.get("/api/v1/servers/server_db1").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_error(&app.delete("/api/v1/servers/server_db1").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.count("servers").await, 1);

    app.stop().await;
}

#[tokio::test]
async fn bad_servers_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let with = |edit: fn(&mut serde_json::Value)| {
        let mut body = master();
        edit(&mut body);
        body
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = [
        ("/api/v1/servers/..%2Fetc", master(), "name"),
        ("/api/v1/servers/server_Bad", master(), "name"),
        ("/api/v1/servers/server_a.b", master(), "name"),
        ("/api/v1/servers/server_x", with(|b| b["http"]["service_type"] = json!("lighttpd")), "http.service_type"),
        ("/api/v1/servers/server_x", with(|b| b["http"] = json!({"port": 80})), "http.service_type"),
        ("/api/v1/servers/server_x", with(|b| b["http"]["port"] = json!("80")), "http.port"),
        ("/api/v1/servers/server_x", with(|b| b["db"]["port"] = json!(0)), "db.port"),
        ("/api/v1/servers/server_x", with(|b| b["db"]["port"] = json!(70000)), "db.port"),
        ("/api/v1/servers/server_x", with(|b| b["db"]["service_type"] = json!("postgres")), "db.service_type"),
        ("/api/v1/servers/server_x", with(|b| b["db"]["host"] = json!("db host; rm -rf /")), "db.host"),
        ("/api/v1/servers/server_x", with(|b| b["db"]["admin_user"] = json!("root'--")), "db.admin_user"),
        ("/api/v1/servers/server_x", with(|b| b["db"].as_object_mut().unwrap().clear()), "db.service_type"),
        (
            "/api/v1/servers/server_x",
            with(|b| drop(b["db"].as_object_mut().unwrap().remove("admin_user"))),
            "db.admin_user",
        ),
        ("/api/v1/servers/server_x", with(|b| b["db"]["admin_password"] = json!(42)), "db.admin_password"),
        ("/api/v1/servers/server_x", with(|b| b["remote_host"] = json!("$(id)")), "remote_host"),
        ("/api/v1/servers/server_x", with(|b| b["colour"] = json!("blue")), "colour"),
        ("/api/v1/servers/server_x", with(|b| b["http"]["ssl"] = json!(true)), "http.ssl"),
        ("/api/v1/servers/server_x", with(|b| b["http"] = json!("nginx")), "http"),
    ];
    for (path, body, field) in cases {
        let answer = app.put(path, body.clone()).await;
        assert_error(&answer, unprocessable, "invalid_field", Some(field));
        if field == "http.service_type" && body["http"]["service_type"] == "lighttpd" {
            let message = answer.1["error"]["message"].as_str().unwrap();
            assert!(message.contains("lighttpd") && message.contains("nginx"), "{message}");
        }
    }
    assert_error(
        &app.put_raw("/api/v1/servers/server_x", "{not json").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &app.put_raw("/api/v1/servers/server_x", "[1, 2]").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(&app.get("/api/v1/servers/server_X").await, unprocessable, "invalid_field", Some("name"));
    assert_error(&app.get("/api/v1/servers?limit=501").await, unprocessable, "invalid_field", Some("limit"));
    assert_error(&app.get("/api/v1/servers?offset=-1").await, unprocessable, "invalid_field", Some("offset"));
    assert_error(&app.get("/api/v1/servers?sort=name").await, unprocessable, "invalid_field", Some("sort"));

    assert_eq!(app.count("servers").await, 0);
    let (_, list) = app.get("/api/v1/servers").await;
    assert_eq!(list, json!({"items": [], "total": 0}));
    app.stop().await;
}

#[tokio::test]
async fn web_servers_name_a_dns_server_that_offers_dns() {
    let app = TestApp::spawn().await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let web = |dns_server: &str| json!({"http": {"service_type": "nginx"}, "dns_server": dns_server});

    let answer = app.put("/api/v1/servers/server_web1", web("@server_ns1")).await;
    assert_error(&answer, unprocessable, "invalid_field", Some("dns_server"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("does not exist"), "{}", answer.1);
    let (status, _) =
        app.put("/api/v1/servers/server_db1", json!({"db": {"service_type": "mysql", "admin_user": "a"}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let answer = app.put("/api/v1/servers/server_web1", web("@server_db1")).await;
    assert_error(&answer, unprocessable, "invalid_field", Some("dns_server"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("offers no dns service"), "{}", answer.1);
    let answer = app.put("/api/v1/servers/server_web1", web("@server_web1")).await;
    assert_error(&answer, unprocessable, "invalid_field", Some("dns_server"));
    let answer = app.put("/api/v1/servers/server_ns1", json!({"dns": {"service_type": "powerdns"}})).await;
    assert_error(&answer, unprocessable, "invalid_field", Some("dns.service_type"));
    assert_error(
        &app.put("/api/v1/servers/server_web1", web("platform_x")).await,
        unprocessable,
        "invalid_field",
        Some("dns_server"),
    );

    let (status, ns) = app
        .put("/api/v1/servers/server_ns1", json!({"remote_host": "ns1.example.net", "dns": {"service_type": "bind"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ns}");
    assert_eq!(ns["dns"], json!({"service_type": "bind", "version": null}));
    assert_eq!(ns["dns_server"], "@server_ns1", "a server with dns keeps its own sites' records");
    let (status, web1) = app.put("/api/v1/servers/server_web1", web("@server_ns1")).await;
    assert_eq!(status, StatusCode::CREATED, "{web1}");
    assert_eq!(web1["dns"], serde_json::Value::Null);
    assert_eq!(web1["dns_server"], "@server_ns1");
    let (_, db1) = app.get("/api/v1/servers/server_db1").await;
    assert_eq!(db1["dns_server"], serde_json::Value::Null);

    // The name server stays one while a web server names it.
    let answer = app.put("/api/v1/servers/server_ns1", json!({"remote_host": "ns1.example.net"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("dns"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("@server_web1"), "{}", answer.1);
    assert_error(&app.delete("/api/v1/servers/server_ns1").await, StatusCode::CONFLICT, "conflict", None);
    let (status, _) = app.put("/api/v1/servers/server_web1", json!({"http": {"service_type": "nginx"}})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.delete("/api/v1/servers/server_ns1").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.stop().await;
}

#[tokio::test]
async fn platforms_live_on_web_servers_below_the_platform_roots() {
    let app = TestApp::spawn().await;
    assert_eq!(app.put("/api/v1/servers/server_master", master()).await.0, StatusCode::CREATED);
    let db_only = json!({"db": {"service_type": "mariadb", "admin_user": "root"}});
    assert_eq!(app.put("/api/v1/servers/server_dbonly", db_only).await.0, StatusCode::CREATED);

    // `web_server` defaults to @server_master.
    let (status, wp) = app.put("/api/v1/platforms/platform_wp", json!({"root": "/var/aegir/platforms/wp"})).await;
    assert_eq!(status, StatusCode::CREATED, "{wp}");
    assert_eq!(wp["context"], "@platform_wp");
    assert_eq!(wp["web_server"], "@server_master");
    assert_eq!(wp["platform_type"], serde_json::Value::Null);
    assert_eq!(wp["status"], "new");
    let (status, moved) = app
        .put("/api/v1/platforms/platform_wp", json!({"root": "/srv/platforms/wp", "web_server": "@server_master"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["root"], "/srv/platforms/wp");
    assert_eq!(app.get("/api/v1/platforms/platform_wp").await.1, moved);

    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let refused = [
        ("platform_x", json!({"root": "/etc/passwd"}), unprocessable, "invalid_field", "root"),
        ("platform_x", json!({"root": "/var/aegir/platforms"}), unprocessable, "invalid_field", "root"),
        ("platform_x", json!({"root": "/var/aegir/platforms/../../etc"}), unprocessable, "invalid_field", "root"),
        ("platform_x", json!({"root": "var/aegir/platforms/x"}), unprocessable, "invalid_field", "root"),
        ("platform_x", json!({"root": 7}), unprocessable, "invalid_field", "root"),
        ("platform_x", json!({}), unprocessable, "invalid_field", "root"),
        (
            "platform_x",
            json!({"root": "/var/aegir/platforms/x", "web_server": "@server_nope"}),
            StatusCode::NOT_FOUND,
            "not_found",
            "web_server",
        ),
        (
            "platform_x",
            json!({"root": "/var/aegir/platforms/x", "web_server": "@server_dbonly"}),
            unprocessable,
            "invalid_field",
            "web_server",
        ),
        (
            "platform_x",
            json!({"root": "/var/aegir/platforms/x", "web_server": "@platform_wp"}),
            unprocessable,
            "invalid_field",
            "web_server",
        ),
        (
            "platform_x",
            json!({"root": "/var/aegir/platforms/x", "web_server": "@Server"}),
            unprocessable,
            "invalid_field",
            "web_server",
        ),
        (
            "platform_x",
            json!({"root": "/var/aegir/platforms/x", "makefile": "x.make"}),
            unprocessable,
            "invalid_field",
            "makefile",
        ),
        ("platform_x", json!({"root": "/srv/platforms/wp"}), StatusCode::CONFLICT, "conflict", "root"),
        ("Platform_x", json!({"root": "/var/aegir/platforms/x"}), unprocessable, "invalid_field", "name"),
    ];
    for (name, body, status, code, field) in refused {
        let answer = app.put(&format!("/api/v1/platforms/{name}"), body).await;
        assert_error(&answer, status, code, Some(field));
    }
    assert_eq!(app.count("platforms").await, 1);
    assert_error(&app.get("/api/v1/platforms/platform_x").await, StatusCode::NOT_FOUND, "not_found", None);

    // The platform keeps its web server.
    assert_error(&app.delete("/api/v1/servers/server_master").await, StatusCode::CONFLICT, "conflict", None);
    let mut no_http = master();
    no_http.as_object_mut().unwrap().remove("http");
    assert_error(
        &app.put("/api/v1/servers/server_master", no_http).await,
        StatusCode::CONFLICT,
        "conflict",
        Some("http"),
    );
    assert_eq!(app.get("/api/v1/servers/server_master").await.1["http"]["service_type"], "nginx");

    let (_, list) = app.get("/api/v1/platforms").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "platform_wp");
    assert_eq!(app.delete("/api/v1/platforms/platform_wp").await.0, StatusCode::NO_CONTENT);
    assert_error(&app.delete("/api/v1/platforms/platform_wp").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.delete("/api/v1/servers/server_master").await.0, StatusCode::NO_CONTENT);
    app.stop().await;
}

#[tokio::test]
async fn clients_and_sites() {
    let app = TestApp::spawn().await;
    let (status, acme) =
        app.put("/api/v1/clients/acme", json!({"title": "Acme Ltd", "email": "ops@acme.example"})).await;
    assert_eq!(status, StatusCode::CREATED, "{acme}");
    assert_eq!(acme["name"], "acme");
    assert_eq!(acme["title"], "Acme Ltd");
    let (status, bare) = app.put("/api/v1/clients/acme", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bare["title"], serde_json::Value::Null);
    assert_eq!(app.put("/api/v1/clients/zeta", json!({"email": "z@z.example"})).await.0, StatusCode::CREATED);
    let (_, list) = app.get("/api/v1/clients?limit=1").await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["name"], "acme");
    assert_eq!(app.get("/api/v1/clients/zeta").await.1["email"], "z@z.example");

    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let refused = [
        ("acme", json!({"email": "no-at-sign"}), "email"),
        ("acme", json!({"title": "t".repeat(201)}), "title"),
        ("acme", json!({"title": ["x"]}), "title"),
        ("acme", json!({"phone": "123"}), "phone"),
        ("Acme Ltd", json!({}), "name"),
        ("_acme", json!({}), "name"),
    ];
    for (name, body, field) in refused {
        assert_error(
            &app.put(&format!("/api/v1/clients/{name}"), body).await,
            unprocessable,
            "invalid_field",
            Some(field),
        );
    }
    assert_eq!(app.get("/api/v1/clients/acme").await.1, bare);

    assert_eq!(app.delete("/api/v1/clients/zeta").await.0, StatusCode::NO_CONTENT);
    assert_error(&app.get("/api/v1/clients/zeta").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.count("clients").await, 1);

    assert_eq!(app.get("/api/v1/sites").await, (StatusCode::OK, json!({"items": [], "total": 0})));
    assert_error(&app.get("/api/v1/sites/www.example.com").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_error(&app.get("/api/v1/sites/Example.com").await, unprocessable, "invalid_field", Some("uri"));
    app.stop().await;
}
