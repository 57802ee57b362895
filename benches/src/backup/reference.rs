//! The references: the same site directory and database archived, dumped, unpacked and
//! loaded by the plain tools (`tar`, `zstd`, `mysqldump`, `mysql`), two processes with a
//! pipe between them where a shell would write `a | b`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

/// The options the db-worker gives `mysqldump`, so both dumps hold the same SQL.
const DUMP_OPTIONS: [&str; 7] = [
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--hex-blob",
    "--no-tablespaces",
    "--max-allowed-packet=1G",
];

/// What the references write, in a scratch directory of their own.
pub struct Reference {
    dir: PathBuf,
    options: tempfile::NamedTempFile,
}

impl Reference {
    /// `dir` must exist; `(user, password, host, port)` is the MariaDB admin account.
    pub fn new(dir: &Path, (user, password, host, port): (String, String, String, u16)) -> anyhow::Result<Self> {
        // tempfile creates the file readable and writable by its owner only (0600): the
        // password never reaches argv, where every user could read it.
        let mut options = tempfile::Builder::new()
            .prefix("client-")
            .suffix(".cnf")
            .tempfile_in(dir)
            .context("creating a MariaDB client option file")?;
        let mut text = format!("[client]\nuser={}\n", quote(&user));
        if !password.is_empty() {
            text.push_str(&format!("password={}\n", quote(&password)));
        }
        text.push_str(&format!("host={}\nport={port}\nprotocol=TCP\n", quote(&host)));
        options.write_all(text.as_bytes()).context("writing the MariaDB client option file")?;
        options.flush().context("writing the MariaDB client option file")?;
        Ok(Self { dir: dir.to_owned(), options })
    }

    pub fn files_archive(&self) -> PathBuf {
        self.dir.join("files.tar.zst")
    }

    pub fn compressed_dump(&self) -> PathBuf {
        self.dir.join("dump.sql.zst")
    }

    pub fn dump(&self) -> PathBuf {
        self.dir.join("dump.sql")
    }

    pub fn unpacked(&self) -> PathBuf {
        self.dir.join("unpacked")
    }

    /// `mysqldump`/`mysql` with the option file as their first argument.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.arg(format!("--defaults-extra-file={}", self.options.path().display()));
        command
    }

    /// `tar -cf - -C <site dir> . | zstd -3 -T1 > files.tar.zst`
    pub async fn archive_files(&self, site_dir: &Path) -> anyhow::Result<Duration> {
        let mut tar = Command::new("tar");
        tar.arg("-cf").arg("-").arg("-C").arg(site_dir).arg(".");
        let mut zstd = Command::new("zstd");
        zstd.args(["-3", "-T1", "-q", "-c"]).stdout(create(&self.files_archive())?);
        piped(tar, zstd).await
    }

    /// `mysqldump --single-transaction --quick … <database> | zstd -3 -T1 > dump.sql.zst`
    pub async fn dump_compressed(&self, database: &str) -> anyhow::Result<Duration> {
        let mut mysqldump = self.client("mysqldump");
        mysqldump.args(DUMP_OPTIONS).arg(database);
        let mut zstd = Command::new("zstd");
        zstd.args(["-3", "-T1", "-q", "-c"]).stdout(create(&self.compressed_dump())?);
        piped(mysqldump, zstd).await
    }

    /// `mysqldump --single-transaction --quick … <database> > /dev/null`
    pub async fn dump_plain(&self, database: &str) -> anyhow::Result<Duration> {
        let mut mysqldump = self.client("mysqldump");
        mysqldump.args(DUMP_OPTIONS).arg(database).stdin(Stdio::null()).stdout(Stdio::null());
        single(mysqldump).await
    }

    /// `zstd -d < files.tar.zst | tar -xf - -C unpacked`
    pub async fn unpack_files(&self) -> anyhow::Result<Duration> {
        let target = self.unpacked();
        std::fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
        let mut zstd = Command::new("zstd");
        zstd.args(["-d", "-q", "-c"]).stdin(open(&self.files_archive())?);
        let mut tar = Command::new("tar");
        tar.arg("-xf").arg("-").arg("-C").arg(&target);
        piped(zstd, tar).await
    }

    /// `zstd -d dump.sql.zst -o dump.sql`, the file the load reads (not timed).
    pub async fn decompress_dump(&self) -> anyhow::Result<u64> {
        let mut zstd = Command::new("zstd");
        zstd.args(["-d", "-q", "-f"]).arg(self.compressed_dump()).arg("-o").arg(self.dump()).stdin(Stdio::null());
        single(zstd).await?;
        Ok(std::fs::metadata(self.dump()).with_context(|| format!("reading {}", self.dump().display()))?.len())
    }

    /// `mysql --batch --binary-mode <database> < dump.sql`
    pub async fn load(&self, database: &str) -> anyhow::Result<Duration> {
        let mut mysql = self.client("mysql");
        mysql.args(["--batch", "--binary-mode", "--max-allowed-packet=1G", database]).stdin(open(&self.dump())?);
        single(mysql).await
    }
}

/// An option file value, quoted so that any character may appear in it.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn create(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

fn program(command: &Command) -> String {
    command.as_std().get_program().to_string_lossy().into_owned()
}

/// Runs `first | second` (their other ends as the commands set them) and times it from
/// the first spawn to both exits.
async fn piped(mut first: Command, mut second: Command) -> anyhow::Result<Duration> {
    let (first_name, second_name) = (program(&first), program(&second));
    let started = Instant::now();
    let mut a = first
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {first_name}"))?;
    let pipe: Stdio = a.stdout.take().context("no pipe to the first program")?.try_into()?;
    let b = second
        .stdin(pipe)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {second_name}"))?;
    let (a, b) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    let elapsed = started.elapsed();
    succeeded(&first_name, a.with_context(|| format!("waiting for {first_name}"))?)?;
    succeeded(&second_name, b.with_context(|| format!("waiting for {second_name}"))?)?;
    Ok(elapsed)
}

/// Runs one program and times it.
async fn single(mut command: Command) -> anyhow::Result<Duration> {
    let name = program(&command);
    let started = Instant::now();
    let output =
        command.stderr(Stdio::piped()).kill_on_drop(true).output().await.with_context(|| format!("running {name}"))?;
    let elapsed = started.elapsed();
    succeeded(&name, output)?;
    Ok(elapsed)
}

fn succeeded(name: &str, output: std::process::Output) -> anyhow::Result<()> {
    if !output.status.success() {
        bail!("{name} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
