//! Backups, restore, clone and migrate as a provider drives them: the `aegir` CLI, the
//! whole system running, real WordPress sites from Debian's package on nginx and
//! php-fpm, MariaDB, and the backup store on disk. Content is written into the site's
//! database and files directory, and read back over HTTP and from disk.

use std::path::{Path, PathBuf};

use aegir_e2e::{Options, System, fetch, fetch_showing, mariadb_admin, random_suffix, start_with_php, write_tree};
use serde_json::Value;

/// A site installed on `platform` that answers with its title.
async fn installed_site(system: &System, platform: &str, label: &str) -> String {
    let uri = format!("{label}-{}.example.com", random_suffix());
    system.installed_site(platform, &uri, "Archive test").await;
    uri
}

/// The site's database name, as the API's record holds it.
async fn database_of(system: &System, uri: &str) -> String {
    sqlx::query_scalar("SELECT db_name FROM sites WHERE uri = $1").bind(uri).fetch_one(&system.pg).await.unwrap()
}

/// Sets the title of the site's first post, which its front page lists.
async fn set_post_title(database: &str, title: &str) {
    let mut conn = mariadb_admin().await;
    let sql = format!("UPDATE `{database}`.wp_posts SET post_title = ? WHERE ID = 1");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(title).execute(&mut conn).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "the site has its first post");
}

async fn option(database: &str, name: &str) -> String {
    let mut conn = mariadb_admin().await;
    let sql = format!("SELECT option_value FROM `{database}`.wp_options WHERE option_name = ?");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(name).fetch_one(&mut conn).await.unwrap()
}

fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

