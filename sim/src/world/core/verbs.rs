//! The harness as a library: the verbs a regression test is written with.
//!
//! ```
//! use model::Target;
//! use sim::world::{Knobs, RunConfig, World};
//!
//! // One 4 KiB-chunk snapshot over a 64-chunk origin, no faults.
//! let mut world = World::boot(&RunConfig::new(1).with_knobs(Knobs::plain(8, 64, 160, 1)));
//! world.write(Target::Origin, 0, 8); // copies chunk 0 into the COW first
//! world.run_until_quiet().unwrap();
//! world.crash_keeping(|_disk, _sector, _values| 0); // every unflushed sector lost
//! world.check().unwrap(); // the snapshot still shows chunk 0 as it was
//! ```
//!
//! Every verb goes through the same paths as `snapsim run` and `explore`:
//! the oracle sees every event, a reload is checked against the images, and
//! [`World::check`] reads every view back. A failure is kept: once a verb
//! has found one, [`World::failure`] returns it and `check` reports it.

use model::{Target, UserFlags};

use super::{Invariant, World, lock};
use crate::world::config::RunConfig;
use crate::world::observer::Failure;
use crate::world::script::ScriptOp;

impl World {
    /// A world for `config`, booted: the engine loaded on its initial disks
    /// and the scripted faults armed. The verbs below drive it; the
    /// config's script, if any, is not run (that is [`crate::world::run`]'s job).
    pub fn boot(config: &RunConfig) -> Self {
        let mut world = Self::new(config);
        world.start();
        world
    }

    /// Submits a plain write of `sectors` sectors at `sector` (data tagged
    /// with its operation number); it completes as the world steps.
    pub fn write(&mut self, target: Target, sector: u64, sectors: u64) {
        self.write_with(target, sector, sectors, UserFlags::PLAIN);
    }

    /// [`World::write`] with REQ_PREFLUSH and REQ_FUA as `flags` says.
    pub fn write_with(&mut self, target: Target, sector: u64, sectors: u64, flags: UserFlags) {
        self.run_op(ScriptOp::Write { target, sector, sectors, flags });
    }

    /// Submits a read of snapshot `snapshot`; the oracle judges what it returns.
    pub fn read(&mut self, snapshot: usize, sector: u64, sectors: u64) {
        self.run_op(ScriptOp::Read { snapshot, sector, sectors });
    }

    /// Submits an empty flush of the origin or a snapshot.
    pub fn flush(&mut self, target: Target) {
        self.run_op(ScriptOp::Flush { target });
    }

    /// Runs one in-flight event, the one the seed's scheduler picks: a disk
    /// completion or deferred engine work. `false` when nothing is in flight.
    pub fn step(&mut self) -> bool {
        let stepped = self.step_event();
        if stepped {
            self.judge_step();
        }
        stepped
    }

    /// Steps until nothing is in flight. Every operation submitted must
    /// have completed by then (I11); a violation found on the way is returned.
    pub fn run_until_quiet(&mut self) -> Result<(), Failure> {
        let mut steps = 0u64;
        while !self.failed() && self.step() {
            steps += 1;
            if steps > RunConfig::MAX_STEPS_DEFAULT {
                self.fail(Invariant::I11Liveness, format!("still busy after {steps} steps"));
            }
        }
        let stuck = lock(&self.shared).counters.in_flight;
        if stuck > 0 && !self.failed() {
            self.fail(Invariant::I11Liveness, format!("{stuck} operation(s) never completed, with nothing left in flight"));
        }
        self.failure().map_or(Ok(()), Err)
    }

    /// A power cut now: every non-durable sector of every disk keeps its
    /// durable value or takes one written since, as the seed's crash stream
    /// picks; operations in flight die; the engine reboots on the images.
    pub fn crash(&mut self) {
        self.run_op(ScriptOp::Crash);
    }

    /// A power cut now, with the persisted subset chosen by `choose(disk,
    /// sector, values)`: for each non-durable sector of disk `disk` (0 the
    /// origin, `k + 1` COW `k`), the index of the value it keeps among
    /// `values` candidates (0 its durable value, then each value written
    /// since, oldest first).
    pub fn crash_keeping(&mut self, choose: impl FnMut(usize, u64, usize) -> usize) {
        let images = super::crash::crash_images(&self.engine.disks, choose);
        self.ops.push(ScriptOp::Crash);
        self.reboot(images, false);
    }

    /// A clean shutdown and reload (waits for nothing: call
    /// [`World::run_until_quiet`] first for the script's `reload`).
    pub fn reload(&mut self) {
        self.run_op(ScriptOp::Reload);
    }

    /// Hands snapshot `snapshot` to snapshot-merge and starts merging; the
    /// merge runs as the world steps.
    pub fn merge(&mut self, snapshot: usize) {
        self.run_op(ScriptOp::Merge { snapshot });
    }

    /// Checks everything: each snapshot's status line (at quiescence), then
    /// every sector of every judged snapshot and of the origin, read back
    /// against the model (I1–I3, I14). The first violation found, if any.
    pub fn check(&mut self) -> Result<(), Failure> {
        if !self.failed() {
            self.report_status();
        }
        if !self.failed() {
            self.read_back_everything();
        }
        self.failure().map_or(Ok(()), Err)
    }

    /// The first violation found so far.
    pub fn failure(&self) -> Option<Failure> {
        lock(&self.shared).failure.clone()
    }
}
