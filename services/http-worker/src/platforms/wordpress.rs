//! WordPress: one code base, one `sites/<uri>/wp-config.php` per site, chosen by the
//! platform's `wp-config.php` that we write.

use std::path::Path;
use std::time::Duration;

use aegir_contract::{Package, PackageKind, Secret, SiteUri};

use super::scan::{self, capture, package};
use super::{ENV_READER, Platform, Rendered, SiteFiles, WRITTEN_BY, dispatcher_php};
use crate::php::{PhpRun, quote};

pub struct Wordpress;

const INSTALLED: &str = "AEGIR-WORDPRESS-INSTALLED";
const LINK: &str = "AEGIR-LOGIN-LINK";
const DEPLOYED: &str = "AEGIR-WORDPRESS-DEPLOYED";
const UPDATED: &str = "AEGIR-WORDPRESS-UPDATED";

/// PHP that loads WordPress for the site in `AEGIR_SITE_URI` as a request to its own host.
fn bootstrap(site: &SiteFiles) -> String {
    format!(
        "$_SERVER['HTTP_HOST'] = {host}; $_SERVER['SERVER_NAME'] = {uri}; $_SERVER['REQUEST_URI'] = '/';\n\
         $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1'; $_SERVER['REQUEST_METHOD'] = 'GET';\n",
        host = quote(site.url.trim_start_matches("http://")),
        uri = quote(site.site.uri.as_str()),
    )
}

impl Platform for Wordpress {
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered> {
        let uri = site.site.uri.as_str();
        let contents = format!(
            "<?php\n\
             // {WRITTEN_BY}: the WordPress settings of {uri}. Changes here are overwritten at verify.\n\
             // The database account comes from the web server (or the environment of a CLI run).\n\
             {ENV_READER}\n\
             define('DB_NAME', $aegir_env('AEGIR_DB_NAME'));\n\
             define('DB_USER', $aegir_env('AEGIR_DB_USER'));\n\
             define('DB_PASSWORD', $aegir_env('AEGIR_DB_PASSWORD'));\n\
             define('DB_HOST', $aegir_env('AEGIR_DB_HOST') . ':' . $aegir_env('AEGIR_DB_PORT'));\n\
             define('DB_CHARSET', 'utf8mb4');\n\
             define('DB_COLLATE', '');\n\
             // Keys and salts derive from the database password, so no secret is kept here.\n\
             foreach (array('AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT') as $aegir_key) {{\n    \
                 define($aegir_key, hash('sha256', $aegir_key . '|' . $aegir_env('AEGIR_DB_PASSWORD')));\n\
             }}\n\
             $table_prefix = 'wp_';\n\
             define('WP_HOME', {url});\n\
             define('WP_SITEURL', {url});\n\
             define('UPLOADS', {uploads});\n\
             define('WP_LANG', {lang});\n\
             define('AUTOMATIC_UPDATER_DISABLED', true);\n\
             define('DISALLOW_FILE_MODS', true);\n\
             define('WP_DEBUG', false);\n",
            url = quote(&site.url),
            uploads = quote(&format!("sites/{uri}/files")),
            lang = quote(site.site.language.as_str()),
        );
        vec![Rendered { path: site.site_dir.join("wp-config.php"), contents }]
    }

    fn dispatcher(&self) -> Option<(&'static str, String)> {
        let mut php = dispatcher_php("WordPress", "wp-config.php");
        php.push_str(
            "if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }\n\
             require_once ABSPATH . 'wp-settings.php';\n",
        );
        Some(("wp-config.php", php))
    }

