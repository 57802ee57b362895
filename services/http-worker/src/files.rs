//! Writing the files a site is made of: atomically, with the mode and owner they must
//! have, and telling whether anything changed (so a verify reloads only when needed).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aegir_worker::StepError;

use crate::coalesced::Coalesced;

/// Owner and group a file gets; `None` leaves it as created (the worker is not root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> StepError {
    StepError::permanent(format!("cannot {action} {}: {e}", path.display()))
}

/// A fresh temporary name beside `path`, unique per write: two steps of one worker may
/// write the same file at once (a step redelivered after its deadline next to the next
/// task's), and each rename must carry a whole file of its own.
pub fn temp_sibling(path: &Path) -> std::path::PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Whether `path` already is a regular file holding `contents` with `mode` and `owner`.
pub fn is_same(path: &Path, contents: &[u8], mode: u32, owner: Ownership) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_file()
            && meta.len() == contents.len() as u64
            && meta.permissions().mode() & 0o7777 == mode
            && owner.uid.is_none_or(|u| u == meta.uid())
            && owner.gid.is_none_or(|g| g == meta.gid())
            && std::fs::read(path).is_ok_and(|old| old == contents)
    })
}

/// Writes `contents` to `path` through a temporary sibling and a rename, with `mode`
/// and `owner` set before the rename so the file is never visible with looser rights,
/// and on disk before it returns. Returns whether the content, mode or owner changed.
pub fn write(path: &Path, contents: &[u8], mode: u32, owner: Ownership) -> Result<bool, StepError> {
    write_file(path, contents, mode, owner, true)
}

/// [`write`] without waiting for the disk: the file is on disk once a [`flush`] that
/// began after this call has returned. Many steps writing at once share one flush
/// instead of each waiting for its own (a few milliseconds per file).
pub fn write_deferred(path: &Path, contents: &[u8], mode: u32, owner: Ownership) -> Result<bool, StepError> {
    let changed = write_file(path, contents, mode, owner, false)?;
    if changed {
        note_unflushed(path);
    }
    Ok(changed)
}

fn write_file(path: &Path, contents: &[u8], mode: u32, owner: Ownership, sync: bool) -> Result<bool, StepError> {
    if is_same(path, contents, mode, owner) {
        return Ok(false);
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(contents)?;
        if sync {
            file.sync_all()?;
        }
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&file, owner.uid, owner.gid)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("write", path, e));
    }
    Ok(true)
}

/// An open directory on each file system written to by [`write_deferred`] (or whose
/// entries changed) since the last [`flush`] began, by device. Open, so a directory
/// removed meanwhile still names its file system.
static UNFLUSHED: std::sync::Mutex<BTreeMap<u64, std::fs::File>> = std::sync::Mutex::new(BTreeMap::new());

static FLUSHES: Coalesced = Coalesced::new();

/// Notes that the entry `path` (a file or directory) changed and is not on disk yet.
pub fn note_unflushed(path: &Path) {
    let dir = path.parent().unwrap_or(path);
    let Ok(meta) = std::fs::metadata(dir) else { return };
    let mut unflushed = UNFLUSHED.lock().expect("unflushed lock");
    if !unflushed.contains_key(&meta.dev())
        && let Ok(handle) = std::fs::File::open(dir)
    {
        unflushed.insert(meta.dev(), handle);
    }
}

/// Puts on disk everything [`write_deferred`] wrote before this call: one `syncfs` per
/// file system written to, shared by every step that asks while one runs.
pub async fn flush() -> Result<(), StepError> {
    FLUSHES
        .run(|| async {
            let dirs = std::mem::take(&mut *UNFLUSHED.lock().expect("unflushed lock"));
            tokio::task::spawn_blocking(move || {
                let mut failed = Ok(());
                for (dev, dir) in dirs {
                    if let Err(e) = nix::unistd::syncfs(&dir) {
                        // Noted again, so the next flush tries it again.
                        UNFLUSHED.lock().expect("unflushed lock").insert(dev, dir);
                        failed = Err(StepError::transient(format!(
                            "cannot flush the files just written to disk: {e}; run the task again"
                        )));
                    }
                }
                failed
            })
            .await
            .map_err(|e| StepError::transient(format!("flushing files to disk crashed: {e}")))?
        })
        .await
        .map(|_| ())
}

/// Creates `path` (and missing parents) and gives it `mode` and `owner`. Returns
/// whether anything changed.
pub fn ensure_dir(path: &Path, mode: u32, owner: Ownership) -> Result<bool, StepError> {
    let mut changed = false;
    if !path.is_dir() {
        std::fs::create_dir_all(path).map_err(|e| io_error("create", path, e))?;
        changed = true;
    }
    changed |= set_mode_owner(path, mode, owner)?;
    Ok(changed)
}

/// Gives an existing entry `mode` and `owner`; returns whether anything changed.
pub fn set_mode_owner(path: &Path, mode: u32, owner: Ownership) -> Result<bool, StepError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error("read", path, e))?;
    let mut changed = false;
    if owner.uid.is_some_and(|u| u != meta.uid()) || owner.gid.is_some_and(|g| g != meta.gid()) {
        std::os::unix::fs::lchown(path, owner.uid, owner.gid).map_err(|e| io_error("change the owner of", path, e))?;
        changed = true;
    }
    // chown clears setgid bits, so the mode comes after it.
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error("read", path, e))?;
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("change the mode of", path, e))?;
        changed = true;
    }
    Ok(changed)
}

/// Removes a file if it exists; returns whether it did.
pub fn remove_file(path: &Path) -> Result<bool, StepError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

/// Removes a directory tree if it exists (never following symlinks); returns whether it did.
pub fn remove_tree(path: &Path) -> Result<bool, StepError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("read", path, e)),
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| io_error("remove", path, e))?;
            Ok(true)
        }
        Ok(_) => remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_reports_changes_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.php");
        assert!(write(&path, b"one", 0o440, Ownership::default()).unwrap());
        assert!(!write(&path, b"one", 0o440, Ownership::default()).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o440);
        assert!(write(&path, b"two", 0o440, Ownership::default()).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert!(write(&path, b"two", 0o400, Ownership::default()).unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[tokio::test]
    async fn a_deferred_write_is_flushed_even_after_its_directory_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        assert!(write_deferred(&gone.join("settings.php"), b"one", 0o440, Ownership::default()).unwrap());
        assert!(!write_deferred(&gone.join("settings.php"), b"one", 0o440, Ownership::default()).unwrap());
        remove_tree(&gone).unwrap();
        assert!(write_deferred(&dir.path().join("vhost.conf"), b"two", 0o600, Ownership::default()).unwrap());
        flush().await.expect("the file system is flushed through a directory held open");
        assert_eq!(std::fs::read(dir.path().join("vhost.conf")).unwrap(), b"two");
    }

    #[test]
    fn writers_of_one_file_at_once_each_write_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for round in 0..50u32 {
                        let body = vec![b'a' + i; 4096 + round as usize];
                        write(&path, &body, 0o644, Ownership::default()).expect("every write succeeds");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let last = std::fs::read(&path).unwrap();
        assert!(last.iter().all(|b| *b == last[0]), "the file is one writer's whole content");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left behind");
    }
}
