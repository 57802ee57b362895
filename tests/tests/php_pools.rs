//! PHP per site: each site's PHP runs in a php-fpm pool of its own, as a system user of
//! its own, limited to its platform, its files and its own temporary directory; a site
//! can be moved to another installed PHP version with a verify.
//!
//! Real nginx, real php-fpm masters (one per version, see [`aegir_e2e::fpm`]) and
//! WordPress from Debian's package, installed by the http-worker's steps; a probe PHP
//! file on the platform shows what each site's PHP runs as and may read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use aegir_contract::*;
use aegir_e2e::fpm::{FpmMasters, pool_user};
use aegir_e2e::{
    Options, System, create_site_database, drop_site_database, fetch, fetch_showing, free_port, new_site, site_dir,
    web_server, write_tree,
};

/// Shows what the PHP answering it runs as and on, and what it may read (`?read=PATH`).
const PROBE: &str = r#"<?php
header('Content-Type: text/plain');
echo 'version=' . PHP_VERSION . "\n";
echo 'sapi=' . PHP_SAPI . "\n";
echo 'euid=' . posix_geteuid() . "\n";
echo 'user=' . posix_getpwuid(posix_geteuid())['name'] . "\n";
echo 'pid=' . getmypid() . "\n";
echo 'ppid=' . posix_getppid() . "\n";
echo 'open_basedir=' . ini_get('open_basedir') . "\n";
if (isset($_GET['read'])) {
    $errors = [];
    set_error_handler(function ($no, $message) use (&$errors) { $errors[] = $message; return true; });
    $text = file_get_contents($_GET['read']);
    restore_error_handler();
    echo $text === false ? 'read=failed: ' . implode(' / ', $errors) . "\n" : 'read=ok: ' . $text . "\n";
}
"#;

/// The probe's answer for `host` as `key=value` pairs.
async fn probe(host: &str, port: u16, query: &str) -> Vec<(String, String)> {
    // A pool just (re)loaded by its master may refuse a first connection (502) for a moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let (status, body) = loop {
        let (status, body, _) = fetch(host, port, &format!("/aegir-probe.php{query}"), false).await;
        if status != 502 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "the probe answers on {host}: {body}");
    body.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn value<'a>(answer: &'a [(String, String)], key: &str) -> &'a str {
    answer.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {answer:?}"))
}

/// The probe's answer once it comes from the master `ppid` (a reload of nginx or of
/// php-fpm takes effect a moment after the step returns on old workers).
async fn probe_from(host: &str, port: u16, ppid: u32) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = probe(host, port, "").await;
        if value(&answer, "ppid") == ppid.to_string() || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The uid a process runs as, from /proc.
