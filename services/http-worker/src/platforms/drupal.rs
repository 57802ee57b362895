//! Drupal 8 and later: `sites/<uri>/settings.php`, aliases in `sites/sites.php`, the
//! installer and tools through the platform's own drush.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::{Package, PackageKind, ProfileName, Secret, SiteUri};

use super::drupal7::{DEPLOYED, INSTALLED, LINK, UPDATED, apply_pending_updates, cli_request};
use super::scan::{self, capture, package};
use super::{ENV_READER, Platform, Rendered, SiteFiles, WRITTEN_BY};
use crate::php::{PhpRun, quote};

pub struct Drupal;

/// The `$databases` entry and the lines both Drupal generations share.
pub fn settings_common(site: &SiteFiles, extra_db: &str) -> String {
    let uri = site.site.uri.as_str();
    format!(
        "<?php\n\
         // {WRITTEN_BY}: the Drupal settings of {uri}. Changes here are overwritten at verify.\n\
         // The database account comes from the web server (or the environment of a CLI run).\n\
         {ENV_READER}\n\
         $databases['default']['default'] = array(\n  \
           'driver' => 'mysql',\n  \
           'database' => $aegir_env('AEGIR_DB_NAME'),\n  \
           'username' => $aegir_env('AEGIR_DB_USER'),\n  \
           'password' => $aegir_env('AEGIR_DB_PASSWORD'),\n  \
           'host' => $aegir_env('AEGIR_DB_HOST'),\n  \
           'port' => $aegir_env('AEGIR_DB_PORT'),\n  \
           'prefix' => '',\n  \
           'collation' => 'utf8mb4_general_ci',\n\
         {extra_db});\n"
    )
}

