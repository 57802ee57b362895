//! A site's worth of generated data: files in its `files/` directory shaped like a real
//! site's (many small pages, a few large exports, images and media), half compressible
//! text and half random bytes as compressed formats are; and rows in its database.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Executor, MySql, QueryBuilder};

pub const MIB: u64 = 1024 * 1024;
const KIB: u64 = 1024;

/// The table the generated rows go to, in the site's database.
pub const TABLE: &str = "bench_posts";

/// One kind of file: its share of the budget (percent), its size range, and whether it
/// holds text (compressible) or random bytes (incompressible).
struct Kind {
    share: u64,
    min: u64,
    max: u64,
    text: bool,
    dir: &'static str,
    ext: &'static str,
}

const KINDS: [Kind; 4] = [
    // Pages, styles, scripts: many small text files.
    Kind { share: 30, min: KIB, max: 48 * KIB, text: true, dir: "pages", ext: "html" },
    // Exports and logs: a few large text files.
    Kind { share: 20, min: 8 * MIB, max: 32 * MIB, text: true, dir: "exports", ext: "csv" },
    // Uploaded images: random bytes, as JPEG and PNG are to a compressor.
    Kind { share: 30, min: 32 * KIB, max: 2 * MIB, text: false, dir: "uploads", ext: "jpg" },
    // Videos and zip files: a few large random files.
    Kind { share: 20, min: 16 * MIB, max: 64 * MIB, text: false, dir: "media", ext: "mp4" },
];

/// Files per directory, as upload folders hold them.
const PER_DIR: u64 = 100;

/// Files and directories written, and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tree {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// Words of a made-up language: text that compresses as prose does, not as a repeated
/// pattern would.
struct Words(Vec<String>);

impl Words {
    fn new(rng: &mut impl Rng) -> Self {
        const SYLLABLES: [&str; 24] = [
            "ba", "ke", "lo", "mi", "nu", "pra", "sto", "ven", "qui", "tar", "el", "on", "ri", "sa", "du", "fen",
            "gor", "hal", "is", "jo", "mer", "ul", "ze", "ch",
        ];
        let words = (0..2000)
            .map(|_| (0..rng.random_range(1..=4)).map(|_| *SYLLABLES.choose(rng).expect("syllables")).collect())
            .collect();
        Self(words)
    }

    /// A sentence of 4 to 20 words, capitalised, ending with a full stop.
    fn sentence(&self, rng: &mut impl Rng, out: &mut String) {
        let count = rng.random_range(4..=20);
        for i in 0..count {
            let word = self.0.choose(rng).expect("words");
            if i == 0 {
                let mut chars = word.chars();
                out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                out.push_str(chars.as_str());
            } else {
                out.push(' ');
                out.push_str(word);
            }
        }
        out.push_str(". ");
    }

    /// About `len` bytes of text: paragraphs of an HTML page, or rows of a CSV export.
    fn text(&self, rng: &mut impl Rng, len: usize, csv: bool, out: &mut String) {
        out.clear();
        while out.len() < len {
            if csv {
                let id: u32 = rng.random();
                out.push_str(&format!("{id},\"{}\",", self.0.choose(rng).expect("words")));
                self.sentence(rng, out);
                out.push_str(&format!(
                    ",{},2026-{:02}-{:02}\n",
                    rng.random_range(0..100_000),
                    rng.random_range(1..=12),
                    rng.random_range(1..=28)
                ));
            } else {
                out.push_str("<p>");
                for _ in 0..rng.random_range(2..8) {
                    self.sentence(rng, out);
                }
                out.push_str("</p>\n");
            }
        }
        out.truncate(len);
    }
}

/// Writes about `budget` bytes of files below `files_dir`, owned like `files_dir` (the
/// web server writes uploads). Blocking: run it on a blocking thread.
pub fn write_files(files_dir: &Path, budget: u64) -> anyhow::Result<Tree> {
    let meta = std::fs::metadata(files_dir).with_context(|| format!("reading {}", files_dir.display()))?;
    let owner = (meta.uid(), meta.gid());
    let own = |path: &Path| {
        std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
            .with_context(|| format!("chown {}", path.display()))
    };
    let mut rng = rand::rng();
    let words = Words::new(&mut rng);
    let mut tree = Tree::default();
    let mut text = String::new();
    let mut chunk = vec![0u8; MIB as usize];
    for kind in &KINDS {
        let share = budget * kind.share / 100;
        let mut written = 0;
        let mut n = 0u64;
        while written < share {
            let dir = files_dir.join(kind.dir).join(format!("{:03}", n / PER_DIR));
            if n.is_multiple_of(PER_DIR) {
                for d in [dir.parent().expect("kind directory"), dir.as_path()] {
                    if !d.exists() {
                        std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
                        own(d)?;
                        tree.dirs += 1;
                    }
                }
            }
            let size = rng.random_range(kind.min..=kind.max).min(share - written);
            let path = dir.join(format!("f{n:05}.{}", kind.ext));
            let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::with_capacity(MIB as usize, file);
            let mut left = size;
            while left > 0 {
                let part = left.min(MIB) as usize;
                if kind.text {
                    words.text(&mut rng, part, kind.ext == "csv", &mut text);
                    out.write_all(text.as_bytes())
                } else {
                    rng.fill_bytes(&mut chunk[..part]);
                    out.write_all(&chunk[..part])
                }
                .with_context(|| format!("writing {}", path.display()))?;
                left -= part as u64;
            }
            out.flush().with_context(|| format!("writing {}", path.display()))?;
            own(&path)?;
            written += size;
            n += 1;
            tree.files += 1;
            tree.bytes += size;
        }
    }
    Ok(tree)
}

