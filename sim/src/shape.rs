//! The shape of a run — devices, store, queue, the scripted workload and
//! its faults — one type that scenario files and crash traces both carry
//! (`#[serde(flatten)]`), checked in one place against [`Limits`], and the
//! errors a file gets, with the file and the line they are about.

use std::path::{Path, PathBuf};

use engine::store::{KernelPatches, StoreKind};
use serde::{Deserialize, Serialize};

use crate::world::script::parse_ops;
use crate::world::{Injection, ScriptOp};

/// What a run is made of, as a scenario or crash-trace file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunShape {
    /// The snapshots' chunk size in sectors (the largest, if mixed).
    pub chunk_sectors: u32,
    /// One chunk size per snapshot, each at most `chunk_sectors` (empty: all the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixed_chunk_sectors: Vec<u32>,
    /// The origin's size in chunks of `chunk_sectors` (or `origin_sectors`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub origin_chunks: u64,
    /// The origin's size in sectors, for one that ends mid-chunk (instead of `origin_chunks`).
    #[serde(default, rename = "origin_sectors", skip_serializing_if = "Option::is_none")]
    pub exact_origin_sectors: Option<u64>,
    /// Each COW's size, in chunks of `chunk_sectors` (or `cow_sectors`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cow_chunks: u64,
    /// Each COW's size in sectors, for one that ends mid-chunk (instead of `cow_chunks`).
    #[serde(default, rename = "cow_sectors", skip_serializing_if = "Option::is_none")]
    pub exact_cow_sectors: Option<u64>,
    pub snapshots: usize,
    /// `"P"` or `"PO"` (default `"P"`).
    #[serde(default, with = "store_kind")]
    pub store: StoreKind,
    /// Copies in flight per snapshot before writes wait (0: unlimited; default 2048).
    #[serde(default = "default_cow_threshold")]
    pub cow_threshold: usize,
    /// Operations in flight at once (default 4).
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// The enumeration bound of `explore` (see [`Bounds`]).
    #[serde(default = "default_writes_max")]
    pub writes_max: usize,
    /// Scripted faults: `fail-writes DISK SECTOR SECTORS COUNT [after SKIP]`, `latent DISK SECTOR SECTORS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
    /// Reused COWs: old records past the header and area 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_cow: bool,
    /// With `stale_cow`: area 0 is stale too (only the header is wiped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_area_zero: bool,
    /// Which kernel the engine behaves as: `"stock"` (the default) or
    /// `"applied"` (the kernel with the kernel-patches/ series).
    #[serde(default, skip_serializing_if = "is_stock", with = "kernel_patches")]
    pub kernel_patches: KernelPatches,
    /// The scripted workload, one operation a line (see [`crate::world::script`]).
    pub ops: String,
}

fn default_cow_threshold() -> usize {
    2048
}
fn default_queue_depth() -> usize {
    4
}
fn default_writes_max() -> usize {
    Bounds::default().writes_max
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_stock(kernel_patches: &KernelPatches) -> bool {
    *kernel_patches == KernelPatches::Stock
}

/// `KernelPatches` as its name, `stock` or `durable`: parsed here and nowhere else.
mod kernel_patches {
    use engine::store::KernelPatches;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kernel_patches: &KernelPatches, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kernel_patches.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KernelPatches, D::Error> {
        let name = String::deserialize(deserializer)?;
        KernelPatches::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("`kernel_patches` = {name:?}: neither \"stock\" nor \"applied\"")))
    }
}

/// `StoreKind` as its table name, `P` or `PO`: parsed here and nowhere else.
mod store_kind {
    use engine::store::StoreKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(store: &StoreKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(store.table_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<StoreKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        StoreKind::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("store {name:?} is neither P nor PO")))
    }
}

/// The allowed range of every field of a run's shape.
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

/// A field of a file that is wrong: which, and why (the message names the
/// value and what it must be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The field's name as the file writes it (`chunk_sectors`, `ops`).
    pub field: &'static str,
    /// For a multi-line field (`ops`, `faults`): the entry, counted from 1.
    pub entry: Option<usize>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, entry: None, message: message.into() }
    }

    /// The same error about entry `entry` (from 1) of a list field.
    pub fn at_entry(mut self, entry: usize) -> Self {
        debug_assert!(entry >= 1, "entries count from 1");
        self.entry = Some(entry);
        self
    }
}

