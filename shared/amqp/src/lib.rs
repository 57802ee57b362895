//! Everything the services know about RabbitMQ lives here: the topology (declared in
//! one place), a [`Broker`] handle that reconnects by itself, publishing with
//! confirms, consuming with manual acks, signed messages, and trace context carried
//! in headers.

mod acks;
mod broker;
mod consume;
pub mod dead_letter;
mod publish;
pub mod signing;
pub mod topology;
mod trace;

pub use broker::{AmqpError, Broker, Outgoing, Unconfirmed};
pub use consume::{ConsumerSpec, Delivery, consume};
pub use publish::Publishable;
pub use trace::{current_trace_id, extract_trace_context, inject_trace_context};

/// Options for acking and rejecting deliveries.
pub use lapin::options as lapin_options;
/// Header values, for consumers that read what RabbitMQ adds (e.g. `x-death`).
pub use lapin::types as lapin_types;
