//! `aegir import-aegir DIR`: brings an existing Aegir's servers, platforms and sites in,
//! from its drush alias files (`/var/aegir/.drush/*.alias.drushrc.php`).
//!
//! Servers are saved and verified first, then platforms are saved, verified and
//! imported: their import finds the sites on disk and records them with the database
//! account their settings really use (alias files hold no site passwords). Each site
//! alias then gives its record what only the alias knows — aliases, redirection, client,
//! install profile, language, whether it is enabled — and the site is verified. What
//! cannot be mapped is reported and left out, never guessed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use aegir_contract::{
    ClientName, ContextName, LanguageCode, PlatformName, ProfileName, Secret, ServerName, SiteUri, TaskKind,
};
use serde_json::{Map, Value};

use crate::api::{Api, ClientBody, DbBody, HttpBody, PlatformBody, ServerBody, SiteBody, TaskStatus};
use crate::drush_alias::{self, Alias, PhpValue};
use crate::error::{CliError, EXIT_TASK_FAILED};
use crate::{log_stream, master_db, output};

/// What the alias files say, mapped to this system's contexts.
#[derive(Debug, Default)]
pub struct Plan {
    pub servers: Vec<(ServerName, ServerBody)>,
    pub platforms: Vec<(PlatformName, PlatformBody)>,
    pub sites: Vec<SitePlan>,
    /// What could not be mapped (left out) or was mapped only in part, and why.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct SitePlan {
    pub uri: SiteUri,
    pub platform: PlatformName,
    pub aliases: Vec<SiteUri>,
    pub redirection: bool,
    pub client: Option<ClientName>,
    pub profile: Option<ProfileName>,
    pub language: Option<LanguageCode>,
    pub enabled: bool,
}

const SUFFIX: &str = ".alias.drushrc.php";

/// Reads every alias file in `dir` and maps what it can; nothing is sent.
pub fn plan(dir: &Path) -> Result<Plan, CliError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::usage("DIR", format!("cannot read {}: {e}", dir.display())))?;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(SUFFIX)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CliError::usage(
            "DIR",
            format!("no *{SUFFIX} files in {}; give Aegir's drush directory, e.g. /var/aegir/.drush", dir.display()),
        ));
    }
    let mut plan = Plan::default();
    let mut aliases = Vec::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| drush_alias::parse(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(found) => aliases.extend(found),
            Err(e) => plan.notes.push(format!("{name}: not read ({e})")),
        }
    }
    for alias in &aliases {
        let kind = alias.text("context_type").unwrap_or_else(|| guess_type(&alias.name).to_owned());
        let mapped = match kind.as_str() {
            "server" => server(alias, &mut plan.notes).map(|s| plan.servers.push(s)),
            "platform" => platform(alias, &mut plan.notes).map(|p| plan.platforms.push(p)),
            "site" => site(alias, &mut plan.notes).map(|s| plan.sites.push(s)),
            other => Err(format!("context type `{other}` is not one this system has")),
        };
        if let Err(why) = mapped {
            plan.notes.push(format!("@{}: left out: {why}", alias.name));
        }
    }
    Ok(plan)
}

fn guess_type(name: &str) -> &'static str {
    if name.starts_with("server_") {
        "server"
    } else if name.starts_with("platform_") {
        "platform"
    } else {
        "site"
    }
}

/// `@server_master` → `server_master`
fn context_ref(alias: &Alias, key: &str) -> Option<String> {
    alias.text(key).map(|v| v.trim_start_matches('@').to_owned())
}

