//! Settings every service shares. Each service flattens [`CommonArgs`] into its own
//! command line; every option can also come from an `AEGIR_*` environment variable.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// RabbitMQ address, e.g. amqp://user:password@host:5672/%2f
    #[arg(
        long,
        env = "AEGIR_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// Log format.
    #[arg(long, env = "AEGIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Settings of the services that keep state in PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL address, e.g. postgres://aegir@127.0.0.1/aegir
    #[arg(
        long,
        env = "AEGIR_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/aegir",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Connections in the pool.
    #[arg(long, env = "AEGIR_DATABASE_POOL", default_value_t = 10)]
    pub database_pool: u32,
}

/// The deployment's master signing key, held by the control plane (task-api and the
/// scheduler) only. Give it as a file (preferred) or as the value itself.
#[derive(Debug, Clone, Args)]
pub struct SigningKeyArgs {
    /// File holding the master signing key: 64 hexadecimal characters, readable by this
    /// service only (make one with `aegir keys new`)
    #[arg(long, env = "AEGIR_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<std::path::PathBuf>,

    /// The master signing key itself (prefer the file: the environment of a process can
    /// be read by its user's other processes)
    #[arg(long, env = "AEGIR_SIGNING_KEY", hide_env_values = true, conflicts_with = "signing_key_file")]
    pub signing_key: Option<String>,
}

/// A worker's key: its own server's signing key, derived from the master key with
/// `aegir keys server @server_<name>`.
#[derive(Debug, Clone, Args)]
pub struct WorkerKeyArgs {
    /// File holding this server's signing key (64 hexadecimal characters)
    #[arg(long, env = "AEGIR_WORKER_KEY_FILE")]
    pub worker_key_file: Option<std::path::PathBuf>,

    /// This server's signing key itself (prefer the file)
    #[arg(long, env = "AEGIR_WORKER_KEY", hide_env_values = true, conflicts_with = "worker_key_file")]
    pub worker_key: Option<String>,
}
