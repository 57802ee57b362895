//! `aegir list servers|platforms|sites|clients`.

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde_json::Value;

use aegir_contract::ContextName;

use crate::api::{Api, ClientView, Collection, Page, Paging, PlatformView, ServerView, SiteFilter, SiteView};
use crate::args::{ListArgs, ListWhat};
use crate::error::CliError;
use crate::output::{self, time_or_dash};

/// The site filters, checked before any request: they apply to `list sites` only, and
/// `--platform` must name a platform.
pub fn check(args: &ListArgs) -> Result<Option<SiteFilter>, CliError> {
    let given = [
        ("--platform", args.platform.is_some()),
        ("--client", args.client.is_some()),
        ("--status", args.status.is_some()),
        ("--search", args.search.is_some()),
    ];
    if args.what != ListWhat::Sites {
        return match given.iter().find(|(_, given)| *given) {
            Some((option, _)) => Err(CliError::usage(*option, "filters sites only; use it with `aegir list sites`")),
            None => Ok(None),
        };
    }
    let platform = match &args.platform {
        None => None,
        Some(ContextName::Platform(platform)) => Some(platform.clone()),
        Some(other) => {
            return Err(CliError::usage(
                "--platform",
                format!("`{other}` is a {}; give a platform such as @platform_wp", other.context_type()),
            ));
        }
    };
    let search = args.search.clone().filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.len() > 253) {
        return Err(CliError::usage("--search", "is longer than any uri; give at most 253 characters"));
    }
    Ok(Some(SiteFilter { platform, client: args.client.clone(), status: args.status, search }))
}

pub async fn run(api: &Api, args: ListArgs, filter: Option<SiteFilter>) -> Result<ExitCode, CliError> {
    let collection = match args.what {
        ListWhat::Servers => Collection::Servers,
        ListWhat::Platforms => Collection::Platforms,
        ListWhat::Sites => Collection::Sites,
        ListWhat::Clients => Collection::Clients,
    };
    print_list(api, collection, args.paging.paging(), args.json, filter.as_ref()).await
}

/// Shared with `aegir client list`.
pub async fn print_list(
    api: &Api,
    collection: Collection,
    paging: Paging,
    json: bool,
    filter: Option<&SiteFilter>,
) -> Result<ExitCode, CliError> {
    let value = match filter {
        Some(filter) => api.sites(filter, paging).await?,
        None => api.list(collection, paging).await?,
    };
    if json {
        output::print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let (shown, total, text) = match collection {
        Collection::Servers => render(api, value, &["NAME", "HTTP", "DB", "STATUS", "VERIFIED"], |s: &ServerView| {
            vec![
                format!("@{}", s.name),
                s.http.as_ref().map_or("-".into(), |h| format!("{}:{}", h.service_type, h.port)),
                s.db.as_ref().map_or("-".into(), |d| format!("{} {}:{}", d.service_type, d.host, d.port)),
                s.status.clone(),
                time_or_dash(s.verified_at.as_ref()),
            ]
        })?,
        Collection::Platforms => {
            render(api, value, &["NAME", "ROOT", "WEB SERVER", "TYPE", "STATUS"], |p: &PlatformView| {
                vec![
                    format!("@{}", p.name),
                    p.root.clone(),
                    p.web_server.clone(),
                    p.platform_type.clone().unwrap_or_else(|| "-".into()),
                    p.status.clone(),
                ]
            })?
        }
        Collection::Sites => {
            render(api, value, &["URI", "PLATFORM", "DB SERVER", "CLIENT", "STATUS"], |s: &SiteView| {
                vec![
                    format!("@{}", s.uri),
                    s.platform.clone(),
                    s.db_server.clone(),
                    s.client.clone().unwrap_or_else(|| "-".into()),
                    s.status.clone(),
                ]
            })?
        }
        Collection::Clients => render(api, value, &["NAME", "TITLE", "EMAIL"], |c: &ClientView| {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            vec![c.name.clone(), or_dash(&c.title), or_dash(&c.email)]
        })?,
    };
    if shown == 0 && paging.offset == 0 {
        if filter
            .is_some_and(|f| f.platform.is_some() || f.client.is_some() || f.status.is_some() || f.search.is_some())
        {
            println!("no {} match", collection.segment());
        } else {
            println!("no {} yet", collection.segment());
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{text}");
    if let Some(note) = output::paging_note(shown, paging.offset, total) {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn render<T: DeserializeOwned>(
    api: &Api,
    value: Value,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<(usize, u64, String), CliError> {
    let page: Page<T> = api.typed(value)?;
    let rows: Vec<Vec<String>> = page.items.iter().map(row).collect();
    Ok((rows.len(), page.total, output::table(headers, &rows)))
}
