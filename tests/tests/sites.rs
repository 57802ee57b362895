//! Sites end to end on real stacks: WordPress and MediaWiki from Debian's packages,
//! installed by the http-worker on nginx (and WordPress on apache) through php-fpm,
//! then asked for their pages over HTTP with their own host names.
//!
//! The site steps are published straight to the http-worker's work queue as the
//! scheduler would send them, and their results (and log lines) read from the events
//! exchange, so these tests do not depend on the API's site endpoints. The site's
//! MariaDB database and user are created by the test itself, as the db-worker's
//! `site database create` step would.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use aegir_contract::*;
use aegir_e2e::{
    Apache, INSTALL_PATIENCE, System, create_site_database, drop_site_database, fetch, fetch_showing, free_port,
    new_site, site_dir, start_with_fpm, web_server, write_tree,
};

/// `GET http://<host>:<port><path>` answered by 127.0.0.1, as a browser would ask.
/// Redirects (e.g. MediaWiki's `/` to its main page) are followed.
async fn get(host: &str, port: u16, path: &str) -> (u16, String) {
    let (status, body, _) = fetch(host, port, path, true).await;
    (status, body)
}

/// Asks until the answer has `status` (a reload takes effect a moment after the
/// signal), and returns the last answer.
async fn get_expecting(host: &str, port: u16, path: &str, status: u16) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut matched = 0;
    loop {
        let answer = get(host, port, path).await;
        // Old nginx workers may take a last connection right after a reload: wait
        // until the answer is steady.
        matched = if answer.0 == status { matched + 1 } else { 0 };
        if matched == 3 || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`get`], with the `Location` header of a redirect.
async fn get_with_location(host: &str, port: u16, path: &str) -> (u16, String, String) {
    fetch(host, port, path, false).await
}

async fn verify_server(system: &System, server: &ServerContext) {
    system.step_ok(StepAction::HttpServerVerify { server: server.clone() }, "web server verify").await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn group_of(path: &Path) -> String {
    let gid = std::fs::metadata(path).unwrap().gid();
    nix_group_name(gid)
}

fn nix_group_name(gid: u32) -> String {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .find_map(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            (parts.get(2) == Some(&gid.to_string().as_str())).then(|| parts[0].to_owned())
        })
        .unwrap_or_else(|| gid.to_string())
}

/// Settings are the web server's to read and nobody's to write; the files directory
/// is the web server's to write; the vhost (holding the password) is root's alone.
fn assert_modes(system: &System, site: &SiteContext, settings: &str) {
    let dir = site_dir(site);
    let settings = dir.join(settings);
    assert_eq!(mode(&settings), 0o440, "{}", settings.display());
    assert_eq!(group_of(&settings), "www-data", "{}", settings.display());
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(!text.contains(site.database.password.expose()), "no password in {}", settings.display());
    assert_eq!(mode(&dir.join("files")), 0o2775);
    assert_eq!(group_of(&dir.join("files")), "www-data");
    assert_eq!(mode(&dir), 0o755);
    let vhost = system.vhost_path(site);
    assert_eq!(mode(&vhost), 0o600, "the vhost holds the database password");
    assert_eq!(std::fs::metadata(&vhost).unwrap().uid(), 0);
    assert!(std::fs::read_to_string(&vhost).unwrap().contains(site.database.password.expose()));
}

fn assert_gone(system: &System, site: &SiteContext) {
    assert!(!site_dir(site).exists(), "{} is left behind", site_dir(site).display());
    assert!(!system.vhost_path(site).exists(), "the vhost of {} is left behind", site.uri);
}

