//! Scenario files: named, readable workloads for crash-state exploration.
//!
//! A scenario is a TOML file in `scenarios/`:
//!
//! ```toml
//! description = "One snapshot; origin writes copy chunks into the COW."
//! chunk_sectors = 8          # the snapshots' chunk size (the largest, if mixed)
//! origin_chunks = 8          # or origin_sectors = 83: an origin that ends mid-chunk
//! cow_chunks = 16            # in chunks of chunk_sectors; or cow_sectors = 197
//! snapshots = 1
//! store = "P"                # or "PO"
//! # mixed_chunk_sectors = [8, 2]   # one per snapshot, each at most chunk_sectors
//! # cow_threshold = 2048     # copies in flight per snapshot (0: unlimited)
//! # queue_depth = 4          # operations in flight at once
//! # seeds = [1, 2]           # completion orders explored, one run each
//! # writes_max = 5           # the enumeration bound (see `explore`)
//! # faults = ["fail-writes cow0 8 8 1", "latent origin 0 8"]
//! # stale_cow = true        # reused COWs: old records past the header and area 0
//! # stale_area_zero = true  # with stale_cow: area 0 is stale too (only the header is wiped)
//! # kernel_patches = "applied"  # behave as the kernel with the kernel-patches/ series (default "stock")
//! ops = """
//! write origin 0 8
//! flush origin
//! """
//! ```
//!
//! Faults are armed after the first boot: `fail-writes DISK SECTOR SECTORS
//! COUNT [after SKIP]` fails the next COUNT writes touching the range (once
//! SKIP of them have succeeded); `latent DISK
//! SECTOR SECTORS` fails reads of the range until it is rewritten. DISK is
//! `origin` or `cowK`.
//!
//! Every field is checked against [`Limits`] before anything is built, so
//! that a scenario or crash-trace file can be wrong but never make the
//! harness panic, hang or allocate beyond [`Limits::DEVICE_SECTORS_MAX`]
//! sectors of simulated devices; an operation outside the devices is the
//! file's error, never an engine failure.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::disk::FaultRates;
use crate::shape::Bounds;
pub use crate::shape::Limits;
use crate::shape::{FieldError, FileError, RunShape};
use crate::world::knobs::Mix;
use crate::world::{Injection, Knobs, RunConfig, ScriptOp};

/// A scenario as written in its file: a description, the completion-order
/// seeds to run, and the run's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub description: String,
    /// Completion orders explored, one run each (default `[1]`).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Coverage marks (`sim::marks`) its exploration must reach: `cargo
    /// test` fails when a change stops it reaching one.
    #[serde(default)]
    pub reaches: Vec<String>,
    #[serde(flatten)]
    pub shape: RunShape,
}

fn default_seeds() -> Vec<u64> {
    vec![1]
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

impl Scenario {
    /// Loads `path`, or `scenarios/<name>.toml` when given a bare name.
    pub fn load(path_or_name: &str) -> Result<Self, FileError> {
        let path = resolve(path_or_name);
        let text = crate::limits::read_text_bounded(&path, crate::limits::SCRIPT_FILE_BYTES_MAX).map_err(|e| FileError::unreadable(&path, e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self::parse(&name, &path, &text)
    }

    /// Parses a scenario's text (`path` names it in errors).
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Self, FileError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| FileError::syntax(path, text, &e))?;
        Self::from_file(name, path, file).map_err(|e| FileError::field(path, text, e))
    }

    /// Checks a scenario's fields and builds its knobs, operations and faults.
    pub fn from_file(name: &str, path: &Path, file: ScenarioFile) -> Result<Self, FieldError> {
        let (ops, injections) = file.shape.parse_checked()?;
        if let Some(unknown) = file.reaches.iter().find(|name| !crate::marks::all().iter().any(|(mark, _)| mark == name)) {
            return Err(FieldError::new("reaches", format!("reaches: no coverage mark is called {unknown:?} (`snapsim coverage` lists them)")));
        }
        if !(1..=Limits::SEEDS_MAX).contains(&file.seeds.len()) {
            return Err(FieldError::new("seeds", format!("seeds (entries) = {}: must be 1..={}", file.seeds.len(), Limits::SEEDS_MAX)));
        }
        let shape = &file.shape;
        let (origin_chunks, origin_tail_sectors, cow_chunks, cow_tail_sectors) = shape.geometry();
        let knobs = Knobs {
            chunk_sectors: shape.chunk_sectors,
            origin_chunks,
            cow_chunks,
            origin_tail_sectors,
            cow_tail_sectors,
            snapshots: shape.snapshots,
            store: shape.store,
            mix: Mix { origin_write: 1, snapshot_write: 0, snapshot_read: 0, flush: 0 },
            faults: FaultRates::default(),
            queue_depth: shape.queue_depth,
            cow_threshold: shape.cow_threshold,
            crashes: 0,
            operations: ops.len() as u64,
            mixed_chunk_sectors: shape.mixed_chunk_sectors.clone(),
            stale_cow: shape.stale_cow,
            stale_area_zero: shape.stale_area_zero,
            fua_per_mille: 0,
            preflush_per_mille: 0,
            merge_after: None,
        };
        debug_assert_eq!(knobs.operations, ops.len() as u64, "the knobs count the scripted operations");
        Ok(Self { name: name.to_string(), path: path.to_path_buf(), file, knobs, ops, injections })
    }

    /// The run of this scenario with completion-order seed `seed`.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        let mut config = RunConfig::new(seed);
        config.knobs = Some(self.knobs.clone());
        config.script = Some(self.ops.clone());
        config.injections = self.injections.clone();
        config.kernel_patches = self.file.shape.kernel_patches;
        config
    }

    /// The enumeration bound this scenario asks for.
    pub fn bounds(&self) -> Bounds {
        Bounds { writes_max: self.file.shape.writes_max, ..Bounds::default() }
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
pub fn all_in(dir: &Path) -> Result<Vec<Scenario>, FileError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| FileError::unreadable(dir, e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Scenario::load(&p.to_string_lossy())).collect()
}
