//! One module per step this worker runs, and what they share.

pub mod archive_check;
pub mod archive_create;
pub mod backup_delete;
pub mod files_unpack;
pub mod platform_build;

use std::path::PathBuf;

use aegir_contract::SiteContext;
use aegir_worker::StepError;

use crate::BackupWorker;

/// A store or archive error as the step's failure: worth a retry only when the store
/// or the network failed.
pub fn step_error(e: aegir_backup_store::Error) -> StepError {
    if e.is_transient() { StepError::transient(e.to_string()) } else { StepError::permanent(e.to_string()) }
}

/// The platform's `sites` directory and the site's directory in it, once the platform
/// root is known to be one platforms may live in.
pub fn site_dirs(worker: &BackupWorker, site: &SiteContext) -> Result<(PathBuf, PathBuf), StepError> {
    let root = &site.platform.root;
    if !worker.platform_roots.iter().any(|allowed| root.is_within(allowed)) {
        let allowed: Vec<&str> = worker.platform_roots.iter().map(|r| r.as_str()).collect();
        return Err(StepError::permanent(format!(
            "platform root {root} is outside the directories platforms may live in on this server ({})",
            allowed.join(", ")
        )));
    }
    if matches!(site.uri.as_str(), "all" | "default") {
        return Err(StepError::permanent(format!(
            "`{}` names a shared directory of the platform, not a site",
            site.uri
        )));
    }
    let sites = PathBuf::from(root.as_str()).join("sites");
    let site_dir = sites.join(site.uri.as_str());
    Ok((sites, site_dir))
}
