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
use crate::explore::explore;
use crate::scenario::{Scenario, ScenarioFile};
use crate::shape::Bounds;
use crate::shape::{FieldError, FileError, RunShape};
use crate::world::guide::{self, Decision};
use crate::world::script::parse_ops;
use crate::world::{Knobs, Report, RunConfig, ScriptOp, run};

/// What a run concluded: it passed, or it broke an invariant. Written
/// `"pass"` or the invariant's id (`"I5"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Verdict {
    Pass,
    Broke(Invariant),
}

impl Verdict {
    /// The verdict of a run that found `violation`, or none.
    pub fn of(violation: Option<&Violation>) -> Self {
        violation.map_or(Self::Pass, |v| Self::Broke(v.invariant))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass => write!(f, "pass"),
            Self::Broke(invariant) => write!(f, "{}", invariant.id()),
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "pass" {
            return Ok(Self::Pass);
        }
        // Only a bare id: `Invariant::parse` would also take "I5 allocation …".
        match Invariant::parse(text) {
            Some(invariant) if invariant.id().eq_ignore_ascii_case(text) => Ok(Self::Broke(invariant)),
            _ => Err(format!("verdict = {text:?}: must be \"pass\" or an invariant id (I1..I14)")),
        }
    }
}

impl TryFrom<String> for Verdict {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Verdict> for String {
    fn from(verdict: Verdict) -> String {
        verdict.to_string()
    }
}

/// How a trace is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One run, its crashes as drawn.
    Run,
    /// Every crash state of the scripted run (`snapsim explore`).
    Explore,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Run => "run",
            Self::Explore => "explore",
        })
    }
}

/// A crash trace file: how to run it, what it gave, and the run's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashTrace {
    /// One line: what broke, as the oracle said it.
    pub post_mortem: String,
    /// What the run must give.
    pub verdict: Verdict,
    pub mode: Mode,
    pub seed: u64,
    #[serde(default)]
    pub strict: bool,
    /// A bug-zoo mutation (`Z3`) the engine re-creates for this trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation: Option<String>,
    /// Crashes a `run` draws (an `explore` trace crashes everywhere).
    #[serde(default)]
    pub crashes: u32,
    #[serde(default)]
    pub read_error: f64,
    #[serde(default)]
    pub write_error: f64,
    #[serde(default)]
    pub flush_error: f64,
    /// For an `explore` trace: the writes the failing crash state needs
    /// (see [`crate::cause`]), as the minimized trace's replay printed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The run's schedule in the workload's terms ([`crate::world::guide`]):
    /// when present, the replay follows it instead of the seed's draws, so
    /// that a change to the engine's requests elsewhere leaves the rest of
    /// the run where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(flatten)]
    pub shape: RunShape,
}

/// Why a trace could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A field of the trace is wrong.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// It names a mutation this build cannot make.
    #[error("{0}")]
    Mutation(String),
}

/// What replaying a trace gave.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub violation: Option<Violation>,
    pub steps: u64,
    /// The run's trace hash (for `explore`, the recorded run's).
    pub trace_hash: u64,
    /// The writes the failing crash state needs (`explore` only).
    pub cause: Option<String>,
    /// The run's I/O, when [`CrashTrace::replay_recording`] asked for it.
    pub timeline: Option<crate::timeline::Timeline>,
    /// The schedule the replay ran, in the workload's terms.
    pub schedule: Option<Vec<Decision>>,
}

impl Replayed {
    /// What the replay concluded.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.violation.as_ref())
    }
}