fn process_uid(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.split(':').next() == Some(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sites_on_one_platform_run_in_their_own_pools_as_their_own_users_and_switch_php_versions() {
    // 8.2 is Debian 12's; "8.3" is a second master running it under that name.
    let masters = FpmMasters::start(&["8.2", "8.3"]);
    let options = masters.options(Options::default()).env("http-worker", "AEGIR_PHP_DEFAULT_VERSION", "8.2");
    let system = System::start_with(options).await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);

    // Server verify finds the installed versions and the default.
    let (facts, _) = system.step_ok(StepAction::HttpServerVerify { server: server.clone() }, "server verify").await;
    let versions: Vec<&str> = facts.php_versions.as_deref().unwrap_or_default().iter().map(|v| v.as_str()).collect();
    assert_eq!(versions, ["8.2", "8.3"]);
    assert_eq!(facts.php_default_version.as_ref().map(PhpVersion::as_str), Some("8.2"));

    // Two WordPress sites on one platform.
    let root = system.platform_from_package("wordpress", &["wp-config.php", ".htaccess"]);
    write_tree(&root, &[("aegir-probe.php", PROBE)]);
    let a = new_site(&server, &root, PlatformType::Wordpress, "poola");
    let b = new_site(&server, &root, PlatformType::Wordpress, "poolb");
    for site in [&a, &b] {
        create_site_database(site).await;
        let (_, log) = system.step_ok(StepAction::SiteInstall { site: site.clone() }, "install").await;
        let messages: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("wrote the php-fpm pool")), "{messages:?}");
        let (status, body) = fetch_showing(site.uri.as_str(), port, site.title.as_str(), true).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(site.title.as_str()), "WordPress answers through the site's pool:\n{body}");
    }

    // Each site has a pool of its own on the default version's master, as a user of its own.
    let pool_a = masters.pool_of("8.2", a.uri.as_str()).expect("a pool for site A on PHP 8.2");
    let pool_b = masters.pool_of("8.2", b.uri.as_str()).expect("a pool for site B on PHP 8.2");
    let (user_a, user_b) = (pool_user(&pool_a), pool_user(&pool_b));
    assert_ne!(user_a, user_b);
    assert!(user_exists(&user_a) && user_exists(&user_b));
    let master_82 = masters.master_pid("8.2");
    for (site, user) in [(&a, &user_a), (&b, &user_b)] {
        let answer = probe(site.uri.as_str(), port, "").await;
        assert_eq!(value(&answer, "user"), user, "{answer:?}");
        assert_eq!(value(&answer, "sapi"), "fpm-fcgi");
        assert_eq!(value(&answer, "ppid"), master_82.to_string(), "served by the PHP 8.2 master");
        // The process itself, as the system sees it, runs as the site's user.
        let uid = process_uid(value(&answer, "pid"));
        assert_eq!(uid.to_string(), value(&answer, "euid"));
        assert_ne!(uid, 0);
        // The site's settings and files directory are its user's.
        let settings = site_dir(site).join("wp-config.php");
        assert_eq!(std::fs::metadata(&settings).unwrap().uid(), uid, "{}", settings.display());
        assert_eq!(std::fs::metadata(site_dir(site).join("files")).unwrap().uid(), uid);
        assert!(value(&answer, "open_basedir").starts_with(&format!("{}/:", root.display())), "{answer:?}");
    }

    // Site A's PHP reads its own settings, but not site B's settings or files, nor
    // anything outside its platform, files and temporary directory.
    let own = probe(a.uri.as_str(), port, &format!("?read={}/wp-config.php", site_dir(&a).display())).await;
    assert!(value(&own, "read").starts_with("ok: "), "site A reads its own settings: {own:?}");
    std::fs::write(site_dir(&b).join("files/private-note.txt"), "B's secret").unwrap();
    for path in [site_dir(&b).join("wp-config.php"), site_dir(&b).join("files/private-note.txt")] {
        let answer = probe(a.uri.as_str(), port, &format!("?read={}", path.display())).await;
        let read = value(&answer, "read");
        assert!(read.starts_with("failed: ") && read.contains("Permission denied"), "{}: {read}", path.display());
        assert!(!read.contains("B's secret") && !read.contains(b.database.name.as_str()));
    }
    let answer = probe(a.uri.as_str(), port, "?read=/etc/passwd").await;
    let read = value(&answer, "read");
    assert!(read.starts_with("failed: ") && read.contains("open_basedir restriction"), "{read}");

    // The check page reports the PHP version the site runs.
    let answer = probe(a.uri.as_str(), port, "").await;
    let installed = std::process::Command::new("php").args(["-r", "echo PHP_VERSION;"]).output().unwrap();
    assert_eq!(value(&answer, "version"), String::from_utf8_lossy(&installed.stdout));

    // A version that is not installed is refused, and the site keeps its pool.
    let mut on_74 = a.clone();
    on_74.php_version = Some(PhpVersion::parse("7.4").unwrap());
    let (result, _) = system.run_step_logged(StepAction::SiteVerify { site: on_74 }, Duration::from_secs(120)).await;
    match result.outcome {
        StepOutcome::Failed { reason, .. } => {
            assert!(reason.contains("PHP 7.4 is not installed") && reason.contains("8.2, 8.3"), "{reason}")
        }
        other => panic!("a site on PHP 7.4 verified: {other:?}"),
    }
    assert!(pool_a.is_file());
    assert_eq!(probe(a.uri.as_str(), port, "").await.iter().find(|(k, _)| k == "user").unwrap().1, user_a);

    // Site A moves to 8.3 with a verify: its pool goes to the 8.3 master, B stays on 8.2.
    let mut a_83 = a.clone();
    a_83.php_version = Some(PhpVersion::parse("8.3").unwrap());
    let (_, log) = system.step_ok(StepAction::SiteVerify { site: a_83.clone() }, "verify on PHP 8.3").await;
    let messages: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("moved from PHP 8.2 to PHP 8.3")), "{messages:?}");
    assert!(masters.pool_of("8.3", a.uri.as_str()).is_some(), "site A's pool is on the 8.3 master");
    assert!(masters.pool_of("8.2", a.uri.as_str()).is_none(), "site A's pool left the 8.2 master");
    let master_83 = masters.master_pid("8.3");
    let answer = probe_from(a.uri.as_str(), port, master_83).await;
    assert_eq!(value(&answer, "ppid"), master_83.to_string(), "site A is served by the 8.3 master: {answer:?}");
    assert_eq!(value(&answer, "user"), user_a);
    let (status, body) = fetch_showing(a.uri.as_str(), port, a.title.as_str(), true).await;
    assert_eq!(status, 200, "{body}");
    let answer = probe(b.uri.as_str(), port, "").await;
    assert_eq!(value(&answer, "ppid"), master_82.to_string(), "site B stays on 8.2: {answer:?}");

    // Removing site B removes its pool, temporary directory and user; site A answers on.
    system.step_ok(StepAction::SiteRemove { site: b.clone() }, "remove B").await;
    assert!(masters.pool_of("8.2", b.uri.as_str()).is_none());
    assert!(!user_exists(&user_b), "the system user of B is removed");
    assert!(!masters.tmp_dir().join(&user_b).exists());
    let (status, body) = fetch_showing(a.uri.as_str(), port, a.title.as_str(), true).await;
    assert_eq!(status, 200, "{body}");

    system.step_ok(StepAction::SiteRemove { site: a_83.clone() }, "remove A").await;
    assert!(masters.pool_of("8.3", a.uri.as_str()).is_none());
    assert!(!user_exists(&user_a));
    assert!(!Path::new(&site_dir(&a)).exists());
    for site in [&a, &b] {
        drop_site_database(site).await;
    }
}

