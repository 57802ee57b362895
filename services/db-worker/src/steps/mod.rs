//! One module per step this worker runs.

pub mod server_verify;
pub mod site_backup;
pub mod site_database;
pub mod site_stats;
