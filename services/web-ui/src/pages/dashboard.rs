//! `GET /`: what there is and what is happening.

use axum::extract::State;
use axum::response::Html;
use minijinja::{Value as Tpl, context};
use serde_json::Value;

use crate::backend::Backend;
use crate::render::{PageError, Session};
use crate::visitor::Visitor;

/// Recent tasks shown.
const RECENT: usize = 15;

pub async fn show(State(backend): State<Backend>, visitor: Visitor) -> Result<Html<String>, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    // A client user sees its sites and granted platforms; servers and clients are the
    // admins' (the API refuses them to others, so those counts are left out).
    let total = async |path: &str| backend.get(&visitor, path).await.ok().and_then(|page| page.get("total").cloned());
    let counts = context! {
        sites => total("/api/v1/sites?limit=1").await,
        enabled => total("/api/v1/sites?limit=1&status=enabled").await,
        failed => total("/api/v1/sites?limit=1&status=failed").await,
        platforms => total("/api/v1/platforms?limit=1").await,
        servers => total("/api/v1/servers?limit=1").await,
        clients => total("/api/v1/clients?limit=1").await,
        running => total("/api/v1/tasks?limit=1&status=running").await,
        queued => total("/api/v1/tasks?limit=1&status=queued").await,
    };
    let tasks = backend.get(&visitor, &format!("/api/v1/tasks?limit={RECENT}")).await?;
    let tasks = tasks.get("items").cloned().unwrap_or(Value::Array(Vec::new()));
    session.render("dashboard.html", context! { section => "dashboard", counts, tasks => Tpl::from_serialize(&tasks) })
}
