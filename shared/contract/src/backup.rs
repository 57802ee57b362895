//! Site archives in the backup store, as task messages name them.
//!
//! An archive is one object: a tar stream, compressed, holding the site's database dump
//! (`database.sql`), its directory (`site/…`: settings, files, private files) and, last,
//! its manifest (`manifest.json`). A copy of the manifest with the archive's own size and
//! checksum is stored beside it; an archive without that sidecar was never finished.
//! Keys are derived here from validated names, so no message carries a path.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::str_enum;
use crate::names::SiteUri;

/// How an archive's tar stream is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
}

str_enum!(Compression, "compression", "use `zstd` or `gzip`", {
    Zstd => "zstd",
    Gzip => "gzip",
});

impl Compression {
    /// The archive's file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "tar.zst",
            Compression::Gzip => "tar.gz",
        }
    }
}

/// One archive of one site in the backup store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRef {
    /// The backup's id (UUIDv7: archives of one site sort by time).
    pub id: Uuid,
    /// The site the archive was made of (its uri at that time).
    pub site: SiteUri,
    #[serde(default)]
    pub compression: Compression,
}

impl BackupRef {
    pub fn new(site: SiteUri, compression: Compression) -> Self {
        Self { id: Uuid::now_v7(), site, compression }
    }

    /// `sites/<uri>/<id>.tar.zst`
    pub fn archive_key(&self) -> String {
        format!("sites/{}/{}.{}", self.site, self.id, self.compression.extension())
    }

    /// `sites/<uri>/<id>.manifest.json`: written once the archive is complete.
    pub fn manifest_key(&self) -> String {
        format!("sites/{}/{}.manifest.json", self.site, self.id)
    }

    /// `staging/<id>/database.sql.zst`: the dump the db-worker makes for the archive,
    /// removed once the archive holds it.
    pub fn dump_key(&self) -> String {
        format!("staging/{}/database.sql.zst", self.id)
    }
}

impl fmt::Display for BackupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backup {} of {}", self.id, self.site)
    }
}

/// What the backup-worker reports once an archive is complete and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupFacts {
    pub backup: BackupRef,
    /// Size of the stored archive, in bytes.
    pub size: u64,
    /// SHA-256 of the stored archive, lower-case hex.
    pub sha256: String,
    /// Bytes of the database dump, before compression.
    pub database_bytes: u64,
    /// Bytes of the site's files, before compression.
    pub files_bytes: u64,
    /// Number of files and directories in the archive's `site/`.
    pub entries: u64,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_site_and_the_id() {
        let b = BackupRef {
            id: Uuid::parse_str("0190f3c4-7e4e-7c3a-8a55-8f0e8a1f2b3c").unwrap(),
            site: SiteUri::parse("www.example.com").unwrap(),
            compression: Compression::Zstd,
        };
        assert_eq!(b.archive_key(), "sites/www.example.com/0190f3c4-7e4e-7c3a-8a55-8f0e8a1f2b3c.tar.zst");
        assert_eq!(b.manifest_key(), "sites/www.example.com/0190f3c4-7e4e-7c3a-8a55-8f0e8a1f2b3c.manifest.json");
        assert_eq!(b.dump_key(), "staging/0190f3c4-7e4e-7c3a-8a55-8f0e8a1f2b3c/database.sql.zst");
        let gz = BackupRef { compression: Compression::Gzip, ..b };
        assert!(gz.archive_key().ends_with(".tar.gz"));
    }
}
