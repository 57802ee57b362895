//! `aegir delete @CONTEXT`.

use std::process::ExitCode;

use crate::api::{Api, Collection};
use crate::args::DeleteArgs;
use crate::error::CliError;

pub async fn run(api: &Api, args: DeleteArgs) -> Result<ExitCode, CliError> {
    api.delete(Collection::of(&args.context), args.context.as_str()).await?;
    println!("deleted {}", args.context);
    Ok(ExitCode::SUCCESS)
}
