//! `platform delete`: removes the platform's code base. Refuses while site directories
//! are still in it (task-api refuses while site records use it; this checks the disk
//! too). Only a root inside the allowed platform directories, and never one of those
//! directories itself, is removed; symbolic links are removed, never followed.

use std::path::{Path, PathBuf};

use aegir_contract::{PlatformContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::files;

pub async fn run(config: &HttpConfig, platform: &PlatformContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let root = &platform.root;
    config.check_platform_root(root)?;
    if config.platform_roots.iter().any(|allowed| allowed == root) {
        return Err(StepError::permanent(format!(
            "{root} is the directory platforms live in, not a platform; give the platform its own directory below it"
        )));
    }
    let root_path = PathBuf::from(root.as_str());
    let meta = match tokio::fs::symlink_metadata(&root_path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log.info(format!("platform root {root} is already gone")).await;
            return Ok(StepFacts::default());
        }
        Err(e) => return Err(StepError::permanent(format!("cannot read {root}: {e}"))),
        Ok(meta) => meta,
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(StepError::permanent(format!(
            "platform root {root} is not a directory (a symbolic link or a file); remove it yourself"
        )));
    }
    // A symbolic link among the parents could lead out of the allowed directories.
    let check_path = root_path.clone();
    let roots: Vec<PathBuf> = config.platform_roots.iter().map(|r| PathBuf::from(r.as_str())).collect();
    let inside = tokio::task::spawn_blocking(move || really_inside(&check_path, &roots))
        .await
        .map_err(|e| StepError::permanent(format!("the path check crashed: {e}")))?;
    if !inside {
        return Err(StepError::permanent(format!(
            "platform root {root} leads outside the directories platforms may live in (through a symbolic link); \
             remove it yourself"
        )));
    }
    let sites = site_dirs(&root_path);
    if !sites.is_empty() {
        let names: Vec<String> = sites.iter().take(5).map(|s| format!("sites/{s}")).collect();
        return Err(StepError::permanent(format!(
            "{root} still holds {} site director{} ({}{}); delete those sites (or import them) first",
            sites.len(),
            if sites.len() == 1 { "y" } else { "ies" },
            names.join(", "),
            if sites.len() > 5 { ", …" } else { "" }
        )));
    }
    let remove = root_path.clone();
    tokio::task::spawn_blocking(move || files::remove_tree(&remove))
        .await
        .map_err(|e| StepError::permanent(format!("removing {root} crashed: {e}")))??;
    log.success(format!("removed the platform root {root}")).await;
    Ok(StepFacts::default())
}

/// Whether `path`'s parent, with symbolic links resolved, is inside one of `roots`.
fn really_inside(path: &Path, roots: &[PathBuf]) -> bool {
    let Some(parent) = path.parent().and_then(|p| p.canonicalize().ok()) else { return false };
    roots.iter().filter_map(|r| r.canonicalize().ok()).any(|r| parent.starts_with(&r))
}

/// Names of the directories in `<root>/sites/` that belong to sites (not `all`, not
/// `default`, which come with the code base).
fn site_dirs(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("sites")) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "all" | "default"))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_site_directories_count() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["sites/all/modules", "sites/default", "sites/example.com"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("sites/sites.php"), "<?php").unwrap();
        assert_eq!(site_dirs(dir.path()), ["example.com"]);
    }

    #[test]
    fn a_root_reached_through_a_link_out_of_the_allowed_directory_is_not_inside() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("code")).unwrap();
        std::os::unix::fs::symlink(outside.path(), allowed.path().join("link")).unwrap();
        std::fs::create_dir_all(allowed.path().join("real")).unwrap();
        let roots = [allowed.path().to_path_buf()];
        assert!(!really_inside(&allowed.path().join("link/code"), &roots));
        assert!(really_inside(&allowed.path().join("real"), &roots));
    }
}
