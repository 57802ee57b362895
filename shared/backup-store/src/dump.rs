//! The staged database dump: what the db-worker writes for the backup-worker to put into
//! the archive. `backup.dump_key()` holds the SQL compressed with zstd; beside it a small
//! record of its plain size and checksum, which the archive's tar header needs before
//! the dump is read and which the backup-worker checks the dump against.

use std::io::{Read, Write};
use std::sync::Arc;

use aegir_contract::BackupRef;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bridge::{BUFFER, Hashing, UploadStopped, source_error};
use crate::{BackupStore, Error, Produced, Progress, Result};

/// zstd level for dumps and archives: fast, and a good ratio for SQL.
pub(crate) const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpInfo {
    /// Bytes of SQL, before compression.
    pub size: u64,
    /// SHA-256 of the SQL, lower-case hex.
    pub sha256: String,
    /// Bytes of the stored, compressed object.
    pub stored_size: u64,
    pub created_at: DateTime<Utc>,
}

/// `staging/<id>/database.sql.json`, beside the dump.
pub fn info_key(backup: &BackupRef) -> String {
    format!("staging/{}/database.sql.json", backup.id)
}

/// Compresses what `source` yields (a blocking reader such as a dump program's output
/// pipe) into the staged dump object. The object is not visible until
/// [`commit`] — call it only once the program that wrote `source` exited cleanly.
pub async fn stage<R>(
    store: &BackupStore,
    backup: &BackupRef,
    source: R,
    progress: Arc<Progress>,
) -> Result<Produced<DumpInfo>>
where
    R: Read + Send + 'static,
{
    store
        .produce(&backup.dump_key(), None, move |sink| {
            let fail = |e: std::io::Error| {
                if e.get_ref().is_some_and(|i| i.is::<UploadStopped>()) {
                    Error::Failed(e.to_string())
                } else if let Some(source) = source_error(&e) {
                    Error::Failed(source.0.clone())
                } else {
                    Error::Failed(format!("could not compress the dump: {e}"))
                }
            };
            let mut encoder = zstd::stream::write::Encoder::new(Hashing::new(sink), ZSTD_LEVEL).map_err(fail)?;
            encoder.include_checksum(true).map_err(fail)?;
            let mut input = Hashing::new(source);
            let mut buf = vec![0; BUFFER];
            loop {
                let n = input
                    .read(&mut buf)
                    .map_err(|e| Error::Failed(format!("could not read the database dump: {e}")))?;
                if n == 0 {
                    break;
                }
                progress.add_read(n as u64);
                encoder.write_all(&buf[..n]).map_err(fail)?;
            }
            let stored = encoder.finish().map_err(fail)?;
            let (_, stored_size, _) = stored.into_parts();
            let (_, size, sha256) = input.into_parts();
            progress.add_written(stored_size);
            Ok(DumpInfo { size, sha256, stored_size, created_at: Utc::now() })
        })
        .await
}

/// Makes a staged dump visible, then records its size and checksum beside it.
pub async fn commit(store: &BackupStore, backup: &BackupRef, staged: Produced<DumpInfo>) -> Result<DumpInfo> {
    let info = staged.commit().await?;
    let json = serde_json::to_vec(&info).expect("dump info serializes");
    store.put_small(&info_key(backup), json).await?;
    Ok(info)
}

/// The record of a finished staged dump, or `None` when there is none.
pub async fn read_info(store: &BackupStore, backup: &BackupRef) -> Result<Option<DumpInfo>> {
    let key = info_key(backup);
    let Some(bytes) = store.get_small(&key).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Failed(format!("the record of the database dump ({key}) is unreadable: {e}")))
}

/// Removes the staged dump and its record. True when there was a dump.
pub async fn delete(store: &BackupStore, backup: &BackupRef) -> Result<bool> {
    let existed = store.delete(&backup.dump_key()).await?;
    store.delete(&info_key(backup)).await?;
    Ok(existed)
}
