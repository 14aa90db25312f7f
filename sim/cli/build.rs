//! Compiles the workspace's `scenarios/*.toml` into the binary, so that an
//! installed `snapsim` explores them when no scenarios directory is found.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../../scenarios");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|read| read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect())
        .unwrap_or_default();
    entries.sort();
    let mut table =
        String::from("/// Every scenario of the workspace this binary was built from: (name, text).\npub const BUILT_IN: &[(&str, &str)] = &[\n");
    for path in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().expect("a .toml file has a stem").to_string_lossy();
        let absolute = std::fs::canonicalize(path).expect("a listed file exists");
        writeln!(table, "    ({name:?}, include_str!({:?})),", absolute.display().to_string()).expect("writing to a String");
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("built_in_scenarios.rs");
    std::fs::write(out, table).expect("OUT_DIR is writable");
}