fn server(alias: &Alias, notes: &mut Vec<String>) -> Result<(ServerName, ServerBody), String> {
    let name = ServerName::parse(&alias.name).map_err(|e| e.to_string())?;
    let http = match alias.text("http_service_type").as_deref() {
        None | Some("null") => None,
        Some(kind @ ("nginx" | "nginx_ssl" | "apache" | "apache_ssl")) => {
            if kind.ends_with("_ssl") {
                notes.push(format!(
                    "@{name}: {kind} imported as {}; set up HTTPS per site",
                    kind.trim_end_matches("_ssl")
                ));
            }
            let port = match alias.text("http_port") {
                Some(p) => Some(p.parse::<u16>().map_err(|_| format!("http_port `{p}` is not a port"))?),
                None => None,
            };
            Some(HttpBody { service_type: kind.trim_end_matches("_ssl").to_owned(), port })
        }
        Some(other) => {
            notes.push(format!("@{name}: web service `{other}` is not supported (nginx, apache); saved without it"));
            None
        }
    };
    let db = match alias.text("db_service_type").as_deref() {
        None | Some("null") => None,
        Some("mysql" | "mariadb") => match alias.text("master_db") {
            Some(url) => {
                let account = master_db::parse(&Secret::new(url)).map_err(|e| format!("master_db: {e}"))?;
                let port = match alias.text("db_port") {
                    Some(p) => Some(p.parse::<u16>().map_err(|_| format!("db_port `{p}` is not a port"))?),
                    None => account.port,
                };
                Some(DbBody {
                    service_type: "mariadb".into(),
                    host: account.host.to_string(),
                    port,
                    admin_user: account.admin_user,
                    admin_password: account.admin_password,
                })
            }
            None => {
                notes.push(format!("@{name}: a database service without master_db; saved without it"));
                None
            }
        },
        Some(other) => {
            notes.push(format!("@{name}: database service `{other}` is not supported (mysql); saved without it"));
            None
        }
    };
    let remote_host = Some(alias.text("remote_host").unwrap_or_else(|| "localhost".into()));
    Ok((name, ServerBody { remote_host, http, db, dns: None, dns_server: None }))
}

fn platform(alias: &Alias, notes: &mut Vec<String>) -> Result<(PlatformName, PlatformBody), String> {
    let name = PlatformName::parse(&alias.name).map_err(|e| e.to_string())?;
    if name.as_str().starts_with("platform_hostmaster") {
        return Err("the platform of Aegir's own front end is not a hosted platform".into());
    }
    let root = alias.text("root").ok_or("it has no root")?;
    let web_server = context_ref(alias, "web_server").or_else(|| context_ref(alias, "server"));
    if alias.text("makefile").is_some() {
        notes.push(format!("@{name}: its makefile is not used; the code at {root} is imported as it is"));
    }
    Ok((name, PlatformBody { root, web_server: web_server.map(|s| format!("@{s}")), source: None }))
}

fn site(alias: &Alias, notes: &mut Vec<String>) -> Result<SitePlan, String> {
    if alias.text("profile").as_deref() == Some("hostmaster") {
        return Err("Aegir's own front end is not a hosted site".into());
    }
    let uri = alias.text("uri").unwrap_or_else(|| alias.name.clone());
    let uri = SiteUri::parse(&uri).map_err(|e| e.to_string())?;
    let platform = context_ref(alias, "platform").ok_or("it names no platform")?;
    let platform = PlatformName::parse(&platform).map_err(|e| e.to_string())?;
    let mut aliases = Vec::new();
    if let Some(PhpValue::Array(list)) = alias.get("aliases") {
        for (_, value) in list {
            let text = value.text().unwrap_or_default();
            match SiteUri::parse(&text) {
                Ok(name) => aliases.push(name),
                Err(e) => notes.push(format!("@{uri}: alias `{text}` left out: {e}")),
            }
        }
    }
    let client = match alias.text("client_name") {
        Some(name) => match ClientName::parse(&name) {
            Ok(client) => Some(client),
            Err(e) => {
                notes.push(format!("@{uri}: client `{name}` left out: {e}"));
                None
            }
        },
        None => None,
    };
    let profile = alias.text("profile").and_then(|p| ProfileName::parse(&p).ok());
    let language = alias.text("language").and_then(|l| LanguageCode::parse(&l).ok());
    Ok(SitePlan {
        uri,
        platform,
        aliases,
        // Aegir keeps the name aliases redirect to, or false.
        redirection: alias.get("redirection").is_some_and(PhpValue::truthy),
        client,
        profile,
        language,
        enabled: alias.get("site_enabled").is_none_or(PhpValue::truthy),
    })
}

