//! Validated names. Each type can only hold a value that passed its check, and its
//! JSON Schema carries the same rule as a pattern.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Why a name was refused. `Display` names the kind of value and what is allowed, so
/// the API, the CLI and a rejected message all say the same thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{value}` is not valid: {rule}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, kind = $kind:literal, pattern = $pattern:literal, rule = $rule:literal $(, extra = $extra:expr)?) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PATTERN: &'static str = $pattern;

            pub fn parse(value: &str) -> Result<Self, NameError> {
                static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new($pattern).expect("valid pattern"));
                let extra_ok: fn(&str) -> bool = validated_name!(@extra $($extra)?);
                if RE.is_match(value) && extra_ok(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(NameError { kind: $kind, value: value.to_owned(), rule: $rule })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $rule })
            }
        }
    };
    (@extra) => { |_| true };
    (@extra $e:expr) => { $e };
}

validated_name!(
    /// `server_<name>`: lower-case letters, digits and `_`. No dots, because the name is
    /// the first part of a `<server>.<service>` routing key.
    ServerName,
    kind = "server name",
    pattern = "^server_[a-z0-9_]{1,48}$",
    rule = "use `server_` followed by 1 to 48 lower-case letters, digits or underscores"
);

validated_name!(
    /// `platform_<name>`.
    PlatformName,
    kind = "platform name",
    pattern = "^platform_[a-z0-9_]{1,56}$",
    rule = "use `platform_` followed by 1 to 56 lower-case letters, digits or underscores"
);

validated_name!(
    /// A client's short name.
    ClientName,
    kind = "client name",
    pattern = "^[a-z0-9][a-z0-9_]{0,62}$",
    rule = "use 1 to 63 lower-case letters, digits or underscores, starting with a letter or digit"
);

validated_name!(
    /// The name of a partner (a billing or other system sending commands). It begins the
    /// routing keys of the events sent to the partner and the names of its queues, so it
    /// holds no dots.
    PartnerName,
    kind = "partner name",
    pattern = "^[a-z][a-z0-9_]{0,31}$",
    rule = "use 1 to 32 lower-case letters, digits or underscores, starting with a letter"
);

validated_name!(
    /// A partner's key for one command: the same key again is the same command.
    IdempotencyKey,
    kind = "idempotency key",
    pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
    rule = "use 1 to 128 letters, digits, `.`, `_`, `:` or `-`, starting with a letter or digit (a UUID will do)"
);

validated_name!(
    /// A site's uri: a lower-case DNS name with no scheme, port or path. It names the
    /// site's directory, database and vhost, so nothing else is allowed.
    SiteUri,
    kind = "site uri",
    pattern = "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
    rule = "use a lower-case host name such as `www.example.com`: labels of letters, digits and `-`, each at most 63 characters, 253 in all, no scheme, port or path",
    extra = |s: &str| s.len() <= 253 && !s.starts_with("server_") && !s.starts_with("platform_")
);

validated_name!(
    /// A host name or IPv4/IPv6 address a worker or service is reached at.
    HostName,
    kind = "host name",
    pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^[0-9a-fA-F:]{2,39}$",
    rule = "use a host name such as `db1.example.com` or an IP address",
    extra = |s: &str| s.len() <= 253
);

validated_name!(
    /// An absolute, normalized directory path: no `.` or `..` components, no doubled or
    /// trailing slash, no characters that need quoting anywhere.
    AbsolutePath,
    kind = "path",
    pattern = "^(/[A-Za-z0-9_][A-Za-z0-9._+@-]{0,127})+$",
    rule = "use an absolute path such as `/var/aegir/platforms/drupal-10`: components of letters, digits, `.`, `_`, `-`, `+` or `@`, none of them `.` or `..`",
    extra = |s: &str| s.len() <= 1024 && s.split('/').all(|c| c != "." && c != "..")
);

validated_name!(
    /// A MariaDB/MySQL database or user name we generate: safe to quote as an identifier.
    /// 32 characters at most, MySQL's limit for user names.
    DbIdent,
    kind = "database identifier",
    pattern = "^[a-z][a-z0-9_]{0,31}$",
    rule = "use 1 to 32 lower-case letters, digits or underscores, starting with a letter"
);

