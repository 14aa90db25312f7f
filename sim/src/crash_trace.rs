//! Crash traces: a failing run, minimized and written as a small readable
//! file with a one-line post-mortem, replayed by `cargo test`.
//!
//! A trace is a scenario (knobs and a scripted workload, the operations the
//! failing run submitted) plus how to run it (`mode = "run"`: one run with
//! its crashes; `"explore"`: every crash state) and the verdict it gave.
//! Minimizing keeps the verdict and drops the rest: operations (halves,
//! then quarters, … then single ones), crashes, fault rates, device sizes.

use std::path::{Path, PathBuf};

use engine::zoo::{Mutation, Mutations};
use model::{Invariant, Violation};
use serde::{Deserialize, Serialize};

use crate::disk::FaultRates;
use crate::explore::{Bounds, explore};
use crate::scenario::{Scenario, ScenarioFile};
use crate::world::script::parse_ops;
use crate::world::{Knobs, Report, RunConfig, ScriptOp, run};

/// A crash trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashTrace {
    /// One line: what broke, as the oracle said it.
    pub post_mortem: String,
    /// The invariant id the run must trip (`I5`), or `pass`.
    pub verdict: String,
    /// `run` (one run, crashes as drawn) or `explore` (every crash state).
    pub mode: String,
    pub seed: u64,
    #[serde(default)]
    pub strict: bool,
    /// A bug-zoo mutation (`Z3`) the engine re-creates for this trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation: Option<String>,
    pub chunk_sectors: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixed_chunk_sectors: Vec<u32>,
    pub origin_chunks: u64,
    pub cow_chunks: u64,
    pub snapshots: usize,
    pub store: String,
    pub cow_threshold: usize,
    pub queue_depth: usize,
    #[serde(default)]
    pub crashes: u32,
    #[serde(default)]
    pub read_error: f64,
    #[serde(default)]
    pub write_error: f64,
    #[serde(default)]
    pub flush_error: f64,
    #[serde(default = "default_writes_max")]
    pub writes_max: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_cow: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_area_zero: bool,
    pub ops: String,
}

fn default_writes_max() -> usize {
    Bounds::default().writes_max
}

/// What replaying a trace gave.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub violation: Option<Violation>,
    pub steps: u64,
    /// The run's trace hash (for `explore`, the recorded run's).
    pub trace_hash: u64,
}

impl Replayed {
    /// `I5`-style id of the verdict, or `pass`.
    pub fn verdict(&self) -> String {
        self.violation.as_ref().map_or("pass".into(), |v| v.invariant.id().to_string())
    }
}

