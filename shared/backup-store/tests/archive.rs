//! Archives end to end through a local store and a real S3-compatible server: what is
//! unpacked is byte for byte and mode for mode what was archived, and damage of any
//! kind is refused with a reason that names it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegir_backup_store::{BackupStore, Error, Manifest, Progress, StoreArgs, archive, dump};
use aegir_contract::*;
use rand::RngCore;

const SQL: &str = "-- a dump\nCREATE TABLE t (id INT);\nINSERT INTO t VALUES (1),(2),(3);\n";

fn site(root: &Path) -> SiteContext {
    let server = ServerContext {
        name: ServerName::parse("server_master").unwrap(),
        remote_host: HostName::parse("localhost").unwrap(),
        http: Some(HttpService { service_type: HttpServiceType::Nginx, port: 80 }),
        db: None,
        dns: None,
    };
    let uri = SiteUri::parse("www.example.com").unwrap();
    SiteContext {
        aliases: vec![],
        redirection: false,
        platform: PlatformContext {
            name: PlatformName::parse("platform_wp").unwrap(),
            root: AbsolutePath::parse(root.to_str().unwrap()).unwrap(),
            web_server: server.clone(),
            source: None,
        },
        platform_type: PlatformType::Wordpress,
        db_server: server,
        database: SiteDatabase {
            name: DbIdent::parse("www_example_com").unwrap(),
            user: DbIdent::parse("www_example_com").unwrap(),
            password: Secret::new("secret-password-123"),
        },
        profile: None,
        language: LanguageCode::parse("en").unwrap(),
        title: SiteTitle::parse("Example").unwrap(),
        admin_email: Email::parse("admin@example.com").unwrap(),
        client: None,
        php_version: None,
        dns_server: None,
        ssl: Default::default(),
        uri,
    }
}

/// A site directory with nested directories, an empty file, symlinks, modes and a 20 MB
/// random file. Returns the directory.
fn make_tree(base: &Path, random_bytes: usize) -> PathBuf {
    let dir = base.join("sites/www.example.com");
    std::fs::create_dir_all(dir.join("files/nested/deeper")).unwrap();
    std::fs::create_dir_all(dir.join("private")).unwrap();
    std::fs::write(dir.join("wp-config.php"), "<?php // settings\n").unwrap();
    std::fs::set_permissions(dir.join("wp-config.php"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::write(dir.join("files/empty.txt"), "").unwrap();
    std::fs::write(dir.join("files/nested/deeper/note.txt"), "deep down\n").unwrap();
    let mut random = vec![0u8; random_bytes];
    rand::rng().fill_bytes(&mut random);
    std::fs::write(dir.join("files/random.bin"), &random).unwrap();
    std::os::unix::fs::symlink("nested/deeper", dir.join("files/shortcut")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("files/outside")).unwrap();
    std::fs::set_permissions(dir.join("private"), PermissionsExt::from_mode(0o750)).unwrap();
    std::fs::set_permissions(dir.join("files/nested"), PermissionsExt::from_mode(0o2775)).unwrap();
    dir
}

/// Everything about a tree a restore must keep: kind, mode, mtime, content or target.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            for child in std::fs::read_dir(&path).unwrap() {
                stack.push(child.unwrap().path());
            }
            format!("dir {:o} mtime {}", meta.mode() & 0o7777, meta.mtime())
        } else {
            let content = std::fs::read(&path).unwrap();
            let digest = content.iter().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
            format!("file {:o} mtime {} {} bytes {digest:x}", meta.mode() & 0o7777, meta.mtime(), content.len())
        };
        out.insert(rel, what);
    }
    out
}

async fn stage_dump(store: &BackupStore, backup: &BackupRef) {
    let staged = dump::stage(store, backup, std::io::Cursor::new(SQL.as_bytes().to_vec()), Arc::default())
        .await
        .expect("the dump is staged");
    let info = dump::commit(store, backup, staged).await.unwrap();
    assert_eq!(info.size, SQL.len() as u64);
}

