//! Crash-state exploration of every scenario in `scenarios/`, complete:
//! at every crash point every state the disk contract allows (each
//! non-durable sector at its durable value or any value written since, in
//! every combination) is judged, by brute force where the point is small
//! and per data sector where it is not (see `sim::explore` and the
//! soundness argument in ARCHITECTURE.md). A scenario that stops being
//! complete fails here.
//!
//! `cargo test -p sim --test explore_scenarios -- --nocapture` prints the counts.

use sim::explore::{Coverage, explore};
use sim::marks::MarkCounts;
use sim::scenario::{Scenario, all_in, scenarios_dir};

/// Explores `name` over each of its seeds; panics with the replay command on a failure.
fn check(name: &str) -> Coverage {
    let scenario = Scenario::load(name).unwrap_or_else(|e| panic!("{e}"));
    let mut total = Coverage::default();
    let mut marks = MarkCounts::default();
    for &seed in &scenario.file.seeds {
        let (coverage, outcome) = explore(&scenario.run_config(seed), &scenario.bounds());
        println!(
            "{name} seed {seed}: {} crash points, {} states, {} distinct crash states checked; {}",
            coverage.crash_points,
            coverage.states,
            coverage.distinct,
            coverage.describe(&scenario.bounds())
        );
        if let Err(failure) = outcome {
            panic!("{name} seed {seed}: {failure}\n  {}\nreplay: snapsim explore {name}", failure.violation.events.join("\n  "));
        }
        assert!(coverage.distinct > 0, "{name}: no crash state was checked");
        assert!(coverage.complete, "{name} seed {seed} is no longer explored completely: {}", coverage.describe(&scenario.bounds()));
        total.crash_points += coverage.crash_points;
        total.distinct += coverage.distinct;
        marks.add(&coverage.marks);
    }
    // The coverage marks its file says it reaches (`reaches = [...]`).
    let lost: Vec<&String> = scenario.file.reaches.iter().filter(|mark| marks.of(mark) == 0).collect();
    assert!(lost.is_empty(), "{name} no longer reaches the coverage marks {lost:?} its file documents");
    total.marks = marks;
    total
}

macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(#[test]
        fn $test() {
            check($name);
        })*

        #[test]
        fn every_scenario_file_has_a_test() {
            let names: Vec<String> = all_in(&scenarios_dir()).unwrap().into_iter().map(|s| s.name).collect();
            let tested = [$($name),*];
            for name in &names {
                assert!(tested.contains(&name.as_str()), "scenarios/{name}.toml has no test in tests/explore_scenarios.rs");
            }
            assert_eq!(names.len(), tested.len());
        }
    };
}

scenarios! {
    area_boundary => "area-boundary",
    area_zero_error => "area-zero-error",
    basic_cow => "basic-cow",
    big_merge => "big-merge",
    copy_error => "copy-error",
    cow_ends_at_next_area => "cow-ends-at-next-area",
    cow_throttle => "cow-throttle",
    descending_writes => "descending-writes",
    four_snapshots_faults => "four-snapshots-faults",
    invalidated_reads => "invalidated-reads",
    irregular_origin => "irregular-origin",
    merge_concurrent_writes => "merge-concurrent-writes",
    merge_commit_error => "merge-commit-error",
    merge_copy_error => "merge-copy-error",
    merge_crash => "merge-crash",
    merge_last_run => "merge-last-run",
    merge_invalidated => "merge-invalidated",
    merge_multi_area => "merge-multi-area",
    merge_overflowed => "merge-overflowed",
    merge_preflush => "merge-preflush",
    merge_run_writes => "merge-run-writes",
    metadata_error => "metadata-error",
    mixed_chunk_sizes => "mixed-chunk-sizes",
    multi_area => "multi-area",
    one_sector_tail => "one-sector-tail",
    overflow_p => "overflow-p",
    overflow_p_requests_after => "overflow-p-requests-after",
    overflow_po => "overflow-po",
    po_commit_before_invalidation => "po-commit-before-invalidation",
    po_fills_in_flight => "po-fills-in-flight",
    reads_racing_copies => "reads-racing-copies",
    reload_midway => "reload-midway",
    reused_cow_4k => "reused-cow-4k",
    rewrite_same_chunks => "rewrite-same-chunks",
    short_origin => "short-origin",
    snapshot_writes => "snapshot-writes",
    stale_area_zero => "stale-area-zero",
    stale_cow => "stale-cow",
    throttle_failures => "throttle-failures",
    tiny_chunks => "tiny-chunks",
    user_flags => "user-flags",
}

