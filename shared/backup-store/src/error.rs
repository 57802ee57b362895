/// What went wrong with the store or an archive, worded for the person who asked for
/// the backup or the restore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the backup store is not set up right: {0}")]
    Config(String),
    #[error("`{key}` is not in the backup store {store}")]
    NotFound { store: String, key: String },
    #[error("the backup store {store} could not {action}: {source}")]
    Store {
        store: String,
        action: String,
        #[source]
        source: object_store::Error,
    },
    #[error("archive {key} is damaged: {reason}; it cannot be restored")]
    Damaged { key: String, reason: String },
    #[error(
        "archive {key} was never finished: its manifest {manifest_key} is missing; it cannot be restored, make a new backup"
    )]
    Incomplete { key: String, manifest_key: String },
    #[error(
        "the database dump {key} is not in the backup store: the database dump step did not run or did not finish; run the backup again"
    )]
    DumpMissing { key: String },
    /// Worth trying again: the store or the network failed while streaming.
    #[error("{0}")]
    Transient(String),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// True when trying the same thing again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store { .. } | Error::Transient(_))
    }
}
