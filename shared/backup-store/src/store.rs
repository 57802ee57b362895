//! Where archives are kept: a local directory or an S3 bucket, behind one interface.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegir_contract::Secret;
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use crate::bridge::{ChunkSender, ObjectReader, SourceError};
use crate::{Error, Progress, Result};

pub const DEFAULT_STORE: &str = "file:///var/aegir/backups";

/// S3 parts: the smallest size S3 accepts for all parts but the last.
const PART: usize = 5 * 1024 * 1024;

/// Parts uploaded at once; with [`PART`] this bounds an upload's memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Objects read whole into memory (manifests) may not be larger than this.
const SMALL_OBJECT_LIMIT: u64 = 256 * 1024 * 1024;

/// Where the backup store is and how to reach it. Workers flatten this into their
/// command line; each option can also come from its environment variable.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where archives are kept: `file:///var/aegir/backups` (a local directory, shared by
    /// the workers of one machine) or `s3://bucket/prefix` (shared by all servers).
    #[arg(long = "backup-store", env = "AEGIR_BACKUP_STORE", default_value = DEFAULT_STORE)]
    pub backup_store: String,

    /// S3 endpoint of an S3-compatible service (MinIO, Ceph, …), e.g.
    /// `https://s3.example.com`; Amazon S3 when unset.
    #[arg(long = "s3-endpoint", env = "AEGIR_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long = "s3-region", env = "AEGIR_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id; with none, credentials come from the machine (instance role).
    #[arg(long = "s3-access-key-id", env = "AEGIR_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key. Give it in the environment: arguments are visible to every
    /// user of the machine.
    #[arg(
        long = "s3-secret-access-key",
        env = "AEGIR_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub s3_secret_access_key: Option<Secret>,

    /// Talk plain HTTP to the S3 endpoint (a test server on this machine).
    #[arg(long = "s3-allow-http", env = "AEGIR_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
}

fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

impl Default for StoreArgs {
    fn default() -> Self {
        Self {
            backup_store: DEFAULT_STORE.into(),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
        }
    }
}