validated_name!(
    /// An install profile (Drupal) or its equivalent: a machine name.
    ProfileName,
    kind = "profile",
    pattern = "^[a-z][a-z0-9_]{0,63}$",
    rule = "use a machine name such as `standard`: lower-case letters, digits and underscores, starting with a letter"
);

validated_name!(
    /// A PHP version as Debian's php-fpm packages name it: `8.2` (major.minor).
    PhpVersion,
    kind = "PHP version",
    pattern = "^[5-9]\\.[0-9]{1,2}$",
    rule = "use a major.minor version such as `8.2`"
);

validated_name!(
    /// A language code such as `en` or `pt-br`.
    LanguageCode,
    kind = "language",
    pattern = "^[a-z]{2,3}(-[a-z0-9]{2,8})?$",
    rule = "use a language code such as `en` or `pt-br`"
);

validated_name!(
    /// A site's title as its application shows it: printable text, no markup.
    SiteTitle,
    kind = "site title",
    pattern = "^[^<>\\x00-\\x1f\\x7f\"'`$\\\\]{1,120}$",
    rule = "use 1 to 120 printable characters without quotes, `<`, `>`, `$`, backquotes or backslashes"
);

validated_name!(
    /// An e-mail address for a site's administrator account.
    Email,
    kind = "e-mail address",
    pattern = "^[A-Za-z0-9._%+-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$",
    rule = "use an address such as `admin@example.com`"
);

impl DbIdent {
    /// A database (and user) name for a site: its uri reduced to `[a-z0-9_]`, cut to
    /// fit, with a suffix that keeps two similar uris apart.
    pub fn for_site(uri: &SiteUri, suffix: &str) -> DbIdent {
        let mut base: String = uri.as_str().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
            base.insert(0, 's');
        }
        let suffix: String = suffix.chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit()).take(6).collect();
        base.truncate(32 - suffix.len() - 1);
        DbIdent::parse(&format!("{base}_{suffix}")).expect("a generated name follows the rule")
    }
}

impl AbsolutePath {
    /// True when `self` is `root` or lies below it.
    pub fn is_within(&self, root: &AbsolutePath) -> bool {
        self.0 == root.0 || self.0.starts_with(&format!("{}/", root.0))
    }
}

/// A context as Aegir users write it: `@server_master`, `@platform_d10`, `@example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContextName {
    Server(ServerName),
    Platform(PlatformName),
    Site(SiteUri),
}

/// The kind of a context, as in Aegir's `--context_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContextType {
    Server,
    Platform,
    Site,
}

impl ContextType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextType::Server => "server",
            ContextType::Platform => "platform",
            ContextType::Site => "site",
        }
    }
}

impl fmt::Display for ContextType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContextType {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Self::Server),
            "platform" => Ok(Self::Platform),
            "site" => Ok(Self::Site),
            _ => Err(NameError {
                kind: "context type",
                value: s.to_owned(),
                rule: "use one of `server`, `platform`, `site`",
            }),
        }
    }
}

impl ContextName {
    /// Parses `@name` (the `@` is optional). The prefix decides the kind:
    /// `server_` is a server, `platform_` a platform, anything else a site uri.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let bare = value.strip_prefix('@').unwrap_or(value);
        let wrap = |mut e: NameError| {
            e.value = value.to_owned();
            e
        };
        if bare.starts_with("server_") {
            ServerName::parse(bare).map(Self::Server).map_err(wrap)
        } else if bare.starts_with("platform_") {
            PlatformName::parse(bare).map(Self::Platform).map_err(wrap)
        } else {
            SiteUri::parse(bare).map(Self::Site).map_err(|e| {
                wrap(NameError {
                    kind: "context name",
                    rule: "use `@server_<name>`, `@platform_<name>` or `@<site uri>` (lower-case host name, no path)",
                    ..e
                })
            })
        }
    }

    pub fn context_type(&self) -> ContextType {
        match self {
            Self::Server(_) => ContextType::Server,
            Self::Platform(_) => ContextType::Platform,
            Self::Site(_) => ContextType::Site,
        }
    }

    /// The bare name, without `@`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Server(n) => n.as_str(),
            Self::Platform(n) => n.as_str(),
            Self::Site(n) => n.as_str(),
        }
    }
}

impl fmt::Display for ContextName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.as_str())
    }
}

