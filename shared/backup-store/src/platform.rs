//! Platform archives: a `.tar.gz` of a platform's code kept in the backup store, unpacked
//! into a new directory from which a platform build moves it into place.
//!
//! Unlike a site archive it has no manifest: it is made by people (a release tarball, a
//! `git archive`), so each entry is checked as it is read instead. Only directories,
//! regular files and symlinks that stay inside the platform are taken; nothing is
//! written outside the directory, and ownership is never taken from the archive.

use std::io::{self, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;

use crate::bridge::source_error;
use crate::{BackupStore, Error, Progress, Result};

/// What an unpack wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Where the code is: `dest` itself, or the one directory everything in the archive
    /// was in (`wordpress/…` in WordPress's release tarball).
    pub code_dir: PathBuf,
    pub archive_bytes: u64,
    pub files: u64,
    pub files_bytes: u64,
}

/// Unpacks the `.tar.gz` at `key` into `dest`, a directory that must not exist yet. On
/// error `dest` may hold part of the archive: the caller removes it.
pub async fn unpack(store: &BackupStore, key: &str, dest: &Path, progress: Arc<Progress>) -> Result<Unpacked> {
    let (owned_key, dest) = (key.to_owned(), dest.to_path_buf());
    store.consume(key, move |reader| unpack_from(reader, &owned_key, &dest, &progress)).await
}

/// Counts what is read from the store, for the progress lines.
struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.add_read(n as u64);
        Ok(n)
    }
}

fn unpack_from<R: Read>(reader: R, key: &str, dest: &Path, progress: &Arc<Progress>) -> Result<Unpacked> {
    let failed = |what: String, e: io::Error| match source_error(&e) {
        // The store or the network failed while streaming: worth a retry.
        Some(source) => Error::Transient(source.to_string()),
        None => Error::Failed(format!("platform archive {key} could not be unpacked: {what}: {e}")),
    };
    let refuse = |reason: String| Error::Failed(format!("platform archive {key} is refused: {reason}"));

    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dest)
        .map_err(|e| failed(format!("cannot create {}", dest.display()), e))?;
    let counting = Counting { inner: reader, progress: Arc::clone(progress), read: 0 };
    let gzip = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, counting));
    let mut archive = tar::Archive::new(gzip);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);

    let (mut files, mut files_bytes) = (0u64, 0u64);
    let entries = archive.entries().map_err(|e| failed("it is not a tar.gz".into(), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| failed("it is not a readable tar.gz".into(), e))?;
        let path = entry.path().map_err(|e| failed("an entry has an unreadable name".into(), e))?.into_owned();
        let shown = path.display().to_string();
        let kind = entry.header().entry_type();
        match kind {
            // `git archive` writes the commit id as a global header; nothing to unpack.
            EntryType::XGlobalHeader => continue,
            EntryType::Regular | EntryType::Continuous | EntryType::Directory | EntryType::Symlink => {}
            other => {
                return Err(refuse(format!(
                    "it holds `{shown}`, a {other:?} entry; a platform archive may hold only directories, files and \
                     symlinks"
                )));
            }
        }
        let Some(relative) = plain_relative(&path) else {
            return Err(refuse(format!("it holds `{shown}`, a path that could escape the platform's directory")));
        };
        if relative.as_os_str().is_empty() {
            continue;
        }
        if kind == EntryType::Symlink {
            let target = entry
                .link_name()
                .map_err(|e| failed(format!("the link `{shown}` has an unreadable target"), e))?
                .unwrap_or_default()
                .into_owned();
            if !link_stays_inside(&relative, &target) {
                return Err(refuse(format!(
                    "its symlink `{shown}` points to `{}`, outside the platform's directory",
                    target.display()
                )));
            }
        }
        let unpacked = entry.unpack_in(dest).map_err(|e| failed(format!("cannot write `{shown}`"), e))?;
        if !unpacked {
            return Err(refuse(format!("it holds `{shown}`, a path that could escape the platform's directory")));
        }
        if kind != EntryType::Directory {
            files += 1;
            files_bytes += entry.header().size().unwrap_or(0);
        }
    }
    // Whatever follows the tar stream's end is read too, so a truncated or damaged gzip
    // stream is noticed.
    let mut gzip = archive.into_inner();
    io::copy(&mut gzip, &mut io::sink()).map_err(|e| failed("its gzip stream is damaged".into(), e))?;
    let archive_bytes = gzip.into_inner().into_inner().read;

    Ok(Unpacked {
        code_dir: single_top_dir(dest).unwrap_or_else(|| dest.to_path_buf()),
        archive_bytes,
        files,
        files_bytes,
    })
}

