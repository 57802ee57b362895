//! Templates, the signed-in session every page is drawn for, and how failures show.

use std::sync::LazyLock;

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value as Tpl, context};
use serde_json::Value;

use crate::backend::{ApiFailure, Backend, encode};
use crate::csrf;
use crate::form::FormData;
use crate::visitor::Visitor;

/// The templates, compiled in.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("dashboard.html", include_str!("../templates/dashboard.html")),
    ("sites.html", include_str!("../templates/sites.html")),
    ("tasks.html", include_str!("../templates/tasks.html")),
    ("task.html", include_str!("../templates/task.html")),
    ("site.html", include_str!("../templates/site.html")),
    ("site_form.html", include_str!("../templates/site_form.html")),
    ("platforms.html", include_str!("../templates/platforms.html")),
    ("platform.html", include_str!("../templates/platform.html")),
    ("platform_form.html", include_str!("../templates/platform_form.html")),
    ("servers.html", include_str!("../templates/servers.html")),
    ("server.html", include_str!("../templates/server.html")),
    ("server_form.html", include_str!("../templates/server_form.html")),
    ("clients.html", include_str!("../templates/clients.html")),
    ("client.html", include_str!("../templates/client.html")),
    ("client_form.html", include_str!("../templates/client_form.html")),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        // The templates are part of the binary; one that does not parse is a bug the tests see.
        if let Err(e) = env.add_template(name, source) {
            panic!("template {name}: {e:#}");
        }
    }
    env.add_filter("when", when);
    env.add_filter("bytes", bytes);
    env.add_filter("q", |text: String| encode(&text));
    env
});

/// A page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No session, or it expired: sign in, then come back to `next`.
    #[error("sign in first")]
    SignIn { next: String },
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error("cannot draw the page: {0:#}")]
    Render(#[from] minijinja::Error),
    #[error("{1}")]
    Refused(StatusCode, String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::SignIn { next } => return Redirect::to(&format!("/login?next={}", encode(&next))).into_response(),
            Self::Api(failure) if failure.status == StatusCode::UNAUTHORIZED => {
                return Redirect::to("/login").into_response();
            }
            // The API's advice after `;` speaks of API calls; a page keeps what is missing.
            Self::Api(failure) if failure.status == StatusCode::NOT_FOUND => {
                let missing = failure.message.split(';').next().unwrap_or_default().trim().to_owned();
                (failure.status, format!("{missing}, or it is not one you may see; the lists show what you can open"))
            }
            Self::Api(failure) => (failure.status, failure.message),
            Self::Render(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot render a page");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn; the service log says why".to_owned())
            }
            Self::Refused(status, message) => (status, message),
        };
        let body = ENV
            .get_template("error.html")
            .and_then(|t| {
                t.render(context! { status => status.as_u16(), reason => status.canonical_reason(), message })
            })
            .unwrap_or_else(|_| "error".to_owned());
        (status, Html(body)).into_response()
    }
}

/// The signed-in user a page is drawn for.
pub struct Session {
    /// `{user, role, client}` as the API's `/api/v1/me` tells it.
    pub me: Value,
    /// The token the page's forms carry.
    pub csrf: String,
}

impl Session {
    /// The visitor's session, or [`PageError::SignIn`].
    pub async fn of(backend: &Backend, visitor: &Visitor) -> Result<Self, PageError> {
        let Some(session) = &visitor.session else {
            return Err(PageError::SignIn { next: visitor.here.clone() });
        };
        let me = match backend.get(visitor, "/api/v1/me").await {
            Ok(me) => me,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                return Err(PageError::SignIn { next: visitor.here.clone() });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self { me, csrf: csrf::token(session) })
    }

    pub fn is_admin(&self) -> bool {
        self.me.get("role").and_then(Value::as_str) == Some("admin")
    }

    /// Checks a posted form's `csrf` field against this session.
    pub fn check_form(&self, visitor: &Visitor, given: Option<&str>) -> Result<(), PageError> {
        let session = visitor.session.as_deref().unwrap_or_default();
        if given.is_some_and(|given| csrf::matches(session, given)) {
            return Ok(());
        }
        Err(PageError::Refused(
            StatusCode::FORBIDDEN,
            "this form is out of date or came from another site; reload the page and send it again".into(),
        ))
    }

    /// `name` drawn with `values` plus the session's `me` and `csrf`.
    pub fn render(&self, name: &str, values: Tpl) -> Result<Html<String>, PageError> {
        let all =
            context! { me => Tpl::from_serialize(&self.me), csrf => self.csrf, is_admin => self.is_admin(), ..values };
        page(name, all)
    }
}