/// What is wrong with a scenario or crash-trace file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// It cannot be read: missing, not a regular file, too large.
    #[error("{0}")]
    Unreadable(String),
    /// It is not the TOML of its kind: syntax, a missing or unknown field, a wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A field is out of its range or disagrees with another.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A file that was refused: where (the file, and the line when known) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {problem}", path.display(), line.map_or(String::new(), |l| format!(":{l}")))]
pub struct FileError {
    pub path: PathBuf,
    /// The line (from 1) the problem is on, when it is known.
    pub line: Option<usize>,
    pub problem: FileProblem,
}

impl FileError {
    /// A file that cannot be read.
    pub fn unreadable(path: &Path, message: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), line: None, problem: FileProblem::Unreadable(message.into()) }
    }

    /// A TOML error, at the line its span starts on.
    pub fn syntax(path: &Path, text: &str, error: &toml::de::Error) -> Self {
        // A field of a flattened part is checked after the document is
        // read, and its error spans the whole document: no line then,
        // unless the message names the field.
        let whole = |span: &std::ops::Range<usize>| span.start == 0 && span.end >= text.trim_end().len();
        let named = error.message().split('`').nth(1).and_then(|field| field_line(text, field, None));
        let line = error.span().filter(|span| !whole(span)).map(|span| line_of_offset(text, span.start)).or(named);
        // toml's message repeats the position and quotes the line: keep its first sentence.
        let message = error.message().trim().to_string();
        Self { path: path.to_path_buf(), line, problem: FileProblem::Syntax(message) }
    }

    /// A field error, at the line the field (or its entry) is written on.
    pub fn field(path: &Path, text: &str, error: FieldError) -> Self {
        let line = field_line(text, error.field, error.entry);
        Self { path: path.to_path_buf(), line, problem: FileProblem::Field(error) }
    }
}

/// The line (from 1) that byte `offset` of `text` is on.
fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line a top-level `field = …` is written on and, for a list or a
/// multi-line string, the line of its `entry`-th entry (for `ops`, the
/// `entry`-th operation line, skipping blank lines and comments). `None` when
/// the field is not written (a default) or the layout is not the usual one.
fn field_line(text: &str, field: &str, entry: Option<usize>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.split('=').next().is_some_and(|key| key.trim() == field) && l.contains('='))?;
    let Some(entry) = entry else { return Some(start + 1) };
    let first = lines[start].split_once('=').map_or("", |(_, value)| value.trim());
    // `ops = """` with the text on the lines after; `faults = [` likewise.
    if first != "\"\"\"" && first != "[" {
        return Some(start + 1);
    }
    let mut seen = 0;
    for (index, line) in lines.iter().enumerate().skip(start + 1) {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.starts_with("\"\"\"") || content.starts_with(']') {
            break;
        }
        if !content.is_empty() {
            seen += 1;
            if seen == entry {
                return Some(index + 1);
            }
        }
    }
    Some(start + 1)
}

/// Checks `value` against `range`, naming the field.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(field: &'static str, value: T, range: std::ops::RangeInclusive<T>) -> Result<(), FieldError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{field} = {value}: must be {}..={}", range.start(), range.end())))
    }
}

/// A range must lie inside a device of `size` sectors.
fn fits(what: &str, sector: u64, sectors: u64, size: u64, device: &str) -> Result<(), String> {
    if sector.checked_add(sectors).is_some_and(|end| end <= size) {
        Ok(())
    } else {
        Err(format!("{what}: sectors {sector}..{} are past the end of the {size}-sector {device}", sector.saturating_add(sectors)))
    }
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
        Some("fail-writes") if words.len() == 5 || (words.len() == 7 && words[5] == "after") => {
            let count = u32::try_from(number(4)?).map_err(|_| format!("fault {line:?}: count is too large"))?;
            let skip = if words.len() == 7 { u32::try_from(number(6)?).map_err(|_| format!("fault {line:?}: after is too large"))? } else { 0 };
            Ok(Injection::FailWrites { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)?, count, skip })
        }
        Some("latent") if words.len() == 4 => Ok(Injection::Latent { disk: disk(words[1])?, sector: number(2)?, sectors: number(3)? }),
        _ => Err(format!("fault {line:?}: expected `fail-writes DISK SECTOR SECTORS COUNT [after SKIP]` or `latent DISK SECTOR SECTORS`")),
    }
}

impl RunShape {
    /// The origin's size in sectors.
    pub fn origin_sectors(&self) -> u64 {
        self.exact_origin_sectors.unwrap_or(self.origin_chunks.saturating_mul(u64::from(self.chunk_sectors)))
    }

