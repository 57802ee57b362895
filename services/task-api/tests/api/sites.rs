//! Sites: save, read, list, search, delete, every refusal, the tasks a site's status
//! allows, and what finished tasks and verify reports do to sites and platforms.

use aegir_contract::{Package, PackageKind, PlatformType, ProfileName, StepFacts, TaskOutcome, TaskTarget};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, log_line, step_succeeded, task_finished};

const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

pub(crate) async fn put_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, view) = app.put(path, body).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "PUT {path}: {status} {view}");
    view
}

pub(crate) fn package(name: &str, kind: PackageKind, version: Option<&str>) -> Package {
    Package { name: name.to_owned(), kind, version: version.map(str::to_owned) }
}

/// Queues `task` on `context` and returns its id, taking its `TaskRequested` off the queue.
pub(crate) async fn request(app: &TestApp, context: &str, task: &str) -> (Uuid, TaskTarget) {
    let (status, view) = app.post("/api/v1/tasks", json!({"context": context, "task": task})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task} {context}: {view}");
    assert_eq!(view["task"], task);
    let id: Uuid = view["id"].as_str().unwrap().parse().unwrap();
    let (requested, _) = app.next_task_request().await;
    assert_eq!(requested.task_id, id);
    (id, requested.target)
}

/// Ends a task as the scheduler would, and waits until task-api has stored it.
pub(crate) async fn finish(app: &TestApp, id: Uuid, outcome: TaskOutcome) {
    let reason = (outcome == TaskOutcome::Failed).then_some("the installer exited with status 1");
    app.publish(&task_finished(id, outcome, reason)).await;
    app.task_reaches(id, outcome.as_str()).await;
}