/// `complete` means every crash state of every point was judged: a point
/// is enumerated by brute force or judged per data sector when it is small
/// enough, and the run says so; with both turned off, a multi-sector write
/// torn at three cuts is not, and the run says how much it reached.
#[test]
fn complete_is_said_only_of_the_whole_space() {
    use sim::explore::Bounds;
    let text = |chunk: u32, ops: &str| {
        format!(
            "description = \"d\"\nchunk_sectors = {chunk}\norigin_chunks = 8\ncow_chunks = 16\nsnapshots = 1\nqueue_depth = 1\nwrites_max = 8\nops = \"\"\"\n{ops}\n\"\"\"\n"
        )
    };
    let explore_text = |chunk: u32, ops: &str, bounds: Bounds| {
        let scenario = Scenario::parse("t", std::path::Path::new("t.toml"), &text(chunk, ops)).unwrap();
        let (coverage, outcome) = explore(&scenario.run_config(1), &bounds);
        outcome.unwrap_or_else(|f| panic!("{f}"));
        coverage
    };
    let ops = "write origin 0 6\nflush origin\nwrite origin 12 6";
    let whole = explore_text(8, ops, Bounds::default());
    assert!(whole.complete, "{whole:?}");
    assert_eq!(whole.missed.exact, Some(0));
    assert!(whole.describe(&Bounds::default()).starts_with("complete"));
    let by_writes_only = Bounds { brute_force_max: 0, per_sector_states_max: 0, ..Bounds::default() };
    let part = explore_text(8, ops, by_writes_only.clone());
    assert!(!part.complete);
    assert!(part.space.exact.is_some_and(|space| space > u128::from(part.covered)), "{part:?}");
    assert!(part.missed.exact.is_some_and(|missed| missed > 0));
    assert!(part.describe(&by_writes_only).starts_with("bounded"));
    // One-sector writes within the write bound reach every state even so.
    let single = explore_text(1, "write origin 0 1\nwrite origin 3 1\nflush origin\nwrite origin 5 1", by_writes_only);
    assert!(single.complete, "{single:?}");
}

#[test]
fn state_space_counts_past_any_integer() {
    use sim::explore::StateSpace;
    let small = StateSpace::product([2usize, 3, 4].into_iter());
    assert_eq!(small.exact, Some(24));
    assert!((small.log2 - 24f64.log2()).abs() < 1e-9);
    assert_eq!(StateSpace::zero().plus(small).plus(small).exact, Some(48));
    let huge = StateSpace::product(std::iter::repeat_n(3usize, 200));
    assert_eq!(huge.exact, None);
    assert!((huge.log2 - 200.0 * 3f64.log2()).abs() < 1e-6);
    assert!(huge.to_string().starts_with("about 2^317"));
    assert!(huge.fraction(1_000_000) > 0.0 && huge.fraction(1_000_000) < 1e-80);
    assert_eq!(small.fraction(12), 0.5);
}

/// The runs two ways of judging are compared on: every scenario for the
/// faithful engine, and each single-threaded zoo mutation on the scenarios
/// the zoo table aims it at, so that failing states are compared too.
fn judged_runs() -> Vec<(Scenario, engine::zoo::Mutations)> {
    use engine::zoo::{Mutation, Mutations};
    let mut runs: Vec<(Scenario, Mutations)> = all_in(&scenarios_dir()).unwrap().into_iter().map(|s| (s, Mutations::NONE)).collect();
    for mutation in Mutation::ALL {
        let row = sim::zoo::entry_of(mutation);
        // Races never fail single-threaded; an asserted mutation stops the run before any judging.
        if row.threads.is_some() || row.by_construction.is_some() || row.asserted.is_some() {
            continue;
        }
        for name in row.scenarios {
            runs.push((Scenario::load(name).unwrap(), Mutations::only(mutation)));
        }
    }
    runs
}