impl FromStr for ContextName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ContextName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContextName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ContextName {
    fn schema_name() -> Cow<'static, str> {
        "ContextName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^@(server_[a-z0-9_]{1,48}|platform_[a-z0-9_]{1,56}|([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$",
            "description": "An Aegir context: `@server_<name>`, `@platform_<name>` or `@<site uri>`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_names_parse_by_prefix() {
        assert_eq!(
            ContextName::parse("@server_master").unwrap(),
            ContextName::Server(ServerName::parse("server_master").unwrap())
        );
        assert!(matches!(ContextName::parse("@platform_d10").unwrap(), ContextName::Platform(_)));
        assert!(matches!(ContextName::parse("@www.example.com").unwrap(), ContextName::Site(_)));
        assert_eq!(ContextName::parse("server_master").unwrap().to_string(), "@server_master");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "@../etc",
            "@server_Master",
            "@server_a.b",
            "@server_",
            "@platform_../x",
            "@Example.com",
            "@example.com/path",
            "@example.com:8080",
            "@exa mple.com",
            "@example.com;rm",
            "@$(id)",
            "@-example.com",
            "@",
            "",
        ] {
            assert!(ContextName::parse(bad).is_err(), "{bad} should be refused");
        }
        let long_label = format!("@{}.com", "a".repeat(64));
        assert!(ContextName::parse(&long_label).is_err());
        let too_long = format!("@{}", vec!["a".repeat(60); 5].join("."));
        assert!(ContextName::parse(&too_long).is_err());
    }

    #[test]
    fn errors_name_the_kind_and_the_rule() {
        let e = ContextName::parse("@../etc").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("@../etc"), "{text}");
        assert!(text.contains("context name"), "{text}");
    }

    #[test]
    fn paths_must_be_absolute_and_normal() {
        assert!(AbsolutePath::parse("/var/aegir/platforms/d10").is_ok());
        for bad in ["var/aegir", "/var/../etc", "/var/./x", "/var//x", "/var/x/", "/", "/var/x y", "/var/$x"] {
            assert!(AbsolutePath::parse(bad).is_err(), "{bad} should be refused");
        }
        let root = AbsolutePath::parse("/var/aegir/platforms").unwrap();
        assert!(AbsolutePath::parse("/var/aegir/platforms/d10").unwrap().is_within(&root));
        assert!(!AbsolutePath::parse("/var/aegir/platforms2").unwrap().is_within(&root));
    }

    #[test]
    fn site_fields_are_checked() {
        let uri = SiteUri::parse("www.example-shop.com").unwrap();
        let db = DbIdent::for_site(&uri, "x7k2p9");
        assert_eq!(db.as_str(), "www_example_shop_com_x7k2p9");
        let long = SiteUri::parse(&format!("{}.example.com", "a".repeat(60))).unwrap();
        assert!(DbIdent::for_site(&long, "abc123").as_str().len() <= 32);
        assert!(DbIdent::for_site(&SiteUri::parse("9.example.com").unwrap(), "aa").as_str().starts_with('s'));
        for bad in ["Robert'); DROP", "a b", "", "x`y"] {
            assert!(DbIdent::parse(bad).is_err(), "{bad}");
        }
        assert!(SiteTitle::parse("My shop & blog").is_ok());
        for bad in ["<script>", "a\"b", "it's", "$(id)", "", "line\nbreak"] {
            assert!(SiteTitle::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse("admin@example.com").is_ok());
        assert!(Email::parse("admin@localhost").is_err());
        assert!(ProfileName::parse("standard").is_ok() && ProfileName::parse("../x").is_err());
        assert!(LanguageCode::parse("pt-br").is_ok() && LanguageCode::parse("EN").is_err());
        assert!(PhpVersion::parse("8.2").is_ok() && PhpVersion::parse("8").is_err());
        assert!(PhpVersion::parse("8.2; x").is_err() && PhpVersion::parse("../8.2").is_err());
    }

    #[test]
    fn deserializing_checks_the_rule() {
        let err = serde_json::from_str::<ServerName>("\"server_../x\"").unwrap_err();
        assert!(err.to_string().contains("server name"));
        let ok: ServerName = serde_json::from_str("\"server_master\"").unwrap();
        assert_eq!(ok.as_str(), "server_master");
    }
}
