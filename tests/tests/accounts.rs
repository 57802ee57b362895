//! Accounts through the CLI: a client user's token shows and acts on its client's sites
//! only; another client's site is "not found" and stays as it was. `aegir login` stores a
//! token the next commands send.

use std::process::Stdio;

use aegir_e2e::{System, bin, random_suffix};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

async fn put(system: &System, path: &str, body: Value) {
    let response = system.http.put(format!("{}{path}", system.api)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    assert!(status == 200 || status == 201, "PUT {path}: {status} {}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_client_users_cli_shows_and_acts_on_its_clients_sites_only() {
    let system = System::start().await;
    let suffix = random_suffix();
    let server = format!("server_acc{suffix}");
    let platform = format!("platform_acc{suffix}");
    put(
        &system,
        &format!("/api/v1/servers/{server}"),
        json!({"http": {"service_type": "nginx"},
               "db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "x"}}),
    )
    .await;
    let root = system.platforms_dir().join("acc");
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
    let out = system.cli(&["users", "grant", "acme", &format!("@{platform}")]).await;
    assert_eq!(out.code, Some(0), "{out}");
    put(
        &system,
        "/api/v1/users/alice",
        json!({"role": "client", "client": "acme", "password": "correct horse battery"}),
    )
    .await;
    let out = system.cli(&["users", "token", "alice", "--name", "cli"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    let token = out.stdout.trim().to_owned();
    let out = system.cli(&["users", "list"]).await;
    assert!(out.stdout.contains("alice") && out.stdout.contains("acme"), "{out}");
    let (_, before) = system.get("/api/v1/sites/theirs.globex.test").await;

    // Another client's site: not found, whatever is tried, and unchanged.
    for args in [
        &["show", "@theirs.globex.test"][..],
        &["@theirs.globex.test", "verify"],
        &["delete", "@theirs.globex.test"],
        &["backups", "@theirs.globex.test"],
        &["tasks", "--context=@theirs.globex.test"],
    ] {
        let out = system.cli_with_token(&token, args).await;
        if args[0] == "tasks" {
            assert_eq!(out.code, Some(0), "{args:?}: {out}");
            assert!(!out.stdout.contains("theirs.globex.test verify"), "{args:?}: {out}");
            continue;
        }
        assert_eq!(out.code, Some(3), "{args:?}: {out}");
        assert!(out.stderr.contains("does not exist"), "{args:?}: {out}");
    }
    let out = system
        .cli_with_token(
            &token,
            &["save", "@new.globex.test", "--context_type=site", &format!("--platform=@{platform}"), "--client=globex"],
        )
        .await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("client `acme` only"), "{out}");
    let out = system.cli_with_token(&token, &["users", "token", "admin"]).await;
    assert_eq!(out.code, Some(3), "{out}");
    let out = system.cli_with_token(&token, &["list", "servers"]).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("for admins"), "{out}");
    let (_, after) = system.get("/api/v1/sites/theirs.globex.test").await;
    assert_eq!(after, before);
    let (status, _) = system.get("/api/v1/sites/new.globex.test").await;
    assert_eq!(status, 404);
    let (_, tasks) = system.get("/api/v1/tasks?context=@theirs.globex.test").await;
    assert_eq!(tasks["total"], 0, "{tasks}");

    // Its own: shown, listed alone, and acted on.
    let out = system.cli_with_token(&token, &["show", "@mine.acme.test"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("mine.acme.test"), "{out}");
    let out = system.cli_with_token(&token, &["list", "sites"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("mine.acme.test") && !out.stdout.contains("theirs.globex.test"), "{out}");
    let out = system.cli_with_token(&token, &["delete", "@mine.acme.test"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    let (status, _) = system.get("/api/v1/sites/mine.acme.test").await;
    assert_eq!(status, 404);

    // No token: refused with what to do.
    let out = system.cli_with_token("", &["list", "sites"]).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("Authorization: Bearer"), "{out}");

    // `aegir login` stores a token in the user's config, which the next command sends.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let mut login = tokio::process::Command::new(bin("aegir"))
        .args(["login", "alice", "--password-stdin"])
        .env("AEGIR_API", &system.api)
        .env("AEGIR_CONFIG", &config)
        .env_remove("AEGIR_TOKEN")
        .env_remove("AEGIR_TOKEN_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(b"correct horse battery\n").await.unwrap();
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let listed = tokio::process::Command::new(bin("aegir"))
        .args(["list", "clients"])
        .env("AEGIR_API", &system.api)
        .env("AEGIR_CONFIG", &config)
        .env_remove("AEGIR_TOKEN")
        .env_remove("AEGIR_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(stdout.contains("acme") && !stdout.contains("globex"), "{stdout}");
}