/// Saves and verifies what the plan holds, printing each task's log as it runs.
pub async fn run(api: &Api, mut plan: Plan) -> Result<ExitCode, CliError> {
    let mut failed = 0usize;
    let mut imported = 0usize;
    for (name, body) in &plan.servers {
        api.put_server(name, body).await?;
        println!("saved @{name}");
        failed += usize::from(!task(api, &format!("@{name}"), TaskKind::Verify).await?);
    }
    for (name, body) in &plan.platforms {
        if let Err(e) = api.put_platform(name, body).await {
            plan.notes.push(format!("@{name}: not saved: {e}"));
            failed += 1;
            continue;
        }
        println!("saved @{name}");
        let context = format!("@{name}");
        if task(api, &context, TaskKind::Verify).await? {
            failed += usize::from(!task(api, &context, TaskKind::Import).await?);
        } else {
            failed += 1;
        }
    }
    let mut clients = BTreeSet::new();
    for site in &plan.sites {
        if let Some(client) = site.client.as_ref().filter(|c| !clients.contains(*c)) {
            match api.get_json(&["clients", client.as_str()], &[]).await {
                Ok(_) => {}
                Err(CliError::Api { status: 404, .. }) => {
                    api.put_client(client, &ClientBody { title: None, email: None }).await?;
                    println!("saved client {client}");
                }
                Err(e) => return Err(e),
            }
            clients.insert(client.clone());
        }
        match update_site(api, site).await? {
            Ok(()) => {
                imported += 1;
                let context = format!("@{}", site.uri);
                failed += usize::from(!task(api, &context, TaskKind::Verify).await?);
                if !site.enabled {
                    failed += usize::from(!task(api, &context, TaskKind::Disable).await?);
                }
            }
            Err(why) => plan.notes.push(format!("@{}: left out: {why}", site.uri)),
        }
    }
    println!(
        "imported {} server(s), {} platform(s), {imported} of {} site(s); {failed} task(s) failed",
        plan.servers.len(),
        plan.platforms.len(),
        plan.sites.len()
    );
    for note in &plan.notes {
        eprintln!("not mapped: {note}");
    }
    Ok(if failed == 0 && plan.notes.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_TASK_FAILED) })
}

/// Gives the record its platform's import made what only the alias knows. The outer
/// error is the API's; the inner one why this site is left out.
async fn update_site(api: &Api, site: &SitePlan) -> Result<Result<(), String>, CliError> {
    let view = match api.get_json(&["sites", site.uri.as_str()], &[]).await {
        Ok(view) => view,
        Err(CliError::Api { status: 404, .. }) => {
            return Ok(Err(format!(
                "@{}'s import did not find it on disk (its settings under sites/{} and a database account in them)",
                site.platform, site.uri
            )));
        }
        Err(e) => return Err(e),
    };
    let text = |key: &str| view[key].as_str().map(str::to_owned);
    if text("platform").as_deref() != Some(&format!("@{}", site.platform)) {
        let found = text("platform").unwrap_or_default();
        return Ok(Err(format!("its alias says @{}, but it is recorded on {found}", site.platform)));
    }
    let body = SiteBody {
        platform: format!("@{}", site.platform),
        db_server: text("db_server"),
        profile: site.profile.as_ref().map(ToString::to_string).or_else(|| text("profile")),
        language: site.language.as_ref().map(ToString::to_string).or_else(|| text("language")),
        aliases: site.aliases.iter().map(ToString::to_string).collect(),
        redirection: site.redirection && !site.aliases.is_empty(),
        client: site.client.as_ref().map(ToString::to_string).or_else(|| text("client")),
        title: text("title"),
        admin_email: text("admin_email"),
        cron_interval: view["cron_interval"].as_u64().and_then(|v| u32::try_from(v).ok()),
        php_version: text("php_version"),
        // An update keeps the site's https as it is.
        ssl: text("ssl"),
    };
    match api.put_site(&site.uri, &body).await {
        Ok(_) => {
            println!("updated @{} from its alias", site.uri);
            Ok(Ok(()))
        }
        Err(CliError::Api { message, .. }) => Ok(Err(message)),
        Err(e) => Err(e),
    }
}

