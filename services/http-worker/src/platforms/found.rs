//! Sites already on a platform, as platform import finds them: each site directory
//! with its settings file, its aliases (from `sites/sites.php` and its vhost) and its
//! database account. Every value read from disk is validated with the contract's types;
//! what does not validate is left out and said why.

use std::collections::BTreeMap;
use std::path::Path;

use aegir_contract::{DbIdent, FoundDatabase, FoundSite, HostName, PlatformType, Secret, SiteUri};
use regex::Regex;

use crate::vhost;

/// What a scan found, and what it left out (one sentence each, for the task log).
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<FoundSite>,
    pub skipped: Vec<String>,
}

/// Settings and vhosts are small; anything larger is not one of them.
const MAX_FILE: u64 = 1 << 20;

/// The file in a site's directory that makes it a site, per platform type.
pub fn settings_file(kind: PlatformType) -> &'static str {
    match kind {
        PlatformType::Drupal7 | PlatformType::Drupal | PlatformType::Php => "settings.php",
        PlatformType::Wordpress => "wp-config.php",
        PlatformType::Mediawiki => "LocalSettings.php",
    }
}

fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Scans `<root>/sites/*/` for sites of a `kind` platform; `vhost_dir` holds the vhosts
/// this server's web server serves (ours pass the database account to PHP).
pub fn scan(root: &Path, kind: PlatformType, vhost_dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let Ok(entries) = std::fs::read_dir(root.join("sites")) else { return scan };
    let mut dirs: Vec<_> = entries.flatten().collect();
    dirs.sort_by_key(|e| e.file_name());
    let sites_php = read_small(&root.join("sites/sites.php")).map(|t| sites_php_aliases(&t)).unwrap_or_default();
    let file = settings_file(kind);
    for entry in dirs {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Entries that are not directories (sites.php, example.sites.php) are not sites.
        let Ok(kind_of) = entry.file_type() else { continue };
        if !kind_of.is_dir() || matches!(name.as_str(), "all" | "default") {
            if kind_of.is_symlink() {
                scan.skipped
                    .push(format!("sites/{name} is a symbolic link; site directories must be real directories"));
            }
            continue;
        }
        let settings_path = entry.path().join(file);
        let Some(settings) = read_small(&settings_path) else {
            scan.skipped.push(format!("sites/{name} holds no {file}; it is not a site"));
            continue;
        };
        let uri = match SiteUri::parse(&name) {
            Ok(uri) => uri,
            Err(e) => {
                scan.skipped.push(format!("sites/{name} is not named like a site: {e}"));
                continue;
            }
        };
        let vhost_text = read_small(&vhost::path(vhost_dir, &uri));
        let mut site = FoundSite { uri: uri.clone(), aliases: Vec::new(), redirection: false, database: None };
        let mut alias_names: Vec<&str> =
            sites_php.get(name.as_str()).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default();
        let (served, redirected) = vhost_text.as_deref().map(vhost_names).unwrap_or_default();
        alias_names.extend(served.iter().chain(&redirected).map(String::as_str));
        site.redirection = !redirected.is_empty();
        for alias in alias_names {
            match SiteUri::parse(alias) {
                Ok(a) if a != uri && !site.aliases.contains(&a) => site.aliases.push(a),
                Ok(_) => {}
                Err(e) => scan.skipped.push(format!("alias `{alias}` of {uri} left out: {e}")),
            }
        }
        // Our own layout keeps the account out of the settings: the vhost passes it.
        let raw = vhost_text.as_deref().and_then(vhost_database).or_else(|| settings_database(kind, &settings));
        match raw.map(|r| r.validate()) {
            Some(Ok(db)) => site.database = Some(db),
            Some(Err(reason)) => scan.skipped.push(format!("the database account of {uri} left out: {reason}")),
            None => {}
        }
        scan.found.push(site);
    }
    scan
}

/// A database account as written on disk, before validation.
#[derive(Debug, Default, PartialEq, Eq)]
struct RawDatabase {
    name: String,
    user: String,
    password: String,
    host: Option<String>,
    port: Option<String>,
}

impl RawDatabase {
    fn validate(self) -> Result<FoundDatabase, String> {
        let name = DbIdent::parse(&self.name).map_err(|e| e.to_string())?;
        let user = DbIdent::parse(&self.user).map_err(|e| e.to_string())?;
        if self.password.is_empty() || !vhost::carries(&self.password) {
            return Err("its password is empty or holds characters the web server config cannot carry".into());
        }
        // `host:port` (WordPress's DB_HOST) splits into both.
        let (host, port) = match (self.host.as_deref(), self.port) {
            (Some(h), None) if h.contains(':') && !h.starts_with('[') => {
                let (h, p) = h.rsplit_once(':').expect("checked above");
                (Some(h.to_owned()), Some(p.to_owned()))
            }
            (h, p) => (h.map(str::to_owned), p),
        };
        let host =
            host.filter(|h| !h.is_empty()).map(|h| HostName::parse(&h).map_err(|e| e.to_string())).transpose()?;
        let port = port
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u16>().map_err(|_| format!("port `{p}` is not a port number")))
            .transpose()?;
        Ok(FoundDatabase { name, user, password: Secret::new(self.password), host, port })
    }
}