/// `@server_master` (web and db), `@server_web` (web only), client `acme`, and
/// `@platform_wp` verified as WordPress on the master, with the profiles and packages
/// its verify reported.
pub(crate) async fn setup(app: &TestApp) {
    put_ok(
        app,
        "/api/v1/servers/server_master",
        json!({"http": {"service_type": "nginx"},
               "db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "secret"}}),
    )
    .await;
    put_ok(
        app,
        "/api/v1/servers/server_web",
        json!({"remote_host": "web1.example.net", "http": {"service_type": "nginx"}}),
    )
    .await;
    put_ok(app, "/api/v1/clients/acme", json!({"title": "Acme", "email": "ops@acme.example"})).await;
    put_ok(app, "/api/v1/platforms/platform_wp", json!({"root": "/var/aegir/platforms/wp"})).await;

    let (id, _) = request(app, "@platform_wp", "verify").await;
    let facts = StepFacts {
        platform_type: Some(PlatformType::Wordpress),
        app_version: Some("6.4.2".to_owned()),
        profiles: Some(vec![ProfileName::parse("standard").unwrap(), ProfileName::parse("minimal").unwrap()]),
        packages: Some(vec![package("wordpress", PackageKind::Core, Some("6.4.2"))]),
        ..StepFacts::default()
    };
    app.publish(&step_succeeded(id, 0, "server_master.http", facts)).await;
    finish(app, id, TaskOutcome::Success).await;
}

pub(crate) fn full_site() -> Value {
    json!({
        "platform": "@platform_wp", "db_server": "@server_master", "profile": "standard", "language": "en",
        "aliases": ["example.com"], "redirection": true, "client": "acme", "title": "Example shop",
        "admin_email": "admin@example.com"
    })
}

async fn stored_database(app: &TestApp, uri: &str) -> (String, String, String) {
    sqlx::query_as("SELECT db_name, db_user, db_password FROM sites WHERE uri = $1")
        .bind(uri)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sites_are_saved_read_listed_searched_and_deleted() {
    let app = TestApp::spawn().await;
    setup(&app).await;

    let (_, platform) = app.get("/api/v1/platforms/platform_wp").await;
    assert_eq!(platform["profiles"], json!(["standard", "minimal"]));
    assert_eq!(platform["packages"], json!([{"name": "wordpress", "kind": "core", "version": "6.4.2"}]));

    let (status, site) = app.put("/api/v1/sites/www.example.com", full_site()).await;
    assert_eq!(status, StatusCode::CREATED, "{site}");
    for (key, value) in [
        ("uri", json!("www.example.com")),
        ("context", json!("@www.example.com")),
        ("platform", json!("@platform_wp")),
        ("db_server", json!("@server_master")),
        ("profile", json!("standard")),
        ("language", json!("en")),
        ("aliases", json!(["example.com"])),
        ("redirection", json!(true)),
        ("client", json!("acme")),
        ("title", json!("Example shop")),
        ("admin_email", json!("admin@example.com")),
        ("status", json!("new")),
        ("packages", json!([])),
        ("installed_at", Value::Null),
    ] {
        assert_eq!(site[key], value, "{key} in {site}");
    }

    // The database account is generated once and kept across updates.
    let (db_name, db_user, password) = stored_database(&app, "www.example.com").await;
    assert!(db_name.starts_with("www_example_com_") && db_name.len() == "www_example_com_".len() + 6, "{db_name}");
    assert_eq!(db_user, db_name);
    assert!(password.len() == 32 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
    let mut update = full_site();
    update["title"] = json!("Example store");
    let (status, updated) = app.put("/api/v1/sites/www.example.com", update).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["title"], "Example store");
    assert_eq!(updated["created_at"], site["created_at"]);
    assert_eq!(stored_database(&app, "www.example.com").await, (db_name, db_user, password.clone()));

    // Defaults: db server = the platform's web server, `en`, title = uri, the client's address.
    let (status, shop) =
        app.put("/api/v1/sites/shop.example.org", json!({"platform": "@platform_wp", "client": "acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{shop}");
    assert_eq!(shop["db_server"], "@server_master");
    assert_eq!(shop["language"], "en");
    assert_eq!(shop["title"], "shop.example.org");
    assert_eq!(shop["admin_email"], "ops@acme.example");
    assert_eq!(shop["aliases"], json!([]));
    assert_eq!(shop["redirection"], false);
    assert_eq!(shop["profile"], Value::Null);
    let (_, blog) = app.put("/api/v1/sites/blog.example.net", json!({"platform": "@platform_wp"})).await;
    assert_eq!(blog["admin_email"], "webmaster@blog.example.net");
    assert_eq!(blog["client"], Value::Null);

    let (status, one) = app.get("/api/v1/sites/www.example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, updated);
    for path in ["/api/v1/sites", "/api/v1/sites/www.example.com", "/api/v1/sites?search=www"] {
        let text = app.get_text(path).await;
        assert!(!text.contains(&password) && !text.contains("password"), "{path} shows the password: {text}");
    }

    let uris = |list: &Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|s| s["uri"].as_str().unwrap().to_owned()).collect()
    };
    let (_, all) = app.get("/api/v1/sites").await;
    assert_eq!(all["total"], 3);
    assert_eq!(uris(&all), ["blog.example.net", "shop.example.org", "www.example.com"]);
    for (query, expected) in [
        ("client=acme", &["shop.example.org", "www.example.com"][..]),
        ("platform=@platform_wp&status=new", &["blog.example.net", "shop.example.org", "www.example.com"]),
        ("status=enabled", &[]),
        ("search=example.o", &["shop.example.org"]),
        ("search=EXAMPLE.COM", &["www.example.com"]),
        ("search=_", &[]),
        ("search=example&limit=1&offset=1", &["shop.example.org"]),
    ] {
        let (status, list) = app.get(&format!("/api/v1/sites?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {list}");
        assert_eq!(uris(&list), expected, "{query}");
    }
    let (_, page) = app.get("/api/v1/sites?search=example&limit=1&offset=1").await;
    assert_eq!(page["total"], 3);
    for (query, field) in [
        ("status=installed", "status"),
        ("platform=@server_master", "platform"),
        ("client=Acme", "client"),
        ("owner=acme", "owner"),
    ] {
        assert_error(&app.get(&format!("/api/v1/sites?{query}")).await, UNPROCESSABLE, "invalid_field", Some(field));
    }

    // A site that was never installed can simply be forgotten; its alias is free again.
    assert_eq!(app.delete("/api/v1/sites/www.example.com").await.0, StatusCode::NO_CONTENT);
    assert_error(&app.get("/api/v1/sites/www.example.com").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_error(&app.delete("/api/v1/sites/www.example.com").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.count("site_aliases").await, 0);
    let (_, reused) = app
        .put("/api/v1/sites/blog.example.net", json!({"platform": "@platform_wp", "aliases": ["example.com"]}))
        .await;
    assert_eq!(reused["aliases"], json!(["example.com"]));
    assert_eq!(app.count("sites").await, 2);

    // Sites keep their platform, db server and client from going.
    assert_eq!(app.delete("/api/v1/platforms/platform_wp").await.0, StatusCode::CONFLICT);
    assert_eq!(app.delete("/api/v1/clients/acme").await.0, StatusCode::CONFLICT);
    app.stop().await;
}

fn uris_of(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|s| s["uri"].as_str().unwrap().to_owned()).collect()
}

/// Sites per platform, client and status.
type Counts = Vec<(String, Option<String>, String, i64)>;

/// The counts the list's `total` reads, next to the sites themselves.
async fn site_counts(app: &TestApp) -> (Counts, Counts) {
    let kept = sqlx::query_as(
        "SELECT platform, client, status, sites FROM site_counts WHERE sites <> 0 ORDER BY platform, client, status",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let counted = sqlx::query_as(
        "SELECT platform, client, status, count(*) FROM sites GROUP BY platform, client, status
         ORDER BY platform, client, status",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    (kept, counted)
}

#[tokio::test]
async fn site_lists_page_by_cursor_and_count_exactly() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let uris: Vec<String> = (0..7).map(|i| format!("a{i}.example.com")).collect();
    for (i, uri) in uris.iter().enumerate() {
        let client = if i % 2 == 0 { json!("acme") } else { Value::Null };
        put_ok(&app, &format!("/api/v1/sites/{uri}"), json!({"platform": "@platform_wp", "client": client})).await;
    }

    // Following `next` walks every site once, in uri order; the last page has none.
    let mut seen = Vec::new();
    let mut path = "/api/v1/sites?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert_eq!(page["total"], 7, "{path}");
        seen.extend(uris_of(&page));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), seen.last().map(String::as_str), "{page}");
                path = format!("/api/v1/sites?limit=3&after={next}");
            }
            None => break,
        }
    }
    assert_eq!((seen, pages), (uris.clone(), 3));

    for (query, expected, next, total) in [
        // A page that ends exactly at the last site has no `next`; one short of it has.
        ("limit=7", &uris.iter().map(String::as_str).collect::<Vec<_>>()[..], None, 7),
        ("limit=2&offset=5", &["a5.example.com", "a6.example.com"], None, 7),
        ("limit=2&offset=4", &["a4.example.com", "a5.example.com"], Some("a5.example.com"), 7),
        ("limit=0", &[], None, 7),
        // The cursor keeps the filters it is given with.
        ("client=acme&limit=2", &["a0.example.com", "a2.example.com"], Some("a2.example.com"), 4),
        ("client=acme&limit=2&after=a2.example.com", &["a4.example.com", "a6.example.com"], None, 4),
        (
            "search=example&limit=2&after=a1.example.com",
            &["a2.example.com", "a3.example.com"],
            Some("a3.example.com"),
            7,
        ),
        // A cursor need not name a site that exists.
        ("limit=1&after=0.example.com", &["a0.example.com"], Some("a0.example.com"), 7),
        ("after=z.example.com", &[], None, 7),
    ] {
        let (status, page) = app.get(&format!("/api/v1/sites?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(uris_of(&page), expected, "{query}");
        // The last page reads as before cursors: no `next` at all.
        assert_eq!(page.get("next").map(|n| n.as_str().unwrap()), next, "{query}: {page}");
        assert_eq!(page["total"], total, "{query}");
    }

    for query in ["after=Not%20a%20uri", "after=", "after=www.example.com%2Fx", "after=a0.example.com&offset=0"] {
        assert_error(&app.get(&format!("/api/v1/sites?{query}")).await, UNPROCESSABLE, "invalid_field", Some("after"));
    }

    // Totals stay exact as sites change status, owner and existence.
    sqlx::query("UPDATE sites SET status = 'enabled' WHERE uri IN ('a1.example.com', 'a2.example.com')")
        .execute(&app.pool)
        .await
        .unwrap();
    put_ok(&app, "/api/v1/sites/a1.example.com", json!({"platform": "@platform_wp", "client": "acme"})).await;
    assert_eq!(app.delete("/api/v1/sites/a3.example.com").await.0, StatusCode::NO_CONTENT);
    // Updates of other columns leave the counts alone.
    sqlx::query("UPDATE sites SET cron_next_at = now()").execute(&app.pool).await.unwrap();
    for (query, total) in [
        ("", 6),
        ("status=enabled", 2),
        ("status=new", 4),
        ("client=acme", 5),
        ("client=acme&status=enabled", 2),
        ("platform=@platform_wp&status=new", 4),
        ("search=a1.", 1),
        ("search=example&status=new", 4),
    ] {
        let (status, page) = app.get(&format!("/api/v1/sites?limit=1&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(page["total"], total, "{query}");
    }
    let (kept, counted) = site_counts(&app).await;
    assert_eq!(kept, counted);
    app.stop().await;
}

#[tokio::test]
async fn bad_sites_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    put_ok(&app, "/api/v1/platforms/platform_new", json!({"root": "/var/aegir/platforms/new"})).await;
    put_ok(
        &app,
        "/api/v1/platforms/platform_web",
        json!({"root": "/var/aegir/platforms/web", "web_server": "@server_web"}),
    )
    .await;
    // Verified (as PHP) on a web server without a database service.
    sqlx::query("UPDATE platforms SET platform_type = 'php' WHERE name = 'platform_web'")
        .execute(&app.pool)
        .await
        .unwrap();
    put_ok(&app, "/api/v1/clients/local", json!({"email": "ops@localhost"})).await;
    put_ok(
        &app,
        "/api/v1/sites/taken.example.com",
        json!({"platform": "@platform_wp", "aliases": ["alias.example.com"]}),
    )
    .await;
    let (sites, aliases) = (app.count("sites").await, app.count("site_aliases").await);

    let long_label = format!("{}.example.com", "a".repeat(64));
    // Valid labels, but longer than a title may be.
    let long_uri = format!("{a}.{a}.example.com", a = "a".repeat(60));
    let wp = |extra: Value| {
        let mut body = json!({"platform": "@platform_wp"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let refused: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        ("Example.com", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("etc%2Fpasswd", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("www.example.com/x", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("www.example.com/x/..%2F..%2Fetc", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("..%2Fetc", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("www..example.com", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("%24(id).example.com", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("a%3Bb.example.com", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        (&long_label, wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("server_x", wp(json!({})), UNPROCESSABLE, "invalid_field", "uri"),
        ("new.example.com", json!({}), UNPROCESSABLE, "invalid_field", "platform"),
        ("new.example.com", json!({"platform": "@server_master"}), UNPROCESSABLE, "invalid_field", "platform"),
        ("new.example.com", json!({"platform": "@platform_nope"}), StatusCode::NOT_FOUND, "not_found", "platform"),
        ("new.example.com", json!({"platform": "@platform_new"}), UNPROCESSABLE, "invalid_field", "platform"),
        ("new.example.com", wp(json!({"db_server": "@server_nope"})), StatusCode::NOT_FOUND, "not_found", "db_server"),
        ("new.example.com", wp(json!({"db_server": "@server_web"})), UNPROCESSABLE, "invalid_field", "db_server"),
        ("new.example.com", wp(json!({"db_server": "@www.example.com"})), UNPROCESSABLE, "invalid_field", "db_server"),
        ("new.example.com", json!({"platform": "@platform_web"}), UNPROCESSABLE, "invalid_field", "db_server"),
        ("new.example.com", wp(json!({"client": "nobody"})), StatusCode::NOT_FOUND, "not_found", "client"),
        ("new.example.com", wp(json!({"client": "Bad Client"})), UNPROCESSABLE, "invalid_field", "client"),
        ("new.example.com", wp(json!({"profile": "commerce"})), UNPROCESSABLE, "invalid_field", "profile"),
        ("new.example.com", wp(json!({"profile": "../x"})), UNPROCESSABLE, "invalid_field", "profile"),
        ("new.example.com", wp(json!({"language": "EN"})), UNPROCESSABLE, "invalid_field", "language"),
        ("new.example.com", wp(json!({"aliases": ["Bad.example.com"]})), UNPROCESSABLE, "invalid_field", "aliases"),
        ("new.example.com", wp(json!({"aliases": ["new.example.com"]})), UNPROCESSABLE, "invalid_field", "aliases"),
        (
            "new.example.com",
            wp(json!({"aliases": ["a.example", "a.example"]})),
            UNPROCESSABLE,
            "invalid_field",
            "aliases",
        ),
        ("new.example.com", wp(json!({"aliases": "a.example"})), UNPROCESSABLE, "invalid_field", "aliases"),
        ("new.example.com", wp(json!({"aliases": [1]})), UNPROCESSABLE, "invalid_field", "aliases"),
        ("new.example.com", wp(json!({"redirection": "yes"})), UNPROCESSABLE, "invalid_field", "redirection"),
        ("new.example.com", wp(json!({"title": "<script>"})), UNPROCESSABLE, "invalid_field", "title"),
        (&long_uri, wp(json!({})), UNPROCESSABLE, "invalid_field", "title"),
        ("new.example.com", wp(json!({"admin_email": "nobody"})), UNPROCESSABLE, "invalid_field", "admin_email"),
        ("intranet", wp(json!({})), UNPROCESSABLE, "invalid_field", "admin_email"),
        ("new.example.com", wp(json!({"client": "local"})), UNPROCESSABLE, "invalid_field", "admin_email"),
        ("new.example.com", wp(json!({"owner": "acme"})), UNPROCESSABLE, "invalid_field", "owner"),
        ("new.example.com", wp(json!({"aliases": ["taken.example.com"]})), StatusCode::CONFLICT, "conflict", "aliases"),
        ("new.example.com", wp(json!({"aliases": ["alias.example.com"]})), StatusCode::CONFLICT, "conflict", "aliases"),
        ("alias.example.com", wp(json!({})), StatusCode::CONFLICT, "conflict", "uri"),
    ];
    for (uri, body, status, code, field) in refused {
        let answer = app.put(&format!("/api/v1/sites/{uri}"), body.clone()).await;
        assert_eq!(answer.0, status, "PUT {uri} {body}: {}", answer.1);
        assert_error(&answer, status, code, Some(field));
        if field == "platform" && status == UNPROCESSABLE && body["platform"] == "@platform_new" {
            let message = answer.1["error"]["message"].as_str().unwrap();
            assert!(message.contains("verify @platform_new first"), "{message}");
        }
        if field == "profile" && body["profile"] == "commerce" {
            let message = answer.1["error"]["message"].as_str().unwrap();
            assert!(message.contains("standard") && message.contains("minimal"), "{message}");
        }
    }
    assert_eq!((app.count("sites").await, app.count("site_aliases").await), (sites, aliases));
    assert_eq!(app.get("/api/v1/sites/taken.example.com").await.1["aliases"], json!(["alias.example.com"]));
    assert_error(&app.get("/api/v1/sites/a%2Fb").await, UNPROCESSABLE, "invalid_field", Some("uri"));
    assert_error(&app.delete("/api/v1/sites/UPPER.example.com").await, UNPROCESSABLE, "invalid_field", Some("uri"));
    app.stop().await;
}

#[tokio::test]
async fn site_tasks_carry_the_whole_site_and_follow_its_status() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    put_ok(&app, "/api/v1/sites/www.example.com", full_site()).await;
    let (db_name, _, password) = stored_database(&app, "www.example.com").await;

    // Nothing but install before the site is installed.
    for task in ["verify", "disable", "enable", "delete", "login-reset"] {
        let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": task})).await;
        assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("task"));
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("new"), "{task}: {message}");
    }
    assert_eq!(app.count("tasks").await, 1, "only the platform verify of the setup");

    let (install, target) = request(&app, "@www.example.com", "install").await;
    let TaskTarget::Site { site } = &target else { panic!("a site target: {target:?}") };
    assert_eq!(site.uri.as_str(), "www.example.com");
    assert_eq!(site.aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["example.com"]);
    assert!(site.redirection);
    assert_eq!(site.platform.name.as_str(), "platform_wp");
    assert_eq!(site.platform.root.as_str(), "/var/aegir/platforms/wp");
    assert_eq!(site.platform.web_server.name.as_str(), "server_master");
    assert!(site.platform.web_server.http.is_some());
    assert_eq!(site.platform_type, PlatformType::Wordpress);
    assert_eq!(site.db_server.name.as_str(), "server_master");
    assert_eq!(site.db_server.db.as_ref().unwrap().admin_password.expose(), "secret");
    assert_eq!(site.database.name.as_str(), db_name);
    assert_eq!(site.database.user.as_str(), db_name);
    assert_eq!(site.database.password.expose(), password);
    assert_eq!(site.profile.as_ref().map(|p| p.as_str()), Some("standard"));
    assert_eq!(site.language.as_str(), "en");
    assert_eq!(site.title.as_str(), "Example shop");
    assert_eq!(site.admin_email.as_str(), "admin@example.com");
    assert_eq!(site.client.as_ref().map(|c| c.as_str()), Some("acme"));

    // One task at a time, and the record stays while its install runs.
    let again = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "install"})).await;
    assert_error(&again, StatusCode::CONFLICT, "conflict", Some("context"));
    assert_error(&app.delete("/api/v1/sites/www.example.com").await, StatusCode::CONFLICT, "conflict", None);

    finish(&app, install, TaskOutcome::Success).await;
    let (_, enabled) = app.get("/api/v1/sites/www.example.com").await;
    assert_eq!(enabled["status"], "enabled");
    assert!(enabled["installed_at"].is_string(), "{enabled}");

    // Installed: no second install, no moving, no plain delete of the record.
    let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "install"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("task"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("installed already"), "{}", answer.1);
    assert_error(
        &app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "enable"})).await,
        StatusCode::CONFLICT,
        "conflict",
        Some("task"),
    );
    put_ok(
        &app,
        "/api/v1/servers/server_db2",
        json!({"db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root"}}),
    )
    .await;
    let mut moved = full_site();
    moved["db_server"] = json!("@server_db2");
    assert_error(
        &app.put("/api/v1/sites/www.example.com", moved).await,
        StatusCode::CONFLICT,
        "conflict",
        Some("db_server"),
    );
    put_ok(&app, "/api/v1/platforms/platform_wp2", json!({"root": "/var/aegir/platforms/wp2"})).await;
    sqlx::query("UPDATE platforms SET platform_type = 'wordpress' WHERE name = 'platform_wp2'")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut moved = full_site();
    moved["platform"] = json!("@platform_wp2");
    moved.as_object_mut().unwrap().remove("profile");
    let answer = app.put("/api/v1/sites/www.example.com", moved).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("platform"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("migrate"), "{}", answer.1);
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["platform"], "@platform_wp");
    let answer = app.delete("/api/v1/sites/www.example.com").await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("`delete` task"), "{}", answer.1);
    // Other fields may change while installed; the next verify applies them.
    let mut retitled = full_site();
    retitled["title"] = json!("Example store");
    assert_eq!(put_ok(&app, "/api/v1/sites/www.example.com", retitled).await["status"], "enabled");

    // A verify reports the site's packages; each report replaces the last.
    let (verify, _) = request(&app, "@www.example.com", "verify").await;
    let facts = |packages: Vec<Package>| StepFacts { packages: Some(packages), ..StepFacts::default() };
    let first = vec![
        package("wordpress", PackageKind::Core, Some("6.4.2")),
        package("woocommerce", PackageKind::Plugin, Some("8.5.1")),
        package("twentytwentyfour", PackageKind::Theme, None),
    ];
    app.publish(&step_succeeded(verify, 0, "server_master.http", facts(first))).await;
    finish(&app, verify, TaskOutcome::Success).await;
    let (_, verified) = app.get("/api/v1/sites/www.example.com").await;
    assert_eq!(verified["status"], "enabled");
    assert_eq!(
        verified["packages"],
        json!([
            {"name": "wordpress", "kind": "core", "version": "6.4.2"},
            {"name": "woocommerce", "kind": "plugin", "version": "8.5.1"},
            {"name": "twentytwentyfour", "kind": "theme", "version": null},
        ])
    );
    let (verify, _) = request(&app, "@www.example.com", "verify").await;
    app.publish(&step_succeeded(
        verify,
        0,
        "server_master.http",
        facts(vec![package("wordpress", PackageKind::Core, Some("6.5.0"))]),
    ))
    .await;
    finish(&app, verify, TaskOutcome::Success).await;
    let (_, list) = app.get("/api/v1/sites?status=enabled").await;
    assert_eq!(list["items"][0]["packages"], json!([{"name": "wordpress", "kind": "core", "version": "6.5.0"}]));
    // The platform's own packages are its own.
    assert_eq!(app.get("/api/v1/platforms/platform_wp").await.1["packages"][0]["version"], "6.4.2");

    // disable → disabled; a failed enable changes nothing; enable → enabled.
    let (disable, _) = request(&app, "@www.example.com", "disable").await;
    finish(&app, disable, TaskOutcome::Success).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["status"], "disabled");
    let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "disable"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("task"));
    let (enable, _) = request(&app, "@www.example.com", "enable").await;
    finish(&app, enable, TaskOutcome::Failed).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["status"], "disabled");
    let (enable, _) = request(&app, "@www.example.com", "enable").await;
    finish(&app, enable, TaskOutcome::Success).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["status"], "enabled");

    let (reset, target) = request(&app, "@www.example.com", "login-reset").await;
    assert!(matches!(target, TaskTarget::Site { .. }));
    finish(&app, reset, TaskOutcome::Success).await;
    assert_eq!(app.get(&format!("/api/v1/tasks/{reset}")).await.1["task"], "login-reset");

    // delete → the record goes; its tasks and their logs stay.
    let (delete, _) = request(&app, "@www.example.com", "delete").await;
    finish(&app, delete, TaskOutcome::Success).await;
    assert_error(&app.get("/api/v1/sites/www.example.com").await, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.get("/api/v1/tasks?context=@www.example.com").await.1["total"], 8);
    let packages: i64 = sqlx::query_scalar("SELECT count(*) FROM packages WHERE context = '@www.example.com'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(packages, 0);
    // A late report about the deleted site brings nothing back (events are handled in
    // order, so once the log line is stored the report was handled).
    app.publish(&step_succeeded(delete, 0, "server_master.http", facts(vec![package("x", PackageKind::Plugin, None)])))
        .await;
    app.publish(&log_line(delete, "late")).await;
    app.log_reaches(delete, 1).await;
    assert_eq!(app.count("packages").await, 1, "only the platform's");
    assert_eq!(app.count("sites").await, 0);

    // A failed install leaves a `failed` site: install again, or forget it.
    put_ok(&app, "/api/v1/sites/www.example.com", full_site()).await;
    let (install, _) = request(&app, "@www.example.com", "install").await;
    finish(&app, install, TaskOutcome::Failed).await;
    let (_, failed) = app.get("/api/v1/sites/www.example.com").await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["installed_at"], Value::Null);
    let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "verify"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("task"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("install"), "{}", answer.1);
    // Not installed: it may move to another db server.
    let mut moved = full_site();
    moved["db_server"] = json!("@server_db2");
    assert_eq!(put_ok(&app, "/api/v1/sites/www.example.com", moved).await["db_server"], "@server_db2");
    assert_eq!(app.delete("/api/v1/sites/www.example.com").await.0, StatusCode::NO_CONTENT);
    app.stop().await;
}