    /// Each COW's size in sectors.
    pub fn cow_sectors(&self) -> u64 {
        self.exact_cow_sectors.unwrap_or(self.cow_chunks.saturating_mul(u64::from(self.chunk_sectors)))
    }

    /// Sets the devices' sizes as `knobs` have them: in chunks when they
    /// are whole chunks, else in sectors.
    pub fn set_geometry(&mut self, knobs: &crate::world::Knobs) {
        let (origin, cow) = (knobs.origin_sectors(), knobs.cow_sectors());
        let chunk = u64::from(knobs.chunk_sectors);
        (self.origin_chunks, self.exact_origin_sectors) = if knobs.origin_tail_sectors == 0 { (origin / chunk, None) } else { (0, Some(origin)) };
        (self.cow_chunks, self.exact_cow_sectors) = if knobs.cow_tail_sectors == 0 { (cow / chunk, None) } else { (0, Some(cow)) };
        debug_assert_eq!((self.origin_sectors(), self.cow_sectors()), (origin, cow), "the shape keeps the knobs' sizes");
    }

    /// The knobs' geometry fields for this shape: whole chunks and the
    /// sectors past them, for the origin and for each COW.
    pub fn geometry(&self) -> (u64, u64, u64, u64) {
        let chunk = u64::from(self.chunk_sectors);
        let (origin, cow) = (self.origin_sectors(), self.cow_sectors());
        (origin / chunk, origin % chunk, cow / chunk, cow % chunk)
    }

    /// Parses the operations and faults and checks every field against
    /// [`Limits`]: what a run of this shape needs, or the first field that
    /// is wrong.
    pub fn parse_checked(&self) -> Result<(Vec<ScriptOp>, Vec<Injection>), FieldError> {
        if self.faults.len() > Limits::FAULTS_MAX {
            return Err(FieldError::new("faults", format!("faults has {} entries: at most {}", self.faults.len(), Limits::FAULTS_MAX)));
        }
        let ops = parse_ops(&self.ops).map_err(|e| FieldError::new("ops", e))?;
        let mut injections = Vec::with_capacity(self.faults.len());
        for (index, fault) in self.faults.iter().enumerate() {
            injections.push(parse_fault(fault).map_err(|e| FieldError::new("faults", e).at_entry(index + 1))?);
        }
        self.check(&ops, &injections)?;
        debug_assert_eq!(injections.len(), self.faults.len(), "one injection per fault line");
        Ok((ops, injections))
    }

    /// Checks the devices' sizes: each given once, in chunks or in sectors,
    /// the origin at least a sector, each COW at least `COW_CHUNKS_MIN` whole chunks.
    fn check_sizes(&self) -> Result<(), FieldError> {
        let chunk = u64::from(self.chunk_sectors);
        let chunks_max = Limits::DEVICE_SECTORS_MAX / chunk;
        match self.exact_origin_sectors {
            Some(_) if self.origin_chunks != 0 => {
                return Err(FieldError::new("origin_sectors", "origin_sectors and origin_chunks are both given: give one"));
            }
            Some(sectors) => in_range("origin_sectors", sectors, 1..=Limits::DEVICE_SECTORS_MAX)?,
            None => in_range("origin_chunks", self.origin_chunks, 1..=chunks_max)?,
        }
        match self.exact_cow_sectors {
            Some(_) if self.cow_chunks != 0 => {
                return Err(FieldError::new("cow_sectors", "cow_sectors and cow_chunks are both given: give one"));
            }
            Some(sectors) => in_range("cow_sectors", sectors, Limits::COW_CHUNKS_MIN * chunk..=Limits::DEVICE_SECTORS_MAX)?,
            None => in_range("cow_chunks", self.cow_chunks, Limits::COW_CHUNKS_MIN..=chunks_max)?,
        }
        Ok(())
    }

