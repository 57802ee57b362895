//! Listing and searching sites when there are many: site rows are inserted straight into
//! task-api's tables (one server, one platform), then `GET /api/v1/sites` is timed one
//! request at a time: pages by offset, the same pages by cursor (`after=`, the `next` of
//! the page before), searches matching a handful of uris and searches matching all of
//! them. The services' resident memory is read at rest and sampled while the requests run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::memory::{self, PeakSampler};
use crate::setup;
use crate::stats::{Samples, print_percentiles};

#[derive(clap::Args)]
pub struct Args {
    /// Site rows to insert.
    #[arg(long, default_value_t = 100_000)]
    pub sites: i64,
    /// Requests of each kind.
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
}

const PAGE: i64 = 50;

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("== api-list: {} sites, {} sequential requests of each kind", args.sites, args.requests);
    crate::print_load();
    let system = setup::system_with_server(Default::default()).await;
    setup::empty_platform(&system, "many").await?;

    let started = Instant::now();
    sqlx::query(
        "INSERT INTO sites (uri, platform, db_server, status, language, title, admin_email, db_name, db_user, db_password, installed_at)
         SELECT 'site' || g || '.example.com', 'platform_many', $1, 'enabled', 'en', 'Site ' || g,
                'webmaster@site' || g || '.example.com', 'site' || g || '_db', 'site' || g || '_db', md5(g::text), now()
         FROM generate_series(1, $2) AS g",
    )
    .bind(&system.server)
    .bind(args.sites)
    .execute(&system.pg)
    .await
    .context("inserting the site rows")?;
    // As autovacuum leaves a table once it stops growing: statistics, and a visibility map
    // that lets the list read uris from indexes alone.
    sqlx::query("VACUUM ANALYZE sites").execute(&system.pg).await?;
    println!("  inserted and vacuumed {} site rows in {:.2} s", args.sites, started.elapsed().as_secs_f64());

    let pids = memory::pids(&system);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_rest = memory::snapshot(&pids);
    let sampler = PeakSampler::start(pids);

    let total = page_total(&system, "/api/v1/sites?limit=1").await?;
    if total != args.sites {
        bail!("the API lists {total} sites, not the {} inserted", args.sites);
    }
    let last_page = (args.sites - PAGE).max(0);
    let mut pages = Vec::with_capacity(args.requests);
    // The `next` of each page, where a cursor continues from it.
    let mut cursors = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        // Offsets spread evenly from the first page to the last.
        let offset = last_page * i as i64 / (args.requests.max(2) - 1) as i64;
        let (elapsed, page) = timed(&system, &format!("/api/v1/sites?limit={PAGE}&offset={offset}")).await?;
        pages.push(elapsed);
        if let Some(next) = page["next"].as_str() {
            cursors.push((offset + PAGE, next.to_owned()));
        }
    }
    let mut keyset = Vec::with_capacity(cursors.len());
    for (offset, after) in &cursors {
        let (elapsed, page) = timed(&system, &format!("/api/v1/sites?limit={PAGE}&after={after}")).await?;
        keyset.push(elapsed);
        let expected = (args.sites - offset).min(PAGE);
        let shown = page["items"].as_array().map_or(0, Vec::len) as i64;
        if shown != expected || page["total"].as_i64() != Some(args.sites) {
            bail!(
                "the page after `{after}` shows {shown} sites of {}, not {expected} of {}",
                page["total"],
                args.sites
            );
        }
    }
    let mut searches = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        // Numbers that match a handful of uris anywhere in them (`site1234…`, `…1234.example.com`).
        let text = 1000 + (i * 7919) % 9000;
        searches.push(timed(&system, &format!("/api/v1/sites?search={text}&limit={PAGE}")).await?.0);
    }
    // Texts every uri contains: the page is found at once, the total counts them all.
    let mut broad = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let text = ["site", "example.com", ".com"][i % 3];
        let (elapsed, page) = timed(&system, &format!("/api/v1/sites?search={text}&limit={PAGE}")).await?;
        broad.push(elapsed);
        if page["total"].as_i64() != Some(args.sites) {
            bail!("`search={text}` counts {} sites, not {}", page["total"], args.sites);
        }
    }
    let peak = sampler.finish().await;

    println!("  client-side time of each request (HTTP on 127.0.0.1, JSON parsed):");
    print_percentiles(&format!("GET /api/v1/sites?limit={PAGE}&offset=…"), &Samples::new(pages));
    print_percentiles(&format!("GET /api/v1/sites?limit={PAGE}&after=…"), &Samples::new(keyset));
    print_percentiles(&format!("GET /api/v1/sites?search=NNNN&limit={PAGE}"), &Samples::new(searches));
    print_percentiles(&format!("GET /api/v1/sites?search=<all>&limit={PAGE}"), &Samples::new(broad));
    memory::print(&at_rest, &peak);
    Ok(())
}

async fn timed(system: &aegir_e2e::System, path: &str) -> anyhow::Result<(Duration, serde_json::Value)> {
    let start = Instant::now();
    let page = setup::get(system, path).await?;
    Ok((start.elapsed(), page))
}

async fn page_total(system: &aegir_e2e::System, path: &str) -> anyhow::Result<i64> {
    let page = setup::get(system, path).await?;
    page["total"].as_i64().with_context(|| format!("no total in {page}"))
}
