//! MediaWiki: one code base, one `sites/<uri>/LocalSettings.php` per site, chosen by
//! the platform's `LocalSettings.php` that we write.

use std::path::Path;
use std::time::Duration;

use aegir_contract::{Package, PackageKind, Secret};

use super::scan::{self, capture, package};
use super::{ENV_READER, Platform, Rendered, SiteFiles, WRITTEN_BY, dispatcher_php};
use crate::php::{PhpRun, quote};

pub struct Mediawiki;

const LINK: &str = "AEGIR-LOGIN-LINK";

impl Mediawiki {
    /// The directory the installer writes its own LocalSettings.php into; it holds the
    /// database password, so it is removed as soon as the installer is done.
    pub fn install_conf_dir(site: &SiteFiles) -> std::path::PathBuf {
        site.site_dir.join(".install")
    }
}

impl Platform for Mediawiki {
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered> {
        let uri = site.site.uri.as_str();
        let vector = if site.root.join("skins/Vector/skin.json").is_file() {
            "$wgDefaultSkin = 'vector';\nwfLoadSkin('Vector');\n"
        } else {
            ""
        };
        let contents = format!(
            "<?php\n\
             // {WRITTEN_BY}: the MediaWiki settings of {uri}. Changes here are overwritten at verify.\n\
             // The database account comes from the web server (or the environment of a CLI run).\n\
             if (!defined('MEDIAWIKI')) {{ exit; }}\n\
             {ENV_READER}\n\
             $wgSitename = {title};\n\
             $wgMetaNamespace = 'Project';\n\
             $wgServer = {url};\n\
             $wgScriptPath = '';\n\
             $wgResourceBasePath = $wgScriptPath;\n\
             $wgDBtype = 'mysql';\n\
             $wgDBserver = $aegir_env('AEGIR_DB_HOST') . ':' . $aegir_env('AEGIR_DB_PORT');\n\
             $wgDBname = $aegir_env('AEGIR_DB_NAME');\n\
             $wgDBuser = $aegir_env('AEGIR_DB_USER');\n\
             $wgDBpassword = $aegir_env('AEGIR_DB_PASSWORD');\n\
             $wgDBprefix = '';\n\
             $wgDBTableOptions = 'ENGINE=InnoDB, DEFAULT CHARSET=binary';\n\
             // Keys derive from the database password, so no secret is kept here.\n\
             $wgSecretKey = hash('sha256', 'secret|' . $wgDBpassword);\n\
             $wgUpgradeKey = substr(hash('sha256', 'upgrade|' . $wgDBpassword), 0, 16);\n\
             $wgLanguageCode = {lang};\n\
             $wgUploadDirectory = \"$IP/sites/{uri}/files\";\n\
             $wgUploadPath = \"$wgScriptPath/sites/{uri}/files\";\n\
             $wgEnableUploads = false;\n\
             $wgMainCacheType = CACHE_NONE;\n\
             $wgCacheDirectory = false;\n\
             $wgEnableEmail = false;\n\
             $wgShellLocale = 'C.UTF-8';\n\
             {vector}",
            title = quote(site.site.title.as_str()),
            url = quote(&site.url),
            lang = quote(site.site.language.as_str()),
        );
        vec![Rendered { path: site.site_dir.join("LocalSettings.php"), contents }]
    }

    fn dispatcher(&self) -> Option<(&'static str, String)> {
        Some(("LocalSettings.php", dispatcher_php("MediaWiki", "LocalSettings.php")))
    }

