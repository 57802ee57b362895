//! The site lifecycle as a provider drives it: everything through the `aegir` CLI, the
//! whole system running, a real WordPress from Debian's package on nginx and php-fpm,
//! and MariaDB checked directly.

use std::path::PathBuf;

use aegir_e2e::{
    Options, System, fetch_showing, mariadb_admin, mariadb_url, random_suffix, start_with_php, write_tree,
};

/// A verified server and a verified WordPress platform `@platform_wp` on it.
async fn wordpress_platform(system: &System) -> PathBuf {
    system.server_ready().await;
    system.wordpress_platform("wp").await
}

async fn save_site(system: &System, uri: &str, title: &str) {
    save_site_on(system, "@platform_wp", uri, title).await;
}

async fn save_site_on(system: &System, platform: &str, uri: &str, title: &str) {
    let site = format!("@{uri}");
    let platform = format!("--platform={platform}");
    let db = format!("--db_server=@{}", system.server);
    let title = format!("--title={title}");
    system.cli_ok(&["save", &site, "--context_type=site", &platform, &db, &title]).await;
}

/// Databases and users whose names start like the site's (its uri with `_` for `.` and `-`).
async fn db_traces(uri: &str) -> (i64, i64) {
    let prefix: String = uri.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(20).collect();
    let pattern = format!("{prefix}%");
    let mut conn = mariadb_admin().await;
    let dbs: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?")
        .bind(&pattern)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let users: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mysql.user WHERE User LIKE ?")
        .bind(&pattern)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (dbs.0, users.0)
}

fn vhosts_naming(system: &System, uri: &str) -> Vec<String> {
    std::fs::read_dir(system.config_dir().join("vhost.d"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(uri))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wordpress_site_is_installed_disabled_enabled_and_deleted_through_the_cli() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    let root = wordpress_platform(&system).await;
    let uri = format!("blog-{}.example.com", random_suffix());
    let title = format!("Blog {}", random_suffix());
    save_site(&system, &uri, &title).await;
    let site = format!("@{uri}");

    let out = system.cli_ok(&[&site, "install"]).await;
    assert!(out.contains("site database create") && out.contains("site install"), "{out}");
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&title), "the page shows the site's own title");
    assert_eq!(db_traces(&uri).await, (1, 2), "one database; its user for localhost and 127.0.0.1");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["status"], "enabled", "{view}");

    system.cli_ok(&[&site, "disable"]).await;
    let (status, body) = fetch_showing(&uri, system.http_port, &title, false).await;
    assert_ne!(status, 200, "a disabled site is not served");
    assert!(!body.contains(&title) && body.to_lowercase().contains("disabled"), "{status} {body}");
    system.cli_ok(&[&site, "enable"]).await;
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "enabled again: {status}");

    let out = system.cli_ok(&[&site, "delete"]).await;
    assert!(out.contains("site archive create"), "the delete takes a final backup first: {out}");
    let (_, body) = fetch_showing(&uri, system.http_port, &title, false).await;
    assert!(!body.contains(&title), "the host no longer answers with the site");
    assert_eq!(db_traces(&uri).await, (0, 0), "database and user are gone");
    assert!(!root.join("sites").join(&uri).exists(), "the site's files are gone");
    assert!(vhosts_naming(&system, &uri).is_empty(), "the vhost is gone");
    let (status, _) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_install_is_rolled_back_and_other_sites_keep_answering() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    let root = wordpress_platform(&system).await;
    let good = format!("good-{}.example.com", random_suffix());
    save_site(&system, &good, "Good site").await;
    system.cli_ok(&[&format!("@{good}"), "install"]).await;

    // Break the platform's installer after the good site is in.
    write_tree(
        &root,
        &[("wp-admin/includes/upgrade.php", "<?php\nfwrite(STDERR, 'installer broken on purpose');\nexit(3);\n")],
    );
    let bad = format!("bad-{}.example.com", random_suffix());
    save_site(&system, &bad, "Bad site").await;
    let out = system.cli(&[&format!("@{bad}"), "install"]).await;
    assert_eq!(out.code, Some(1), "the install fails: {out}");
    assert!(out.stdout.contains("rolling back"), "the log says it rolls back: {out}");
    assert!(out.stderr.contains("everything it had done was undone"), "{out}");

    assert_eq!(db_traces(&bad).await, (0, 0), "no database, no user left");
    assert!(!root.join("sites").join(&bad).exists(), "no files left");
    assert!(vhosts_naming(&system, &bad).is_empty(), "no vhost left");
    let (_, view) = system.get(&format!("/api/v1/sites/{bad}")).await;
    assert_eq!(view["status"], "failed", "{view}");
    let (status, body) = fetch_showing(&good, system.http_port, "Good site", true).await;
    assert!(status == 200 && body.contains("Good site"), "the other site still answers: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mediawiki_site_is_installed_answers_and_is_deleted_through_the_cli() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);
    system.cli_ok(&[&server, "verify"]).await;
    let root = system.platform_from_package("mediawiki", &["LocalSettings.php", "config", "images"]);
    let root_arg = format!("--root={}", root.display());
    let web = format!("--web_server={server}");
    system.cli_ok(&["save", "@platform_mw", "--context_type=platform", &root_arg, &web]).await;
    let out = system.cli_ok(&["@platform_mw", "verify"]).await;
    assert!(out.contains("mediawiki"), "{out}");

    let uri = format!("wiki-{}.example.com", random_suffix());
    let title = format!("Wiki {}", random_suffix());
    save_site_on(&system, "@platform_mw", &uri, &title).await;
    system.cli_ok(&[&format!("@{uri}"), "install"]).await;
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&title), "the wiki shows its own name");
    assert_eq!(db_traces(&uri).await, (1, 2));

    // The wiki's own counts, as Special:Statistics has them: the installer's account,
    // and its Main Page with the edit that made it.
    system.cli_ok(&[&format!("@{uri}"), "stats"]).await;
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    let figures = &view["stats"]["figures"];
    assert_eq!(figures["users"], 1, "{view}");
    assert!(figures["pages"].as_u64().unwrap() >= 1 && figures["edits"].as_u64().unwrap() >= 1, "{view}");

    system.cli_ok(&[&format!("@{uri}"), "delete"]).await;
    let (_, body) = fetch_showing(&uri, system.http_port, &title, false).await;
    assert!(!body.contains(&title));
    assert_eq!(db_traces(&uri).await, (0, 0), "database and user are gone");
    assert!(!root.join("sites").join(&uri).exists(), "the site's files are gone");
}
