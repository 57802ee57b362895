//! The web pages as a browser gets them, over plain HTTP with the session cookie: signing
//! in, a refused site form showing the API's reason, forms without their csrf token
//! refused, and a client user kept to its client's sites.

use aegir_e2e::{System, random_suffix};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// A browser signed in as one user: it sends the session cookie the sign-in set.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

/// What a page answered: status, body and where it redirects.
struct Page {
    status: u16,
    body: String,
    location: String,
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Text as the pages write it (minijinja's HTML escaping).
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

impl Browser {
    async fn sign_in(system: &System, user: &str, password: &str) -> Browser {
        let http = no_redirects();
        let response = http
            .post(format!("{}/login", system.api))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[("user", user), ("password", password), ("next", "/")]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303, "sign-in of {user}");
        assert_eq!(response.headers()[LOCATION], "/");
        let set = response.headers().get(SET_COOKIE).expect("the sign-in sets the session cookie").to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("aegir_session=") && cookie.len() > "aegir_session=".len(), "{set}");
        Browser { http, base: system.api.clone(), cookie }
    }

    async fn get(&self, path: &str) -> Page {
        let response = self.http.get(format!("{}{path}", self.base)).header(COOKIE, &self.cookie).send().await.unwrap();
        page(response).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(fields))
            .send()
            .await
            .unwrap();
        page(response).await
    }

    /// The csrf token the forms of `path` carry.
    async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let marker = r#"name="csrf" value=""#;
        let start = page.body.find(marker).expect("a form with its csrf field") + marker.len();
        page.body[start..].split('"').next().unwrap().to_owned()
    }
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    Page { status, body: response.text().await.unwrap(), location }
}

