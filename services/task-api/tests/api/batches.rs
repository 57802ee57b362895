//! Fleet operations: a batch runs a task on every site of a platform, `parallel` at a
//! time, and stops starting new ones once more than `max_failures` failed.

use aegir_contract::{Lane, TaskKind, TaskOutcome};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, eventually};
use crate::sites::{finish, full_site, put_ok, request, setup};

async fn batch(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/batches/{id}")).await.1
}

/// Takes the next `n` task requests off the scheduler's queue.
async fn next_requests(app: &TestApp, n: usize) -> Vec<(Uuid, TaskKind, String)> {
    let mut taken = Vec::new();
    for _ in 0..n {
        let (requested, _) = app.next_task_request().await;
        assert_eq!(requested.lane, Lane::Bulk, "a batch's tasks give way to people's: {requested:?}");
        taken.push((requested.task_id, requested.kind, requested.target.context().to_string()));
    }
    taken
}

#[tokio::test]
async fn a_batch_verifies_every_site_a_few_at_a_time_and_stops_past_its_failures() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let uris: Vec<String> = (1..=4).map(|i| format!("site{i}.example.com")).collect();
    for uri in &uris {
        let mut site = full_site();
        site["aliases"] = json!([]);
        put_ok(&app, &format!("/api/v1/sites/{uri}"), site).await;
        let (install, _) = request(&app, &format!("@{uri}"), "install").await;
        finish(&app, install, TaskOutcome::Success).await;
    }

    // Refusals first: nothing starts.
    for (body, status, field) in [
        (json!({"platform": "@platform_wp", "task": "delete"}), StatusCode::UNPROCESSABLE_ENTITY, "task"),
        (json!({"platform": "@platform_wp", "task": "migrate"}), StatusCode::UNPROCESSABLE_ENTITY, "to_platform"),
        (json!({"platform": "@platform_nope", "task": "verify"}), StatusCode::NOT_FOUND, "platform"),
        (
            json!({"platform": "@platform_wp", "task": "verify", "parallel": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parallel",
        ),
        (
            json!({"platform": "@platform_wp", "task": "verify", "parallel": 5001}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parallel",
        ),
    ] {
        let answer = app.post("/api/v1/batches", body).await;
        assert_eq!(answer.0, status, "{}", answer.1);
        assert_eq!(answer.1["error"]["field"], field, "{}", answer.1);
    }
    assert_eq!(app.count("batches").await, 0);

    // Two at a time, stop after more than one failure.
    let (status, view) = app
        .post(
            "/api/v1/batches",
            json!({"platform": "@platform_wp", "task": "verify", "parallel": 2, "max_failures": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{view}");
    assert_eq!(view["summary"]["total"], 4);
    let id = view["id"].as_str().unwrap().to_owned();
    let first = next_requests(&app, 2).await;
    assert!(first.iter().all(|(_, kind, _)| *kind == TaskKind::Verify));
    assert_eq!(batch(&app, &id).await["summary"]["running"], 2, "no more than `parallel` at once");
    for (task, _, _) in &first {
        finish(&app, *task, TaskOutcome::Failed).await;
    }
    let stopped = eventually("the batch stops", || async {
        let view = batch(&app, &id).await;
        (view["status"] == "stopped").then_some(view)
    })
    .await;
    assert_eq!(stopped["summary"]["failed"], 2);
    assert_eq!(stopped["summary"]["skipped"], 2, "the sites it did not reach are skipped: {stopped}");
    assert_eq!(stopped["failures"].as_array().unwrap().len(), 2);
    assert!(stopped["failures"][0]["reason"].as_str().unwrap().contains("exited with status 1"), "{stopped}");
    assert!(stopped["finished_at"].is_string());

    // A batch that may fail more runs every site to the end (as many at once as a large
    // fleet's batch may).
    let (status, view) = app
        .post(
            "/api/v1/batches",
            json!({"platform": "@platform_wp", "task": "verify", "parallel": 5000, "max_failures": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{view}");
    assert_eq!(view["parallel"], 5000, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let (task, _, context) = next_requests(&app, 1).await.remove(0);
        let outcome = if context == "@site1.example.com" { TaskOutcome::Failed } else { TaskOutcome::Success };
        finish(&app, task, outcome).await;
        seen.push(context);
    }
    seen.sort();
    assert_eq!(seen, uris.iter().map(|u| format!("@{u}")).collect::<Vec<_>>(), "every site once");
    let done = eventually("the batch is done", || async {
        let view = batch(&app, &id).await;
        (view["status"] == "done").then_some(view)
    })
    .await;
    assert_eq!((done["summary"]["success"].clone(), done["summary"]["failed"].clone()), (json!(3), json!(1)));
    assert_error(
        &app.get("/api/v1/batches/not-an-id").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("id"),
    );
    app.stop().await;
}
