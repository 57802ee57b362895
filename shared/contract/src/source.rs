//! Where a platform's code comes from when it is built on a web server: a git
//! repository or a `.tar.gz` in the backup store. The same source saved as platforms on
//! several web servers gives each of them the same code.
//!
//! Each value is checked when parsed or deserialized. Git reads an argument that starts
//! with `-` as an option (`--upload-pack=…` runs a program), so nothing here may start
//! with one; repository addresses must not carry passwords, which would end up in logs
//! and in every task message.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// A platform's source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlatformSource {
    /// A git repository, checked out at `ref` (a branch, a tag or a commit id), or at
    /// the repository's default branch when `ref` is absent.
    Git {
        url: GitUrl,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        git_ref: Option<GitRef>,
    },
    /// A `.tar.gz` (or `.tgz`) in the backup store, unpacked. When everything in it is
    /// in one top directory (`wordpress/…`), that directory becomes the platform root.
    Archive { key: StoreKey },
}

impl fmt::Display for PlatformSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformSource::Git { url, git_ref: Some(r) } => write!(f, "git {url} at {r}"),
            PlatformSource::Git { url, git_ref: None } => write!(f, "git {url}"),
            PlatformSource::Archive { key } => write!(f, "archive {key}"),
        }
    }
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, kind = $kind:literal, rule = $rule:literal, pattern = $pattern:literal, check = $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const RULE: &'static str = $rule;

            pub fn parse(value: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                match check(value) {
                    Ok(()) => Ok(Self(value.to_owned())),
                    Err(why) => Err(NameError { kind: $kind, value: shown(value), rule: why }),
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
                json_schema!({ "type": "string", "minLength": 1, "pattern": $pattern, "description": $rule })
            }
        }
    };
}

checked_string!(
    /// A git repository's address: `https://`, `http://`, `git://`, `ssh://` or `file://`
    /// url, scp-like `git@host:path`, or an absolute path on the web server. User names
    /// are allowed, passwords are not (give the web server a deploy key or a credential
    /// helper instead).
    GitUrl,
    kind = "repository url",
    rule = "use an https://, http://, git://, ssh:// or file:// url, `user@host:path`, or an absolute path, with no password, spaces or leading `-`",
    pattern = "^[^\\s-]\\S{0,2047}$",
    check = check_git_url
);

checked_string!(
    /// A branch, a tag or a commit id of a git repository.
    GitRef,
    kind = "git ref",
    rule = "use a branch, tag or commit id such as `main`, `v1.2.0` or `4f2a9c1`: letters, digits, `.`, `_`, `-`, `+` and `/`, not starting with `-`, `.` or `/`, with no `..`, at most 255 characters",
    pattern = "^[A-Za-z0-9_][A-Za-z0-9._+/-]{0,254}$",
    check = check_git_ref
);

checked_string!(
    /// The key of a `.tar.gz` in the backup store, such as `platforms/wordpress-6.4.tar.gz`.
    StoreKey,
    kind = "archive key",
    rule = "use a key in the backup store ending in `.tar.gz` or `.tgz`, such as `platforms/wordpress-6.4.tar.gz`: `/`-separated parts of letters, digits, `.`, `_`, `-`, `+` or `@`, none starting with `.` or `-`, at most 512 characters",
    pattern = "^[A-Za-z0-9_][A-Za-z0-9._+@-]*(/[A-Za-z0-9_][A-Za-z0-9._+@-]*)*\\.(tar\\.gz|tgz)$",
    check = check_store_key
);

impl GitRef {
    /// True when the ref can only be a commit id (7 to 40 hex digits): a commit cannot
    /// be cloned by name, it is fetched and checked out.
    pub fn is_commit_id(&self) -> bool {
        (7..=40).contains(&self.0.len()) && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// A value as an error may show it: a password in a url is replaced by `***`, and a
/// long value is cut.
fn shown(value: &str) -> String {
    let value = redact_password(value);
    if value.chars().count() > 200 { format!("{}…", value.chars().take(200).collect::<String>()) } else { value }
}

/// `scheme://user:secret@host/…` as `scheme://user:***@host/…`.
fn redact_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => value.to_owned(),
    }
}

fn check_git_url(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 2048 {
        return Err("use a repository url of 1 to 2048 characters");
    }
    if value.starts_with('-') {
        return Err("a repository url may not start with `-`: git would read it as an option");
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a repository url may hold no spaces, control or non-ASCII characters; percent-encode them");
    }
    if let Some((scheme, rest)) = value.split_once("://") {
        if !matches!(scheme, "https" | "http" | "git" | "ssh" | "file") {
            return Err("use an https://, http://, git://, ssh:// or file:// url; other transports are not allowed");
        }
        if scheme == "file" {
            return if rest.starts_with('/') && !rest.contains("/../") && !rest.ends_with("/..") {
                Ok(())
            } else {
                Err("a file:// url names an absolute path on the web server, such as file:///srv/git/app.git")
            };
        }
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let host = match authority.rsplit_once('@') {
            Some((userinfo, _)) if userinfo.contains(':') => {
                return Err("a repository url may not hold a password: it would be stored and logged; give the web \
                            server a deploy key or a git credential helper instead");
            }
            Some((_, host)) => host,
            None => authority,
        };
        if host.is_empty() || host.starts_with('-') {
            return Err("the url names no host, or one starting with `-`");
        }
        return Ok(());
    }
    // `transport::address` runs git's remote helpers (`ext::` runs any command).
    if value.contains("::") {
        return Err("remote-helper addresses (`transport::…`) are not allowed; use an https:// or ssh:// url");
    }
    if value.starts_with('/') {
        return if value.split('/').any(|part| part == "..") {
            Err("a repository path may not contain `..`")
        } else {
            Ok(())
        };
    }
    // scp-like `user@host:path`.
    match value.split_once(':') {
        Some((user_host, path)) if !path.is_empty() => {
            let host = user_host.rsplit_once('@').map_or(user_host, |(_, host)| host);
            let host_ok = !host.is_empty()
                && !host.starts_with('-')
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if host_ok && !user_host.contains('/') {
                Ok(())
            } else {
                Err("use `user@host:path` with a host name of letters, digits, `.`, `-` and `_`")
            }
        }
        _ => Err(
            "use an https://, http://, git://, ssh:// or file:// url, `user@host:path`, or an absolute path on the web server",
        ),
    }
}

