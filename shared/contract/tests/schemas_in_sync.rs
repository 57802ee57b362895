//! The committed schemas in `schemas/` must be exactly what the types generate.
//! Run `cargo run -p aegir-contract --bin aegir-schemas` after changing a message.

use std::path::Path;

#[test]
fn committed_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut stale = Vec::new();
    for (name, text) in aegir_contract::schema::all() {
        let path = dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            _ => stale.push(path.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "these schemas are missing or stale: {stale:?}; run `cargo run -p aegir-contract --bin aegir-schemas`"
    );
}

#[test]
fn every_schema_file_belongs_to_a_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let known: Vec<String> = aegir_contract::schema::all().into_iter().map(|(n, _)| format!("{n}.json")).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            assert!(known.contains(&name), "schemas/{name} has no message type");
        }
    }
}
