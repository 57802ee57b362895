//! `site stats`: the site's files, its answer over HTTP, and the application's own
//! counts. Reads only.

use std::path::Path;
use std::time::{Duration, Instant};

use aegir_contract::{AppFigure, SiteContext, SiteStats, StepFacts};
use aegir_worker::{StepError, StepLog};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::HttpConfig;
use crate::site::SiteWork;

/// A site that has not answered by then counts as not answering.
const HTTP_PATIENCE: Duration = Duration::from_secs(30);

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::new(config, site)?;
    if !work.is_installed() {
        return Err(StepError::permanent(format!("{} is not installed; install it first", site.uri)));
    }
    let dir = work.site_dir().to_path_buf();
    let (files_bytes, files) = tokio::task::spawn_blocking(move || measure(&dir))
        .await
        .map_err(|e| StepError::permanent(format!("measuring the site's files stopped: {e}")))?;
    log.info(format!("files: {files} in {}, {files_bytes} bytes", work.site_dir().display())).await;

    let host = if work.http.port == 80 { site.uri.to_string() } else { format!("{}:{}", site.uri, work.http.port) };
    let (http_status, response_ms) = probe(work.http.port, &host).await;
    match http_status {
        0 => log.warning(format!("http://{host}/ did not answer within {} s", HTTP_PATIENCE.as_secs())).await,
        status => log.info(format!("http://{host}/ answered {status} in {response_ms} ms")).await,
    }

    let mut figures = Vec::new();
    if !work.is_disabled()
        && let Some(job) = work.platform.figures(&work.files, work.files.app_env()?)
    {
        let out = crate::php::run(&config.php_cli(site), job).await?;
        figures = parse_figures(&out.stdout);
        let listed: Vec<String> = figures.iter().map(|f| format!("{} {}", f.value, f.name)).collect();
        log.info(format!("the application counts {}", listed.join(", "))).await;
    }
    let stats = SiteStats {
        files_bytes: Some(files_bytes),
        files: Some(files),
        http_status: Some(http_status),
        response_ms: Some(response_ms),
        figures,
        ..SiteStats::default()
    };
    Ok(StepFacts { stats: Some(stats), ..StepFacts::default() })
}

/// The `name=value` lines of a figures run; anything else it printed is left out.
pub(crate) fn parse_figures(stdout: &str) -> Vec<AppFigure> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once('=')?;
            Some(AppFigure { name: name.to_owned(), value: value.parse().ok()? })
        })
        .collect()
}

/// Bytes and entries below `dir`, links not followed.
fn measure(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

/// `GET /` with the site's name, from this server: the status and the time to the
/// status line. Status 0: nothing answered in time.
async fn probe(port: u16, host: &str) -> (u16, u32) {
    let started = Instant::now();
    let ask = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: aegir-stats\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        line.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    let status = tokio::time::timeout(HTTP_PATIENCE, ask).await.ok().flatten().unwrap_or(0);
    (status, u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX))
}
