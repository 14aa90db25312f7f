//! The shuttle suite: the whole engine on simulated disks under many
//! threads, each dmtest-style case explored under the random and the PCT
//! scheduler and judged by the model's oracle; and the concurrency
//! mutations of the bug zoo, each of which some case must catch.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" cargo test -p sim --release --target-dir target/shuttle --test shuttle`
//! (`.ci/run` does). Schedules per case: `SNAPSIM_SHUTTLE_ITERATIONS`
//! (default 2000; the nightly soak raises it). A failure prints the command
//! that replays its saved schedule through the `replay` test below.
#![cfg(shuttle)]

use engine::zoo::{Mutation, Mutations};
use sim::threads::{Case, Config, Scheduler, check, replay};

fn both_schedulers(case: Case) {
    let config = Config::default();
    check(case, &Config { scheduler: Scheduler::Random, ..config.clone() });
    check(case, &Config { scheduler: Scheduler::Pct { depth: 3 }, ..config });
}

#[test]
fn parallel_io_to_many_snapshots() {
    both_schedulers(Case::ParallelIoToManySnapshots);
}

#[test]
fn many_snapshots_of_one_origin() {
    both_schedulers(Case::ManySnapshotsOfOneOrigin);
}

#[test]
fn reads_racing_copies() {
    both_schedulers(Case::ReadsRacingCopies);
}

#[test]
fn creation_races_writes_at_throttle() {
    both_schedulers(Case::CreationRacesWritesAtThrottle);
}

#[test]
fn merge_racing_writes() {
    both_schedulers(Case::MergeRacingWrites);
}

/// Which case must catch each concurrency mutation.
const CATCHERS: [(Mutation, Case); 4] = [
    (Mutation::Z18PendingAllocationRace, Case::ReadsRacingCopies),
    (Mutation::Z19ReadTrackedAfterUnlock, Case::ReadsRacingCopies),
    (Mutation::Z20ThrottleCheckOutsideQueueLock, Case::CreationRacesWritesAtThrottle),
    (Mutation::Z21CommitFeederStopsInTwoSteps, Case::ParallelIoToManySnapshots),
];

fn caught(mutation: Mutation) {
    let case = CATCHERS.iter().find(|(m, _)| *m == mutation).expect("every concurrency mutation has a catcher").1;
    let config = Config { iterations: 2000, scheduler: Scheduler::Pct { depth: 3 }, mutations: Mutations::only(mutation), ..Config::default() };
    let outcome = std::panic::catch_unwind(|| check(case, &config));
    assert!(outcome.is_err(), "{} ({}) survived {} schedules of {}", mutation.id(), mutation.summary(), config.iterations, case.name());
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
    let case = Case::ALL.into_iter().find(|c| c.name() == case_name).expect("a known case");
    let mutations = std::env::var("SNAPSIM_SHUTTLE_MUTATION").ok().and_then(|id| Mutation::parse(&id)).map_or(Mutations::NONE, Mutations::only);
    replay(case, std::path::Path::new(&schedule), mutations);
}
