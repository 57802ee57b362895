//! `server verify` and `platform verify` end to end, through the CLI.

use aegir_e2e::{System, mariadb_url, with_password, write_tree};

#[tokio::test(flavor = "multi_thread")]
async fn server_and_platform_verify_succeed_and_are_recorded() {
    let system = System::start().await;
    let server = format!("@{}", system.server);
    system.save_server(&mariadb_url()).await;

    let out = system.cli(&[&server, "verify"]).await;
    assert_eq!(out.code, Some(0), "server verify failed: {out}");
    // The CLI streamed the log of both workers and the scheduler as it ran.
    for expected in [
        format!("{}.http", system.server),
        format!("{}.db", system.server),
        "nginx config test passed".to_owned(),
        "can create databases and users".to_owned(),
    ] {
        assert!(out.stdout.contains(&expected), "`{expected}` missing from the CLI output:\n{out}");
    }

    let (status, view) = system.get(&format!("/api/v1/servers/{}", system.server)).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "verified", "{view}");
    assert!(view["http"]["version"].as_str().unwrap_or_default().contains("nginx"), "{view}");
    assert!(!view["db"]["version"].is_null(), "{view}");
    assert!(system.config_dir().join("nginx.conf").is_file(), "base config written");

    // The rows behind it.
    let (task_status, context): (String, String) =
        sqlx::query_as("SELECT status, context FROM tasks ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&system.pg)
            .await
            .unwrap();
    assert_eq!((task_status.as_str(), context.as_str()), ("success", server.as_str()));
    let sources: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT source FROM task_log ORDER BY source").fetch_all(&system.pg).await.unwrap();
    let sources: Vec<String> = sources.into_iter().map(|(s,)| s).collect();
    assert!(sources.contains(&"scheduler".to_owned()), "{sources:?}");
    assert!(sources.contains(&format!("{}.http", system.server)), "{sources:?}");
    assert!(sources.contains(&format!("{}.db", system.server)), "{sources:?}");

    // A WordPress code base as a platform on that server.
    let root = system.platforms_dir().join("wordpress");
    write_tree(
        &root,
        &[
            ("index.php", "<?php require __DIR__ . '/wp-blog-header.php';\n"),
            ("wp-includes/version.php", "<?php\n$wp_version = '6.1.1';\n"),
            ("wp-content/uploads/.keep", ""),
        ],
    );
    let platform = "@platform_wp";
    let out = system
        .cli(&[
            "save",
            platform,
            "--context_type=platform",
            &format!("--root={}", root.display()),
            &format!("--web_server={server}"),
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out}");
    let out = system.cli(&[platform, "verify"]).await;
    assert_eq!(out.code, Some(0), "platform verify failed: {out}");
    assert!(out.stdout.contains("detected a wordpress platform (6.1.1)"), "{out}");

    let (_, view) = system.get("/api/v1/platforms/platform_wp").await;
    assert_eq!(view["platform_type"], "wordpress", "{view}");
    assert_eq!(view["app_version"], "6.1.1", "{view}");
    assert_eq!(view["status"], "verified", "{view}");

    // `aegir tasks` lists both, `aegir task ID` shows one with its log.
    let out = system.cli(&["tasks"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains(&server) && out.stdout.contains(platform), "{out}");
    let (_, list) = system.get("/api/v1/tasks?context=@platform_wp").await;
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    // One trace spans the API request, the scheduler and the worker's step.
    let (_, task) = system.get(&format!("/api/v1/tasks/{id}")).await;
    let trace_id = task["trace_id"].as_str().expect("the task records its trace").to_owned();
    assert_eq!(trace_id.len(), 32, "{task}");
    let log = system.task_log(&id).await;
    assert!(
        log.iter().any(|(_, s, m)| s.ends_with(".http") && m.contains(&format!("(trace {trace_id})"))),
        "the worker's step belongs to the request's trace {trace_id}: {log:?}"
    );
    let out = system.cli(&["task", &id]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("platform verify succeeded"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_db_admin_password_fails_the_verify_and_says_so() {
    let system = System::start().await;
    let server = format!("@{}", system.server);
    system.save_server(&with_password(&mariadb_url(), "certainly-not-the-password")).await;

    let out = system.cli(&[&server, "verify"]).await;
    assert_eq!(out.code, Some(1), "verify should fail: {out}");
    assert!(out.stderr.contains("access denied"), "the reason is printed: {out}");
    assert!(!out.stdout.contains("certainly-not-the-password") && !out.stderr.contains("certainly-not-the-password"));

    let (_, list) = system.get(&format!("/api/v1/tasks?context={server}")).await;
    let task = &list["items"][0];
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("access denied") && reason.contains("db server verify"), "{reason}");
    let log = system.task_log(task["id"].as_str().unwrap()).await;
    assert!(
        log.iter().any(|(level, source, message)| level == "error"
            && source.ends_with(".db")
            && message.contains("refused the admin login")),
        "{log:?}"
    );
    // A permanent failure is not retried.
    assert_eq!(log.iter().filter(|(_, _, m)| m.contains("logging in to")).count(), 1, "{log:?}");
    let (_, view) = system.get(&format!("/api/v1/servers/{}", system.server)).await;
    assert_eq!(view["status"], "failed", "{view}");

    // The secret is not in any stored log line.
    let leaked: (i64,) = sqlx::query_as("SELECT count(*) FROM task_log WHERE message LIKE '%certainly-not%'")
        .fetch_one(&system.pg)
        .await
        .unwrap();
    assert_eq!(leaked.0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_field_named_and_nothing_stored() {
    let system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);

    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["save".into(), "@../etc".into(), "--context_type=server".into()], "@../etc"),
        (
            vec![
                "save".into(),
                "@server_x1".into(),
                "--context_type=server".into(),
                "--http_service_type=lighttpd".into(),
            ],
            "http_service_type",
        ),
        (
            vec![
                "save".into(),
                "@platform_evil".into(),
                "--context_type=platform".into(),
                "--root=/etc".into(),
                format!("--web_server={server}"),
            ],
            "root",
        ),
        (vec!["save".into(), "@platform_rel".into(), "--context_type=platform".into(), "--root=../x".into()], "root"),
        (vec!["@../etc".into(), "verify".into()], "@../etc"),
        (vec![server.clone(), "explode".into()], "explode"),
    ];
    for (args, field) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = system.cli(&args).await;
        assert!(matches!(out.code, Some(c) if c != 0), "{args:?} should fail: {out}");
        assert!(out.stderr.contains(field), "{args:?}: the error should name `{field}`: {out}");
    }

    // Straight at the API: the same refusals, with the field in the answer.
    let put = |path: &str, body: serde_json::Value| {
        let request = system.http.put(format!("{}{path}", system.api)).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, body) = put("/api/v1/servers/server_x2", serde_json::json!({"http": {"service_type": "iis"}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "http.service_type", "{body}");
    let (status, body) =
        put("/api/v1/platforms/platform_evil", serde_json::json!({"root": "/etc", "web_server": server})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "root", "{body}");
    let (status, _) = put("/api/v1/servers/..%2Fetc", serde_json::json!({})).await;
    assert!((400..500).contains(&status), "{status}");

    // Nothing of it was stored: only the server saved above exists, and no platform.
    let (_, servers) = system.get("/api/v1/servers").await;
    assert_eq!(servers["total"], 1, "{servers}");
    let (_, platforms) = system.get("/api/v1/platforms").await;
    assert_eq!(platforms["total"], 0, "{platforms}");
    let (_, tasks) = system.get("/api/v1/tasks").await;
    assert_eq!(tasks["total"], 0, "{tasks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_platform_takes_no_new_sites_until_it_is_unlocked() {
    let system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);
    let root = system.platforms_dir().join("app");
    write_tree(&root, &[("index.php", "<?php echo 'hello';\n")]);
    let root_arg = format!("--root={}", root.display());
    let web = format!("--web_server={server}");
    let out = system.cli(&["save", "@platform_app", "--context_type=platform", &root_arg, &web]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(system.cli(&["@platform_app", "verify"]).await.code, Some(0));

    let out = system.cli(&["@platform_app", "lock"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    let (_, view) = system.get("/api/v1/platforms/platform_app").await;
    assert_eq!(view["locked"], true, "{view}");

    let save_site = || system.cli(&["save", "@shop.example.com", "--context_type=site", "--platform=@platform_app"]);
    let out = save_site().await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("platform") && out.stderr.contains("locked"), "{out}");
    let (_, sites) = system.get("/api/v1/sites").await;
    assert_eq!(sites["total"], 0, "nothing stored: {sites}");
    // Servers cannot be locked.
    let out = system.cli(&[&server, "lock"]).await;
    assert!(matches!(out.code, Some(2 | 3)), "{out}");

    let out = system.cli(&["@platform_app", "unlock"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    let out = save_site().await;
    assert_eq!(out.code, Some(0), "{out}");
    let (_, view) = system.get("/api/v1/platforms/platform_app").await;
    assert_eq!(view["locked"], false, "{view}");
}
