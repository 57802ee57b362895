//! Drupal 7: `sites/<uri>/settings.php`, aliases in `sites/sites.php`, and the same
//! non-interactive `install_drupal()` call drush makes, run by the platform's PHP.

use std::path::Path;
use std::time::Duration;

use aegir_contract::{Package, PackageKind, ProfileName, Secret, SiteUri};

use super::drupal::settings_common;
use super::scan::{self, capture, package};
use super::{Platform, Rendered, SiteFiles};
use crate::php::{PhpRun, quote};

pub struct Drupal7;

pub(super) const INSTALLED: &str = "AEGIR-DRUPAL-INSTALLED";
pub(super) const LINK: &str = "AEGIR-LOGIN-LINK";
pub(super) const UPDATED: &str = "AEGIR-DRUPAL-UPDATED";
pub(super) const DEPLOYED: &str = "AEGIR-DRUPAL-DEPLOYED";

/// PHP that applies every pending `hook_update_N`, in the order their dependencies
/// demand, as update.php's batch (and drush's updatedb) does, with Drupal's own
/// functions from update.inc; then Drupal 8's post-updates, if any. Expects update.inc
/// and install.inc loaded and `drupal_load_updates()` done. Sets `$applied`.
pub(super) fn apply_pending_updates() -> String {
    "$fail = static function ($what, $message) {\n    \
         fwrite(STDERR, $what . ': ' . trim(strip_tags((string) $message)) . \"\\n\"); exit(1);\n\
     };\n\
     $abort = static function ($context, $module, $number) {\n    \
         return isset($context['results'][$module][$number]['#abort']['query']) ? $context['results'][$module][$number]['#abort']['query'] : 'aborted';\n\
     };\n\
     $set_version = static function ($module, $number) {\n    \
         if (function_exists('drupal_set_installed_schema_version')) { drupal_set_installed_schema_version($module, $number); }\n    \
         else { \\Drupal::service('update.update_hook_registry')->setInstalledVersion($module, $number); }\n\
     };\n\
     $start = array();\n\
     foreach (update_get_update_list() as $module => $info) {\n    \
         if (isset($info['warning'])) { $fail(\"the updates of $module cannot run\", $info['warning']); }\n    \
         if (isset($info['start'])) { $start[$module] = $info['start']; }\n\
     }\n\
     $updates = $start ? update_resolve_dependencies($start) : array();\n\
     $applied = 0;\n\
     foreach ($updates as $function => $update) {\n    \
         if (empty($update['allowed'])) { $fail($function, 'it depends on updates that cannot run'); }\n    \
         if (isset($start[$update['module']])) { $set_version($update['module'], $update['number'] - 1); unset($start[$update['module']]); }\n    \
         $deps = !empty($update['reverse_paths']) ? array_keys($update['reverse_paths']) : array();\n    \
         $context = array('sandbox' => array(), 'results' => array(), 'finished' => 1);\n    \
         do {\n        \
             $context['finished'] = 1;\n        \
             update_do_one($update['module'], $update['number'], $deps, $context);\n        \
             if (!empty($context['results']['#abort'])) { $fail($function, $abort($context, $update['module'], $update['number'])); }\n    \
         } while ($context['finished'] < 1);\n    \
         echo \"applied $function\\n\";\n    \
         $applied++;\n\
     }\n\
     if (function_exists('update_invoke_post_update')) {\n    \
         foreach (\\Drupal::service('update.post_update_registry')->getPendingUpdateFunctions() as $function) {\n        \
             $context = array('sandbox' => array(), 'results' => array(), 'finished' => 1);\n        \
             do {\n            \
                 $context['finished'] = 1;\n            \
                 update_invoke_post_update($function, $context);\n            \
                 if (!empty($context['results']['#abort'])) { $fail($function, 'the post-update failed; see the site\\'s log'); }\n        \
             } while ($context['finished'] < 1);\n        \
             echo \"applied $function\\n\";\n        \
             $applied++;\n    \
         }\n\
     }\n\
     echo $applied ? \"$applied database updates applied\\n\" : \"no database updates were pending\\n\";\n"
        .to_owned()
}

/// PHP that sets up a request to the site's own host, as Drupal's bootstrap expects.
fn request(site: &SiteFiles) -> String {
    format!(
        "define('DRUPAL_ROOT', {});\nchdir(DRUPAL_ROOT);\n{}",
        quote(&site.root.display().to_string()),
        cli_request(site)
    )
}