fn ops_text(ops: &[ScriptOp]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

impl CrashTrace {
    /// A trace of a failed `snapsim run`.
    pub fn from_run(config: &RunConfig, report: &Report) -> Self {
        let violation = report.failure.as_ref().map(|f| &f.violation);
        let mut trace = Self::of(&report.knobs, &report.ops, "run", report.seed, config.mutations, config.strict, violation);
        trace.crashes = report.knobs.crashes;
        let faults = report.knobs.faults;
        (trace.read_error, trace.write_error, trace.flush_error) = (faults.read_error, faults.write_error, faults.flush_error);
        trace
    }

    /// A trace of a failed exploration of `scenario`.
    pub fn from_explore(scenario: &Scenario, seed: u64, mutations: Mutations, strict: bool, violation: &Violation) -> Self {
        let mut trace = Self::of(&scenario.knobs, &scenario.ops, "explore", seed, mutations, strict, Some(violation));
        trace.writes_max = scenario.file.writes_max;
        trace.faults = scenario.file.faults.clone();
        trace
    }

    /// A trace of `ops` on `knobs`, with no crashes, random faults or scripted ones.
    fn of(knobs: &Knobs, ops: &[ScriptOp], mode: &str, seed: u64, mutations: Mutations, strict: bool, violation: Option<&Violation>) -> Self {
        Self {
            post_mortem: violation.map_or("passes".into(), ToString::to_string),
            verdict: violation.map_or("pass".into(), |v| v.invariant.id().to_string()),
            mode: mode.into(),
            seed,
            strict,
            mutation: mutation_id(mutations),
            chunk_sectors: knobs.chunk_sectors,
            mixed_chunk_sectors: knobs.mixed_chunk_sectors.clone(),
            origin_chunks: knobs.origin_chunks,
            cow_chunks: knobs.cow_chunks,
            snapshots: knobs.snapshots,
            store: knobs.store.table_name().to_string(),
            cow_threshold: knobs.cow_threshold,
            queue_depth: knobs.queue_depth,
            stale_cow: knobs.stale_cow,
            stale_area_zero: knobs.stale_area_zero,
            crashes: 0,
            read_error: 0.0,
            write_error: 0.0,
            flush_error: 0.0,
            writes_max: default_writes_max(),
            faults: Vec::new(),
            ops: ops_text(ops),
        }
    }

    /// Reads and checks a trace file: every field in its range (the
    /// scenario's fields against [`crate::scenario::Limits`]).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::limits::read_text_bounded(path, crate::limits::SCRIPT_FILE_BYTES_MAX)?;
        let trace: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        trace.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(trace)
    }

    /// The most crashes a trace may ask for.
    pub const CRASHES_MAX: u32 = 100;
    /// The highest fault rate a trace may ask for (a disk failing every
    /// request would stop the run from going anywhere).
    pub const ERROR_RATE_MAX: f64 = 0.5;

    /// Checks the trace's own fields, then the scenario it describes.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.mode.as_str(), "run" | "explore") {
            return Err(format!("mode = {:?}: must be \"run\" or \"explore\"", self.mode));
        }
        if !valid_verdict(&self.verdict) {
            return Err(format!("verdict = {:?}: must be \"pass\" or an invariant id (I1..I14)", self.verdict));
        }
        if self.crashes > Self::CRASHES_MAX {
            return Err(format!("crashes = {}: must be 0..={}", self.crashes, Self::CRASHES_MAX));
        }
        for (field, rate) in [("read_error", self.read_error), ("write_error", self.write_error), ("flush_error", self.flush_error)] {
            if !(0.0..=Self::ERROR_RATE_MAX).contains(&rate) {
                return Err(format!("{field} = {rate}: must be a rate from 0 to {}", Self::ERROR_RATE_MAX));
            }
        }
        if let Some(id) = &self.mutation {
            if Mutation::parse(id).is_none() {
                return Err(format!("mutation = {id:?}: no such mutation (Z1..Z21)"));
            }
        }
        self.scenario().map(|_| ())
    }

    /// The file's text: a comment header, then the fields.
    pub fn to_text(&self, file_name: &str) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| panic!("a crash trace always serializes: {e}"));
        format!("# post-mortem: {}\n# replay: snapsim replay crash-traces/{file_name}\n\n{body}", self.post_mortem)
    }

    /// A file name for this trace: verdict, mode, seed and mutation.
    pub fn file_name(&self) -> String {
        let mutation = self.mutation.as_ref().map_or(String::new(), |m| format!("-{}", m.to_lowercase()));
        let strict = if self.strict { "-strict" } else { "" };
        format!("{}-{}-seed{}{mutation}{strict}.toml", self.verdict.to_lowercase(), self.mode, self.seed)
    }

    /// Writes the trace into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = self.file_name();
        let path = dir.join(&name);
        std::fs::write(&path, self.to_text(&name)).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// The scenario this trace describes (knobs, ops, scripted faults).
    pub fn scenario(&self) -> Result<Scenario, String> {
        let file = ScenarioFile {
            description: self.post_mortem.clone(),
            chunk_sectors: self.chunk_sectors,
            origin_chunks: self.origin_chunks,
            cow_chunks: self.cow_chunks,
            snapshots: self.snapshots,
            store: self.store.clone(),
            mixed_chunk_sectors: self.mixed_chunk_sectors.clone(),
            cow_threshold: self.cow_threshold,
            queue_depth: self.queue_depth,
            seeds: vec![self.seed],
            writes_max: self.writes_max,
            faults: self.faults.clone(),
            stale_cow: self.stale_cow,
            stale_area_zero: self.stale_area_zero,
            ops: self.ops.clone(),
        };
        let mut scenario = Scenario::from_file("trace", Path::new("trace"), file)?;
        scenario.knobs.crashes = self.crashes;
        scenario.knobs.faults = FaultRates { read_error: self.read_error, write_error: self.write_error, flush_error: self.flush_error };
        Ok(scenario)
    }

    /// Runs the trace as recorded.
    pub fn replay(&self) -> Result<Replayed, String> {
        self.check()?;
        let scenario = self.scenario()?;
        let mut config = scenario.run_config(self.seed);
        config.strict = self.strict;
        config.mutations = mutations_of(self.mutation.as_deref())?;
        match self.mode.as_str() {
            "run" => {
                let report = run(&config);
                Ok(Replayed { violation: report.failure.map(|f| f.violation), steps: report.stats.steps, trace_hash: report.trace_hash })
            }
            "explore" => {
                let (coverage, outcome) = explore(&config, &scenario.bounds());
                Ok(Replayed { violation: outcome.err().map(|f| f.violation), steps: coverage.steps, trace_hash: coverage.trace_hash })
            }
            other => Err(format!("mode {other:?} is neither run nor explore")),
        }
    }

    /// Shrinks the trace while it still gives the same verdict, within
    /// `budget` replays.
    pub fn minimize(&self, budget: usize) -> Self {
        let mut best = self.clone();
        let mut tries = 0;
        let mut attempt = |candidate: CrashTrace, best: &mut CrashTrace| -> bool {
            if tries >= budget {
                return false;
            }
            tries += 1;
            match candidate.replay() {
                Ok(replayed) if replayed.verdict() == self.verdict => {
                    let violation = replayed.violation.expect("a failing verdict has a violation");
                    *best = CrashTrace { post_mortem: violation.to_string(), ..candidate };
                    true
                }
                _ => false,
            }
        };
        for crashes in 0..best.crashes {
            if attempt(CrashTrace { crashes, ..best.clone() }, &mut best) {
                break;
            }
        }
        if best.read_error + best.write_error + best.flush_error > 0.0 {
            attempt(CrashTrace { read_error: 0.0, write_error: 0.0, flush_error: 0.0, ..best.clone() }, &mut best);
        }
        // Operations: remove runs of them, from halves down to single ones.
        let mut ops: Vec<String> = best.ops.lines().map(str::to_string).collect();
        let mut size = ops.len() / 2;
        while size >= 1 {
            let mut start = 0;
            while start < ops.len() {
                let mut fewer = ops.clone();
                fewer.drain(start..(start + size).min(ops.len()));
                let candidate = CrashTrace { ops: fewer.iter().map(|l| format!("{l}\n")).collect(), ..best.clone() };
                if attempt(candidate, &mut best) {
                    ops = fewer;
                } else {
                    start += size;
                }
            }
            size /= 2;
        }
        // Smaller devices, when every remaining operation still fits.
        let fits = |trace: &CrashTrace, origin_chunks: u64| {
            let origin_sectors = origin_chunks * u64::from(trace.chunk_sectors);
            parse_ops(&trace.ops).is_ok_and(|ops| {
                ops.iter().all(|op| match *op {
                    ScriptOp::Write { sector, sectors, .. } | ScriptOp::Read { sector, sectors, .. } => sector + sectors <= origin_sectors,
                    _ => true,
                })
            })
        };
        while best.origin_chunks > 1 && fits(&best, best.origin_chunks / 2) {
            if !attempt(CrashTrace { origin_chunks: best.origin_chunks / 2, ..best.clone() }, &mut best) {
                break;
            }
        }
        while best.cow_chunks > 4 {
            if !attempt(CrashTrace { cow_chunks: best.cow_chunks / 2, ..best.clone() }, &mut best) {
                break;
            }
        }
        best
    }
}

/// The id of the mutation switched on in `mutations` (`Z3`), if any.
pub fn mutation_id(mutations: Mutations) -> Option<String> {
    Mutation::ALL.into_iter().find(|&m| mutations.has(m)).map(|m| m.id().to_string())
}

/// The mutations a trace names (an error if this build cannot make them).
pub fn mutations_of(id: Option<&str>) -> Result<Mutations, String> {
    let Some(id) = id else { return Ok(Mutations::NONE) };
    if !Mutations::available() {
        return Err(format!("mutation {id} needs a build with the bug-zoo feature (cargo … -p snapsim --features bug-zoo)"));
    }
    Mutation::parse(id).map(Mutations::only).ok_or_else(|| format!("unknown mutation {id:?}"))
}

/// Whether `verdict` names an invariant (or `pass`).
pub fn valid_verdict(verdict: &str) -> bool {
    verdict == "pass" || Invariant::parse(verdict).is_some()
}

/// The crash-traces directory of this workspace.
pub fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("crash-traces")
}
