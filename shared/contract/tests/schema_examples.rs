//! The examples in `schemas/examples/` are valid messages: each file is
//! `<schema>.json` or `<schema>.<case>.json`, and parses as the message of that schema.
//! The partner-facing messages each have at least one example.

use std::path::Path;

#[test]
fn every_example_is_a_valid_message_of_its_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/examples exists") {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".json") else { continue };
        let schema = stem.split('.').next().unwrap().to_owned();
        let body = std::fs::read(&path).unwrap();
        if let Err(e) = aegir_contract::schema::check_example(&schema, &body) {
            panic!("schemas/examples/{file} is not a valid {schema} message: {e}");
        }
        seen.push(schema);
    }
    for schema in ["command", "command_accepted", "command_rejected", "partner_task_started", "partner_task_finished"] {
        assert!(seen.iter().any(|s| s == schema), "schemas/examples has no example of {schema}");
    }
}

#[test]
fn a_broken_example_is_caught() {
    let bad = br#"{"partner":"billing","idempotency_key":"k","command":{"action":"create_site","site":"a.example"}}"#;
    let err = aegir_contract::schema::check_example("command", bad).unwrap_err();
    assert!(err.contains("client"), "{err}");
    assert!(aegir_contract::schema::check_example("nothing", b"{}").is_err());
}
