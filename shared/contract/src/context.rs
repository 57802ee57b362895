//! Snapshots of contexts as a task carries them. A task message holds everything a
//! worker needs, so workers never read the front end's database.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{
    AbsolutePath, ClientName, DbIdent, Email, HostName, LanguageCode, PhpVersion, PlatformName, ProfileName,
    ServerName, SiteTitle, SiteUri,
};
use crate::secret::Secret;
use crate::source::PlatformSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpServiceType {
    Nginx,
    Apache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbServiceType {
    Mariadb,
    Mysql,
}

macro_rules! str_enum {
    ($ty:ident, $kind:literal, $rule:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::names::NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    _ => Err($crate::names::NameError { kind: $kind, value: s.to_owned(), rule: $rule }),
                }
            }
        }
    };
}
pub(crate) use str_enum;

str_enum!(HttpServiceType, "http service type", "use `nginx` or `apache`", {
    Nginx => "nginx",
    Apache => "apache",
});
str_enum!(DbServiceType, "db service type", "use `mariadb` or `mysql`", {
    Mariadb => "mariadb",
    Mysql => "mysql",
});

/// The name server software of a dns service; an enum so others (PowerDNS) can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DnsServiceType {
    /// BIND 9: zone files, a `named.conf` include and `rndc reload`.
    Bind,
}

str_enum!(DnsServiceType, "dns service type", "use `bind`", {
    Bind => "bind",
});

/// Whether a site is served over https: `off` (http only), `on` (http and https) or
/// `forced` (http redirects to https, except ACME challenges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    #[default]
    Off,
    On,
    Forced,
}

str_enum!(SslMode, "ssl mode", "use `off`, `on` or `forced`", {
    Off => "off",
    On => "on",
    Forced => "forced",
});

impl SslMode {
    pub fn is_off(&self) -> bool {
        *self == SslMode::Off
    }
}

/// The web service of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpService {
    pub service_type: HttpServiceType,
    /// The port vhosts listen on.
    pub port: u16,
}

/// The database service of a server, with the admin account the db-worker uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbService {
    pub service_type: DbServiceType,
    /// Host the db-worker connects to (usually the db server itself).
    pub host: HostName,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: Secret,
}

/// The name service of a server: it holds the records of the sites of the web servers
/// that name it as their dns server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsService {
    pub service_type: DnsServiceType,
}

/// A server and the services it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerContext {
    pub name: ServerName,
    /// Address other servers reach this one at.
    pub remote_host: HostName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<DbService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsService>,
}

/// The kind of application a platform holds, found by platform verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformType {
    /// Drupal 7.
    Drupal7,
    /// Drupal 8 and later.
    Drupal,
    Wordpress,
    Mediawiki,
    /// Any PHP application with a front controller (`index.php`).
    Php,
}

str_enum!(PlatformType, "platform type", "use one of `drupal7`, `drupal`, `wordpress`, `mediawiki`, `php`", {
    Drupal7 => "drupal7",
    Drupal => "drupal",
    Wordpress => "wordpress",
    Mediawiki => "mediawiki",
    Php => "php",
});

/// A platform: one code base on one web server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformContext {
    pub name: PlatformName,
    pub root: AbsolutePath,
    pub web_server: ServerContext,
    /// Where its code comes from when it is built on the web server; absent for a
    /// platform whose root is put there by other means. Only platform tasks carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PlatformSource>,
}

/// A site's own database and the account its application uses, generated when the site
/// is saved. The password travels to the workers that need it and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteDatabase {
    pub name: DbIdent,
    pub user: DbIdent,
    pub password: Secret,
}

/// A site: one uri on one platform, with its own database on a db server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteContext {
    pub uri: SiteUri,
    /// Other names the site answers to.
    #[serde(default)]
    pub aliases: Vec<SiteUri>,
    /// Whether aliases redirect (301) to the main uri instead of serving the site.
    #[serde(default)]
    pub redirection: bool,
    pub platform: PlatformContext,
    /// The platform's type as its last verify found it.
    pub platform_type: PlatformType,
    /// The server whose db service holds the site's database.
    pub db_server: ServerContext,
    pub database: SiteDatabase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileName>,
    pub language: LanguageCode,
    /// The name the application shows, e.g. in page titles.
    pub title: SiteTitle,
    /// The application's first administrator account.
    pub admin_email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientName>,
    /// The PHP version the site's php-fpm pool runs, one installed on its web server;
    /// absent: the web server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php_version: Option<PhpVersion>,
    /// The server whose dns service holds the records of the site's uri and aliases (its
    /// web server's dns server); absent: the system keeps no records for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<ServerContext>,
    /// Whether the site is served over https, with a certificate its web server obtains
    /// over ACME for its uri and aliases.
    #[serde(default, skip_serializing_if = "SslMode::is_off")]
    pub ssl: SslMode,
}

impl SiteContext {
    /// The names the site's dns records are for: its uri, then its aliases.
    pub fn dns_names(&self) -> impl Iterator<Item = &SiteUri> {
        std::iter::once(&self.uri).chain(self.aliases.iter())
    }

    /// Where the web server reaches the site's database.
    pub fn db_host(&self) -> Option<(&HostName, u16)> {
        self.db_server.db.as_ref().map(|db| (&db.host, db.port))
    }

    /// The hosts the site's database user may connect from, as the db server sees the
    /// web server: the loopback names when both are one machine, else the web server's
    /// address. Never `%`.
    pub fn db_grant_hosts(&self) -> Vec<HostName> {
        let web = &self.platform.web_server;
        let same_machine = web.name == self.db_server.name
            || web.remote_host == self.db_server.remote_host
            || self.db_host().is_some_and(|(h, _)| matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"));
        if same_machine {
            ["localhost", "127.0.0.1"].iter().map(|h| HostName::parse(h).expect("valid host")).collect()
        } else {
            vec![web.remote_host.clone()]
        }
    }
}

/// A site platform import found on disk, every value validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FoundSite {
    pub uri: SiteUri,
    /// Other names the site answers to (from `sites/sites.php` or its vhost).
    #[serde(default)]
    pub aliases: Vec<SiteUri>,
    /// Whether its vhost redirects the aliases to the uri.
    #[serde(default)]
    pub redirection: bool,
    /// The database account its settings (or its vhost) name; absent when none was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<FoundDatabase>,
}

/// A site's database account as found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FoundDatabase {
    pub name: DbIdent,
    pub user: DbIdent,
    pub password: Secret,
    /// Where the database is, as the settings say; absent when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// What a verify found installed: a module, theme, profile, plugin, extension or skin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub kind: PackageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    Core,
    Module,
    Theme,
    Profile,
    Plugin,
    Extension,
    Skin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types_parse_and_refuse() {
        assert_eq!("nginx".parse::<HttpServiceType>().unwrap(), HttpServiceType::Nginx);
        let e = "lighttpd".parse::<HttpServiceType>().unwrap_err();
        assert!(e.to_string().contains("http service type"));
        assert!(e.to_string().contains("nginx"));
        assert_eq!(PlatformType::Drupal7.to_string(), "drupal7");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"name":"server_master","remote_host":"localhost","extra":1}"#;
        assert!(serde_json::from_str::<ServerContext>(json).is_err());
    }
}
