//! HTTPS of sites: `ssl` saved, refused and carried to tasks, `renew` carried to the
//! scheduler, and what a certificate step reports: a failed order shows on the site with
//! when it is tried again, a successful one clears it.

use std::time::Duration;

use aegir_contract::{CertificateFacts, CertificateSource, SslMode, StepFacts, TaskKind, TaskOutcome, TaskTarget};
use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, eventually, step_succeeded};
use crate::sites::{finish, put_ok, request, setup};

fn certificate(serial: &str, error: Option<&str>) -> StepFacts {
    StepFacts {
        certificate: Some(CertificateFacts {
            expires_at: Some(Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap()),
            issuer: Some("CN=Pebble Intermediate CA".to_owned()),
            serial: Some(serial.to_owned()),
            error: error.map(str::to_owned),
            source: Some(CertificateSource::Acme),
        }),
        ..StepFacts::default()
    }
}

#[tokio::test]
async fn ssl_is_checked_carried_and_a_failed_order_shows_on_the_site_until_one_succeeds() {
    let app = TestApp::spawn().await;
    setup(&app).await;

    let answer =
        app.put("/api/v1/sites/secure.example.com", json!({"platform": "@platform_wp", "ssl": "always"})).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("ssl"));
    let view =
        put_ok(&app, "/api/v1/sites/secure.example.com", json!({"platform": "@platform_wp", "ssl": "forced"})).await;
    assert_eq!(view["ssl"], "forced", "{view}");
    assert_eq!(view["ssl_status"], "pending", "{view}");
    let plain = put_ok(&app, "/api/v1/sites/plain.example.com", json!({"platform": "@platform_wp"})).await;
    assert_eq!((plain["ssl"].as_str(), plain["ssl_status"].as_str()), (Some("off"), Some("off")));

    let (install, target) = request(&app, "@secure.example.com", "install").await;
    let TaskTarget::Site { site } = &target else { panic!("a site target: {target:?}") };
    assert_eq!(site.ssl, SslMode::Forced);

    // The order failed: the site shows why and when it is tried again.
    let failed = certificate("0a:0b", Some("the ACME server did not validate secure.example.com"));
    app.publish(&step_succeeded(install, 2, "server_master.http", failed)).await;
    finish(&app, install, TaskOutcome::Success).await;
    let view = eventually("the failure on the site", || async {
        let (_, view) = app.get("/api/v1/sites/secure.example.com").await;
        (view["ssl_status"] == "failing").then_some(view)
    })
    .await;
    assert!(view["ssl_error"].as_str().unwrap().contains("did not validate"), "{view}");
    assert!(view["ssl_retry_at"].is_string(), "{view}");
    assert_eq!(view["ssl_serial"], "0a:0b");

    // A renewal asked for early reaches the scheduler.
    let (status, task) =
        app.post("/api/v1/tasks", json!({"context": "@secure.example.com", "task": "verify", "renew": true})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let (requested, _) = app.next_task_request().await;
    assert!(requested.options.renew_certificate);
    app.publish(&step_succeeded(requested.task_id, 1, "server_master.http", certificate("0c:0d", None))).await;
    finish(&app, requested.task_id, TaskOutcome::Success).await;
    let view = eventually("the new certificate on the site", || async {
        let (_, view) = app.get("/api/v1/sites/secure.example.com").await;
        (view["ssl_status"] == "valid").then_some(view)
    })
    .await;
    assert_eq!(view["ssl_serial"], "0c:0d");
    assert!(view["ssl_error"].is_null() && view["ssl_retry_at"].is_null(), "{view}");
    assert_eq!(view["ssl_expires_at"], "2031-01-02T03:04:05Z");
}

#[tokio::test]
async fn the_renewal_queue_renews_an_acme_certificate_near_its_end_but_never_one_its_owner_supplied() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    for uri in ["ordered.example.com", "supplied.example.com"] {
        put_ok(&app, &format!("/api/v1/sites/{uri}"), json!({"platform": "@platform_wp", "ssl": "on"})).await;
    }
    // Both installed and serving a certificate that ends in 10 days, inside the 30-day
    // window: one from ACME, one its owner supplied.
    sqlx::query(
        "UPDATE sites SET status = 'enabled', ssl_expires_at = now() + interval '10 days',
                ssl_issuer = 'CN=Some CA', ssl_serial = '0a:0b',
                ssl_source = CASE uri WHEN 'supplied.example.com' THEN 'user' ELSE 'acme' END
         WHERE uri IN ('ordered.example.com', 'supplied.example.com')",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let renewal = task_api::cert_queue::Renewal {
        every: Duration::from_secs(1),
        window: Duration::from_secs(30 * 86_400),
        retry: Duration::from_secs(600),
    };
    let queued = task_api::cert_queue::queue_due(&app.pool, renewal).await.unwrap();
    assert_eq!(queued, 1, "one renewal: the ACME site's");
    let (requested, _) = app.next_task_request().await;
    assert_eq!(requested.kind, TaskKind::Verify);
    let TaskTarget::Site { site } = &requested.target else { panic!("a site target: {:?}", requested.target) };
    assert_eq!(site.uri.as_str(), "ordered.example.com");

    let (_, ordered) = app.get("/api/v1/tasks?context=@ordered.example.com").await;
    assert_eq!(ordered["total"], 1, "{ordered}");
    assert_eq!(ordered["items"][0]["task"], "verify", "{ordered}");
    let (_, supplied) = app.get("/api/v1/tasks?context=@supplied.example.com").await;
    assert_eq!(supplied["total"], 0, "no renewal of a supplied certificate: {supplied}");

    let (_, view) = app.get("/api/v1/sites/supplied.example.com").await;
    assert_eq!((view["ssl_source"].as_str(), view["ssl_status"].as_str()), (Some("user"), Some("expiring")), "{view}");
    let (_, view) = app.get("/api/v1/sites/ordered.example.com").await;
    assert_eq!((view["ssl_source"].as_str(), view["ssl_status"].as_str()), (Some("acme"), Some("valid")), "{view}");

    // Later rounds leave the supplied certificate alone too.
    assert_eq!(task_api::cert_queue::queue_due(&app.pool, renewal).await.unwrap(), 0);
    let (_, supplied) = app.get("/api/v1/tasks?context=@supplied.example.com").await;
    assert_eq!(supplied["total"], 0, "{supplied}");
    app.stop().await;
}