/// Per-sector judging finds what brute force finds: at every crash point
/// small enough for brute force, the point is also judged per data sector
/// alone, and the two verdicts (pass, or the invariant broken) must agree.
/// Run on every scenario for the faithful engine, and on the scenarios the
/// zoo table aims at each single-threaded mutation for that mutation, so
/// that failing points are compared too, not only passing ones.
#[test]
fn per_sector_judging_agrees_with_brute_force() {
    let bounds = |scenario: &Scenario| sim::explore::Bounds { cross_check: true, ..scenario.bounds() };
    let runs = judged_runs();
    let (mut points, mut failing_points, mut failing) = (0, 0, 0);
    for (scenario, mutations) in &runs {
        for &seed in &scenario.file.seeds {
            let mut config = scenario.run_config(seed);
            config.mutations = *mutations;
            let (coverage, outcome) = explore(&config, &bounds(scenario));
            assert!(coverage.cross_check_mismatches.is_empty(), "{} seed {seed} {mutations:?}: {:?}", scenario.name, coverage.cross_check_mismatches);
            points += coverage.cross_checked_points;
            failing_points += coverage.cross_checked_failing;
            failing += u64::from(outcome.is_err());
        }
    }
    println!("{points} crash points judged both ways ({failing_points} failing) over {} runs, {failing} runs failing", runs.len());
    assert!(points > 100 && failing_points > 0, "the cross-check must compare failing points too");
}

/// Incremental judging (a state's read-back against the last state read back
/// whole that passed, reading again only what it changed) gives every
/// crash state the verdict whole judging gives: every state of every
/// scenario, and of every scenario the zoo aims each single-threaded
/// mutation at under that mutation, is judged both ways; failing states are
/// compared too, so a planted bug whole judging finds is found incrementally.
#[test]
fn incremental_judging_agrees_with_whole_judging() {
    let bounds = |scenario: &Scenario| sim::explore::Bounds { check_incremental: true, ..scenario.bounds() };
    let runs = judged_runs();
    let (mut incremental, mut whole, mut failing) = (0, 0, 0);
    for (scenario, mutations) in &runs {
        for &seed in &scenario.file.seeds {
            let mut config = scenario.run_config(seed);
            config.mutations = *mutations;
            let (coverage, outcome) = explore(&config, &bounds(scenario));
            assert!(coverage.incremental_mismatches.is_empty(), "{} seed {seed} {mutations:?}: {:?}", scenario.name, coverage.incremental_mismatches);
            incremental += coverage.judging.incremental;
            whole += coverage.judging.whole;
            failing += u64::from(outcome.as_ref().is_err_and(|f| f.images.is_some()));
        }
    }
    println!("{incremental} crash states judged incrementally and whole alike, {whole} read back whole; {failing} failing states compared");
    assert!(incremental > 10 * whole, "most states must be judged incrementally: {incremental} against {whole} whole");
    assert!(failing >= 5, "failing crash states must be compared too: {failing}");
}

/// Every coverage mark a scenario file names exists, and the marks the
/// scenarios document reach far: a mark dropped from the engine, or a
/// scenario edited until it no longer reaches its marks, fails here or in
/// its own test above.
#[test]
fn scenario_files_document_the_marks_they_reach() {
    let scenarios = all_in(&scenarios_dir()).unwrap();
    let documented: std::collections::BTreeSet<&str> = scenarios.iter().flat_map(|s| s.file.reaches.iter().map(String::as_str)).collect();
    assert!(documented.len() >= 35, "only {} marks are documented as reached by a scenario: {documented:?}", documented.len());
}
