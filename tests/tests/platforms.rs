//! Platform import and platform delete, end to end through the CLI: a real WordPress
//! site whose record was lost is found again and keeps working; a Drupal 7 site made by
//! hand is found with its database account; a platform is deleted only without sites.

use std::path::Path;
use std::time::Duration;

use aegir_e2e::{PhpFpm, System, copy_tree_resolving, mariadb_url, random_suffix, write_tree};
use serde_json::{Value, json};

async fn cli_ok(system: &System, args: &[&str]) -> String {
    let out = system.cli(args).await;
    assert_eq!(out.code, Some(0), "aegir {args:?} failed: {out}");
    out.stdout
}

async fn save_platform(system: &System, name: &str, root: &Path) {
    let root_arg = format!("--root={}", root.display());
    let web = format!("--web_server=@{}", system.server);
    cli_ok(system, &["save", name, "--context_type=platform", &root_arg, &web]).await;
}

/// `POST /api/v1/tasks` as it answers, accepted or not.
async fn request_task(system: &System, context: &str, task: &str) -> (u16, Value) {
    let response = system
        .http
        .post(format!("{}/api/v1/tasks", system.api))
        .json(&json!({ "context": context, "task": task }))
        .send()
        .await
        .expect("API reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /` for `host` on the test's web server: status and body.
async fn page(system: &System, host: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], system.http_port)))
        .redirect(reqwest::redirect::Policy::limited(5))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let response = client.get(format!("http://{host}:{}/", system.http_port)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wordpress_site_whose_record_was_lost_is_imported_and_verifies() {
    let fpm = PhpFpm::start();
    let socket = fpm.socket.display().to_string();
    let system =
        System::start_with(aegir_e2e::Options::default().env("http-worker", "AEGIR_PHP_FPM_SOCKET", &socket)).await;
    system.save_server(&mariadb_url()).await;
    cli_ok(&system, &[&format!("@{}", system.server), "verify"]).await;
    let root = system.platforms_dir().join("wordpress");
    copy_tree_resolving(Path::new("/usr/share/wordpress"), &root, &["wp-config.php", ".htaccess"]);
    save_platform(&system, "@platform_wp", &root).await;
    cli_ok(&system, &["@platform_wp", "verify"]).await;

    let uri = format!("made-{}.example.com", random_suffix());
    let title = format!("Made {}", random_suffix());
    let site = format!("@{uri}");
    let platform = "--platform=@platform_wp".to_owned();
    let db = format!("--db_server=@{}", system.server);
    cli_ok(&system, &["save", &site, "--context_type=site", &platform, &db, &format!("--title={title}")]).await;
    cli_ok(&system, &[&site, "install"]).await;
    let (db_name, db_user): (String, String) = sqlx::query_as("SELECT db_name, db_user FROM sites WHERE uri = $1")
        .bind(&uri)
        .fetch_one(&system.pg)
        .await
        .unwrap();

    // As if the site had been made outside the system: on disk and in MariaDB, no record.
    sqlx::query("DELETE FROM sites WHERE uri = $1").bind(&uri).execute(&system.pg).await.unwrap();
    let (status, _) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 404);

    let out = cli_ok(&system, &["@platform_wp", "import"]).await;
    assert!(out.contains(&format!("found {uri}")), "the log names the site found: {out}");
    assert!(out.contains(&format!("created the record of @{uri}")), "the log says the record was made: {out}");
    let (status, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "enabled", "{view}");
    assert_eq!(view["platform"], "@platform_wp", "{view}");
    assert_eq!(view["db_server"], format!("@{}", system.server), "{view}");
    let imported: (String, String) = sqlx::query_as("SELECT db_name, db_user FROM sites WHERE uri = $1")
        .bind(&uri)
        .fetch_one(&system.pg)
        .await
        .unwrap();
    assert_eq!(imported, (db_name, db_user), "the database account the site really uses");

    // A second import finds it again and leaves the record alone.
    let out = cli_ok(&system, &["@platform_wp", "import"]).await;
    assert!(out.contains("has a record already"), "{out}");

    let out = cli_ok(&system, &[&site, "verify"]).await;
    assert!(out.contains("site verify"), "{out}");
    let (status, body) = page(&system, &uri).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&title), "the imported site still answers with its own title");
    drop(fpm);
}

