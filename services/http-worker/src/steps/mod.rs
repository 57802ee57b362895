//! One module per step this worker runs.

pub mod platform_delete;
pub mod platform_import;
pub mod platform_verify;
pub mod server_verify;
pub mod site_certificate;
pub mod site_cron;
pub mod site_deploy;
pub mod site_disable;
pub mod site_enable;
pub mod site_files_remove;
pub mod site_install;
pub mod site_login_reset;
pub mod site_remove;
pub mod site_stats;
pub mod site_update;
pub mod site_verify;
