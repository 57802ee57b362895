//! Archives a directory as a site's files into a local store, then checks and unpacks
//! the archive, printing time, throughput and peak memory of each phase:
//!
//!     cargo run --release -p aegir-backup-store --example archive_site -- DIR STORE_DIR [zstd|gzip]

use std::sync::Arc;
use std::time::Instant;

use aegir_backup_store::{BackupStore, Manifest, Progress, archive, dump, rate, size};
use aegir_contract::*;

fn peak_rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ? kB");
    line.split_whitespace().nth(1).unwrap_or("?").to_owned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, store_dir) = (std::path::PathBuf::from(&args[1]), &args[2]);
    let compression = match args.get(3).map(String::as_str) {
        Some("gzip") => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let store = BackupStore::local(store_dir).unwrap();
    let server = ServerContext {
        name: ServerName::parse("server_master").unwrap(),
        remote_host: HostName::parse("localhost").unwrap(),
        http: None,
        db: None,
        dns: None,
    };
    let site = SiteContext {
        uri: SiteUri::parse("bench.example.com").unwrap(),
        aliases: vec![],
        redirection: false,
        platform: PlatformContext {
            name: PlatformName::parse("platform_bench").unwrap(),
            root: AbsolutePath::parse("/var/aegir/platforms/bench").unwrap(),
            web_server: server.clone(),
            source: None,
        },
        platform_type: PlatformType::Php,
        db_server: server,
        database: SiteDatabase {
            name: DbIdent::parse("bench").unwrap(),
            user: DbIdent::parse("bench").unwrap(),
            password: Secret::new(""),
        },
        profile: None,
        language: LanguageCode::parse("en").unwrap(),
        title: SiteTitle::parse("Bench").unwrap(),
        admin_email: Email::parse("admin@example.com").unwrap(),
        client: None,
        php_version: None,
        dns_server: None,
        ssl: Default::default(),
    };
    // With a backup id given, only that archive is checked (or unpacked) again, in a
    // process of its own.
    if let Some(id) = args.get(4) {
        let backup = BackupRef { id: id.parse().unwrap(), site: site.uri.clone(), compression };
        let sidecar = archive::sidecar(&store, &backup).await.unwrap();
        let started = Instant::now();
        let what = args.get(5).map(String::as_str).unwrap_or("check");
        if what == "unpack" {
            let dest = std::path::Path::new(store_dir).join("unpacked");
            archive::unpack(&store, &backup, &sidecar, &dest, Arc::default()).await.unwrap();
        } else {
            archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap();
        }
        println!("{what}: {:.2} s, peak RSS {} KiB", started.elapsed().as_secs_f64(), peak_rss());
        return;
    }
    let backup = BackupRef::new(site.uri.clone(), compression);
    let sql = "INSERT INTO t VALUES (1);\n".repeat(1000).into_bytes();
    let staged = dump::stage(&store, &backup, std::io::Cursor::new(sql), Arc::default()).await.unwrap();
    dump::commit(&store, &backup, staged).await.unwrap();

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let created =
        archive::create(&store, &backup, Manifest::for_site(&site, &backup), &dir, progress.clone()).await.unwrap();
    let sum = created.manifest.archive.clone().unwrap();
    println!(
        "create: {} read, {} archive, {:.2} s, {}, peak RSS {} KiB",
        size(progress.read()),
        size(sum.size),
        started.elapsed().as_secs_f64(),
        rate(progress.read(), started.elapsed()),
        peak_rss()
    );
    println!("backup id {}", backup.id);
    let sidecar = archive::sidecar(&store, &backup).await.unwrap();
    let started = Instant::now();
    archive::check(&store, &backup, &sidecar, Arc::default()).await.unwrap();
    println!(
        "check: {:.2} s, {}, peak RSS {} KiB",
        started.elapsed().as_secs_f64(),
        rate(sum.size, started.elapsed()),
        peak_rss()
    );
    let dest = std::path::Path::new(store_dir).join("unpacked");
    let started = Instant::now();
    archive::unpack(&store, &backup, &sidecar, &dest, Arc::default()).await.unwrap();
    println!(
        "unpack: {:.2} s, {}, peak RSS {} KiB",
        started.elapsed().as_secs_f64(),
        rate(progress.read(), started.elapsed()),
        peak_rss()
    );
}