/// Archives `site_dir`, checks the archive, unpacks it and loads its dump; returns the
/// sidecar manifest.
async fn round_trip(store: &BackupStore, base: &Path, compression: Compression, random_bytes: usize) -> Manifest {
    let site_dir = make_tree(base, random_bytes);
    let site = site(base);
    let backup = BackupRef::new(site.uri.clone(), compression);
    stage_dump(store, &backup).await;

    let created = archive::create(store, &backup, Manifest::for_site(&site, &backup), &site_dir, Arc::default())
        .await
        .expect("the archive is written");
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let manifest = created.manifest;
    let sum = manifest.archive.clone().expect("the sidecar has the archive's checksum");
    assert_eq!(store.head(&backup.archive_key()).await.unwrap(), Some(sum.size));
    assert!(store.exists(&backup.manifest_key()).await.unwrap());
    assert!(!store.exists(&backup.dump_key()).await.unwrap(), "the staged dump is removed");
    assert_eq!(manifest.entries[0].path, "database.sql");
    assert_eq!(manifest.totals.database_bytes, SQL.len() as u64);
    assert_eq!(manifest.totals.files, 4, "{:?}", manifest.entries);
    assert_eq!(manifest.totals.directories, 4);
    assert_eq!(manifest.totals.symlinks, 2);
    assert!(manifest.totals.files_bytes >= random_bytes as u64);
    let facts = manifest.facts(&backup).unwrap();
    assert_eq!((facts.size, facts.entries), (sum.size, 10));

    let sidecar = archive::sidecar(store, &backup).await.unwrap();
    assert_eq!(*sidecar, manifest);
    let summary = archive::check(store, &backup, &sidecar, Arc::default()).await.expect("the archive checks");
    assert_eq!(summary.archive_bytes, sum.size);
    assert_eq!(summary.site_entries, 10);
    archive::verify_stored(store, &backup, &sidecar, Arc::default()).await.unwrap();

    let dest = base.join("sites/.www.example.com.unpack");
    let progress = Arc::new(Progress::default());
    archive::unpack(store, &backup, &sidecar, &dest, progress.clone()).await.expect("the archive unpacks");
    assert_eq!(progress.read(), sum.size);
    assert_eq!(describe(&dest), describe(&site_dir), "unpacked exactly as archived");

    let sql = SharedBuf::default();
    let loaded = archive::load_database(store, &backup, &sidecar, sql.clone(), Arc::default()).await.unwrap();
    assert_eq!(loaded, SQL.len() as u64);
    assert_eq!(sql.0.lock().unwrap().as_slice(), SQL.as_bytes());
    manifest
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A temporary directory whose path is a valid platform root.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("aegir-backup-store-").tempdir().unwrap()
}

fn local_store(base: &Path) -> BackupStore {
    BackupStore::from_args(&StoreArgs {
        backup_store: format!("file://{}", base.join("backups").display()),
        ..StoreArgs::default()
    })
    .unwrap()
}

