//! Listing and searching sites when there are many: site rows are inserted straight into
//! task-api's tables (one server, one platform), then `GET /api/v1/sites` is timed page
//! by page and by search text, one request at a time. The services' resident memory is
//! read at rest and sampled while the requests run.

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
    sqlx::query("ANALYZE sites").execute(&system.pg).await?;
    println!("  inserted {} site rows in {:.2} s", args.sites, started.elapsed().as_secs_f64());

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
    for i in 0..args.requests {
        // Offsets spread evenly from the first page to the last.
        let offset = last_page * i as i64 / (args.requests.max(2) - 1) as i64;
        pages.push(timed(&system, &format!("/api/v1/sites?limit={PAGE}&offset={offset}")).await?);
    }
    let mut searches = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        // Numbers that match a handful of uris anywhere in them (`site1234…`, `…1234.example.com`).
        let text = 1000 + (i * 7919) % 9000;
        searches.push(timed(&system, &format!("/api/v1/sites?search={text}&limit={PAGE}")).await?);
    }
    let peak = sampler.finish().await;

    println!("  client-side time of each request (HTTP on 127.0.0.1, JSON parsed):");
    print_percentiles(&format!("GET /api/v1/sites?limit={PAGE}&offset=…"), &Samples::new(pages));
    print_percentiles(&format!("GET /api/v1/sites?search=NNNN&limit={PAGE}"), &Samples::new(searches));
    memory::print(&at_rest, &peak);
    Ok(())
}

async fn timed(system: &aegir_e2e::System, path: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    setup::get(system, path).await?;
    Ok(start.elapsed())
}

async fn page_total(system: &aegir_e2e::System, path: &str) -> anyhow::Result<i64> {
    let page = setup::get(system, path).await?;
    page["total"].as_i64().with_context(|| format!("no total in {page}"))
}
