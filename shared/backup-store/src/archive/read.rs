//! Reading an archive against its sidecar manifest: every entry's kind, size, mode,
//! checksum and link target, their order, nothing missing and nothing extra, the
//! manifest inside equal to the sidecar, and the whole object's size and checksum.

use std::collections::{HashMap, HashSet};
use std::fs::{File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aegir_contract::BackupRef;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::{Decompressor, check_path};
use crate::bridge::{BUFFER, Hashing, ObjectReader, hex, source_error};
use crate::manifest::{DATABASE_ENTRY, Entry, EntryKind, MANIFEST_ENTRY, Manifest, SITE_ENTRY};
use crate::{BackupStore, Error, Progress, Result};

/// The largest `manifest.json` entry read back.
const MANIFEST_LIMIT: u64 = 256 * 1024 * 1024;

/// What a read found, all of it checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Bytes of the archive object read.
    pub archive_bytes: u64,
    pub database_bytes: u64,
    pub files_bytes: u64,
    /// Entries below `site` read.
    pub site_entries: u64,
}

/// The sidecar manifest of a finished archive. An archive without one was never
/// finished and is refused; one that does not describe this backup is refused too.
pub async fn sidecar(store: &BackupStore, backup: &BackupRef) -> Result<Arc<Manifest>> {
    let key = backup.archive_key();
    let manifest_key = backup.manifest_key();
    let Some(bytes) = store.get_small(&manifest_key).await? else {
        return Err(if store.exists(&key).await? {
            Error::Incomplete { key, manifest_key }
        } else {
            Error::Failed(format!("{backup} is not in the backup store {store} (no {key}); it cannot be restored"))
        });
    };
    let damaged = |reason: String| Error::Damaged { key: key.clone(), reason };
    let manifest = Manifest::parse(&bytes)
        .map_err(|r| damaged(format!("its sidecar manifest {manifest_key} is unreadable: {r}")))?;
    if manifest.backup_id != backup.id || manifest.compression != backup.compression {
        return Err(damaged(format!("its sidecar manifest {manifest_key} describes another archive")));
    }
    if manifest.archive.is_none() {
        return Err(damaged(format!("its sidecar manifest {manifest_key} has no size or checksum of the archive")));
    }
    Ok(Arc::new(manifest))
}

/// Reads the whole archive and checks everything; writes nothing.
pub async fn check(
    store: &BackupStore,
    backup: &BackupRef,
    sidecar: &Arc<Manifest>,
    progress: Arc<Progress>,
) -> Result<ReadSummary> {
    let (key, sidecar) = (backup.archive_key(), Arc::clone(sidecar));
    store.consume(&key.clone(), move |reader| read_archive(reader, &sidecar, &key, Goal::Check, &progress)).await
}

/// Unpacks `site/` into `dest`, a directory that must not exist yet, checking
/// everything as it goes; the database entry is checked, not written. Ownership (when
/// run as root), modes and modification times are those of the archive; directories
/// get theirs last, once everything is checked. On error, `dest` may hold part of the
/// archive: the caller removes it.
pub async fn unpack(
    store: &BackupStore,
    backup: &BackupRef,
    sidecar: &Arc<Manifest>,
    dest: &Path,
    progress: Arc<Progress>,
) -> Result<ReadSummary> {
    let (key, sidecar, dest) = (backup.archive_key(), Arc::clone(sidecar), dest.to_path_buf());
    store
        .consume(&key.clone(), move |reader| {
            let mut unpacker = Unpacker::new(dest);
            let summary = read_archive(reader, &sidecar, &key, Goal::Unpack(&mut unpacker), &progress)?;
            unpacker.finish()?;
            Ok(summary)
        })
        .await
}

/// Reads the stored object through without unpacking it and checks its size and
/// checksum: a quick way to refuse a damaged archive before changing anything.
pub async fn verify_stored(
    store: &BackupStore,
    backup: &BackupRef,
    sidecar: &Arc<Manifest>,
    progress: Arc<Progress>,
) -> Result<()> {
    let key = backup.archive_key();
    let expected = sidecar.archive.clone().expect("a checked sidecar");
    store
        .consume(&key.clone(), move |reader| {
            let mut hashing = Hashing::new(reader);
            let mut buf = vec![0; BUFFER];
            loop {
                let n = hashing.read(&mut buf).map_err(|e| read_error(&key, e, progress.read()))?;
                if n == 0 {
                    break;
                }
                progress.add_read(n as u64);
            }
            let (_, size, sha256) = hashing.into_parts();
            if size != expected.size || sha256 != expected.sha256 {
                return Err(Error::Damaged { key, reason: sum_mismatch(size, &sha256, &expected) });
            }
            Ok(())
        })
        .await
}

