//! The web UI in a headless Chromium, against the whole system: an admin signs in,
//! creates a WordPress site on a real platform, watches its install log stream in to
//! success, opens the site at its own address, and disables it from its page; a
//! client user sees its client's sites only, and another client's site is a 404 page
//! whatever it tries, with nothing changed.
//!
//! Screenshots of the pages are written to `<target>/test-artifacts/screenshots/`.

use std::time::Duration;

use aegir_e2e::browser::Browser;
use aegir_e2e::{INSTALL_PATIENCE, Options, System, random_suffix, start_with_php};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

async fn put(system: &System, path: &str, body: Value) {
    let response = system.http.put(format!("{}{path}", system.api)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    assert!(status == 200 || status == 201, "PUT {path}: {status} {}", response.text().await.unwrap());
}

/// A user who signs in with [`PASSWORD`].
async fn user(system: &System, name: &str, role: &str, client: Option<&str>) {
    put(system, &format!("/api/v1/users/{name}"), json!({"role": role, "client": client, "password": PASSWORD})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_a_site_watches_its_install_opens_it_and_disables_it_in_the_browser() {
    // Each database step waits a moment first, so the install is still running when
    // its page opens and the log lines that follow can only have come by the stream.
    let options = Options::default().env("db-worker", "AEGIR_STEP_DELAY_MS", "2000");
    let (system, _fpm) = start_with_php(options).await;
    system.server_ready().await;
    system.wordpress_platform("wp").await;
    user(&system, "operator", "admin", None).await;
    let uri = format!("ui-{}.test", random_suffix());
    let title = format!("Browser blog {}", random_suffix());
    let browser = Browser::start(&system.api, &[(&uri, system.http_port)], "").await;

    // Not signed in: the sign-in form, then the dashboard.
    browser.goto("/").await;
    browser.wait_path("/login").await;
    browser.find("#f-user").await;
    browser.screenshot("login").await;
    browser.sign_in("operator", PASSWORD).await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("h1").await, "Dashboard");
    assert!(browser.page_text().await.contains("operator"), "the header names who is signed in");
    browser.screenshot("dashboard").await;

    // The new site's form, filled in and sent.
    browser.goto("/sites/new").await;
    browser.fill("#f-uri", &uri).await;
    browser.select("#f-platform", "@platform_wp").await;
    browser.fill("#f-title", &title).await;
    assert_eq!(browser.find("#f-install").await.prop("checked").await.unwrap().as_deref(), Some("true"));
    browser.screenshot("site-new").await;
    browser.click("#site-save").await;

    // The install task's page, following its log until it succeeds.
    let task_path = browser.wait_path("/tasks/").await;
    let log = browser.find("#task-log").await;
    let status_at_load = log.attr("data-status").await.unwrap().unwrap_or_default();
    let lines_at_load = browser.all("#task-log li").await.len();
    assert!(
        matches!(status_at_load.as_str(), "queued" | "running"),
        "the install is still under way when its page opens ({status_at_load})"
    );
    assert!(browser.text("h1").await.contains(&uri), "the task page names the site");
    let status = browser.wait_text("#task-status", INSTALL_PATIENCE, |s| matches!(s, "success" | "failed")).await;
    let lines = browser.text("#task-log").await;
    assert_eq!(status, "success", "the install failed; its log:\n{lines}");
    let lines_now = browser.all("#task-log li").await.len();
    assert!(
        lines_now > lines_at_load,
        "log lines arrived on the open page ({lines_at_load} at load, {lines_now} now):\n{lines}"
    );
    assert!(lines.contains("the WordPress installer finished"), "{lines}");
    assert!(browser.all("#log-following").await.is_empty(), "the page stops saying it follows the log");
    assert_eq!(browser.path().await, task_path, "the log streamed in without reloading the page");
    browser.screenshot("task-install").await;

    // The site's page in the UI, and its link to the site itself (served by the test's
    // web server).
    browser.click("a[href^='/sites/']").await;
    browser.wait_path(&format!("/sites/{uri}")).await;
    assert_eq!(browser.text("#site-status").await, "enabled");
    assert!(browser.text("main").await.contains(&title));
    browser.screenshot("site").await;
    let site_url = browser.find("#site-link").await.attr("href").await.unwrap().unwrap_or_default();
    assert!(site_url.contains(&uri), "the site's link points at it: {site_url}");
    browser.click("#site-link").await;
    let text = browser.wait_page(&site_url, Duration::from_secs(60), |text| text.contains(&title)).await;
    assert!(text.contains(&title), "{text}");
    browser.screenshot("site-home").await;

    // Its disable button, which asks first.
    browser.goto(&format!("/sites/{uri}")).await;
    browser.click("#action-disable").await;
    let question = browser.accept_dialog().await;
    assert!(question.to_lowercase().contains("disable"), "the dialog asks about disabling: {question}");
    let disable_path = browser.wait_path("/tasks/").await;
    assert_ne!(disable_path, task_path, "the disable is a task of its own");
    let status = browser.wait_text("#task-status", INSTALL_PATIENCE, |s| matches!(s, "success" | "failed")).await;
    assert_eq!(status, "success", "the disable failed; its log:\n{}", browser.text("#task-log").await);
    browser.screenshot("task-disable").await;

    // The site's address now shows the disabled page, not the site.
    let text = browser
        .wait_page(&site_url, Duration::from_secs(60), |text| {
            !text.contains(&title) && text.to_lowercase().contains("disabled")
        })
        .await;
    assert!(!text.contains(&title), "{text}");
    browser.screenshot("site-disabled").await;
    browser.goto(&format!("/sites/{uri}")).await;
    assert_eq!(browser.text("#site-status").await, "disabled");

    // The sites list finds it by part of its name, disabled.
    browser.goto(&format!("/sites?search={}", &uri[..9])).await;
    let row = browser.text("tbody tr").await;
    assert!(row.contains(&uri) && row.contains("disabled"), "{row}");
    browser.screenshot("sites").await;
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["status"], "disabled", "{view}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_user_sees_and_acts_on_its_clients_sites_only_in_the_browser() {
    let system = System::start().await;
    let suffix = random_suffix();
    let server = format!("server_ui{suffix}");
    let platform = format!("platform_ui{suffix}");
    put(
        &system,
        &format!("/api/v1/servers/{server}"),
        json!({"http": {"service_type": "nginx"},
               "db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "x"}}),
    )
    .await;
    let root = system.platforms_dir().join("ui");
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
    system.cli_ok(&["users", "grant", "acme", &format!("@{platform}")]).await;
    user(&system, "alice", "client", Some("acme")).await;
    let (_, before) = system.get("/api/v1/sites/theirs.globex.test").await;
    let (_, tasks_before) = system.get("/api/v1/tasks?context=@theirs.globex.test").await;

    let browser = Browser::start(&system.api, &[], "client-").await;
    browser.sign_in("alice", PASSWORD).await;
    let header = browser.text("header").await;
    assert!(header.contains("alice") && header.contains("acme"), "{header}");
    assert!(!header.contains("Servers") && !header.contains("Clients"), "admins' pages are not offered: {header}");
    browser.screenshot("dashboard").await;

    // Its client's sites only, listed or searched for.
    browser.goto("/sites").await;
    let list = browser.text("main").await;
    assert!(list.contains("mine.acme.test"), "{list}");
    assert!(!list.contains("theirs.globex.test") && !list.contains("globex"), "{list}");
    assert!(list.contains("1 site"), "{list}");
    browser.screenshot("sites").await;
    browser.goto("/sites?search=globex").await;
    let list = browser.text("main").await;
    assert!(!list.contains("theirs.globex.test") && list.contains("No sites"), "{list}");

    // Another client's site: the same 404 page as a site that does not exist.
    let mut pages = Vec::new();
    for uri in ["nothing-here.test", "theirs.globex.test"] {
        browser.goto(&format!("/sites/{uri}")).await;
        let heading = browser.text("h1").await;
        assert!(heading.contains("404"), "{uri}: {heading}");
        pages.push(browser.page_text().await.replace(uri, "URI"));
    }
    assert_eq!(pages[0], pages[1], "nothing tells the other client's site from none");
    browser.screenshot("other-site").await;

    // Acting on it with forms as the UI would send them (with alice's own csrf token):
    // each is refused as not found.
    browser.goto("/sites/mine.acme.test").await;
    let csrf = browser.find("input[name=csrf]").await.attr("value").await.unwrap().unwrap_or_default();
    assert!(!csrf.is_empty(), "the page's forms carry a csrf token");
    for task in ["install", "verify", "disable", "enable", "backup", "login-reset", "delete", "delete-record"] {
        post_form(&browser, "/sites/theirs.globex.test/tasks", &[("csrf", &csrf), ("task", task)]).await;
        let heading = browser.text("h1").await;
        assert!(heading.contains("404"), "task {task}: {heading}");
    }
    let settings = [("csrf", csrf.as_str()), ("platform", &format!("@{platform}")), ("title", "Taken over")];
    post_form(&browser, "/sites/theirs.globex.test/edit", &settings).await;
    assert!(browser.text("h1").await.contains("404"), "its settings form is not found");
    browser.goto("/sites/theirs.globex.test/edit").await;
    assert!(browser.text("h1").await.contains("404"), "its settings are not shown");

    // The task list holds nothing of it either.
    browser.goto("/tasks").await;
    assert!(!browser.text("main").await.contains("globex"));

    let (_, after) = system.get("/api/v1/sites/theirs.globex.test").await;
    assert_eq!(after, before, "the other client's site is unchanged");
    let (_, tasks_after) = system.get("/api/v1/tasks?context=@theirs.globex.test").await;
    assert_eq!(tasks_after["total"], tasks_before["total"], "no task was started on it: {tasks_after}");
}

/// Posts a form of `fields` to `path` from the page shown, as the UI's own forms do,
/// and waits for the answer's page.
async fn post_form(browser: &Browser, path: &str, fields: &[(&str, &str)]) {
    let script = "const [action, fields] = arguments;\
                  const form = document.createElement('form');\
                  form.method = 'post'; form.action = action;\
                  for (const [name, value] of fields) {\
                    const input = document.createElement('input');\
                    input.type = 'hidden'; input.name = name; input.value = value; form.append(input);\
                  }\
                  document.body.append(form); form.submit();";
    // From the dashboard, so the answer's page is told apart by its address.
    browser.goto("/").await;
    browser.client.execute(script, vec![json!(path), json!(fields)]).await.expect("submitting the form");
    let deadline = tokio::time::Instant::now() + aegir_e2e::PATIENCE;
    while browser.path().await == "/" {
        if tokio::time::Instant::now() > deadline {
            browser.fail(&format!("POST {path} did not load a page")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
