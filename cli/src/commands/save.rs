//! `aegir save @CONTEXT --context_type=TYPE ...`: Aegir's provision-save, as a `PUT`.

use std::process::ExitCode;
use std::str::FromStr;

use aegir_contract::{ContextName, ContextType, GitUrl, PlatformName, PlatformSource, ServerName, SiteUri};

use crate::api::{Api, DbBody, DnsBody, HttpBody, PlatformBody, Saved, ServerBody, SiteBody};
use crate::args::SaveArgs;
use crate::commands::show;
use crate::error::CliError;
use crate::master_db;

/// A save, checked and ready to send.
#[derive(Debug)]
pub enum Plan {
    Server { name: ServerName, body: ServerBody },
    Platform { name: PlatformName, body: PlatformBody },
    Site { uri: SiteUri, body: SiteBody },
}

fn server_options(args: &SaveArgs) -> [(&'static str, bool); 7] {
    [
        ("--remote_host", args.remote_host.is_some()),
        ("--http_service_type", args.http_service_type.is_some()),
        ("--http_port", args.http_port.is_some()),
        ("--db_service_type", args.db_service_type.is_some()),
        ("--master_db", args.master_db.is_some()),
        ("--dns_service_type", args.dns_service_type.is_some()),
        ("--dns_server", args.dns_server.is_some()),
    ]
}

fn platform_options(args: &SaveArgs) -> [(&'static str, bool); 5] {
    [
        ("--root", args.root.is_some()),
        ("--web_server", args.web_server.is_some()),
        ("--source_git", args.source_git.is_some()),
        ("--source_ref", args.source_ref.is_some()),
        ("--source_archive", args.source_archive.is_some()),
    ]
}

fn site_options(args: &SaveArgs) -> [(&'static str, bool); 12] {
    [
        ("--platform", args.platform.is_some()),
        ("--db_server", args.db_server.is_some()),
        ("--profile", args.profile.is_some()),
        ("--language", args.language.is_some()),
        ("--aliases", !args.aliases.is_empty()),
        ("--redirection", args.redirection.is_some()),
        ("--client", args.client.is_some()),
        ("--title", args.title.is_some()),
        ("--admin_email", args.admin_email.is_some()),
        ("--cron_interval", args.cron_interval.is_some()),
        ("--php_version", args.php_version.is_some()),
        ("--ssl", args.ssl.is_some()),
    ]
}

/// Checks the arguments. `env` reads `AEGIR_MASTER_DB`.
pub fn plan(args: SaveArgs, env: impl Fn(&str) -> Option<String>) -> Result<Plan, CliError> {
    let kind = args.context.context_type();
    if let Some(given) = &args.context_type {
        let given = parse_context_type(given)?;
        if given != kind {
            return Err(CliError::usage(
                "--context_type",
                format!(
                    "`{}` is a {kind} (the name decides: @server_* is a server, @platform_* a platform, \
                     anything else a site), not a {given}",
                    args.context
                ),
            ));
        }
    }
    match args.context.clone() {
        ContextName::Server(name) => {
            refuse_options(&args, "platforms", &platform_options(&args))?;
            refuse_options(&args, "sites", &site_options(&args))?;
            Ok(Plan::Server { name, body: server_body(args, env)? })
        }
        ContextName::Platform(name) => {
            refuse_options(&args, "servers", &server_options(&args))?;
            refuse_options(&args, "sites", &site_options(&args))?;
            Ok(Plan::Platform { name, body: platform_body(args)? })
        }
        ContextName::Site(uri) => {
            refuse_options(&args, "servers", &server_options(&args))?;
            refuse_options(&args, "platforms", &platform_options(&args))?;
            Ok(Plan::Site { body: site_body(&uri, args)?, uri })
        }
    }
}

fn parse_context_type(given: &str) -> Result<ContextType, CliError> {
    if given == "client" {
        return Err(CliError::usage(
            "--context_type",
            "clients are not contexts here; use `aegir client save NAME [--title=..] [--email=..]`",
        ));
    }
    ContextType::from_str(given).map_err(|e| CliError::usage("--context_type", e.to_string()))
}

/// Options that belong to the other kind of context are a mistake, not something to drop silently.
fn refuse_options(args: &SaveArgs, belongs_to: &str, options: &[(&str, bool)]) -> Result<(), CliError> {
    match options.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(CliError::usage(
            *option,
            format!("applies to {belongs_to} only, and `{}` is a {}", args.context, args.context.context_type()),
        )),
        None => Ok(()),
    }
}

fn server_body(args: SaveArgs, env: impl Fn(&str) -> Option<String>) -> Result<ServerBody, CliError> {
    let http = match (args.http_service_type, args.http_port) {
        (Some(service_type), port) => Some(HttpBody { service_type: service_type.to_string(), port }),
        (None, Some(_)) => {
            return Err(CliError::usage("--http_port", "give the web server too: --http_service_type=nginx or apache"));
        }
        (None, None) => None,
    };

    // AEGIR_MASTER_DB is read only when a db service is asked for, so an exported
    // variable never adds a database service to a server by itself.
    let (master_db, field) = match (&args.master_db, args.db_service_type) {
        (Some(url), _) => (Some(url.clone()), "--master_db"),
        (None, Some(_)) => {
            (env("AEGIR_MASTER_DB").filter(|v| !v.is_empty()).map(aegir_contract::Secret::new), "AEGIR_MASTER_DB")
        }
        (None, None) => (None, "--master_db"),
    };
    let db = match master_db {
        Some(url) => {
            let account = master_db::parse(&url).map_err(|message| CliError::usage(field, message))?;
            Some(DbBody {
                // MariaDB is what Debian ships; Aegir's own default was mysql.
                service_type: args.db_service_type.map_or_else(|| "mariadb".to_owned(), |t| t.to_string()),
                host: account.host.to_string(),
                port: account.port,
                admin_user: account.admin_user,
                admin_password: account.admin_password,
            })
        }
        None if args.db_service_type.is_some() => {
            return Err(CliError::usage(
                "--db_service_type",
                "give the admin account too: --master_db=mysql://USER:PASSWORD@HOST:PORT, or set AEGIR_MASTER_DB \
                 to that URL to keep the password out of the process list",
            ));
        }
        None => None,
    };
    let dns = args.dns_service_type.map(|t| DnsBody { service_type: t.to_string() });
    let dns_server = match args.dns_server {
        None => None,
        Some(server @ ContextName::Server(_)) => Some(server.to_string()),
        Some(other) => {
            return Err(CliError::usage(
                "--dns_server",
                format!(
                    "`{other}` is a {}; give a server with a dns service such as @server_ns1",
                    other.context_type()
                ),
            ));
        }
    };
    Ok(ServerBody { remote_host: args.remote_host.map(|h| h.to_string()), http, db, dns, dns_server })
}

fn platform_body(args: SaveArgs) -> Result<PlatformBody, CliError> {
    let root = args.root.ok_or_else(|| {
        CliError::usage("--root", "a platform needs its code directory, e.g. --root=/var/aegir/platforms/wordpress")
    })?;
    let web_server = match args.web_server {
        None => None,
        Some(server @ ContextName::Server(_)) => Some(server.to_string()),
        Some(other) => {
            return Err(CliError::usage(
                "--web_server",
                format!("`{other}` is a {}; give a server such as @server_master", other.context_type()),
            ));
        }
    };
    let source_git = args
        .source_git
        .map(|url| GitUrl::parse(&url).map_err(|e| CliError::usage("--source_git", e.to_string())))
        .transpose()?;
    let source = match (source_git, args.source_ref, args.source_archive) {
        (None, None, None) => None,
        (Some(url), git_ref, None) => Some(PlatformSource::Git { url, git_ref }),
        (None, None, Some(key)) => Some(PlatformSource::Archive { key }),
        (None, Some(_), _) => {
            return Err(CliError::usage("--source_ref", "a ref is of a git source; give --source_git=URL too"));
        }
        (Some(_), _, Some(_)) => {
            return Err(CliError::usage(
                "--source_archive",
                "a platform has one source: give --source_git=URL or --source_archive=KEY, not both",
            ));
        }
    };
    Ok(PlatformBody { root: root.to_string(), web_server, source })
}

fn site_body(uri: &SiteUri, args: SaveArgs) -> Result<SiteBody, CliError> {
    let platform = match args.platform {
        Some(platform @ ContextName::Platform(_)) => platform.to_string(),
        Some(other) => {
            return Err(CliError::usage(
                "--platform",
                format!("`{other}` is a {}; give a platform such as @platform_wp", other.context_type()),
            ));
        }
        None => {
            return Err(CliError::usage(
                "--platform",
                "a site needs the platform whose code serves it, e.g. --platform=@platform_wp",
            ));
        }
    };
    let db_server = match args.db_server {
        None => None,
        Some(server @ ContextName::Server(_)) => Some(server.to_string()),
        Some(other) => {
            return Err(CliError::usage(
                "--db_server",
                format!("`{other}` is a {}; give a database server such as @server_master", other.context_type()),
            ));
        }
    };
    let mut aliases: Vec<String> = Vec::with_capacity(args.aliases.len());
    for alias in args.aliases {
        if alias == *uri {
            return Err(CliError::usage("--aliases", format!("`{alias}` is the site's own uri; leave it out")));
        }
        if aliases.iter().any(|a| a == alias.as_str()) {
            return Err(CliError::usage("--aliases", format!("`{alias}` is given twice; give it once")));
        }
        aliases.push(alias.to_string());
    }
    Ok(SiteBody {
        platform,
        db_server,
        profile: args.profile.map(|p| p.to_string()),
        language: args.language.map(|l| l.to_string()),
        aliases,
        redirection: args.redirection.unwrap_or(false),
        client: args.client.map(|c| c.to_string()),
        title: args.title.map(|t| t.to_string()),
        admin_email: args.admin_email.map(|e| e.to_string()),
        cron_interval: args.cron_interval,
        php_version: args.php_version.map(|v| v.to_string()),
        ssl: args.ssl.map(|m| m.to_string()),
    })
}

pub async fn run(api: &Api, plan: Plan) -> Result<ExitCode, CliError> {
    let (context, saved, text) = match &plan {
        Plan::Server { name, body } => {
            let (saved, value) = api.put_server(name, body).await?;
            (format!("@{name}"), saved, show::server_summary(&api.typed(value)?))
        }
        Plan::Platform { name, body } => {
            let (saved, value) = api.put_platform(name, body).await?;
            (format!("@{name}"), saved, show::platform_summary(&api.typed(value)?))
        }
        Plan::Site { uri, body } => {
            let (saved, value) = api.put_site(uri, body).await?;
            (format!("@{uri}"), saved, show::site_summary(&api.typed(value)?))
        }
    };
    let verb = if saved == Saved::Created { "created" } else { "updated" };
    println!("{verb} {context}");
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn save_args(argv: &[&str]) -> SaveArgs {
        let mut full = vec!["aegir", "save"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Save(args) => *args,
            _ => unreachable!(),
        }
    }

    fn plan_of(argv: &[&str], env: &[(&str, &str)]) -> Result<Plan, CliError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        plan(save_args(argv), move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn body_json(plan: &Plan) -> serde_json::Value {
        match plan {
            Plan::Server { body, .. } => serde_json::to_value(body).unwrap(),
            Plan::Platform { body, .. } => serde_json::to_value(body).unwrap(),
            Plan::Site { body, .. } => serde_json::to_value(body).unwrap(),
        }
    }

    #[test]
    fn a_full_server_save_becomes_the_contracts_body() {
        let plan = plan_of(
            &[
                "@server_master",
                "--context_type=server",
                "--remote_host=localhost",
                "--http_service_type=nginx",
                "--http_port=80",
                "--db_service_type=mariadb",
                "--master_db=mysql://root:s3cret@127.0.0.1:3306",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            body_json(&plan),
            serde_json::json!({
                "remote_host": "localhost",
                "http": {"service_type": "nginx", "port": 80},
                "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306,
                       "admin_user": "root", "admin_password": "s3cret"}
            })
        );
    }

    #[test]
    fn master_db_comes_from_the_environment_only_when_a_db_service_is_asked_for() {
        let env = [("AEGIR_MASTER_DB", "mysql://admin:pw@db1:3307")];
        let plan = plan_of(&["@server_db1", "--db_service_type=mysql"], &env).unwrap();
        assert_eq!(body_json(&plan)["db"]["admin_user"], "admin");
        assert_eq!(body_json(&plan)["db"]["service_type"], "mysql");

        let plan = plan_of(&["@server_web1", "--http_service_type=apache"], &env).unwrap();
        assert_eq!(body_json(&plan).get("db"), None);

        let e = plan_of(&["@server_db1", "--db_service_type=mysql"], &[("AEGIR_MASTER_DB", "pg://x:hunter2@h")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("AEGIR_MASTER_DB: ") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_platform_save_takes_one_source() {
        let root = "--root=/var/aegir/platforms/wp";
        let plan =
            plan_of(&["@platform_wp", root, "--source_git=https://git.example.com/wp.git", "--source_ref=v6.4"], &[])
                .unwrap();
        assert_eq!(
            body_json(&plan),
            serde_json::json!({"root": "/var/aegir/platforms/wp",
                "source": {"kind": "git", "url": "https://git.example.com/wp.git", "ref": "v6.4"}})
        );
        let plan = plan_of(&["@platform_wp", root, "--source_archive=platforms/wp.tar.gz"], &[]).unwrap();
        assert_eq!(body_json(&plan)["source"], serde_json::json!({"kind": "archive", "key": "platforms/wp.tar.gz"}));
        for (args, error) in [
            (&["@platform_wp", root, "--source_ref=main"][..], "--source_ref: "),
            (&["@platform_wp", root, "--source_git=/srv/wp.git", "--source_archive=wp.tar.gz"], "--source_archive: "),
            (&["@example.com", "--source_git=/srv/wp.git"], "--source_git: applies to platforms only"),
            (&["@platform_wp", root, "--source_git=--upload-pack=x"], "--source_git: "),
        ] {
            let e = plan_of(args, &[]).unwrap_err().to_string();
            assert!(e.starts_with(error), "{e}");
        }
        let e = plan_of(&["@platform_wp", root, "--source_git=https://u:hunter2@h.example/x.git"], &[]).unwrap_err();
        assert!(e.to_string().contains("password") && !e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn a_platform_save_needs_a_root_and_a_server_as_web_server() {
        let plan =
            plan_of(&["@platform_wp", "--context_type=platform", "--root=/var/aegir/platforms/wp"], &[]).unwrap();
        assert_eq!(body_json(&plan), serde_json::json!({"root": "/var/aegir/platforms/wp"}));

        let e = plan_of(&["@platform_wp"], &[]).unwrap_err().to_string();
        assert!(e.starts_with("--root: "), "{e}");
        let e = plan_of(&["@platform_wp", "--root=/x", "--web_server=@platform_y"], &[]).unwrap_err().to_string();
        assert!(e.starts_with("--web_server: "), "{e}");
    }

    #[test]
    fn a_site_save_becomes_the_contracts_body() {
        let plan = plan_of(
            &[
                "@www.example.com",
                "--context_type=site",
                "--platform=@platform_wp",
                "--db_server=@server_master",
                "--profile=standard",
                "--language=en",
                "--aliases=example.com,shop.example.com",
                "--redirection",
                "--client=acme",
                "--title=Example shop",
                "--admin_email=admin@example.com",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            body_json(&plan),
            serde_json::json!({
                "platform": "@platform_wp", "db_server": "@server_master", "profile": "standard", "language": "en",
                "aliases": ["example.com", "shop.example.com"], "redirection": true, "client": "acme",
                "title": "Example shop", "admin_email": "admin@example.com"
            })
        );
        let plan = plan_of(&["@www.example.com", "--platform=platform_wp", "--redirection=false"], &[]).unwrap();
        assert_eq!(body_json(&plan), serde_json::json!({"platform": "@platform_wp", "redirection": false}));
    }

    #[test]
    fn mismatched_or_misplaced_options_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (&["@server_x", "--context_type=platform"], "--context_type: "),
            (&["@server_x", "--context_type=client"], "--context_type: clients are not contexts"),
            (&["@server_x", "--context_type=bogus"], "--context_type: context type `bogus`"),
            (&["@server_x", "--root=/var/x"], "--root: applies to platforms only"),
            (&["@platform_x", "--root=/var/x", "--http_port=80"], "--http_port: applies to servers only"),
            (&["@server_x", "--http_port=8080"], "--http_port: give the web server too"),
            (&["@server_x", "--db_service_type=mariadb"], "--db_service_type: give the admin account"),
            (&["@example.com", "--context_type=site"], "--platform: a site needs the platform"),
            (&["@example.com", "--platform=@server_x"], "--platform: `@server_x` is a server"),
            (&["@example.com", "--platform=@platform_x", "--db_server=@platform_y"], "--db_server: "),
            (&["@example.com", "--platform=@platform_x", "--root=/var/x"], "--root: applies to platforms only"),
            (&["@example.com", "--platform=@platform_x", "--http_port=80"], "--http_port: applies to servers only"),
            (&["@platform_x", "--root=/var/x", "--client=acme"], "--client: applies to sites only"),
            (&["@server_x", "--aliases=a.example"], "--aliases: applies to sites only"),
            (
                &["@example.com", "--platform=@platform_x", "--aliases=example.com"],
                "--aliases: `example.com` is the site's own",
            ),
            (
                &["@example.com", "--platform=@platform_x", "--aliases=a.example,a.example"],
                "--aliases: `a.example` is given twice",
            ),
        ];
        for (argv, expected) in cases {
            let e = plan_of(argv, &[]).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().starts_with(expected), "{argv:?}: {e}");
        }
    }
}
