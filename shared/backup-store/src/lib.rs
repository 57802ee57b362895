//! The backup store and the site archive format.
//!
//! [`BackupStore`] keeps objects in a local directory (`file:///var/aegir/backups`) or an
//! S3 bucket (`s3://bucket/prefix`). An object is written as a streamed multipart upload
//! that becomes visible only when it is complete, so a crash never leaves half an object
//! under its final key.
//!
//! A site archive ([`archive`]) is a tar stream, compressed with zstd or gzip, holding
//! `database.sql` first, then the site's directory as `site/…`, then `manifest.json`
//! ([`Manifest`]). The same manifest plus the archive's own size and SHA-256 is stored
//! beside it as the sidecar; an archive without one was never finished. Reading checks
//! every entry and the whole archive against the sidecar.
//!
//! Everything streams: the synchronous tar and compression code runs on blocking threads
//! and exchanges bounded chunks with the asynchronous store, so memory stays flat
//! whatever the size of the site.

pub mod archive;
mod bridge;
pub mod dump;
mod error;
pub mod manifest;
pub mod platform;
mod progress;
mod store;

pub use bridge::{ChunkSender, ObjectReader};
pub use error::Error;
pub use manifest::{ArchiveSum, Entry, EntryKind, Manifest};
pub use progress::{Progress, rate, size};
pub use store::{BackupStore, DEFAULT_STORE, ObjectWriter, Produced, StoreArgs};

pub type Result<T, E = Error> = std::result::Result<T, E>;