    /// Checks every field (and the parsed operations and faults) against [`Limits`].
    fn check(&self, ops: &[ScriptOp], injections: &[Injection]) -> Result<(), FieldError> {
        in_range("chunk_sectors", self.chunk_sectors, 1..=Limits::CHUNK_SECTORS_MAX)?;
        if !self.chunk_sectors.is_power_of_two() {
            return Err(FieldError::new("chunk_sectors", format!("chunk_sectors = {}: not a power of two", self.chunk_sectors)));
        }
        in_range("snapshots", self.snapshots, 1..=Limits::SNAPSHOTS_MAX)?;
        if !self.mixed_chunk_sectors.is_empty() && self.mixed_chunk_sectors.len() != self.snapshots {
            let message =
                format!("mixed_chunk_sectors has {} entries: it needs one per snapshot ({})", self.mixed_chunk_sectors.len(), self.snapshots);
            return Err(FieldError::new("mixed_chunk_sectors", message));
        }
        if let Some(bad) = self.mixed_chunk_sectors.iter().find(|&&c| !c.is_power_of_two() || c > self.chunk_sectors) {
            let message = format!("mixed_chunk_sectors: {bad} is not a power of two at most chunk_sectors ({})", self.chunk_sectors);
            return Err(FieldError::new("mixed_chunk_sectors", message));
        }
        self.check_sizes()?;
        let origin_sectors = self.origin_sectors();
        let total = (self.snapshots as u64).checked_mul(self.cow_sectors()).and_then(|c| c.checked_add(origin_sectors));
        if total.is_none_or(|total| total > Limits::DEVICE_SECTORS_MAX) {
            let message = format!(
                "an origin of {origin_sectors} sectors and {} COW(s) of {} sectors make more than {} sectors of devices",
                self.snapshots,
                self.cow_sectors(),
                Limits::DEVICE_SECTORS_MAX
            );
            return Err(FieldError::new(if self.exact_cow_sectors.is_some() { "cow_sectors" } else { "cow_chunks" }, message));
        }
        if self.stale_area_zero && !self.stale_cow {
            return Err(FieldError::new("stale_area_zero", "stale_area_zero = true needs stale_cow = true (it leaves area 0 of a reused COW stale)"));
        }
        in_range("queue_depth", self.queue_depth, 1..=Limits::QUEUE_DEPTH_MAX)?;
        in_range("cow_threshold", self.cow_threshold, 0..=Limits::COW_THRESHOLD_MAX)?;
        in_range("writes_max", self.writes_max, 0..=Limits::WRITES_MAX_MAX)?;
        if ops.len() > Limits::OPS_MAX {
            return Err(FieldError::new("ops", format!("ops (operations) = {}: must be 0..={}", ops.len(), Limits::OPS_MAX)));
        }
        let snapshot = |what: &str, k: usize| {
            if k < self.snapshots { Ok(()) } else { Err(format!("{what}: there is no snapshot{k} (snapshots = {})", self.snapshots)) }
        };
        for (index, op) in ops.iter().enumerate() {
            let what = format!("ops operation {} ({op})", index + 1);
            let checked = match *op {
                ScriptOp::Write { target, sector, sectors, .. } => {
                    let target_ok = if let model::Target::Snapshot(k) = target { snapshot(&what, k) } else { Ok(()) };
                    target_ok.and_then(|()| fits(&what, sector, sectors, origin_sectors, "origin (and snapshot)"))
                }
                ScriptOp::Flush { target: model::Target::Snapshot(k) } | ScriptOp::Merge { snapshot: k } => snapshot(&what, k),
                ScriptOp::Read { snapshot: k, sector, sectors } => {
                    snapshot(&what, k).and_then(|()| fits(&what, sector, sectors, origin_sectors, "snapshot"))
                }
                ScriptOp::Flush { .. } | ScriptOp::Wait | ScriptOp::Reload | ScriptOp::Crash | ScriptOp::Status => Ok(()),
            };
            checked.map_err(|e| FieldError::new("ops", e).at_entry(index + 1))?;
        }
        let cow_sectors = self.cow_sectors();
        for (index, injection) in injections.iter().enumerate() {
            let what = format!("faults entry {}", index + 1);
            let wrong = |message: String| FieldError::new("faults", message).at_entry(index + 1);
            let (disk, sector, sectors) = match *injection {
                Injection::Latent { disk, sector, sectors } => (disk, sector, sectors),
                Injection::FailWrites { disk, sector, sectors, count, skip } => {
                    let range = 1..=Limits::FAULT_COUNT_MAX;
                    if !range.contains(&u64::from(count)) {
                        return Err(wrong(format!("{what}: count = {count}: must be 1..={}", Limits::FAULT_COUNT_MAX)));
                    }
                    if u64::from(skip) > Limits::FAULT_COUNT_MAX {
                        return Err(wrong(format!("{what}: after = {skip}: must be 0..={}", Limits::FAULT_COUNT_MAX)));
                    }
                    (disk, sector, sectors)
                }
            };
            if disk > self.snapshots {
                return Err(wrong(format!("{what}: there is no cow{} (snapshots = {})", disk - 1, self.snapshots)));
            }
            let (size, name) = if disk == 0 { (origin_sectors, "origin") } else { (cow_sectors, "COW") };
            if sectors == 0 {
                return Err(wrong(format!("{what}: a range of 0 sectors")));
            }
            fits(&what, sector, sectors, size, name).map_err(wrong)?;
        }
        Ok(())
    }
}

