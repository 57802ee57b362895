//! `backup delete`: the archive, its sidecar manifest and any staged dump go. What is
//! gone already is fine.

use aegir_backup_store::dump;
use aegir_contract::{BackupRef, StepFacts};
use aegir_worker::{StepError, StepLog};

use super::step_error;
use crate::BackupWorker;

pub async fn run(worker: &BackupWorker, backup: &BackupRef, log: &StepLog) -> Result<StepFacts, StepError> {
    let store = &worker.store;
    // The sidecar first: without it the archive counts as unfinished, never as good.
    for key in [backup.manifest_key(), backup.archive_key()] {
        if store.delete(&key).await.map_err(step_error)? {
            log.info(format!("removed {key} from {store}")).await;
        } else {
            log.info(format!("{key} is not in {store}; nothing to remove")).await;
        }
    }
    if dump::delete(store, backup).await.map_err(step_error)? {
        log.info(format!("removed the staged database dump {}", backup.dump_key())).await;
    }
    Ok(StepFacts::default())
}
