//! The kinds of PHP applications a platform can hold, behind one trait: how a site is
//! laid out, how the application's own installer runs, how cron and one-time login
//! links are made, and what packages it has.

mod drupal;
mod drupal7;
pub mod found;
mod mediawiki;
mod php;
mod scan;
mod wordpress;

use std::path::{Path, PathBuf};

use aegir_contract::{Package, PlatformType, ProfileName, Secret, SiteContext, SiteUri};
use aegir_worker::StepError;

use crate::php::PhpRun;

pub use scan::detect;

/// Where the MediaWiki installer writes its own settings, removed once it is done.
pub fn mediawiki_install_dir(site: &SiteFiles) -> PathBuf {
    mediawiki::Mediawiki::install_conf_dir(site)
}

/// A site as the files of its platform see it.
pub struct SiteFiles<'a> {
    pub site: &'a SiteContext,
    pub root: PathBuf,
    /// `<root>/sites/<uri>`: the site's own directory on every platform type.
    pub site_dir: PathBuf,
    /// The address the site answers at: `http://<uri>`, with the port when it is not 80.
    pub url: String,
}

impl<'a> SiteFiles<'a> {
    pub fn new(site: &'a SiteContext) -> Self {
        let root = PathBuf::from(site.platform.root.as_str());
        let site_dir = root.join("sites").join(site.uri.as_str());
        let port = site.platform.web_server.http.as_ref().map_or(80, |h| h.port);
        let url = if port == 80 { format!("http://{}", site.uri) } else { format!("http://{}:{port}", site.uri) };
        Self { site, root, site_dir, url }
    }

    pub fn files_dir(&self) -> PathBuf {
        self.site_dir.join("files")
    }

    /// The site's uri and database account as the web server passes them to PHP (and
    /// as the tools we run get them in their environment).
    pub fn app_env(&self) -> Result<Vec<(&'static str, Secret)>, StepError> {
        let (host, port) = self.site.db_host().ok_or_else(|| {
            StepError::permanent(format!(
                "{} has no db service; save it with --db_service_type before installing sites on it",
                self.site.db_server.name
            ))
        })?;
        let db = &self.site.database;
        Ok(vec![
            ("AEGIR_SITE_URI", Secret::new(self.site.uri.as_str())),
            ("AEGIR_DB_NAME", Secret::new(db.name.as_str())),
            ("AEGIR_DB_USER", Secret::new(db.user.as_str())),
            ("AEGIR_DB_PASSWORD", db.password.clone()),
            ("AEGIR_DB_HOST", Secret::new(host.as_str())),
            ("AEGIR_DB_PORT", Secret::new(port.to_string())),
        ])
    }
}

/// A settings file to write inside the site's directory.
pub struct Rendered {
    pub path: PathBuf,
    pub contents: String,
}

/// The first line of every file we write into a platform; a file without it is not ours.
pub const WRITTEN_BY: &str = "Written by Aegir";

/// PHP that reads a value the web server passed (or the environment of a CLI run).
const ENV_READER: &str =
    "$aegir_env = static function ($name) { return isset($_SERVER[$name]) ? $_SERVER[$name] : getenv($name); };";

/// PHP that finds the site this request is for from `AEGIR_SITE_URI` (set by our vhost,
/// never taken from a request header), accepting only the name of an existing site
/// directory holding `file`, and requires that file.
fn dispatcher_php(app: &str, file: &str) -> String {
    format!(
        "<?php\n\
         // {WRITTEN_BY}: loads the {app} settings of the site the web server says this request is for.\n\
         // Each site's settings are in sites/<uri>/{file}. Changes here are overwritten.\n\
         $aegir_site = isset($_SERVER['AEGIR_SITE_URI']) ? $_SERVER['AEGIR_SITE_URI'] : getenv('AEGIR_SITE_URI');\n\
         if (!is_string($aegir_site) || !preg_match('/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/', $aegir_site)\n    \
             || !is_file(__DIR__ . '/sites/' . $aegir_site . '/{file}')) {{\n    \
             if (PHP_SAPI !== 'cli') {{ header('HTTP/1.1 404 Not Found'); }}\n    \
             echo \"No site is configured here for this host.\\n\";\n    \
             exit(1);\n\
         }}\n\
         require __DIR__ . '/sites/' . $aegir_site . '/{file}';\n"
    )
}

