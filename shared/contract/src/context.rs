//! Snapshots of contexts as a task carries them. A task message holds everything a
//! worker needs, so workers never read the front end's database.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{AbsolutePath, HostName, PlatformName, ServerName};
use crate::secret::Secret;

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
