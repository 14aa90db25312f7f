//! Time: stepping one in-flight event at a time, and the main loop that runs the workload until quiet.

use model::{DiskOp, Event, Invariant};
use rand::RngExt;

use std::collections::VecDeque;

use super::World;
use crate::disk::RequestKind;
use crate::world::guide::Decision;
use crate::world::observer::lock;
use crate::world::script::ScriptOp;

impl World {
    /// Whether anything is in flight: disk requests or deferred engine work.
    pub(super) fn busy(&self) -> bool {
        self.engine.disks.iter().any(|d| d.in_flight_count() > 0) || !lock(&self.engine.deferred.0).is_empty()
    }

    /// The event a schedule being followed names, if it is in flight
    /// (`Some(None)`: engine work); otherwise the oldest event, engine work
    /// first (`None` when the schedule's next step is not an event at all
    /// and something is in flight anyway: then too the oldest).
    fn guided_pick(&mut self, deferred_waiting: bool) -> Option<(usize, u64)> {
        let front = self.guide.as_mut().and_then(|guide| guide.front().cloned());
        match front {
            Some(Decision::Work) => {
                self.guide.as_mut().map(VecDeque::pop_front);
                if deferred_waiting {
                    return None;
                }
            }
            Some(done @ Decision::Done { .. }) => {
                self.guide.as_mut().map(VecDeque::pop_front);
                let Decision::Done { disk, rank, .. } = done else { unreachable!() };
                if let Some(d) = self.engine.disks.get(disk) {
                    // The `rank`-th oldest of the requests in flight that match.
                    if let Some(info) = d.in_flight_infos().into_iter().filter(|info| done.names(disk, info)).nth(rank) {
                        return Some((disk, info.id));
                    }
                }
            }
            // An operation or a crash comes next: the main loop's to take.
            _ => {}
        }
        // The schedule names nothing in flight (the engine changed): the oldest instead.
        if deferred_waiting {
            return None;
        }
        self.engine.disks.iter().enumerate().find_map(|(disk, d)| d.in_flight_id(0).map(|id| (disk, id)))
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
        if self.guide.is_some() {
            return match self.guided_pick(deferred_waiting) {
                None => self.run_deferred(),
                Some((disk, id)) => self.complete_request(disk, id),
            };
        }
        let mut pick = self.scheduler.random_range(0..choices);
        if pick == requests {
            return self.run_deferred();
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
        self.complete_request(disk, id)
    }

    /// Runs one piece of deferred engine work.
    fn run_deferred(&mut self) -> bool {
        if let Some(recorded) = &mut self.recorded {
            recorded.push(Decision::Work);
        }
        let work = lock(&self.engine.deferred.0).pop_front().expect("deferred work waiting");
        self.stats.deferred += 1;
        self.emit(Event::Deferred);
        work();
        self.timeline_tick();
        true
    }

    /// What is judged after every step: a merge step's status line, and any
    /// snapshot whose state changed.
    pub(super) fn judge_step(&mut self) {
        self.judge_merge_step();
        self.report_status_on_change();
    }

    /// Completes request `id` of disk `disk` and runs its callback.
    fn complete_request(&mut self, disk: usize, id: u64) -> bool {
        if let Some(recorded) = &mut self.recorded {
            // Named by what it is, and among in-flight requests alike, by age.
            let in_flight = self.engine.disks[disk].in_flight_infos();
            let info = in_flight.iter().find(|info| info.id == id).expect("the request is in flight");
            let rank = in_flight.iter().filter(|other| other.id < id && Decision::done(disk, info, 0).names(disk, other)).count();
            recorded.push(Decision::done(disk, info, rank));
        }
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
        // A failed write too: what it left on the media is not the world's to assume.
        if let (Some(written), DiskOp::Write { .. }) = (&mut self.written, op) {
            written.push((disk, info.sector, info.sectors));
        }
        if let Some(recorder) = &mut self.timeline {
            // Submitted since the last tick (a load's read, say) and done already.
            recorder.collect(&self.engine.disks);
            recorder.completed(disk, info.id, completion.ok);
        }
        completion.run();
        self.timeline_tick();
        true
    }

    /// One step of a run following a schedule: the step it names, or where
    /// that cannot be taken, the next operation when it may go, else the
    /// oldest event. `false` when nothing is left to do.
    fn guided_step(&mut self, operations: u64) -> bool {
        let front = self.guide.as_ref().and_then(|guide| guide.front().cloned());
        if matches!(front, Some(Decision::Op)) {
            self.guide.as_mut().map(VecDeque::pop_front);
            if let Some(op) = self.next_op_allowed(operations) {
                self.run_op(op);
                return true;
            }
        }
        if self.step_event() {
            return true;
        }
        match self.next_op_allowed(operations) {
            Some(op) => {
                self.run_op(op);
                true
            }
            None => false,
        }
    }

    /// The next operation, if it may be submitted now (room in the queue,
    /// and quiet for one that waits for it), with no draw.
    fn next_op_allowed(&mut self, operations: u64) -> Option<ScriptOp> {
        let in_flight = lock(&self.shared).counters.in_flight;
        let room = in_flight < self.knobs.queue_depth;
        let quiet = !self.busy() && in_flight == 0;
        if let Some(merge) = self.due_op() {
            return quiet.then_some(merge);
        }
        match &mut self.script {
            Some(script) => match script.front().copied() {
                Some(op) if room && (!op.needs_quiet() || quiet) => script.pop_front(),
                _ => None,
            },
            None if self.stats.operations < operations && room => Some(self.random_op()),
            None => None,
        }
    }

    /// The swarm's merge, when the random workload has reached it
    /// ([`crate::world::Knobs::merge_after`]) and not yet run it.
    fn due_op(&self) -> Option<ScriptOp> {
        if self.script.is_some() {
            return None;
        }
        // A reused COW with a stale area 0 is reloaded cleanly before the
        // first commit (right after the new snapshot's header and zeroing)
        // and halfway through: a stale record loaded either time is I4/I6.
        let reloads_at = [0, self.knobs.operations / 2];
        if self.knobs.stale_area_zero && reloads_at.get(self.swarm_reloads).is_some_and(|&at| self.stats.operations >= at) {
            return Some(ScriptOp::Reload);
        }
        let after = self.knobs.merge_after?;
        let due = self.merging.is_none() && self.stats.operations >= after;
        due.then_some(ScriptOp::Merge { snapshot: 0 })
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
            if self.guide.is_some() {
                if matches!(self.guide.as_ref().and_then(|g| g.front()), Some(Decision::Crash { .. })) {
                    // As a drawn crash: no merge step is judged after it.
                    self.crash_seeded();
                    continue;
                }
                if !self.guided_step(operations) {
                    break;
                }
                self.judge_step();
                continue;
            }
            if crashes_left > 0 && self.scheduler.random_bool(crash_chance) {
                crashes_left -= 1;
                self.crash_seeded();
                continue;
            }
            let room = lock(&self.shared).counters.in_flight < self.knobs.queue_depth;
            let busy = self.busy();
            // A swarm merge, once due, waits for quiet: no new operation meanwhile.
            let merge = self.due_op();
            if let Some(merge) = merge.filter(|_| !busy && lock(&self.shared).counters.in_flight == 0) {
                if let Some(recorded) = &mut self.recorded {
                    recorded.push(Decision::Op);
                }
                self.run_op(merge);
                self.judge_step();
                continue;
            }
            let next = match &mut self.script {
                Some(script) => match script.front().copied() {
                    Some(op) if op.needs_quiet() && (busy || lock(&self.shared).counters.in_flight > 0) => None,
                    Some(op) if room && (!busy || op.needs_quiet() || self.scheduler.random_bool(0.4)) => script.pop_front(),
                    _ => None,
                },
                None if merge.is_none() && self.stats.operations < operations && room && (!busy || self.scheduler.random_bool(0.4)) => {
                    Some(self.random_op())
                }
                None => None,
            };
            match next {
                Some(op) => {
                    if let Some(recorded) = &mut self.recorded {
                        recorded.push(Decision::Op);
                    }
                    self.run_op(op)
                }
                None if !self.step_event() => break,
                None => {}
            }
            self.judge_step();
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
