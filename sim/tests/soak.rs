//! The soak (`snapsim soak`): sharding covers exactly the seeds an unsharded
//! soak covers and finds the same failures; failures are minimized into
//! traces that replay; Ctrl-C stops cleanly with a report.
//!
//! The failures come from a zoo mutation (Z3, commits in completion order),
//! which breaks a good share of swarm seeds, and Z1, which breaks few.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use engine::zoo::{Mutation, Mutations};
use sim::crash_trace::CrashTrace;
use sim::soak::{Shard, SoakConfig, SoakReport, soak};

fn config(seeds: u64, mutation: Mutation, shard: Shard, jobs: usize) -> SoakConfig {
    SoakConfig { seeds: Some(seeds), mutations: Mutations::only(mutation), shard, jobs, traces_max: 0, ..SoakConfig::default() }
}

fn run(config: &SoakConfig) -> SoakReport {
    soak(config, &AtomicBool::new(false), &mut |_| {})
}

/// Failing seed → invariant.
fn failures(report: &SoakReport) -> BTreeMap<u64, String> {
    report.failures.iter().map(|f| (f.seed, f.invariant.clone())).collect()
}

#[test]
fn three_shards_find_exactly_the_failures_of_one_unsharded_soak() {
    let whole = run(&config(60, Mutation::Z3CommitInCompletionOrder, Shard::ALL, 2));
    assert_eq!(whole.seeds_run, 60);
    let expected = failures(&whole);
    assert!(expected.len() >= 5, "Z3 should break several of 60 seeds, broke {}", expected.len());
    let mut union = BTreeMap::new();
    let mut seeds_run = 0;
    for index in 0..3 {
        let shard = Shard { index, count: 3 };
        let report = run(&config(60, Mutation::Z3CommitInCompletionOrder, shard, 1));
        seeds_run += report.seeds_run;
        for (seed, invariant) in failures(&report) {
            assert_eq!(seed % 3, index, "shard {shard} ran seed {seed}, another shard's");
            assert!(union.insert(seed, invariant).is_none(), "seed {seed} ran in two shards");
        }
    }
    assert_eq!(seeds_run, 60);
    assert_eq!(union, expected);
}

#[test]
fn a_failure_is_reported_with_its_replay_and_minimized_into_a_trace_that_replays() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(60, Mutation::Z1NoSkipMetadataAfterLoad, Shard::ALL, 2);
    config.traces_max = 1;
    config.traces_dir = dir.path().to_path_buf();
    let report = run(&config);
    let failure = report.failures.first().expect("Z1 breaks one of the first 60 seeds");
    assert_eq!(failure.replay, format!("snapsim run --seed {} --mutation Z1", failure.seed));
    let trace_path = failure.trace.as_ref().expect("the first failure is minimized");
    let trace = CrashTrace::load(std::path::Path::new(trace_path)).unwrap();
    assert_eq!(trace.verdict, failure.invariant);
    assert_eq!(trace.replay().unwrap().verdict(), failure.invariant, "the minimized trace gives the soak's verdict");
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(json["failures"][0]["seed"], failure.seed);
    assert_eq!(json["mutation"], "Z1");
}

#[test]
fn an_interrupt_stops_between_seeds_and_still_reports() {
    let config = SoakConfig { duration: Some(Duration::from_secs(3600)), jobs: 2, ..SoakConfig::default() };
    let report = soak(&config, &AtomicBool::new(true), &mut |_| {});
    assert_eq!(report.stopped_by, "interrupt");
    assert!(report.seeds_run <= 2, "an interrupted soak finishes only the seeds in hand, ran {}", report.seeds_run);
    assert!(report.failures.is_empty());
}

#[test]
fn shards_parse_and_partition_the_range() {
    assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
    for bad in ["4/4", "1", "a/2", "1/0"] {
        assert!(Shard::parse(bad).is_err(), "{bad:?} parsed");
    }
    let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
    assert_eq!(shards.iter().map(|s| s.seeds_of(10)).sum::<u64>(), 10);
    let mut seeds: Vec<u64> = shards.iter().flat_map(|s| (0..s.seeds_of(10)).map(move |m| s.seed(100, m))).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, (100..110).collect::<Vec<_>>());
}

#[test]
fn snapsim_soak_writes_its_report_and_fails_on_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let snapsim = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_snapsim")).args(args).output().unwrap();
    let output = snapsim(&["soak", "--seeds", "8", "--jobs", "2", "--report", report_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["seeds_run"], 8);
    assert_eq!(report["stopped_by"], "seeds");
}
