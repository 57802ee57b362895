//! The message contract: every message that crosses RabbitMQ is defined here, once.
//!
//! Names (`@server_master`, `@platform_x`, `@example.com`) are validated when they are
//! parsed or deserialized, so a value of one of these types is always safe to use as a
//! path component, a routing key part or a label in a log line.

pub mod backup;
#[cfg(any(feature = "certificates", test))]
pub mod certificate;
pub mod commands;
pub mod context;
pub mod messages;
pub mod names;
pub mod routing;
pub mod schema;
pub mod secret;
pub mod source;

pub use backup::*;
pub use commands::*;
pub use context::*;
pub use messages::*;
pub use names::*;
pub use routing::*;
pub use secret::Secret;
pub use source::*;
