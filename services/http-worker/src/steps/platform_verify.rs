//! `platform verify`: the root exists where platforms may live, the application is
//! recognised, and the code base gets Aegir's permissions.

use std::path::{Path, PathBuf};

use aegir_contract::{PlatformContext, PlatformType, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::permissions::{self, Owner};
use crate::platforms;

pub async fn run(config: &HttpConfig, platform: &PlatformContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let root = &platform.root;
    if !config.platform_roots.iter().any(|allowed| root.is_within(allowed)) {
        let allowed: Vec<&str> = config.platform_roots.iter().map(|r| r.as_str()).collect();
        return Err(StepError::permanent(format!(
            "platform root {root} is outside the directories platforms may live in on this server ({})",
            allowed.join(", ")
        )));
    }
    let root_path = PathBuf::from(root.as_str());
    match tokio::fs::symlink_metadata(&root_path).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(StepError::permanent(format!("platform root {root} is not a directory"))),
        Err(_) => {
            return Err(StepError::permanent(format!(
                "platform root {root} does not exist on {}; put the code base there first",
                platform.web_server.name
            )));
        }
    }
    log.info(format!("platform root {root} exists")).await;

    let detect_root = root_path.clone();
    let detected = tokio::task::spawn_blocking(move || platforms::detect(&detect_root))
        .await
        .map_err(|e| StepError::permanent(format!("type detection crashed: {e}")))?
        .ok_or_else(|| {
            StepError::permanent(format!(
                "no PHP application found in {root}: expected Drupal, WordPress, MediaWiki or at least an index.php"
            ))
        })?;
    let version = detected.version.clone().unwrap_or_else(|| "unknown version".into());
    log.info(format!("detected a {} platform ({version})", detected.platform_type)).await;

    let kind = platforms::for_type(detected.platform_type);
    ensure_layout(&root_path, kind.layout_dirs()).await?;
    let skip = kind.writable_dirs(&root_path);
    let owner = Owner::lookup(&config.script_user);
    if owner.is_none() {
        log.warning(format!(
            "not changing owners: this worker is not root or user `{}` does not exist",
            config.script_user
        ))
        .await;
    }
    let fix_root = root_path.clone();
    let fixed = tokio::task::spawn_blocking(move || permissions::fix_platform(&fix_root, &skip, owner))
        .await
        .map_err(|e| StepError::permanent(format!("permission fix crashed: {e}")))?
        .map_err(|e| StepError::permanent(format!("cannot fix permissions under {root}: {e}")))?;
    log.info(format!(
        "permissions checked on {} entries: {} made unwritable by the web server, {} given to `{}`",
        fixed.examined, fixed.modes, fixed.owners, config.script_user
    ))
    .await;

    let scan_root = root_path.clone();
    let (packages, profiles) =
        tokio::task::spawn_blocking(move || (kind.packages(&scan_root, None), kind.profiles(&scan_root)))
            .await
            .map_err(|e| StepError::permanent(format!("package scan crashed: {e}")))?;
    log.info(format!("found {} packages", packages.len())).await;
    let is_drupal = matches!(detected.platform_type, PlatformType::Drupal7 | PlatformType::Drupal);
    if is_drupal {
        let names: Vec<&str> = profiles.iter().map(|p| p.as_str()).collect();
        log.info(format!("install profiles: {}", if names.is_empty() { "none".into() } else { names.join(", ") }))
            .await;
    }
    Ok(StepFacts {
        platform_type: Some(detected.platform_type),
        app_version: detected.version,
        packages: Some(packages),
        profiles: is_drupal.then_some(profiles),
        ..Default::default()
    })
}

/// Directories Aegir creates on Drupal platforms for shared modules and themes,
/// setgid so new files keep the group.
async fn ensure_layout(root: &Path, dirs: &[&str]) -> Result<(), StepError> {
    for dir in dirs {
        let path = root.join(dir);
        if !path.is_dir() {
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", path.display())))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o2775)).await;
        }
    }
    Ok(())
}
