//! The shuttle suite: the whole engine on simulated disks under many
//! threads, each dmtest-style case (below, built with the rig of
//! `sim::threads`) explored under the random and the PCT scheduler and
//! judged by the model's oracle; and the concurrency
//! mutations of the bug zoo, each of which some case must catch.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" cargo test -p sim --release --target-dir target/shuttle --test shuttle`
//! (`.ci/run` does). Schedules per case: `SNAPSIM_SHUTTLE_ITERATIONS`
//! (default 2000; the nightly soak raises it). A failure prints the command
//! that replays its saved schedule through the `replay` test below.
#![cfg(shuttle)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use engine::SECTOR_BYTES;
use engine::io::BlockDevice;
use engine::targets::{MergeOutcome, Role, SnapshotDevice};
use engine::zoo::{Mutation, Mutations};
use model::{Event, Invariant, Violation};
use shuttle::sync::mpsc::channel;
use sim::threads::{BASE_CHUNK_SECTORS, Case, Config, Op, Rig, Scheduler, Shape, check, chunk, initial_value, join_all, replay, value_of, wait};

/// Writers and readers on three snapshots with different chunk sizes at once.
const PARALLEL_IO_TO_MANY_SNAPSHOTS: Case = Case { name: "parallel_io_to_many_snapshots", body: cases::parallel_io_to_many_snapshots };
/// Six snapshots of one origin while two writers hit the same chunks.
const MANY_SNAPSHOTS_OF_ONE_ORIGIN: Case = Case { name: "many_snapshots_of_one_origin", body: cases::many_snapshots_of_one_origin };
/// Snapshot reads of chunks that origin writes are copying.
const READS_RACING_COPIES: Case = Case { name: "reads_racing_copies", body: cases::reads_racing_copies };
/// A snapshot created while origin writes wait at a COW threshold of one.
const CREATION_RACES_WRITES_AT_THROTTLE: Case = Case { name: "creation_races_writes_at_throttle", body: cases::creation_races_writes_at_throttle };
/// A merge while writes arrive through the merge target and another snapshot is read.
const MERGE_RACING_WRITES: Case = Case { name: "merge_racing_writes", body: cases::merge_racing_writes };

const ALL: [Case; 5] =
    [PARALLEL_IO_TO_MANY_SNAPSHOTS, MANY_SNAPSHOTS_OF_ONE_ORIGIN, READS_RACING_COPIES, CREATION_RACES_WRITES_AT_THROTTLE, MERGE_RACING_WRITES];

fn both_schedulers(case: Case) {
    let config = Config::default();
    check(case, &Config { scheduler: Scheduler::Random, ..config.clone() });
    check(case, &Config { scheduler: Scheduler::Pct { depth: 3 }, ..config });
}

#[test]
fn parallel_io_to_many_snapshots() {
    both_schedulers(PARALLEL_IO_TO_MANY_SNAPSHOTS);
}

#[test]
fn many_snapshots_of_one_origin() {
    both_schedulers(MANY_SNAPSHOTS_OF_ONE_ORIGIN);
}

#[test]
fn reads_racing_copies() {
    both_schedulers(READS_RACING_COPIES);
}

#[test]
fn creation_races_writes_at_throttle() {
    both_schedulers(CREATION_RACES_WRITES_AT_THROTTLE);
}

#[test]
fn merge_racing_writes() {
    both_schedulers(MERGE_RACING_WRITES);
}

/// Which case must catch each concurrency mutation.
const CATCHERS: [(Mutation, Case); 4] = [
    (Mutation::Z18PendingAllocationRace, READS_RACING_COPIES),
    (Mutation::Z19ReadTrackedAfterUnlock, READS_RACING_COPIES),
    (Mutation::Z20ThrottleCheckOutsideQueueLock, CREATION_RACES_WRITES_AT_THROTTLE),
    (Mutation::Z21CommitFeederStopsInTwoSteps, PARALLEL_IO_TO_MANY_SNAPSHOTS),
];

fn caught(mutation: Mutation) {
    let case = CATCHERS.iter().find(|(m, _)| *m == mutation).expect("every concurrency mutation has a catcher").1;
    let config = Config { iterations: 2000, scheduler: Scheduler::Pct { depth: 3 }, mutations: Mutations::only(mutation), ..Config::default() };
    let outcome = std::panic::catch_unwind(|| check(case, &config));
    assert!(outcome.is_err(), "{} ({}) survived {} schedules of {}", mutation.id(), mutation.summary(), config.iterations, case.name);
}

#[test]
fn z18_pending_allocation_race_is_caught() {
    caught(Mutation::Z18PendingAllocationRace);
}

#[test]
fn z19_read_tracked_after_unlock_is_caught() {
    caught(Mutation::Z19ReadTrackedAfterUnlock);
}

#[test]
fn z20_throttle_check_outside_queue_lock_is_caught() {
    caught(Mutation::Z20ThrottleCheckOutsideQueueLock);
}

