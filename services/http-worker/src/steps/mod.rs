//! One module per step this worker runs.

pub mod platform_verify;
pub mod server_verify;
