//! `platform build` and its undo, `platform build remove`.
//!
//! A platform with a source gets its code at its root when the root is missing: cloned
//! from its git repository, or unpacked from its `.tar.gz` in the backup store. The code
//! is put together in a directory beside the root (`.<name>.build-<task>`) and renamed
//! into place only when complete, so a failed or killed build never leaves half a
//! platform at the root; a later run removes what a killed one left beside it. A root
//! that is already there is kept as it is: a platform is built once, then verified.
//!
//! The build notes the task that made the root in `.<name>.built-by` beside it, so the
//! undo of a task that fails after the build removes that root and never one it found.
//!
//! This step runs on the backup-worker of the platform's web server: it reaches both the
//! platform roots and the backup store, so both kinds of source are built in one place,
//! and the http-worker needs no access to the store.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegir_backup_store::{Progress, platform, rate, size};
use aegir_contract::{GitRef, GitUrl, PlatformContext, PlatformSource, StepFacts};
use aegir_worker::{StepError, StepLog};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::step_error;
use crate::BackupWorker;

/// Git's progress lines come several times a second; the log gets one every this long
/// (and each phase's last line).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A clone of a large repository over a slow link still ends well within this.
const GIT_TIME_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Where a platform's build happens and what it leaves, all beside its root.
struct Places {
    root: PathBuf,
    parent: PathBuf,
    /// `.<name>.build-`: the build directories of any task start with it.
    build_prefix: String,
    /// This task's build directory.
    build: PathBuf,
    /// Names the task that built the root.
    marker: PathBuf,
}

fn places(worker: &BackupWorker, platform: &PlatformContext, task_id: &str) -> Result<Places, StepError> {
    let root = &platform.root;
    let allowed = worker.platform_roots.iter().any(|allowed| root.is_within(allowed) && root != allowed);
    if !allowed {
        let allowed: Vec<&str> = worker.platform_roots.iter().map(|r| r.as_str()).collect();
        return Err(StepError::permanent(format!(
            "platform root {root} is not below the directories platforms may live in on this server ({}); \
             choose a root below one of them",
            allowed.join(", ")
        )));
    }
    let root = PathBuf::from(root.as_str());
    let (Some(parent), Some(name)) = (root.parent(), root.file_name().and_then(|n| n.to_str())) else {
        return Err(StepError::permanent(format!("platform root {} has no parent directory", root.display())));
    };
    let build_prefix = format!(".{name}.build-");
    Ok(Places {
        parent: parent.to_path_buf(),
        build: parent.join(format!("{build_prefix}{task_id}")),
        marker: parent.join(format!(".{name}.built-by")),
        build_prefix,
        root,
    })
}

pub async fn run(
    worker: &BackupWorker,
    platform: &PlatformContext,
    task_id: &str,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let Some(source) = &platform.source else {
        return Err(StepError::permanent(format!("platform `@{}` has no source to build from", platform.name)));
    };
    let places = places(worker, platform, task_id)?;
    remove_leftovers(&places, log).await?;

    if exists(&places.root) {
        // Built by an earlier try of this task (redelivered after the rename), or there
        // before: either way the code is in place.
        if read_marker(&places.marker).await.as_deref() != Some(task_id) {
            remove_tree(&places.marker).await?;
        }
        log.info(format!(
            "{} already exists: it is kept as it is, not built again from {source}",
            places.root.display()
        ))
        .await;
        return Ok(StepFacts::default());
    }

    tokio::fs::create_dir_all(&places.parent)
        .await
        .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", places.parent.display())))?;
    log.info(format!("building {} from {source}", places.root.display())).await;
    let started = Instant::now();
    let built = match source {
        PlatformSource::Git { url, git_ref } => clone(url, git_ref.as_ref(), &places.build, log).await,
        PlatformSource::Archive { key } => unpack(worker, key.as_str(), &places.build, log).await,
    };
    let code_dir = match built {
        Ok(code_dir) => code_dir,
        Err(mut error) => {
            let _ = remove_tree(&places.build).await;
            error.reason.push_str(&format!("; nothing was put at {}", places.root.display()));
            return Err(error);
        }
    };

    // The marker first: a build killed between the two leaves a marker and no root,
    // which the undo and the next build both handle.
    tokio::fs::write(&places.marker, task_id)
        .await
        .map_err(|e| StepError::permanent(format!("cannot write {}: {e}", places.marker.display())))?;
    if let Err(e) = tokio::fs::rename(&code_dir, &places.root).await {
        let _ = remove_tree(&places.build).await;
        let _ = remove_tree(&places.marker).await;
        return Err(StepError::permanent(format!(
            "cannot move the built platform to {}: {e}; nothing was put there",
            places.root.display()
        )));
    }
    // An archive's code may have been one directory inside the build directory.
    remove_tree(&places.build).await?;
    log.info(format!("{} built from {source} in {:.1} s", places.root.display(), started.elapsed().as_secs_f64()))
        .await;
    Ok(StepFacts::default())
}