#[test]
fn z21_commit_feeder_stopping_in_two_steps_is_caught() {
    caught(Mutation::Z21CommitFeederStopsInTwoSteps);
}

#[test]
fn every_concurrency_mutation_has_a_catcher() {
    for mutation in Mutation::ALL.into_iter().filter(|m| m.is_concurrency()) {
        assert!(CATCHERS.iter().any(|(m, _)| *m == mutation), "{} has no shuttle case", mutation.id());
    }
}

/// Replays a saved failing schedule: `SNAPSIM_SHUTTLE_REPLAY=<file>`, with
/// the case named in the file's replay command and, for a mutation,
/// `SNAPSIM_SHUTTLE_MUTATION=Z18`. Does nothing without the variable.
#[test]
fn replay_saved_schedule() {
    let Some(schedule) = std::env::var_os("SNAPSIM_SHUTTLE_REPLAY") else { return };
    let case_name = std::env::var("SNAPSIM_SHUTTLE_CASE").expect("SNAPSIM_SHUTTLE_CASE names the case");
    let case = ALL.into_iter().find(|c| c.name == case_name).expect("a known case");
    let mutations = std::env::var("SNAPSIM_SHUTTLE_MUTATION").ok().and_then(|id| Mutation::parse(&id)).map_or(Mutations::NONE, Mutations::only);
    replay(case, std::path::Path::new(&schedule), mutations);
}

/// The cases: each builds its world with the rig, runs its threads, and
/// judges what they left.
mod cases {
    use super::*;

    pub fn parallel_io_to_many_snapshots(mutations: Mutations) {
        let rig = Rig::new(&Shape { origin_chunks: 8, chunk_sectors: vec![8, 16, 8], cow_threshold: 2, spare_cows: 0 }, mutations);
        let users = vec![
            rig.user(vec![
                Op::WriteOrigin { sector: chunk(0), sectors: 8 },
                Op::WriteOrigin { sector: chunk(2) + 3, sectors: 2 },
                Op::WriteOrigin { sector: chunk(5), sectors: 8 },
            ]),
            rig.user(vec![Op::WriteOrigin { sector: chunk(0) + 4, sectors: 4 }, Op::WriteOrigin { sector: chunk(3), sectors: 8 }]),
            rig.user(vec![Op::WriteSnapshot { k: 0, sector: chunk(2), sectors: 8 }, Op::ReadSnapshot { k: 0, sector: chunk(2), sectors: 8 }]),
            rig.user(vec![Op::ReadSnapshot { k: 1, sector: chunk(0), sectors: 16 }, Op::ReadSnapshot { k: 2, sector: chunk(3), sectors: 8 }]),
        ];
        join_all(users);
        rig.finish();
    }

    pub fn many_snapshots_of_one_origin(mutations: Mutations) {
        let rig = Rig::new(&Shape { origin_chunks: 4, chunk_sectors: vec![8; 6], cow_threshold: 4, spare_cows: 0 }, mutations);
        let users = vec![
            rig.user(vec![Op::WriteOrigin { sector: chunk(1), sectors: 8 }, Op::WriteOrigin { sector: chunk(2), sectors: 2 }]),
            rig.user(vec![Op::WriteOrigin { sector: chunk(1) + 2, sectors: 2 }, Op::WriteOrigin { sector: chunk(3), sectors: 8 }]),
            rig.user(vec![Op::ReadSnapshot { k: 5, sector: chunk(1), sectors: 8 }, Op::WriteSnapshot { k: 3, sector: chunk(2), sectors: 4 }]),
        ];
        join_all(users);
        rig.finish();
    }

    pub fn reads_racing_copies(mutations: Mutations) {
        let rig = Rig::new(&Shape { origin_chunks: 2, chunk_sectors: vec![8], cow_threshold: 0, spare_cows: 0 }, mutations);
        let users = vec![
            rig.user(vec![Op::WriteOrigin { sector: chunk(0), sectors: 8 }, Op::WriteOrigin { sector: chunk(1), sectors: 8 }]),
            rig.user(vec![Op::WriteOrigin { sector: chunk(0) + 1, sectors: 1 }]),
            rig.user(vec![Op::ReadSnapshot { k: 0, sector: chunk(0), sectors: 8 }, Op::ReadSnapshot { k: 0, sector: chunk(1), sectors: 8 }]),
            rig.user(vec![Op::ReadSnapshot { k: 0, sector: chunk(0) + 4, sectors: 4 }]),
        ];
        join_all(users);
        rig.finish();
    }

    /// One write's history on an origin sector, by the run's logical clock.
    #[derive(Debug, Clone, Copy)]
    struct Written {
        value: u64,
        submitted: u64,
        acked: u64,
    }

