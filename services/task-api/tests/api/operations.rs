//! What operators and client generators read: OpenAPI, metrics, health, and the answers
//! to requests no endpoint takes.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, eventually};

#[tokio::test]
async fn openapi_metrics_and_health_describe_the_service() {
    let app = TestApp::spawn().await;

    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let operations = [
        ("/api/v1/servers", "get"),
        ("/api/v1/servers/{name}", "put"),
        ("/api/v1/servers/{name}", "get"),
        ("/api/v1/servers/{name}", "delete"),
        ("/api/v1/platforms", "get"),
        ("/api/v1/platforms/{name}", "put"),
        ("/api/v1/platforms/{name}", "delete"),
        ("/api/v1/clients", "get"),
        ("/api/v1/clients/{name}", "put"),
        ("/api/v1/sites", "get"),
        ("/api/v1/sites/{uri}", "get"),
        ("/api/v1/sites/{uri}", "put"),
        ("/api/v1/sites/{uri}", "delete"),
        ("/api/v1/tasks", "post"),
        ("/api/v1/tasks", "get"),
        ("/api/v1/tasks/{id}", "get"),
        ("/api/v1/tasks/{id}/log", "get"),
        ("/healthz", "get"),
    ];
    for (path, method) in operations {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is missing from the OpenAPI document");
    }
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "ServerInput",
        "ServerView",
        "PlatformInput",
        "PlatformView",
        "SiteInput",
        "SiteView",
        "SiteStatus",
        "PackageView",
        "TaskInput",
        "TaskView",
        "LogEntry",
        "ErrorBody",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} is missing");
    }
    for field in ["platform", "db_server", "aliases", "admin_email"] {
        assert!(schemas["SiteInput"]["properties"][field].is_object(), "SiteInput lacks {field}");
    }
    for field in ["status", "packages", "installed_at", "aliases"] {
        assert!(schemas["SiteView"]["properties"][field].is_object(), "SiteView lacks {field}");
    }
    assert!(schemas["PlatformView"]["properties"]["profiles"].is_object());
    let list_params = doc["paths"]["/api/v1/sites"]["get"]["parameters"].to_string();
    for param in ["platform", "client", "status", "search"] {
        assert!(list_params.contains(&format!("\"{param}\"")), "GET /api/v1/sites lacks `{param}`");
    }
    assert_eq!(schemas["DbInput"]["properties"]["admin_password"]["writeOnly"], true);
    assert!(schemas["DbServiceView"]["properties"]["admin_password"].is_null());

    let health = eventually("the broker connection", || async {
        let (status, body) = app.get("/healthz").await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(health, json!({"database": true, "broker_connected": true}));

    assert_error(&app.get("/api/v1/nothing").await, StatusCode::NOT_FOUND, "not_found", None);
    let patched = app.http.patch(app.url("/api/v1/tasks")).send().await.unwrap();
    assert_eq!(patched.status(), StatusCode::METHOD_NOT_ALLOWED);

    assert_eq!(
        app.put("/api/v1/servers/server_master", json!({"http": {"service_type": "nginx"}})).await.0,
        StatusCode::CREATED
    );
    app.post("/api/v1/tasks", json!({"context": "@server_master", "task": "verify"})).await;
    let metrics = app.get_text("/metrics").await;
    for expected in [
        r#"aegir_api_http_requests_total{method="PUT",route="/api/v1/servers/{name}",status="201"}"#,
        r#"aegir_api_http_request_duration_seconds_bucket{method="PUT",route="/api/v1/servers/{name}",status="201""#,
        r#"aegir_api_tasks_requested_total{context_type="server",task="verify"}"#,
        "aegir_api_outbox_depth",
    ] {
        assert!(metrics.contains(expected), "/metrics lacks {expected}:\n{metrics}");
    }
    app.stop().await;
}
