//! The command line. Options keep Aegir's drush spelling (`--context_type`,
//! `--http_service_type`, ...); the dashed forms are accepted too. Names, paths and
//! service types are parsed with the contract's types, so bad input is refused here,
//! before any request.

use aegir_contract::{
    AbsolutePath, ClientName, Compression, ContextName, DbServiceType, DnsServiceType, Email, HostName,
    HttpServiceType, LanguageCode, PhpVersion, ProfileName, Secret, SiteTitle, SiteUri, SslMode, TaskKind,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::api::{Paging, SiteStatus, TaskStatus};

const AFTER_HELP: &str = "\
Examples:
  aegir save @server_master --context_type=server --http_service_type=nginx \\
        --db_service_type=mariadb --master_db=mysql://root:PASSWORD@127.0.0.1:3306
  aegir save @platform_wp --context_type=platform --root=/var/aegir/platforms/wp
  aegir @platform_wp verify
  aegir save @www.example.com --context_type=site --platform=@platform_wp \
        --aliases=example.com --redirection --client=acme
  aegir @www.example.com install       (then verify, disable, enable, login-reset, delete)
  aegir @www.example.com backup        (then: aegir backups @www.example.com)
  aegir @www.example.com restore --backup=ID
  aegir @www.example.com certificate --cert=fullchain.pem --key=privkey.pem
  aegir @www.example.com certificate --remove
  aegir @www.example.com clone --new_uri=staging.example.com [--platform=@platform_wp2]
  aegir @www.example.com migrate --platform=@platform_wp2 [--db_server=@server_db2] [--new_uri=URI]
  aegir @server_master verify          (the same as: aegir run @server_master verify)
  aegir list sites --status=enabled --search=example
  aegir tasks --context=@server_master --status=failed
  aegir task 0190c0de-0000-7000-8000-000000000000

The API address comes from --api, else AEGIR_API, else `api = \"URL\"` in the first of
$AEGIR_CONFIG, $XDG_CONFIG_HOME/aegir/cli.toml (~/.config/aegir/cli.toml), /etc/aegir/cli.toml,
else http://127.0.0.1:8090.

Exit codes: 0 done; 1 the task failed; 2 bad usage or input (nothing was sent);
3 the API answered with an error; 4 the API could not be reached.";

#[derive(Debug, Parser)]
#[command(
    name = "aegir",
    version,
    about = "Command line of the Aegir hosting control plane: servers, platforms, sites, clients and tasks",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Address of task-api, e.g. http://127.0.0.1:8090 [default: AEGIR_API, the config file, or http://127.0.0.1:8090]
    #[arg(long, global = true, value_name = "URL")]
    pub api: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a server, platform or site (Aegir's provision-save)
    Save(Box<SaveArgs>),
    /// Run a task on a context and follow its log live; also written `aegir @CONTEXT TASK`
    Run(RunArgs),
    /// List tasks, newest first
    Tasks(TasksArgs),
    /// Show a task and its full log; follow it live while it runs
    Task(TaskArgs),
    /// Show a server, platform or site
    Show(ShowArgs),
    /// List servers, platforms, sites or clients
    List(ListArgs),
    /// Delete a server, a platform, or the record of a site that is not installed
    /// (an installed site is deleted with `aegir @SITE delete`)
    Delete(DeleteArgs),
    /// Manage clients (the owners of sites)
    #[command(subcommand)]
    Client(ClientCommand),
    /// List the archives of a site, newest first
    Backups(BackupsArgs),
    /// Cancel a task that has not started yet
    Cancel(CancelArgs),
    /// Run verify or migrate on every site of a platform, a few at a time, with a live summary
    Batch(BatchArgs),
    /// Manage users, their API tokens, and the platforms granted to clients (admins only)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Log in with a user's password and store an API token in the user's config file (mode 0600)
    Login(LoginArgs),
    /// Make the keys that sign the system's messages
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Bring in an existing Aegir's servers, platforms and sites from its drush alias files,
    /// verify them, and report what could not be mapped
    #[command(name = "import-aegir")]
    ImportAegir(ImportAegirArgs),
    /// Serve a site over https with a certificate of your own instead of one from ACME;
    /// also written `aegir @SITE certificate --cert FILE --key FILE`. It is checked, then
    /// installed by a verify task; nothing renews it: upload a new one before it expires
    /// (`aegir @SITE verify --renew` switches the site back to ACME);
    /// `aegir @SITE certificate --remove` removes it and orders one from ACME
    Certificate(CertificateArgs),
}

#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// The site, e.g. @www.example.com
    #[arg(value_name = "@SITE", value_parser = parse_site)]
    pub site: SiteUri,

    /// PEM file: the site's certificate first, then its intermediates
    #[arg(long, value_name = "FILE", required_unless_present = "remove", conflicts_with = "remove")]
    pub cert: Option<std::path::PathBuf>,

    /// PEM file: the certificate's private key (unencrypted); it goes to the site's web
    /// server only, never shown or logged
    #[arg(long, value_name = "FILE", required_unless_present = "remove", conflicts_with = "remove")]
    pub key: Option<std::path::PathBuf>,

    /// Remove the certificate supplied for the site: a verify orders one from ACME in
    /// its place, and the supplied one (and its key) leaves the web server once that one serves
    #[arg(long)]
    pub remove: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the users
    List,
    /// Create or update a user
    Save(UserSaveArgs),
    /// Delete a user and its tokens
    Delete {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Make an API token for a user and print it (shown this once)
    Token {
        #[arg(value_name = "USER")]
        user: String,
        /// What the token is for
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List a user's tokens (never the tokens themselves)
    Tokens {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Revoke one of a user's tokens
    Revoke {
        #[arg(value_name = "USER")]
        user: String,
        #[arg(value_name = "TOKEN_ID")]
        id: Uuid,
    },
    /// Let a client's users see a platform and put sites on it
    Grant {
        #[arg(value_name = "CLIENT")]
        client: ClientName,
        #[arg(value_name = "@PLATFORM")]
        platform: ContextName,
    },
    /// Take a platform grant back (the client's sites on it stay)
    Ungrant {
        #[arg(value_name = "CLIENT")]
        client: ClientName,
        #[arg(value_name = "@PLATFORM")]
        platform: ContextName,
    },
}

#[derive(Debug, Args)]
pub struct UserSaveArgs {
    #[arg(value_name = "USER")]
    pub user: String,
    /// `admin` (everything) or `client` (its client's sites only)
    #[arg(long, value_parser = ["admin", "client"])]
    pub role: String,
    /// The client a client user acts for
    #[arg(long, value_name = "NAME")]
    pub client: Option<ClientName>,
    /// Set the password, read from stdin (one line)
    #[arg(long)]
    pub password_stdin: bool,
    /// Refuse the user's logins and tokens
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user to log in as
    #[arg(value_name = "USER")]
    pub user: String,
    /// Read the password from stdin (one line) instead of asking for it
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ImportAegirArgs {
    /// Aegir's drush directory, holding `*.alias.drushrc.php` (e.g. /var/aegir/.drush)
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new master signing key, for the AEGIR_SIGNING_KEY_FILE of task-api and the scheduler
    New,
    /// Print the key of one server's workers (their AEGIR_WORKER_KEY_FILE), derived from the master key
    Server(ServerKeyArgs),
    /// Print the key a partner (a billing or other system) signs its commands with, derived from the master key
    Partner(PartnerKeyArgs),
}

#[derive(Debug, Args)]
pub struct PartnerKeyArgs {
    /// The partner's name, as its commands give it in `partner`, e.g. billing
    #[arg(value_name = "NAME")]
    pub partner: aegir_contract::PartnerName,

    #[command(flatten)]
    pub master: aegir_config::SigningKeyArgs,
}

#[derive(Debug, Args)]
pub struct ServerKeyArgs {
    /// The server, e.g. @server_web2
    #[arg(value_name = "@SERVER")]
    pub server: ContextName,

    #[command(flatten)]
    pub master: aegir_config::SigningKeyArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The platform whose sites to act on, e.g. @platform_wp
    #[arg(value_name = "@PLATFORM")]
    pub platform: ContextName,

    /// verify, or migrate (with --to)
    #[arg(value_name = "TASK")]
    pub task: TaskKind,

    /// migrate: the platform to move every site to
    #[arg(long, value_name = "@PLATFORM")]
    pub to: Option<ContextName>,

    /// Tasks running at once
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=5000))]
    pub parallel: u16,

    /// Start no new task once more than this many have failed
    #[arg(long = "max_failures", alias = "max-failures", default_value_t = 0)]
    pub max_failures: u32,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The task's id (`aegir tasks --status=queued` lists the waiting ones)
    #[arg(value_name = "ID")]
    pub id: Uuid,
}

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// The site, e.g. @www.example.com
    #[arg(value_name = "@SITE", value_parser = parse_site)]
    pub site: SiteUri,

    #[command(flatten)]
    pub paging: PagingArgs,

    /// Print the API's JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The context to save: @server_<name>, @platform_<name> or @<site uri>
    #[arg(value_name = "@CONTEXT")]
    pub context: ContextName,

    /// server, platform or site; must match the name (@server_* is a server, @platform_* a
    /// platform, anything else a site) [default: from the name]
    #[arg(long = "context_type", alias = "context-type", value_name = "TYPE")]
    pub context_type: Option<String>,

    /// Address other servers reach this server at [API default: localhost]
    #[arg(long = "remote_host", alias = "remote-host", value_name = "HOST", help_heading = "Server options")]
    pub remote_host: Option<HostName>,

    /// Web server: nginx or apache (leave out for a server without one)
    #[arg(
        long = "http_service_type",
        alias = "http-service-type",
        value_name = "TYPE",
        help_heading = "Server options"
    )]
    pub http_service_type: Option<HttpServiceType>,

    /// Port the web server's vhosts listen on [API default: 80]
    #[arg(
        long = "http_port",
        alias = "http-port",
        value_name = "PORT",
        value_parser = clap::value_parser!(u16).range(1..),
        help_heading = "Server options"
    )]
    pub http_port: Option<u16>,

    /// Database server: mariadb or mysql (needs --master_db or AEGIR_MASTER_DB)
    #[arg(long = "db_service_type", alias = "db-service-type", value_name = "TYPE", help_heading = "Server options")]
    pub db_service_type: Option<DbServiceType>,

    /// Database admin account, mysql://USER:PASSWORD@HOST:PORT; prefer AEGIR_MASTER_DB so the
    /// password stays out of the process list. Without `:PASSWORD` an update keeps the stored one
    #[arg(
        long = "master_db",
        alias = "master-db",
        value_name = "URL",
        value_parser = parse_secret,
        help_heading = "Server options"
    )]
    pub master_db: Option<Secret>,

    /// Name server: bind (keeps the records of the sites of the web servers that name it)
    #[arg(long = "dns_service_type", alias = "dns-service-type", value_name = "TYPE", help_heading = "Server options")]
    pub dns_service_type: Option<DnsServiceType>,

    /// Server whose name server keeps the records of this server's sites [default: itself when it has dns]
    #[arg(long = "dns_server", alias = "dns-server", value_name = "@SERVER", help_heading = "Server options")]
    pub dns_server: Option<ContextName>,

    /// Directory of the platform's code, e.g. /var/aegir/platforms/wordpress
    #[arg(long, value_name = "PATH", help_heading = "Platform options")]
    pub root: Option<AbsolutePath>,

    /// Server whose web server serves the platform [API default: @server_master]
    #[arg(long = "web_server", alias = "web-server", value_name = "@SERVER", help_heading = "Platform options")]
    pub web_server: Option<ContextName>,

    /// Git repository a verify builds the platform from when its root is missing (no passwords in it)
    // Checked by `save`, not by clap: clap's refusal would repeat a password the url holds.
    #[arg(long = "source_git", alias = "source-git", value_name = "URL", help_heading = "Platform options")]
    pub source_git: Option<String>,

    /// Branch, tag or commit of --source_git [default: the repository's default branch]
    #[arg(long = "source_ref", alias = "source-ref", value_name = "REF", help_heading = "Platform options")]
    pub source_ref: Option<aegir_contract::GitRef>,

    /// .tar.gz in the backup store a verify builds the platform from when its root is missing
    #[arg(long = "source_archive", alias = "source-archive", value_name = "KEY", help_heading = "Platform options")]
    pub source_archive: Option<aegir_contract::StoreKey>,

    /// The (verified) platform whose code serves the site
    #[arg(long, value_name = "@PLATFORM", help_heading = "Site options")]
    pub platform: Option<ContextName>,

    /// Server whose database service holds the site's database [API default: the platform's
    /// web server, when it has a database service]
    #[arg(long = "db_server", alias = "db-server", value_name = "@SERVER", help_heading = "Site options")]
    pub db_server: Option<ContextName>,

    /// Install profile (Drupal), e.g. standard
    #[arg(long, value_name = "PROFILE", help_heading = "Site options")]
    pub profile: Option<ProfileName>,

    /// Language code, e.g. en or pt-br [API default: en]
    #[arg(long, value_name = "CODE", help_heading = "Site options")]
    pub language: Option<LanguageCode>,

    /// Other names the site answers to, separated by commas
    #[arg(long, value_name = "URI,...", value_delimiter = ',', help_heading = "Site options")]
    pub aliases: Vec<SiteUri>,

    /// Redirect the aliases (301) to the site's uri instead of serving the site on them
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Site options"
    )]
    pub redirection: Option<bool>,

    /// The client that owns the site
    #[arg(long, value_name = "NAME", help_heading = "Site options")]
    pub client: Option<ClientName>,

    /// The site's name in its application [API default: the uri]
    #[arg(long, value_name = "TITLE", help_heading = "Site options")]
    pub title: Option<SiteTitle>,

    /// The first administrator's address [API default: the client's, else webmaster@<uri>]
    #[arg(long = "admin_email", alias = "admin-email", value_name = "EMAIL", help_heading = "Site options")]
    pub admin_email: Option<Email>,

    /// Seconds between runs of the site's cron (60 to 604800), or 0 for none [API default: the installation's]
    #[arg(
        long = "cron_interval",
        alias = "cron-interval",
        value_name = "SECONDS",
        value_parser = parse_cron_interval,
        help_heading = "Site options"
    )]
    pub cron_interval: Option<u32>,

    /// The PHP version the site runs, one installed on its web server, e.g. 8.2 (a verify
    /// of the site applies a change) [API default: the web server's]
    #[arg(long = "php_version", alias = "php-version", value_name = "VERSION", help_heading = "Site options")]
    pub php_version: Option<PhpVersion>,

    /// Serve the site over https with a certificate obtained over ACME for its uri and
    /// aliases: off, on (http and https) or forced (http redirects to https) [API default: off]
    #[arg(long, value_name = "MODE", help_heading = "Site options")]
    pub ssl: Option<SslMode>,
}