/// Streams the `database.sql` entry into `out`, checking it against the manifest, and
/// stops reading there. Returns its size. An error after bytes were written means what
/// was written must not be trusted.
pub async fn load_database<W>(
    store: &BackupStore,
    backup: &BackupRef,
    sidecar: &Arc<Manifest>,
    mut out: W,
    progress: Arc<Progress>,
) -> Result<u64>
where
    W: Write + Send + 'static,
{
    let (key, sidecar) = (backup.archive_key(), Arc::clone(sidecar));
    let summary = store
        .consume(&key.clone(), move |reader| {
            let summary = read_archive(reader, &sidecar, &key, Goal::Database(&mut out), &progress)?;
            out.flush().map_err(|e| Error::Failed(format!("could not pass the database dump on: {e}")))?;
            Ok(summary)
        })
        .await?;
    Ok(summary.database_bytes)
}

enum Goal<'a> {
    Check,
    Unpack(&'a mut Unpacker),
    Database(&'a mut dyn Write),
}

fn sum_mismatch(size: u64, sha256: &str, expected: &crate::ArchiveSum) -> String {
    format!(
        "it is {size} bytes with checksum {sha256}, but its manifest says {} bytes with checksum {}",
        expected.size, expected.sha256
    )
}

/// An I/O error of the archive stream: the store failing (worth a retry), or data that
/// cannot be decompressed or parsed (damage).
fn read_error(key: &str, e: io::Error, at: u64) -> Error {
    match source_error(&e) {
        Some(source) => Error::Transient(format!("reading archive {key} failed: {}", source.0)),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            Error::Damaged { key: key.into(), reason: format!("it ends unexpectedly after about {at} bytes ({e})") }
        }
        None => Error::Damaged { key: key.into(), reason: format!("its data cannot be read at about byte {at} ({e})") },
    }
}

/// Counts what is read from the store into the progress.
struct Counted<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_read(n as u64);
        Ok(n)
    }
}

