//! Scenario files: named, readable workloads for crash-state exploration.
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
//! # stale_cow = true        # reused COWs: old records past the header and area 0
//! # stale_area_zero = true  # with stale_cow: area 0 is stale too (only the header is wiped)
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
//!
//! Every field is checked against [`Limits`] before anything is built, so
//! that a scenario or crash-trace file can be wrong but never make the
//! harness panic, hang or allocate beyond [`Limits::DEVICE_SECTORS_MAX`]
//! sectors of simulated devices; an operation outside the devices is the
//! file's error, never an engine failure.

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
    #[serde(default)]
    pub stale_area_zero: bool,
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

/// The allowed range of every scenario field.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    /// The largest chunk size, in sectors (512 KiB).
    pub const CHUNK_SECTORS_MAX: u32 = 1024;
    /// Snapshots of one origin.
    pub const SNAPSHOTS_MAX: usize = 8;
    /// Sectors of all simulated devices together: origin plus every COW (8 MiB;
    /// the largest configuration a swarm seed draws has 11,520). Every crash
    /// state reads back every snapshot, so time grows with this too.
    pub const DEVICE_SECTORS_MAX: u64 = 1 << 14;
    /// A COW holds a header, a metadata area and a data chunk at least.
    pub const COW_CHUNKS_MIN: u64 = 3;
    /// Operations in flight at once.
    pub const QUEUE_DEPTH_MAX: usize = 256;
    /// Copies in flight per snapshot before writes wait.
    pub const COW_THRESHOLD_MAX: usize = 1 << 20;
    /// Completion-order seeds one scenario runs.
    pub const SEEDS_MAX: usize = 64;
    /// The enumeration bound: 2^writes_max subsets per crash point.
    pub const WRITES_MAX_MAX: usize = 12;
    /// Scripted operations.
    pub const OPS_MAX: usize = 100_000;
    /// Scripted faults, and the writes one of them fails.
    pub const FAULTS_MAX: usize = 64;
    pub const FAULT_COUNT_MAX: u64 = 1_000_000;
}

/// Checks `value` against `range`, naming the field.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(field: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<(), String> {
    if range.contains(&value) { Ok(()) } else { Err(format!("{field} = {value}: must be {}..={}", range.start(), range.end())) }
}

/// Checks every field of `file` (and its parsed operations and faults)
/// against [`Limits`].
fn validate(file: &ScenarioFile, ops: &[ScriptOp], injections: &[Injection]) -> Result<(), String> {
    in_range("chunk_sectors", file.chunk_sectors, 1..=Limits::CHUNK_SECTORS_MAX)?;
    if !file.chunk_sectors.is_power_of_two() {
        return Err(format!("chunk_sectors = {}: not a power of two", file.chunk_sectors));
    }
    in_range("snapshots", file.snapshots, 1..=Limits::SNAPSHOTS_MAX)?;
    if !file.mixed_chunk_sectors.is_empty() && file.mixed_chunk_sectors.len() != file.snapshots {
        return Err(format!("mixed_chunk_sectors has {} entries: it needs one per snapshot ({})", file.mixed_chunk_sectors.len(), file.snapshots));
    }
    if let Some(bad) = file.mixed_chunk_sectors.iter().find(|&&c| !c.is_power_of_two() || c > file.chunk_sectors) {
        return Err(format!("mixed_chunk_sectors: {bad} is not a power of two at most chunk_sectors ({})", file.chunk_sectors));
    }
    let chunk = u64::from(file.chunk_sectors);
    let origin_chunks_max = Limits::DEVICE_SECTORS_MAX / chunk;
    in_range("origin_chunks", file.origin_chunks, 1..=origin_chunks_max)?;
    in_range("cow_chunks", file.cow_chunks, Limits::COW_CHUNKS_MIN..=origin_chunks_max)?;
    let origin_sectors = file.origin_chunks * chunk;
    let total = (file.snapshots as u64).checked_mul(file.cow_chunks * chunk).and_then(|c| c.checked_add(origin_sectors));
    if total.is_none_or(|total| total > Limits::DEVICE_SECTORS_MAX) {
        return Err(format!(
            "origin_chunks = {}, snapshots = {} and cow_chunks = {} of {chunk} sectors make more than {} sectors of devices",
            file.origin_chunks,
            file.snapshots,
            file.cow_chunks,
            Limits::DEVICE_SECTORS_MAX
        ));
    }
    if file.stale_area_zero && !file.stale_cow {
        return Err("stale_area_zero = true needs stale_cow = true (it leaves area 0 of a reused COW stale)".into());
    }
    in_range("queue_depth", file.queue_depth, 1..=Limits::QUEUE_DEPTH_MAX)?;
    in_range("cow_threshold", file.cow_threshold, 0..=Limits::COW_THRESHOLD_MAX)?;
    in_range("seeds (entries)", file.seeds.len(), 1..=Limits::SEEDS_MAX)?;
    in_range("writes_max", file.writes_max, 0..=Limits::WRITES_MAX_MAX)?;
    in_range("ops (operations)", ops.len(), 0..=Limits::OPS_MAX)?;
    in_range("faults (entries)", injections.len(), 0..=Limits::FAULTS_MAX)?;
    let snapshot = |what: &str, k: usize| {
        if k < file.snapshots { Ok(()) } else { Err(format!("{what}: there is no snapshot{k} (snapshots = {})", file.snapshots)) }
    };
    for (index, op) in ops.iter().enumerate() {
        let what = format!("ops operation {} ({op})", index + 1);
        match *op {
            ScriptOp::Write { target, sector, sectors, .. } => {
                if let model::Target::Snapshot(k) = target {
                    snapshot(&what, k)?;
                }
                fits(&what, sector, sectors, origin_sectors, "origin (and snapshot)")?;
            }
            ScriptOp::Flush { target: model::Target::Snapshot(k) } | ScriptOp::Merge { snapshot: k } => snapshot(&what, k)?,
            ScriptOp::Read { snapshot: k, sector, sectors } => {
                snapshot(&what, k)?;
                fits(&what, sector, sectors, origin_sectors, "snapshot")?;
            }
            ScriptOp::Flush { .. } | ScriptOp::Wait | ScriptOp::Reload | ScriptOp::Crash => {}
        }
    }
    let cow_sectors = file.cow_chunks * chunk;
    for (index, injection) in injections.iter().enumerate() {
        let what = format!("faults entry {}", index + 1);
        let (disk, sector, sectors) = match *injection {
            Injection::Latent { disk, sector, sectors } => (disk, sector, sectors),
            Injection::FailWrites { disk, sector, sectors, count } => {
                in_range(&format!("{what}: count"), u64::from(count), 1..=Limits::FAULT_COUNT_MAX)?;
                (disk, sector, sectors)
            }
        };
        if disk > file.snapshots {
            return Err(format!("{what}: there is no cow{} (snapshots = {})", disk - 1, file.snapshots));
        }
        let (size, name) = if disk == 0 { (origin_sectors, "origin") } else { (cow_sectors, "COW") };
        if sectors == 0 {
            return Err(format!("{what}: a range of 0 sectors"));
        }
        fits(&what, sector, sectors, size, name)?;
    }
    Ok(())
}