pub trait Platform: Sync {
    /// The settings files of a site, inside its directory.
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered>;

    /// The file at the platform root that picks a site's settings (`wp-config.php`),
    /// as (name, contents); `None` when the application does it itself.
    fn dispatcher(&self) -> Option<(&'static str, String)> {
        None
    }

    /// Whether aliases are listed in `sites/sites.php` (Drupal's multisite map).
    fn uses_sites_php(&self) -> bool {
        false
    }

    /// What the platform lacks to run the application's tools (installer, login
    /// links, cron), as a message saying how to add it; `None` when nothing is missing.
    fn missing_tool(&self, _root: &Path) -> Option<String> {
        None
    }

    /// The application's installer, run once the settings are in place.
    fn installer(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>, admin_password: &Secret) -> Option<PhpRun>;

    /// A run that prints a one-time login link for the administrator on its last line.
    fn login_link(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun>;

    /// What a deploy runs in the application once the site's files, settings and
    /// database are in place: what it stores about its own address brought up to date
    /// (it may have moved from `renamed_from`), caches of old paths cleared. `None`
    /// when the application keeps nothing of the kind.
    fn deploy(
        &self,
        _site: &SiteFiles,
        _env: Vec<(&'static str, Secret)>,
        _renamed_from: Option<&SiteUri>,
    ) -> Option<PhpRun> {
        None
    }

    /// The application's own update of its database to the platform's code, run after
    /// a move to another platform; `None` when the application has none.
    fn update(&self, _site: &SiteFiles, _env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        None
    }

    /// The site's cron run.
    fn cron(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun>;

    /// Prints the application's own counts as `name=value` lines; `None` when the
    /// platform type knows none.
    fn figures(&self, _site: &SiteFiles, _env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        None
    }

    /// What is installed on the platform, and in the site's own directory if given.
    fn packages(&self, root: &Path, site_dir: Option<&Path>) -> Vec<Package>;

    /// Install profiles the platform offers.
    fn profiles(&self, _root: &Path) -> Vec<ProfileName> {
        Vec::new()
    }

    /// Directories the platform permission fix leaves alone: those the web server
    /// writes to, and each site's own directory (whose settings belong to the web
    /// server's group; site verify keeps those right).
    fn writable_dirs(&self, root: &Path) -> Vec<PathBuf> {
        scan::site_dirs(root)
    }

    /// Directories the platform must have, created setgid by platform verify.
    fn layout_dirs(&self) -> &'static [&'static str] {
        &["sites"]
    }
}

pub fn for_type(kind: PlatformType) -> &'static dyn Platform {
    match kind {
        PlatformType::Drupal7 => &drupal7::Drupal7,
        PlatformType::Drupal => &drupal::Drupal,
        PlatformType::Wordpress => &wordpress::Wordpress,
        PlatformType::Mediawiki => &mediawiki::Mediawiki,
        PlatformType::Php => &php::Php,
    }
}

/// A directory tree of `(path, contents)` files, for tests of code that reads platforms.
#[cfg(test)]
pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    // Named without a leading dot, so it can be a platform root (a validated path).
    let dir = tempfile::Builder::new().prefix("aegir-tree-").tempdir().unwrap();
    for (path, body) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegir_contract::*;

