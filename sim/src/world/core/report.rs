//! What a run leaves: its [`Report`], with its counts ([`Stats`]) and, for
//! a failure after a crash, that crash ([`LastCrash`]).

use model::{Allowances, Event};

use super::CrashPoint;
use crate::world::guide;
use crate::world::knobs::Knobs;
use crate::world::observer::Failure;
use crate::world::script::ScriptOp;

/// What happened in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub steps: u64,
    pub operations: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub disk_requests: u64,
    pub disk_errors: u64,
    pub deferred: u64,
    pub crashes: u64,
    pub sectors_checked: u64,
}

/// A run's last seeded crash, as a failure after it needs it explained:
/// the crash point, the disks as the power went (their writes in flight),
/// the images the crash left and the boot it ended.
#[derive(Debug, Clone)]
pub struct LastCrash {
    pub point: CrashPoint,
    pub disks: Vec<std::sync::Arc<crate::disk::SimDisk>>,
    pub images: Vec<crate::disk::Image>,
    /// The timeline's boot the crash ended.
    pub boot: u64,
    /// The world's step at the crash.
    pub step: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub knobs: Knobs,
    pub stats: Stats,
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    pub allowances: Allowances,
    /// Every event, when [`crate::world::RunConfig::keep_events`] asked for them.
    pub events: Vec<Event>,
    /// Every operation the workload ran, as a script.
    pub ops: Vec<ScriptOp>,
    /// The command that replays this run ([`crate::world::RunConfig::replay_command`]).
    pub replay: String,
    /// Its `cargo test` form.
    pub replay_test: String,
    /// The coverage marks the run reached (filled by [`crate::world::run`]).
    pub marks: crate::marks::MarkCounts,
    /// The run's I/O, when [`crate::world::RunConfig::timeline`] asked for it.
    pub timeline: Option<crate::timeline::Timeline>,
    /// The run's schedule, when [`crate::world::RunConfig::record_schedule`] asked for it.
    pub schedule: Option<Vec<guide::Decision>>,
    /// The last seeded crash, when a timeline was asked for.
    pub last_crash: Option<Box<LastCrash>>,
}

impl Report {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        self.replay.clone()
    }

    /// The `cargo test` form of the replay.
    pub fn replay_test_command(&self) -> String {
        self.replay_test.clone()
    }
}
