//! Scenario files: named, readable workloads for exhaustive crash runs.
//!
//! A scenario is a TOML file in `scenarios/`:
//!
//! ```toml
//! description = "One snapshot; origin writes copy chunks into the COW."
//! chunk_sectors = 8          # the snapshots' chunk size (the largest, if mixed)
//! origin_chunks = 8
//! cow_chunks = 16            # in chunks of chunk_sectors
//! snapshots = 1
//! store = "P"                # or "PO"
//! # mixed_chunk_sectors = [8, 2]   # one per snapshot, each at most chunk_sectors
//! # cow_threshold = 2048     # copies in flight per snapshot (0: unlimited)
//! # queue_depth = 4          # operations in flight at once
//! # seeds = [1, 2]           # completion orders explored, one run each
//! # writes_max = 5           # the enumeration bound (see `explore`)
//! # faults = ["fail-writes cow0 8 8 1", "latent origin 0 8"]
//! # stale_cow = true        # reused COWs: old records past their first 4 KiB
//! ops = """
//! write origin 0 8
//! flush origin
//! """
//! ```
//!
//! Faults are armed after the first boot: `fail-writes DISK SECTOR SECTORS
//! COUNT` fails the next COUNT writes touching the range; `latent DISK
//! SECTOR SECTORS` fails reads of the range until it is rewritten. DISK is
//! `origin` or `cowK`.

use std::path::{Path, PathBuf};

use engine::store::StoreKind;
use serde::Deserialize;

use crate::disk::FaultRates;
use crate::explore::Bounds;
use crate::world::knobs::Mix;
use crate::world::script::parse_ops;
use crate::world::{Injection, Knobs, RunConfig, ScriptOp};

/// A scenario as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub description: String,
    pub chunk_sectors: u32,
    pub origin_chunks: u64,
    pub cow_chunks: u64,
    pub snapshots: usize,
    #[serde(default = "default_store")]
    pub store: String,
    #[serde(default)]
    pub mixed_chunk_sectors: Vec<u32>,
    #[serde(default = "default_threshold")]
    pub cow_threshold: usize,
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default = "default_writes_max")]
    pub writes_max: usize,
    #[serde(default)]
    pub faults: Vec<String>,
    #[serde(default)]
    pub stale_cow: bool,
    pub ops: String,
}

fn default_store() -> String {
    "P".into()
}
fn default_threshold() -> usize {
    2048
}
fn default_queue_depth() -> usize {
    4
}
fn default_seeds() -> Vec<u64> {
    vec![1]
}
fn default_writes_max() -> usize {
    Bounds::default().writes_max
}

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub file: ScenarioFile,
    pub knobs: Knobs,
    pub ops: Vec<ScriptOp>,
    pub injections: Vec<Injection>,
}

fn disk(word: &str) -> Result<usize, String> {
    if word == "origin" {
        return Ok(0);
    }
    word.strip_prefix("cow").and_then(|k| k.parse::<usize>().ok()).map(|k| k + 1).ok_or_else(|| format!("unknown disk {word:?} (origin, cow0, …)"))
}

fn parse_fault(line: &str) -> Result<Injection, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok()).ok_or_else(|| format!("fault {line:?}: word {} is not a number", i + 1));
    match words.first().copied() {
        Some("fail-writes") if words.len() == 5 => {
            Ok(Injection::FailWrites { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)?, count: number(4)? as u32 })
        }
        Some("latent") if words.len() == 4 => Ok(Injection::Latent { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)? }),
        _ => Err(format!("fault {line:?}: expected `fail-writes DISK SECTOR SECTORS COUNT` or `latent DISK SECTOR SECTORS`")),
    }
}

impl Scenario {
    /// Loads `path`, or `scenarios/<name>.toml` when given a bare name.
    pub fn load(path_or_name: &str) -> Result<Self, String> {
        let path = resolve(path_or_name);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self::parse(&name, &path, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a scenario's text.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Self, String> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_file(name, path, file)
    }

    /// Checks a scenario's fields and builds its knobs, operations and faults.
    pub fn from_file(name: &str, path: &Path, file: ScenarioFile) -> Result<Self, String> {
        let store = match file.store.as_str() {
            "P" => StoreKind::Persistent,
            "PO" => StoreKind::PersistentOverflow,
            other => return Err(format!("store {other:?} is neither P nor PO")),
        };
        if !file.chunk_sectors.is_power_of_two() {
            return Err(format!("chunk_sectors {} is not a power of two", file.chunk_sectors));
        }
        if file.snapshots == 0 || (!file.mixed_chunk_sectors.is_empty() && file.mixed_chunk_sectors.len() != file.snapshots) {
            return Err("snapshots must be at least 1, and mixed_chunk_sectors has one entry per snapshot".into());
        }
        if let Some(bad) = file.mixed_chunk_sectors.iter().find(|&&c| !c.is_power_of_two() || c > file.chunk_sectors) {
            return Err(format!("mixed chunk size {bad} is not a power of two at most chunk_sectors"));
        }
        let ops = parse_ops(&file.ops)?;
        let injections = file.faults.iter().map(|f| parse_fault(f)).collect::<Result<Vec<_>, _>>()?;
        let knobs = Knobs {
            chunk_sectors: file.chunk_sectors,
            origin_chunks: file.origin_chunks,
            cow_chunks: file.cow_chunks,
            snapshots: file.snapshots,
            store,
            mix: Mix { origin_write: 1, snapshot_write: 0, snapshot_read: 0, flush: 0 },
            faults: FaultRates::default(),
            queue_depth: file.queue_depth.max(1),
            cow_threshold: file.cow_threshold,
            crashes: 0,
            operations: ops.len() as u64,
            mixed_chunk_sectors: file.mixed_chunk_sectors.clone(),
            stale_cow: file.stale_cow,
        };
        Ok(Self { name: name.to_string(), path: path.to_path_buf(), file, knobs, ops, injections })
    }

    /// The run of this scenario with completion-order seed `seed`.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        let mut config = RunConfig::new(seed);
        config.knobs = Some(self.knobs.clone());
        config.script = Some(self.ops.clone());
        config.injections = self.injections.clone();
        config
    }

    /// The enumeration bound this scenario asks for.
    pub fn bounds(&self) -> Bounds {
        Bounds { writes_max: self.file.writes_max, ..Bounds::default() }
    }
}

/// The scenarios directory of this workspace.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

fn resolve(path_or_name: &str) -> PathBuf {
    let path = PathBuf::from(path_or_name);
    if path.exists() || path_or_name.contains('/') || path_or_name.ends_with(".toml") {
        return path;
    }
    let local = PathBuf::from("scenarios").join(format!("{path_or_name}.toml"));
    if local.exists() { local } else { scenarios_dir().join(format!("{path_or_name}.toml")) }
}

/// Every scenario file in `dir`, sorted by name.
pub fn all_in(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Scenario::load(&p.to_string_lossy())).collect()
}
