//! One module per command. Each checks its input completely before it sends anything.

pub mod backups;
pub mod batch;
pub mod certificate;
pub mod client;
pub mod delete;
pub mod import_aegir;
pub mod keys;
pub mod list;
pub mod login;
pub mod run;
pub mod save;
pub mod show;
pub mod tasks;
pub mod users;