    fn installer(
        &self,
        site: &SiteFiles,
        mut env: Vec<(&'static str, Secret)>,
        admin_password: &Secret,
    ) -> Option<PhpRun> {
        env.push(("AEGIR_ADMIN_PASSWORD", admin_password.clone()));
        let code = format!(
            "{boot}define('WP_INSTALLING', true);\n\
             require {load};\n\
             require_once ABSPATH . 'wp-admin/includes/upgrade.php';\n\
             if (!is_blog_installed()) {{\n    \
                 $result = wp_install({title}, 'admin', {email}, true, '', getenv('AEGIR_ADMIN_PASSWORD'), {lang});\n    \
                 if (empty($result['user_id'])) {{ fwrite(STDERR, \"wp_install made no administrator\\n\"); exit(1); }}\n\
             }}\n\
             echo \"\\n{INSTALLED}\\n\";\n",
            boot = bootstrap(site),
            load = quote(&site.root.join("wp-load.php").display().to_string()),
            title = quote(site.site.title.as_str()),
            email = quote(site.site.admin_email.as_str()),
            lang = quote(site.site.language.as_str()),
        );
        Some(
            PhpRun::inline("the WordPress installer", code, env, &site.root, Duration::from_secs(300))
                .expecting(INSTALLED),
        )
    }

    fn login_link(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        let code = format!(
            "{boot}require {load};\n\
             $user = get_user_by('login', 'admin');\n\
             if (!$user) {{ $admins = get_users(array('role' => 'administrator', 'number' => 1)); $user = $admins ? $admins[0] : null; }}\n\
             if (!$user) {{ fwrite(STDERR, \"the site has no administrator account\\n\"); exit(1); }}\n\
             $key = get_password_reset_key($user);\n\
             if (is_wp_error($key)) {{ fwrite(STDERR, $key->get_error_message() . \"\\n\"); exit(1); }}\n\
             echo \"{LINK}\\n\" . network_site_url('wp-login.php?action=rp&key=' . $key . '&login=' . rawurlencode($user->user_login), 'login') . \"\\n\";\n",
            boot = bootstrap(site),
            load = quote(&site.root.join("wp-load.php").display().to_string()),
        );
        Some(
            PhpRun::inline("the WordPress password reset", code, env, &site.root, Duration::from_secs(120))
                .expecting(LINK),
        )
    }

    fn figures(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        let code = format!(
            "{boot}require {load};\n\
             $users = count_users();\n\
             echo 'users=' . (int) $users['total_users'] . \"\\n\";\n\
             echo 'posts=' . (int) wp_count_posts('post')->publish . \"\\n\";\n\
             echo 'pages=' . (int) wp_count_posts('page')->publish . \"\\n\";\n\
             echo 'comments=' . (int) wp_count_comments()->approved . \"\\n\";\n",
            boot = bootstrap(site),
            load = quote(&site.root.join("wp-load.php").display().to_string()),
        );
        Some(PhpRun::inline("WordPress figures", code, env, &site.root, Duration::from_secs(120)))
    }

    fn deploy(
        &self,
        site: &SiteFiles,
        env: Vec<(&'static str, Secret)>,
        renamed_from: Option<&SiteUri>,
    ) -> Option<PhpRun> {
        // WordPress keeps its address in the `siteurl` and `home` options and in links
        // in posts. Our settings pin both options with constants, whose filters would
        // make update_option see no change: take them off first.
        let uploads = renamed_from
            .map(|old| {
                format!(
                    "$n = $wpdb->query($wpdb->prepare('UPDATE ' . $wpdb->posts . ' SET post_content = REPLACE(post_content, %s, %s)', {from}, {to}));\n\
                     if ($n) {{ echo \"moved links to uploaded files from {from} to {to} in $n posts\\n\"; }}\n",
                    from = quote(&format!("/sites/{old}/files/")),
                    to = quote(&format!("/sites/{}/files/", site.site.uri)),
                )
            })
            .unwrap_or_default();
        let code = format!(
            "{boot}require {load};\n\
             global $wpdb;\n\
             $url = {url};\n\
             remove_filter('option_siteurl', '_config_wp_siteurl');\n\
             remove_filter('option_home', '_config_wp_home');\n\
             $old = array();\n\
             foreach (array('siteurl', 'home') as $name) {{\n    \
                 $stored = $wpdb->get_var($wpdb->prepare('SELECT option_value FROM ' . $wpdb->options . ' WHERE option_name = %s', $name));\n    \
                 if ($stored === null) {{ fwrite(STDERR, \"the database has no `$name` option; is it this WordPress site's database?\\n\"); exit(1); }}\n    \
                 $stored = untrailingslashit($stored);\n    \
                 if ($stored === $url) {{ continue; }}\n    \
                 update_option($name, $url);\n    \
                 echo \"WordPress option $name was $stored, now $url\\n\";\n    \
                 $old[] = $stored;\n\
             }}\n\
             foreach (array_unique($old) as $from) {{\n    \
                 $n = $wpdb->query($wpdb->prepare('UPDATE ' . $wpdb->posts . ' SET post_content = REPLACE(post_content, %s, %s), guid = REPLACE(guid, %s, %s)', $from . '/', $url . '/', $from . '/', $url . '/'));\n    \
                 if ($n === false) {{ fwrite(STDERR, \"updating links in posts failed: {{$wpdb->last_error}}\\n\"); exit(1); }}\n    \
                 echo \"links to $from in posts now go to $url ($n posts changed)\\n\";\n\
             }}\n\
             {uploads}\
             if (!$old) {{ echo \"WordPress already has its address $url\\n\"; }}\n\
             wp_cache_flush();\n\
             echo \"\\n{DEPLOYED}\\n\";\n",
            boot = bootstrap(site),
            load = quote(&site.root.join("wp-load.php").display().to_string()),
            url = quote(&site.url),
        );
        Some(
            PhpRun::inline("the WordPress address update", code, env, &site.root, Duration::from_secs(300))
                .expecting(DEPLOYED),
        )
    }

    fn update(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        // As wp-admin/upgrade.php does it: plugins stay off while the schema changes.
        let code = format!(
            "{boot}define('WP_INSTALLING', true);\n\
             require {load};\n\
             require_once ABSPATH . 'wp-admin/includes/upgrade.php';\n\
             global $wpdb, $wp_db_version;\n\
             $version = static function () use ($wpdb) {{ return (int) $wpdb->get_var(\"SELECT option_value FROM {{$wpdb->options}} WHERE option_name = 'db_version'\"); }};\n\
             $before = $version();\n\
             echo \"WordPress database version $before; this WordPress uses version $wp_db_version\\n\";\n\
             try {{ wp_upgrade(); }}\n\
             catch (Throwable $e) {{ fwrite(STDERR, 'wp_upgrade failed: ' . $e->getMessage() . \"\\n\"); exit(1); }}\n\
             $after = $version();\n\
             if ($after !== (int) $wp_db_version) {{ fwrite(STDERR, \"the database is at version $after after wp_upgrade, not $wp_db_version\\n\"); exit(1); }}\n\
             echo $before === $after ? \"the database was already up to date (version $after)\\n\" : \"WordPress database updated from version $before to $after\\n\";\n\
             echo \"\\n{UPDATED}\\n\";\n",
            boot = bootstrap(site),
            load = quote(&site.root.join("wp-load.php").display().to_string()),
        );
        Some(
            PhpRun::inline(
                "the WordPress database update (wp_upgrade)",
                code,
                env,
                &site.root,
                Duration::from_secs(1800),
            )
            .expecting(UPDATED),
        )
    }

    fn cron(&self, site: &SiteFiles, env: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        let code = format!(
            "{boot}define('DOING_CRON', true);\nrequire {cron};\n",
            boot = bootstrap(site),
            cron = quote(&site.root.join("wp-cron.php").display().to_string()),
        );
        Some(PhpRun::inline("WordPress cron", code, env, &site.root, Duration::from_secs(600)))
    }

    fn packages(&self, root: &Path, _site_dir: Option<&Path>) -> Vec<Package> {
        let mut found = Vec::new();
        let core = scan::read(root, "wp-includes/version.php").and_then(|t| capture(&t, r#"\$wp_version = '([^']+)'"#));
        found.push(package("wordpress", PackageKind::Core, core));
        let content = root.join("wp-content");
        for dir in scan::subdirs(&content.join("plugins")) {
            for file in scan::find_files(&dir, ".php", 0) {
                let Ok(text) = std::fs::read_to_string(&file) else { continue };
                if capture(&text, r"(?m)^[\s*#@/]*Plugin Name:\s*(.+)$").is_some() {
                    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    found.push(package(name, PackageKind::Plugin, capture(&text, r"(?m)^[\s*#@/]*Version:\s*(\S+)")));
                    break;
                }
            }
        }
        for dir in scan::subdirs(&content.join("themes")) {
            if let Some(text) = scan::read(&dir, "style.css") {
                let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                found.push(package(name, PackageKind::Theme, capture(&text, r"(?m)^[\s*#@/]*Version:\s*(\S+)")));
            }
        }
        found
    }

    fn writable_dirs(&self, root: &Path) -> Vec<std::path::PathBuf> {
        let mut dirs = vec![root.join("wp-content/uploads")];
        dirs.extend(scan::site_dirs(root));
        dirs
    }

    fn layout_dirs(&self) -> &'static [&'static str] {
        &["sites"]
    }
}