/// A range must lie inside a device of `size` sectors.
fn fits(what: &str, sector: u64, sectors: u64, size: u64, device: &str) -> Result<(), String> {
    if sector.checked_add(sectors).is_some_and(|end| end <= size) {
        Ok(())
    } else {
        Err(format!("{what}: sectors {sector}..{} are past the end of the {size}-sector {device}", sector.saturating_add(sectors)))
    }
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
            let count = u32::try_from(number(4)?).map_err(|_| format!("fault {line:?}: count is too large"))?;
            Ok(Injection::FailWrites { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)?, count })
        }
        Some("latent") if words.len() == 4 => Ok(Injection::Latent { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)? }),
        _ => Err(format!("fault {line:?}: expected `fail-writes DISK SECTOR SECTORS COUNT` or `latent DISK SECTOR SECTORS`")),
    }
}

impl Scenario {
    /// Loads `path`, or `scenarios/<name>.toml` when given a bare name.
    pub fn load(path_or_name: &str) -> Result<Self, String> {
        let path = resolve(path_or_name);
        let text = crate::limits::read_text_bounded(&path, crate::limits::SCRIPT_FILE_BYTES_MAX)?;
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
        if file.faults.len() > Limits::FAULTS_MAX {
            return Err(format!("faults has {} entries: at most {}", file.faults.len(), Limits::FAULTS_MAX));
        }
        let ops = parse_ops(&file.ops)?;
        let injections = file.faults.iter().map(|f| parse_fault(f)).collect::<Result<Vec<_>, _>>()?;
        validate(&file, &ops, &injections)?;
        let knobs = Knobs {
            chunk_sectors: file.chunk_sectors,
            origin_chunks: file.origin_chunks,
            cow_chunks: file.cow_chunks,
            snapshots: file.snapshots,
            store,
            mix: Mix { origin_write: 1, snapshot_write: 0, snapshot_read: 0, flush: 0 },
            faults: FaultRates::default(),
            queue_depth: file.queue_depth,
            cow_threshold: file.cow_threshold,
            crashes: 0,
            operations: ops.len() as u64,
            mixed_chunk_sectors: file.mixed_chunk_sectors.clone(),
            stale_cow: file.stale_cow,
            stale_area_zero: file.stale_area_zero,
            fua_per_mille: 0,
            preflush_per_mille: 0,
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