#[tokio::test(flavor = "multi_thread")]
async fn wordpress_and_mediawiki_on_nginx_install_answer_disable_enable_and_remove() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    verify_server(&system, &server).await;

    // WordPress: install, and it answers with its own title.
    let wp_root = system.platform_from_package("wordpress", &["wp-config.php", ".htaccess"]);
    let wp = new_site(&server, &wp_root, PlatformType::Wordpress, "wp");
    create_site_database(&wp).await;
    let (facts, log) = system.step_ok(StepAction::SiteInstall { site: wp.clone() }, "WordPress install").await;
    let messages: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("wrote the vhost")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("the WordPress installer finished")), "{messages:?}");
    assert!(!messages.iter().any(|m| m.contains(wp.database.password.expose())), "no password in the log");
    let packages = facts.packages.expect("packages found at install");
    assert!(packages.iter().any(|p| p.name == "akismet" && p.kind == PackageKind::Plugin), "{packages:?}");
    let (status, body) = fetch_showing(wp.uri.as_str(), port, wp.title.as_str(), true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(wp.title.as_str()), "the page shows the site's title:\n{body}");
    // An alias reaches the same site, which (being WordPress) sends it to its own address.
    let (status, _, location) = get_with_location(wp.aliases[0].as_str(), port, "/").await;
    assert_eq!((status, location.as_str()), (301, format!("http://{}:{port}/", wp.uri).as_str()));
    assert_modes(&system, &wp, "wp-config.php");
    // Settings files are not served.
    let (status, _) = get(wp.uri.as_str(), port, &format!("/sites/{}/wp-config.php", wp.uri)).await;
    assert_eq!(status, 404);
    // Hidden files, other sites' files and settings are not served either; PHP gets its
    // path info, and a missing script is nginx's 404, not PHP's.
    write_tree(
        &wp_root,
        &[
            ("pathinfo.php", "<?php echo 'path info: ', $_SERVER['PATH_INFO'] ?? '', \"\\n\";\n"),
            (".hidden.txt", "hidden\n"),
            ("sites/other.example.com/files/upload.txt", "theirs\n"),
            ("sites/other.example.com/private/key.txt", "private\n"),
            ("sites/shared.info", "settings\n"),
            ("public.txt", "public\n"),
        ],
    );
    let (status, body) = get(wp.uri.as_str(), port, "/pathinfo.php/a/b").await;
    assert_eq!((status, body.trim()), (200, "path info: /a/b"));
    for denied in [
        "/.hidden.txt",
        "/sites/other.example.com/files/upload.txt",
        "/sites/other.example.com/private/key.txt",
        "/sites/shared.info",
        "/missing.php",
        "/missing.php/a",
    ] {
        assert_eq!(get(wp.uri.as_str(), port, denied).await.0, 404, "{denied}");
    }
    assert_eq!(get(wp.uri.as_str(), port, "/public.txt").await, (200, "public\n".to_owned()));

    // A platform verify fixes the code base's permissions but leaves the site's own alone.
    let platform = wp.platform.clone();
    let (facts, _) = system.step_ok(StepAction::PlatformVerify { platform }, "platform verify").await;
    assert!(facts.packages.unwrap().iter().any(|p| p.name == "akismet"));
    assert_modes(&system, &wp, "wp-config.php");
    assert_eq!(get(wp.uri.as_str(), port, "/").await.0, 200);

    // Installing again changes nothing and still succeeds.
    system.step_ok(StepAction::SiteInstall { site: wp.clone() }, "WordPress install again").await;

    // MediaWiki next to it on the same web server.
    let mw_root = system.platform_from_package("mediawiki", &["LocalSettings.php", "config", "images"]);
    let mut mw = new_site(&server, &mw_root, PlatformType::Mediawiki, "mw");
    mw.redirection = true;
    create_site_database(&mw).await;
    system.step_ok(StepAction::SiteInstall { site: mw.clone() }, "MediaWiki install").await;
    let (status, body) = fetch_showing(mw.uri.as_str(), port, mw.title.as_str(), true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(mw.title.as_str()), "the wiki shows its name:\n{body}");
    assert_modes(&system, &mw, "LocalSettings.php");
    assert!(!site_dir(&mw).join(".install").exists(), "the installer's own settings (with the password) are gone");
    // With redirection on, the web server sends aliases to the main uri itself.
    let (status, _, location) = get_with_location(mw.aliases[0].as_str(), port, "/index.php?title=Main_Page").await;
    assert_eq!(
        (status, location.as_str()),
        (301, format!("http://{}:{port}/index.php?title=Main_Page", mw.uri).as_str())
    );

    // Disable: the disabled page for the site, ACME challenges still served.
    write_tree(&wp_root, &[(".well-known/acme-challenge/token-1", "proof-1")]);
    system.step_ok(StepAction::SiteDisable { site: wp.clone() }, "disable").await;
    let (status, body) = get_expecting(wp.uri.as_str(), port, "/", 503).await;
    assert_eq!(status, 503);
    assert!(body.contains("Site disabled") && !body.contains(wp.title.as_str()), "{body}");
    let (status, body) = get(wp.uri.as_str(), port, "/.well-known/acme-challenge/token-1").await;
    assert_eq!((status, body.as_str()), (200, "proof-1"));
    // A verify keeps a disabled site disabled.
    system.step_ok(StepAction::SiteVerify { site: wp.clone() }, "verify of a disabled site").await;
    assert_eq!(get_expecting(wp.uri.as_str(), port, "/", 503).await.0, 503);
    // The other site is untouched.
    assert_eq!(get(mw.uri.as_str(), port, "/").await.0, 200);

    // Enable: the site is back.
    system.step_ok(StepAction::SiteEnable { site: wp.clone() }, "enable").await;
    let (status, body) = fetch_showing(wp.uri.as_str(), port, wp.title.as_str(), true).await;
    assert!(status == 200 && body.contains(wp.title.as_str()), "{status}");

    // Verify: nothing to change, no reload, packages rescanned.
    let (facts, log) = system.step_ok(StepAction::SiteVerify { site: wp.clone() }, "verify").await;
    assert!(log.iter().any(|l| l.message.contains("no reload needed")), "{log:?}");
    let packages = facts.packages.unwrap();
    assert!(packages.iter().any(|p| p.name == "twentytwentythree" && p.kind == PackageKind::Theme), "{packages:?}");
    assert!(packages.iter().any(|p| p.name == "wordpress" && p.kind == PackageKind::Core && p.version.is_some()));
    let (facts, _) = system.step_ok(StepAction::SiteVerify { site: mw.clone() }, "verify wiki").await;
    assert!(facts.packages.unwrap().iter().any(|p| p.kind == PackageKind::Skin && p.name == "Vector"));

    // Login reset: a one-time link for the administrator.
    let (_, log) = system.step_ok(StepAction::SiteLoginReset { site: wp.clone() }, "login reset").await;
    let line = log.iter().find(|l| l.message.starts_with("one-time login: ")).expect("a login link in the log");
    assert!(line.message.contains("wp-login.php?action=rp&key="), "{}", line.message);
    assert!(line.message.contains(&format!("http://{}:{port}/", wp.uri)), "{}", line.message);

    // MediaWiki has no one-time links: a temporary password to change at first login.
    let (_, log) = system.step_ok(StepAction::SiteLoginReset { site: mw.clone() }, "wiki login reset").await;
    let line = log.iter().find(|l| l.message.starts_with("one-time login: ")).expect("a login in the log");
    assert!(
        line.message.contains("Special:UserLogin") && line.message.contains("temporary password"),
        "{}",
        line.message
    );

    // Remove: the host no longer gets the site; the site dir and vhost are gone.
    system.step_ok(StepAction::SiteRemove { site: wp.clone() }, "remove").await;
    let (_, body) = fetch_showing(wp.uri.as_str(), port, wp.title.as_str(), false).await;
    assert!(!body.contains(wp.title.as_str()), "WordPress is still served after remove");
    assert_gone(&system, &wp);
    // Removing again is fine.
    system.step_ok(StepAction::SiteRemove { site: wp.clone() }, "remove again").await;
    assert_eq!(get(mw.uri.as_str(), port, "/").await.0, 200, "the wiki still answers");

    system.step_ok(StepAction::SiteRemove { site: mw.clone() }, "remove wiki").await;
    assert_gone(&system, &mw);
    drop_site_database(&wp).await;
    drop_site_database(&mw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_install_is_removed_without_a_trace_and_others_keep_being_served() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    verify_server(&system, &server).await;
    let root = system.platform_from_package("wordpress", &["wp-config.php", ".htaccess"]);

    let good = new_site(&server, &root, PlatformType::Wordpress, "good");
    create_site_database(&good).await;
    system.step_ok(StepAction::SiteInstall { site: good.clone() }, "install").await;

    // The database exists, but the site is given the wrong password.
    let mut bad = new_site(&server, &root, PlatformType::Wordpress, "bad");
    create_site_database(&bad).await;
    bad.database.password = Secret::new("WrongPassword42");
    let result = system.run_step_logged(StepAction::SiteInstall { site: bad.clone() }, INSTALL_PATIENCE).await.0;
    let StepOutcome::Failed { reason, .. } = &result.outcome else { panic!("install with a wrong password succeeded") };
    assert!(reason.contains("WordPress installer failed"), "{reason}");
    assert!(!reason.contains("WrongPassword42"), "the password is kept out of the reason: {reason}");
    assert!(!system.vhost_path(&bad).exists(), "no vhost for a site whose installer failed");

    // Its undo leaves nothing behind, and the other site is still served.
    system.step_ok(StepAction::SiteRemove { site: bad.clone() }, "undo").await;
    assert_gone(&system, &bad);
    let (status, body) = fetch_showing(good.uri.as_str(), port, good.title.as_str(), true).await;
    assert!(status == 200 && body.contains(good.title.as_str()), "{status}");

    // When the config test fails with a new vhost in it, the vhost is not kept (so the
    // server can still reload for other sites) and the step fails with nginx's words.
    let broken = new_site(&server, &root, PlatformType::Wordpress, "broken");
    create_site_database(&broken).await;
    // Two `default_server`s on one port: nginx refuses the config.
    write_tree(
        &system.config_dir(),
        &[("vhost.d/zz-other.conf", &format!("server {{ listen {port} default_server; }}\n"))],
    );
    write_tree(
        &system.config_dir(),
        &[("vhost.d/zz-another.conf", &format!("server {{ listen {port} default_server; }}\n"))],
    );
    let result = system.run_step_logged(StepAction::SiteInstall { site: broken.clone() }, INSTALL_PATIENCE).await.0;
    let StepOutcome::Failed { reason, .. } = &result.outcome else { panic!("a broken config was accepted") };
    assert!(reason.contains("config test failed") && reason.contains("duplicate default server"), "{reason}");
    assert!(!system.vhost_path(&broken).exists());
    std::fs::remove_file(system.config_dir().join("vhost.d/zz-another.conf")).unwrap();
    std::fs::remove_file(system.config_dir().join("vhost.d/zz-other.conf")).unwrap();
    system.step_ok(StepAction::SiteRemove { site: broken.clone() }, "undo").await;
    assert_gone(&system, &broken);
    assert_eq!(get(good.uri.as_str(), port, "/").await.0, 200);

    system.step_ok(StepAction::SiteRemove { site: good.clone() }, "remove").await;
    assert_gone(&system, &good);
    for s in [&good, &bad, &broken] {
        drop_site_database(s).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wordpress_on_apache_answers_and_is_removed() {
    let mut system = System::start().await;
    let port = free_port();
    let apache = Apache::start(system.dir.path(), &system.config_dir(), port);
    let conf = apache.conf.display().to_string();
    system.kill9("http-worker").await;
    system.respawn_with("http-worker", &[("AEGIR_APACHE_CONF", conf.as_str())]);
    system.wait_healthy("http-worker").await;
    let server = web_server(&system, HttpServiceType::Apache, port);
    verify_server(&system, &server).await;

    let root = system.platform_from_package("wordpress", &["wp-config.php", ".htaccess"]);
    let wp = new_site(&server, &root, PlatformType::Wordpress, "apache");
    create_site_database(&wp).await;
    system.step_ok(StepAction::SiteInstall { site: wp.clone() }, "install on apache").await;
    let (status, body) = fetch_showing(wp.uri.as_str(), port, wp.title.as_str(), true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(wp.title.as_str()), "{body}");
    assert_modes(&system, &wp, "wp-config.php");

    write_tree(&root, &[(".well-known/acme-challenge/token-2", "proof-2")]);
    system.step_ok(StepAction::SiteDisable { site: wp.clone() }, "disable").await;
    let (status, body) = get_expecting(wp.uri.as_str(), port, "/", 503).await;
    assert!(status == 503 && body.contains("Site disabled"), "{status} {body}");
    let (status, body) = get(wp.uri.as_str(), port, "/.well-known/acme-challenge/token-2").await;
    assert_eq!((status, body.as_str()), (200, "proof-2"));
    system.step_ok(StepAction::SiteEnable { site: wp.clone() }, "enable").await;
    assert_eq!(get_expecting(wp.uri.as_str(), port, "/", 200).await.0, 200);

    system.step_ok(StepAction::SiteRemove { site: wp.clone() }, "remove").await;
    assert_gone(&system, &wp);
    let (_, body) = fetch_showing(wp.uri.as_str(), port, wp.title.as_str(), false).await;
    assert!(!body.contains(wp.title.as_str()));
    drop_site_database(&wp).await;
}

/// A tree laid out like Drupal 7 whose `install_drupal()` records what it was given.
fn drupal7_fixture(root: &Path) {
    write_tree(
        root,
        &[
            ("index.php", "<?php echo 'drupal';\n"),
            (
                "includes/bootstrap.inc",
                "<?php\ndefine('VERSION', '7.101');\ndefine('DRUPAL_BOOTSTRAP_FULL', 7);\n\
                 function drupal_bootstrap($phase) { if ($phase !== DRUPAL_BOOTSTRAP_FULL) { exit(3); } }\n\
                 function user_load($uid) { return (object) array('uid' => $uid, 'name' => 'admin'); }\n\
                 function user_pass_reset_url($account) {\n  \
                   return 'http://' . $_SERVER['HTTP_HOST'] . '/user/reset/' . $account->uid . '/1700000000/fixture';\n}\n",
            ),
            (
                "includes/install.core.inc",
                "<?php\nfunction install_drupal($settings = array()) {\n  \
                   include conf_path_fixture() . '/settings.php';\n  \
                   $record = array('settings' => $settings, 'host' => $_SERVER['HTTP_HOST'], 'root' => DRUPAL_ROOT,\n    \
                     'maintenance' => MAINTENANCE_MODE, 'db' => $databases['default']['default']['database']);\n  \
                   file_put_contents(DRUPAL_ROOT . '/install-record.json', json_encode($record));\n}\n\
                 function conf_path_fixture() { return DRUPAL_ROOT . '/sites/' . $_SERVER['HTTP_HOST']; }\n",
            ),
            ("modules/node/node.info", "name = Node\nversion = \"7.101\"\ncore = 7.x\n"),
            ("themes/bartik/bartik.info", "name = Bartik\nengine = phptemplate\nversion = \"7.101\"\n"),
            ("profiles/standard/standard.profile", "<?php\n"),
            ("profiles/standard/standard.info", "name = Standard\nversion = \"7.101\"\n"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drupal7_installer_gets_the_call_drush_makes() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    verify_server(&system, &server).await;
    let root = system.platforms_dir().join("drupal7");
    drupal7_fixture(&root);
    let platform = PlatformContext {
        name: PlatformName::parse("platform_d7").unwrap(),
        root: AbsolutePath::parse(root.to_str().unwrap()).unwrap(),
        web_server: server.clone(),
        source: None,
    };
    let (facts, _) = system.step_ok(StepAction::PlatformVerify { platform }, "platform verify").await;
    assert_eq!(facts.profiles.unwrap(), vec![ProfileName::parse("standard").unwrap()]);
    let packages = facts.packages.unwrap();
    assert!(packages.iter().any(|p| p.name == "bartik" && p.kind == PackageKind::Theme));
    assert!(packages.iter().any(|p| p.name == "node" && p.kind == PackageKind::Module));

    let d7 = new_site(&server, &root, PlatformType::Drupal7, "d7");
    system.step_ok(StepAction::SiteInstall { site: d7.clone() }, "Drupal 7 install").await;
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("install-record.json")).unwrap()).unwrap();
    let settings = &record["settings"];
    assert_eq!(settings["parameters"]["profile"], "standard", "{record}");
    assert_eq!(settings["parameters"]["locale"], "en");
    let form = &settings["forms"]["install_configure_form"];
    assert_eq!(form["site_name"], d7.title.as_str());
    assert_eq!(form["site_mail"], "admin@example.com");
    assert_eq!(form["account"]["name"], "admin");
    assert_eq!(form["account"]["mail"], "admin@example.com");
    let pass = form["account"]["pass"]["pass1"].as_str().unwrap();
    assert!(pass.len() >= 16 && form["account"]["pass"]["pass2"] == pass);
    assert_eq!(form["update_status_module"]["1"], true);
    assert_eq!(record["host"], d7.uri.as_str());
    assert_eq!(record["maintenance"], "install");
    assert_eq!(record["db"], d7.database.name.as_str(), "settings.php read the database from the environment");
    // Aliases go to sites/sites.php.
    let sites_php = std::fs::read_to_string(root.join("sites/sites.php")).unwrap();
    assert!(sites_php.contains(&format!("$sites['{}'] = '{}';", d7.aliases[0], d7.uri)), "{sites_php}");
    assert_modes(&system, &d7, "settings.php");

    // The one-time login link Drupal 7 makes for user 1.
    let (_, log) = system.step_ok(StepAction::SiteLoginReset { site: d7.clone() }, "login reset").await;
    let expected = format!("one-time login: http://{}/user/reset/1/1700000000/fixture/login", d7.uri);
    assert!(log.iter().any(|l| l.message == expected), "{log:?}");

    system.step_ok(StepAction::SiteRemove { site: d7.clone() }, "remove").await;
    assert_gone(&system, &d7);
    let sites_php = std::fs::read_to_string(root.join("sites/sites.php")).unwrap();
    assert!(!sites_php.contains(d7.uri.as_str()), "{sites_php}");
}

/// A tree laid out like Drupal 10 without drush, whose `install_drupal()` and kernel
/// record what they were given, so the test can check the calls drush makes.
fn drupal10_fixture(root: &Path) {
    write_tree(
        root,
        &[
            ("index.php", "<?php echo 'drupal';\n"),
            ("core/lib/Drupal.php", "<?php\nclass Drupal {\n  const VERSION = '10.3.1';\n}\n"),
            ("autoload.php", "<?php\nreturn new ArrayObject(array('fixture class loader'));\n"),
            (
                "core/includes/install.core.inc",
                "<?php\nfunction install_drupal($class_loader, $settings = array()) {\n  \
                   $app_root = getcwd(); $site_path = 'sites/' . $_SERVER['HTTP_HOST'];\n  \
                   include $site_path . '/settings.php';\n  \
                   $record = array('loader' => $class_loader[0], 'settings' => $settings, 'host' => $_SERVER['HTTP_HOST'],\n    \
                     'cwd' => getcwd(), 'db' => $databases['default']['default']['database']);\n  \
                   file_put_contents('install-record.json', json_encode($record));\n}\n",
            ),
            ("core/modules/node/node.info.yml", "name: Node\ntype: module\nversion: '10.3.1'\n"),
            ("core/profiles/standard/standard.info.yml", "name: Standard\ntype: profile\nversion: '10.3.1'\n"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drupal10_without_drush_installs_with_the_call_drush_makes() {
    let (system, _fpm) = start_with_fpm().await;
    let port = free_port();
    let server = web_server(&system, HttpServiceType::Nginx, port);
    verify_server(&system, &server).await;
    let root = system.platforms_dir().join("drupal10");
    drupal10_fixture(&root);
    let platform = PlatformContext {
        name: PlatformName::parse("platform_d10").unwrap(),
        root: AbsolutePath::parse(root.to_str().unwrap()).unwrap(),
        web_server: server.clone(),
        source: None,
    };
    let (facts, _) = system.step_ok(StepAction::PlatformVerify { platform }, "platform verify").await;
    assert_eq!(facts.platform_type, Some(PlatformType::Drupal));
    assert_eq!(facts.profiles.unwrap(), vec![ProfileName::parse("standard").unwrap()]);

    let d10 = new_site(&server, &root, PlatformType::Drupal, "d10");
    system.step_ok(StepAction::SiteInstall { site: d10.clone() }, "Drupal 10 install").await;
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("install-record.json")).unwrap()).unwrap();
    assert_eq!(record["loader"], "fixture class loader", "the platform's class loader is passed: {record}");
    let settings = &record["settings"];
    assert_eq!(settings["parameters"]["profile"], "standard", "{record}");
    assert_eq!(settings["parameters"]["langcode"], "en");
    let form = &settings["forms"]["install_configure_form"];
    assert_eq!(form["site_name"], d10.title.as_str());
    assert_eq!(form["account"]["name"], "admin");
    let pass = form["account"]["pass"]["pass1"].as_str().unwrap();
    assert!(pass.len() >= 16 && form["account"]["pass"]["pass2"] == pass);
    assert_eq!(record["host"], d10.uri.as_str());
    assert_eq!(record["cwd"], root.to_str().unwrap(), "run from the platform root");
    assert_eq!(record["db"], d10.database.name.as_str(), "settings.php read the database from the environment");
    assert_modes(&system, &d10, "settings.php");

    system.step_ok(StepAction::SiteRemove { site: d10.clone() }, "remove").await;
    assert_gone(&system, &d10);
}
