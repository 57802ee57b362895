//! The runtime every worker shares. A worker is a [`StepHandler`] for one service;
//! this crate consumes that service's queue on the worker's own server, checks every
//! message against the contract, runs the step, streams its log lines and publishes
//! its result, and acks only after the result is confirmed by the broker.

pub mod command;
mod health;
mod log;
mod run;
mod slots;

use std::future::Future;

use aegir_contract::{ServerName, ServiceKind, StepDispatched, StepFacts};

pub use log::StepLog;
pub use run::{WorkerArgs, run};

/// How a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What went wrong and what to do about it; shown to the user.
    pub reason: String,
    /// Whether trying again later may succeed.
    pub transient: bool,
}

impl StepError {
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), transient: false }
    }

    pub fn transient(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), transient: true }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What a worker knows how to do.
pub trait StepHandler: Send + Sync + 'static {
    /// The service this worker provides on its server.
    const SERVICE: ServiceKind;

    /// Runs one step. Must be idempotent: after a crash the broker delivers the same
    /// step again.
    fn run(&self, step: &StepDispatched, log: &StepLog) -> impl Future<Output = Result<StepFacts, StepError>> + Send;
}

/// Context a handler may need about where it runs.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    pub server: ServerName,
    pub service: ServiceKind,
    /// `host:pid`.
    pub instance: String,
}