/// The request a CLI run of Drupal pretends to answer, so Drupal picks the site's
/// directory (by host, through `sites/sites.php` and `sites/<uri>`).
pub(super) fn cli_request(site: &SiteFiles) -> String {
    format!(
        "$_SERVER['HTTP_HOST'] = {uri}; $_SERVER['SERVER_NAME'] = {uri}; $_SERVER['SCRIPT_NAME'] = '/index.php';\n\
         $_SERVER['REMOTE_ADDR'] = '127.0.0.1'; $_SERVER['REQUEST_METHOD'] = 'GET'; $_SERVER['SERVER_SOFTWARE'] = 'aegir';\n",
        uri = quote(site.site.uri.as_str()),
    )
}

impl Platform for Drupal7 {
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered> {
        let uri = site.site.uri.as_str();
        let mut contents = settings_common(site, "");
        contents.push_str(&format!(
            "// The hash salt derives from the database password, so no secret is kept here.\n\
             $drupal_hash_salt = hash('sha256', 'hash|' . $aegir_env('AEGIR_DB_PASSWORD'));\n\
             $base_url = {url};\n\
             $conf['file_public_path'] = {files};\n\
             $conf['file_private_path'] = {private};\n",
            url = quote(&site.url),
            files = quote(&format!("sites/{uri}/files")),
            private = quote(&format!("sites/{uri}/private")),
        ));
        vec![Rendered { path: site.site_dir.join("settings.php"), contents }]
    }

    fn uses_sites_php(&self) -> bool {
        true
    }

