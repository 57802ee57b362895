//! `site files unpack`: the archive's `site/` replaces the site's directory. It is
//! unpacked beside it (`sites/.<uri>.unpack-<backup id>`) and checked entry by entry;
//! only when all of it checked out are the directories swapped, so the site's directory
//! is never half restored. A redelivered step first puts back what an interrupted one
//! set aside and removes what it half unpacked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aegir_backup_store::{Progress, archive, rate, size};
use aegir_contract::{BackupRef, SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use super::{site_dirs, step_error};
use crate::BackupWorker;

pub async fn run(
    worker: &BackupWorker,
    site: &SiteContext,
    backup: &BackupRef,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let (sites, site_dir) = site_dirs(worker, site)?;
    let root = Path::new(site.platform.root.as_str());
    if !root.is_dir() {
        return Err(StepError::permanent(format!(
            "platform root {} does not exist on {}; verify the platform first",
            root.display(),
            site.platform.web_server.name
        )));
    }
    let unpack = sites.join(format!(".{}.unpack-{}", site.uri, backup.id));
    let aside = sites.join(format!(".{}.old-{}", site.uri, backup.id));
    let store = &worker.store;
    let key = backup.archive_key();

    // What an interrupted run left: the site's directory set aside but not replaced is
    // put back; half-unpacked files go.
    if !exists(&site_dir) && exists(&aside) {
        rename(&aside, &site_dir).await?;
        log.warning(format!("put back {}, which an interrupted restore had set aside", site_dir.display())).await;
    }
    for leftover in [&unpack, &aside] {
        if exists(leftover) {
            remove_tree(leftover).await?;
            log.info(format!("removed {}, left by an interrupted restore", leftover.display())).await;
        }
    }

    let sidecar = archive::sidecar(store, backup).await.map_err(step_error)?;
    if !sites.is_dir() {
        std::fs::create_dir_all(&sites)
            .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", sites.display())))?;
    }
    let total = sidecar.archive.as_ref().map(|a| a.size);
    log.info(format!("unpacking the site's files from {key} in {store} into {}", unpack.display())).await;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "unpacked", total);
    let started = Instant::now();
    let unpacked = archive::unpack(store, backup, &sidecar, &unpack, progress).await;
    reporter.abort();
    let summary = match unpacked {
        Ok(summary) => summary,
        Err(e) => {
            let _ = remove_tree(&unpack).await;
            let mut error = step_error(e);
            error.reason.push_str(&format!("; {} was not changed", site_dir.display()));
            return Err(error);
        }
    };

    // Everything checked: swap the directories.
    let had_site = exists(&site_dir);
    if had_site {
        rename(&site_dir, &aside).await?;
    }
    if let Err(e) = rename(&unpack, &site_dir).await {
        if had_site {
            let _ = rename(&aside, &site_dir).await;
        }
        let _ = remove_tree(&unpack).await;
        return Err(e);
    }
    if had_site {
        remove_tree(&aside).await?;
    }
    log.info(format!(
        "{} now holds the archive's files: {} entries, {}; {} of archive read and checked in {:.1} s, {}",
        site_dir.display(),
        summary.site_entries,
        size(summary.files_bytes),
        size(summary.archive_bytes),
        started.elapsed().as_secs_f64(),
        rate(summary.archive_bytes, started.elapsed())
    ))
    .await;
    Ok(StepFacts::default())
}

/// True when something is at `path` (a symlink counts, whatever it points to).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

async fn rename(from: &Path, to: &Path) -> Result<(), StepError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| StepError::permanent(format!("cannot move {} to {}: {e}", from.display(), to.display())))
}

async fn remove_tree(path: &Path) -> Result<(), StepError> {
    let owned: PathBuf = path.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&owned) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&owned),
        Ok(_) => std::fs::remove_file(&owned),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| StepError::permanent(format!("removing {} stopped: {e}", path.display())))?;
    removed.map_err(|e| StepError::permanent(format!("cannot remove {}: {e}", path.display())))
}