/// A form posted by a signed-in visitor, its `csrf` token checked: what every handler of
/// a change takes, so none can forget the check.
pub struct SignedForm {
    pub visitor: Visitor,
    pub session: Session,
    pub form: FormData,
}

impl FromRequest<Backend> for SignedForm {
    type Rejection = PageError;

    async fn from_request(request: Request, backend: &Backend) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let Ok(visitor) = Visitor::from_request_parts(&mut parts, backend).await;
        let session = Session::of(backend, &visitor).await?;
        let Form(fields) =
            Form::<Vec<(String, String)>>::from_request(Request::from_parts(parts, body), backend).await.map_err(
                |e| PageError::Refused(StatusCode::BAD_REQUEST, format!("cannot read the form: {}", e.body_text())),
            )?;
        let form = FormData(fields);
        session.check_form(&visitor, form.get("csrf"))?;
        Ok(Self { visitor, session, form })
    }
}

/// `name` drawn with `values`, for pages without a session (sign-in).
pub fn page(name: &str, values: Tpl) -> Result<Html<String>, PageError> {
    Ok(Html(ENV.get_template(name)?.render(values)?))
}

/// An RFC 3339 time as "2026-11-26 16:50:02 UTC"; anything else as it is.
fn when(value: Option<String>) -> String {
    let Some(value) = value else { return "—".to_owned() };
    match (value.get(..10), value.get(11..19)) {
        (Some(day), Some(time)) if value.as_bytes().get(10) == Some(&b'T') => format!("{day} {time} UTC"),
        _ => value,
    }
}

/// A byte count as people read it: "1.2 MB".
fn bytes(value: Option<f64>) -> String {
    let Some(mut value) = value else { return "—".to_owned() };
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            ENV.get_template(name).unwrap();
        }
    }

    /// Drawn with data shaped like the API's, so a template that calls something
    /// minijinja lacks fails here rather than in front of a user.
    #[test]
    fn pages_draw_from_api_shaped_data() {
        let me = serde_json::json!({"user": "ada", "role": "admin", "client": null});
        let session = Session { me, csrf: "t0ken".into() };
        let task = serde_json::json!({
            "id": "0190e6c4-0000-7000-8000-000000000001", "context": "@www.example.com", "task": "install",
            "lane": "interactive", "status": "running", "created_at": "2026-11-26T16:50:02Z",
            "started_at": "2026-11-26T16:50:03Z", "finished_at": null,
        });
        let lines = serde_json::json!([{"seq": 1, "at": "2026-11-26T16:50:03Z", "level": "info",
            "source": "http-worker", "step": 0, "message": "writing <vhost>"}]);
        let html = session
            .render(
                "task.html",
                context! { section => "tasks", task => Tpl::from_serialize(&task),
                lines => Tpl::from_serialize(&lines), last_seq => 1 },
            )
            .unwrap()
            .0;
        assert!(html.contains("writing &lt;vhost&gt;"), "{html}");
        assert!(html.contains(r#"href="/sites/www.example.com""#), "{html}");
        assert!(html.contains(r#"data-last-seq="1""#), "{html}");
        assert!(html.contains(r#"value="t0ken""#), "{html}");

        let sites = serde_json::json!([{"uri": "a.example.com", "status": "enabled", "platform": "@platform_wp",
            "client": "acme", "ssl": "off"}]);
        let html = session
            .render(
                "sites.html",
                context! { section => "sites", sites => Tpl::from_serialize(&sites), total => 120,
                page => 2, pages => 3, kept => "&search=a", filters => context! { search => "a" } },
            )
            .unwrap()
            .0;
        assert!(html.contains(r#"<a href="/sites/a.example.com">a.example.com</a>"#), "{html}");
        assert!(html.contains("/sites?page=3&amp;search=a"), "{html}");
        assert!(html.contains(r#"aria-current="page">Sites"#), "{html}");
    }

    #[tokio::test]
    async fn a_missing_page_says_what_is_missing_without_api_advice() {
        let failure = ApiFailure {
            status: StatusCode::NOT_FOUND,
            field: None,
            message: "no site `x.example.com`; create it with PUT /api/v1/sites/x.example.com".into(),
        };
        let response = PageError::Api(failure).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("no site `x.example.com`, or it is not one you may see"), "{body}");
        assert!(!body.contains("PUT"), "{body}");
    }

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(when(Some("2026-11-26T16:50:02.123Z".into())), "2026-11-26 16:50:02 UTC");
        assert_eq!(when(None), "—");
        assert_eq!(bytes(Some(999.0)), "999 B");
        assert_eq!(bytes(Some(1_234_567.0)), "1.2 MB");
    }
}