    fn site(kind: PlatformType, root: &str) -> SiteContext {
        let server = ServerContext {
            name: ServerName::parse("server_master").unwrap(),
            remote_host: HostName::parse("localhost").unwrap(),
            http: Some(HttpService { service_type: HttpServiceType::Nginx, port: 8080 }),
            db: Some(DbService {
                service_type: DbServiceType::Mariadb,
                host: HostName::parse("127.0.0.1").unwrap(),
                port: 3306,
                admin_user: "root".into(),
                admin_password: Secret::new(""),
            }),
            dns: None,
        };
        let uri = SiteUri::parse("example.com").unwrap();
        SiteContext {
            aliases: vec![SiteUri::parse("www.example.com").unwrap()],
            redirection: false,
            platform: PlatformContext {
                name: PlatformName::parse("platform_x").unwrap(),
                root: AbsolutePath::parse(root).unwrap(),
                web_server: server.clone(),
                source: None,
            },
            platform_type: kind,
            db_server: server,
            database: SiteDatabase {
                name: DbIdent::parse("example_db").unwrap(),
                user: DbIdent::parse("example_db").unwrap(),
                password: Secret::new("Sup3rSecretPw"),
            },
            profile: None,
            language: LanguageCode::parse("en").unwrap(),
            title: SiteTitle::parse("Example site").unwrap(),
            admin_email: Email::parse("admin@example.com").unwrap(),
            client: None,
            php_version: None,
            dns_server: None,
            ssl: Default::default(),
            uri,
        }
    }

    #[test]
    fn settings_read_the_database_account_from_the_web_server_and_hold_no_password() {
        for kind in [
            PlatformType::Drupal7,
            PlatformType::Drupal,
            PlatformType::Wordpress,
            PlatformType::Mediawiki,
            PlatformType::Php,
        ] {
            let site = site(kind, "/var/aegir/platforms/x");
            let files = SiteFiles::new(&site);
            assert_eq!(files.url, "http://example.com:8080");
            let rendered = for_type(kind).settings(&files);
            assert_eq!(rendered.len(), 1, "{kind}");
            let settings = &rendered[0];
            assert!(settings.path.starts_with("/var/aegir/platforms/x/sites/example.com"), "{kind}");
            assert!(settings.contents.contains("AEGIR_DB_PASSWORD"), "{kind}");
            assert!(!settings.contents.contains("Sup3rSecretPw"), "{kind}: password in the settings");
            assert!(settings.contents.lines().nth(1).unwrap().contains(WRITTEN_BY), "{kind}");
        }
    }

    #[test]
    fn dispatchers_take_the_site_from_the_vhost_and_accept_only_site_directories() {
        for kind in [PlatformType::Wordpress, PlatformType::Mediawiki] {
            let (name, php) = for_type(kind).dispatcher().unwrap();
            assert!(php.contains("AEGIR_SITE_URI"), "{name}");
            assert!(!php.contains("HTTP_HOST"), "{name}: the request's Host header is never used as a path");
            assert!(php.contains("preg_match('/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/'"), "{name}");
            assert!(php.contains("is_file(__DIR__ . '/sites/'"), "{name}");
        }
        assert!(for_type(PlatformType::Drupal7).dispatcher().is_none(), "Drupal finds its own site directory");
    }

    #[test]
    fn installers_keep_passwords_out_of_their_arguments() {
        let admin = Secret::new("AdminPw123456");
        for kind in [PlatformType::Drupal7, PlatformType::Wordpress, PlatformType::Mediawiki] {
            let site = site(kind, "/var/aegir/platforms/x");
            let files = SiteFiles::new(&site);
            let job = for_type(kind).installer(&files, files.app_env().unwrap(), &admin).unwrap();
            let argv = job.args.join(" ");
            assert!(!argv.contains("AdminPw123456") && !argv.contains("Sup3rSecretPw"), "{kind}: {argv}");
        }
        let site = site(PlatformType::Mediawiki, "/var/aegir/platforms/x");
        let files = SiteFiles::new(&site);
        let job = for_type(PlatformType::Mediawiki).installer(&files, vec![], &admin).unwrap();
        assert!(
            job.args.iter().any(|a| a.starts_with("--dbpassfile="))
                && job.args.iter().any(|a| a.starts_with("--passfile="))
        );
        assert_eq!(job.secret_files.len(), 2);
    }