/// Undo: removes the root this task built, and what a build of it left beside the root.
pub async fn remove(
    worker: &BackupWorker,
    platform: &PlatformContext,
    task_id: &str,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let places = places(worker, platform, task_id)?;
    remove_tree(&places.build).await?;
    if read_marker(&places.marker).await.as_deref() != Some(task_id) {
        let line = if exists(&places.root) {
            format!("{} was not built by this task: it is left as it is", places.root.display())
        } else {
            format!("this task built nothing at {}: nothing to remove", places.root.display())
        };
        log.info(line).await;
        return Ok(StepFacts::default());
    }
    if exists(&places.root) {
        remove_tree(&places.root).await?;
        log.info(format!("removed {}, which this task had built", places.root.display())).await;
    }
    remove_tree(&places.marker).await?;
    Ok(StepFacts::default())
}

/// Build directories an interrupted build of this platform left beside its root.
async fn remove_leftovers(places: &Places, log: &StepLog) -> Result<(), StepError> {
    let Ok(mut entries) = tokio::fs::read_dir(&places.parent).await else { return Ok(()) };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(&places.build_prefix)) {
            remove_tree(&entry.path()).await?;
            log.info(format!("removed {}, left by an interrupted build", entry.path().display())).await;
        }
    }
    Ok(())
}

async fn unpack(worker: &BackupWorker, key: &str, build: &Path, log: &StepLog) -> Result<PathBuf, StepError> {
    let store = &worker.store;
    let total = store.head(key).await.map_err(step_error)?;
    let Some(total) = total else {
        return Err(StepError::permanent(format!(
            "platform archive {key} is not in the backup store {store}; put it there or correct the platform's source"
        )));
    };
    log.info(format!("unpacking {key} ({}) from {store}", size(total))).await;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "unpacked", Some(total));
    let started = Instant::now();
    let unpacked = platform::unpack(store, key, build, progress).await;
    reporter.abort();
    let unpacked = unpacked.map_err(step_error)?;
    log.info(format!(
        "unpacked {} files, {}, from {} of archive in {:.1} s, {}",
        unpacked.files,
        size(unpacked.files_bytes),
        size(unpacked.archive_bytes),
        started.elapsed().as_secs_f64(),
        rate(unpacked.archive_bytes, started.elapsed())
    ))
    .await;
    Ok(unpacked.code_dir)
}

/// Clones the repository into `build` and checks out `git_ref`; the platform keeps the
/// files only, not the repository (`.git` in a web root would serve the whole history).
async fn clone(url: &GitUrl, git_ref: Option<&GitRef>, build: &Path, log: &StepLog) -> Result<PathBuf, StepError> {
    let build_arg = build.as_os_str().to_owned();
    match git_ref {
        // A commit cannot be cloned by name: the repository is cloned, then the commit
        // is checked out.
        Some(commit) if commit.is_commit_id() => {
            let mut args = vec!["clone".into(), "--progress".into(), "--no-checkout".into(), "--".into()];
            args.extend([url.as_str().into(), build_arg]);
            git(&args, None, "git clone", log).await?;
            let args = ["checkout".into(), "--detach".into(), commit.as_str().into(), "--".into()];
            git(&args, Some(build), "git checkout", log).await?;
        }
        _ => {
            let mut args = vec!["clone".into(), "--progress".into(), "--depth".into(), "1".into()];
            if let Some(branch) = git_ref {
                args.extend(["--branch".into(), branch.as_str().into()]);
            }
            args.extend(["--".into(), url.as_str().into(), build_arg]);
            git(&args, None, "git clone", log).await?;
        }
    }
    let commit = git(&["rev-parse".into(), "HEAD".into()], Some(build), "git rev-parse", log).await?;
    log.info(format!("checked out commit {}", commit.trim())).await;
    remove_tree(&build.join(".git")).await?;
    Ok(build.to_path_buf())
}

