//! `aegir users ...`: users, their API tokens, and the platforms granted to clients.
//! The API refuses all of it to anyone but an admin.

use std::process::ExitCode;

use aegir_contract::ContextName;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::Api;
use crate::args::{UserSaveArgs, UsersCommand};
use crate::commands::login::read_password;
use crate::error::CliError;

pub async fn run(api: &Api, command: UsersCommand) -> Result<ExitCode, CliError> {
    match command {
        UsersCommand::List => {
            let page = api.get_json(&["users"], &[("limit", "500".to_owned())]).await?;
            for user in items(&page) {
                println!(
                    "{:<24} {:<7} {:<20} {}",
                    text(&user["name"]),
                    text(&user["role"]),
                    text(&user["client"]),
                    if user["disabled"] == true { "disabled" } else { "" }
                );
            }
        }
        UsersCommand::Save(args) => save(api, args).await?,
        UsersCommand::Delete { user } => {
            api.send_json(Method::DELETE, &["users", &user], None).await?;
            println!("Deleted user {user}");
        }
        UsersCommand::Token { user, name } => {
            let token = api.send_json(Method::POST, &["users", &user, "tokens"], Some(&json!({"name": name}))).await?;
            let secret = token["token"].as_str().ok_or_else(|| api.unexpected("a token answer without `token`"))?;
            eprintln!("Token {} of {user}; it is shown this once:", text(&token["id"]));
            println!("{secret}");
        }
        UsersCommand::Tokens { user } => {
            let page = api.get_json(&["users", &user, "tokens"], &[]).await?;
            for token in items(&page) {
                let state = if token["revoked_at"].is_string() { "revoked" } else { "" };
                println!(
                    "{}  {:<12} {:<8} {:<24} last used {} {state}",
                    text(&token["id"]),
                    text(&token["prefix"]),
                    text(&token["kind"]),
                    text(&token["name"]),
                    text(&token["last_used_at"]),
                );
            }
        }
        UsersCommand::Revoke { user, id } => {
            api.send_json(Method::DELETE, &["users", &user, "tokens", &id.to_string()], None).await?;
            println!("Revoked token {id} of {user}");
        }
        UsersCommand::Grant { client, platform } => {
            let name = platform_name(&platform)?;
            api.send_json(Method::PUT, &["clients", client.as_str(), "platforms", &name], None).await?;
            println!("Client {client} may use {platform}");
        }
        UsersCommand::Ungrant { client, platform } => {
            let name = platform_name(&platform)?;
            api.send_json(Method::DELETE, &["clients", client.as_str(), "platforms", &name], None).await?;
            println!("Client {client} may no longer use {platform}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn save(api: &Api, args: UserSaveArgs) -> Result<(), CliError> {
    if (args.role == "client") != args.client.is_some() {
        return Err(CliError::usage("--client", "give --client for a client user, and only for one"));
    }
    let mut body = json!({"role": args.role, "disabled": args.disabled});
    if let Some(client) = &args.client {
        body["client"] = json!(client.as_str());
    }
    if args.password_stdin {
        body["password"] = json!(read_password(true)?);
    }
    let user = api.send_json(Method::PUT, &["users", &args.user], Some(&body)).await?;
    println!("Saved user {} ({})", text(&user["name"]), text(&user["role"]));
    Ok(())
}

fn platform_name(platform: &ContextName) -> Result<String, CliError> {
    match platform {
        ContextName::Platform(name) => Ok(name.to_string()),
        other => Err(CliError::usage("@PLATFORM", format!("`{other}` is not a platform; use @platform_<name>"))),
    }
}

fn items(page: &Value) -> &[Value] {
    page["items"].as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
