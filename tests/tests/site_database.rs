//! The db-worker's site database steps against the real MariaDB: a site gets its own
//! database and a user with privileges on it alone, granted to the web server's address
//! (never `%`); dropping removes both; both steps can run twice.
//!
//! The steps are sent straight to the db-worker's queue as the scheduler would send
//! them ([`System::run_step`]), so this test does not depend on the API's site endpoints.

use aegir_contract::*;
use aegir_e2e::{System, mariadb_admin, mariadb_service, random_suffix};
use sqlx::{Connection, MySqlConnection};

fn site(server: &str) -> SiteContext {
    let name = ServerName::parse(server).unwrap();
    let context = ServerContext {
        name,
        remote_host: HostName::parse("localhost").unwrap(),
        http: Some(HttpService { service_type: HttpServiceType::Nginx, port: 80 }),
        db: Some(mariadb_service()),
        dns: None,
    };
    let uri = SiteUri::parse(&format!("db-{}.example.com", random_suffix())).unwrap();
    let db = DbIdent::for_site(&uri, &random_suffix());
    SiteContext {
        aliases: vec![],
        redirection: false,
        platform: PlatformContext {
            name: PlatformName::parse("platform_any").unwrap(),
            root: AbsolutePath::parse("/var/aegir/platforms/any").unwrap(),
            web_server: context.clone(),
            source: None,
        },
        platform_type: PlatformType::Php,
        db_server: context,
        database: SiteDatabase { name: db.clone(), user: db, password: Secret::new("Zx81spectrumQL2000ab") },
        profile: None,
        language: LanguageCode::parse("en").unwrap(),
        title: SiteTitle::parse("Example").unwrap(),
        admin_email: Email::parse("admin@example.com").unwrap(),
        client: None,
        php_version: None,
        dns_server: None,
        ssl: Default::default(),
        uri,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_gets_its_own_database_and_user_and_dropping_removes_both() {
    let system = System::start().await;
    let site = site(&system.server);
    let (name, user) = (site.database.name.to_string(), site.database.user.to_string());

    for _ in 0..2 {
        let result = system.run_step(StepAction::SiteDatabaseCreate { site: site.clone() }).await;
        assert!(matches!(result.outcome, StepOutcome::Success { .. }), "{result:?}");
    }
    let mut conn = mariadb_admin().await;
    let databases: Vec<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(&name)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(databases.len(), 1);
    let mut hosts: Vec<(String,)> =
        sqlx::query_as("SELECT Host FROM mysql.user WHERE User = ?").bind(&user).fetch_all(&mut conn).await.unwrap();
    hosts.sort();
    assert_eq!(hosts, vec![("127.0.0.1".to_owned(),), ("localhost".to_owned(),)], "granted to the web server, never %");
    let grants: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW GRANTS FOR '{user}'@'localhost'")))
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let text: Vec<String> = grants.into_iter().map(|(g,)| g).collect();
    assert!(text.iter().any(|g| g.contains(&format!("ON `{name}`.*"))), "{text:?}");
    assert!(!text.iter().any(|g| g.contains("ON *.*") && g.contains("ALL PRIVILEGES")), "{text:?}");

    // The site's user logs in with its password and sees only its database.
    let site_conn = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(mariadb_service().port)
        .username(&user)
        .password(site.database.password.expose())
        .database(&name);
    let mut as_site = MySqlConnection::connect_with(&site_conn).await.expect("the site's user logs in");
    let visible: Vec<(String,)> = sqlx::query_as("SHOW DATABASES").fetch_all(&mut as_site).await.unwrap();
    assert!(visible.iter().all(|(d,)| d == &name || d == "information_schema"), "{visible:?}");

    for _ in 0..2 {
        let result = system.run_step(StepAction::SiteDatabaseDrop { site: site.clone() }).await;
        assert!(matches!(result.outcome, StepOutcome::Success { .. }), "{result:?}");
    }
    let left: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.0, 0, "database dropped");
    let users: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
        .bind(&user)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(users.0, 0, "user dropped");
}