async fn site_view(system: &System, uri: &str) -> Value {
    let (status, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 200, "{view}");
    view
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_brings_back_content_and_files_byte_for_byte_and_a_clone_answers_with_its_own_uri() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.server_ready().await;
    let root = system.wordpress_platform("wp").await;
    let uri = installed_site(&system, "wp", "shop").await;
    let site = format!("@{uri}");
    let database = database_of(&system, &uri).await;

    // Content: a post title in the database, an uploaded file in the files directory.
    let original_title = format!("Original post {}", random_suffix());
    set_post_title(&database, &original_title).await;
    let files = root.join("sites").join(&uri).join("files");
    let photo = random_bytes(300 * 1024);
    write_tree_bytes(&files.join("2026/11/photo.bin"), &photo);
    let (status, body) = fetch_showing(&uri, system.http_port, &original_title, true).await;
    assert!(status == 200 && body.contains(&original_title), "the post shows: {status}");

    let out = system.cli_ok(&[&site, "backup"]).await;
    assert!(out.contains("site database dump") && out.contains("site archive create"), "{out}");
    let backups: Value = serde_json::from_str(&system.cli_ok(&["backups", &site, "--json"]).await).unwrap();
    assert_eq!(backups["total"], 1, "{backups}");
    let backup_id = backups["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(backups["items"][0]["size"].as_i64().unwrap() > 0);

    // Change everything the backup holds.
    set_post_title(&database, "Changed post").await;
    write_tree_bytes(&files.join("2026/11/photo.bin"), b"overwritten");
    write_tree(&files, &[("added-later.txt", "not in the backup")]);
    let (_, body) = fetch_showing(&uri, system.http_port, "Changed post", true).await;
    assert!(body.contains("Changed post"));

    let out = system.cli_ok(&[&site, "restore", &format!("--backup={backup_id}")]).await;
    assert!(out.contains("site archive check"), "the archive is checked before anything changes: {out}");
    let (status, body) = fetch_showing(&uri, system.http_port, &original_title, true).await;
    assert!(status == 200 && body.contains(&original_title), "the original post is back: {status}");
    assert_eq!(std::fs::read(files.join("2026/11/photo.bin")).unwrap(), photo, "the file is back byte for byte");
    assert!(!files.join("added-later.txt").exists(), "what came after the backup is gone");
    let (status, _, _) = fetch(&uri, system.http_port, &format!("/sites/{uri}/files/2026/11/photo.bin"), false).await;
    assert_eq!(status, 200, "the web server serves the restored file");
    // The restore kept a copy of the site as it was before.
    let backups: Value = serde_json::from_str(&system.cli_ok(&["backups", &site, "--json"]).await).unwrap();
    assert_eq!(backups["total"], 2);
    assert_eq!(backups["items"][0]["origin"], "restore");

    // A damaged archive is refused before anything changes.
    let archive = find_archive(&system, &backup_id);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    set_post_title(&database, "Kept post").await;
    let out = system.cli(&[&site, "restore", &format!("--backup={backup_id}")]).await;
    assert_eq!(out.code, Some(1), "a damaged archive fails the restore: {out}");
    assert!(out.stderr.contains("damaged") || out.stderr.contains("checksum"), "{out}");
    let (_, body) = fetch_showing(&uri, system.http_port, "Kept post", true).await;
    assert!(body.contains("Kept post"), "the site is left as it was");

    // clone: both sites answer, each with its own uri.
    let copy = format!("copy-{}.example.com", random_suffix());
    system.cli_ok(&[&site, "clone", &format!("--new_uri={copy}")]).await;
    let (status, body) = fetch_showing(&copy, system.http_port, "Kept post", true).await;
    assert!(status == 200 && body.contains("Kept post"), "the clone answers with the content: {status}");
    let copy_database = database_of(&system, &copy).await;
    assert_ne!(copy_database, database, "the clone has its own database");
    // The address the application keeps (with the test's port) is each site's own.
    let port = system.http_port;
    assert_eq!(option(&copy_database, "siteurl").await, format!("http://{copy}:{port}"));
    assert_eq!(option(&database, "siteurl").await, format!("http://{uri}:{port}"));
    set_post_title(&copy_database, "Only in the clone").await;
    let (_, body) = fetch_showing(&copy, system.http_port, "Only in the clone", true).await;
    assert!(body.contains("Only in the clone"));
    let (_, body) = fetch_showing(&uri, system.http_port, "Kept post", true).await;
    assert!(body.contains("Kept post") && !body.contains("Only in the clone"), "the original is its own");
    assert_eq!(site_view(&system, &copy).await["status"], "enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_migrates_to_another_platform_and_a_failed_update_puts_it_back() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.server_ready().await;
    let old_root = system.wordpress_platform("wp_old").await;
    let new_root = system.wordpress_platform("wp_new").await;
    // A third copy whose database update fails, as a broken upgrade would.
    let broken_root = system.wordpress_platform("wp_broken").await;
    write_tree(
        &broken_root,
        &[(
            "wp-content/mu-plugins/fail-update.php",
            "<?php\nadd_action('wp_upgrade', function () { throw new RuntimeException('update broken on purpose'); });\n",
        )],
    );

    let uri = installed_site(&system, "wp_old", "moving").await;
    let site = format!("@{uri}");
    let database = database_of(&system, &uri).await;
    let title = format!("Moving post {}", random_suffix());
    set_post_title(&database, &title).await;
    let files = |root: &Path| root.join("sites").join(&uri).join("files");
    let upload = random_bytes(64 * 1024);
    write_tree_bytes(&files(&old_root).join("upload.bin"), &upload);

    let out = system.cli_ok(&[&site, "migrate", "--platform=@platform_wp_new"]).await;
    assert!(out.contains("site update"), "the application's update ran: {out}");
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the site answers from its new platform: {status}");
    assert_eq!(site_view(&system, &uri).await["platform"], "@platform_wp_new");
    assert_eq!(std::fs::read(files(&new_root).join("upload.bin")).unwrap(), upload);
    assert!(!old_root.join("sites").join(&uri).exists(), "nothing of it is left on the old platform");

    // The code is newer than the database, so the update has work to do.
    let mut conn = mariadb_admin().await;
    let sql =
        format!("UPDATE `{database}`.wp_options SET option_value = option_value - 1 WHERE option_name = 'db_version'");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    let out = system.cli(&[&site, "migrate", "--platform=@platform_wp_broken"]).await;
    assert_eq!(out.code, Some(1), "the migrate fails: {out}");
    assert!(out.stderr.contains("update broken on purpose"), "the reason is the update's: {out}");
    assert!(out.stderr.contains("everything it had done was undone"), "{out}");
    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the site answers again from where it was: {status}");
    assert_eq!(site_view(&system, &uri).await["platform"], "@platform_wp_new");
    assert!(!broken_root.join("sites").join(&uri).exists(), "the copy on the broken platform is gone");
    assert_eq!(std::fs::read(files(&new_root).join("upload.bin")).unwrap(), upload);

    // A move to a new uri: the new name answers with the content, the old one no more,
    // and the application knows its new address.
    let renamed = format!("renamed-{}.example.com", random_suffix());
    system.cli_ok(&[&site, "migrate", &format!("--new_uri={renamed}")]).await;
    let (status, body) = fetch_showing(&renamed, system.http_port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the new uri answers: {status}");
    let vhosts: Vec<String> = std::fs::read_dir(system.config_dir().join("vhost.d"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!vhosts.iter().any(|v| v.contains(&uri)), "the old uri has no vhost any more: {vhosts:?}");
    assert!(vhosts.iter().any(|v| v.contains(&renamed)), "{vhosts:?}");
    assert!(!new_root.join("sites").join(&uri).exists(), "the old uri's directory is gone");
    assert_eq!(site_view(&system, &renamed).await["platform"], "@platform_wp_new");
    assert_eq!(system.get(&format!("/api/v1/sites/{uri}")).await.0, 404);
    let renamed_database = database_of(&system, &renamed).await;
    assert_eq!(option(&renamed_database, "home").await, format!("http://{renamed}:{}", system.http_port));
    assert_eq!(std::fs::read(files_of(&new_root, &renamed).join("upload.bin")).unwrap(), upload);
    let uri = renamed;
    let site = format!("@{uri}");

    // The final backup of a delete is kept, and listed after the site is gone.
    let out = system.cli_ok(&[&site, "delete"]).await;
    assert!(out.contains("site archive create"), "{out}");
    let backups: Value = serde_json::from_str(&system.cli_ok(&["backups", &site, "--json"]).await).unwrap();
    assert_eq!(backups["items"][0]["origin"], "delete", "{backups}");
}

fn files_of(root: &Path, uri: &str) -> PathBuf {
    root.join("sites").join(uri).join("files")
}

fn write_tree_bytes(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The archive of backup `id` in the test's file backup store.
fn find_archive(system: &System, id: &str) -> PathBuf {
    let store = system.backup_store_dir();
    let mut pending = vec![store.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.starts_with(id) && name.contains(".tar.") {
                return path;
            }
        }
    }
    panic!("no archive of backup {id} under {}", store.display());
}
