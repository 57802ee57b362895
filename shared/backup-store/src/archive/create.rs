//! Writing an archive: the staged dump, the site's directory, the manifest; then the
//! sidecar; then the staged dump goes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use aegir_contract::BackupRef;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::Compressor;
use crate::bridge::{BUFFER, ChunkSender, Hashing, ObjectReader, UploadStopped, hex, source_error};
use crate::dump::{self, DumpInfo};
use crate::manifest::{ArchiveSum, DATABASE_ENTRY, Entry, EntryKind, MANIFEST_ENTRY, Manifest, SITE_ENTRY, Totals};
use crate::{BackupStore, Error, Progress, Result};

/// A finished archive.
#[derive(Debug)]
pub struct Created {
    /// The sidecar manifest as stored.
    pub manifest: Manifest,
    /// Things the user should know: files skipped or changed while they were archived.
    pub warnings: Vec<String>,
}

/// Writes the archive of `backup` from its staged dump and `site_dir`, then its sidecar,
/// then removes the staged dump. `manifest` describes the site (see
/// [`Manifest::for_site`]); its entries are filled in here.
pub async fn create(
    store: &BackupStore,
    backup: &BackupRef,
    manifest: Manifest,
    site_dir: &Path,
    progress: Arc<Progress>,
) -> Result<Created> {
    let dump_key = backup.dump_key();
    let info = dump::read_info(store, backup).await?.ok_or_else(|| Error::DumpMissing { key: dump_key.clone() })?;
    match tokio::fs::metadata(site_dir).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::Failed(format!("{} is not a directory; it cannot be archived", site_dir.display())));
        }
        Err(e) => {
            return Err(Error::Failed(format!(
                "the site directory {} cannot be read ({e}); check the site's platform root",
                site_dir.display()
            )));
        }
    }
    let dump = store.reader(&dump_key).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::DumpMissing { key: dump_key.clone() },
        other => other,
    })?;
    let site_dir = site_dir.to_path_buf();
    let reading = progress.clone();
    let produced = store
        .produce(&backup.archive_key(), Some(progress), move |sink| {
            write_archive(sink, dump, &info, &site_dir, manifest, &reading)
        })
        .await?;
    let (manifest, warnings) = produced.commit().await?;
    store.put_small(&backup.manifest_key(), manifest.to_json()).await?;
    dump::delete(store, backup).await?;
    Ok(Created { manifest, warnings })
}

/// The error to report for an I/O error while writing `what` into the archive.
fn write_error(what: &str, e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<UploadStopped>()) {
        Error::Failed(e.to_string())
    } else if let Some(source) = source_error(&e) {
        Error::Transient(source.0.clone())
    } else {
        Error::Failed(format!("could not archive {what}: {e}"))
    }
}

fn write_archive(
    sink: &mut ChunkSender,
    dump: ObjectReader,
    info: &DumpInfo,
    site_dir: &Path,
    mut manifest: Manifest,
    progress: &Progress,
) -> Result<(Manifest, Vec<String>)> {
    let out = Compressor::new(manifest.compression, Hashing::new(sink)).map_err(|e| write_error("the archive", e))?;
    let mut writer = Writer {
        tar: tar::Builder::new(BufWriter::with_capacity(BUFFER, out)),
        buf: vec![0; BUFFER],
        progress,
        entries: Vec::new(),
        totals: Totals::default(),
        warnings: Vec::new(),
        mtime: manifest.created_at.timestamp(),
    };
    writer.database(dump, info)?;
    writer.site(site_dir)?;
    let Writer { tar, entries, totals, warnings, mtime, .. } = writer;
    manifest.entries = entries;
    manifest.totals = totals;
    let json = manifest.to_json();
    let mut tar = tar;
    let mut header = header(EntryType::Regular, 0o600, 0, 0, mtime, json.len() as u64);
    tar.append_data(&mut header, MANIFEST_ENTRY, &json[..]).map_err(|e| write_error(MANIFEST_ENTRY, e))?;
    let finish = |e: io::Error| write_error("the end of the archive", e);
    let buffered = tar.into_inner().map_err(finish)?;
    let compressor = buffered.into_inner().map_err(|e| finish(e.into_error()))?;
    let (_, size, sha256) = compressor.finish().map_err(finish)?.into_parts();
    manifest.archive = Some(ArchiveSum { size, sha256 });
    Ok((manifest, warnings))
}

fn header(kind: EntryType, mode: u32, uid: u32, gid: u32, mtime: i64, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_uid(uid.into());
    header.set_gid(gid.into());
    header.set_mtime(mtime.max(0) as u64);
    header.set_size(size);
    header
}

/// A directory whose entries are still to be archived, and where they go in the archive.
struct Pending {
    parent: Rc<Dir>,
    name: OsString,
    path: String,
}