fn ops_text(ops: &[ScriptOp]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

impl CrashTrace {
    /// A trace of a failed `snapsim run`.
    pub fn from_run(config: &RunConfig, report: &Report) -> Self {
        let violation = report.failure.as_ref().map(|f| &f.violation);
        let mut trace = Self::of(&report.knobs, &report.ops, Mode::Run, report.seed, config.mutations, config.strict, violation);
        trace.shape.kernel_patches = config.kernel_patches;
        trace.crashes = report.knobs.crashes;
        let faults = report.knobs.faults;
        (trace.read_error, trace.write_error, trace.flush_error) = (faults.read_error, faults.write_error, faults.flush_error);
        trace
    }

    /// A trace of a failed exploration of `scenario`.
    pub fn from_explore(scenario: &Scenario, seed: u64, mutations: Mutations, strict: bool, violation: &Violation) -> Self {
        let mut trace = Self::of(&scenario.knobs, &scenario.ops, Mode::Explore, seed, mutations, strict, Some(violation));
        trace.shape.writes_max = scenario.file.shape.writes_max;
        trace.shape.faults = scenario.file.shape.faults.clone();
        trace.shape.kernel_patches = scenario.file.shape.kernel_patches;
        trace
    }

    /// A trace of `ops` on `knobs`, with no crashes, random faults or scripted ones.
    fn of(knobs: &Knobs, ops: &[ScriptOp], mode: Mode, seed: u64, mutations: Mutations, strict: bool, violation: Option<&Violation>) -> Self {
        let mut trace = Self {
            post_mortem: violation.map_or("passes".into(), ToString::to_string),
            verdict: Verdict::of(violation),
            mode,
            seed,
            strict,
            mutation: mutations.id().map(str::to_string),
            crashes: 0,
            read_error: 0.0,
            write_error: 0.0,
            flush_error: 0.0,
            cause: None,
            schedule: None,
            shape: RunShape {
                chunk_sectors: knobs.chunk_sectors,
                mixed_chunk_sectors: knobs.mixed_chunk_sectors.clone(),
                origin_chunks: knobs.origin_chunks,
                exact_origin_sectors: None,
                cow_chunks: knobs.cow_chunks,
                exact_cow_sectors: None,
                snapshots: knobs.snapshots,
                store: knobs.store,
                cow_threshold: knobs.cow_threshold,
                queue_depth: knobs.queue_depth,
                writes_max: Bounds::default().writes_max,
                faults: Vec::new(),
                stale_cow: knobs.stale_cow,
                stale_area_zero: knobs.stale_area_zero,
                kernel_patches: engine::store::KernelPatches::Stock,
                ops: ops_text(ops),
            },
        };
        trace.shape.set_geometry(knobs);
        trace
    }

    /// Reads and checks a trace file: every field in its range (the
    /// scenario's fields against [`crate::scenario::Limits`]).
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = crate::limits::read_text_bounded(path, crate::limits::SCRIPT_FILE_BYTES_MAX).map_err(|e| FileError::unreadable(path, e))?;
        let trace: Self = toml::from_str(&text).map_err(|e| FileError::syntax(path, &text, &e))?;
        trace.check().map_err(|e| FileError::field(path, &text, e))?;
        Ok(trace)
    }

    /// The most crashes a trace may ask for.
    pub const CRASHES_MAX: u32 = 100;
    /// The highest fault rate a trace may ask for (a disk failing every
    /// request would stop the run from going anywhere).
    pub const ERROR_RATE_MAX: f64 = 0.5;

    /// Checks the trace's own fields, then the scenario it describes.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.crashes > Self::CRASHES_MAX {
            return Err(FieldError::new("crashes", format!("crashes = {}: must be 0..={}", self.crashes, Self::CRASHES_MAX)));
        }
        for (field, rate) in [("read_error", self.read_error), ("write_error", self.write_error), ("flush_error", self.flush_error)] {
            if !(0.0..=Self::ERROR_RATE_MAX).contains(&rate) {
                return Err(FieldError::new(field, format!("{field} = {rate}: must be a rate from 0 to {}", Self::ERROR_RATE_MAX)));
            }
        }
        if let Some(schedule) = &self.schedule {
            guide::parse(schedule).map_err(|e| FieldError::new("schedule", e))?;
        }
        if let Some(id) = &self.mutation {
            if Mutation::parse(id).is_none() {
                return Err(FieldError::new("mutation", format!("mutation = {id:?}: no such mutation (Z1..Z22)")));
            }
        }
        self.scenario().map(|_| ())
    }

    /// The file's text: a comment header, then the fields.
    pub fn to_text(&self, file_name: &str) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| panic!("a crash trace always serializes: {e}"));
        debug_assert!(toml::from_str::<Self>(&body).is_ok_and(|back| back == *self), "a trace reads back as written");
        let cause = self.cause.as_ref().map_or(String::new(), |cause| format!("# {cause}\n"));
        format!("# post-mortem: {}\n{cause}# replay: snapsim replay crash-traces/{file_name}\n\n{body}", self.post_mortem)
    }

    /// A file name for this trace: verdict, mode, seed and mutation.
    pub fn file_name(&self) -> String {
        let mutation = self.mutation.as_ref().map_or(String::new(), |m| format!("-{}", m.to_lowercase()));
        let strict = if self.strict { "-strict" } else { "" };
        let patched = if self.shape.kernel_patches == engine::store::KernelPatches::Applied { "-patched" } else { "" };
        format!("{}-{}-seed{}{mutation}{strict}{patched}.toml", self.verdict.to_string().to_lowercase(), self.mode, self.seed)
    }

    /// Writes the trace into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, std::io::Error> {
        fn context(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
            move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
        std::fs::create_dir_all(dir).map_err(context(dir))?;
        let name = self.file_name();
        let path = dir.join(&name);
        std::fs::write(&path, self.to_text(&name)).map_err(context(&path))?;
        Ok(path)
    }

    /// The scenario this trace describes (knobs, ops, scripted faults).
    pub fn scenario(&self) -> Result<Scenario, FieldError> {
        let file = ScenarioFile { description: self.post_mortem.clone(), seeds: vec![self.seed], reaches: Vec::new(), shape: self.shape.clone() };
        let mut scenario = Scenario::from_file("trace", Path::new("trace"), file)?;
        scenario.knobs.crashes = self.crashes;
        scenario.knobs.faults = FaultRates { read_error: self.read_error, write_error: self.write_error, flush_error: self.flush_error };
        Ok(scenario)
    }

    /// Runs the trace as recorded.
    pub fn replay(&self) -> Result<Replayed, ReplayError> {
        self.replay_recording(false)
    }

    /// Runs the trace as recorded, keeping its I/O timeline if `timeline`.
    pub fn replay_recording(&self, timeline: bool) -> Result<Replayed, ReplayError> {
        self.check()?;
        let scenario = self.scenario()?;
        let mut config = scenario.run_config(self.seed);
        config.timeline = timeline;
        config.record_schedule = true;
        config.schedule = self.schedule.as_deref().map(guide::parse).transpose().map_err(|e| FieldError::new("schedule", e))?;
        config.strict = self.strict;
        config.mutations = mutations_of(self.mutation.as_deref()).map_err(ReplayError::Mutation)?;
        match self.mode {
            Mode::Run => {
                let mut report = run(&config);
                let cause = crate::cause::explain_run(&mut report).map(|c| c.to_string());
                let violation = report.failure.map(|f| f.violation);
                let schedule = report.schedule;
                Ok(Replayed { violation, steps: report.stats.steps, trace_hash: report.trace_hash, cause, timeline: report.timeline, schedule })
            }
            Mode::Explore => {
                let (coverage, outcome) = explore(&config, &scenario.bounds());
                let (violation, cause, timeline) = match outcome {
                    Ok(()) => (None, None, None),
                    Err(failure) => (Some(failure.violation), failure.cause.map(|c| c.to_string()), failure.timeline.map(|t| *t)),
                };
                Ok(Replayed { violation, steps: coverage.steps, trace_hash: coverage.trace_hash, cause, timeline, schedule: coverage.schedule })
            }
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
                    *best = CrashTrace { post_mortem: violation.to_string(), cause: replayed.cause, ..candidate };
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
        let mut ops: Vec<String> = best.shape.ops.lines().map(str::to_string).collect();
        let mut size = ops.len() / 2;
        while size >= 1 {
            let mut start = 0;
            while start < ops.len() {
                let mut fewer = ops.clone();
                fewer.drain(start..(start + size).min(ops.len()));
                let candidate =
                    CrashTrace { shape: RunShape { ops: fewer.iter().map(|l| format!("{l}\n")).collect(), ..best.shape.clone() }, ..best.clone() };
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
            let origin_sectors = origin_chunks * u64::from(trace.shape.chunk_sectors);
            parse_ops(&trace.shape.ops).is_ok_and(|ops| {
                ops.iter().all(|op| match *op {
                    ScriptOp::Write { sector, sectors, .. } | ScriptOp::Read { sector, sectors, .. } => sector + sectors <= origin_sectors,
                    _ => true,
                })
            })
        };
        while best.shape.origin_chunks > 1 && fits(&best, best.shape.origin_chunks / 2) {
            if !attempt(
                CrashTrace { shape: RunShape { origin_chunks: best.shape.origin_chunks / 2, ..best.shape.clone() }, ..best.clone() },
                &mut best,
            ) {
                break;
            }
        }
        while best.shape.cow_chunks > 4 {
            if !attempt(CrashTrace { shape: RunShape { cow_chunks: best.shape.cow_chunks / 2, ..best.shape.clone() }, ..best.clone() }, &mut best) {
                break;
            }
        }
        // The trace as kept: its cause (nothing may have shrunk) and its
        // schedule, kept only if following it gives the same verdict.
        if let Ok(replayed) = best.replay() {
            if best.mode == Mode::Explore && best.cause.is_none() {
                best.cause = replayed.cause;
            }
            if let Some(schedule) = replayed.schedule.filter(|_| best.schedule.is_none()) {
                let scheduled = CrashTrace { schedule: Some(guide::to_text(&schedule)), ..best.clone() };
                if scheduled.replay().is_ok_and(|r| r.verdict() == self.verdict) {
                    best = scheduled;
                }
            }
        }
        best
    }
}

/// The mutations a trace names (an error if this build cannot make them).
pub fn mutations_of(id: Option<&str>) -> Result<Mutations, String> {
    let Some(id) = id else { return Ok(Mutations::NONE) };
    if !Mutations::available() {
        return Err(format!("mutation {id} needs a build with the bug-zoo feature (cargo … -p snapsim --features bug-zoo)"));
    }
    Mutation::parse(id).map(Mutations::only).ok_or_else(|| format!("unknown mutation {id:?}"))
}

/// The crash-traces directory of this workspace.
pub fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("crash-traces")
}
