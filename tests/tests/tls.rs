//! TLS to RabbitMQ and PostgreSQL, by configuration alone: every service is given an
//! `amqps://` broker URL (trusting the installation's CA through `SSL_CERT_FILE`) and a
//! PostgreSQL URL with `sslmode=verify-ca`; a task runs end to end, and both servers
//! report each of the services' connections encrypted.
//!
//! deploy/test.sh makes the CA and RabbitMQ's amqps listener (deploy/lib.sh,
//! `aegir__ensure_amqps`); PostgreSQL uses the certificate its cluster was made with.

use std::path::PathBuf;

use aegir_e2e::{Options, System, Tls, mariadb_url, postgres_admin_url};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread")]
async fn the_services_talk_to_rabbitmq_and_postgresql_over_tls() {
    let tls_dir = PathBuf::from(std::env::var("AEGIR_TLS_DIR").unwrap_or_else(|_| "/etc/aegir/tls".into()));
    let amqp_ca = tls_dir.join("ca.pem");
    assert!(
        amqp_ca.exists(),
        "{} is missing: deploy/test.sh makes it with RabbitMQ's amqps listener",
        amqp_ca.display()
    );
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("PostgreSQL reachable");
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut admin).await.unwrap();
    assert_eq!(ssl, "on", "PostgreSQL must have ssl = on for this test (Debian's clusters do)");
    let postgres_root: String = sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&mut admin).await.unwrap();

    let tls = Tls { amqps_port: 5671, amqp_ca, postgres_root: postgres_root.into() };
    let system = System::start_with(Options::default().tls(tls)).await;
    system.save_server(&mariadb_url()).await;
    let id = system.post_task(&format!("@{}", system.server), "verify").await;
    let view = system.wait_task(&id).await;
    assert_eq!(view["status"], "success", "a task runs with every link encrypted: {view}");

    // PostgreSQL: task-api's and the scheduler's connections to this test's database.
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&system.database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(encrypted >= 2, "task-api and the scheduler connect over TLS ({encrypted} encrypted)");
    assert_eq!(plain, 0, "no service connects to PostgreSQL in the clear");

    // RabbitMQ: each of the five services' connections to this test's vhost (the
    // listing has every vhost's: other systems on the broker are not this test's).
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "vhost", "ssl", "ssl_protocol", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("connection_name"))
        .filter_map(|l| l.strip_prefix(system.vhost.as_str())?.strip_prefix('\t'))
        .collect();
    assert!(rows.len() >= 5, "every service is connected: {listing}");
    for row in rows {
        assert!(row.starts_with("true"), "a connection in the clear: {row}");
    }
}
