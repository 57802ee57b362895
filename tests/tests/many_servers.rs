//! Many servers: two web servers and two database servers, each on a machine of its own
//! (a network namespace with its own address, directories, nginx or MariaDB, and its own
//! workers connecting to the broker with the server's own user). Sites are spread over
//! them, one moves from web1/db1 to web2/db2 with its content, one server's workers stop
//! and come back, and no worker ever runs another server's work.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use aegir_e2e::hosts::{BrokerUsers, Network, RemoteServer};
use aegir_e2e::{System, copy_tree_resolving, random_suffix, wait_for};
use lapin::options::BasicConsumeOptions;
use lapin::{Connection, ConnectionProperties};

/// `GET http://<host><path>` from the web server at `addr`, port 80: status and body.
async fn fetch_at(addr: Ipv4Addr, host: &str, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .resolve(host, std::net::SocketAddr::from((addr, 80)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    match client.get(format!("http://{host}{path}")).send().await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(e) if e.is_connect() => (0, String::new()),
        Err(e) => panic!("asking {host}{path} at {addr}: {e}"),
    }
}

/// Asks until the page at `addr` does (or does not) show `text` three times in a row
/// (nginx workers from before a reload may take a last request); the last answer.
async fn showing(addr: Ipv4Addr, host: &str, text: &str, shown: bool) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut steady = 0;
    loop {
        let (status, body) = fetch_at(addr, host, "/").await;
        steady = if body.contains(text) == shown { steady + 1 } else { 0 };
        if steady == 3 || tokio::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A git repository holding Debian's WordPress, the one code base both web servers build
/// their platform from.
fn wordpress_repository(dir: &Path) -> String {
    let repo = dir.join("wordpress.git-work");
    copy_tree_resolving(Path::new("/usr/share/wordpress"), &repo, &["wp-config.php", ".htaccess"]);
    for args in [&["init", "-q"][..], &["add", "-A"], &["commit", "-q", "-m", "WordPress"]] {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=Aegir Test", "-c", "user.email=test@example.com"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    repo.display().to_string()
}

/// `@platform_<label>` on `server`, at `<server's platforms>/wordpress`, built there by the
/// server's own workers from the repository at `source` when it is verified.
async fn wordpress_on(system: &System, server: &RemoteServer, label: &str, source: &str) {
    let root = server.platforms_dir().join("wordpress");
    assert!(!root.exists(), "the platform is not there before its verify builds it");
    let platform = format!("@platform_{label}");
    system
        .cli_ok(&[
            "save",
            &platform,
            "--context_type=platform",
            &format!("--root={}", root.display()),
            &format!("--web_server=@{}", server.name),
            &format!("--source_git={source}"),
        ])
        .await;
    let out = system.cli_ok(&[&platform, "verify"]).await;
    assert!(out.contains("platform build"), "{} builds its platform from the repository: {out}", server.name);
    assert!(root.join("wp-login.php").exists(), "the code is at {}", root.display());
}

/// The id of the task the CLI just ran, from the API's list of the context's tasks.
async fn last_task(system: &System, context: &str) -> String {
    let (status, body) = system.get(&format!("/api/v1/tasks?context={context}")).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap_or_else(|| panic!("a task list: {body}"));
    items.first().and_then(|t| t["id"].as_str()).unwrap_or_else(|| panic!("no task of {context}: {body}")).to_owned()
}

async fn status_of(system: &System, id: &str) -> String {
    let (_, view) = system.get(&format!("/api/v1/tasks/{id}")).await;
    view["status"].as_str().unwrap_or_default().to_owned()
}

/// Every `<step> started on HOST:PID` line of the task, as `(route, pid)`.
async fn workers_of(system: &System, id: &str) -> Vec<(String, u32)> {
    system
        .task_log(id)
        .await
        .into_iter()
        .filter_map(|(_, source, message)| {
            let (_, instance) = message.split_once(" started on ")?;
            let pid = instance.split(' ').next()?.rsplit_once(':')?.1.parse().ok()?;
            Some((source, pid))
        })
        .collect()
}

/// The hosts MariaDB lets the site's database user connect from.
async fn grant_hosts(db: &RemoteServer, user: &str) -> Vec<String> {
    let mut conn = db.mariadb().await;
    sqlx::query_scalar("SELECT CAST(Host AS CHAR) FROM mysql.user WHERE User = ? ORDER BY Host")
        .bind(user)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn database_exists(db: &RemoteServer, name: &str) -> bool {
    let mut conn = db.mariadb().await;
    let found: Option<String> =
        sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    found.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn sites_spread_over_two_web_and_two_db_servers_move_between_them_and_no_server_gets_anothers_work() {
    let system = System::start().await;
    let mut network = Network::create();
    let mut users = BrokerUsers::default();
    let web1 = RemoteServer::web(&system, &mut network, &mut users, "web1").await;
    let mut web2 = RemoteServer::web(&system, &mut network, &mut users, "web2").await;
    let db1 = RemoteServer::db(&system, &mut network, &mut users, "db1").await;
    let db2 = RemoteServer::db(&system, &mut network, &mut users, "db2").await;

    // Each server is saved with its own address and verified: its own workers answer.
    for web in [&web1, &web2] {
        let server = format!("@{}", web.name);
        let host = format!("--remote_host={}", web.machine.addr);
        let args = ["save", &server, "--context_type=server", &host, "--http_service_type=nginx", "--http_port=80"];
        system.cli_ok(&args).await;
        system.cli_ok(&[&server, "verify"]).await;
    }
    for db in [&db1, &db2] {
        let server = format!("@{}", db.name);
        let host = format!("--remote_host={}", db.machine.addr);
        let master = format!("--master_db={}", db.master_db());
        system.cli_ok(&["save", &server, "--context_type=server", &host, "--db_service_type=mariadb", &master]).await;
        system.cli_ok(&[&server, "verify"]).await;
    }
    // A new server whose workers are not running yet: its verify waits, and says why,
    // until they are.
    let mut web3 = RemoteServer::web(&system, &mut network, &mut users, "web3").await;
    web3.kill9("http-worker").await;
    web3.kill9("backup-worker").await;
    let host = format!("--remote_host={}", web3.machine.addr);
    let args = ["save", "@server_web3", "--context_type=server", &host, "--http_service_type=nginx", "--http_port=80"];
    system.cli_ok(&args).await;
    let web3_verify = system.post_task("@server_web3", "verify").await;
    let told = wait_for(Duration::from_secs(60), || async {
        let log = system.task_log(&web3_verify).await;
        log.iter()
            .any(|(level, _, m)| level == "warning" && m.contains("no worker is taking work from server_web3.http"))
    })
    .await;
    assert!(
        told,
        "the verify's log says no worker takes server_web3's work: {:?}",
        system.task_log(&web3_verify).await
    );
    assert_eq!(status_of(&system, &web3_verify).await, "running", "the verify waits for web3's workers");
    web3.spawn("http-worker");
    web3.spawn("backup-worker");
    let view = system.wait_task(&web3_verify).await;
    assert_eq!(view["status"], "success", "web3 verifies once its workers run: {view}");
    drop(web3);

    // One code base on both web servers, each building it with its own workers.
    let repositories = tempfile::tempdir().unwrap();
    let source = wordpress_repository(repositories.path());
    wordpress_on(&system, &web1, "wp1", &source).await;
    wordpress_on(&system, &web2, "wp2", &source).await;

    // Two sites, installed side by side on different servers.
    let suffix = random_suffix().to_lowercase();
    let (alpha, beta) = (format!("alpha-{suffix}.test"), format!("beta-{suffix}.test"));
    for (uri, platform, db, title) in
        [(&alpha, "wp1", &db1.name, "Alpha on one"), (&beta, "wp2", &db2.name, "Beta on two")]
    {
        let (site, platform, db, title) = (
            format!("@{uri}"),
            format!("--platform=@platform_{platform}"),
            format!("--db_server=@{db}"),
            format!("--title={title}"),
        );
        system.cli_ok(&["save", &site, "--context_type=site", &platform, &db, &title]).await;
    }
    let (a, b) = (format!("@{alpha}"), format!("@{beta}"));
    let (install_a, install_b) = ([a.as_str(), "install"], [b.as_str(), "install"]);
    tokio::join!(system.cli_ok(&install_a), system.cli_ok(&install_b));
    let alpha_install = last_task(&system, &a).await;
    let beta_install = last_task(&system, &b).await;

    let (status, body) = showing(web1.machine.addr, &alpha, "Alpha on one", true).await;
    assert!(status == 200 && body.contains("Alpha on one"), "alpha answers on web1: {status}");
    let (status, body) = showing(web2.machine.addr, &beta, "Beta on two", true).await;
    assert!(status == 200 && body.contains("Beta on two"), "beta answers on web2: {status}");
    let (_, body) = fetch_at(web2.machine.addr, &alpha, "/").await;
    assert!(!body.contains("Alpha on one"), "web2 does not serve alpha");

    // Alpha's database is on db1 and its user may connect from web1's address only.
    let (alpha_db, alpha_user): (String, String) = sqlx::query_as("SELECT db_name, db_user FROM sites WHERE uri = $1")
        .bind(&alpha)
        .fetch_one(&system.pg)
        .await
        .unwrap();
    assert!(database_exists(&db1, &alpha_db).await && !database_exists(&db2, &alpha_db).await);
    assert_eq!(grant_hosts(&db1, &alpha_user).await, vec![web1.machine.addr.to_string()]);

    // RabbitMQ itself refuses web1's user web2's queue.
    let conn =
        Connection::connect(&web1.broker_url(), ConnectionProperties::default()).await.expect("web1's user logs in");
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("{}.http", web2.name);
    let refused = channel
        .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("web1's user consumed {queue}"));
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
    drop(conn);

    // web2's workers stop: web1's work goes on, web2's waits and runs when they are back.
    let mut pids: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut note = |server: &RemoteServer, worker: &str, route: &str| {
        pids.entry(format!("{}.{route}", server.name)).or_default().insert(server.pid(worker));
    };
    for server in [&web1, &web2] {
        note(server, "http-worker", "http");
        note(server, "backup-worker", "backup");
    }
    note(&db1, "db-worker", "db");
    note(&db2, "db-worker", "db");
    web2.kill9("http-worker").await;
    web2.kill9("backup-worker").await;
    let beta_verify = system.post_task(&b, "verify").await;
    let alpha_verify = system.post_task(&a, "verify").await;
    let view = system.wait_task(&alpha_verify).await;
    assert_eq!(view["status"], "success", "web1's site verifies while web2 is down: {view}");
    let told = wait_for(Duration::from_secs(60), || async {
        system
            .task_log(&beta_verify)
            .await
            .iter()
            .any(|(_, _, m)| m.contains("no worker is taking work from server_web2"))
    })
    .await;
    assert!(told, "beta's verify says it waits for web2's workers");
    assert!(
        matches!(status_of(&system, &beta_verify).await.as_str(), "queued" | "running" | "waiting"),
        "web2's task waits for web2"
    );
    web2.spawn("http-worker");
    web2.spawn("backup-worker");
    web2.wait_healthy("http-worker").await;
    web2.wait_healthy("backup-worker").await;
    note(&web2, "http-worker", "http");
    note(&web2, "backup-worker", "backup");
    let view = system.wait_task(&beta_verify).await;
    assert_eq!(view["status"], "success", "web2's task ran when web2 came back: {view}");

    // Content in alpha's database (on db1) and files (on web1), then alpha moves to web2/db2.
    let title = format!("Moved post {suffix}");
    {
        let mut conn = db1.mariadb().await;
        let sql = format!("UPDATE `{alpha_db}`.wp_posts SET post_title = ? WHERE ID = 1");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&title).execute(&mut conn).await.unwrap();
        assert_eq!(done.rows_affected(), 1, "alpha has its first post");
    }
    let old_dir = web1.platforms_dir().join("wordpress/sites").join(&alpha);
    let upload = format!("upload {suffix}\n").repeat(1000);
    std::fs::create_dir_all(old_dir.join("files/2026")).unwrap();
    std::fs::write(old_dir.join("files/2026/note.txt"), &upload).unwrap();
    let (_, body) = showing(web1.machine.addr, &alpha, &title, true).await;
    assert!(body.contains(&title), "the post shows on web1 before the move");

    let out = system.cli_ok(&[&a, "migrate", "--platform=@platform_wp2", &format!("--db_server=@{}", db2.name)]).await;
    let alpha_migrate = last_task(&system, &a).await;
    let (status, body) = showing(web2.machine.addr, &alpha, &title, true).await;
    assert!(status == 200 && body.contains(&title), "alpha answers on web2 with its content: {status}\n{out}");
    let new_dir = web2.platforms_dir().join("wordpress/sites").join(&alpha);
    let moved = std::fs::read_to_string(new_dir.join("files/2026/note.txt")).expect("the file moved to web2");
    assert_eq!(moved, upload, "the file arrived whole");
    assert!(!old_dir.exists(), "web1 keeps nothing of alpha: {}", old_dir.display());
    let (_, body) = showing(web1.machine.addr, &alpha, &title, false).await;
    assert!(!body.contains(&title), "web1 no longer serves alpha");
    let (new_db, new_user): (String, String) = sqlx::query_as("SELECT db_name, db_user FROM sites WHERE uri = $1")
        .bind(&alpha)
        .fetch_one(&system.pg)
        .await
        .unwrap();
    assert!(database_exists(&db2, &new_db).await, "alpha's database is on db2");
    assert!(!database_exists(&db1, &alpha_db).await, "db1 keeps nothing of alpha");
    assert_eq!(grant_hosts(&db2, &new_user).await, vec![web2.machine.addr.to_string()]);

    // Every step of every task ran on a worker of its own route's server...
    let mut routes_seen = HashSet::new();
    for task in [&alpha_install, &beta_install, &alpha_verify, &beta_verify, &alpha_migrate] {
        let ran = workers_of(&system, task).await;
        assert!(!ran.is_empty(), "task {task} names the workers that ran it");
        for (route, pid) in ran {
            let own = pids.get(&route).unwrap_or_else(|| panic!("task {task} ran on an unknown route {route}"));
            assert!(own.contains(&pid), "task {task}: a {route} step ran on process {pid}, not on {route}'s workers");
            routes_seen.insert(route);
        }
    }
    for server in [&web1, &web2, &db1, &db2] {
        assert!(routes_seen.iter().any(|r| r.starts_with(&format!("{}.", server.name))), "{} did work", server.name);
    }
    // ...and web1's workers never even received web2's: its logs name none of those tasks.
    let web1_logs = web1.log("http-worker") + &web1.log("backup-worker");
    assert!(web1_logs.contains(&alpha_install), "web1's log names the tasks it ran");
    for task in [&beta_install, &beta_verify] {
        assert!(!web1_logs.contains(task.as_str()), "web1's workers received web2's task {task}");
    }
    let web2_logs = web2.log("http-worker") + &web2.log("backup-worker");
    assert!(!web2_logs.contains(&alpha_install), "web2's workers received web1's task {alpha_install}");
}
