//! Exhaustive crash runs of every scenario in `scenarios/`: every crash
//! point × every persisted subset of the non-durable writes × torn
//! variants, within each scenario's bound (see `sim::explore`), each
//! distinct state reloaded and judged by the oracle.
//!
//! `cargo test -p sim --test exhaustive -- --nocapture` prints the counts.

use sim::explore::{Coverage, explore};
use sim::scenario::{Scenario, all_in, scenarios_dir};

/// Explores `name` over each of its seeds; panics with the replay command on a failure.
fn check(name: &str) -> Coverage {
    let scenario = Scenario::load(name).unwrap_or_else(|e| panic!("{e}"));
    let mut total = Coverage::default();
    for &seed in &scenario.file.seeds {
        let (coverage, outcome) = explore(&scenario.run_config(seed), &scenario.bounds());
        println!(
            "{name} seed {seed}: {} crash points, {} states, {} distinct crash states checked (bound: {} non-durable writes)",
            coverage.crash_points, coverage.states, coverage.distinct, scenario.file.writes_max
        );
        if let Err(failure) = outcome {
            panic!("{name} seed {seed}: {failure}\n  {}\nreplay: snapsim explore {name}", failure.violation.events.join("\n  "));
        }
        assert!(coverage.distinct > 0, "{name}: no crash state was checked");
        total.crash_points += coverage.crash_points;
        total.distinct += coverage.distinct;
    }
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
                assert!(tested.contains(&name.as_str()), "scenarios/{name}.toml has no test in tests/exhaustive.rs");
            }
            assert_eq!(names.len(), tested.len());
        }
    };
}

scenarios! {
    area_boundary => "area-boundary",
    area_zero_error => "area-zero-error",
    basic_cow => "basic-cow",
    copy_error => "copy-error",
    cow_throttle => "cow-throttle",
    descending_writes => "descending-writes",
    merge_concurrent_writes => "merge-concurrent-writes",
    merge_crash => "merge-crash",
    merge_invalidated => "merge-invalidated",
    merge_multi_area => "merge-multi-area",
    merge_overflowed => "merge-overflowed",
    merge_run_writes => "merge-run-writes",
    metadata_error => "metadata-error",
    mixed_chunk_sizes => "mixed-chunk-sizes",
    multi_area => "multi-area",
    overflow_p => "overflow-p",
    overflow_po => "overflow-po",
    reads_racing_copies => "reads-racing-copies",
    reload_midway => "reload-midway",
    rewrite_same_chunks => "rewrite-same-chunks",
    snapshot_writes => "snapshot-writes",
    stale_area_zero => "stale-area-zero",
    stale_cow => "stale-cow",
    throttle_failures => "throttle-failures",
    tiny_chunks => "tiny-chunks",
    user_flags => "user-flags",
}