/// Runs a task and follows its log; whether it succeeded.
async fn task(api: &Api, context: &str, kind: TaskKind) -> Result<bool, CliError> {
    let context: ContextName = context.parse().map_err(|e| CliError::usage("context", format!("{e}")))?;
    let created = api.create_task(&context, kind, Map::<String, Value>::new()).await?;
    println!("{kind} {context}: task {}", created.id);
    let colour = output::colour_wanted();
    let finished =
        log_stream::follow(api, created.id, |entry| println!("  {}", output::log_line(entry, colour))).await?;
    let ok = finished.status == TaskStatus::Success;
    if !ok {
        let reason = finished.reason.as_deref().unwrap_or("no reason was recorded");
        eprintln!("{kind} {context} failed: {reason}");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(format!("{name}{SUFFIX}")), text).unwrap();
    }

    #[test]
    fn aliases_map_to_servers_platforms_and_sites_and_the_rest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "server_master",
            "<?php\n$aliases['server_master'] = array (\n  'context_type' => 'server',\n  'remote_host' => 'aegir.example.com',\n  \
             'http_service_type' => 'nginx',\n  'http_port' => '80',\n  'master_db' => 'mysql://aegir_root:s3cret@localhost:3306',\n  \
             'db_service_type' => 'mysql',\n);\n",
        );
        write(
            dir.path(),
            "server_old",
            "<?php\n$aliases['server_old'] = array ('context_type' => 'server', 'http_service_type' => 'lighttpd');\n",
        );
        write(
            dir.path(),
            "platform_d7",
            "<?php\n$aliases['platform_d7'] = array ('context_type' => 'platform', 'server' => '@server_master', \
             'web_server' => '@server_master', 'root' => '/var/aegir/platforms/drupal-7', 'makefile' => '');\n",
        );
        write(
            dir.path(),
            "hostmaster",
            "<?php\n$aliases['hostmaster'] = array ('context_type' => 'site', 'platform' => '@platform_hostmaster', \
             'uri' => '', 'profile' => 'hostmaster');\n",
        );
        write(
            dir.path(),
            "example.com",
            "<?php\n$aliases['example.com'] = array ('context_type' => 'site', 'platform' => '@platform_d7', \
             'db_server' => '@server_master', 'uri' => 'example.com', 'site_enabled' => false, 'client_name' => 'acme', \
             'aliases' => array (0 => 'www.example.com', 1 => 'bad name'), 'redirection' => 'example.com', \
             'profile' => 'standard', 'language' => 'en');\n",
        );
        write(dir.path(), "broken", "<?php\n$aliases['x'] = array ('a' => system('id'));\n");

        let plan = plan(dir.path()).unwrap();
        assert_eq!(plan.servers.len(), 2);
        let (name, master) = &plan.servers[0];
        assert_eq!(name.as_str(), "server_master");
        assert_eq!(master.remote_host.as_deref(), Some("aegir.example.com"));
        assert_eq!(master.http.as_ref().map(|h| (h.service_type.as_str(), h.port)), Some(("nginx", Some(80))));
        let db = master.db.as_ref().expect("the db service");
        assert_eq!((db.service_type.as_str(), db.host.as_str(), db.port), ("mariadb", "localhost", Some(3306)));
        assert_eq!(db.admin_user, "aegir_root");
        assert!(plan.servers[1].1.http.is_none(), "lighttpd is left out");

        assert_eq!(plan.platforms.len(), 1);
        assert_eq!(plan.platforms[0].1.root, "/var/aegir/platforms/drupal-7");
        assert_eq!(plan.platforms[0].1.web_server.as_deref(), Some("@server_master"));

        assert_eq!(plan.sites.len(), 1, "the front end is not a hosted site");
        let site = &plan.sites[0];
        assert_eq!(site.uri.as_str(), "example.com");
        assert_eq!(site.platform.as_str(), "platform_d7");
        assert_eq!(site.aliases.iter().map(ToString::to_string).collect::<Vec<_>>(), ["www.example.com"]);
        assert!(site.redirection && !site.enabled);
        assert_eq!(site.client.as_ref().map(ToString::to_string).as_deref(), Some("acme"));

        let notes = plan.notes.join("\n");
        for expected in ["broken.alias.drushrc.php: not read (line 2", "lighttpd", "@hostmaster: left out", "bad name"]
        {
            assert!(notes.contains(expected), "{expected} is reported in:\n{notes}");
        }
        assert!(!notes.contains("s3cret"), "no password in what is printed:\n{notes}");
    }

    #[test]
    fn a_directory_without_alias_files_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = plan(dir.path()).unwrap_err();
        assert!(error.to_string().contains("no *.alias.drushrc.php files"), "{error}");
    }
}