fn first(text: &str, pattern: &str) -> Option<String> {
    Regex::new(pattern).ok()?.captures(text)?.get(1).map(|m| m.as_str().to_owned())
}

/// The account our vhosts pass to PHP (`fastcgi_param AEGIR_DB_NAME "…"` or `SetEnv`).
fn vhost_database(text: &str) -> Option<RawDatabase> {
    let param = |name: &str| first(text, &format!(r#"(?m)^\s*(?:fastcgi_param|SetEnv)\s+{name}\s+"([^"]*)""#));
    Some(RawDatabase {
        name: param("AEGIR_DB_NAME")?,
        user: param("AEGIR_DB_USER")?,
        password: param("AEGIR_DB_PASSWORD")?,
        host: param("AEGIR_DB_HOST"),
        port: param("AEGIR_DB_PORT"),
    })
}

/// The account a settings file names with literal strings. Settings that read it from
/// elsewhere (ours read the environment) give nothing.
fn settings_database(kind: PlatformType, text: &str) -> Option<RawDatabase> {
    let quoted = r#"(?:'([^'\\]*)'|"([^"\\$]*)")"#;
    let value = |pattern: String| -> Option<String> {
        let caps = Regex::new(&pattern).ok()?.captures(text)?;
        caps.get(1).or_else(|| caps.get(2)).map(|m| m.as_str().to_owned())
    };
    match kind {
        // `$databases['default']['default'] = array('database' => '…', …)` (7) or `[…]` (8+).
        PlatformType::Drupal7 | PlatformType::Drupal | PlatformType::Php => {
            let start = text.find("$databases")?;
            let text = &text[start..];
            let key = |k: &str| {
                let caps = Regex::new(&format!(r#"['"]{k}['"]\s*=>\s*{quoted}"#)).ok()?.captures(text)?;
                caps.get(1).or_else(|| caps.get(2)).map(|m| m.as_str().to_owned())
            };
            let port = key("port").or_else(|| first(text, r#"['"]port['"]\s*=>\s*([0-9]+)"#));
            Some(RawDatabase {
                name: key("database")?,
                user: key("username")?,
                password: key("password")?,
                host: key("host"),
                port,
            })
        }
        PlatformType::Wordpress => {
            let define = |k: &str| value(format!(r#"define\(\s*['"]{k}['"]\s*,\s*{quoted}\s*\)"#));
            Some(RawDatabase {
                name: define("DB_NAME")?,
                user: define("DB_USER")?,
                password: define("DB_PASSWORD")?,
                host: define("DB_HOST"),
                port: None,
            })
        }
        PlatformType::Mediawiki => {
            let var = |k: &str| value(format!(r#"\${k}\s*=\s*{quoted}\s*;"#));
            Some(RawDatabase {
                name: var("wgDBname")?,
                user: var("wgDBuser")?,
                password: var("wgDBpassword")?,
                host: var("wgDBserver"),
                port: var("wgDBport"),
            })
        }
    }
}

/// `$sites['alias'] = 'dir';` entries of `sites/sites.php`, by directory.
fn sites_php_aliases(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let re = Regex::new(r#"\$sites\[\s*['"]([^'"]+)['"]\s*\]\s*=\s*['"]([^'"]+)['"]\s*;"#).expect("valid pattern");
    for caps in re.captures_iter(text) {
        map.entry(caps[2].to_owned()).or_default().push(caps[1].to_owned());
    }
    map
}

/// The names a vhost serves and those it redirects: the first server block's (or
/// VirtualHost's) names are served, those of later blocks redirect.
fn vhost_names(text: &str) -> (Vec<String>, Vec<String>) {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in text.lines().map(str::trim) {
        let words = |rest: &str| rest.trim_end_matches(';').split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        if let Some(rest) = line.strip_prefix("server_name ").or_else(|| line.strip_prefix("ServerName ")) {
            blocks.push(words(rest));
        } else if let Some(rest) = line.strip_prefix("ServerAlias ")
            && let Some(last) = blocks.last_mut()
        {
            last.extend(words(rest));
        }
    }
    let mut blocks = blocks.into_iter();
    let served = blocks.next().unwrap_or_default();
    (served, blocks.flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::tree;

    const D7: &str = "<?php\n$databases = array (\n  'default' => array (\n    'default' => array (\n      \
        'database' => 'example_org',\n      'username' => 'example_user',\n      'password' => 'Secr3t-pw',\n      \
        'host' => 'localhost',\n      'port' => '',\n      'driver' => 'mysql',\n      'prefix' => '',\n    ),\n  ),\n);\n";

    #[test]
    fn a_drupal7_site_is_found_with_its_database_and_aliases() {
        let dir = tree(&[
            ("sites/example.org/settings.php", D7),
            ("sites/default/settings.php", D7),
            ("sites/all/modules/x.info", ""),
            (
                "sites/sites.php",
                "<?php\n$sites['www.example.org'] = 'example.org';\n$sites['bad alias'] = 'example.org';\n",
            ),
            ("sites/notasite/README", ""),
        ]);
        let scan = scan(dir.path(), PlatformType::Drupal7, &dir.path().join("vhost.d"));
        assert_eq!(scan.found.len(), 1, "{:?}", scan.skipped);
        let site = &scan.found[0];
        assert_eq!(site.uri.as_str(), "example.org");
        assert_eq!(site.aliases, vec![SiteUri::parse("www.example.org").unwrap()]);
        let db = site.database.as_ref().unwrap();
        assert_eq!(
            (db.name.as_str(), db.user.as_str(), db.password.expose()),
            ("example_org", "example_user", "Secr3t-pw")
        );
        assert_eq!(db.host.as_ref().map(|h| h.as_str()), Some("localhost"));
        assert_eq!(db.port, None);
        assert!(scan.skipped.iter().any(|s| s.contains("bad alias")), "{:?}", scan.skipped);
        assert!(scan.skipped.iter().any(|s| s.contains("sites/notasite holds no settings.php")), "{:?}", scan.skipped);
    }

    #[test]
    fn our_own_sites_take_their_account_from_the_vhost() {
        let vhost = "# Written by Aegir\n\nserver {\n    listen 8080;\n    server_name blog.test www.blog.test;\n        \
            fastcgi_param AEGIR_DB_NAME \"blog_test_ab\";\n        fastcgi_param AEGIR_DB_USER \"blog_test_ab\";\n        \
            fastcgi_param AEGIR_DB_PASSWORD \"pw123\";\n        fastcgi_param AEGIR_DB_HOST \"127.0.0.1\";\n        \
            fastcgi_param AEGIR_DB_PORT \"3306\";\n}\nserver {\n    server_name old.blog.test;\n    return 301 x;\n}\n";
        let dir = tree(&[
            ("sites/blog.test/wp-config.php", "<?php\ndefine('DB_NAME', $aegir_env('AEGIR_DB_NAME'));\n"),
            ("vhost.d/blog.test.conf", vhost),
        ]);
        let scan = scan(dir.path(), PlatformType::Wordpress, &dir.path().join("vhost.d"));
        let site = &scan.found[0];
        assert!(site.redirection);
        let aliases: Vec<&str> = site.aliases.iter().map(|a| a.as_str()).collect();
        assert_eq!(aliases, ["www.blog.test", "old.blog.test"]);
        let db = site.database.as_ref().unwrap();
        assert_eq!((db.name.as_str(), db.port), ("blog_test_ab", Some(3306)));
    }

    #[test]
    fn values_that_do_not_validate_are_left_out() {
        let bad = D7.replace("example_org", "evil`; DROP");
        let dir = tree(&[("sites/example.org/settings.php", &bad), ("sites/Bad_Name/settings.php", D7)]);
        let scan = scan(dir.path(), PlatformType::Drupal, &dir.path().join("vhost.d"));
        assert_eq!(scan.found.len(), 1);
        assert!(scan.found[0].database.is_none());
        assert!(scan.skipped.iter().any(|s| s.contains("database account of example.org")), "{:?}", scan.skipped);
        assert!(scan.skipped.iter().any(|s| s.contains("sites/Bad_Name")), "{:?}", scan.skipped);
    }

    #[test]
    fn wordpress_and_mediawiki_settings_are_read() {
        let wp = "<?php\ndefine( 'DB_NAME', 'wpdb' );\ndefine('DB_USER', \"wpuser\");\ndefine('DB_PASSWORD', 'pw');\ndefine('DB_HOST', 'db.example.com:3307');\n";
        let raw = settings_database(PlatformType::Wordpress, wp).unwrap().validate().unwrap();
        assert_eq!((raw.name.as_str(), raw.host.unwrap().as_str(), raw.port), ("wpdb", "db.example.com", Some(3307)));
        let mw =
            "<?php\n$wgDBname = \"wikidb\";\n$wgDBuser = 'wiki';\n$wgDBpassword = 'pw';\n$wgDBserver = 'localhost';\n";
        let raw = settings_database(PlatformType::Mediawiki, mw).unwrap();
        assert_eq!((raw.name.as_str(), raw.user.as_str()), ("wikidb", "wiki"));
    }
}
