//! The workload: random operations drawn from the seed, and every operation (scripted or random) run against the engine.

use std::sync::Arc;

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, IoDone, WriteFlags};
use engine::targets::{MergeOutcome, Role, SnapshotDevice};
use model::{Event, Invariant, Target, UserFlags};
use rand::RngExt;

use super::{World, sector_hashes, tagged};
use crate::disk::SimDisk;
use crate::world::observer::lock;
use crate::world::script::ScriptOp;

impl World {
    /// The next operation of the random workload.
    pub(super) fn random_op(&mut self) -> ScriptOp {
        let mix = self.knobs.mix;
        let total = mix.origin_write + mix.snapshot_write + mix.snapshot_read + mix.flush;
        let roll = self.workload.random_range(0..total);
        let origin_sectors = self.knobs.origin_sectors();
        let mut sector = self.workload.random_range(0..origin_sectors);
        // On an origin that ends mid-chunk, one operation in eight lands at
        // its very end: the last whole chunk or the partial one after it
        // (drawn only then, so that regular seeds keep their workloads).
        if self.knobs.origin_tail_sectors > 0 && self.workload.random_bool(0.125) {
            let end = u64::from(self.knobs.chunk_sectors) + self.knobs.origin_tail_sectors;
            sector = self.workload.random_range(origin_sectors.saturating_sub(end)..origin_sectors);
        }
        let sectors = self.workload.random_range(1..=16u64).min(origin_sectors - sector);
        let snapshot = self.workload.random_range(0..self.knobs.snapshots);
        // A merging snapshot has no device of its own: snapshot-merge
        // serves the origin's, so its writes are the origin's.
        let snapshot_write_target = match self.merging {
            Some((k, _)) if k == snapshot => Target::Origin,
            _ => Target::Snapshot(snapshot),
        };
        if roll < mix.origin_write {
            ScriptOp::Write { target: Target::Origin, sector, sectors, flags: self.draw_flags() }
        } else if roll < mix.origin_write + mix.snapshot_write {
            ScriptOp::Write { target: snapshot_write_target, sector, sectors, flags: self.draw_flags() }
        } else if roll < mix.origin_write + mix.snapshot_write + mix.snapshot_read {
            ScriptOp::Read { snapshot, sector, sectors }
        } else if self.workload.random_bool(0.5) {
            ScriptOp::Flush { target: Target::Origin }
        } else {
            ScriptOp::Flush { target: Target::Snapshot(snapshot) }
        }
    }

    /// A random write's flags, from a stream of their own (so that seeds
    /// whose knobs draw no flags run exactly as before flags existed).
    fn draw_flags(&mut self) -> UserFlags {
        let (fua, preflush) = (self.knobs.fua_per_mille, self.knobs.preflush_per_mille);
        if fua == 0 && preflush == 0 {
            return UserFlags::PLAIN;
        }
        UserFlags { fua: self.flags.random_range(0..1000) < fua, preflush: self.flags.random_range(0..1000) < preflush }
    }

    pub(super) fn run_op(&mut self, op: ScriptOp) {
        self.ops.push(op);
        match op {
            ScriptOp::Wait => {}
            ScriptOp::Reload => {
                self.swarm_reloads += usize::from(self.script.is_none());
                let images = self.engine.disks.iter().map(|d| d.cached()).collect();
                self.reboot(images, true);
            }
            ScriptOp::Crash => self.crash_seeded(),
            ScriptOp::Status => self.report_status(),
            ScriptOp::Merge { snapshot } => {
                if snapshot < self.engine.snapshots.len() && self.merging.is_none() {
                    self.merging = Some((snapshot, Arc::default()));
                    self.start_merge(snapshot);
                }
            }
            ScriptOp::Write { .. } | ScriptOp::Read { .. } | ScriptOp::Flush { .. } => self.submit(op),
        }
        self.timeline_tick();
    }

    /// Hands snapshot `k` to snapshot-merge and starts the merge.
    pub(super) fn start_merge(&mut self, k: usize) {
        let Some((_, outcome)) = &self.merging else { return };
        let outcome = Arc::clone(outcome);
        *lock(&outcome) = None;
        let source = Arc::clone(self.engine.snapshots[k].snapshot());
        let merging = self.engine.origin.origin().hand_over(&source, Role::Merge);
        self.merge_runs_judged = 0;
        self.engine.snapshots[k] = Arc::new(SnapshotDevice::new(Arc::clone(&merging)));
        self.emit(Event::MergeStart { snapshot: k });
        let shared = Arc::clone(&self.shared);
        merging.start_merge(Box::new(move |result| {
            let ok = result == MergeOutcome::Complete;
            *lock(&outcome) = Some(result);
            lock(&shared).emit(Event::MergeDone { snapshot: k, ok });
        }));
    }