fn read_archive(
    reader: ObjectReader,
    sidecar: &Arc<Manifest>,
    key: &str,
    mut goal: Goal<'_>,
    progress: &Progress,
) -> Result<ReadSummary> {
    let damaged = |reason: String| Error::Damaged { key: key.into(), reason };
    let broken = |e: io::Error| read_error(key, e, progress.read());
    let expected_sum = sidecar.archive.clone().expect("a checked sidecar");
    let input = BufReader::with_capacity(BUFFER, Hashing::new(Counted { inner: reader, progress }));
    let decoder = Decompressor::new(sidecar.compression, input).map_err(broken)?;
    let mut tar = tar::Archive::new(decoder);
    let index: HashMap<&str, (usize, &Entry)> =
        sidecar.entries.iter().enumerate().map(|(i, e)| (e.path.as_str(), (i, e))).collect();
    let mut seen = vec![false; sidecar.entries.len()];
    let mut summary = ReadSummary::default();
    let mut inner_manifest: Option<()> = None;
    let mut buf = vec![0; BUFFER];
    let mut first = true;

    for entry in tar.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        if inner_manifest.is_some() {
            return Err(damaged(format!("an entry follows its {MANIFEST_ENTRY}")));
        }
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => EntryKind::File,
            EntryType::Directory => EntryKind::Directory,
            EntryType::Symlink => EntryKind::Symlink,
            other => {
                let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(damaged(format!("{path} is a {other:?} entry, which archives never hold")));
            }
        };
        let path_bytes = entry.path_bytes().into_owned();
        let path = std::str::from_utf8(&path_bytes)
            .map_err(|_| damaged(format!("an entry's name is not UTF-8: {}", String::from_utf8_lossy(&path_bytes))))?;
        let path = if kind == EntryKind::Directory { path.strip_suffix('/').unwrap_or(path) } else { path };
        check_path(path).map_err(damaged)?;

        if path == MANIFEST_ENTRY {
            if entry.size() > MANIFEST_LIMIT {
                return Err(damaged(format!("its {MANIFEST_ENTRY} is {} bytes, too large to be one", entry.size())));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(broken)?;
            let inner =
                Manifest::parse(&bytes).map_err(|r| damaged(format!("its {MANIFEST_ENTRY} is unreadable: {r}")))?;
            if !inner.same_content(sidecar) {
                return Err(damaged(format!("its {MANIFEST_ENTRY} differs from its sidecar manifest")));
            }
            inner_manifest = Some(());
            continue;
        }
        let Some(&(position, expected)) = index.get(path) else {
            return Err(damaged(format!("{path} is in the archive but not in its manifest")));
        };
        if seen[position] {
            return Err(damaged(format!("{path} is in the archive twice")));
        }
        if first && path != DATABASE_ENTRY {
            return Err(damaged(format!("its first entry is {path}, not {DATABASE_ENTRY}")));
        }
        first = false;
        if kind != expected.kind {
            return Err(damaged(format!(
                "{path} is a {} but the manifest says it is a {}",
                kind.as_str(),
                expected.kind.as_str()
            )));
        }
        let header = Attributes::of(entry.header()).map_err(broken)?;
        if header.mode != expected.mode {
            return Err(damaged(format!(
                "{path} has mode {:o} but the manifest says {:o}",
                header.mode, expected.mode
            )));
        }

        match kind {
            EntryKind::File => {
                if entry.size() != expected.size {
                    return Err(damaged(format!(
                        "{path} is {} bytes but the manifest says {}",
                        entry.size(),
                        expected.size
                    )));
                }
                let mut file = match &mut goal {
                    Goal::Unpack(unpacker) if path != DATABASE_ENTRY => Some(unpacker.file(path)?),
                    _ => None,
                };
                let mut hasher = Sha256::new();
                loop {
                    let n = entry.read(&mut buf).map_err(broken)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    match (&mut goal, &mut file) {
                        (_, Some((out, target))) => out
                            .write_all(&buf[..n])
                            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", target.display())))?,
                        (Goal::Database(out), None) => out
                            .write_all(&buf[..n])
                            .map_err(|e| Error::Failed(format!("could not pass the database dump on: {e}")))?,
                        _ => {}
                    }
                }
                let sha256 = hex(&hasher.finalize());
                if expected.sha256.as_deref() != Some(sha256.as_str()) {
                    return Err(damaged(format!(
                        "{path} has checksum {sha256} but the manifest says {}",
                        expected.sha256.as_deref().unwrap_or("none")
                    )));
                }
                if let (Goal::Unpack(unpacker), Some((out, target))) = (&mut goal, file) {
                    unpacker.finish_file(out, &target, &header)?;
                }
                if path == DATABASE_ENTRY {
                    summary.database_bytes = expected.size;
                    if matches!(goal, Goal::Database(_)) {
                        // The dump is all a database load needs; the files stay unread.
                        return Ok(summary);
                    }
                } else {
                    summary.files_bytes += expected.size;
                }
            }
            EntryKind::Directory => {
                if let Goal::Unpack(unpacker) = &mut goal {
                    unpacker.directory(path, &header)?;
                }
            }
            EntryKind::Symlink => {
                let target_bytes = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let target = String::from_utf8_lossy(&target_bytes);
                if expected.link.as_deref() != Some(target.as_ref()) {
                    return Err(damaged(format!(
                        "{path} points to `{target}` but the manifest says `{}`",
                        expected.link.as_deref().unwrap_or("")
                    )));
                }
                if let Goal::Unpack(unpacker) = &mut goal {
                    unpacker.symlink(path, &target, &header)?;
                }
            }
        }
        seen[position] = true;
        if path != DATABASE_ENTRY && path != SITE_ENTRY {
            summary.site_entries += 1;
        }
    }

    if matches!(goal, Goal::Database(_)) {
        return Err(damaged(format!("it holds no {DATABASE_ENTRY}")));
    }
    if inner_manifest.is_none() {
        return Err(damaged(format!("it ends before its {MANIFEST_ENTRY}: it was cut short")));
    }
    let missing: Vec<&str> =
        sidecar.entries.iter().zip(&seen).filter(|(_, seen)| !**seen).map(|(e, _)| e.path.as_str()).collect();
    if let Some(first) = missing.first() {
        let more = if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() };
        return Err(damaged(format!("{first}{more} is in the manifest but not in the archive")));
    }

    // The rest of the stream (the tar trailer, the compressed end) counts towards the
    // archive's checksum too.
    let mut decoder = tar.into_inner();
    io::copy(&mut decoder, &mut io::sink()).map_err(broken)?;
    let mut input = decoder.into_inner();
    io::copy(&mut input, &mut io::sink()).map_err(broken)?;
    let (_, size, sha256) = input.into_inner().into_parts();
    if size != expected_sum.size || sha256 != expected_sum.sha256 {
        return Err(damaged(sum_mismatch(size, &sha256, &expected_sum)));
    }
    summary.archive_bytes = size;
    Ok(summary)
}

