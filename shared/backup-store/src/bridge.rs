//! The seams between the asynchronous store and the synchronous tar and compression
//! code: bounded channels of large chunks, and hashing wrappers.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::Progress;

/// Read and write buffers: large enough that per-call costs vanish.
pub(crate) const BUFFER: usize = 256 * 1024;

/// Chunks handed from a blocking writer to the upload.
const CHUNK: usize = 1024 * 1024;

/// Counts and hashes (SHA-256) what passes through.
pub(crate) struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The inner value, the byte count and the lower-case hex SHA-256.
    pub fn into_parts(self) -> (T, u64, String) {
        (self.inner, self.bytes, hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Marks an error of the object being read (the store, the network), so a reader can
/// tell it from damage in the data itself.
#[derive(Debug)]
pub(crate) struct SourceError(pub String);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

pub(crate) fn source_error(e: &io::Error) -> Option<&SourceError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<SourceError>())
}

/// Marks the error a [`ChunkSender`] gives once its upload has stopped: the upload's own
/// error is the one to report.
#[derive(Debug)]
pub(crate) struct UploadStopped;

impl std::fmt::Display for UploadStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upload to the backup store stopped")
    }
}

impl std::error::Error for UploadStopped {}

/// A `Write` for blocking threads that hands 1 MiB chunks to an asynchronous consumer
/// through a bounded channel: the writer waits while the consumer is behind.
pub struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    progress: Option<Arc<Progress>>,
}

impl ChunkSender {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, progress: Option<Arc<Progress>>) -> Self {
        Self { tx, buf: Vec::with_capacity(CHUNK), progress }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let len = chunk.len() as u64;
        self.tx.blocking_send(Bytes::from(chunk)).map_err(|_| io::Error::other(UploadStopped))?;
        if let Some(p) = &self.progress {
            p.add_written(len);
        }
        Ok(())
    }

    /// Sends what is left. Without this the last chunk is lost.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Chunks leave when full or at the end; a flush from a compressor must not send
    /// small ones.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stored object as a blocking `Read`: a local file read directly, or a download whose
/// chunks arrive through a bounded channel.
pub struct ObjectReader {
    source: Source,
    /// The object's size as the store reported it.
    size: u64,
    got: u64,
    what: String,
}

enum Source {
    File(std::fs::File),
    Stream { rx: mpsc::Receiver<io::Result<Bytes>>, chunk: Bytes },
}

impl ObjectReader {
    pub(crate) fn file(file: std::fs::File, size: u64, what: String) -> Self {
        Self { source: Source::File(file), size, got: 0, what }
    }

    pub(crate) fn stream(rx: mpsc::Receiver<io::Result<Bytes>>, size: u64, what: String) -> Self {
        Self { source: Source::Stream { rx, chunk: Bytes::new() }, size, got: 0, what }
    }

    /// The object's size as the store reported it when the read began.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.source {
            Source::File(file) => {
                file.read(buf).map_err(|e| io::Error::other(SourceError(format!("cannot read {}: {e}", self.what))))?
            }
            Source::Stream { rx, chunk } => {
                while chunk.is_empty() {
                    match rx.blocking_recv() {
                        Some(Ok(next)) => *chunk = next,
                        Some(Err(e)) => return Err(e),
                        None if self.got < self.size => {
                            return Err(io::Error::other(SourceError(format!(
                                "the download of {} stopped after {} of {} bytes",
                                self.what, self.got, self.size
                            ))));
                        }
                        None => return Ok(0),
                    }
                }
                let n = buf.len().min(chunk.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                *chunk = chunk.slice(n..);
                n
            }
        };
        self.got += n as u64;
        Ok(n)
    }
}