struct Writer<'a, W: Write> {
    tar: tar::Builder<W>,
    /// One read buffer for every file.
    buf: Vec<u8>,
    progress: &'a Progress,
    entries: Vec<Entry>,
    totals: Totals,
    warnings: Vec<String>,
    mtime: i64,
}

impl<W: Write> Writer<'_, W> {
    fn database(&mut self, dump: ObjectReader, info: &DumpInfo) -> Result<()> {
        let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUFFER, dump))
            .map_err(|e| write_error("the database dump", e))?;
        let mut content = Exact { inner: Hashing::new(decoder), remaining: info.size, progress: self.progress };
        let mut header = header(EntryType::Regular, 0o600, 0, 0, self.mtime, info.size);
        let appended = self.tar.append_data(&mut header, DATABASE_ENTRY, &mut content);
        let stale = || {
            Error::Failed(format!(
                "the staged database dump does not match its record ({} bytes, checksum {}): it is damaged; run the backup again",
                info.size, info.sha256
            ))
        };
        match appended {
            Ok(()) => {}
            Err(e) if e.get_ref().is_some_and(|i| i.is::<ShortDump>()) => return Err(stale()),
            Err(e) if source_error(&e).is_some() || e.get_ref().is_some_and(|i| i.is::<UploadStopped>()) => {
                return Err(write_error("the database dump", e));
            }
            Err(e) => {
                return Err(Error::Failed(format!(
                    "the staged database dump cannot be read ({e}): it is damaged; run the backup again"
                )));
            }
        }
        // Nothing may follow the announced size, and what came must be what was dumped.
        let mut rest = [0u8; 1];
        let extra = content.inner.get_mut().read(&mut rest).map_err(|e| write_error("the database dump", e))?;
        let (_, _, sha256) = content.inner.into_parts();
        if extra != 0 || sha256 != info.sha256 {
            return Err(stale());
        }
        self.entries.push(Entry {
            path: DATABASE_ENTRY.into(),
            kind: EntryKind::File,
            size: info.size,
            sha256: Some(sha256),
            mode: 0o600,
            link: None,
        });
        self.totals.database_bytes = info.size;
        Ok(())
    }

    /// The site's directory, depth first, each directory's entries by name. Everything
    /// below the site's directory is opened relative to its parent without following
    /// symlinks, so a link swapped in while the backup runs cannot pull in files from
    /// elsewhere on the machine.
    fn site(&mut self, site_dir: &Path) -> Result<()> {
        let open_failed =
            |e: Errno| Error::Failed(format!("cannot open the site directory {}: {e}", site_dir.display()));
        let mut root = Dir::open(site_dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(open_failed)?;
        let stat = fstat(&root).map_err(open_failed)?;
        self.directory(SITE_ENTRY, &stat)?;
        let mut stack = Vec::new();
        let names = self.names(&mut root, SITE_ENTRY)?;
        push_children(&mut stack, Rc::new(root), SITE_ENTRY, names);
        while let Some(pending) = stack.pop() {
            let name = pending.name.as_os_str();
            let stat = match fstatat(&*pending.parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => {
                    self.warnings
                        .push(format!("{} was removed while the backup ran; it is not archived", pending.path));
                    continue;
                }
                Err(e) => return Err(Error::Failed(format!("cannot read {}: {e}", pending.path))),
            };
            let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let mut dir = match Dir::openat(&*pending.parent, name, flags, Mode::empty()) {
                    Ok(dir) => dir,
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {
                        self.warnings
                            .push(format!("{} changed while the backup ran; it is not archived", pending.path));
                        continue;
                    }
                    Err(e) => return Err(Error::Failed(format!("cannot open {}: {e}", pending.path))),
                };
                let stat = fstat(&dir).map_err(|e| Error::Failed(format!("cannot read {}: {e}", pending.path)))?;
                self.directory(&pending.path, &stat)?;
                let names = self.names(&mut dir, &pending.path)?;
                push_children(&mut stack, Rc::new(dir), &pending.path, names);
            } else if kind == SFlag::S_IFREG {
                let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
                let file = match openat(&*pending.parent, name, flags, Mode::empty()) {
                    Ok(fd) => File::from(fd),
                    Err(Errno::ENOENT | Errno::ELOOP) => {
                        self.warnings
                            .push(format!("{} changed while the backup ran; it is not archived", pending.path));
                        continue;
                    }
                    Err(e) => return Err(Error::Failed(format!("cannot open {}: {e}", pending.path))),
                };
                self.file(&pending.path, file)?;
            } else if kind == SFlag::S_IFLNK {
                let target = readlinkat(&*pending.parent, name)
                    .map_err(|e| Error::Failed(format!("cannot read the symlink {}: {e}", pending.path)))?;
                match target.to_str() {
                    Some(target) => self.symlink(&pending.path, target, &stat)?,
                    None => self.warnings.push(format!(
                        "the symlink {} points to a name that is not UTF-8; it is not archived",
                        pending.path
                    )),
                }
            } else {
                self.warnings.push(format!(
                    "{} is not a file, directory or symlink (a socket, pipe or device); it is not archived",
                    pending.path
                ));
            }
        }
        Ok(())
    }

    /// The names in a directory, sorted; names that are not UTF-8 are reported and left out.
    fn names(&mut self, dir: &mut Dir, path: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| Error::Failed(format!("cannot list {path}: {e}")))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            match name.to_str() {
                Some(name) => names.push(name.to_owned()),
                None => self.warnings.push(format!(
                    "{path}/{} has a name that is not UTF-8; it is not archived",
                    name.to_string_lossy()
                )),
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    fn directory(&mut self, path: &str, stat: &FileStat) -> Result<()> {
        let mut header = header(EntryType::Directory, stat.st_mode, stat.st_uid, stat.st_gid, stat.st_mtime, 0);
        self.tar.append_data(&mut header, format!("{path}/"), io::empty()).map_err(|e| write_error(path, e))?;
        if path != SITE_ENTRY {
            self.totals.directories += 1;
        }
        self.entries.push(Entry {
            path: path.into(),
            kind: EntryKind::Directory,
            size: 0,
            sha256: None,
            mode: stat.st_mode & 0o7777,
            link: None,
        });
        Ok(())
    }

    fn file(&mut self, path: &str, file: File) -> Result<()> {
        let stat = fstat(&file).map_err(|e| Error::Failed(format!("cannot read {path}: {e}")))?;
        let size = stat.st_size.max(0) as u64;
        let mut header = header(EntryType::Regular, stat.st_mode, stat.st_uid, stat.st_gid, stat.st_mtime, size);
        let mut content = FileContent {
            file,
            buf: &mut self.buf,
            pos: 0,
            filled: 0,
            remaining: size,
            hasher: Sha256::new(),
            shrank: false,
            progress: self.progress,
        };
        self.tar.append_data(&mut header, path, &mut content).map_err(|e| write_error(path, e))?;
        let FileContent { file, hasher, shrank, .. } = content;
        let grew = file.metadata().is_ok_and(|m| m.len() > size);
        if shrank || grew {
            self.warnings.push(format!(
                "{path} changed while the backup ran; the archive holds {size} bytes of it, which may not be consistent"
            ));
        }
        self.totals.files += 1;
        self.totals.files_bytes += size;
        self.entries.push(Entry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            sha256: Some(hex(&hasher.finalize())),
            mode: stat.st_mode & 0o7777,
            link: None,
        });
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str, stat: &FileStat) -> Result<()> {
        let mut header = header(EntryType::Symlink, stat.st_mode, stat.st_uid, stat.st_gid, stat.st_mtime, 0);
        self.tar.append_link(&mut header, path, target).map_err(|e| write_error(path, e))?;
        self.totals.symlinks += 1;
        self.entries.push(Entry {
            path: path.into(),
            kind: EntryKind::Symlink,
            size: 0,
            sha256: None,
            mode: stat.st_mode & 0o7777,
            link: Some(target.into()),
        });
        Ok(())
    }
}

