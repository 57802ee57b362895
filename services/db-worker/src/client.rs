//! Running `mysqldump` and `mysql` as the server's admin account. The account reaches
//! them in a 0600 option file named by the first argument, never on the command line,
//! where every user of the machine could read it.

use std::io::Write;
use std::process::Stdio;

use aegir_contract::DbService;
use aegir_worker::StepError;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

/// How much of a program's error output is kept for the user.
const STDERR_LIMIT: u64 = 64 * 1024;

/// A `[client]` option file with the admin account, removed when dropped.
pub struct OptionFile {
    file: tempfile::NamedTempFile,
}

impl OptionFile {
    pub fn new(db: &DbService) -> Result<Self, StepError> {
        let failed = |e: std::io::Error| StepError::transient(format!("cannot write a client option file: {e}"));
        // tempfile creates the file readable and writable by its owner only.
        let mut file = tempfile::Builder::new().prefix("aegir-client-").suffix(".cnf").tempfile().map_err(failed)?;
        file.write_all(render(db).as_bytes()).map_err(failed)?;
        file.flush().map_err(failed)?;
        Ok(Self { file })
    }

    /// `--defaults-extra-file=<path>`: the first argument of the program.
    pub fn argument(&self) -> String {
        format!("--defaults-extra-file={}", self.file.path().display())
    }
}

/// The option file's text. Values are quoted and escaped, so a password may hold any
/// character; `protocol=TCP` makes `localhost` a TCP address as it is for the worker's
/// own connections, not the server's socket.
fn render(db: &DbService) -> String {
    let mut text = String::from("[client]\n");
    text.push_str(&format!("user={}\n", quote(&db.admin_user)));
    if !db.admin_password.is_empty() {
        text.push_str(&format!("password={}\n", quote(db.admin_password.expose())));
    }
    text.push_str(&format!("host={}\nport={}\nprotocol=TCP\n", quote(db.host.as_str()), db.port));
    text
}

fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Starts `program` with the option file first, then `args`; its stdin and stdout are
/// the given pipe ends, its error output is collected.
pub fn spawn(
    program: &str,
    options: &OptionFile,
    args: &[&str],
    stdin: Stdio,
    stdout: Stdio,
) -> Result<(Child, JoinHandle<String>), StepError> {
    let mut child = Command::new(program)
        .arg(options.argument())
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StepError::permanent(format!(
                "`{program}` is not installed on this server; install the MariaDB client (mariadb-client)"
            )),
            _ => StepError::transient(format!("cannot run `{program}`: {e}")),
        })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok((child, tokio::spawn(collect(stderr))))
}

async fn collect(stderr: ChildStderr) -> String {
    let mut text = String::new();
    let _ = stderr.take(STDERR_LIMIT).read_to_string(&mut text).await;
    text
}

/// A program's error output for the user, with the admin password taken out should it
/// appear, and trimmed.
pub fn scrubbed(stderr: &str, db: &DbService) -> String {
    let mut text = stderr.trim().to_owned();
    if !db.admin_password.is_empty() {
        text = text.replace(db.admin_password.expose(), "[redacted]");
    }
    if text.is_empty() { "it wrote no error message".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegir_contract::{DbServiceType, HostName, Secret};

    #[test]
    fn any_password_survives_the_option_file() {
        let db = DbService {
            service_type: DbServiceType::Mariadb,
            host: HostName::parse("db1.example.com").unwrap(),
            port: 3307,
            admin_user: "root".into(),
            admin_password: Secret::new("a\"b\\c#d e'f;g`h"),
        };
        assert_eq!(
            render(&db),
            "[client]\nuser=\"root\"\npassword=\"a\\\"b\\\\c#d e'f;g`h\"\nhost=\"db1.example.com\"\nport=3307\nprotocol=TCP\n"
        );
        let options = OptionFile::new(&db).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&options.file.path().metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert!(options.argument().starts_with("--defaults-extra-file=/"));
        assert_eq!(scrubbed("  error with a\"b\\c#d e'f;g`h inside \n", &db), "error with [redacted] inside");
        let no_password = DbService { admin_password: Secret::new(""), ..db };
        assert!(!render(&no_password).contains("password"));
    }
}
