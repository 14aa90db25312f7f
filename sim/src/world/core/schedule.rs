//! Time: stepping one in-flight event at a time, and the main loop that runs the workload until quiet.

use model::{DiskOp, Event, Invariant};
use rand::RngExt;

use super::World;
use crate::disk::RequestKind;
use crate::world::observer::lock;

impl World {
    /// Whether anything is in flight: disk requests or deferred engine work.
    pub(super) fn busy(&self) -> bool {
        self.engine.disks.iter().any(|d| d.in_flight_count() > 0) || !lock(&self.engine.deferred.0).is_empty()
    }

    /// Runs one in-flight event, if there is one: a disk completion or deferred work.
    pub(super) fn step_event(&mut self) -> bool {
        let counts: Vec<usize> = self.engine.disks.iter().map(|d| d.in_flight_count()).collect();
        let requests: usize = counts.iter().sum();
        let deferred_waiting = !lock(&self.engine.deferred.0).is_empty();
        let choices = requests + usize::from(deferred_waiting);
        if choices == 0 {
            return false;
        }
        let mut pick = self.scheduler.random_range(0..choices);
        if pick == requests {
            let work = lock(&self.engine.deferred.0).pop_front().expect("deferred work waiting");
            self.stats.deferred += 1;
            self.emit(Event::Deferred);
            work();
            self.timeline_tick();
            return true;
        }
        let disk = counts
            .iter()
            .position(|&count| {
                if pick < count {
                    true
                } else {
                    pick -= count;
                    false
                }
            })
            .expect("pick within the requests");
        let id = self.engine.disks[disk].in_flight_id(pick).expect("request in flight");
        let completion = self.engine.disks[disk].complete(id);
        let info = completion.info;
        let op = match info.kind {
            RequestKind::Read => DiskOp::Read,
            RequestKind::Write { fua, preflush } => DiskOp::Write { preflush, fua },
            RequestKind::Flush => DiskOp::Flush,
        };
        self.stats.disk_requests += 1;
        self.stats.disk_errors += u64::from(!completion.ok);
        self.emit(Event::Disk { disk, request: info.id, op, sector: info.sector, sectors: info.sectors, ok: completion.ok });
        if let Some(recorder) = &mut self.timeline {
            // Submitted since the last tick (a load's read, say) and done already.
            recorder.collect(&self.engine.disks);
            recorder.completed(disk, info.id, completion.ok);
        }
        completion.run();
        self.timeline_tick();
        true
    }

    /// Runs until the workload is done and nothing is in flight (or a
    /// violation). `at_crash_point` sees the world between every two steps;
    /// returning `false` stops the run there.
    pub fn main_loop(&mut self, max_steps: u64, at_crash_point: &mut dyn FnMut(&World) -> bool) {
        let operations = self.knobs.operations;
        let crash_chance = (f64::from(self.knobs.crashes) / (operations.max(1) as f64 * 4.0)).min(1.0);
        let mut crashes_left = self.knobs.crashes;
        while !self.failed() {
            if !at_crash_point(self) {
                return;
            }
            self.stats.steps += 1;
            lock(&self.shared).step = self.stats.steps;
            if self.stats.steps > max_steps {
                return self.fail(Invariant::I11Liveness, format!("the run did not finish within {max_steps} steps"));
            }
            if crashes_left > 0 && self.scheduler.random_bool(crash_chance) {
                crashes_left -= 1;
                self.crash_seeded();
                continue;
            }
            let room = lock(&self.shared).counters.in_flight < self.knobs.queue_depth;
            let busy = self.busy();
            let next = match &mut self.script {
                Some(script) => match script.front().copied() {
                    Some(op) if op.needs_quiet() && (busy || lock(&self.shared).counters.in_flight > 0) => None,
                    Some(op) if room && (!busy || op.needs_quiet() || self.scheduler.random_bool(0.4)) => script.pop_front(),
                    _ => None,
                },
                None if self.stats.operations < operations && room && (!busy || self.scheduler.random_bool(0.4)) => Some(self.random_op()),
                None => None,
            };
            match next {
                Some(op) => self.run_op(op),
                None if !self.step_event() => break,
                None => {}
            }
            self.judge_merge_step();
        }
        if self.failed() {
            return;
        }
        let stuck = lock(&self.shared).counters.in_flight;
        if stuck > 0 {
            return self.fail(Invariant::I11Liveness, format!("{stuck} operation(s) never completed, with nothing left in flight"));
        }
        if let Some((k, outcome)) = &self.merging {
            if lock(outcome).is_none() {
                return self.fail(Invariant::I11Liveness, format!("the merge of snapshot {k} never finished"));
            }
        }
        self.report_status();
        if self.read_back_at_end {
            self.read_back_everything();
        }
    }
}