    /// `php -l` on the code of an inline run: what we generate must at least parse.
    fn assert_parses(job: &PhpRun, kind: PlatformType) {
        use std::io::Write as _;
        let inline = job.args.iter().position(|a| a == "-r").map(|i| &job.args[i + 1]);
        let Some(code) = inline.or(job.stdin.as_ref()) else { return };
        let mut child = std::process::Command::new("php")
            .arg("-l")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("php-cli is installed (deploy/test.sh installs it)");
        child.stdin.take().unwrap().write_all(format!("<?php\n{code}").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{kind}: {} does not parse:\n{}{}\n{code}",
            job.what,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn deploy_and_update_runs_parse_and_keep_passwords_out_of_their_arguments() {
        let old = SiteUri::parse("old.example.com").unwrap();
        let mut runs = 0;
        for kind in [PlatformType::Drupal7, PlatformType::Drupal, PlatformType::Wordpress, PlatformType::Mediawiki] {
            let site = site(kind, "/var/aegir/platforms/x");
            let files = SiteFiles::new(&site);
            let platform = for_type(kind);
            let jobs = [
                platform.deploy(&files, files.app_env().unwrap(), Some(&old)),
                platform.deploy(&files, files.app_env().unwrap(), None),
                platform.update(&files, files.app_env().unwrap()),
            ];
            for job in jobs.into_iter().flatten() {
                assert!(!job.args.join(" ").contains("Sup3rSecretPw"), "{kind}: {}", job.what);
                assert_parses(&job, kind);
                runs += 1;
            }
        }
        assert_eq!(runs, 10, "WordPress and both Drupals deploy (renamed or not) and update; MediaWiki only updates");
        let wp = site(PlatformType::Wordpress, "/var/aegir/platforms/x");
        let files = SiteFiles::new(&wp);
        let deploy = for_type(PlatformType::Wordpress).deploy(&files, vec![], Some(&old)).unwrap();
        let code = deploy.args.join(" ");
        assert!(code.contains("'/sites/old.example.com/files/'") && code.contains("'/sites/example.com/files/'"));
        assert!(code.contains("update_option($name, $url)") && code.contains("'http://example.com:8080'"));
        let update = for_type(PlatformType::Wordpress).update(&files, vec![]).unwrap();
        assert!(update.args.join(" ").contains("wp_upgrade();"));
        let mw = site(PlatformType::Mediawiki, "/var/aegir/platforms/x");
        let files = SiteFiles::new(&mw);
        let update = for_type(PlatformType::Mediawiki).update(&files, vec![]).unwrap();
        assert_eq!(update.args, ["maintenance/update.php", "--quick"], "no run.php before MediaWiki 1.40");
        assert!(for_type(PlatformType::Php).update(&files, vec![]).is_none());
        assert!(for_type(PlatformType::Php).deploy(&files, vec![], Some(&old)).is_none());
    }

    /// Drupal 7's update API as far as the update run uses it: `node_update_7001` takes
    /// two passes (`#finished`), `node_update_7002` fails when `AEGIR_TEST_FAIL` is set.
    /// Each call is recorded in `calls.log`.
    fn drupal7_update_fixture() -> tempfile::TempDir {
        let record =
            "function rec($what) { file_put_contents(DRUPAL_ROOT . '/calls.log', $what . \"\\n\", FILE_APPEND); }\n";
        tree(&[
            (
                "includes/bootstrap.inc",
                &format!(
                    "<?php\ndefine('DRUPAL_BOOTSTRAP_FULL', 7);\n{record}\
                     function drupal_bootstrap($phase) {{ rec('bootstrap ' . $phase . ' ' . MAINTENANCE_MODE); }}\n"
                ),
            ),
            ("includes/common.inc", "<?php\n"),
            ("includes/file.inc", "<?php\n"),
            ("includes/entity.inc", "<?php\n"),
            ("includes/unicode.inc", "<?php\n"),
            (
                "includes/install.inc",
                "<?php\nfunction drupal_load_updates() { rec('load updates'); }\n\
                 function drupal_set_installed_schema_version($module, $n) { rec(\"schema $module $n\"); }\n\
                 function drupal_flush_all_caches() { rec('flush caches'); }\n",
            ),
            (
                "includes/update.inc",
                "<?php\nfunction update_prepare_d7_bootstrap() { rec('prepare'); }\n\
                 function update_fix_compatibility() { rec('fix compatibility'); }\n\
                 function update_get_update_list() {\n  \
                   return array('node' => array('start' => 7001, 'pending' => array(7001 => '', 7002 => '')), 'user' => array());\n}\n\
                 function update_resolve_dependencies($start) {\n  \
                   rec('resolve ' . json_encode($start));\n  \
                   return array(\n    \
                     'node_update_7001' => array('module' => 'node', 'number' => 7001, 'allowed' => TRUE),\n    \
                     'node_update_7002' => array('module' => 'node', 'number' => 7002, 'allowed' => TRUE, 'reverse_paths' => array('node_update_7001' => TRUE)),\n  \
                   );\n}\n\
                 function node_update_7001(&$sandbox) {\n  \
                   $sandbox['pass'] = isset($sandbox['pass']) ? $sandbox['pass'] + 1 : 1;\n  \
                   $sandbox['#finished'] = $sandbox['pass'] / 2;\n  \
                   rec('node_update_7001 pass ' . $sandbox['pass']);\n}\n\
                 function node_update_7002(&$sandbox) {\n  \
                   if (getenv('AEGIR_TEST_FAIL')) { throw new Exception('column missing'); }\n  \
                   rec('node_update_7002');\n}\n\
                 function update_do_one($module, $number, $dependency_map, &$context) {\n  \
                   $function = $module . '_update_' . $number;\n  \
                   $ret = array();\n  \
                   try { $function($context['sandbox']); }\n  \
                   catch (Exception $e) { $ret['#abort'] = array('success' => FALSE, 'query' => '<em>' . $e->getMessage() . '</em> in ' . $function); }\n  \
                   if (isset($context['sandbox']['#finished'])) { $context['finished'] = $context['sandbox']['#finished']; unset($context['sandbox']['#finished']); }\n  \
                   $context['results'][$module][$number] = $ret;\n  \
                   if (!empty($ret['#abort'])) { $context['results']['#abort'][] = $function; }\n  \
                   if ($context['finished'] == 1 && empty($ret['#abort'])) { drupal_set_installed_schema_version($module, $number); }\n}\n",
            ),
        ])
    }

    #[tokio::test]
    async fn drupal7_update_applies_pending_updates_in_order_until_each_is_finished() {
        let dir = drupal7_update_fixture();
        let d7 = site(PlatformType::Drupal7, dir.path().to_str().unwrap());
        let files = SiteFiles::new(&d7);
        let job = for_type(PlatformType::Drupal7).update(&files, vec![]).unwrap();
        let out = crate::php::run("php", job).await.unwrap();
        assert!(out.stdout.contains("applied node_update_7001\napplied node_update_7002\n"), "{}", out.stdout);
        assert!(out.stdout.contains("2 database updates applied"), "{}", out.stdout);
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            [
                "prepare",
                "bootstrap 7 update",
                "load updates",
                "fix compatibility",
                "resolve {\"node\":7001}",
                "schema node 7000",
                "node_update_7001 pass 1",
                "node_update_7001 pass 2",
                "schema node 7001",
                "node_update_7002",
                "schema node 7002",
                "flush caches",
            ]
        );

        let dir = drupal7_update_fixture();
        let failing = site(PlatformType::Drupal7, dir.path().to_str().unwrap());
        let files = SiteFiles::new(&failing);
        let fail = vec![("AEGIR_TEST_FAIL", Secret::new("1"))];
        let job = for_type(PlatformType::Drupal7).update(&files, fail).unwrap();
        let err = crate::php::run("php", job).await.err().expect("a failed update fails the run");
        assert!(err.reason.contains("node_update_7002: column missing in node_update_7002"), "{}", err.reason);
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
        assert!(!calls.contains("schema node 7002") && !calls.contains("flush caches"), "{calls}");
    }

    #[test]
    fn login_links_installers_cron_and_figures_runs_parse() {
        let mut figures = 0;
        for kind in [PlatformType::Drupal7, PlatformType::Drupal, PlatformType::Wordpress, PlatformType::Mediawiki] {
            let site = site(kind, "/var/aegir/platforms/x");
            let files = SiteFiles::new(&site);
            let platform = for_type(kind);
            let admin = Secret::new("AdminPw123456");
            let jobs = [
                platform.installer(&files, vec![], &admin),
                platform.login_link(&files, vec![]),
                platform.cron(&files, vec![]),
                platform.figures(&files, vec![]),
            ];
            figures += usize::from(jobs[3].is_some());
            for job in jobs.into_iter().flatten() {
                assert_parses(&job, kind);
            }
        }
        assert_eq!(figures, 4, "every application platform counts its users and content");
        let site = site(PlatformType::Php, "/var/aegir/platforms/x");
        assert!(for_type(PlatformType::Php).figures(&SiteFiles::new(&site), vec![]).is_none());
    }

    #[tokio::test]
    async fn drupal7_figures_count_users_and_content_from_its_tables() {
        // Drupal 7's database API as far as the figures run uses it, over made-up tables:
        // three accounts besides the anonymous one, twelve nodes of which ten are
        // published, and no comment module.
        let dir = tree(&[(
            "includes/bootstrap.inc",
            "<?php\ndefine('DRUPAL_BOOTSTRAP_DATABASE', 2);\n\
             function drupal_bootstrap($phase) { if ($phase !== DRUPAL_BOOTSTRAP_DATABASE) { exit(3); } }\n\
             function db_table_exists($t) { return in_array($t, array('users', 'node')); }\n\
             class Result { function __construct($n) { $this->n = $n; } function fetchField() { return (string) $this->n; } public $n; }\n\
             function db_query($sql) {\n  \
               $counts = array('SELECT COUNT(*) FROM {users} WHERE uid > 0' => 3, 'SELECT COUNT(*) FROM {node}' => 12,\n    \
                               'SELECT COUNT(*) FROM {node} WHERE status = 1' => 10);\n  \
               if (!isset($counts[$sql])) { fwrite(STDERR, \"unexpected query: $sql\\n\"); exit(4); }\n  \
               return new Result($counts[$sql]);\n}\n",
        )]);
        let d7 = site(PlatformType::Drupal7, dir.path().to_str().unwrap());
        let files = SiteFiles::new(&d7);
        let job = for_type(PlatformType::Drupal7).figures(&files, vec![]).unwrap();
        let out = crate::php::run("php", job).await.unwrap();
        let counted: Vec<(String, u64)> =
            crate::steps::site_stats::parse_figures(&out.stdout).into_iter().map(|f| (f.name, f.value)).collect();
        let expected = [("users", 3), ("nodes", 12), ("published", 10)].map(|(n, v)| (n.to_owned(), v));
        assert_eq!(counted, expected, "{}", out.stdout);
    }

    #[test]
    fn packages_are_found_with_their_versions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, body) in [
            ("wp-includes/version.php", "<?php\n$wp_version = '6.1.1';\n"),
            ("wp-content/plugins/akismet/akismet.php", "<?php\n/*\nPlugin Name: Akismet\nVersion: 5.0.1\n*/\n"),
            ("wp-content/themes/twentytwentythree/style.css", "/*\nTheme Name: TT3\nVersion: 1.0\n*/\n"),
            ("modules/views/views.info.yml", "name: Views\ntype: module\nversion: '10.1.0'\n"),
            ("profiles/minimal/minimal.info.yml", "name: Minimal\ntype: profile\n"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let wp = for_type(PlatformType::Wordpress).packages(root, None);
        let find = |list: &[Package], name: &str| list.iter().find(|p| p.name == name).cloned();
        assert_eq!(find(&wp, "akismet").unwrap().version.as_deref(), Some("5.0.1"));
        assert_eq!(find(&wp, "twentytwentythree").unwrap().kind, PackageKind::Theme);
        assert_eq!(find(&wp, "wordpress").unwrap().version.as_deref(), Some("6.1.1"));
        let d = for_type(PlatformType::Drupal).packages(root, None);
        assert_eq!(find(&d, "views").unwrap().version.as_deref(), Some("10.1.0"));
        assert_eq!(for_type(PlatformType::Drupal).profiles(root), vec![ProfileName::parse("minimal").unwrap()]);
    }
}
