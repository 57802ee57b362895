//! JSON Schemas of every message, generated from the types above. `schemas/` holds
//! the committed copies; a test keeps them in sync.

use schemars::generate::SchemaSettings;

use crate::commands::*;
use crate::messages::*;

fn schema_of<T: Message>() -> (&'static str, String) {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    (T::NAME, text + "\n")
}

/// `(file stem, schema text)` for every message of the contract.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        schema_of::<TaskRequested>(),
        schema_of::<TaskCancelRequested>(),
        schema_of::<StepDispatched>(),
        schema_of::<StepResult>(),
        schema_of::<TaskLog>(),
        schema_of::<TaskStarted>(),
        schema_of::<TaskFinished>(),
        schema_of::<Command>(),
        schema_of::<CommandAccepted>(),
        schema_of::<CommandRejected>(),
        schema_of::<PartnerTaskStarted>(),
        schema_of::<PartnerTaskFinished>(),
    ]
}

/// Checks an example of the message whose schema is `name` (a file stem of `schemas/`)
/// the way a consumer would: parsed strictly, with the message's own checks.
pub fn check_example(name: &str, body: &[u8]) -> Result<(), String> {
    fn check<T: Message>(body: &[u8]) -> Result<(), String> {
        T::decode(body).map(drop).map_err(|e| e.to_string())
    }
    match name {
        TaskRequested::NAME => check::<TaskRequested>(body),
        TaskCancelRequested::NAME => check::<TaskCancelRequested>(body),
        StepDispatched::NAME => check::<StepDispatched>(body),
        StepResult::NAME => check::<StepResult>(body),
        TaskLog::NAME => check::<TaskLog>(body),
        TaskStarted::NAME => check::<TaskStarted>(body),
        TaskFinished::NAME => check::<TaskFinished>(body),
        Command::NAME => check::<Command>(body),
        CommandAccepted::NAME => check::<CommandAccepted>(body),
        CommandRejected::NAME => check::<CommandRejected>(body),
        PartnerTaskStarted::NAME => check::<PartnerTaskStarted>(body),
        PartnerTaskFinished::NAME => check::<PartnerTaskFinished>(body),
        other => Err(format!("no message has the schema `{other}`")),
    }
}