    fn installer(
        &self,
        site: &SiteFiles,
        mut env: Vec<(&'static str, Secret)>,
        admin_password: &Secret,
    ) -> Option<PhpRun> {
        let (host, port) = site.site.db_host()?;
        let db = &site.site.database;
        let conf = Self::install_conf_dir(site);
        let db_pass_file = conf.join("dbpass");
        let pass_file = conf.join("pass");
        // The installer refuses to run where a LocalSettings.php exists, and the platform's
        // dispatcher is one: point it at a settings file that does not exist.
        env.push(("MW_CONFIG_FILE", Secret::new(conf.join("none.php").display().to_string())));
        let args = vec![
            "maintenance/install.php".to_owned(),
            "--dbtype=mysql".into(),
            format!("--dbserver={host}:{port}"),
            format!("--dbname={}", db.name),
            format!("--dbuser={}", db.user),
            format!("--dbpassfile={}", db_pass_file.display()),
            format!("--passfile={}", pass_file.display()),
            format!("--server={}", site.url),
            "--scriptpath=".into(),
            format!("--confpath={}", conf.display()),
            format!("--lang={}", site.site.language),
            "--skins=Vector".into(),
            site.site.title.as_str().to_owned(),
            "admin".into(),
        ];
        Some(PhpRun {
            what: "the MediaWiki installer",
            args,
            env,
            cwd: site.root.clone(),
            secret_files: vec![(db_pass_file, db.password.clone()), (pass_file, admin_password.clone())],
            timeout: Duration::from_secs(600),
            ..Default::default()
        })
    }

    fn login_link(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // MediaWiki has no one-time links; the nearest is a temporary password that must
        // be changed at the first login, as "Forgot your password?" sends by mail.
        let code = format!(
            "$user = User::newFromName('Admin');\n\
             if (!$user || !$user->getId()) {{ fwrite(STDERR, \"the wiki has no Admin account\\n\"); exit(1); }}\n\
             $password = PasswordFactory::generateRandomPasswordString(16);\n\
             $factory = \\MediaWiki\\MediaWikiServices::getInstance()->getPasswordFactory();\n\
             $hash = $factory->newFromPlaintext($password)->toString();\n\
             $dbw = \\MediaWiki\\MediaWikiServices::getInstance()->getDBLoadBalancer()->getConnection(DB_PRIMARY);\n\
             $dbw->update('user', ['user_newpassword' => $hash, 'user_newpass_time' => $dbw->timestamp()], ['user_id' => $user->getId()], 'aegir');\n\
             echo \"{LINK}\\n\" . {login} . ' (user Admin, temporary password ' . $password . ', valid once)' . \"\\n\";\n",
            login = quote(&format!("{}/index.php?title=Special:UserLogin", site.url)),
        );
        Some(PhpRun {
            what: "the MediaWiki temporary password",
            args: vec!["maintenance/eval.php".into()],
            env,
            cwd: site.root.clone(),
            success_marker: Some(LINK),
            timeout: Duration::from_secs(120),
            stdin: Some(code),
            ..Default::default()
        })
    }

    // The wiki's address is `$wgServer` in the settings a deploy renders; its database
    // holds no address, so a deploy has nothing to run in it.

    fn update(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // MediaWiki 1.40 and later run maintenance scripts through run.php.
        let args = if site.root.join("maintenance/run.php").is_file() {
            vec!["maintenance/run.php".to_owned(), "update".into(), "--quick".into()]
        } else {
            vec!["maintenance/update.php".to_owned(), "--quick".into()]
        };
        Some(PhpRun {
            what: "the MediaWiki database update (update.php)",
            args,
            env,
            cwd: site.root.clone(),
            timeout: Duration::from_secs(1800),
            ..Default::default()
        })
    }

    fn cron(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        Some(PhpRun {
            what: "MediaWiki jobs",
            args: vec!["maintenance/runJobs.php".into(), "--maxtime=300".into()],
            env,
            cwd: site.root.clone(),
            timeout: Duration::from_secs(600),
            ..Default::default()
        })
    }

    fn figures(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // The counts MediaWiki keeps itself (Special:Statistics). eval.php runs each line
        // on its own, so each is a whole statement.
        let code = "echo 'users=' . (int) SiteStats::users() . \"\\n\";\n\
                    echo 'articles=' . (int) SiteStats::articles() . \"\\n\";\n\
                    echo 'pages=' . (int) SiteStats::pages() . \"\\n\";\n\
                    echo 'edits=' . (int) SiteStats::edits() . \"\\n\";\n\
                    echo 'uploads=' . (int) SiteStats::images() . \"\\n\";\n";
        Some(PhpRun {
            what: "MediaWiki figures",
            args: vec!["maintenance/eval.php".into()],
            env,
            cwd: site.root.clone(),
            timeout: Duration::from_secs(120),
            stdin: Some(code.to_owned()),
            ..Default::default()
        })
    }

    fn packages(&self, root: &Path, _site_dir: Option<&Path>) -> Vec<Package> {
        let mut found = vec![package("mediawiki", PackageKind::Core, scan::mediawiki_version(root))];
        for (dir, manifest, kind) in
            [("extensions", "extension.json", PackageKind::Extension), ("skins", "skin.json", PackageKind::Skin)]
        {
            for ext in scan::subdirs(&root.join(dir)) {
                if let Some(text) = scan::read(&ext, manifest) {
                    let name = capture(&text, r#""name"\s*:\s*"([^"]+)""#)
                        .unwrap_or_else(|| ext.file_name().unwrap_or_default().to_string_lossy().into_owned());
                    found.push(package(name, kind, capture(&text, r#""version"\s*:\s*"([^"]+)""#)));
                }
            }
        }
        found
    }

    fn writable_dirs(&self, root: &Path) -> Vec<std::path::PathBuf> {
        let mut dirs = vec![root.join("images")];
        dirs.extend(scan::site_dirs(root));
        dirs
    }
}
