//! `aegir`: the command line of the Aegir hosting control plane. It speaks task-api's
//! REST API: saves servers, platforms and sites, runs tasks and follows their logs live.
//!
//! Output goes to stdout, errors to stderr; the exit code says what happened (see
//! [`error`]).

mod api;
mod args;
mod commands;
mod config;
mod drush_alias;
mod error;
mod log_stream;
mod master_db;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::args::{Cli, Command};
use crate::error::CliError;

/// Global options that take a value, so `aegir --api URL @x verify` is recognised too.
const GLOBAL_OPTIONS_WITH_VALUE: &[&str] = &["--api"];

/// Aegir's `drush @name verify` form: clap cannot take `@name` as a subcommand, so when
/// the first argument (after global options) is a context, `run` goes in front of it.
fn rewrite_argv(argv: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].to_string_lossy();
        if GLOBAL_OPTIONS_WITH_VALUE.contains(&arg.as_ref()) {
            i += 2;
            continue;
        }
        if GLOBAL_OPTIONS_WITH_VALUE.iter().any(|o| arg.starts_with(&format!("{o}="))) {
            i += 1;
            continue;
        }
        if arg.starts_with('@') {
            // `aegir @SITE certificate …` is a command of its own, not a task.
            if argv.get(i + 1).is_some_and(|next| next == "certificate") {
                argv.swap(i, i + 1);
            } else {
                argv.insert(i, OsString::from("run"));
            }
        }
        break;
    }
    argv
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap's own errors exit with code 2, help and version with 0.
    let cli = Cli::parse_from(rewrite_argv(std::env::args_os()));
    match dispatch(cli).await {
        Ok(code) => code,
        Err(error) => error.report(),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Every command checks its input first: nothing is sent unless all of it is valid.
async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let connect = || {
        let address = config::resolve(cli.api.as_deref(), env_var)?;
        Api::with_token(address, config::token(env_var)?.as_deref())
    };
    match cli.command {
        Command::Save(args) => {
            let plan = commands::save::plan(*args, env_var)?;
            commands::save::run(&connect()?, plan).await
        }
        Command::Run(args) => commands::run::run(&connect()?, args).await,
        Command::Tasks(args) => commands::tasks::list(&connect()?, args).await,
        Command::Task(args) => commands::tasks::show(&connect()?, args).await,
        Command::Show(args) => commands::show::run(&connect()?, args).await,
        Command::List(args) => {
            let filter = commands::list::check(&args)?;
            commands::list::run(&connect()?, args, filter).await
        }
        Command::Delete(args) => commands::delete::run(&connect()?, args).await,
        Command::Backups(args) => commands::backups::run(&connect()?, args).await,
        Command::Cancel(args) => commands::tasks::cancel(&connect()?, args).await,
        Command::Batch(args) => commands::batch::run(&connect()?, args).await,
        Command::Keys(command) => commands::keys::run(command),
        Command::Certificate(args) if args.remove => commands::certificate::remove(&connect()?, &args.site).await,
        Command::Certificate(args) => {
            let body = commands::certificate::read(&args)?;
            commands::certificate::run(&connect()?, &args.site, body).await
        }
        Command::Users(command) => commands::users::run(&connect()?, command).await,
        Command::Login(args) => {
            let address = config::resolve(cli.api.as_deref(), env_var)?;
            commands::login::run(&Api::new(address)?, args, env_var).await
        }
        Command::ImportAegir(args) => {
            let plan = commands::import_aegir::plan(&args.dir)?;
            commands::import_aegir::run(&connect()?, plan).await
        }
        Command::Client(command) => {
            commands::client::check(&command)?;
            commands::client::run(&connect()?, command).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Vec<String> {
        rewrite_argv(args.iter().map(OsString::from)).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn a_leading_context_becomes_run() {
        assert_eq!(rewritten(&["aegir", "@server_master", "verify"]), ["aegir", "run", "@server_master", "verify"]);
    }

    #[test]
    fn global_options_before_the_context_are_skipped() {
        assert_eq!(
            rewritten(&["aegir", "--api", "http://h:1", "@server_master", "verify"]),
            ["aegir", "--api", "http://h:1", "run", "@server_master", "verify"]
        );
        assert_eq!(
            rewritten(&["aegir", "--api=http://h:1", "@platform_x", "verify"]),
            ["aegir", "--api=http://h:1", "run", "@platform_x", "verify"]
        );
    }

    #[test]
    fn a_site_certificate_is_its_own_command() {
        let argv = ["aegir", "@www.example.com", "certificate", "--cert", "c.pem", "--key", "k.pem"];
        assert_eq!(rewritten(&argv), ["aegir", "certificate", "@www.example.com", "--cert", "c.pem", "--key", "k.pem"]);
        let cli = Cli::try_parse_from(rewrite_argv(argv.map(OsString::from))).unwrap();
        let Command::Certificate(args) = cli.command else { panic!("expected certificate") };
        assert_eq!(args.site.as_str(), "www.example.com");
        let argv = ["aegir", "@www.example.com", "certificate", "--remove"];
        let cli = Cli::try_parse_from(rewrite_argv(argv.map(OsString::from))).unwrap();
        let Command::Certificate(args) = cli.command else { panic!("expected certificate") };
        assert!(args.remove && args.cert.is_none());
        let both = ["aegir", "@www.example.com", "certificate", "--remove", "--cert", "c.pem"];
        assert!(Cli::try_parse_from(rewrite_argv(both.map(OsString::from))).is_err(), "--remove takes no files");
        let none = ["aegir", "@www.example.com", "certificate"];
        assert!(Cli::try_parse_from(rewrite_argv(none.map(OsString::from))).is_err(), "files or --remove");
    }

    #[test]
    fn other_commands_are_left_alone() {
        for argv in [
            &["aegir", "save", "@server_master", "--context_type=server"][..],
            &["aegir", "run", "@server_master", "verify"],
            &["aegir", "show", "@server_master"],
            &["aegir", "--help"],
            &["aegir"],
        ] {
            assert_eq!(rewritten(argv), argv);
        }
    }

    #[test]
    fn the_rewritten_form_parses_as_run() {
        let cli = Cli::try_parse_from(rewrite_argv(["aegir", "@server_master", "verify"].map(OsString::from))).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.context.to_string(), "@server_master");
        assert_eq!(run.task, aegir_contract::TaskKind::Verify);
    }
}
