//! `site archive check`: reads a whole archive and checks it against its manifest;
//! changes nothing.

use std::sync::Arc;
use std::time::Instant;

use aegir_backup_store::{Progress, archive, rate, size};
use aegir_contract::{BackupRef, StepFacts};
use aegir_worker::{StepError, StepLog};

use super::step_error;
use crate::BackupWorker;

pub async fn run(worker: &BackupWorker, backup: &BackupRef, log: &StepLog) -> Result<StepFacts, StepError> {
    let store = &worker.store;
    let key = backup.archive_key();
    let sidecar = archive::sidecar(store, backup).await.map_err(step_error)?;
    let total = sidecar.archive.as_ref().map(|a| a.size);
    log.info(format!(
        "checking archive {key} in {store} ({}, made {}) against its manifest",
        size(total.unwrap_or(0)),
        sidecar.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    ))
    .await;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "checked", total);
    let started = Instant::now();
    let checked = archive::check(store, backup, &sidecar, progress.clone()).await;
    reporter.abort();
    let summary = checked.map_err(step_error)?;
    log.info(format!(
        "archive {key} is sound: database.sql ({}) and {} entries of the site's directory ({}) match their \
         checksums, and all {} of the archive match its own; checked in {:.1} s, {}",
        size(summary.database_bytes),
        summary.site_entries,
        size(summary.files_bytes),
        size(summary.archive_bytes),
        started.elapsed().as_secs_f64(),
        rate(summary.archive_bytes, started.elapsed()),
    ))
    .await;
    Ok(StepFacts::default())
}
