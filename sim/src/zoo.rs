//! The zoo hunt: each historical kernel bug switched on in the engine, and
//! the harness run until it catches it (or a budget runs out).
//!
//! [`TABLE`] is the project's zoo table: for every mutation, the invariants
//! allowed to catch it and the scenarios that aim at it. A hunt explores
//! those scenarios (every crash state within their bounds) first, then every other scenario, then
//! swarm seeds from 0. A catch by an invariant the table does not list is
//! a failure of the hunt too: the judge must fail for the right reason.
//!
//! A mutation the engine's design cannot express ([`ZooEntry::by_construction`])
//! is shown caught by feeding the model the on-disk state it would leave.

use engine::zoo::{Mutation, Mutations};
use model::Invariant;

use crate::scenario::Scenario;
use crate::world::{RunConfig, run};

/// One row of the zoo table.
#[derive(Debug, Clone, Copy)]
pub struct ZooEntry {
    pub mutation: Mutation,
    /// Invariants that may catch it (SPEC §7's "should trip", as the oracle names them).
    pub expected: &'static [Invariant],
    /// Scenarios aimed at it, explored first.
    pub scenarios: &'static [&'static str],
    /// Why the engine cannot express it, when it cannot.
    pub by_construction: Option<&'static str>,
    /// For a race only several threads can show: the thread-level checks
    /// that catch it (single-threaded runs make every engine call atomic).
    pub threads: Option<Threads>,
    /// For a mistake the engine's own assertions stop: what the assertion
    /// says. A panic carrying these words is the catch; any other panic is
    /// a failure of the hunt.
    pub asserted: Option<&'static str>,
}

/// The loom model and the shuttle case that catch a concurrency mutation
/// (`engine/tests/loom.rs`, `sim/tests/shuttle.rs`; both run in CI).
#[derive(Debug, Clone, Copy)]
pub struct Threads {
    pub loom_model: &'static str,
    pub shuttle_case: &'static str,
}

use Invariant::*;
use Mutation::*;

/// The project's zoo table.
pub const TABLE: [ZooEntry; 22] = [
    entry(Z1NoSkipMetadataAfterLoad, &[I7Allocation, I4MetadataWellFormed, I2SnapshotView], &["area-boundary"]),
    // The status line is computed from the engine's in-memory allocator, the
    // kernel's formula from the records on disk: a lost record shows there
    // first. A view that lost its record and shows origin data written after
    // the snapshot is what the oracle names I1 (I13 while a read races).
    entry(Z2LastAreaNotKeptAfterLoad, &[I6Reload, I2SnapshotView, I1AckedOriginWrite, I14Status], &["reload-midway"]),
    entry(Z3CommitInCompletionOrder, &[I5InOrderCommit], &["basic-cow"]),
    ZooEntry {
        mutation: Z4HeaderInAreaBuffer,
        expected: &[I4MetadataWellFormed],
        scenarios: &[],
        by_construction: Some(
            "the header is encoded into its own buffer and every area write carries its own copy of the area, so no header can land in an area",
        ),
        threads: None,
        asserted: None,
    },
    entry(Z5CopyErrorSkipsCommit, &[I11Liveness, I8Invalidation], &["copy-error"]),
    entry(Z6NoOriginFlushBeforeMergeCommit, &[I10Merge], &["merge-crash"]),
    entry(Z7AreaWriteWithoutFlushFua, &[I1AckedOriginWrite, I2SnapshotView, I3FlushedWrites, I6Reload], &["basic-cow"]),
    entry(Z8LoadSkipsEveryOtherArea, &[I6Reload, I2SnapshotView, I14Status], &["multi-area"]),
    entry(Z9NoWaitForTrackedReads, &[I13ConflictingReads], &["reads-racing-copies"]),
    entry(Z10SnapshotsUnsorted, &[I2SnapshotView, I1AckedOriginWrite, I13ConflictingReads], &["mixed-chunk-sizes"]),
    entry(Z11NoCowThrottle, &[I12Bounds], &["cow-throttle"]),
    entry(Z12FullChunkWriteAckedBeforeCommit, &[I3FlushedWrites, I2SnapshotView], &["snapshot-writes"]),
    entry(Z13ZeroNextAreaAfterFullOne, &[I4MetadataWellFormed, I5InOrderCommit, I7Allocation], &["stale-cow"]),
    entry(Z14ZeroAreaErrorSwallowed, &[I8Invalidation], &["area-zero-error"]),
    entry(Z15MergeWaitsOnFirstChunkOnly, &[I10Merge, I2SnapshotView], &["merge-run-writes"]),
    entry(Z16MergeSkipsOtherSnapshots, &[I10Merge], &["merge-concurrent-writes"]),
    entry(Z17OverflowInvalidatesPo, &[I9Overflow], &["overflow-po"]),
    // The concurrency mutations. A replaced pending exception drops the
    // writes held on it (I11) or completes a chunk twice; a late-tracked
    // read sees the origin write (I13); a lost wake-up or a lost commit
    // leaves a write waiting forever (I11).
    threaded(Z18PendingAllocationRace, &[I11Liveness, I4MetadataWellFormed], "one_exception_per_chunk", "reads_racing_copies"),
    threaded(Z19ReadTrackedAfterUnlock, &[I13ConflictingReads], "tracked_read_holds_back_origin_write", "reads_racing_copies"),
    threaded(Z20ThrottleCheckOutsideQueueLock, &[I11Liveness], "throttle_wakes_every_parked_write", "creation_races_writes_at_throttle"),
    threaded(Z21CommitFeederStopsInTwoSteps, &[I11Liveness], "commits_fed_in_order_by_one_thread", "parallel_io_to_many_snapshots"),
    // A porting mistake the store's assertions stop at the first area's end:
    // the hunt must report the panic as a finding, with its replay command.
    ZooEntry {
        mutation: Z22NoSkipMetadataOnAllocation,
        expected: &[],
        scenarios: &["area-boundary"],
        by_construction: None,
        threads: None,
        asserted: Some("allocator at metadata chunk"),
    },
];

