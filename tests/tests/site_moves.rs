//! The web server's part of restore, clone and migrate on real stacks: a site whose
//! files and database were put in place (here by a plain copy and `mysqldump | mysql`,
//! standing in for the backup-worker's unpack and the db-worker's load) is deployed on
//! another platform, under a new uri; the application's own update runs (and fails
//! when the application fails); the old platform's copy of the site is removed while
//! its vhost keeps serving the site from the new place.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use aegir_contract::*;
use aegir_e2e::{
    INSTALL_PATIENCE, System, copy_tree_resolving, create_site_database, drop_site_database, fetch_showing, free_port,
    mariadb_admin, mariadb_service, new_site, random_suffix, site_dir, start_with_fpm, web_server,
};

const WP_SKIP: [&str; 2] = ["wp-config.php", ".htaccess"];

/// A second copy of Debian's WordPress, as another platform of the same server.
fn second_wordpress(system: &System, name: &str) -> PathBuf {
    let root = system.platforms_dir().join(name);
    copy_tree_resolving(Path::new("/usr/share/wordpress"), &root, &WP_SKIP);
    root
}

/// `site` as it would be on the platform at `root`.
fn on_platform(site: &SiteContext, root: &Path, name: &str) -> SiteContext {
    let mut moved = site.clone();
    moved.platform.root = AbsolutePath::parse(root.to_str().unwrap()).unwrap();
    moved.platform.name = PlatformName::parse(name).unwrap();
    moved
}

