//! `site archive create`: the staged dump, the site's directory and the manifest into
//! one archive; then its sidecar manifest; then the staged dump goes.

use std::sync::Arc;
use std::time::Instant;

use aegir_backup_store::{Manifest, Progress, archive, dump, rate, size};
use aegir_contract::{BackupFacts, BackupRef, SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use super::{site_dirs, step_error};
use crate::BackupWorker;

pub async fn run(
    worker: &BackupWorker,
    site: &SiteContext,
    backup: &BackupRef,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let (_, site_dir) = site_dirs(worker, site)?;
    let store = &worker.store;
    let key = backup.archive_key();

    // A redelivered step whose archive was finished reports it again.
    if let Some(facts) = finished(worker, backup).await? {
        if dump::delete(store, backup).await.map_err(step_error)? {
            log.info("removed the staged database dump left from the earlier run").await;
        }
        log.info(format!("archive {key} in {store} is complete already ({}); nothing to write", size(facts.size)))
            .await;
        return Ok(StepFacts { backup: Some(facts), ..Default::default() });
    }

    log.info(format!("archiving {} and the staged database dump into {key} in {store}", site_dir.display())).await;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "archived", None);
    let started = Instant::now();
    let created = archive::create(store, backup, Manifest::for_site(site, backup), &site_dir, progress.clone()).await;
    reporter.abort();
    let created = created.map_err(step_error)?;
    for warning in &created.warnings {
        log.warning(warning.clone()).await;
    }
    let manifest = created.manifest;
    let facts = manifest.facts(backup).expect("a created archive has its checksum");
    let elapsed = started.elapsed();
    let totals = &manifest.totals;
    log.info(format!(
        "archive {key} written: {} from {} of data (database {}, {} files and {} directories), in {:.1} s, {}",
        size(facts.size),
        size(totals.database_bytes + totals.files_bytes),
        size(totals.database_bytes),
        totals.files,
        totals.directories,
        elapsed.as_secs_f64(),
        rate(progress.read(), elapsed),
    ))
    .await;
    log.info(format!("archive checksum (SHA-256) {}; manifest {}", facts.sha256, backup.manifest_key())).await;
    Ok(StepFacts { backup: Some(facts), ..Default::default() })
}

/// The facts of the archive when it is complete: its sidecar is there and the archive
/// has the size it records.
async fn finished(worker: &BackupWorker, backup: &BackupRef) -> Result<Option<BackupFacts>, StepError> {
    let sidecar = match archive::sidecar(&worker.store, backup).await {
        Ok(sidecar) => sidecar,
        Err(aegir_backup_store::Error::Store { .. }) | Err(aegir_backup_store::Error::Transient(_)) => {
            return Err(StepError::transient(format!(
                "cannot reach the backup store {} to see whether {backup} exists already",
                worker.store
            )));
        }
        // Missing, unfinished or unreadable: written (again) below.
        Err(_) => return Ok(None),
    };
    let stored = worker.store.head(&backup.archive_key()).await.map_err(step_error)?;
    match (stored, sidecar.archive.as_ref()) {
        (Some(stored), Some(sum)) if stored == sum.size => Ok(sidecar.facts(backup)),
        _ => Ok(None),
    }
}