    fn installer(
        &self,
        site: &SiteFiles,
        mut env: Vec<(&'static str, Secret)>,
        admin_password: &Secret,
    ) -> Option<PhpRun> {
        env.push(("AEGIR_ADMIN_PASSWORD", admin_password.clone()));
        let profile = site.site.profile.as_ref().map_or("standard", |p| p.as_str());
        let code = format!(
            "{request}define('MAINTENANCE_MODE', 'install');\n\
             require_once DRUPAL_ROOT . '/includes/install.core.inc';\n\
             $pass = getenv('AEGIR_ADMIN_PASSWORD');\n\
             $settings = array(\n  \
               'parameters' => array('profile' => {profile}, 'locale' => {lang}),\n  \
               'forms' => array(\n    \
                 'install_configure_form' => array(\n      \
                   'site_name' => {title},\n      \
                   'site_mail' => {email},\n      \
                   'account' => array('name' => 'admin', 'mail' => {email}, 'pass' => array('pass1' => $pass, 'pass2' => $pass)),\n      \
                   'update_status_module' => array(1 => TRUE, 2 => TRUE),\n      \
                   'clean_url' => TRUE,\n    \
                 ),\n  \
               ),\n\
             );\n\
             try {{ install_drupal($settings); }}\n\
             catch (Exception $e) {{ fwrite(STDERR, strip_tags($e->getMessage()) . \"\\n\"); exit(1); }}\n\
             echo \"\\n{INSTALLED}\\n\";\n",
            request = request(site),
            profile = quote(profile),
            lang = quote(site.site.language.as_str()),
            title = quote(site.site.title.as_str()),
            email = quote(site.site.admin_email.as_str()),
        );
        Some(
            PhpRun::inline("the Drupal 7 installer", code, env, &site.root, Duration::from_secs(900))
                .expecting(INSTALLED),
        )
    }

    fn login_link(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        let code = format!(
            "{request}require_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n\
             drupal_bootstrap(DRUPAL_BOOTSTRAP_FULL);\n\
             $account = user_load(1);\n\
             echo \"{LINK}\\n\" . user_pass_reset_url($account) . \"/login\\n\";\n",
            request = request(site),
        );
        Some(PhpRun::inline("the Drupal 7 login link", code, env, &site.root, Duration::from_secs(120)).expecting(LINK))
    }

    fn deploy(
        &self,
        site: &SiteFiles,
        env: Vec<(&'static str, Secret)>,
        _renamed_from: Option<&SiteUri>,
    ) -> Option<PhpRun> {
        // The address is `$base_url` in settings.php and files are `public://`, so the
        // database holds no address; but its caches (registry, menus, pages) hold paths of
        // the code base the site came from: rebuild them, as `drush cache-clear all` does.
        let code = format!(
            "{request}require_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n\
             drupal_bootstrap(DRUPAL_BOOTSTRAP_FULL);\n\
             drupal_flush_all_caches();\n\
             echo \"caches rebuilt for this code base\\n\\n{DEPLOYED}\\n\";\n",
            request = request(site),
        );
        Some(
            PhpRun::inline("the Drupal 7 cache rebuild", code, env, &site.root, Duration::from_secs(900))
                .expecting(DEPLOYED),
        )
    }

    fn update(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        if let Some(run) =
            super::drupal::drush_run(site, "drush updatedb", env.clone(), &["updatedb".into(), "--yes".into()])
        {
            return Some(run);
        }
        // update.php's own bootstrap (which copes with a schema older than the code),
        // then the pending updates and, when some ran, the cache rebuild update.php ends with.
        let code = format!(
            "{request}define('MAINTENANCE_MODE', 'update');\n\
             require_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n\
             require_once DRUPAL_ROOT . '/includes/update.inc';\n\
             require_once DRUPAL_ROOT . '/includes/common.inc';\n\
             require_once DRUPAL_ROOT . '/includes/file.inc';\n\
             require_once DRUPAL_ROOT . '/includes/entity.inc';\n\
             require_once DRUPAL_ROOT . '/includes/unicode.inc';\n\
             update_prepare_d7_bootstrap();\n\
             drupal_bootstrap(DRUPAL_BOOTSTRAP_FULL);\n\
             require_once DRUPAL_ROOT . '/includes/install.inc';\n\
             drupal_load_updates();\n\
             update_fix_compatibility();\n\
             {apply}\
             if ($applied) {{ drupal_flush_all_caches(); echo \"caches rebuilt\\n\"; }}\n\
             echo \"\\n{UPDATED}\\n\";\n",
            request = request(site),
            apply = apply_pending_updates(),
        );
        Some(
            PhpRun::inline("the Drupal 7 database updates", code, env, &site.root, Duration::from_secs(1800))
                .expecting(UPDATED),
        )
    }

    fn cron(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        let code = format!(
            "{request}require_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n\
             drupal_bootstrap(DRUPAL_BOOTSTRAP_FULL);\n\
             exit(drupal_cron_run() ? 0 : 1);\n",
            request = request(site),
        );
        Some(PhpRun::inline("Drupal 7 cron", code, env, &site.root, Duration::from_secs(900)))
    }

    fn figures(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // The database is all it needs: no modules are loaded.
        let code = format!(
            "{request}require_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n\
             drupal_bootstrap(DRUPAL_BOOTSTRAP_DATABASE);\n\
             $count = function ($sql) {{ return (int) db_query($sql)->fetchField(); }};\n\
             echo 'users=' . $count('SELECT COUNT(*) FROM {{users}} WHERE uid > 0') . \"\\n\";\n\
             if (db_table_exists('node')) {{\n    \
                 echo 'nodes=' . $count('SELECT COUNT(*) FROM {{node}}') . \"\\n\";\n    \
                 echo 'published=' . $count('SELECT COUNT(*) FROM {{node}} WHERE status = 1') . \"\\n\";\n\
             }}\n\
             if (db_table_exists('comment')) {{\n    \
                 echo 'comments=' . $count('SELECT COUNT(*) FROM {{comment}}') . \"\\n\";\n\
             }}\n",
            request = request(site),
        );
        Some(PhpRun::inline("Drupal 7 figures", code, env, &site.root, Duration::from_secs(120)))
    }

    fn packages(&self, root: &Path, site_dir: Option<&Path>) -> Vec<Package> {
        let core =
            scan::read(root, "includes/bootstrap.inc").and_then(|t| capture(&t, r#"define\('VERSION', '([^']+)'\)"#));
        let mut found = vec![package("drupal", PackageKind::Core, core)];
        let mut dirs = vec![root.join("modules"), root.join("themes"), root.join("profiles"), root.join("sites/all")];
        dirs.extend(site_dir.map(Path::to_path_buf));
        for dir in dirs {
            for file in scan::find_files(&dir, ".info", 6) {
                let Ok(text) = std::fs::read_to_string(&file) else { continue };
                let name = file.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".info").to_owned();
                let parent = file.parent().unwrap_or(root);
                let kind = if parent.join(format!("{name}.profile")).is_file() {
                    PackageKind::Profile
                } else if text.lines().any(|l| l.trim_start().starts_with("engine")) {
                    PackageKind::Theme
                } else {
                    PackageKind::Module
                };
                found.push(package(name, kind, capture(&text, r#"(?m)^version\s*=\s*"?([^"\s]+)"#)));
            }
        }
        found
    }

    fn profiles(&self, root: &Path) -> Vec<ProfileName> {
        scan::subdirs(&root.join("profiles"))
            .into_iter()
            .filter_map(|dir| {
                let name = dir.file_name()?.to_string_lossy().into_owned();
                dir.join(format!("{name}.profile")).is_file().then(|| ProfileName::parse(&name).ok()).flatten()
            })
            .collect()
    }

    fn layout_dirs(&self) -> &'static [&'static str] {
        &["sites/all/modules", "sites/all/themes", "sites/all/libraries"]
    }
}