fn check_git_ref(value: &str) -> Result<(), &'static str> {
    let chars_ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'/'));
    if value.is_empty() || value.len() > 255 || !chars_ok {
        return Err(GitRef::RULE);
    }
    if value.starts_with('-') {
        return Err("a git ref may not start with `-`: git would read it as an option");
    }
    let bad_shape = value.starts_with(['.', '/'])
        || value.ends_with(['.', '/'])
        || value.ends_with(".lock")
        || value.contains("..")
        || value.contains("//")
        || value.contains("/.");
    if bad_shape { Err(GitRef::RULE) } else { Ok(()) }
}

fn check_store_key(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 512 {
        return Err(StoreKey::RULE);
    }
    if !(value.ends_with(".tar.gz") || value.ends_with(".tgz")) {
        return Err("a platform archive is a `.tar.gz` or `.tgz` in the backup store");
    }
    let part_ok = |part: &str| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'@'))
    };
    if value.split('/').all(part_ok) { Ok(()) } else { Err(StoreKey::RULE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_of_the_usual_forms_are_taken() {
        for good in [
            "https://github.com/example/app.git",
            "https://deploy@git.example.com/app.git",
            "http://git.example.com:8080/app",
            "git://git.example.com/app.git",
            "ssh://git@git.example.com:2222/srv/app.git",
            "git@github.com:example/app.git",
            "file:///srv/git/app.git",
            "/srv/git/app.git",
        ] {
            assert!(GitUrl::parse(good).is_ok(), "{good} should be taken");
        }
    }

    #[test]
    fn option_looking_and_command_running_urls_are_refused() {
        for bad in [
            "--upload-pack=touch /tmp/x",
            "-uhttps://example.com/x",
            "ext::sh -c touch% /tmp/x",
            "ext::ssh",
            "fd::3",
            "ftp://example.com/x.git",
            "https://-oProxyCommand=x/y",
            "ssh://-oProxyCommand=x/y",
            "git@-oProxyCommand=x:y",
            "file://relative/path",
            "/srv/../etc/git",
            "relative/path",
            "https://example.com/a b",
            "",
        ] {
            assert!(GitUrl::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_showing_it() {
        for bad in ["https://deploy:s3cret-pw@git.example.com/app.git", "ssh://git:s3cret-pw@example.com/app"] {
            let e = GitUrl::parse(bad).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("s3cret-pw"), "{text}");
            assert!(text.contains("password"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        let json = r#"{"kind":"git","url":"https://u:s3cret-pw@example.com/x.git"}"#;
        let e = serde_json::from_str::<PlatformSource>(json).unwrap_err();
        assert!(!e.to_string().contains("s3cret-pw"), "{e}");
    }

    #[test]
    fn refs_like_options_or_ranges_are_refused() {
        for good in ["main", "v1.2.0", "release/6.4", "4f2a9c1", "feature_x+1"] {
            assert!(GitRef::parse(good).is_ok(), "{good} should be taken");
        }
        for bad in ["--upload-pack=x", "-b", "a..b", ".hidden", "/abs", "x/", "x.lock", "a b", "HEAD@{1}", ""] {
            assert!(GitRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(GitRef::parse("4f2a9c1").unwrap().is_commit_id());
        assert!(!GitRef::parse("main").unwrap().is_commit_id());
        assert!(!GitRef::parse("cafe").unwrap().is_commit_id());
    }

    #[test]
    fn archive_keys_stay_inside_the_store() {
        for good in ["wordpress-6.4.tar.gz", "platforms/app_1.tgz", "a/b/c@2.tar.gz"] {
            assert!(StoreKey::parse(good).is_ok(), "{good} should be taken");
        }
        for bad in [
            "../secret.tar.gz",
            "/etc/x.tar.gz",
            "a/../b.tar.gz",
            "a//b.tar.gz",
            ".hidden.tar.gz",
            "-x.tar.gz",
            "app.zip",
            "app.tar",
            "a b.tar.gz",
        ] {
            assert!(StoreKey::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sources_round_trip_and_refuse_unknown_fields() {
        let git = PlatformSource::Git {
            url: GitUrl::parse("https://example.com/app.git").unwrap(),
            git_ref: Some(GitRef::parse("v1.0").unwrap()),
        };
        let json = serde_json::to_string(&git).unwrap();
        assert_eq!(json, r#"{"kind":"git","url":"https://example.com/app.git","ref":"v1.0"}"#);
        assert_eq!(serde_json::from_str::<PlatformSource>(&json).unwrap(), git);
        let archive: PlatformSource = serde_json::from_str(r#"{"kind":"archive","key":"p/app.tar.gz"}"#).unwrap();
        assert_eq!(archive.to_string(), "archive p/app.tar.gz");
        assert!(serde_json::from_str::<PlatformSource>(r#"{"kind":"archive","key":"p/app.tar.gz","x":1}"#).is_err());
        assert!(serde_json::from_str::<PlatformSource>(r#"{"kind":"svn","url":"https://example.com"}"#).is_err());
    }
}