fn parse_cron_interval(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n @ (0 | 60..=604_800)) => Ok(n),
        _ => Err("give seconds from 60 to 604800, or 0 for no cron".to_owned()),
    }
}

/// Keeps a secret value wrapped from the moment it is read, so it cannot reach a
/// `Debug` print; clap never shows it because this parser cannot fail.
fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The context: @server_<name>, @platform_<name> or @<site uri>
    #[arg(value_name = "@CONTEXT")]
    pub context: ContextName,

    /// The task to run, e.g. verify
    #[arg(value_name = "TASK")]
    pub task: TaskKind,

    #[command(flatten)]
    pub options: TaskOptionArgs,
}

/// Options some site tasks take; the API says which task takes which.
#[derive(Debug, Default, Args)]
pub struct TaskOptionArgs {
    /// restore, backup-delete: the archive to use (`aegir backups @SITE` lists them)
    #[arg(long, value_name = "ID", help_heading = "Task options")]
    pub backup: Option<Uuid>,

    /// backup (and the copy restore, clone, migrate and delete take first): zstd or gzip
    #[arg(long, value_name = "zstd|gzip", help_heading = "Task options")]
    pub compression: Option<Compression>,

    /// clone (required), migrate: the site's new uri
    #[arg(long = "new_uri", alias = "new-uri", value_name = "URI", help_heading = "Task options")]
    pub new_uri: Option<SiteUri>,

