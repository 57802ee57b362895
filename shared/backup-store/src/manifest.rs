//! What an archive holds, entry by entry, with checksums.
//!
//! The manifest is the archive's last entry (`manifest.json`) and, with the archive's
//! own size and checksum added, its sidecar object. A reader trusts the sidecar, checks
//! the archive against it and checks that the manifest inside says the same.

use aegir_contract::{
    BackupFacts, BackupRef, Compression, DbIdent, PlatformName, PlatformType, ServerName, SiteContext, SiteUri,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The layout version written now. Readers refuse manifests of a later format rather
/// than guess at them.
pub const FORMAT: u32 = 1;

/// The database dump: the archive's first entry.
pub const DATABASE_ENTRY: &str = "database.sql";
/// The manifest: the archive's last entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// The site's directory, and the prefix of every path below it.
pub const SITE_ENTRY: &str = "site";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Version of this layout ([`FORMAT`]).
    pub format: u32,
    /// The backup's id (the key of its archive in the store).
    pub backup_id: Uuid,
    /// The site the archive was made of, under its uri at that time.
    pub site: SiteUri,
    pub platform: PlatformInfo,
    /// The application's version, when it was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The server that held the site's database.
    pub db_server: ServerName,
    /// The site's database on that server.
    pub database: DbIdent,
    pub compression: Compression,
    pub created_at: DateTime<Utc>,
    /// Every entry of the archive but the manifest itself, in archive order:
    /// `database.sql`, then `site` and everything below it.
    pub entries: Vec<Entry>,
    pub totals: Totals,
    /// The archive's own size and checksum: in the sidecar only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSum>,
}

/// The platform the site was on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformInfo {
    pub name: PlatformName,
    pub root: String,
    pub platform_type: PlatformType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
        }
    }
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `database.sql`, `site` or `site/…`: relative, `/`-separated, no `.` or `..`.
    pub path: String,
    pub kind: EntryKind,
    /// Bytes of a file's content; 0 for directories and symlinks.
    pub size: u64,
    /// SHA-256 of a file's content, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// A symlink's target, as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Bytes of the database dump.
    pub database_bytes: u64,
    /// Bytes of the files below `site`.
    pub files_bytes: u64,
    /// Files, directories and symlinks below `site` (not counting `site` itself).
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
}

impl Totals {
    /// Entries below `site`.
    pub fn site_entries(&self) -> u64 {
        self.files + self.directories + self.symlinks
    }
}

/// The archive object's own size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSum {
    pub size: u64,
    /// SHA-256 of the stored object, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// The manifest of a new archive of `site`, before its entries are known.
    pub fn for_site(site: &SiteContext, backup: &BackupRef) -> Manifest {
        Manifest {
            format: FORMAT,
            backup_id: backup.id,
            site: site.uri.clone(),
            platform: PlatformInfo {
                name: site.platform.name.clone(),
                root: site.platform.root.to_string(),
                platform_type: site.platform_type,
            },
            app_version: None,
            db_server: site.db_server.name.clone(),
            database: site.database.name.clone(),
            compression: backup.compression,
            created_at: Utc::now(),
            entries: Vec::new(),
            totals: Totals::default(),
            archive: None,
        }
    }

    /// Reads a manifest, refusing formats this version does not know.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        /// The format alone, read first so a newer manifest is refused for what it is.
        #[derive(Deserialize)]
        struct Format {
            format: Option<u64>,
        }
        let probe: Format = serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
        match probe.format {
            Some(format) if format > u64::from(FORMAT) => {
                return Err(format!(
                    "it is of format {format}, newer than this system reads ({FORMAT}); upgrade the workers"
                ));
            }
            Some(_) => {}
            None => return Err("it has no format version".into()),
        }
        serde_json::from_slice(bytes).map_err(|e| format!("it does not describe an archive: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serializes")
    }

    /// True when `other` says the same as this manifest, its archive's own size and
    /// checksum aside: the manifest inside an archive against its sidecar.
    pub fn same_content(&self, other: &Manifest) -> bool {
        let Manifest {
            format,
            backup_id,
            site,
            platform,
            app_version,
            db_server,
            database,
            compression,
            created_at,
            entries,
            totals,
            archive: _,
        } = self;
        *format == other.format
            && *backup_id == other.backup_id
            && *site == other.site
            && *platform == other.platform
            && *app_version == other.app_version
            && *db_server == other.db_server
            && *database == other.database
            && *compression == other.compression
            && *created_at == other.created_at
            && *entries == other.entries
            && *totals == other.totals
    }

    /// What the backup-worker reports for a finished archive.
    pub fn facts(&self, backup: &BackupRef) -> Option<BackupFacts> {
        let archive = self.archive.as_ref()?;
        Some(BackupFacts {
            backup: backup.clone(),
            size: archive.size,
            sha256: archive.sha256.clone(),
            database_bytes: self.totals.database_bytes,
            files_bytes: self.totals.files_bytes,
            entries: self.totals.site_entries(),
            created_at: self.created_at,
        })
    }
}
