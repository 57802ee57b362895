//! `aegir backups @SITE`: the archives of a site, newest first.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{Api, Page};
use crate::args::BackupsArgs;
use crate::error::CliError;
use crate::output::{self, time};

#[derive(Debug, Deserialize)]
struct BackupView {
    id: Uuid,
    origin: String,
    size: u64,
    platform: Option<String>,
    created_at: DateTime<Utc>,
}

pub async fn run(api: &Api, args: BackupsArgs) -> Result<ExitCode, CliError> {
    let paging = args.paging.paging();
    let value = api.backups(&args.site, paging).await?;
    if args.json {
        output::print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let page: Page<BackupView> = api.typed(value)?;
    if page.items.is_empty() && paging.offset == 0 {
        println!("no backups of @{}", args.site);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                time(&b.created_at),
                b.origin.clone(),
                human_size(b.size),
                b.platform.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", output::table(&["ID", "CREATED", "MADE BY", "SIZE", "PLATFORM"], &rows));
    if let Some(note) = output::paging_note(rows.len(), paging.offset, page.total) {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{size:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