const fn entry(mutation: Mutation, expected: &'static [Invariant], scenarios: &'static [&'static str]) -> ZooEntry {
    ZooEntry { mutation, expected, scenarios, by_construction: None, threads: None, asserted: None }
}

const fn threaded(mutation: Mutation, expected: &'static [Invariant], loom_model: &'static str, shuttle_case: &'static str) -> ZooEntry {
    ZooEntry { mutation, expected, scenarios: &[], by_construction: None, threads: Some(Threads { loom_model, shuttle_case }), asserted: None }
}

/// The table's row for `mutation`.
pub fn entry_of(mutation: Mutation) -> &'static ZooEntry {
    TABLE.iter().find(|e| e.mutation == mutation).expect("every mutation has a row")
}

/// How far a hunt goes before the mutation counts as surviving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Explore the scenarios (aimed ones first, then the rest). Default on.
    pub scenarios: bool,
    /// Swarm seeds tried after the scenarios, from 0. Default 200.
    pub swarm_seeds: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { scenarios: true, swarm_seeds: 200 }
    }
}

/// What a hunt found.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Caught by `invariant` on the `attempts`-th run; `replay` reruns it.
    Caught { invariant: Invariant, message: String, replay: String },
    /// The engine (or the harness) panicked on the `attempts`-th run:
    /// `panic` says where and what; `replay` reruns it.
    Panicked { panic: crate::panics::EnginePanic, replay: String },
    /// Not expressible in the engine; the model catches the state it would leave.
    ByConstruction { invariant: Invariant, message: String, reason: &'static str },
    /// A race: single-threaded runs cannot see it (the budget found
    /// nothing, as it must); the thread-level checks named catch it.
    ThreadsOnly { threads: Threads },
    /// The budget ran out.
    Survived,
}

/// One mutation's hunt.
#[derive(Debug, Clone)]
pub struct Hunt {
    pub mutation: Mutation,
    pub verdict: Verdict,
    /// Runs tried (each scenario seed explored, each swarm seed run).
    pub attempts: u64,
}

impl Hunt {
    /// Whether it was caught (or shown caught by construction) by an
    /// invariant its row lists.
    pub fn caught_rightly(&self) -> bool {
        let expected = entry_of(self.mutation).expected;
        match &self.verdict {
            Verdict::Caught { invariant, .. } | Verdict::ByConstruction { invariant, .. } => expected.contains(invariant),
            Verdict::Panicked { panic, .. } => entry_of(self.mutation).asserted.is_some_and(|words| panic.message.contains(words)),
            // The loom and shuttle suites assert the catch; they run in CI.
            Verdict::ThreadsOnly { .. } => true,
            Verdict::Survived => false,
        }
    }
}