/// The store archives are written to and read from.
#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a `file://` store: its objects are read as plain files and the
    /// leftovers of interrupted uploads are removed from it.
    local_root: Option<PathBuf>,
    description: String,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::fmt::Display for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl BackupStore {
    pub fn from_args(args: &StoreArgs) -> Result<Self> {
        let location = args.backup_store.trim();
        if location.starts_with('/') {
            return Self::local(location);
        }
        let url = url::Url::parse(location).map_err(|e| {
            Error::Config(format!(
                "`{location}` is not a store address ({e}); use file:///var/aegir/backups or s3://bucket/prefix"
            ))
        })?;
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    Error::Config(format!("`{location}` is not a local directory; use file:///absolute/path"))
                })?;
                Self::local(path)
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| Error::Config(format!("`{location}` names no bucket; use s3://bucket/prefix")))?;
                Self::s3(bucket, url.path().trim_matches('/'), args)
            }
            other => Err(Error::Config(format!(
                "`{other}://` stores are not supported; use file:///var/aegir/backups or s3://bucket/prefix"
            ))),
        }
    }

    /// A store in a local directory, created (readable by its owner only) if missing.
    pub fn local(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_absolute() {
            return Err(Error::Config(format!("{} is not an absolute path", root.display())));
        }
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&root)
            .map_err(|e| {
                Error::Config(format!(
                    "cannot create the backup directory {}: {e}; create it or set AEGIR_BACKUP_STORE",
                    root.display()
                ))
            })?;
        // Archives hold the sites' databases: nobody but the workers' user may reach them,
        // also when the directory was made beforehand by someone else's umask.
        let mode = std::fs::metadata(&root).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
        if mode.is_ok_and(|m| m & 0o077 != 0) {
            std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(|e| {
                Error::Config(format!(
                    "the backup directory {} is open to other users and cannot be made private ({e}); \
                     chmod 700 it",
                    root.display()
                ))
            })?;
        }
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| Error::Config(format!("cannot use {} as the backup store: {e}", root.display())))?
            .with_automatic_cleanup(true);
        let description = format!("file://{}", root.display());
        Ok(Self { store: Arc::new(fs), local_root: Some(root), description })
    }

    fn s3(bucket: &str, prefix: &str, args: &StoreArgs) -> Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&args.s3_region)
            .with_allow_http(args.s3_allow_http);
        if let Some(endpoint) = &args.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        match (&args.s3_access_key_id, &args.s3_secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder.with_access_key_id(id).with_secret_access_key(secret.expose());
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "give both AEGIR_S3_ACCESS_KEY_ID and AEGIR_S3_SECRET_ACCESS_KEY, or neither".into(),
                ));
            }
        }
        let s3 = builder.build().map_err(|e| Error::Config(format!("cannot use s3://{bucket}: {e}")))?;
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
        let mut description = format!("s3://{bucket}/{prefix}");
        if let Some(endpoint) = &args.s3_endpoint {
            description.push_str(&format!(" at {endpoint}"));
        }
        Ok(Self { store, local_root: None, description })
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        ObjectPath::parse(key).map_err(|e| Error::Failed(format!("`{key}` is not a valid key in the store: {e}")))
    }

    fn store_error(&self, action: String, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { path, .. } => {
                Error::NotFound { store: self.description.clone(), key: path }
            }
            source => Error::Store { store: self.description.clone(), action, source },
        }
    }

    /// The size of the object, or `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error(format!("look up {key}"), e)),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// Removes an object; one that is not there is fine. True when it was there.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let existed = self.exists(key).await?;
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(e) => Err(self.store_error(format!("delete {key}"), e)),
        }
    }

    /// A small object (a manifest) read whole, or `None` when there is none.
    pub async fn get_small(&self, key: &str) -> Result<Option<Bytes>> {
        let result = match self.store.get(&self.path(key)?).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(format!("read {key}"), e)),
        };
        if result.meta.size > SMALL_OBJECT_LIMIT {
            return Err(Error::Failed(format!(
                "{key} is {} bytes, more than a manifest can be; it is not one this system wrote",
                result.meta.size
            )));
        }
        result.bytes().await.map(Some).map_err(|e| self.store_error(format!("read {key}"), e))
    }

    /// A small object written in one request: visible whole or not at all.
    pub async fn put_small(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(key)?, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(format!("write {key}"), e))
    }

    /// Starts a streamed upload to `key`; nothing is visible there until
    /// [`ObjectWriter::finish`].
    pub async fn writer(&self, key: &str) -> Result<ObjectWriter> {
        let path = self.path(key)?;
        if let Some(root) = &self.local_root {
            remove_local_leftovers(&root.join(key)).await;
        }
        let upload =
            self.store.put_multipart(&path).await.map_err(|e| self.store_error(format!("start writing {key}"), e))?;
        Ok(ObjectWriter {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
            key: key.to_owned(),
            store: self.description.clone(),
        })
    }

    /// Opens an object for a blocking reader.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader> {
        let result = self.store.get(&self.path(key)?).await.map_err(|e| self.store_error(format!("read {key}"), e))?;
        let size = result.meta.size;
        let what = format!("{key} in {}", self.description);
        match result.payload {
            GetResultPayload::File(file, _) => Ok(ObjectReader::file(file, size, what)),
            GetResultPayload::Stream(mut stream) => {
                // A few chunks ahead of the reader, no more.
                let (tx, rx) = mpsc::channel(8);
                let source = what.clone();
                tokio::spawn(async move {
                    while let Some(item) = stream.next().await {
                        let failed = item.is_err();
                        let item =
                            item.map_err(|e| io::Error::other(SourceError(format!("reading {source} failed: {e}"))));
                        if tx.send(item).await.is_err() || failed {
                            break;
                        }
                    }
                });
                Ok(ObjectReader::stream(rx, size, what))
            }
        }
    }

    /// Streams what `produce` writes (on a blocking thread) into a new object at `key`.
    /// The object is uploaded but not yet visible: [`Produced::commit`] makes it so,
    /// dropping the [`Produced`] discards it. When `produce` fails nothing is left.
    pub async fn produce<T, F>(&self, key: &str, progress: Option<Arc<Progress>>, produce: F) -> Result<Produced<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut ChunkSender) -> Result<T> + Send + 'static,
    {
        let mut writer = self.writer(key).await?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let producer = tokio::task::spawn_blocking(move || {
            let mut sink = ChunkSender::new(tx, progress);
            let value = produce(&mut sink)?;
            sink.finish().map_err(|e| Error::Failed(format!("could not finish the upload: {e}")))?;
            Ok::<_, Error>(value)
        });
        let mut pumped = Ok(());
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = writer.put(chunk).await {
                pumped = Err(e);
                break;
            }
        }
        // A producer still writing now gets an error instead of waiting forever.
        drop(rx);
        let produced = match producer.await {
            Ok(result) => result,
            Err(e) => Err(Error::Failed(format!("writing {key} stopped unexpectedly: {e}"))),
        };
        match (pumped, produced) {
            (Ok(()), Ok(value)) => Ok(Produced { value, writer }),
            // The upload's own error explains the producer's.
            (Err(e), _) | (Ok(()), Err(e)) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// Runs `consume` on a blocking thread with the object at `key` as a reader.
    pub async fn consume<T, F>(&self, key: &str, consume: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(ObjectReader) -> Result<T> + Send + 'static,
    {
        let reader = self.reader(key).await?;
        tokio::task::spawn_blocking(move || consume(reader))
            .await
            .map_err(|e| Error::Failed(format!("reading the archive stopped unexpectedly: {e}")))?
    }
}

/// Removes what an upload killed half way left in a local store (`<key>#<n>` files).
async fn remove_local_leftovers(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name().and_then(|n| n.to_str())) else { return };
    let prefix = format!("{name}#");
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let leftover =
            file_name.strip_prefix(&prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if leftover {
            tracing::info!(path = %entry.path().display(), "removing the leftover of an interrupted upload");
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// A streamed upload in progress. Dropped unfinished, it is aborted: nothing appears
/// under its key.
pub struct ObjectWriter {
    upload: Option<WriteMultipart>,
    key: String,
    store: String,
}

impl ObjectWriter {
    /// Queues a chunk, waiting while too many parts are on their way.
    pub async fn put(&mut self, chunk: Bytes) -> Result<()> {
        let upload = self.upload.as_mut().expect("an upload in progress");
        upload.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|source| Error::Store {
            store: self.store.clone(),
            action: format!("write {}", self.key),
            source,
        })?;
        upload.put(chunk);
        Ok(())
    }

    /// Uploads what is left and makes the object visible.
    pub async fn finish(mut self) -> Result<()> {
        let upload = self.upload.take().expect("an upload in progress");
        upload.finish().await.map(|_| ()).map_err(|source| Error::Store {
            store: self.store.clone(),
            action: format!("finish writing {}", self.key),
            source,
        })
    }

    /// Discards the upload.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(key = %self.key, error = %e, "could not discard an unfinished upload");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// An object fully uploaded but not yet visible.
pub struct Produced<T> {
    pub value: T,
    writer: ObjectWriter,
}

impl<T> Produced<T> {
    /// Makes the object visible and returns what its producer returned.
    pub async fn commit(self) -> Result<T> {
        self.writer.finish().await?;
        Ok(self.value)
    }

    /// Discards the object.
    pub async fn abort(self) {
        self.writer.abort().await
    }
}
