//! Writes the JSON Schema of every message into a directory (default `schemas/`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("schemas"));
    std::fs::create_dir_all(&dir)?;
    for (name, text) in aegir_contract::schema::all() {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
