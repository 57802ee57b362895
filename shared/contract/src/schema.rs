//! JSON Schemas of every message, generated from the types above. `schemas/` holds
//! the committed copies; a test keeps them in sync.

use schemars::generate::SchemaSettings;

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
        schema_of::<LogLine>(),
        schema_of::<TaskStarted>(),
        schema_of::<TaskFinished>(),
    ]
}
