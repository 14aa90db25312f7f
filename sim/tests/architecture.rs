//! The simulation library is a stack: each module of `sim/src` uses only
//! modules of the layers below its own, so there is a bottom to start
//! reading from and no import circle. [`LAYERS`] is the order, bottom
//! first (ARCHITECTURE.md shows it); the test reads every file and fails on
//! an import that climbs or stays within its layer, and on a module the
//! order does not place.
//!
//! An import is any `crate::NAME` path in code (comments and the unit
//! tests at the end of a file are not code the module runs on).
//!
//! Inside the world the same holds for its parts ([`WORLD_LAYERS`]), and
//! no part imports the facade (`world/mod.rs`, which only declares the
//! parts, re-exports their names and runs a seed): a part names the part
//! it uses, never a name the facade re-exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `sim/src`, bottom first. A module may use any module of a
/// lower layer, none of its own or a higher one.
const LAYERS: &[&[&str]] = &[
    // Leaves: the trace hash, bounds, panics caught, coverage counters, the log-writes format, a crash point's space of states.
    &["trace", "limits", "panics", "marks", "logwrites", "crash_space"],
    // The simulated disk: images, writes in flight, what a crash state holds of them.
    &["disk"],
    // A run's requests recorded and drawn.
    &["timeline"],
    // The world: the engine on simulated disks, the workload, the oracle, crash points.
    &["world"],
    // Built on one world: scenario shapes, the cause of a failing state, exports, hostile inputs, threads.
    &["shape", "cause", "export", "hostile", "threads"],
    // Scenario files.
    &["scenario"],
    // Every crash state of a run, judged.
    &["explore"],
    // What uses exploration: crash traces, the zoo's hunt, coverage surveys.
    &["crash_trace", "zoo", "survey"],
    // The soak.
    &["soak"],
    // The figures of every layer.
    &["bench"],
];

/// The parts of `sim/src/world`, bottom first; the facade `mod.rs` is above them all.
const WORLD_LAYERS: &[&[&str]] = &[
    // The knobs drawn from a seed, scripted operations, recorded schedules, the oracle's observer.
    &["knobs", "script", "guide", "observer"],
    // How a run goes.
    &["config"],
    // The world itself and what it reports.
    &["core"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The module a file of `sim/src` belongs to: its first path component.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// A file's code: without its comments and its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|line| line.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// Every module of the crate a piece of code names: `crate::x` and the
/// names of a `crate::{x, y::z}` group.
fn named(code: &str) -> BTreeSet<String> {
    named_after(code, "crate::")
}

/// The names that follow `prefix` in code: `prefix` then a name, or a
/// `prefix{…}` group's top-level names.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let leading_name = |text: &str| -> String { text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        // `crate::` inside `my_crate::`, or `super::` inside `super::super::`, is not this prefix.
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.insert(leading_name(rest));
            continue;
        };
        // The group's items, split at its top-level commas, up to its closing brace.
        let (mut depth, mut item_start) = (0usize, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 0 => {
                    names.insert(leading_name(&group[item_start..i]));
                    item_start = i + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    // `super::super::x` climbs out of the world: not a name of it; nor is `self` or a glob.
    names.retain(|name| !name.is_empty() && name != "super" && name != "self");
    names
}

/// Each module's imports of other modules of the crate.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let modules: BTreeSet<String> = files(&src()).iter().map(|p| module_of(p)).filter(|m| m != "lib").collect();
    for path in files(&src()) {
        let module = module_of(&path);
        if module == "lib" {
            continue;
        }
        let used = named(&code(&std::fs::read_to_string(&path).unwrap()));
        let entry = imports.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|m| *m != module && modules.contains(m)));
    }
    imports
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_import_goes_down_the_stack() {
    let imports = imports();
    let mut climbing = Vec::new();
    for (module, used) in &imports {
        let here = layer_of(module).unwrap_or_else(|| panic!("module {module} is in no layer of LAYERS: place it"));
        for other in used {
            let there = layer_of(other).unwrap_or_else(|| panic!("module {other} is in no layer of LAYERS: place it"));
            if there >= here {
                climbing.push(format!("{module} (layer {here}) uses {other} (layer {there})"));
            }
        }
    }
    assert!(climbing.is_empty(), "imports that climb or stay within a layer:\n  {}", climbing.join("\n  "));
    for module in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(imports.contains_key(*module), "LAYERS names {module}, which sim/src does not have");
    }
}

/// Every name a piece of code takes from the world's facade or a part of
/// it: `crate::world::NAME`, and `super::NAME` where `super` is the world.
fn world_named(code: &str, super_is_world: bool) -> BTreeSet<String> {
    let mut names = named_after(code, "crate::world::");
    if super_is_world {
        names.extend(named_after(code, "super::"));
    }
    names
}

#[test]
fn the_worlds_parts_form_a_stack_and_none_imports_the_facade() {
    let world = src().join("world");
    let parts: BTreeSet<&str> = WORLD_LAYERS.iter().flat_map(|layer| layer.iter().copied()).collect();
    let mut wrong = Vec::new();
    for path in files(&world) {
        let relative = path.strip_prefix(&world).unwrap();
        let part = relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if part == "mod" {
            continue;
        }
        let here = WORLD_LAYERS.iter().position(|l| l.contains(&part.as_str())).unwrap_or_else(|| panic!("world part {part} is in no layer"));
        // In `core/*.rs`, `super` is `core`; in a file of the world itself, the world.
        let super_is_world = relative.components().count() == 1;
        for name in world_named(&code(&std::fs::read_to_string(&path).unwrap()), super_is_world) {
            match WORLD_LAYERS.iter().position(|l| l.contains(&name.as_str())) {
                Some(there) if there < here => {}
                Some(there) => wrong.push(format!("{} (world layer {here}) uses the part {name} (layer {there})", relative.display())),
                None if parts.contains(name.as_str()) => unreachable!("every part is in a layer"),
                None => wrong.push(format!("{} uses {name} through the facade: name the part that has it", relative.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "the world's parts:\n  {}", wrong.join("\n  "));
}

/// The reader itself: a group import is read as the modules it names, a
/// comment is not code.
#[test]
fn the_import_reader_sees_groups_and_skips_comments() {
    let used = named(&code("use crate::{disk::{Image, SimDisk}, world};\n// crate::bench\nlet x = crate::marks::hit(y);"));
    assert_eq!(used, ["disk", "marks", "world"].map(String::from).into_iter().collect());
    let world = world_named("use super::config::RunConfig;\nuse crate::world::{knobs::Knobs, Report};\nlet w = super::super::x;", true);
    assert_eq!(world, ["Report", "config", "knobs"].map(String::from).into_iter().collect());
    let flat = named("use crate::{disk,world};\nuse crate::{marks, timeline::Recorder,};");
    assert_eq!(flat, ["disk", "marks", "timeline", "world"].map(String::from).into_iter().collect());
}
