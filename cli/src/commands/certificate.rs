//! `aegir @SITE certificate --cert FILE --key FILE`: give a site a certificate of its
//! owner's instead of one from ACME. task-api checks it (422 says what is wrong, and
//! nothing changes); a verify task installs it, whose log is followed live.
//! `aegir @SITE certificate --remove` goes back to ACME the same way.

use std::process::ExitCode;

use aegir_contract::SiteUri;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Api, TaskView};
use crate::args::CertificateArgs;
use crate::error::CliError;

/// Both files, read before anything is sent. The key stays in this body only.
pub fn read(args: &CertificateArgs) -> Result<Value, CliError> {
    let file = |option: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| CliError::Usage {
            field: option.to_owned(),
            message: format!("cannot read {}: {e}; give a PEM file", path.display()),
        })
    };
    let missing = |option: &str| CliError::Usage {
        field: option.to_owned(),
        message: format!("{option} is missing; give the PEM files with --cert and --key, or --remove"),
    };
    let certificate = file("--cert", args.cert.as_deref().ok_or_else(|| missing("--cert"))?)?;
    let key = file("--key", args.key.as_deref().ok_or_else(|| missing("--key"))?)?;
    Ok(json!({ "certificate": certificate, "key": key }))
}

pub async fn run(api: &Api, site: &SiteUri, body: Value) -> Result<ExitCode, CliError> {
    let answer = api.send_json(Method::PUT, &["sites", site.as_str(), "certificate"], Some(&body)).await?;
    drop(body);
    let task: TaskView = api.typed(answer)?;
    println!("certificate of @{site} accepted; task {} queued: {} {}", task.id, task.task, task.context);
    crate::commands::run::follow(api, &task).await
}

/// Removes the certificate supplied for the site; the verify that orders one from ACME
/// in its place is followed live.
pub async fn remove(api: &Api, site: &SiteUri) -> Result<ExitCode, CliError> {
    let answer = api.send_json(Method::DELETE, &["sites", site.as_str(), "certificate"], None).await?;
    let task: TaskView = api.typed(answer)?;
    println!("supplied certificate of @{site} removed; task {} queued: {} {}", task.id, task.task, task.context);
    crate::commands::run::follow(api, &task).await
}
