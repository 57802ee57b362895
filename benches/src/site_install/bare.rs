//! A WordPress site install done directly, as a reference for the system's: the same
//! MariaDB statements the db-worker runs, the same directories, owners and modes, the
//! settings file and vhost the system wrote for a reference site (with the uri and the
//! database account replaced), the same PHP installer code and environment as the
//! http-worker's (`services/http-worker/src/platforms/wordpress.rs`, `src/php.rs`), then
//! `nginx -t` and `nginx -s reload` with the system's nginx config.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use aegir_e2e::{System, mariadb_url};
use anyhow::{Context, bail};
use rand::distr::{Alphanumeric, SampleString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// The line the installer prints last when it succeeded.
const INSTALLED: &str = "AEGIR-WORDPRESS-INSTALLED";
/// The hosts the system grants a site's user (web and db server on one machine).
const GRANT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// What the system did for its first site, copied for each direct install.
pub struct Reference {
    uri: String,
    db_name: String,
    db_user: String,
    db_password: String,
    root: PathBuf,
    settings: String,
    /// Owner and mode of the site directory, files directory and settings file.
    owners: [(u32, u32, u32); 3],
    vhost: String,
    vhost_dir: PathBuf,
    nginx_conf: PathBuf,
    http_port: u16,
}

impl Reference {
    pub async fn load(system: &System, root: &Path, uri: &str) -> anyhow::Result<Self> {
        let (db_name, db_user, db_password): (String, String, String) =
            sqlx::query_as("SELECT db_name, db_user, db_password FROM sites WHERE uri = $1")
                .bind(uri)
                .fetch_one(&system.pg)
                .await
                .context("reading the reference site's database account")?;
        let site_dir = root.join("sites").join(uri);
        let settings_path = site_dir.join("wp-config.php");
        let owner = |path: &Path| -> anyhow::Result<(u32, u32, u32)> {
            let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
            Ok((meta.uid(), meta.gid(), meta.mode() & 0o7777))
        };
        let vhost_dir = system.config_dir().join("vhost.d");
        let vhost_path = vhost_dir.join(format!("{uri}.conf"));
        Ok(Self {
            uri: uri.to_owned(),
            db_name,
            db_user,
            db_password,
            root: root.to_owned(),
            settings: std::fs::read_to_string(&settings_path)
                .with_context(|| format!("reading {}", settings_path.display()))?,
            owners: [owner(&site_dir)?, owner(&site_dir.join("files"))?, owner(&settings_path)?],
            vhost: std::fs::read_to_string(&vhost_path).with_context(|| format!("reading {}", vhost_path.display()))?,
            vhost_dir,
            nginx_conf: system.nginx_conf().to_owned(),
            http_port: system.http_port,
        })
    }

    /// The reference's text made into `site`'s: its password, account and uri.
    fn adapt(&self, text: &str, site: &Site) -> String {
        text.replace(&self.db_password, &site.db_password)
            .replace(&self.db_name, &site.db_name)
            .replace(&self.db_user, &site.db_name)
            .replace(&self.uri, &site.uri)
    }
}

pub struct Site {
    pub uri: String,
    pub title: String,
    /// Also the user name, as the system's are.
    pub db_name: String,
    db_password: String,
}

impl Site {
    pub fn new(uri: String, title: String) -> Self {
        let db_name: String = uri.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
        Self { uri, title, db_name, db_password: Alphanumeric.sample_string(&mut rand::rng(), 32) }
    }
}

pub async fn install(reference: &Reference, site: &Site) -> anyhow::Result<()> {
    create_database(site).await?;
    write_files(reference, site)?;
    run_installer(reference, site).await?;
    let vhost = reference.vhost_dir.join(format!("{}.conf", site.uri));
    write_as(&vhost, &reference.adapt(&reference.vhost, site), (0, 0, 0o600))?;
    nginx(&reference.nginx_conf, &["-t", "-q"]).await?;
    nginx(&reference.nginx_conf, &["-s", "reload"]).await
}

/// The MariaDB admin account, as the db-worker logs in.
pub async fn admin() -> anyhow::Result<MySqlConnection> {
    let (user, password, host, port) = admin_parts();
    let mut options = MySqlConnectOptions::new().host(&host).port(port).username(&user);
    if !password.is_empty() {
        options = options.password(&password);
    }
    MySqlConnection::connect_with(&options).await.context("logging in to MariaDB as its admin")
}

/// `(user, password, host, port)` of the harness's MariaDB url.
pub fn admin_parts() -> (String, String, String, u16) {
    let url = mariadb_url();
    let rest = url.strip_prefix("mysql://").unwrap_or(&url);
    let (creds, hostport) = rest.rsplit_once('@').unwrap_or(("root:", rest));
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (user.into(), password.into(), host.into(), port.parse().unwrap_or(3306))
}

/// The db-worker's statements for a new site. Names are ours (`[a-z0-9_]`), the password
/// alphanumeric, so they are safe inside the statements.
async fn create_database(site: &Site) -> anyhow::Result<()> {
    let mut conn = admin().await?;
    let (name, password) = (&site.db_name, &site.db_password);
    let mut statements =
        vec![format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")];
    for host in GRANT_HOSTS {
        let account = format!("'{name}'@'{host}'");
        statements.push(format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}'"));
        statements.push(format!("ALTER USER {account} IDENTIFIED BY '{password}'"));
        statements.push(format!("GRANT ALL PRIVILEGES ON `{name}`.* TO {account}"));
    }
    for statement in statements {
        conn.execute(AssertSqlSafe(statement)).await.context("creating the site's database and user")?;
    }
    Ok(())
}

pub async fn drop_database(conn: &mut MySqlConnection, name: &str, user: &str) -> anyhow::Result<()> {
    for host in GRANT_HOSTS {
        conn.execute(AssertSqlSafe(format!("DROP USER IF EXISTS '{user}'@'{host}'"))).await?;
    }
    conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`"))).await?;
    Ok(())
}

/// Site directory, files directory and settings, with the reference's owners and modes.
fn write_files(reference: &Reference, site: &Site) -> anyhow::Result<()> {
    let [site_owner, files_owner, settings_owner] = reference.owners;
    let site_dir = reference.root.join("sites").join(&site.uri);
    for (dir, owner) in [(site_dir.clone(), site_owner), (site_dir.join("files"), files_owner)] {
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        set_owner(&dir, owner)?;
    }
    write_as(&site_dir.join("wp-config.php"), &reference.adapt(&reference.settings, site), settings_owner)
}

fn write_as(path: &Path, contents: &str, owner: (u32, u32, u32)) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    set_owner(path, owner)
}

/// Owner first: a change of owner may clear the set-group-id bit.
fn set_owner(path: &Path, (uid, gid, mode): (u32, u32, u32)) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// PHP source for a single-quoted string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// WordPress's installer, as the http-worker runs it.
async fn run_installer(reference: &Reference, site: &Site) -> anyhow::Result<()> {
    let host = format!("{}:{}", site.uri, reference.http_port);
    let code = format!(
        "$_SERVER['HTTP_HOST'] = {host}; $_SERVER['SERVER_NAME'] = {uri}; $_SERVER['REQUEST_URI'] = '/';\n\
         $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1'; $_SERVER['REQUEST_METHOD'] = 'GET';\n\
         define('WP_INSTALLING', true);\n\
         require {load};\n\
         require_once ABSPATH . 'wp-admin/includes/upgrade.php';\n\
         if (!is_blog_installed()) {{\n    \
             $result = wp_install({title}, 'admin', {email}, true, '', getenv('AEGIR_ADMIN_PASSWORD'), 'en');\n    \
             if (empty($result['user_id'])) {{ fwrite(STDERR, \"wp_install made no administrator\\n\"); exit(1); }}\n\
         }}\n\
         echo \"\\n{INSTALLED}\\n\";\n",
        host = quote(&host),
        uri = quote(&site.uri),
        load = quote(&reference.root.join("wp-load.php").display().to_string()),
        title = quote(&site.title),
        email = quote(&format!("webmaster@{}", site.uri)),
    );
    let (_, _, db_host, db_port) = admin_parts();
    let admin_password = format!("{}A1!", Alphanumeric.sample_string(&mut rand::rng(), 32));
    let output = tokio::process::Command::new("php")
        .args(["-r", &code])
        .current_dir(&reference.root)
        .env("AEGIR_SITE_URI", &site.uri)
        .env("AEGIR_DB_NAME", &site.db_name)
        .env("AEGIR_DB_USER", &site.db_name)
        .env("AEGIR_DB_PASSWORD", &site.db_password)
        .env("AEGIR_DB_HOST", db_host)
        .env("AEGIR_DB_PORT", db_port.to_string())
        .env("AEGIR_ADMIN_PASSWORD", admin_password)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running php (install the php-cli package)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !stdout.lines().any(|l| l.trim() == INSTALLED) {
        bail!(
            "the WordPress installer for {} failed ({}):\n{}\n{}",
            site.uri,
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        );
    }
    // The mark the http-worker leaves so a repeated install skips the installer.
    write_as(&reference.root.join("sites").join(&site.uri).join(".aegir-installed"), "", (0, 0, 0o600))
}

async fn nginx(conf: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("nginx")
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running nginx")?;
    if !output.status.success() {
        bail!("nginx {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