/// What a tar header says about an entry's owner, mode and time.
#[derive(Clone, Copy)]
struct Attributes {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Attributes {
    fn of(header: &tar::Header) -> io::Result<Self> {
        let id =
            |v: u64| u32::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "owner out of range"));
        Ok(Self {
            mode: header.mode()? & 0o7777,
            uid: id(header.uid()?)?,
            gid: id(header.gid()?)?,
            mtime: header.mtime()?,
        })
    }

    fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.mtime)
    }
}

/// Writes `site/` entries below a new directory. Every entry's parent must be a
/// directory unpacked before it, so nothing is ever written through a symlink.
struct Unpacker {
    root: PathBuf,
    dirs: HashSet<String>,
    /// Directories get their mode, owner and time at the end: writing into them changes
    /// their time, and a read-only mode would stop the writing.
    pending: Vec<(PathBuf, Attributes)>,
    chown: bool,
}

impl Unpacker {
    fn new(root: PathBuf) -> Self {
        Self { root, dirs: HashSet::new(), pending: Vec::new(), chown: nix::unistd::geteuid().is_root() }
    }

    /// The entry's place below the root, once its parent is known to be unpacked.
    fn place(&self, path: &str) -> Result<(String, PathBuf)> {
        let rel = path.strip_prefix("site/").unwrap_or("");
        let parent = rel.rsplit_once('/').map_or("", |(parent, _)| parent);
        if !self.dirs.contains(parent) {
            return Err(Error::Failed(format!(
                "{path} comes before its directory in the archive; it cannot be unpacked"
            )));
        }
        Ok((rel.to_owned(), self.root.join(rel)))
    }

    fn directory(&mut self, path: &str, attributes: &Attributes) -> Result<()> {
        let (rel, target) = if path == SITE_ENTRY { (String::new(), self.root.clone()) } else { self.place(path)? };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", target.display())))?;
        self.dirs.insert(rel);
        self.pending.push((target, *attributes));
        Ok(())
    }

    fn file(&mut self, path: &str) -> Result<(File, PathBuf)> {
        let (_, target) = self.place(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", target.display())))?;
        Ok((file, target))
    }

    fn finish_file(&self, file: File, target: &Path, attributes: &Attributes) -> Result<()> {
        let failed =
            |e: io::Error| Error::Failed(format!("cannot set the owner, mode or time of {}: {e}", target.display()));
        if self.chown {
            std::os::unix::fs::fchown(&file, Some(attributes.uid), Some(attributes.gid)).map_err(failed)?;
        }
        file.set_permissions(Permissions::from_mode(attributes.mode)).map_err(failed)?;
        file.set_times(FileTimes::new().set_modified(attributes.time())).map_err(failed)
    }

    fn symlink(&mut self, path: &str, link: &str, attributes: &Attributes) -> Result<()> {
        let (_, target) = self.place(path)?;
        std::os::unix::fs::symlink(link, &target)
            .map_err(|e| Error::Failed(format!("cannot create the symlink {}: {e}", target.display())))?;
        if self.chown {
            std::os::unix::fs::lchown(&target, Some(attributes.uid), Some(attributes.gid))
                .map_err(|e| Error::Failed(format!("cannot set the owner of {}: {e}", target.display())))?;
        }
        Ok(())
    }

    /// Gives directories their owner, mode and time, deepest first.
    fn finish(self) -> Result<()> {
        for (dir, attributes) in self.pending.iter().rev() {
            let failed =
                |e: io::Error| Error::Failed(format!("cannot set the owner, mode or time of {}: {e}", dir.display()));
            let handle = File::open(dir).map_err(failed)?;
            if self.chown {
                std::os::unix::fs::fchown(&handle, Some(attributes.uid), Some(attributes.gid)).map_err(failed)?;
            }
            handle.set_permissions(Permissions::from_mode(attributes.mode)).map_err(failed)?;
            handle.set_times(FileTimes::new().set_modified(attributes.time())).map_err(failed)?;
        }
        Ok(())
    }
}