/// `aegir save @<uri>` of a WordPress site on `@platform_wp`, with `extra` options.
async fn save_site(system: &System, uri: &str, title: &str, extra: &[&str]) -> aegir_e2e::CliOutput {
    let site = format!("@{uri}");
    let db = format!("--db_server=@{}", system.server);
    let title = format!("--title={title}");
    let mut args = vec!["save", &site, "--context_type=site", "--platform=@platform_wp", &db, &title];
    args.extend_from_slice(extra);
    system.cli(&args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_chooses_an_installed_php_version_and_moves_to_another_with_a_verify() {
    let masters = FpmMasters::start(&["8.2", "8.3"]);
    let options = masters.options(Options::default()).env("http-worker", "AEGIR_PHP_DEFAULT_VERSION", "8.2");
    let system = System::start_with(options).await;
    system.server_ready().await;
    let port = system.http_port;

    // The server's verify stored the versions its web server has.
    let (_, server) = system.get(&format!("/api/v1/servers/{}", system.server)).await;
    assert_eq!(server["http"]["php_versions"], serde_json::json!(["8.2", "8.3"]), "{server}");
    assert_eq!(server["http"]["php_default_version"], "8.2", "{server}");

    let root = system.wordpress_platform("wp").await;
    write_tree(&root, &[("aegir-probe.php", PROBE)]);
    let uri = format!("php-{}.example.com", aegir_e2e::random_suffix());
    let title = format!("PHP {}", aegir_e2e::random_suffix());

    // A version the server does not have is refused, saying which it has.
    let out = save_site(&system, &uri, &title, &["--php_version=7.4"]).await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("PHP 7.4 is not installed") && out.stderr.contains("8.2, 8.3"), "{out}");
    let body = serde_json::json!({"platform": "@platform_wp", "php_version": "7.4"});
    let answer = system.http.put(format!("{}/api/v1/sites/{uri}", system.api)).json(&body).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["error"]["field"], "php_version", "{answer}");

    // On 8.3 from its install.
    let out = save_site(&system, &uri, &title, &["--php_version=8.3"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    let site = format!("@{uri}");
    system.cli_ok(&[&site, "install"]).await;
    let (status, body) = fetch_showing(&uri, port, &title, true).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["php_version"], "8.3", "{view}");
    let answer = probe_from(&uri, port, masters.master_pid("8.3")).await;
    assert_eq!(value(&answer, "ppid"), masters.master_pid("8.3").to_string(), "{answer:?}");
    let pool = masters.pool_of("8.3", &uri).expect("the site's pool is on the 8.3 master");
    let user = pool_user(&pool);
    assert_eq!(value(&answer, "user"), user);

    // Saved on 8.2, the site moves there with its next verify; its users do not notice.
    let out = save_site(&system, &uri, &title, &["--php_version=8.2"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("8.2"), "{out}");
    let out = system.cli_ok(&[&site, "verify"]).await;
    assert!(out.contains("moved from PHP 8.3 to PHP 8.2"), "{out}");
    let answer = probe_from(&uri, port, masters.master_pid("8.2")).await;
    assert_eq!(value(&answer, "ppid"), masters.master_pid("8.2").to_string(), "{answer:?}");
    assert!(masters.pool_of("8.3", &uri).is_none() && masters.pool_of("8.2", &uri).is_some());
    let (status, body) = fetch_showing(&uri, port, &title, true).await;
    assert_eq!(status, 200, "{body}");

    // Moved to another platform, the site keeps its pool and user, now limited to the
    // new platform.
    let root2 = system.wordpress_platform("wp2").await;
    write_tree(&root2, &[("aegir-probe.php", PROBE)]);
    system.cli_ok(&[&site, "migrate", "--platform=@platform_wp2"]).await;
    let (status, body) = fetch_showing(&uri, port, &title, true).await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let answer = probe(&uri, port, "").await;
        if value(&answer, "open_basedir").starts_with(&format!("{}/:", root2.display()))
            || tokio::time::Instant::now() > deadline
        {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(value(&answer, "open_basedir").starts_with(&format!("{}/:", root2.display())), "{answer:?}");
    assert_eq!(value(&answer, "user"), user);
    assert_eq!(value(&answer, "ppid"), masters.master_pid("8.2").to_string());

    // Deleting the site takes its pool and its user away.
    system.cli_ok(&[&site, "delete"]).await;
    assert!(masters.pool_of("8.2", &uri).is_none());
    assert!(!user_exists(&user));
}
