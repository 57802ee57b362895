//! PostgreSQL for the services that keep state (task-api, scheduler).
//!
//! [`connect`] opens a pool, creating the database and the service's own schema when
//! they are missing, and waits for PostgreSQL to come up. [`outbox`] makes "change the
//! database and publish a message" one atomic act: the message is written in the same
//! transaction as the change, and a relay publishes it with confirms afterwards.

mod connect;
pub mod outbox;

pub use connect::{ConnectError, connect};
pub use outbox::{Outbox, OutboxError, Staged};
