//! `aegir login USER`: a password login that stores an API token in the user's config
//! file, so later commands send it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use crate::api::Api;
use crate::args::LoginArgs;
use crate::config;
use crate::error::CliError;

pub async fn run(api: &Api, args: LoginArgs, env: impl Fn(&str) -> Option<String>) -> Result<ExitCode, CliError> {
    let path = config::user_config(&env).ok_or_else(|| {
        CliError::usage(
            "AEGIR_CONFIG",
            "no config file to store the token in: set HOME, XDG_CONFIG_HOME or AEGIR_CONFIG",
        )
    })?;
    let password = read_password(args.password_stdin)?;
    let host = env("HOSTNAME").filter(|h| !h.is_empty()).unwrap_or_else(|| "this machine".to_owned());
    let answer = api.login(&args.user, &password, &format!("aegir login on {host}")).await?;
    let token = answer["token"].as_str().ok_or_else(|| api.unexpected("a login answer without `token`"))?;
    config::store_token(&path, token)?;
    println!("Logged in as {}; the token is stored in {}", args.user, path.display());
    Ok(ExitCode::SUCCESS)
}

/// One line from stdin; asked for (without echo) when stdin is a terminal.
pub fn read_password(from_stdin: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let terminal = !from_stdin && stdin.is_terminal();
    if terminal {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| CliError::usage("password", format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(CliError::usage("password", "no password was given; type it, or pipe it with --password-stdin"));
    }
    Ok(password)
}

/// Turns the terminal's echo off or on with stty (on the same terminal, stdin).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty").arg(if on { "echo" } else { "-echo" }).status();
}