    /// Snapshot creation racing origin writes at the COW threshold (the 2019
    /// throttle deadlock's shape): writers are parked at a threshold of one while
    /// a second snapshot is created. The new snapshot, which the oracle does not
    /// know, must show each sector as the origin held it at some moment while
    /// it was being created: not a write acknowledged before creation began
    /// overwritten, nor a write submitted after it ended.
    pub fn creation_races_writes_at_throttle(mutations: Mutations) {
        let rig = Rig::new(&Shape { origin_chunks: 4, chunk_sectors: vec![8], cow_threshold: 1, spare_cows: 1 }, mutations);
        let clock = Arc::new(AtomicU64::new(0));
        let history: Arc<StdMutex<BTreeMap<u64, Vec<Written>>>> = Arc::default();
        let writer = |chunks: Vec<u64>| {
            let (clock, history) = (Arc::clone(&clock), Arc::clone(&history));
            let user = rig.user_handle();
            shuttle::thread::spawn(move || {
                for c in chunks {
                    let submitted = clock.fetch_add(1, Ordering::SeqCst);
                    let values = user.run(Op::WriteOrigin { sector: chunk(c), sectors: 1 }).expect("a write has values");
                    let acked = clock.fetch_add(1, Ordering::SeqCst);
                    history.lock().expect("history").entry(chunk(c)).or_default().push(Written { value: values[0], submitted, acked });
                }
            })
        };
        let writers = vec![writer(vec![0, 1]), writer(vec![2, 3])];
        let cow = Arc::clone(&rig.spare_cows[0]);
        let created_at = clock.fetch_add(1, Ordering::SeqCst);
        let snapshot = rig.create_snapshot(cow, BASE_CHUNK_SECTORS as u32);
        let created_by = clock.fetch_add(1, Ordering::SeqCst);
        join_all(writers);
        rig.quiesce();
        let device = SnapshotDevice::new(Arc::clone(&snapshot));
        let view = wait(|done| device.read(0, (4 * BASE_CHUNK_SECTORS) as u32, done)).expect("new snapshot readable");
        let history = history.lock().expect("history").clone();
        for c in 0..4u64 {
            let sector = chunk(c);
            let seen = value_of(&view[sector as usize * SECTOR_BYTES..][..SECTOR_BYTES]);
            let mut legal = Vec::new();
            let writes = history.get(&sector).cloned().unwrap_or_default();
            // The initial value, unless a write was acknowledged before creation began.
            if writes.first().is_none_or(|w| w.acked > created_at) {
                legal.push(initial_value(sector));
            }
            for (i, write) in writes.iter().enumerate() {
                let overwritten_before = writes.get(i + 1).is_some_and(|next| next.acked < created_at);
                if write.submitted < created_by && !overwritten_before {
                    legal.push(write.value);
                }
            }
            if !legal.contains(&seen) {
                let violation = Violation::new(
                    Invariant::I2SnapshotView,
                    format!("snapshot created during writes shows sector {sector} as the origin never held it while the snapshot was being created"),
                );
                rig.judge(Err(violation));
            }
        }
        rig.finish();
    }

    /// A merge of snapshot 0 while writers through the merge target and
    /// snapshot 1's reader run.
    pub fn merge_racing_writes(mutations: Mutations) {
        let rig = Rig::new(&Shape { origin_chunks: 4, chunk_sectors: vec![8, 8], cow_threshold: 0, spare_cows: 0 }, mutations);
        // Before the race: snapshot 0 gets exceptions of its own to merge back.
        rig.user(vec![Op::WriteSnapshot { k: 0, sector: chunk(1), sectors: 8 }, Op::WriteSnapshot { k: 0, sector: chunk(2), sectors: 4 }])
            .join()
            .expect("setup");
        rig.quiesce();
        let merging = rig.origin.hand_over(&rig.snapshots[0], Role::Merge);
        let mut rig = rig;
        rig.snapshots[0] = Arc::clone(&merging);
        rig.devices[0] = Arc::new(SnapshotDevice::new(Arc::clone(&merging)));
        rig.emit(Event::MergeStart { snapshot: 0 });
        let (sender, receiver) = channel::<MergeOutcome>();
        merging.start_merge(Box::new(move |outcome| sender.send(outcome).expect("merge waited for")));
        // During a merge the merge target stands in for the origin: new writes
        // arrive through it, and race the merge of the chunks they hit.
        let users = vec![
            rig.user(vec![Op::WriteSnapshot { k: 0, sector: chunk(1) + 2, sectors: 2 }, Op::WriteSnapshot { k: 0, sector: chunk(3), sectors: 8 }]),
            rig.user(vec![Op::WriteSnapshot { k: 0, sector: chunk(2), sectors: 8 }, Op::ReadSnapshot { k: 0, sector: chunk(1), sectors: 8 }]),
            rig.user(vec![Op::ReadSnapshot { k: 1, sector: chunk(1), sectors: 16 }]),
        ];
        let outcome = receiver.recv().expect("merge finished");
        rig.emit(Event::MergeDone { snapshot: 0, ok: outcome == MergeOutcome::Complete });
        join_all(users);
        rig.finish();
    }
}