fn push_children(stack: &mut Vec<Pending>, dir: Rc<Dir>, path: &str, names: Vec<String>) {
    // Reversed, so they come off the stack in name order.
    for name in names.into_iter().rev() {
        let child = format!("{path}/{name}");
        stack.push(Pending { parent: dir.clone(), name: OsString::from(name), path: child });
    }
}

/// A dump that ended before the size its record announced.
#[derive(Debug)]
struct ShortDump;

impl std::fmt::Display for ShortDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the staged database dump is shorter than its record says")
    }
}

impl std::error::Error for ShortDump {}

/// Exactly `remaining` bytes of `inner`: a tar entry must be as long as its header says.
struct Exact<'a, R> {
    inner: R,
    remaining: u64,
    progress: &'a Progress,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(ShortDump));
        }
        self.remaining -= n as u64;
        self.progress.add_read(n as u64);
        Ok(n)
    }
}

/// A site file's content as its tar entry: exactly the size it had when it was looked
/// at, padded with zeros if it shrank meanwhile (then reported), hashed as it goes.
struct FileContent<'a> {
    file: File,
    buf: &'a mut [u8],
    pos: usize,
    filled: usize,
    remaining: u64,
    hasher: Sha256,
    shrank: bool,
    progress: &'a Progress,
}

impl Read for FileContent<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.pos == self.filled {
            let want = self.buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            let mut n = loop {
                match self.file.read(&mut self.buf[..want]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                self.shrank = true;
                self.buf[..want].fill(0);
                n = want;
            }
            self.pos = 0;
            self.filled = n;
            self.progress.add_read(n as u64);
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.hasher.update(&out[..n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}
