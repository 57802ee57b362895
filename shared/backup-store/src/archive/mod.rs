//! Site archives: writing one from a staged dump and a site's directory, and reading one
//! back — to check it, to unpack its files, or to load its database — always against
//! its sidecar manifest.

mod create;
mod read;

use std::io::{self, BufRead, Read, Write};

use aegir_contract::Compression;

pub use create::{Created, create};
pub use read::{ReadSummary, check, load_database, sidecar, unpack, verify_stored};

/// Bytes zstd's worker thread compresses at a time.
const ZSTD_JOB: u32 = 2 * 1024 * 1024;

/// The compressed side of an archive being written.
pub(crate) enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(compression: Compression, out: W) -> io::Result<Self> {
        match compression {
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, crate::dump::ZSTD_LEVEL)?;
                encoder.include_checksum(true)?;
                // One worker thread: compression runs beside the reading and hashing of
                // files instead of after it. Small jobs keep its buffers to a few MiB
                // (the default job of 8 MiB and more doubles the worker's memory).
                encoder.multithread(1)?;
                encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))?;
                Ok(Compressor::Zstd(encoder))
            }
            Compression::Gzip => {
                Ok(Compressor::Gzip(flate2::write::GzEncoder::new(out, flate2::Compression::default())))
            }
        }
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Zstd(encoder) => encoder.finish(),
            Compressor::Gzip(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(encoder) => encoder.write(buf),
            Compressor::Gzip(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(encoder) => encoder.flush(),
            Compressor::Gzip(encoder) => encoder.flush(),
        }
    }
}

/// The decompressing side of an archive being read.
pub(crate) enum Decompressor<R: BufRead> {
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
}

impl<R: BufRead> Decompressor<R> {
    pub fn new(compression: Compression, input: R) -> io::Result<Self> {
        match compression {
            Compression::Zstd => Ok(Decompressor::Zstd(zstd::stream::read::Decoder::with_buffer(input)?)),
            Compression::Gzip => Ok(Decompressor::Gzip(flate2::bufread::MultiGzDecoder::new(input))),
        }
    }

    pub fn into_inner(self) -> R {
        match self {
            Decompressor::Zstd(decoder) => decoder.finish(),
            Decompressor::Gzip(decoder) => decoder.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::Zstd(decoder) => decoder.read(buf),
            Decompressor::Gzip(decoder) => decoder.read(buf),
        }
    }
}

/// Checks an entry's path: `database.sql`, `manifest.json`, `site`, or `site/…` with
/// plain components only — nothing absolute, no `.` or `..`, nothing that could land
/// outside the directory it is unpacked into.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    use crate::manifest::{DATABASE_ENTRY, MANIFEST_ENTRY, SITE_ENTRY};
    if path == DATABASE_ENTRY || path == MANIFEST_ENTRY || path == SITE_ENTRY {
        return Ok(());
    }
    let Some(below) = path.strip_prefix("site/") else {
        return Err(format!("it holds `{path}`, which is not a path an archive may hold"));
    };
    for component in below.split('/') {
        if component.is_empty() || component == "." || component == ".." || component.contains('\0') {
            return Err(format!("it holds `{path}`, a path that could escape the site's directory"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn only_plain_paths_below_site_are_accepted() {
        for ok in ["database.sql", "manifest.json", "site", "site/files/a.png", "site/.htaccess", "site/a..b"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/etc/passwd", "site/../x", "site/./x", "site//x", "site/", "../site/x", "files/a", "site/a/.."] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
