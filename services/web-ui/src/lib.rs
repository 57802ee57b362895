//! The web front end: plain server-rendered pages for people, with a little JavaScript for
//! the live task log.
//!
//! Every page is drawn from the JSON API, called in-process with the visitor's own session:
//! a page shows exactly what its user may see through the API, a form is checked by the
//! same validation, and every change lands in the same audit log. This crate holds no
//! data and no rules of its own beyond how to show them.

mod assets;
mod backend;
mod csrf;
mod form;
mod pages;
mod render;
mod visitor;

use axum::Router;
use axum::routing::{get, post};

pub use backend::Backend;

/// The pages, in front of `api` (the whole JSON API router, which they call and which
/// stays served as it is).
pub fn router(api: Router) -> Router {
    let backend = Backend::new(api.clone());
    Router::new()
        .route("/", get(pages::dashboard::show))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/sites", get(pages::sites::list))
        .route("/sites/new", get(pages::sites::new_form).post(pages::sites::create))
        .route("/sites/{uri}", get(pages::sites::show))
        .route("/sites/{uri}/edit", get(pages::sites::edit_form).post(pages::sites::update))
        .route("/sites/{uri}/tasks", post(pages::sites::act))
        .route("/platforms", get(pages::platforms::list))
        .route("/platforms/new", get(pages::platforms::new_form).post(pages::platforms::create))
        .route("/platforms/{name}", get(pages::platforms::show))
        .route("/platforms/{name}/edit", get(pages::platforms::edit_form).post(pages::platforms::update))
        .route("/platforms/{name}/tasks", post(pages::platforms::act))
        .route("/servers", get(pages::servers::list))
        .route("/servers/new", get(pages::servers::new_form).post(pages::servers::create))
        .route("/servers/{name}", get(pages::servers::show))
        .route("/servers/{name}/edit", get(pages::servers::edit_form).post(pages::servers::update))
        .route("/servers/{name}/tasks", post(pages::servers::act))
        .route("/clients", get(pages::clients::list))
        .route("/clients/new", get(pages::clients::new_form).post(pages::clients::create))
        .route("/clients/{name}", get(pages::clients::show))
        .route("/clients/{name}/edit", get(pages::clients::edit_form).post(pages::clients::update))
        .route("/clients/{name}/platforms", post(pages::clients::grant))
        .route("/tasks", get(pages::tasks::list))
        .route("/tasks/{id}", get(pages::tasks::show))
        .route("/tasks/{id}/cancel", post(pages::tasks::cancel))
        .route("/ui/app.css", get(assets::css))
        .route("/ui/app.js", get(assets::js))
        .with_state(backend)
        .merge(api)
}