/// The entry's path with plain components only (a leading `./` dropped); `None` when it
/// is absolute or climbs with `..`.
fn plain_relative(path: &Path) -> Option<PathBuf> {
    let mut plain = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => plain.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(plain)
}

/// True when the symlink at `link` (relative to the platform's directory) to `target`
/// resolves inside that directory, judged by its path alone.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() || target.as_os_str().is_empty() {
        return false;
    }
    let mut depth: usize = link.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The one directory `dir` holds when it holds nothing else.
fn single_top_dir(dir: &Path) -> Option<PathBuf> {
    let mut entries = std::fs::read_dir(dir).ok()?;
    let only = entries.next()?.ok()?;
    if entries.next().is_some() {
        return None;
    }
    only.file_type().ok()?.is_dir().then(|| only.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_by_where_they_lead() {
        assert!(link_stays_inside(Path::new("a/b/link"), Path::new("../c")));
        assert!(link_stays_inside(Path::new("link"), Path::new("wp-content/index.php")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("../etc/passwd")));
        assert!(!link_stays_inside(Path::new("a/link"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("a/link"), Path::new("/etc/passwd")));
    }

    #[test]
    fn only_plain_relative_paths_are_taken() {
        assert_eq!(plain_relative(Path::new("./wp/index.php")), Some(PathBuf::from("wp/index.php")));
        assert_eq!(plain_relative(Path::new("../x")), None);
        assert_eq!(plain_relative(Path::new("/etc/x")), None);
    }

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        build(&mut builder);
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn file(builder: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, path: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(EntryType::Regular);
        builder.append_data(&mut header, path, body).unwrap();
    }

    #[test]
    fn a_release_tarball_unpacks_to_its_top_directory() {
        let bytes = tar_gz(|b| {
            file(b, "app/index.php", b"<?php echo 'hi';");
            file(b, "app/lib/x.php", b"<?php");
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("build");
        let unpacked = unpack_from(&bytes[..], "p.tar.gz", &dest, &Arc::new(Progress::default())).unwrap();
        assert_eq!(unpacked.code_dir, dest.join("app"));
        assert_eq!(unpacked.files, 2);
        assert_eq!(unpacked.archive_bytes, bytes.len() as u64);
        assert_eq!(std::fs::read(dest.join("app/index.php")).unwrap(), b"<?php echo 'hi';");
    }

    #[test]
    fn an_escaping_symlink_or_a_device_is_refused() {
        let link = tar_gz(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "app/evil", "../../etc").unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let e = unpack_from(&link[..], "p.tar.gz", &dir.path().join("a"), &Arc::new(Progress::default()));
        assert!(e.unwrap_err().to_string().contains("outside the platform"));

        let fifo = tar_gz(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(EntryType::Fifo);
            header.set_size(0);
            b.append_data(&mut header, "app/pipe", &[][..]).unwrap();
        });
        let e = unpack_from(&fifo[..], "p.tar.gz", &dir.path().join("b"), &Arc::new(Progress::default()));
        assert!(e.unwrap_err().to_string().contains("only directories, files and symlinks"));
    }

    #[test]
    fn something_that_is_not_a_tar_gz_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = unpack_from(&b"not gzip at all"[..], "p.tar.gz", &dir.path().join("a"), &Arc::new(Progress::default()));
        assert!(e.unwrap_err().to_string().contains("platform archive p.tar.gz"));
    }
}
