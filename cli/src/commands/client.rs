//! `aegir client save|list|show|delete`: the owners of sites. Clients are not
//! contexts, so they have no `@` and their own command.

use std::process::ExitCode;

use crate::api::{Api, ClientBody, Collection, Saved};
use crate::args::{ClientCommand, ClientSaveArgs};
use crate::commands::{list, show};
use crate::error::CliError;
use crate::output;

const MAX_TITLE: usize = 200;

/// Checks what the API would refuse, before sending anything.
pub fn check(command: &ClientCommand) -> Result<(), CliError> {
    if let ClientCommand::Save(ClientSaveArgs { title, email, .. }) = command {
        if let Some(title) = title
            && title.chars().count() > MAX_TITLE
        {
            return Err(CliError::usage(
                "--title",
                format!("is {} characters long; keep it to {MAX_TITLE}", title.chars().count()),
            ));
        }
        if let Some(email) = email
            && !email.contains('@')
        {
            return Err(CliError::usage(
                "--email",
                format!("`{email}` is not an email address; use e.g. ops@example.com"),
            ));
        }
    }
    Ok(())
}

pub async fn run(api: &Api, command: ClientCommand) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::Save(args) => {
            let body = ClientBody { title: args.title, email: args.email };
            let (saved, value) = api.put_client(&args.name, &body).await?;
            let verb = if saved == Saved::Created { "created" } else { "updated" };
            println!("{verb} client {}", args.name);
            print!("{}", show::client_summary(&api.typed(value)?));
        }
        ClientCommand::List { paging, json } => {
            return list::print_list(api, Collection::Clients, paging.paging(), json, None).await;
        }
        ClientCommand::Show { name, json } => {
            let value = api.get_json(&[Collection::Clients.segment(), name.as_str()], &[]).await?;
            if json {
                output::print_json(&value);
            } else {
                print!("{}", show::client_summary(&api.typed(value)?));
            }
        }
        ClientCommand::Delete { name } => {
            api.delete(Collection::Clients, name.as_str()).await?;
            println!("deleted client {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
