//! Aegir's `--master_db=mysql://USER:PASSWORD@HOST:PORT`: the admin account of a
//! server's database service.
//!
//! The value holds a password, so no message here ever repeats it: errors say what is
//! wrong with the shape, never what was given.

use aegir_contract::{HostName, Secret};
use percent_encoding::percent_decode_str;
use url::{Host, Url};

/// The admin account parsed from a `mysql://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterDb {
    pub host: HostName,
    /// `None` when the URL has no port: the API's default (3306) applies.
    pub port: Option<u16>,
    pub admin_user: String,
    /// `None` when the URL has no `:PASSWORD` part at all (`mysql://root@host`): on an
    /// update the API keeps the stored password. `mysql://root:@host` is an empty one.
    pub admin_password: Option<Secret>,
}

const SHAPE: &str = "use mysql://USER:PASSWORD@HOST:PORT, e.g. mysql://root:secret@127.0.0.1:3306 \
                     (percent-encode special characters in the password; the value is not shown because it may \
                     hold a password)";

/// Parses the URL. The error text never contains the value.
pub fn parse(raw: &Secret) -> Result<MasterDb, String> {
    let raw = raw.expose();
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e}); {SHAPE}"))?;
    if url.scheme() != "mysql" {
        return Err(format!("the scheme must be `mysql`; {SHAPE}"));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(format!("the host is missing; {SHAPE}")),
    };
    let host = HostName::parse(&host).map_err(|e| format!("{e}"))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("give only the account, host and port, no database, path or query; {SHAPE}"));
    }
    let admin_user = decode(url.username()).ok_or_else(|| format!("the user name is not valid UTF-8; {SHAPE}"))?;
    if admin_user.is_empty() {
        return Err(format!("the user name is missing; {SHAPE}"));
    }
    let admin_password = if has_password_part(raw) {
        let decoded = decode(url.password().unwrap_or(""))
            .ok_or_else(|| format!("the password is not valid UTF-8 once percent-decoded; {SHAPE}"))?;
        Some(Secret::new(decoded))
    } else {
        None
    };
    Ok(MasterDb { host, port: url.port(), admin_user, admin_password })
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// `url` drops an empty password (`root:@host` reads back as `root@host`), yet the two
/// mean different things here, so look at the user-info part as written.
fn has_password_part(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> MasterDb {
        parse(&Secret::new(raw)).unwrap()
    }

    fn err(raw: &str) -> String {
        parse(&Secret::new(raw)).unwrap_err()
    }

    #[test]
    fn parses_the_account_host_and_port() {
        let db = ok("mysql://root:s3cret@127.0.0.1:3307");
        assert_eq!(db.host.as_str(), "127.0.0.1");
        assert_eq!(db.port, Some(3307));
        assert_eq!(db.admin_user, "root");
        assert_eq!(db.admin_password.unwrap().expose(), "s3cret");

        let db = ok("mysql://aegir_admin:p%40ss%3Aw%2Fd@db1.example.com");
        assert_eq!(db.host.as_str(), "db1.example.com");
        assert_eq!(db.port, None);
        assert_eq!(db.admin_password.unwrap().expose(), "p@ss:w/d");

        let db = ok("mysql://root@[::1]:3306/");
        assert_eq!(db.host.as_str(), "::1");
    }

    #[test]
    fn empty_and_absent_passwords_differ() {
        assert_eq!(ok("mysql://root:@127.0.0.1:3306").admin_password, Some(Secret::new("")));
        assert_eq!(ok("mysql://root@127.0.0.1:3306").admin_password, None);
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for raw in [
            "postgres://root:hunter2@127.0.0.1:5432",
            "mysql://:hunter2@127.0.0.1",
            "mysql://root:hunter2@127.0.0.1:3306/drupal",
            "mysql://root:hunter2@127.0.0.1:3306?ssl=1",
            "mysql://root:hunter2@127.0.0.1:99999",
            "root:hunter2@127.0.0.1",
            "hunter2",
            "mysql://root:hunter2@exa_mple.com",
        ] {
            let e = err(raw);
            assert!(!e.contains("hunter2"), "{raw} leaked into: {e}");
            assert!(e.contains("mysql://USER:PASSWORD@HOST:PORT") || e.contains("host name"), "{raw}: {e}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let db = ok("mysql://root:hunter2@127.0.0.1");
        assert!(!format!("{db:?}").contains("hunter2"));
    }
}
