//! `aegir import-aegir DIR` against a real system: a directory of drush alias files
//! written as Aegir writes them (tests/fixtures/aegir-drush, with this test's names and
//! paths filled in) describes a server, a WordPress platform and a site that exist on
//! disk and in MariaDB but not in this system. The import creates the same contexts,
//! verifies them, gives the site what only its alias knows, and reports what it could
//! not map.

use std::path::Path;

use aegir_e2e::{Options, fetch, fetch_showing, mariadb_url, random_suffix, start_with_php};

#[tokio::test(flavor = "multi_thread")]
async fn an_aegir_drush_directory_becomes_the_same_servers_platforms_and_sites() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.server_ready().await;
    let root = system.wordpress_platform("wp").await;
    let uri = format!("legacy-{}.example.com", random_suffix().to_lowercase());
    let title = format!("Legacy blog {}", random_suffix());
    system.installed_site("wp", &uri, &title).await;
    // As in an Aegir being moved here: the site is on disk and in MariaDB, not in this system.
    sqlx::query("DELETE FROM sites WHERE uri = $1").bind(&uri).execute(&system.pg).await.unwrap();

    let drush = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/aegir-drush");
    let db_port = mariadb_url().rsplit_once(':').map_or("3306".to_owned(), |(_, p)| p.to_owned());
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        let name = name.replace("server_TEST", &system.server).replace("SITE", &uri);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("{{SERVER}}", &system.server)
            .replace("{{HTTP_PORT}}", &system.http_port.to_string())
            .replace("{{MASTER_DB}}", &mariadb_url())
            .replace("{{DB_PORT}}", &db_port)
            .replace("{{ROOT}}", &root.display().to_string())
            .replace("{{URI}}", &uri);
        std::fs::write(drush.path().join(name), text).unwrap();
    }

    let out = system.cli(&["import-aegir", drush.path().to_str().unwrap()]).await;
    // Some aliases cannot be mapped, so the import says so in its exit code.
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("imported 2 server(s), 1 platform(s), 1 of 2 site(s); 0 task(s) failed"), "{out}");
    for expected in [
        "not mapped: @gone.example.com: left out: @platform_wp's import did not find it on disk",
        "not mapped: @server_old: web service `lighttpd` is not supported",
        "not mapped: @hostmaster: left out: Aegir's own front end",
        "not mapped: @platform_hostmaster: left out",
    ] {
        assert!(out.stderr.contains(expected), "{expected}\n{out}");
    }
    assert!(out.stdout.contains(&format!("created the record of @{uri}")), "the platform import found it: {out}");

    // The same contexts, with what the aliases said.
    let (status, server) = system.get(&format!("/api/v1/servers/{}", system.server)).await;
    assert_eq!(status, 200, "{server}");
    assert_eq!(server["http"]["service_type"], "nginx", "{server}");
    assert_eq!(server["http"]["port"], system.http_port, "{server}");
    let (status, old) = system.get("/api/v1/servers/server_old").await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["remote_host"], "old.example.com", "{old}");
    let (status, platform) = system.get("/api/v1/platforms/platform_wp").await;
    assert_eq!(status, 200, "{platform}");
    assert_eq!(platform["root"], root.display().to_string(), "{platform}");
    let (status, site) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 200, "{site}");
    assert_eq!(site["status"], "enabled", "{site}");
    assert_eq!(site["client"], "acme", "{site}");
    assert_eq!(site["aliases"], serde_json::json!([format!("www.{uri}")]), "{site}");
    assert_eq!(site["redirection"], true, "{site}");
    let (status, client) = system.get("/api/v1/clients/acme").await;
    assert_eq!(status, 200, "the alias's client was made: {client}");
    let (status, _) = system.get("/api/v1/sites/gone.example.com").await;
    assert_eq!(status, 404, "nothing is made for a site that is not on disk");

    // Verified and serving: its own name, and the alias redirecting to it.
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the imported site answers: {status}");
    let (status, _, location) = fetch(&format!("www.{uri}"), system.http_port, "/", false).await;
    assert_eq!(status, 301, "the alias redirects");
    assert!(location.contains(&uri), "to the site's own name: {location}");
}
