//! Aegir's platform permissions: the code base belongs to the script user (`aegir`),
//! and the web server has no business writing to it. Files directories of sites are
//! the exception: the web server writes there, so they are left alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Whom platform code must belong to; `None` when this worker may not change owners
/// (it is not root, or the user does not exist).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Owner {
    pub fn lookup(user: &str) -> Option<Owner> {
        if !Uid::effective().is_root() {
            return None;
        }
        let user = User::from_name(user).ok()??;
        Some(Owner { uid: user.uid, gid: user.gid })
    }
}

pub fn group_id(name: &str) -> Option<Gid> {
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fixed {
    /// Entries whose group/world write bits were removed.
    pub modes: u64,
    /// Entries given to the script user.
    pub owners: u64,
    pub examined: u64,
}

/// Walks the platform, not following symlinks and skipping `skip` (the directories
/// the web server may write), and makes every entry unwritable by group and world
/// and owned by `owner`.
pub fn fix_platform(root: &Path, skip: &[PathBuf], owner: Option<Owner>) -> std::io::Result<Fixed> {
    let mut fixed = Fixed::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if skip.iter().any(|s| s == &path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        fixed.examined += 1;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o022))?;
            fixed.modes += 1;
        }
        if let Some(o) = owner
            && (meta.uid() != o.uid.as_raw() || meta.gid() != o.gid.as_raw())
        {
            std::os::unix::fs::lchown(&path, Some(o.uid.as_raw()), Some(o.gid.as_raw()))?;
            fixed.owners += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_bits_are_removed_except_in_skipped_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sites/a/files")).unwrap();
        std::fs::write(root.join("index.php"), "").unwrap();
        std::fs::write(root.join("sites/a/files/upload.png"), "").unwrap();
        for p in ["index.php", "sites", "sites/a/files", "sites/a/files/upload.png"] {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let fixed = fix_platform(root, &[root.join("sites/a/files")], None).unwrap();
        assert_eq!(fixed.modes, 2);
        let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("index.php"), 0o755);
        assert_eq!(mode("sites"), 0o755);
        assert_eq!(mode("sites/a/files"), 0o777);
        assert_eq!(mode("sites/a/files/upload.png"), 0o777);
    }
}