/// How far the enumeration goes at each crash point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Non-durable writes whose every subset is tried. Default 5.
    pub writes_max: usize,
    /// Tear writes of several sectors. Default on.
    pub tear: bool,
    /// Stop after this many distinct states (0: no limit). Default 0.
    pub states_max: u64,
    /// A crash point whose whole space holds at most this many states is
    /// enumerated whole, sector by sector (brute force), instead of within
    /// the write bound. Default 4096; 0 turns it off.
    pub brute_force_max: u64,
    /// A larger point is judged whole per data sector (see the module doc)
    /// when that takes at most this many states: every combination of its
    /// metadata sectors' values, times the most values one data sector may
    /// hold. Default 65,536; 0 turns it off.
    pub per_sector_states_max: u64,
    /// At every point enumerated by brute force, also judge it per data
    /// sector, alone, and record where the two verdicts differ
    /// (`explore`'s `Coverage::cross_check_mismatches`). Default off (tests).
    pub cross_check: bool,
    /// Read a crash state back against the last state read back whole that
    /// passed, reading again only what it changed (`world/core/incremental.rs`).
    /// Default on; off reads every state back whole.
    pub incremental: bool,
    /// Judge every state both whole and incrementally, and record where the
    /// two verdicts differ (`explore`'s `Coverage::incremental_mismatches`).
    /// Default off (tests).
    pub check_incremental: bool,
    /// Skip this many crash points from the start of the run, judging only
    /// those after them (a run that skips one is not complete). Default 0;
    /// the bench uses it to measure states late in a long run.
    pub skip_points: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            writes_max: 5,
            tear: true,
            states_max: 0,
            brute_force_max: 4096,
            per_sector_states_max: 65_536,
            cross_check: false,
            incremental: true,
            check_incremental: false,
            skip_points: 0,
        }
    }
}

impl Bounds {
    /// The sector counts of a torn `sectors`-sector write that reach the media
    /// (as a prefix, and as a suffix).
    pub fn tear_cuts(sectors: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = [1, sectors / 2, sectors.saturating_sub(1)].into_iter().filter(|&c| c >= 1 && c < sectors).collect();
        cuts.dedup();
        cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "description = \"d\"\nchunk_sectors = 8\norigin_chunks = 4\ncow_chunks = 8\nsnapshots = 1\nops = \"\"\"\nwrite origin 0 8\n\n# a comment\nwrite origin 64 8\n\"\"\"\n";

    #[test]
    fn a_field_error_points_at_its_line_and_an_operation_at_its_own() {
        assert_eq!(field_line(TEXT, "chunk_sectors", None), Some(2));
        assert_eq!(field_line(TEXT, "snapshots", None), Some(5));
        assert_eq!(field_line(TEXT, "ops", Some(1)), Some(7));
        assert_eq!(field_line(TEXT, "ops", Some(2)), Some(10));
        assert_eq!(field_line(TEXT, "store", None), None, "a default has no line");
    }

    #[test]
    fn the_shape_checks_operations_against_the_devices() {
        let shape = RunShape {
            chunk_sectors: 8,
            mixed_chunk_sectors: vec![],
            origin_chunks: 4,
            exact_origin_sectors: None,
            cow_chunks: 8,
            exact_cow_sectors: None,
            snapshots: 1,
            store: StoreKind::Persistent,
            cow_threshold: 2048,
            queue_depth: 4,
            writes_max: 5,
            faults: vec![],
            stale_cow: false,
            stale_area_zero: false,
            kernel_patches: KernelPatches::Stock,
            ops: "write origin 0 8\n\n# a comment\nwrite origin 64 8\n".into(),
        };
        let error = shape.parse_checked().unwrap_err();
        assert_eq!((error.field, error.entry), ("ops", Some(2)));
        let located = FileError::field(Path::new("s.toml"), TEXT, error);
        assert_eq!(
            located.to_string(),
            "s.toml:10: ops operation 2 (write origin 64 8): sectors 64..72 are past the end of the 32-sector origin (and snapshot)"
        );
    }
}