/// The installer without drush: the same `install_drupal()` call drush's `site:install`
/// makes, run by the platform's PHP. The database comes from the site's settings.php
/// (filled from the environment), so the installer skips its database form.
fn install_without_drush(
    site: &SiteFiles,
    mut env: Vec<(&'static str, Secret)>,
    admin_password: &Secret,
    profile: &str,
) -> PhpRun {
    env.push(("AEGIR_ADMIN_PASSWORD", admin_password.clone()));
    let code = format!(
        "chdir({root});\n{request}\
         $class_loader = require 'autoload.php';\n\
         require_once 'core/includes/install.core.inc';\n\
         $pass = getenv('AEGIR_ADMIN_PASSWORD');\n\
         $settings = array(\n  \
           'parameters' => array('profile' => {profile}, 'langcode' => {lang}),\n  \
           'forms' => array(\n    \
             'install_configure_form' => array(\n      \
               'site_name' => {title},\n      \
               'site_mail' => {email},\n      \
               'account' => array('name' => 'admin', 'mail' => {email}, 'pass' => array('pass1' => $pass, 'pass2' => $pass)),\n      \
               'enable_update_status_module' => TRUE,\n      \
               'enable_update_status_emails' => TRUE,\n    \
             ),\n  \
           ),\n\
         );\n\
         try {{ install_drupal($class_loader, $settings); }}\n\
         catch (\\Exception $e) {{ fwrite(STDERR, strip_tags($e->getMessage()) . \"\\n\"); exit(1); }}\n\
         echo \"\\n{INSTALLED}\\n\";\n",
        root = quote(&site.root.display().to_string()),
        request = cli_request(site),
        profile = quote(profile),
        lang = quote(site.site.language.as_str()),
        title = quote(site.site.title.as_str()),
        email = quote(site.site.admin_email.as_str()),
    );
    PhpRun::inline("the Drupal installer", code, env, &site.root, Duration::from_secs(900)).expecting(INSTALLED)
}

/// A one-time login link for user 1 without drush: boot the site's kernel and ask
/// Drupal for it, as drush's `user:login` does.
fn login_link_without_drush(site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> PhpRun {
    let code = format!(
        "{boot}$account = \\Drupal\\user\\Entity\\User::load(1);\n\
         echo \"{LINK}\\n\" . user_pass_reset_url($account) . \"/login\\n\";\n",
        boot = kernel_boot(site, false),
    );
    PhpRun::inline("the Drupal login link", code, env, &site.root, Duration::from_secs(120)).expecting(LINK)
}

/// The PHP that boots the site's kernel for a CLI run: the update kernel (which copes
/// with a schema older than the code) when `update`, else the normal one.
fn kernel_boot(site: &SiteFiles, update: bool) -> String {
    let kernel = if update {
        "class_exists('Drupal\\Core\\Update\\UpdateKernel') ? 'Drupal\\Core\\Update\\UpdateKernel' : 'Drupal\\Core\\DrupalKernel'"
    } else {
        "'Drupal\\Core\\DrupalKernel'"
    };
    format!(
        "chdir({root});\n{request}\
         $class_loader = require 'autoload.php';\n\
         $request = \\Symfony\\Component\\HttpFoundation\\Request::createFromGlobals();\n\
         $kernel_class = {kernel};\n\
         $kernel = $kernel_class::createFromRequest($request, $class_loader, 'prod');\n\
         $kernel->boot();\n\
         $kernel->preHandle($request);\n",
        root = quote(&site.root.display().to_string()),
        request = cli_request(site),
    )
}

/// Caches rebuilt without drush, as core's rebuild.php does: the service container is
/// thrown away first, since it holds paths of the code base the site came from.
fn rebuild_without_drush(site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> PhpRun {
    let code = format!(
        "chdir({root});\n{request}\
         $class_loader = require 'autoload.php';\n\
         require_once 'core/includes/utility.inc';\n\
         $request = \\Symfony\\Component\\HttpFoundation\\Request::createFromGlobals();\n\
         \\Drupal\\Core\\DrupalKernel::bootEnvironment();\n\
         \\Drupal\\Core\\Site\\Settings::initialize(getcwd(), \\Drupal\\Core\\DrupalKernel::findSitePath($request), $class_loader);\n\
         drupal_rebuild($class_loader, $request);\n\
         echo \"caches rebuilt for this code base\\n\\n{DEPLOYED}\\n\";\n",
        root = quote(&site.root.display().to_string()),
        request = cli_request(site),
    );
    PhpRun::inline("the Drupal cache rebuild", code, env, &site.root, Duration::from_secs(900)).expecting(DEPLOYED)
}

/// Pending database updates without drush, as `drush updatedb` runs them.
fn update_without_drush(site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> PhpRun {
    let code = format!(
        "{boot}require_once 'core/includes/install.inc';\n\
         require_once 'core/includes/update.inc';\n\
         drupal_load_updates();\n\
         {apply}\
         if ($applied) {{ drupal_flush_all_caches(); echo \"caches rebuilt\\n\"; }}\n\
         echo \"\\n{UPDATED}\\n\";\n",
        boot = kernel_boot(site, true),
        apply = apply_pending_updates(),
    );
    PhpRun::inline("the Drupal database updates", code, env, &site.root, Duration::from_secs(1800)).expecting(UPDATED)
}

fn drush(root: &Path) -> Option<PathBuf> {
    ["vendor/bin/drush", "vendor/drush/drush/drush"].iter().map(|p| root.join(p)).find(|p| p.is_file())
}

pub(super) fn drush_run(
    site: &SiteFiles,
    what: &'static str,
    env: Vec<(&'static str, Secret)>,
    args: &[String],
) -> Option<PhpRun> {
    let drush = drush(&site.root)?;
    let mut all =
        vec![drush.display().to_string(), format!("--root={}", site.root.display()), format!("--uri={}", site.url)];
    all.extend_from_slice(args);
    Some(PhpRun {
        what,
        args: all,
        env,
        cwd: site.root.clone(),
        timeout: Duration::from_secs(900),
        ..Default::default()
    })
}

/// Modules, themes and profiles from `*.info.yml` files.
fn scan_info_yml(dir: &Path, found: &mut Vec<Package>) {
    for file in scan::find_files(dir, ".info.yml", 6) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let kind = match capture(&text, r"(?m)^type:\s*'?([a-z_]+)'?").as_deref() {
            Some("module") => PackageKind::Module,
            Some("theme") => PackageKind::Theme,
            Some("profile") => PackageKind::Profile,
            _ => continue,
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".info.yml").to_owned();
        let version = capture(&text, r#"(?m)^version:\s*['"]?([^'"\s]+)"#);
        found.push(package(name, kind, version));
    }
}

impl Platform for Drupal {
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered> {
        let uri = site.site.uri.as_str();
        let mut contents = settings_common(
            site,
            "  'namespace' => 'Drupal\\\\mysql\\\\Driver\\\\Database\\\\mysql',\n  \
               'autoload' => 'core/modules/mysql/src/Driver/Database/mysql/',\n",
        );
        let hosts: Vec<String> = std::iter::once(&site.site.uri)
            .chain(&site.site.aliases)
            .map(|h| quote(&format!("^{}$", regex::escape(h.as_str()))))
            .collect();
        contents.push_str(&format!(
            "// The hash salt derives from the database password, so no secret is kept here.\n\
             $settings['hash_salt'] = hash('sha256', 'hash|' . $aegir_env('AEGIR_DB_PASSWORD'));\n\
             $settings['file_public_path'] = {files};\n\
             $settings['file_private_path'] = {private};\n\
             $settings['config_sync_directory'] = {sync};\n\
             $settings['trusted_host_patterns'] = array({hosts});\n",
            files = quote(&format!("sites/{uri}/files")),
            private = quote(&format!("sites/{uri}/private")),
            sync = quote(&format!("sites/{uri}/private/config/sync")),
            hosts = hosts.join(", "),
        ));
        vec![Rendered { path: site.site_dir.join("settings.php"), contents }]
    }

    fn uses_sites_php(&self) -> bool {
        true
    }

    fn installer(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>, admin_password: &Secret) -> Option<PhpRun> {
        let profile = site.site.profile.as_ref().map_or("standard", |p| p.as_str()).to_owned();
        if drush(&site.root).is_none() {
            return Some(install_without_drush(site, env, admin_password, &profile));
        }
        drush_run(
            site,
            "drush site:install",
            env,
            &[
                "site:install".into(),
                profile,
                "--yes".into(),
                format!("--sites-subdir={}", site.site.uri),
                format!("--site-name={}", site.site.title),
                format!("--site-mail={}", site.site.admin_email),
                "--account-name=admin".into(),
                format!("--account-mail={}", site.site.admin_email),
                format!("--locale={}", site.site.language),
            ],
        )
    }

    fn login_link(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        if drush(&site.root).is_none() {
            return Some(login_link_without_drush(site, env));
        }
        drush_run(site, "drush user:login", env, &["user:login".into(), "--no-browser".into()])
    }

    fn deploy(
        &self,
        site: &SiteFiles,
        env: Vec<(&'static str, Secret)>,
        _renamed_from: Option<&SiteUri>,
    ) -> Option<PhpRun> {
        // The address comes from the request (trusted_host_patterns are in settings.php)
        // and files are `public://`, so the database holds no address; but the cached
        // service container and caches hold paths of the code base the site came from.
        if drush(&site.root).is_none() {
            return Some(rebuild_without_drush(site, env));
        }
        drush_run(site, "drush cache:rebuild", env, &["cache:rebuild".into()])
    }

    fn update(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        if drush(&site.root).is_none() {
            return Some(update_without_drush(site, env));
        }
        drush_run(site, "drush updatedb", env, &["updatedb".into(), "--yes".into()])
    }

    fn cron(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        drush_run(site, "drush cron", env, &["core:cron".into()])
    }

    fn figures(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // Straight from the tables, so a site whose entity caches are stale still counts
        // right; node and comment only where their modules are installed.
        let code = format!(
            "{boot}$db = \\Drupal::database();\n\
             $count = function ($sql) use ($db) {{ return (int) $db->query($sql)->fetchField(); }};\n\
             echo 'users=' . $count('SELECT COUNT(*) FROM {{users}} WHERE uid > 0') . \"\\n\";\n\
             if ($db->schema()->tableExists('node_field_data')) {{\n    \
                 echo 'nodes=' . $count('SELECT COUNT(*) FROM {{node_field_data}} WHERE default_langcode = 1') . \"\\n\";\n    \
                 echo 'published=' . $count('SELECT COUNT(*) FROM {{node_field_data}} WHERE default_langcode = 1 AND status = 1') . \"\\n\";\n\
             }}\n\
             if ($db->schema()->tableExists('comment_field_data')) {{\n    \
                 echo 'comments=' . $count('SELECT COUNT(*) FROM {{comment_field_data}} WHERE default_langcode = 1') . \"\\n\";\n\
             }}\n",
            boot = kernel_boot(site, false),
        );
        Some(PhpRun::inline("Drupal figures", code, env, &site.root, Duration::from_secs(120)))
    }

    fn packages(&self, root: &Path, site_dir: Option<&Path>) -> Vec<Package> {
        let core = scan::read(root, "core/lib/Drupal.php").and_then(|t| capture(&t, r#"const VERSION = '([^']+)'"#));
        let mut found = vec![package("drupal", PackageKind::Core, core)];
        for dir in ["modules", "themes", "profiles"] {
            scan_info_yml(&root.join(dir), &mut found);
        }
        if let Some(site_dir) = site_dir {
            scan_info_yml(&site_dir.join("modules"), &mut found);
            scan_info_yml(&site_dir.join("themes"), &mut found);
        }
        found
    }

    fn profiles(&self, root: &Path) -> Vec<ProfileName> {
        let mut found = Vec::new();
        for dir in [root.join("core/profiles"), root.join("profiles")] {
            for profile in scan::subdirs(&dir) {
                let name = profile.file_name().unwrap_or_default().to_string_lossy().into_owned();
                if profile.join(format!("{name}.info.yml")).is_file()
                    && let Ok(p) = ProfileName::parse(&name)
                {
                    found.push(p);
                }
            }
        }
        found
    }
}