    fn submit(&mut self, script_op: ScriptOp) {
        let op = self.stats.operations;
        self.stats.operations += 1;
        lock(&self.shared).counters.in_flight += 1;
        let device = |world: &Self, k: usize| world.engine.snapshots.get(k).cloned();
        // Once snapshot-merge is loaded, it serves the origin's device node
        // (the kernel swaps the origin's table for it): writes meant for the
        // origin arrive through the merge target.
        let script_op = match (script_op, &self.merging) {
            (ScriptOp::Write { target: Target::Origin, sector, sectors, flags }, Some((k, _))) => {
                ScriptOp::Write { target: Target::Snapshot(*k), sector, sectors, flags }
            }
            (op, _) => op,
        };
        match script_op {
            ScriptOp::Write { target: Target::Origin, sector, sectors, flags } => {
                let data = tagged(&format!("o{op:05}"), sectors);
                self.emit_write(op, Target::Origin, sector, &data, flags);
                self.engine.origin.write(sector, data, engine_flags(flags), self.acknowledger(op));
            }
            ScriptOp::Write { target: Target::Snapshot(k), sector, sectors, flags } => {
                let Some(device) = device(self, k) else { return self.fail(Invariant::I6Reload, format!("snapshot {k} is not loaded")) };
                let data = tagged(&format!("s{k}{op:05}"), sectors);
                self.emit_write(op, Target::Snapshot(k), sector, &data, flags);
                device.write(sector, data, engine_flags(flags), self.acknowledger(op));
            }
            ScriptOp::Read { snapshot, sector, sectors } => {
                let Some(device) = device(self, snapshot) else {
                    return self.fail(Invariant::I6Reload, format!("snapshot {snapshot} is not loaded"));
                };
                self.emit(Event::Read { op, target: Target::Snapshot(snapshot), sector, sectors });
                let checker = self.read_checker(op, Arc::clone(&device));
                device.read(sector, sectors as u32, checker);
            }
            ScriptOp::Flush { target } => {
                self.emit(Event::Flush { op, target });
                match target {
                    Target::Origin => self.engine.origin.flush(self.acknowledger(op)),
                    Target::Snapshot(k) => match device(self, k) {
                        Some(device) => device.flush(self.acknowledger(op)),
                        None => self.fail(Invariant::I6Reload, format!("snapshot {k} is not loaded")),
                    },
                }
            }
            ScriptOp::Wait | ScriptOp::Reload | ScriptOp::Merge { .. } | ScriptOp::Crash | ScriptOp::Status => unreachable!("not a submission"),
        }
    }

    fn acknowledger(&self, op: u64) -> IoDone<()> {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| {
            let mut observer = lock(&shared);
            observer.counters.in_flight -= 1;
            let ok = result.is_ok();
            if ok {
                observer.counters.acknowledged += 1;
            } else {
                observer.counters.failed += 1;
            }
            observer.emit(Event::Ack { op, ok });
        })
    }

    /// Hands a snapshot read's result to the oracle.
    fn read_checker(&self, op: u64, device: Arc<SnapshotDevice<SimDisk>>) -> IoDone<Vec<u8>> {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| {
            let snapshot_valid = device.snapshot().is_valid();
            let mut observer = lock(&shared);
            observer.counters.in_flight -= 1;
            let values = match result {
                Ok(data) => {
                    observer.counters.acknowledged += 1;
                    observer.counters.sectors_checked += (data.len() / SECTOR_BYTES) as u64;
                    Some(Arc::from(sector_hashes(&data)))
                }
                Err(_) => {
                    observer.counters.failed += 1;
                    None
                }
            };
            observer.emit(Event::ReadDone { op, values, snapshot_valid });
        })
    }
}

/// The engine's flags for a user write's.
fn engine_flags(flags: UserFlags) -> WriteFlags {
    WriteFlags { preflush: flags.preflush, fua: flags.fua }
}