#[test]
fn a_backup_directory_made_open_beforehand_is_made_private() {
    let base = tempdir();
    let dir = base.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
    local_store(base.path());
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zstd_archive_in_a_local_store_comes_back_exactly() {
    let base = tempdir();
    let store = local_store(base.path());
    let manifest = round_trip(&store, base.path(), Compression::Zstd, 20 * 1024 * 1024).await;
    let mode = std::fs::metadata(base.path().join("backups")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "only the workers' user reads the backups");
    assert!(manifest.archive.unwrap().size > 20 * 1024 * 1024, "random data does not compress");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_archive_comes_back_exactly() {
    let base = tempdir();
    let store = local_store(base.path());
    round_trip(&store, base.path(), Compression::Gzip, 2 * 1024 * 1024).await;
}

/// The archive file of a backup in a local store.
fn archive_file(base: &Path, backup: &BackupRef) -> PathBuf {
    base.join("backups").join(backup.archive_key())
}

async fn archived(base: &Path) -> (BackupStore, BackupRef, PathBuf) {
    let store = local_store(base);
    let site_dir = make_tree(base, 4 * 1024 * 1024);
    let site = site(base);
    let backup = BackupRef::new(site.uri.clone(), Compression::Zstd);
    stage_dump(&store, &backup).await;
    archive::create(&store, &backup, Manifest::for_site(&site, &backup), &site_dir, Arc::default()).await.unwrap();
    (store, backup, site_dir)
}

fn damage(err: Error) -> String {
    assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = err.to_string();
    eprintln!("refused: {text}");
    assert!(text.contains("is damaged") && text.ends_with("it cannot be restored"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_is_refused_by_check_unpack_and_load() {
    let base = tempdir();
    let (store, backup, _) = archived(base.path()).await;
    let path = archive_file(base.path(), &backup);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    let text = damage(archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());
    assert!(text.contains(&backup.archive_key()), "{text}");
    damage(archive::verify_stored(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());
    let dest = base.path().join("unpacked");
    damage(archive::unpack(&store, &backup, &sidecar, &dest, Arc::default()).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_archive_is_refused() {
    let base = tempdir();
    let (store, backup, _) = archived(base.path()).await;
    let path = archive_file(base.path(), &backup);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    let text = damage(archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());
    assert!(text.contains("ends") || text.contains("cannot be read") || text.contains("bytes"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_manifest_is_refused_naming_the_entry() {
    let base = tempdir();
    let (store, backup, _) = archived(base.path()).await;
    let key = base.path().join("backups").join(backup.manifest_key());
    let mut manifest = Manifest::parse(&std::fs::read(&key).unwrap()).unwrap();
    let entry = manifest.entries.iter_mut().find(|e| e.path == "site/files/random.bin").unwrap();
    let real = entry.sha256.replace("0".repeat(64)).unwrap();
    std::fs::write(&key, manifest.to_json()).unwrap();

    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    let text = damage(archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());
    assert!(
        text.contains(&format!("site/files/random.bin has checksum {real} but the manifest says {}", "0".repeat(64))),
        "{text}"
    );

    // An entry the manifest does not list is refused too.
    manifest.entries.retain(|e| e.path != "site/files/empty.txt");
    std::fs::write(&key, manifest.to_json()).unwrap();
    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    let text = damage(archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());
    assert!(text.contains("site/files/empty.txt is in the archive but not in its manifest"), "{text}");

    std::fs::write(&key, b"{ not json").unwrap();
    let text = damage(archive::sidecar(&store, &backup).await.unwrap_err());
    assert!(text.contains("unreadable"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_without_its_sidecar_was_never_finished() {
    let base = tempdir();
    let (store, backup, _) = archived(base.path()).await;
    store.delete(&backup.manifest_key()).await.unwrap();
    let err = archive::sidecar(&store, &backup).await.unwrap_err();
    assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
    assert!(err.to_string().contains("never finished"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_needs_its_staged_dump() {
    let base = tempdir();
    let store = local_store(base.path());
    let site_dir = make_tree(base.path(), 1024);
    let site = site(base.path());
    let backup = BackupRef::new(site.uri.clone(), Compression::Zstd);
    let err = archive::create(&store, &backup, Manifest::for_site(&site, &backup), &site_dir, Arc::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the database dump step did not run or did not finish"), "{err}");
    assert!(!store.exists(&backup.archive_key()).await.unwrap());
    assert!(!store.exists(&backup.manifest_key()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_archive_leaves_nothing_under_its_key() {
    let base = tempdir();
    let store = local_store(base.path());
    let site = site(base.path());
    let backup = BackupRef::new(site.uri.clone(), Compression::Zstd);
    stage_dump(&store, &backup).await;
    // A staged dump whose record promises more than it holds.
    let info_key = dump::info_key(&backup);
    let mut info: dump::DumpInfo = serde_json::from_slice(&store.get_small(&info_key).await.unwrap().unwrap()).unwrap();
    info.size += 10;
    store.put_small(&info_key, serde_json::to_vec(&info).unwrap()).await.unwrap();
    let site_dir = make_tree(base.path(), 1024);
    let err = archive::create(&store, &backup, Manifest::for_site(&site, &backup), &site_dir, Arc::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("staged database dump"), "{err}");
    assert!(!store.exists(&backup.archive_key()).await.unwrap(), "no archive under the key");
    assert!(!store.exists(&backup.manifest_key()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dir = base.path().join("backups/sites/www.example.com");
    let left: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "nothing of the upload is left: {left:?}");
}

#[test]
fn the_secret_key_is_never_printed() {
    let args = StoreArgs {
        s3_access_key_id: Some("AKIAEXAMPLE".into()),
        s3_secret_access_key: Some(Secret::new("very-secret-key")),
        ..StoreArgs::default()
    };
    assert!(!format!("{args:?}").contains("very-secret-key"));
}

/// A moto S3 server of the test's own, stopped when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let program = std::env::var("AEGIR_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program} ({e}); install it with `pip install 'moto[server]'` (deploy/lib.sh does)"
                )
            });
        let moto = Moto { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn create_bucket(&self, bucket: &str) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "creating the bucket: {response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_in_an_s3_store_comes_back_exactly() {
    let moto = Moto::start();
    moto.create_bucket("aegir-backups");
    let store = BackupStore::from_args(&StoreArgs {
        backup_store: "s3://aegir-backups/cluster-one".into(),
        s3_endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
        s3_region: "us-east-1".into(),
        s3_access_key_id: Some("testing".into()),
        s3_secret_access_key: Some(Secret::new("testing")),
        s3_allow_http: true,
    })
    .unwrap();
    assert!(store.to_string().starts_with("s3://aegir-backups/cluster-one"), "{store}");
    let base = tempdir();
    // 20 MB: a multipart upload of several parts.
    let manifest = round_trip(&store, base.path(), Compression::Zstd, 20 * 1024 * 1024).await;
    let backup = BackupRef { id: manifest.backup_id, site: manifest.site.clone(), compression: Compression::Zstd };

    // Damage through the store is refused there too.
    let mut sidecar = Manifest::clone(&archive::sidecar(&store, &backup).await.unwrap());
    sidecar.archive.as_mut().unwrap().sha256 = "f".repeat(64);
    store.put_small(&backup.manifest_key(), sidecar.to_json()).await.unwrap();
    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    damage(archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap_err());

    assert!(store.delete(&backup.archive_key()).await.unwrap());
    assert!(store.delete(&backup.manifest_key()).await.unwrap());
    assert!(!store.delete(&backup.archive_key()).await.unwrap(), "deleting what is gone is fine");
    assert!(!store.exists(&backup.archive_key()).await.unwrap());
}