/// Regular files, directories and bytes below `dir` (symlinks are not followed).
pub fn measure(dir: &Path) -> anyhow::Result<Tree> {
    let mut tree = Tree::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                tree.dirs += 1;
                pending.push(entry.path());
            } else if meta.is_file() {
                tree.files += 1;
                tree.bytes += meta.len();
            }
        }
    }
    Ok(tree)
}

/// Rows inserted and the bytes of their values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows {
    pub rows: u64,
    pub bytes: u64,
}

/// Rows per INSERT: about 3 MiB of values, below MariaDB's default packet limit.
const BATCH: usize = 1000;

/// Fills [`TABLE`] in the connection's database with about `budget` bytes of posts:
/// text bodies of 0.5 to 6 KiB, titles, slugs (indexed), numbers, dates and a binary
/// digest per row.
pub async fn fill_database(conn: &mut MySqlConnection, budget: u64) -> anyhow::Result<Rows> {
    conn.execute(AssertSqlSafe(format!(
        "CREATE TABLE {TABLE} (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            slug VARCHAR(190) NOT NULL,
            title VARCHAR(255) NOT NULL,
            body MEDIUMTEXT NOT NULL,
            views INT UNSIGNED NOT NULL,
            digest BINARY(32) NOT NULL,
            created_at DATETIME NOT NULL,
            KEY slug (slug)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    )))
    .await
    .with_context(|| format!("creating table {TABLE}"))?;
    let words = Words::new(&mut rand::rng());
    let mut made = Rows::default();
    while made.bytes < budget {
        let rows = {
            // The thread's generator does not live across an await.
            let mut rng = rand::rng();
            (0..BATCH).map(|_| post(&words, &mut rng)).collect::<Vec<_>>()
        };
        made.rows += rows.len() as u64;
        made.bytes += rows.iter().map(Post::bytes).sum::<u64>();
        let mut insert: QueryBuilder<MySql> =
            QueryBuilder::new(format!("INSERT INTO {TABLE} (slug, title, body, views, digest, created_at) "));
        insert.push_values(rows, |mut row, post| {
            row.push_bind(post.slug)
                .push_bind(post.title)
                .push_bind(post.body)
                .push_bind(post.views)
                .push_bind(post.digest)
                .push_bind(post.created_at);
        });
        insert.build().execute(&mut *conn).await.with_context(|| format!("inserting rows into {TABLE}"))?;
    }
    Ok(made)
}

struct Post {
    slug: String,
    title: String,
    body: String,
    views: u32,
    digest: Vec<u8>,
    created_at: chrono::NaiveDateTime,
}

impl Post {
    /// The bytes of its values (a date as the 19 characters of its text).
    fn bytes(&self) -> u64 {
        (self.slug.len() + self.title.len() + self.body.len() + 4 + self.digest.len() + 19) as u64
    }
}

fn post(words: &Words, rng: &mut impl Rng) -> Post {
    let mut title = String::new();
    words.sentence(rng, &mut title);
    let title = title.trim_end().trim_end_matches('.').to_owned();
    let slug: String = title.to_lowercase().replace(' ', "-").chars().take(150).collect();
    let mut body = String::new();
    let len = rng.random_range(512..6 * 1024);
    words.text(rng, len, false, &mut body);
    let mut digest = vec![0u8; 32];
    rng.fill_bytes(&mut digest);
    let created_at = chrono::DateTime::from_timestamp(rng.random_range(1_500_000_000..1_800_000_000), 0)
        .expect("a time in range")
        .naive_utc();
    Post { slug: format!("{slug}-{}", rng.random::<u32>()), title, body, views: rng.random(), digest, created_at }
}