    /// clone, migrate: the platform to copy or move the site to
    #[arg(long, value_name = "@PLATFORM", help_heading = "Task options")]
    pub platform: Option<ContextName>,

    /// clone, migrate: the db server for the site's database
    #[arg(long = "db_server", alias = "db-server", value_name = "@SERVER", help_heading = "Task options")]
    pub db_server: Option<ContextName>,

    /// migrate: go ahead although the target platform lacks or downgrades a package the site uses
    #[arg(long, help_heading = "Task options")]
    pub force: bool,

    /// delete: take no final backup first
    #[arg(long = "skip_backup", alias = "skip-backup", help_heading = "Task options")]
    pub skip_backup: bool,

    /// verify of a site with ssl: order a new certificate now, however far its expiry
    #[arg(long, help_heading = "Task options")]
    pub renew: bool,

    /// Run in the bulk lane, after what people ask for (for scripts that queue many tasks)
    #[arg(long, help_heading = "Task options")]
    pub bulk: bool,
}

#[derive(Debug, Args)]
pub struct PagingArgs {
    /// How many to show (at most 500)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: u16,

    /// How many to skip
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

impl PagingArgs {
    pub fn paging(&self) -> Paging {
        Paging { limit: self.limit, offset: self.offset }
    }
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only the tasks of this context
    #[arg(long, value_name = "@CONTEXT")]
    pub context: Option<ContextName>,

