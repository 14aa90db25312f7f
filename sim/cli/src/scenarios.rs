//! Where the scenarios come from at run time: `--scenarios DIR`, then
//! `SNAPSIM_SCENARIOS`, then `./scenarios`, then the set compiled into the
//! binary. An installed binary never reads the checkout it was built in,
//! and a replay line names a scenario the way the user can type it again.

use std::path::{Path, PathBuf};

use sim::scenario::Scenario;

use crate::CliError;
use crate::paths::check_regular_input;

include!(concat!(env!("OUT_DIR"), "/built_in_scenarios.rs"));

/// The variable naming a scenarios directory.
pub const VARIABLE: &str = "SNAPSIM_SCENARIOS";

/// A place scenarios are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory, with what named it (`--scenarios`, the variable, or `./scenarios`).
    Dir { path: PathBuf, named_by: &'static str },
    /// The scenarios compiled into the binary.
    BuiltIn,
}

impl Source {
    /// The first of `--scenarios`, `SNAPSIM_SCENARIOS`, `./scenarios` that
    /// is given, else the built-in set. A named directory that is not one
    /// is refused rather than passed over.
    pub fn resolve(flag: Option<&Path>) -> Result<Self, CliError> {
        let named = match (flag, std::env::var_os(VARIABLE)) {
            (Some(path), _) => Some((path.to_path_buf(), "--scenarios")),
            (None, Some(path)) if !path.is_empty() => Some((PathBuf::from(path), VARIABLE)),
            _ => None,
        };
        if let Some((path, named_by)) = named {
            if !path.is_dir() {
                return Err(CliError::bad_input(format!("{named_by} {}: not a directory", path.display())));
            }
            return Ok(Source::Dir { path, named_by });
        }
        let local = PathBuf::from("scenarios");
        Ok(if local.is_dir() { Source::Dir { path: local, named_by: "./scenarios" } } else { Source::BuiltIn })
    }

    /// Where the scenarios came from, for the settings line.
    pub fn describe(&self) -> String {
        match self {
            Source::Dir { path, named_by } => format!("scenarios from {} ({named_by})", path.display()),
            Source::BuiltIn => format!("the {} built-in scenarios", BUILT_IN.len()),
        }
    }

    /// Every scenario, sorted by name.
    pub fn all(&self) -> Result<Vec<Scenario>, CliError> {
        match self {
            Source::BuiltIn => BUILT_IN.iter().map(|(name, text)| built_in(name, text)).collect(),
            Source::Dir { path, .. } => {
                let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .collect();
                paths.sort();
                if paths.is_empty() {
                    return Err(CliError::bad_input(format!("{}: holds no scenario (*.toml)", path.display())));
                }
                paths.iter().map(|p| load_file(p)).collect()
            }
        }
    }

    /// A scenario file (a path), or a scenario of this source by name.
    pub fn load(&self, path_or_name: &str) -> Result<Scenario, CliError> {
        let path = Path::new(path_or_name);
        if path_or_name.contains('/') || path_or_name.ends_with(".toml") || path.exists() {
            return load_file(path);
        }
        match self {
            Source::Dir { path: dir, named_by } => {
                let file = dir.join(format!("{path_or_name}.toml"));
                if !file.exists() {
                    return Err(CliError::bad_input(format!(
                        "no scenario called {path_or_name:?} in {} ({named_by}); `snapsim explore all` lists them",
                        dir.display()
                    )));
                }
                load_file(&file)
            }
            Source::BuiltIn => match BUILT_IN.iter().find(|(name, _)| *name == path_or_name) {
                Some((name, text)) => built_in(name, text),
                None => Err(CliError::bad_input(format!(
                    "no built-in scenario called {path_or_name:?} (and no ./scenarios directory); known: {}",
                    BUILT_IN.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }
}

/// Loads a scenario file, refusing one that is not a regular file.
fn load_file(path: &Path) -> Result<Scenario, CliError> {
    check_regular_input("the scenario", path)?;
    Scenario::load(&path.to_string_lossy()).map_err(CliError::bad_input)
}

/// A built-in scenario; its path is its bare name, which is what a replay
/// line prints and what loads it again.
fn built_in(name: &str, text: &str) -> Result<Scenario, CliError> {
    Scenario::parse(name, Path::new(name), text).map_err(|e| CliError::bad_input(format!("built-in scenario {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses() {
        assert!(BUILT_IN.len() > 10);
        let all = Source::BuiltIn.all().unwrap();
        assert_eq!(all.len(), BUILT_IN.len());
        assert_eq!(Source::BuiltIn.load("basic-cow").unwrap().path, Path::new("basic-cow"));
        assert!(Source::BuiltIn.load("no-such").unwrap_err().message.contains("basic-cow"));
    }
}
