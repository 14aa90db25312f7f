//! The deterministic world: the production engine on simulated disks.
//!
//! One root seed forks an independent ChaCha stream per component — knobs,
//! scheduler, workload, crash choices, and each disk's faults — so an extra
//! draw in one component never shifts another. The world owns time: a step
//! is one event — a workload operation submitted, one in-flight disk request
//! completed (which one, the scheduler picks), one piece of deferred engine
//! work run, or a crash. After a crash every disk is replaced by a crash
//! image and the engine is rebuilt from those images only, as after a
//! reboot; then the workload goes on.
//!
//! Every event goes to the [`model::Oracle`], which judges live reads and
//! reported state; after every reload the world has it read each COW image
//! (I4, I5) and compares the engine's loaded table with what the image says
//! (I6); at the end it reads back every snapshot and the origin (I1, I2,
//! I3) and requires every operation to have completed (I11).

mod config;
mod core;
pub mod guide;
pub mod knobs;
pub mod observer;
pub mod script;

pub use config::{Injection, RunConfig, parse_strict, stream, strict_from_env};
pub use core::{CrashPoint, Incremental, IncrementalStats, Judged, LastCrash, Report, Stats, World, initial_sector, sector_hash, tagged};
// The shuttle harness builds its worlds the same way.
#[cfg(shuttle)]
pub(crate) use core::{initial_origin, label_sectors, sector_hashes};
pub use knobs::Knobs;
pub use observer::Failure;
pub use script::ScriptOp;

/// Runs the world for `config.seed`.
pub fn run(config: &RunConfig) -> Report {
    // Marks count per thread: what an earlier run here left is not ours.
    let _ = crate::marks::MarkCounts::take("");
    let mut world = World::new(config);
    world.start();
    world.main_loop(config.max_steps, &mut |_| true);
    let mut report = world.report();
    report.marks = crate::marks::MarkCounts::take(&format!("seed {}", config.seed));
    report.replay = config.replay_command();
    report.replay_test = config.replay_test_command();
    report
}