/// Hunts `mutation` within `budget`, with `scenarios` loaded from
/// `scenarios/`.
pub fn hunt(mutation: Mutation, scenarios: &[Scenario], budget: Budget) -> Hunt {
    let row = entry_of(mutation);
    if let Some(reason) = row.by_construction {
        let violation = bad_state_of(mutation).expect_err("the model rejects the state the mutation would leave");
        let verdict = Verdict::ByConstruction { invariant: violation.invariant, message: violation.message, reason };
        return Hunt { mutation, verdict, attempts: 0 };
    }
    let (verdict, attempts) = search(Some(mutation), row.scenarios, scenarios, budget);
    let verdict = match (verdict, row.threads) {
        (Verdict::Survived, Some(threads)) => Verdict::ThreadsOnly { threads },
        (verdict, _) => verdict,
    };
    Hunt { mutation, verdict, attempts }
}

/// Hunts `mutation` as [`hunt`] does, but without the table's aim: the
/// scenarios in name order, as a harness that knew nothing of the bug would.
pub fn hunt_blind(mutation: Mutation, scenarios: &[Scenario], budget: Budget) -> Hunt {
    if entry_of(mutation).by_construction.is_some() || entry_of(mutation).threads.is_some() {
        return hunt(mutation, scenarios, budget);
    }
    let (verdict, attempts) = search(Some(mutation), &[], scenarios, budget);
    Hunt { mutation, verdict, attempts }
}

/// The harness with `mutation` (or none) within `budget`: the `aimed`
/// scenarios explored first, then the others, then swarm seeds from 0.
/// Returns what it found and the runs it took.
pub fn search(mutation: Option<Mutation>, aimed: &[&str], scenarios: &[Scenario], budget: Budget) -> (Verdict, u64) {
    let mutations = mutation.map_or(Mutations::NONE, Mutations::only);
    let flag = mutation.map_or(String::new(), |m| format!(" --mutation {}", m.id()));
    let mut attempts = 0;
    if budget.scenarios {
        let first = scenarios.iter().filter(|s| aimed.contains(&s.name.as_str()));
        let others = scenarios.iter().filter(|s| !aimed.contains(&s.name.as_str()));
        for scenario in first.chain(others) {
            for &seed in &scenario.file.seeds {
                attempts += 1;
                let mut config = scenario.run_config(seed);
                config.mutations = mutations;
                let replay = format!("snapsim explore {}{flag}", scenario.name);
                match crate::explore::explore_catching(&config, &scenario.bounds()) {
                    Ok((_, Ok(()))) => {}
                    Ok((_, Err(failure))) => {
                        return (Verdict::Caught { invariant: failure.violation.invariant, message: failure.to_string(), replay }, attempts);
                    }
                    Err(panic) => return (Verdict::Panicked { panic, replay }, attempts),
                }
            }
        }
    }
    for seed in 0..budget.swarm_seeds {
        attempts += 1;
        let mut config = RunConfig::new(seed);
        config.mutations = mutations;
        let replay = format!("snapsim run --seed {seed}{flag}");
        match crate::panics::catch(|| run(&config).failure) {
            Ok(None) => {}
            Ok(Some(failure)) => {
                return (Verdict::Caught { invariant: failure.violation.invariant, message: failure.to_string(), replay }, attempts);
            }
            Err(panic) => return (Verdict::Panicked { panic, replay }, attempts),
        }
    }
    (Verdict::Survived, attempts)
}

/// Feeds the model the on-disk state a mutation the engine cannot express
/// would leave, and returns what the model says of it.
pub fn bad_state_of(mutation: Mutation) -> Result<(), model::Violation> {
    match mutation {
        Z4HeaderInAreaBuffer => {
            // The 2010 race: the header was built in the area buffer while
            // a commit of that buffer was in flight, so area 0 went to disk
            // starting with the header's 16 bytes in place of record 0.
            const CHUNK_BYTES: usize = 4096;
            let header = [0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0];
            let mut cow = vec![0u8; 16 * CHUNK_BYTES];
            cow[..16].copy_from_slice(&header);
            let area = CHUNK_BYTES;
            for (index, (old, new)) in [(3u64, 2u64), (5, 3)].into_iter().enumerate() {
                cow[area + index * 16..area + index * 16 + 8].copy_from_slice(&old.to_le_bytes());
                cow[area + index * 16 + 8..area + index * 16 + 16].copy_from_slice(&new.to_le_bytes());
            }
            cow[area..area + 16].copy_from_slice(&header);
            let geometry = model::CowGeometry { chunk_sectors: 8, origin_chunks: 8 };
            let state = model::cow::decode(cow.as_slice(), geometry)?;
            model::cow::check_allocation_order(state.records(), geometry)
        }
        _ => Ok(()),
    }
}