async fn put(system: &System, path: &str, body: Value) {
    let response = system.http.put(format!("{}{path}", system.api)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    assert!(status == 200 || status == 201, "PUT {path}: {status} {}", response.text().await.unwrap());
}

#[tokio::test]
async fn the_pages_show_each_user_what_the_api_lets_it_see_and_refuse_what_it_refuses() {
    let system = System::start().await;
    let suffix = random_suffix();
    let server = format!("server_web{suffix}");
    let platform = format!("platform_web{suffix}");
    put(
        &system,
        &format!("/api/v1/servers/{server}"),
        json!({"http": {"service_type": "nginx"},
               "db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "x"}}),
    )
    .await;
    let root = system.platforms_dir().join("web");
    put(&system, &format!("/api/v1/platforms/{platform}"), json!({"root": root, "web_server": format!("@{server}")}))
        .await;
    // As its verify would have found it: a WordPress code base.
    sqlx::query("UPDATE platforms SET platform_type = 'wordpress', status = 'verified' WHERE name = $1")
        .bind(&platform)
        .execute(&system.pg)
        .await
        .unwrap();
    for client in ["acme", "globex"] {
        put(&system, &format!("/api/v1/clients/{client}"), json!({"title": client})).await;
    }
    let site =
        |client: &str| json!({"platform": format!("@{platform}"), "db_server": format!("@{server}"), "client": client});
    put(&system, "/api/v1/sites/mine.acme.test", site("acme")).await;
    put(&system, "/api/v1/sites/theirs.globex.test", site("globex")).await;
    put(&system, &format!("/api/v1/clients/acme/platforms/{platform}"), json!({})).await;
    put(&system, "/api/v1/users/ada", json!({"role": "admin", "password": "correct horse battery"})).await;
    put(
        &system,
        "/api/v1/users/alice",
        json!({"role": "client", "client": "acme", "password": "staple battery horse"}),
    )
    .await;

    // Without a session: the sign-in page, coming back afterwards.
    let anonymous = no_redirects().get(format!("{}/sites/new", system.api)).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(anonymous.headers()[LOCATION], "/login?next=%2Fsites%2Fnew");

    // Signed in, the dashboard shows who.
    let ada = Browser::sign_in(&system, "ada", "correct horse battery").await;
    let dashboard = ada.get("/").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(dashboard.body.contains("<span>ada</span>"), "{}", dashboard.body);

    // A uri the API refuses: the form again, with the API's message beside the uri and its status.
    let (_, sites_before) = system.get("/api/v1/sites?limit=1").await;
    let refused =
        system.http.put(format!("{}/api/v1/sites/Not%20A%20Uri", system.api)).json(&site("acme")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let api_message = refused.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    let csrf = ada.csrf("/sites/new").await;
    let platform_context = format!("@{platform}");
    let page = ada
        .post(
            "/sites/new",
            &[
                ("csrf", &csrf),
                ("uri", "Not A Uri"),
                ("platform", &platform_context),
                ("ssl", "off"),
                ("install", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    let beside = format!(r#"<p class="error" id="e-uri">{}</p>"#, escaped(&api_message));
    assert!(page.body.contains(&beside), "{beside} in {}", page.body);
    assert!(page.body.contains(r#"value="Not A Uri""#), "the form keeps what was typed: {}", page.body);
    // A field the API names: the platform left out, and the site is not saved.
    let page = ada.post("/sites/new", &[("csrf", &csrf), ("uri", "new.acme.test"), ("platform", "")]).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains(r#"id="e-platform""#), "{}", page.body);
    assert_eq!(system.get("/api/v1/sites/new.acme.test").await.0, 404);
    let (_, sites_after) = system.get("/api/v1/sites?limit=1").await;
    assert_eq!(sites_after["total"], sites_before["total"]);

    // Without the csrf token: refused, nothing saved or deleted.
    let page = ada.post("/sites/new", &[("uri", "forged.acme.test"), ("platform", &platform_context)]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let page =
        ada.post("/sites/new", &[("csrf", "0000"), ("uri", "forged.acme.test"), ("platform", &platform_context)]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(system.get("/api/v1/sites/forged.acme.test").await.0, 404);
    let page = ada.post("/sites/mine.acme.test/tasks", &[("task", "delete-record")]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(system.get("/api/v1/sites/mine.acme.test").await.0, 200);

    // With it: saved without installing, and its page shows it.
    let page = ada
        .post(
            "/sites/new",
            &[
                ("csrf", &csrf),
                ("uri", "shop.acme.test"),
                ("platform", &platform_context),
                ("client", "acme"),
                ("ssl", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, "/sites/shop.acme.test");
    let (status, saved) = system.get("/api/v1/sites/shop.acme.test").await;
    assert_eq!(status, 200);
    assert_eq!((saved["client"].as_str(), saved["ssl"].as_str()), (Some("acme"), Some("on")), "{saved}");
    let page = ada.get("/sites/shop.acme.test").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="site-status""#) && page.body.contains(r#"id="action-install""#), "{}", page.body);
    assert!(page.body.contains(r#"id="site-link" href="https:&#x2f;&#x2f;shop.acme.test&#x2f;""#), "{}", page.body);

    // An action: the install starts, and its task's page follows it.
    let page = ada.post("/sites/shop.acme.test/tasks", &[("csrf", &csrf), ("task", "install")]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location.starts_with("/tasks/"), "{}", page.location);
    let task = ada.get(&page.location).await;
    assert_eq!(task.status, 200, "{}", task.body);
    assert!(
        task.body.contains(r#"id="task-log""#) && task.body.contains(r#"href="/sites/shop.acme.test""#),
        "{}",
        task.body
    );
    // Installing again while the install is not done: the site's page with the API's reason and status.
    let page = ada.post("/sites/shop.acme.test/tasks", &[("csrf", &csrf), ("task", "install")]).await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.body.contains(r#"id="action-error""#), "{}", page.body);

    // A client user: its client's sites only; another's are not found, and acting on them changes nothing.
    let alice = Browser::sign_in(&system, "alice", "staple battery horse").await;
    let dashboard = alice.get("/").await;
    assert!(dashboard.body.contains("<span>alice (acme)</span>"), "{}", dashboard.body);
    let list = alice.get("/sites").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("mine.acme.test") && !list.body.contains("theirs.globex.test"), "{}", list.body);
    assert_eq!(alice.get("/sites/theirs.globex.test").await.status, 404);
    assert_eq!(alice.get("/sites/theirs.globex.test/edit").await.status, 404);
    assert_eq!(alice.get("/sites/mine.acme.test").await.status, 200);
    let (_, before) = system.get("/api/v1/sites/theirs.globex.test").await;
    let csrf = alice.csrf("/sites/mine.acme.test").await;
    for task in ["verify", "disable", "delete", "delete-record", "install"] {
        let page = alice.post("/sites/theirs.globex.test/tasks", &[("csrf", &csrf), ("task", task)]).await;
        assert_eq!(page.status, 404, "{task}: {}", page.body);
    }
    let page = alice
        .post(
            "/sites/theirs.globex.test/edit",
            &[("csrf", &csrf), ("platform", &platform_context), ("title", "Mine now")],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.body);
    let (status, after) = system.get("/api/v1/sites/theirs.globex.test").await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let (_, tasks) = system.get("/api/v1/tasks?context=@theirs.globex.test").await;
    assert_eq!(tasks["total"], 0, "{tasks}");
    // Servers are the admins' pages.
    assert_eq!(alice.get("/servers").await.status, 403);
}

#[tokio::test]
async fn an_admin_keeps_clients_servers_and_platforms_through_their_forms() {
    let system = System::start().await;
    let suffix = random_suffix();
    put(&system, "/api/v1/users/grace", json!({"role": "admin", "password": "correct horse battery"})).await;
    let grace = Browser::sign_in(&system, "grace", "correct horse battery").await;
    let csrf = grace.csrf("/clients/new").await;

    // A client: saved from its form, and a second one of the same name refused.
    let client = format!("initech{suffix}");
    let page = grace
        .post("/clients/new", &[("csrf", &csrf), ("name", &client), ("title", "Initech"), ("email", "it@initech.test")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, format!("/clients/{client}"));
    let (status, saved) = system.get(&format!("/api/v1/clients/{client}")).await;
    assert_eq!(status, 200);
    assert_eq!((saved["title"].as_str(), saved["email"].as_str()), (Some("Initech"), Some("it@initech.test")));
    let page = grace.post("/clients/new", &[("csrf", &csrf), ("name", &client), ("title", "Other")]).await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert_eq!(system.get(&format!("/api/v1/clients/{client}")).await.1["title"], "Initech");

    // A server whose port the API refuses: the form again with the API's status, nothing saved.
    let server = format!("server_ui{suffix}");
    let page = grace
        .post(
            "/servers/new",
            &[
                ("csrf", &csrf),
                ("name", &server),
                ("remote_host", "localhost"),
                ("http_service_type", "nginx"),
                ("http_port", "99999"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains(r#"class="error""#), "{}", page.body);
    assert_eq!(system.get(&format!("/api/v1/servers/{server}")).await.0, 404);
    let page = grace
        .post(
            "/servers/new",
            &[
                ("csrf", &csrf),
                ("name", &server),
                ("remote_host", "localhost"),
                ("http_service_type", "nginx"),
                ("http_port", "8080"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (status, saved) = system.get(&format!("/api/v1/servers/{server}")).await;
    assert_eq!(status, 200);
    assert_eq!(saved["http"]["port"], 8080, "{saved}");
    let page = grace.get(&format!("/servers/{server}")).await;
    assert_eq!(page.status, 200, "{}", page.body);

    // A platform outside the platform roots is refused; one inside is saved, then granted.
    let platform = format!("platform_ui{suffix}");
    let web_server = format!("@{server}");
    let page = grace
        .post("/platforms/new", &[("csrf", &csrf), ("name", &platform), ("root", "/etc"), ("web_server", &web_server)])
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_eq!(system.get(&format!("/api/v1/platforms/{platform}")).await.0, 404);
    let root = system.platforms_dir().join(format!("ui{suffix}"));
    let page = grace
        .post(
            "/platforms/new",
            &[("csrf", &csrf), ("name", &platform), ("root", root.to_str().unwrap()), ("web_server", &web_server)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(system.get(&format!("/api/v1/platforms/{platform}")).await.0, 200);
    let platform_context = format!("@{platform}");
    let page = grace
        .post(
            &format!("/clients/{client}/platforms"),
            &[("csrf", &csrf), ("platform", &platform_context), ("change", "grant")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (_, grants) = system.get(&format!("/api/v1/clients/{client}/platforms")).await;
    assert!(grants.to_string().contains(&platform), "{grants}");
    let page = grace.get(&format!("/clients/{client}")).await;
    assert!(page.body.contains(&platform), "the client's page lists its platform: {}", page.body);
}