    /// Only tasks in this status
    #[arg(long, value_enum)]
    pub status: Option<TaskStatus>,

    #[command(flatten)]
    pub paging: PagingArgs,

    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task's id, as `aegir run` and `aegir tasks` print it
    #[arg(value_name = "ID")]
    pub id: Uuid,

    /// Print the task and its log as JSON (`{"task": ..., "log": [...]}`) without following
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The context: @server_<name>, @platform_<name> or @<site uri>
    #[arg(value_name = "@CONTEXT")]
    pub context: ContextName,

    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    Servers,
    Platforms,
    Sites,
    Clients,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list
    #[arg(value_enum)]
    pub what: ListWhat,

    /// Only the sites on this platform
    #[arg(long, value_name = "@PLATFORM", help_heading = "Site filters")]
    pub platform: Option<ContextName>,

    /// Only the sites of this client
    #[arg(long, value_name = "NAME", help_heading = "Site filters")]
    pub client: Option<ClientName>,

    /// Only the sites in this status
    #[arg(long, value_enum, help_heading = "Site filters")]
    pub status: Option<SiteStatus>,

    /// Only the sites whose uri contains this text
    #[arg(long, value_name = "TEXT", help_heading = "Site filters")]
    pub search: Option<String>,

    #[command(flatten)]
    pub paging: PagingArgs,

    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The context: @server_<name>, @platform_<name> or @<site uri>
    #[arg(value_name = "@CONTEXT")]
    pub context: ContextName,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create or update a client
    Save(ClientSaveArgs),
    /// List clients
    List {
        #[command(flatten)]
        paging: PagingArgs,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a client
    Show {
        /// The client's short name
        name: ClientName,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a client
    Delete {
        /// The client's short name
        name: ClientName,
    },
}

#[derive(Debug, Args)]
pub struct ClientSaveArgs {
    /// The client's short name: lower-case letters, digits and `_`
    pub name: ClientName,

    /// Display name, at most 200 characters
    #[arg(long)]
    pub title: Option<String>,

    /// Contact address
    #[arg(long)]
    pub email: Option<String>,
}

/// `@www.example.com` (or without the `@`): a site, not another kind of context.
fn parse_site(value: &str) -> Result<SiteUri, String> {
    match value.parse::<ContextName>().map_err(|e| e.to_string())? {
        ContextName::Site(uri) => Ok(uri),
        other => Err(format!("`{other}` is a {}, not a site", other.context_type())),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn drush_and_dashed_spellings_both_work() {
        let a =
            Cli::try_parse_from(["aegir", "save", "@server_x", "--context_type=server", "--http_port=8080"]).unwrap();
        let b = Cli::try_parse_from(["aegir", "save", "@server_x", "--context-type", "server", "--http-port", "8080"])
            .unwrap();
        for cli in [a, b] {
            let Command::Save(save) = cli.command else { panic!("not save") };
            assert_eq!(save.context_type.as_deref(), Some("server"));
            assert_eq!(save.http_port, Some(8080));
        }
    }

    #[test]
    fn the_master_db_value_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from(["aegir", "save", "@server_x", "--master_db=mysql://root:hunter2@h"]).unwrap();
        assert!(!format!("{cli:?}").contains("hunter2"));
    }
}