/// Copies the database of `from` into the (existing) database of `to`, as the db-worker's
/// dump and load would: admin credentials through a 0600 option file, never argv.
fn copy_database(from: &SiteContext, to: &SiteContext) {
    let db = mariadb_service();
    let dir = tempfile::tempdir().unwrap();
    let options = dir.path().join("admin.cnf");
    std::fs::write(
        &options,
        format!(
            "[client]\nuser={}\npassword={}\nhost={}\nport={}\n",
            db.admin_user,
            db.admin_password.expose(),
            db.host,
            db.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&options, std::fs::Permissions::from_mode(0o600)).unwrap();
    let defaults = format!("--defaults-extra-file={}", options.display());
    let mut dump = std::process::Command::new("mysqldump")
        .args([defaults.as_str(), "--single-transaction", from.database.name.as_str()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mysqldump is installed");
    let load = std::process::Command::new("mysql")
        .args([defaults.as_str(), to.database.name.as_str()])
        .stdin(dump.stdout.take().unwrap())
        .output()
        .expect("mysql is installed");
    assert!(dump.wait().unwrap().success(), "mysqldump of {} failed", from.database.name);
    assert!(
        load.status.success(),
        "loading into {} failed: {}",
        to.database.name,
        String::from_utf8_lossy(&load.stderr)
    );
}

/// One value from the site's database, read as the admin.
async fn query_value(site: &SiteContext, sql: &str) -> String {
    let mut conn = mariadb_admin().await;
    let sql = sql.replace("DB.", &format!("`{}`.", site.database.name));
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap()
}

async fn execute(site: &SiteContext, sql: &str, binds: &[&str]) {
    let mut conn = mariadb_admin().await;
    let sql = sql.replace("DB.", &format!("`{}`.", site.database.name));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        query = query.bind(*bind);
    }
    query.execute(&mut conn).await.unwrap();
}

async fn wp_option(site: &SiteContext, name: &str) -> String {
    query_value(site, &format!("SELECT option_value FROM DB.wp_options WHERE option_name = '{name}'")).await
}

/// Sets WordPress's `db_version` one below the code's, as a site from an older
/// WordPress would have it, and returns the code's version.
async fn age_wordpress_database(site: &SiteContext) -> i64 {
    let current: i64 = wp_option(site, "db_version").await.parse().unwrap();
    execute(
        site,
        "UPDATE DB.wp_options SET option_value = ? WHERE option_name = 'db_version'",
        &[&(current - 1).to_string()],
    )
    .await;
    current
}

fn messages(log: &[LogLine]) -> Vec<String> {
    log.iter().map(|l| l.message.clone()).collect()
}

fn failure(result: &StepResult) -> (String, bool) {
    match &result.outcome {
        StepOutcome::Failed { reason, transient } => (reason.clone(), *transient),
        StepOutcome::Success { .. } => panic!("the step succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wordpress_moves_to_another_platform_and_uri_updates_and_leaves_its_old_files() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    system.step_ok(StepAction::HttpServerVerify { server: server.clone() }, "web server verify").await;

    // A WordPress site on platform A, with a post of its own that links to itself.
    let root_a = system.platform_from_package("wordpress", &WP_SKIP);
    let old = new_site(&server, &root_a, PlatformType::Wordpress, "wpold");
    create_site_database(&old).await;
    system.step_ok(StepAction::SiteInstall { site: old.clone() }, "install on platform A").await;
    let old_url = format!("http://{}:{port}", old.uri);
    let title = format!("Moving day {}", random_suffix());
    let content = format!(
        "<p><img src=\"{old_url}/sites/{}/files/logo.png\"> <a href=\"{old_url}/about/\">About</a></p>",
        old.uri
    );
    execute(
        &old,
        "INSERT INTO DB.wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, \
         post_status, post_name, to_ping, pinged, post_modified, post_modified_gmt, post_content_filtered, guid, \
         post_type) VALUES (1, NOW(), UTC_TIMESTAMP(), ?, ?, '', 'publish', 'moving-day', '', '', NOW(), \
         UTC_TIMESTAMP(), '', ?, 'post')",
        &[&content, &title, &format!("{old_url}/?p=moving-day")],
    )
    .await;
    let (status, body) = fetch_showing(old.uri.as_str(), port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the post is on the old site first: {status}");

    // Clone it to platform B under a new uri: files copied, database copied.
    let root_b = second_wordpress(&system, "wordpress-b");
    let new = new_site(&server, &root_b, PlatformType::Wordpress, "wpnew");
    let new_url = format!("http://{}:{port}", new.uri);
    copy_tree_resolving(&site_dir(&old), &site_dir(&new), &[]);
    create_site_database(&new).await;
    copy_database(&old, &new);
    let deploy = StepAction::SiteDeploy { site: new.clone(), renamed_from: Some(old.uri.clone()) };
    let (facts, log) = system.step_ok(deploy.clone(), "deploy under the new uri").await;
    let said = messages(&log);
    assert!(said.iter().any(|m| m == &format!("WordPress option siteurl was {old_url}, now {new_url}")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("wrote the vhost")), "{said:?}");
    assert!(!said.iter().any(|m| m.contains(new.database.password.expose())), "no password in the log");
    assert!(facts.packages.unwrap().iter().any(|p| p.name == "wordpress" && p.kind == PackageKind::Core));

    // The new uri answers with the post; WordPress stores its new address.
    let (status, body) = fetch_showing(new.uri.as_str(), port, &title, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&title), "the new site shows the copied post:\n{body}");
    assert_eq!(wp_option(&new, "siteurl").await, new_url);
    assert_eq!(wp_option(&new, "home").await, new_url);
    let post = query_value(&new, "SELECT post_content FROM DB.wp_posts WHERE post_name = 'moving-day'").await;
    assert_eq!(
        post,
        format!(
            "<p><img src=\"{new_url}/sites/{}/files/logo.png\"> <a href=\"{new_url}/about/\">About</a></p>",
            new.uri
        )
    );
    let guid = query_value(&new, "SELECT guid FROM DB.wp_posts WHERE post_name = 'moving-day'").await;
    assert_eq!(guid, format!("{new_url}/?p=moving-day"));
    // Settings were rendered for the new site, with Aegir's modes, and it counts as installed.
    let settings = site_dir(&new).join("wp-config.php");
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(text.contains(&new_url) && !text.contains(old.uri.as_str()), "{text}");
    assert_eq!(std::fs::metadata(&settings).unwrap().permissions().mode() & 0o7777, 0o440);
    assert_eq!(std::fs::metadata(site_dir(&new).join("files")).unwrap().permissions().mode() & 0o7777, 0o2775);
    let (_, log) = system.step_ok(StepAction::SiteInstall { site: new.clone() }, "install after deploy").await;
    assert!(messages(&log).iter().any(|m| m.contains("installer not run again")), "{log:?}");

    // The old site is untouched and still answers.
    let (status, body) = fetch_showing(old.uri.as_str(), port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the old site still answers: {status}");
    assert_eq!(wp_option(&old, "siteurl").await, old_url);

    // Deploying again changes nothing.
    let (_, log) = system.step_ok(deploy, "deploy again").await;
    assert!(messages(&log).iter().any(|m| m == &format!("WordPress already has its address {new_url}")), "{log:?}");

    // The update a move to a newer WordPress needs: wp_upgrade brings the database up.
    let current = age_wordpress_database(&new).await;
    let (result, log) = system.run_step_logged(StepAction::SiteUpdate { site: new.clone() }, INSTALL_PATIENCE).await;
    aegir_e2e::assert_step_success(&result, "update");
    let said = messages(&log);
    let updated = format!("WordPress database updated from version {} to {current}", current - 1);
    assert!(said.contains(&updated), "{said:?}");
    assert_eq!(wp_option(&new, "db_version").await, current.to_string());
    assert_eq!(fetch_showing(new.uri.as_str(), port, &title, true).await.0, 200);

    // An update the application refuses fails the step for good, with its words.
    let mu_plugins = root_b.join("wp-content/mu-plugins");
    std::fs::create_dir_all(&mu_plugins).unwrap();
    std::fs::write(
        mu_plugins.join("refuse-upgrade.php"),
        "<?php\nadd_action('wp_upgrade', function () { throw new RuntimeException('upgrade refused by the test plugin'); });\n",
    )
    .unwrap();
    age_wordpress_database(&new).await;
    let (result, log) = system.run_step_logged(StepAction::SiteUpdate { site: new.clone() }, INSTALL_PATIENCE).await;
    let (reason, transient) = failure(&result);
    assert!(!transient, "an application's failed update is not retried");
    assert!(reason.contains("upgrade refused by the test plugin"), "{reason}");
    assert!(reason.contains("wp_upgrade"), "the reason says which step of the application failed: {reason}");
    assert!(messages(&log).iter().any(|m| m.contains("upgrade refused by the test plugin")), "streamed: {log:?}");
    std::fs::remove_file(mu_plugins.join("refuse-upgrade.php")).unwrap();

    // A migrate of the old site to platform B under its own uri: once deployed there, its
    // vhost serves platform B and the copy on platform A goes, vhost kept.
    let moved = on_platform(&old, &root_b, "platform_wpnew");
    copy_tree_resolving(&site_dir(&old), &site_dir(&moved), &[]);
    system.step_ok(StepAction::SiteDeploy { site: moved.clone(), renamed_from: None }, "deploy on platform B").await;
    let vhost = system.vhost_path(&old);
    assert!(std::fs::read_to_string(&vhost).unwrap().contains(&format!("root {};", root_b.display())));
    // Platform B's files are the ones served: they cannot be removed from under the vhost.
    let result = system.run_step(StepAction::SiteFilesRemove { site: moved.clone() }).await;
    let (reason, _) = failure(&result);
    assert!(reason.contains("still serves") && reason.contains("deploy the site"), "{reason}");
    assert!(site_dir(&moved).is_dir());
    let (_, log) = system.step_ok(StepAction::SiteFilesRemove { site: old.clone() }, "files remove").await;
    assert!(messages(&log).iter().any(|m| m.contains("removed the site directory")), "{log:?}");
    assert!(!site_dir(&old).exists(), "the copy on platform A is gone");
    assert!(vhost.is_file(), "the vhost is kept");
    let (status, body) = fetch_showing(old.uri.as_str(), port, &title, true).await;
    assert!(status == 200 && body.contains(&title), "the site answers from platform B: {status}");
    // Removing again is fine.
    system.step_ok(StepAction::SiteFilesRemove { site: old.clone() }, "files remove again").await;

    for site in [&moved, &new] {
        system.step_ok(StepAction::SiteRemove { site: site.clone() }, "remove").await;
        assert!(!site_dir(site).exists() && !system.vhost_path(site).exists());
    }
    drop_site_database(&old).await;
    drop_site_database(&new).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mediawiki_update_runs_update_php_and_the_wiki_still_answers() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    system.step_ok(StepAction::HttpServerVerify { server: server.clone() }, "web server verify").await;
    let root = system.platform_from_package("mediawiki", &["LocalSettings.php", "config", "images"]);
    let mw = new_site(&server, &root, PlatformType::Mediawiki, "mwup");
    create_site_database(&mw).await;
    system.step_ok(StepAction::SiteInstall { site: mw.clone() }, "MediaWiki install").await;

    let (_, log) = system.step_ok(StepAction::SiteUpdate { site: mw.clone() }, "MediaWiki update").await;
    let said = messages(&log);
    // update.php's own output, line by line, then our verdict.
    assert!(said.iter().any(|m| m.starts_with("MediaWiki ") && m.ends_with(" Updater")), "{said:?}");
    assert!(said.iter().any(|m| m.starts_with("Going to run database updates for")), "{said:?}");
    assert!(said.iter().any(|m| m.starts_with("Done in")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("update (update.php) finished") && m.contains("is up to date with")));
    assert!(!said.iter().any(|m| m.contains(mw.database.password.expose())), "no password in the log");
    let (status, body) = fetch_showing(mw.uri.as_str(), port, mw.title.as_str(), true).await;
    assert!(status == 200 && body.contains(mw.title.as_str()), "the wiki still answers: {status}\n{body}");

    system.step_ok(StepAction::SiteRemove { site: mw.clone() }, "remove").await;
    assert!(!site_dir(&mw).exists() && !system.vhost_path(&mw).exists());
    drop_site_database(&mw).await;
}
