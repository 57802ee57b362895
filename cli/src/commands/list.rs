//! `aegir list servers|platforms|sites|clients`.

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{Api, ClientView, Collection, Page, Paging, PlatformView, ServerView, SiteView};
use crate::args::{ListArgs, ListWhat};
use crate::error::CliError;
use crate::output::{self, time_or_dash};

pub async fn run(api: &Api, args: ListArgs) -> Result<ExitCode, CliError> {
    let collection = match args.what {
        ListWhat::Servers => Collection::Servers,
        ListWhat::Platforms => Collection::Platforms,
        ListWhat::Sites => Collection::Sites,
        ListWhat::Clients => Collection::Clients,
    };
    print_list(api, collection, args.paging.paging(), args.json).await
}

/// Shared with `aegir client list`.
pub async fn print_list(api: &Api, collection: Collection, paging: Paging, json: bool) -> Result<ExitCode, CliError> {
    let value = api.list(collection, paging).await?;
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
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                vec![
                    format!("@{}", s.uri),
                    or_dash(&s.platform),
                    or_dash(&s.db_server),
                    or_dash(&s.client),
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
        println!("no {} yet", collection.segment());
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
