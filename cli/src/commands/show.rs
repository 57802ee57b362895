//! `aegir show @CONTEXT`: one context as a readable summary, or the API's JSON.

use std::process::ExitCode;

use aegir_contract::ContextName;

use crate::api::{Api, ClientView, Collection, PackageView, PlatformView, ServerView, SiteStatsView, SiteView};
use crate::args::ShowArgs;
use crate::error::CliError;
use crate::output::{self, summary, time, time_or_dash};

pub async fn run(api: &Api, args: ShowArgs) -> Result<ExitCode, CliError> {
    let value = api.get_json(&[Collection::of(&args.context).segment(), args.context.as_str()], &[]).await?;
    if args.json {
        output::print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let text = match &args.context {
        ContextName::Server(_) => server_summary(&api.typed(value)?),
        ContextName::Platform(_) => platform_summary(&api.typed(value)?),
        ContextName::Site(_) => site_summary(&api.typed(value)?),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn with_version(text: String, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{text} ({v})"),
        None => text,
    }
}

pub fn server_summary(s: &ServerView) -> String {
    let http = s.http.as_ref().map_or_else(
        || "none".to_owned(),
        |h| with_version(format!("{} on port {}", h.service_type, h.port), h.version.as_deref()),
    );
    let db = s.db.as_ref().map_or_else(
        || "none".to_owned(),
        |d| {
            let password = if d.admin_password_set { "password set" } else { "no password" };
            with_version(
                format!("{} at {}:{}, admin {}, {password}", d.service_type, d.host, d.port, d.admin_user),
                d.version.as_deref(),
            )
        },
    );
    let dns = s
        .dns
        .as_ref()
        .map_or_else(|| "none".to_owned(), |d| with_version(d.service_type.clone(), d.version.as_deref()));
    summary(
        &format!("@{}  (server)", s.name),
        &[
            ("remote host", s.remote_host.clone()),
            ("http", http),
            ("db", db),
            ("dns", dns),
            ("dns server", s.dns_server.clone().unwrap_or_else(|| "-".to_owned())),
            ("status", s.status.clone()),
            ("verified", time_or_dash(s.verified_at.as_ref())),
            ("created", time(&s.created_at)),
            ("updated", time(&s.updated_at)),
        ],
    )
}

pub fn platform_summary(p: &PlatformView) -> String {
    let kind = match (&p.platform_type, &p.app_version) {
        (Some(t), Some(v)) => format!("{t} {v}"),
        (Some(t), None) => t.clone(),
        _ => format!("not detected yet (run `aegir @{} verify`)", p.name),
    };
    let profiles = match &p.profiles {
        Some(profiles) if !profiles.is_empty() => profiles.join(", "),
        _ => "-".to_owned(),
    };
    let mut text = summary(
        &format!("@{}  (platform)", p.name),
        &[
            ("root", p.root.clone()),
            ("web server", p.web_server.clone()),
            ("source", p.source.as_ref().map_or_else(|| "-".to_owned(), |s| s.to_string())),
            ("type", kind),
            ("profiles", profiles),
            ("status", p.status.clone()),
            ("verified", time_or_dash(p.verified_at.as_ref())),
            ("created", time(&p.created_at)),
            ("updated", time(&p.updated_at)),
        ],
    );
    text.push_str(&packages_section(&p.packages));
    text
}

pub fn site_summary(s: &SiteView) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let aliases = if s.aliases.is_empty() {
        "-".to_owned()
    } else if s.redirection {
        format!("{} (redirected to {})", s.aliases.join(", "), s.uri)
    } else {
        s.aliases.join(", ")
    };
    let mut text = summary(
        &format!("@{}  (site)", s.uri),
        &[
            ("platform", s.platform.clone()),
            ("db server", s.db_server.clone()),
            ("aliases", aliases),
            ("profile", or_dash(&s.profile)),
            ("language", s.language.clone()),
            ("title", s.title.clone()),
            ("admin email", s.admin_email.clone()),
            ("client", or_dash(&s.client)),
            ("status", s.status.clone()),
            (
                "cron",
                match s.cron_interval {
                    None => "the installation's interval".to_owned(),
                    Some(0) => "never".to_owned(),
                    Some(secs) => format!("every {secs} s"),
                },
            ),
            ("php", s.php_version.clone().unwrap_or_else(|| "the web server's default".to_owned())),
            ("https", https_line(s)),
            ("installed", time_or_dash(s.installed_at.as_ref())),
            ("created", time(&s.created_at)),
            ("updated", time(&s.updated_at)),
        ],
    );
    if let Some(stats) = &s.stats {
        text.push_str(&stats_section(stats));
    }
    text.push_str(&packages_section(&s.packages));
    text
}

/// The site's https and its certificate; a failing renewal says why and when it is
/// tried again.
fn https_line(s: &SiteView) -> String {
    let mode = s.ssl.as_deref().unwrap_or("off");
    if mode == "off" {
        return "off".to_owned();
    }
    let mut line = format!("{mode}, certificate {}", s.ssl_status.as_deref().unwrap_or("unknown"));
    if let Some(at) = &s.ssl_expires_at {
        line.push_str(&format!(", expires {}", time(at)));
    }
    if let Some(issuer) = &s.ssl_issuer {
        line.push_str(&format!(", from {issuer}"));
    }
    match s.ssl_source.as_deref() {
        Some("user") if s.ssl_status.as_deref() == Some("expiring") => line.push_str(
            "; supplied by its owner and not renewed here: upload a new one (aegir @SITE certificate --cert FILE \
             --key FILE)",
        ),
        Some("user") => line.push_str("; supplied by its owner"),
        Some("acme") => line.push_str("; renewed over ACME"),
        _ => {}
    }
    if let Some(error) = &s.ssl_error {
        line.push_str(&format!("; last order failed: {error}"));
    }
    if let Some(at) = &s.ssl_retry_at {
        line.push_str(&format!("; next try {}", time(at)));
    }
    line
}

/// The site's latest figures, a line each.
fn stats_section(s: &SiteStatsView) -> String {
    let number = |v: Option<u64>| v.map_or("-".to_owned(), |n| n.to_string());
    let http = match (s.http_status, s.response_ms) {
        (Some(0), _) => "no answer".to_owned(),
        (Some(status), Some(ms)) => format!("{status} in {ms} ms"),
        _ => "-".to_owned(),
    };
    let figures: Vec<String> = s.figures.iter().map(|(name, value)| format!("{value} {name}")).collect();
    let mut text = format!(
        "stats (measured {})
",
        time(&s.measured_at)
    );
    text.push_str(&format!(
        "  database     {} bytes in {} tables
",
        number(s.database_bytes),
        number(s.database_tables)
    ));
    text.push_str(&format!(
        "  files        {} bytes in {} files
",
        number(s.files_bytes),
        number(s.files)
    ));
    text.push_str(&format!(
        "  http         {http}
"
    ));
    if !figures.is_empty() {
        text.push_str(&format!(
            "  application  {}
",
            figures.join(", ")
        ));
    }
    text
}

/// The packages a verify found, as an indented table; a note when there are none.
fn packages_section(packages: &[PackageView]) -> String {
    if packages.is_empty() {
        return "  packages     none reported yet (a verify lists them)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = packages
        .iter()
        .map(|p| vec![p.name.clone(), p.kind.clone(), p.version.clone().unwrap_or_else(|| "-".to_owned())])
        .collect();
    let table = output::table(&["NAME", "KIND", "VERSION"], &rows);
    let mut text = format!("packages ({})\n", packages.len());
    for line in table.lines() {
        text.push_str(&format!("  {line}\n"));
    }
    text
}

pub fn client_summary(c: &ClientView) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    summary(
        &format!("{}  (client)", c.name),
        &[
            ("title", or_dash(&c.title)),
            ("email", or_dash(&c.email)),
            ("created", time(&c.created_at)),
            ("updated", time(&c.updated_at)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_summary_says_what_it_offers_and_never_a_password() {
        let view: ServerView = serde_json::from_value(serde_json::json!({
            "name": "server_master", "context": "@server_master", "remote_host": "localhost",
            "http": {"service_type": "nginx", "port": 80, "version": "nginx/1.22.1"},
            "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306, "admin_user": "root",
                   "admin_password_set": true, "version": null},
            "status": "verified", "verified_at": "2026-01-01T00:00:00Z",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let text = server_summary(&view);
        assert!(text.starts_with("@server_master  (server)\n"), "{text}");
        assert!(text.contains("  http         nginx on port 80 (nginx/1.22.1)\n"), "{text}");
        assert!(text.contains("  db           mariadb at 127.0.0.1:3306, admin root, password set\n"), "{text}");
        assert!(text.contains("  status       verified\n"), "{text}");
    }

    #[test]
    fn a_site_summary_shows_its_names_status_and_packages() {
        let view: SiteView = serde_json::from_value(serde_json::json!({
            "uri": "www.example.com", "context": "@www.example.com", "platform": "@platform_wp",
            "db_server": "@server_master", "profile": null, "language": "en", "aliases": ["example.com"],
            "redirection": true, "client": "acme", "title": "Example shop", "admin_email": "admin@example.com",
            "status": "enabled",
            "packages": [{"name": "wordpress", "kind": "core", "version": "6.4.2"},
                         {"name": "woocommerce", "kind": "plugin", "version": null}],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "installed_at": "2026-01-01T00:00:00Z", "cron_interval": 900,
            "stats": {"database_bytes": 1048576, "database_tables": 12, "files_bytes": 2048, "files": 3,
                      "http_status": 200, "response_ms": 41, "figures": {"users": 1, "posts": 7},
                      "measured_at": "2026-01-01T00:00:00Z"}
        }))
        .unwrap();
        let text = site_summary(&view);
        assert!(text.contains("  cron         every 900 s\n"), "{text}");
        assert!(text.contains("  database     1048576 bytes in 12 tables\n"), "{text}");
        assert!(text.contains("  http         200 in 41 ms\n"), "{text}");
        assert!(text.contains("  application  7 posts, 1 users\n"), "{text}");
        assert!(text.starts_with("@www.example.com  (site)\n"), "{text}");
        assert!(text.contains("  aliases      example.com (redirected to www.example.com)\n"), "{text}");
        assert!(text.contains("  status       enabled\n"), "{text}");
        assert!(
            text.contains("packages (2)\n  NAME         KIND    VERSION\n  wordpress    core    6.4.2\n"),
            "{text}"
        );
        assert!(text.contains("  woocommerce  plugin  -\n"), "{text}");
    }
}