/// Runs git with an argument list, its progress (stderr) streamed to the step's log;
/// returns what it printed on stdout. Git never prompts: a repository that needs
/// credentials the server does not have fails at once.
async fn git(args: &[std::ffi::OsString], dir: Option<&Path>, what: &str, log: &StepLog) -> Result<String, StepError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command
        .args(["-c", "advice.detachedHead=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        StepError::permanent(format!("cannot run git on this server: {e}; install git (Debian: apt-get install git)"))
    })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let (messages, out) = tokio::join!(stream_progress(stderr, log), async {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out).await;
            out
        });
        (messages, out, child.wait().await)
    };
    // Dropping the child on a timeout kills it; the caller removes what it wrote.
    let Ok((messages, out, status)) = tokio::time::timeout(GIT_TIME_LIMIT, run).await else {
        return Err(StepError::permanent(format!(
            "{what} did not finish within {} minutes",
            GIT_TIME_LIMIT.as_secs() / 60
        )));
    };
    let status = status.map_err(|e| StepError::permanent(format!("{what} stopped: {e}")))?;
    if status.success() {
        return Ok(out);
    }
    let why = messages
        .iter()
        .rev()
        .find(|m| m.starts_with("fatal:") || m.starts_with("error:"))
        .or(messages.last())
        .cloned()
        .unwrap_or_else(|| format!("it ended with {status}"));
    Err(StepError::permanent(format!("{what} failed: {why}")))
}

/// Sends git's stderr to the log as it comes: messages as they are, progress lines
/// (`Receiving objects:  45% …`, rewritten in place with `\r`) at most every
/// [`PROGRESS_EVERY`] and at the end of each phase. Returns the messages, for the
/// reason of a failure.
async fn stream_progress(mut stderr: tokio::process::ChildStderr, log: &StepLog) -> Vec<String> {
    let mut messages = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    let mut last_progress: Option<Instant> = None;
    let mut held: Option<String> = None;
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if line.is_empty() {
                continue;
            }
            if is_progress(&line) {
                let phase_done = line.contains(", done.");
                let due = last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                if phase_done || due {
                    log.info(line).await;
                    last_progress = Some(Instant::now());
                    held = None;
                } else {
                    held = Some(line);
                }
            } else {
                if let Some(h) = held.take() {
                    log.info(h).await;
                }
                if line.starts_with("fatal:") || line.starts_with("error:") {
                    log.error(line.clone()).await;
                } else if line.starts_with("warning:") {
                    log.warning(line.clone()).await;
                } else {
                    log.info(line.clone()).await;
                }
                messages.push(line);
            }
        }
    }
    if let Some(h) = held {
        log.info(h).await;
    }
    let rest = String::from_utf8_lossy(&pending).trim().to_owned();
    if !rest.is_empty() {
        log.info(rest.clone()).await;
        messages.push(rest);
    }
    messages
}

/// Git's counters: `Receiving objects:  12% (3/25)`, `remote: Counting objects: …`.
fn is_progress(line: &str) -> bool {
    let line = line.strip_prefix("remote: ").unwrap_or(line);
    line.split_once(':').is_some_and(|(_, rest)| {
        let rest = rest.trim_start();
        rest.split_whitespace().next().is_some_and(|first| first.ends_with('%') || first.starts_with('('))
            || rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// True when something is at `path` (a symlink counts, whatever it points to).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The task id a marker names.
async fn read_marker(marker: &Path) -> Option<String> {
    Some(tokio::fs::read_to_string(marker).await.ok()?.trim().to_owned())
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

#[cfg(test)]
mod tests {
    use super::is_progress;

    #[test]
    fn progress_lines_are_told_from_messages() {
        for progress in [
            "Receiving objects:  45% (9/20)",
            "remote: Counting objects: 100% (20/20), done.",
            "Resolving deltas: 100% (3/3), done.",
            "remote: Enumerating objects: 23, done.",
        ] {
            assert!(is_progress(progress), "{progress}");
        }
        for message in [
            "Cloning into '/var/aegir/platforms/.wp.build-x'...",
            "fatal: repository '/srv/none' does not exist",
            "warning: --depth is ignored in local clones; use file:// instead.",
        ] {
            assert!(!is_progress(message), "{message}");
        }
    }
}