const D7_SETTINGS: &str = "<?php\n$databases = array (\n  'default' => array (\n    'default' => array (\n      \
    'database' => 'example_org_db',\n      'username' => 'example_org_user',\n      'password' => 'Fixture-pw1',\n      \
    'host' => 'localhost',\n      'port' => '',\n      'driver' => 'mysql',\n      'prefix' => '',\n    ),\n  ),\n);\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_drupal7_site_is_imported_and_a_platform_is_deleted_only_without_sites() {
    let system = System::start().await;
    system.save_server(&mariadb_url()).await;

    // A Drupal 7 code base with one site made by hand, and its alias.
    let d7 = system.platforms_dir().join("drupal7");
    write_tree(
        &d7,
        &[
            ("index.php", "<?php\n"),
            ("includes/bootstrap.inc", "<?php\ndefine('VERSION', '7.101');\n"),
            ("sites/default/default.settings.php", "<?php\n"),
            ("sites/all/modules/README.txt", ""),
            ("sites/example.org/settings.php", D7_SETTINGS),
            ("sites/sites.php", "<?php\n$sites['www.example.org'] = 'example.org';\n"),
        ],
    );
    save_platform(&system, "@platform_d7", &d7).await;
    let out = cli_ok(&system, &["@platform_d7", "import"]).await;
    assert!(out.contains("found example.org: database `example_org_db` (user `example_org_user`"), "{out}");
    assert!(!out.contains("Fixture-pw1"), "the password stays out of the log: {out}");
    let (status, view) = system.get("/api/v1/sites/example.org").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "enabled", "{view}");
    assert_eq!(view["aliases"], json!(["www.example.org"]), "{view}");
    let account: (String, String) = sqlx::query_as("SELECT db_name, db_user FROM sites WHERE uri = 'example.org'")
        .fetch_one(&system.pg)
        .await
        .unwrap();
    assert_eq!(account, ("example_org_db".to_owned(), "example_org_user".to_owned()));
    let (_, platform) = system.get("/api/v1/platforms/platform_d7").await;
    assert_eq!(platform["platform_type"], "drupal7", "the import recorded the platform's type: {platform}");

    // A platform with a site on it is not deleted, and nothing changes.
    let (status, body) = request_task(&system, "@platform_d7", "delete").await;
    assert_eq!(status, 409, "{body}");
    let message = body.to_string();
    assert!(message.contains("1 site is on") && message.contains("@example.org"), "{message}");
    let out = system.cli(&["@platform_d7", "delete"]).await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(d7.join("sites/example.org/settings.php").is_file(), "the code base is untouched");
    let (status, _) = system.get("/api/v1/platforms/platform_d7").await;
    assert_eq!(status, 200, "the record stays");

    // A platform without sites goes, code base and record.
    let empty = system.platforms_dir().join("empty");
    write_tree(&empty, &[("index.php", "<?php echo 'hello';\n"), ("lib/code.php", "<?php\n")]);
    save_platform(&system, "@platform_empty", &empty).await;
    let listed = cli_ok(&system, &["list", "platforms"]).await;
    assert!(listed.contains("platform_empty"), "{listed}");
    // A site directory no record knows of still keeps the code base from going.
    write_tree(&empty, &[("sites/stray.example.com/settings.php", "<?php\n")]);
    let out = system.cli(&["@platform_empty", "delete"]).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("still holds 1 site directory (sites/stray.example.com)"), "{out}");
    assert!(empty.join("lib/code.php").is_file(), "nothing was removed");
    let (status, _) = system.get("/api/v1/platforms/platform_empty").await;
    assert_eq!(status, 200, "the record stays after a failed delete");
    std::fs::remove_dir_all(empty.join("sites")).unwrap();

    let out = cli_ok(&system, &["@platform_empty", "delete"]).await;
    assert!(out.contains("removed the platform root"), "{out}");
    assert!(!empty.exists(), "the platform's root is gone");
    assert!(system.platforms_dir().is_dir(), "the directory platforms live in stays");
    let (status, _) = system.get("/api/v1/platforms/platform_empty").await;
    assert_eq!(status, 404, "the record is gone");
    let listed = cli_ok(&system, &["list", "platforms"]).await;
    assert!(!listed.contains("platform_empty") && listed.contains("platform_d7"), "{listed}");
    // Its tasks and their logs stay.
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM tasks WHERE context = '@platform_empty' AND status = 'success'")
            .fetch_one(&system.pg)
            .await
            .unwrap();
    assert_eq!(count, 1);
}
