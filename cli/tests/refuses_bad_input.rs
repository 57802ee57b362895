//! Bad input is refused with exit code 2 and the field named, before any request.
//!
//! Every run points the CLI at 127.0.0.1:9 (discard; nothing listens there), so an
//! attempted request would end with exit code 4 instead: code 2 proves none was made.

use std::process::{Command, Output};

const NOWHERE: &str = "http://127.0.0.1:9";

fn aegir(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegir"));
    cmd.args(args).env("AEGIR_API", NOWHERE).env_remove("AEGIR_MASTER_DB").env_remove("AEGIR_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the aegir binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `args`, expects exit code 2 and every `needles` in stderr.
fn refused(args: &[&str], env: &[(&str, &str)], needles: &[&str]) -> String {
    let out = aegir(args, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "aegir {args:?} should be refused with 2:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "aegir {args:?}: stderr lacks {needle:?}:\n{err}");
    }
    assert!(out.stdout.is_empty(), "aegir {args:?} printed to stdout: {}", String::from_utf8_lossy(&out.stdout));
    err
}

#[test]
fn a_request_to_the_test_address_would_fail_with_4() {
    // The control for every other test here: a valid command does try the API.
    let out = aegir(&["list", "servers"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("http://127.0.0.1:9") && err.contains("from AEGIR_API"), "{err}");
    assert!(err.contains("AEGIR_API=URL"), "the error must say how to point the CLI elsewhere:\n{err}");
}

#[test]
fn context_names_that_could_escape_are_refused() {
    refused(&["save", "@../etc", "--context_type=server"], &[], &["@CONTEXT", "@../etc", "context name"]);
    refused(&["@../etc", "verify"], &[], &["@CONTEXT", "@../etc"]);
    refused(&["show", "@server_Master"], &[], &["@CONTEXT", "server name"]);
    refused(&["delete", "@example.com/x"], &[], &["@CONTEXT"]);
    refused(&["tasks", "--context=@$(id)"], &[], &["--context"]);
}

#[test]
fn the_context_type_must_match_the_name() {
    refused(&["save", "@server_x", "--context_type=platform"], &[], &["--context_type", "is a server"]);
    refused(&["save", "@platform_x", "--context_type=server", "--root=/var/x"], &[], &["--context_type"]);
    refused(&["save", "@server_x", "--context_type=client"], &[], &["--context_type", "aegir client save"]);
}

#[test]
fn service_types_are_checked_and_the_allowed_ones_listed() {
    refused(
        &["save", "@server_x", "--context_type=server", "--http_service_type=lighttpd"],
        &[],
        &["--http_service_type", "lighttpd", "nginx", "apache"],
    );
    refused(&["save", "@server_x", "--db_service_type=postgres"], &[], &["--db_service_type", "mariadb", "mysql"]);
    refused(&["save", "@server_x", "--http_service_type=nginx", "--http_port=0"], &[], &["--http_port"]);
}

#[test]
fn a_platform_root_must_be_an_absolute_normal_path() {
    for root in ["var/aegir/x", "/var/aegir/../../etc", "/var/aegir/x/", "/var/aegir/$(id)"] {
        refused(&["save", "@platform_x", "--context_type=platform", &format!("--root={root}")], &[], &["--root"]);
    }
    refused(&["save", "@platform_x", "--context_type=platform"], &[], &["--root"]);
}

#[test]
fn master_db_must_be_a_mysql_url_and_its_password_is_never_shown() {
    let err = refused(
        &["save", "@server_x", "--db_service_type=mariadb", "--master_db=postgres://root:hunter2@127.0.0.1:5432"],
        &[],
        &["--master_db", "mysql://USER:PASSWORD@HOST:PORT"],
    );
    assert!(!err.contains("hunter2"), "{err}");

    let err = refused(
        &["save", "@server_x", "--db_service_type=mariadb"],
        &[("AEGIR_MASTER_DB", "mysql://root:hunter2@127.0.0.1:3306/db")],
        &["AEGIR_MASTER_DB"],
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn unknown_tasks_and_task_ids_are_refused() {
    refused(&["@server_master", "frobnicate"], &[], &["TASK", "verify"]);
    refused(&["task", "not-a-uuid"], &[], &["ID"]);
}

#[test]
fn client_fields_are_checked() {
    refused(&["client", "save", "Bad Name"], &[], &["NAME", "client name"]);
    refused(&["client", "save", "acme", "--email=nobody"], &[], &["--email"]);
    let long = format!("--title={}", "x".repeat(201));
    refused(&["client", "save", "acme", &long], &[], &["--title", "200"]);
}

#[test]
fn a_broken_api_address_is_bad_input() {
    refused(&["list", "servers"], &[("AEGIR_API", "https://api.example.com")], &["AEGIR_API", "http"]);
    refused(&["--api", "nonsense", "list", "servers"], &[], &["--api"]);
}

fn save_site(extra: &[&'static str]) -> Vec<&'static str> {
    let mut argv = vec!["save", "@www.example.com", "--context_type=site"];
    argv.extend_from_slice(extra);
    argv
}

#[test]
fn site_input_is_checked_and_the_option_named() {
    refused(&save_site(&[]), &[], &["--platform", "@platform_wp"]);
    refused(&save_site(&["--platform=@server_master"]), &[], &["--platform", "is a server"]);
    refused(&save_site(&["--platform=@platform_Wp"]), &[], &["--platform", "platform name"]);
    let wp = |option: &'static str| save_site(&["--platform=@platform_wp", option]);
    let cases: &[(&str, &[&str])] = &[
        ("--db_server=@www.other.com", &["--db_server", "is a site"]),
        ("--db_server=@server_", &["--db_server", "server name"]),
        ("--profile=../x", &["--profile", "profile"]),
        ("--language=EN", &["--language", "language"]),
        ("--aliases=example.com,Bad.example.com", &["--aliases", "Bad.example.com"]),
        ("--aliases=www.example.com", &["--aliases", "own uri"]),
        ("--aliases=a.example,a.example", &["--aliases", "twice"]),
        ("--aliases=example.com/x", &["--aliases", "site uri"]),
        ("--redirection=maybe", &["--redirection"]),
        ("--client=Bad Client", &["--client", "client name"]),
        ("--title=<script>", &["--title", "site title"]),
        ("--title=$(id)", &["--title"]),
        ("--admin_email=nobody", &["--admin_email", "e-mail address"]),
        ("--root=/var/aegir/platforms/x", &["--root", "platforms only"]),
        ("--http_service_type=nginx", &["--http_service_type", "servers only"]),
    ];
    for (option, needles) in cases {
        refused(&wp(option), &[], needles);
    }
    refused(&["save", "@WWW.example.com", "--platform=@platform_wp"], &[], &["@CONTEXT"]);
    refused(
        &["save", "@www.example.com", "--context_type=platform", "--platform=@platform_wp"],
        &[],
        &["--context_type"],
    );
    refused(
        &["save", "@platform_x", "--root=/var/aegir/platforms/x", "--client=acme"],
        &[],
        &["--client", "sites only"],
    );
    refused(&["save", "@server_x", "--aliases=a.example"], &[], &["--aliases", "sites only"]);
}

#[test]
fn site_tasks_and_site_lists_are_checked() {
    refused(&["@www.example.com", "login_reset"], &[], &["TASK", "login-reset"]);
    refused(&["@www.example.com", "upgrade"], &[], &["TASK", "install", "migrate"]);
    refused(&["@www.example.com", "clone", "--new_uri=Bad_Host"], &[], &["--new_uri"]);
    refused(&["@www.example.com", "restore", "--backup=yesterday"], &[], &["--backup"]);
    refused(&["@www.example.com", "backup", "--compression=xz"], &[], &["--compression", "zstd"]);
    refused(&["backups", "@server_master"], &[], &["is a server"]);
    refused(&["cancel", "not-a-task"], &[], &["ID"]);
    refused(
        &["save", "@www.example.com", "--platform=@platform_wp", "--cron_interval=5"],
        &[],
        &["--cron_interval", "60"],
    );
    refused(&["save", "@server_x", "--cron_interval=600"], &[], &["--cron_interval"]);
    refused(&["list", "servers", "--status=enabled"], &[], &["--status", "aegir list sites"]);
    refused(&["list", "platforms", "--search=x"], &[], &["--search", "aegir list sites"]);
    refused(&["list", "sites", "--status=installed"], &[], &["--status", "enabled"]);
    refused(&["list", "sites", "--platform=@server_master"], &[], &["--platform", "is a server"]);
    refused(&["list", "sites", "--client=Bad Name"], &[], &["--client"]);
    refused(&["delete", "@www.Example.com"], &[], &["@CONTEXT"]);
}

#[test]
fn valid_site_commands_do_reach_for_the_api() {
    // The counterpart of the refusals above: well-formed site commands pass the local
    // checks and fail only because nothing listens at the test address.
    for args in [
        &save_site(&["--platform=@platform_wp", "--aliases=example.com", "--redirection", "--client=acme"])[..],
        &["@www.example.com", "install"],
        &["@www.example.com", "login-reset"],
        &["list", "sites", "--platform=@platform_wp", "--client=acme", "--status=enabled", "--search=example"],
        &["show", "@www.example.com"],
    ] {
        let out = aegir(args, &[]);
        assert_eq!(out.status.code(), Some(4), "aegir {args:?}:\n{}", stderr(&out));
    }
}
