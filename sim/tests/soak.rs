//! The soak (`snapsim soak`): sharding covers exactly the seeds an unsharded
//! soak covers and finds the same failures; failures are minimized into
//! traces that replay; Ctrl-C stops cleanly with a report; a seed that
//! panics is reported with its replay and the soak goes on.
//!
//! The failures come from a zoo mutation (Z3, commits in completion order),
//! which breaks a good share of swarm seeds, and Z1, which breaks few.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use engine::zoo::{Mutation, Mutations};
use sim::crash_trace::CrashTrace;
use sim::soak::{Cause, Shard, SoakConfig, SoakFailure, SoakReport, soak};
use sim::world::{Report, RunConfig, World};

fn config(seeds: u64, mutation: Mutation, shard: Shard, jobs: usize) -> SoakConfig {
    SoakConfig { seeds: Some(seeds), mutations: Mutations::only(mutation), shard, jobs, traces_max: 0, ..SoakConfig::default() }
}

fn run(config: &SoakConfig) -> SoakReport {
    soak(config, &AtomicBool::new(false), &mut |_| {})
}

/// Failing seed → invariant.
fn failures(report: &SoakReport) -> BTreeMap<u64, Cause> {
    report.failures.iter().map(|f| (f.seed, f.invariant)).collect()
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
    assert_eq!(failure.invariant, trace.verdict);
    assert_eq!(failure.invariant, trace.replay().unwrap().verdict(), "the minimized trace gives the soak's verdict");
    let timeline = std::fs::read_to_string(std::path::Path::new(trace_path).with_extension("html")).expect("a timeline beside the trace");
    assert!(timeline.contains("class=\"lane\"") && timeline.contains("snapsim replay"), "the timeline page");
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(json["failures"][0]["seed"], failure.seed);
    assert_eq!(json["mutation"], "Z1");
}

/// One bug, one line: Z3 breaks about two seeds in five, and the report
/// lists a few signatures, each with its seed count, first seed and replay,
/// not a line per seed.
#[test]
fn a_soak_over_a_mutation_reports_a_few_signatures_not_every_seed() {
    let report = run(&config(300, Mutation::Z3CommitInCompletionOrder, Shard::ALL, 2));
    assert!(report.failures.len() >= 50, "Z3 broke only {} of 300 seeds", report.failures.len());
    assert!((1..=3).contains(&report.signatures.len()), "{}", report.summary());
    assert_eq!(report.signatures.iter().map(|s| s.seeds).sum::<u64>(), report.failures.len() as u64);
    let first = &report.signatures[0];
    assert_eq!(first.first_seed, report.failures[0].seed);
    assert!(first.signature.starts_with("I5: "), "{}", first.signature);
    let summary = report.summary();
    assert!(summary.lines().count() < 6 * report.signatures.len() + 2, "{summary}");
    assert!(summary.contains(&format!("{} seed(s), first seed {}", first.seeds, first.first_seed)), "{summary}");
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

/// The seed [`panics_in_seed_5`] plants a panic in.
const PANICKING_SEED: u64 = 5;

/// The world, except that seed 5 panics part-way through its run: with
/// requests in flight, so the world is dropped while unwinding.
fn panics_in_seed_5(config: &RunConfig) -> Report {
    if config.seed != PANICKING_SEED {
        return sim::world::run(config);
    }
    let mut world = World::new(config);
    world.start();
    world.main_loop(config.max_steps, &mut |world| {
        if world.stats().steps == 40 {
            panic!("planted panic in seed {} at step 40", config.seed);
        }
        true
    });
    panic!("planted panic in seed {} at its end, before step 40", config.seed);
}

#[test]
fn a_panicking_seed_is_reported_with_its_replay_and_the_soak_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // One worker: the one that caught the panic must run the seeds after it.
    let plain = SoakConfig { seeds: Some(12), jobs: 1, traces_max: 5, traces_dir: dir.path().to_path_buf(), ..SoakConfig::default() };
    let planted = SoakConfig { run_seed: panics_in_seed_5, ..plain.clone() };
    let report = run(&planted);
    assert_eq!(report.seeds_run, 12, "the soak stopped at the panic");
    assert_eq!(report.stopped_by, "seeds");
    let panics: Vec<&SoakFailure> = report.failures.iter().filter(|f| f.invariant == Cause::Panic).collect();
    assert_eq!(panics.len(), 1, "{}", report.summary());
    let failure = panics[0];
    assert_eq!(failure.seed, PANICKING_SEED);
    assert!(failure.message.contains("planted panic in seed 5"), "{}", failure.message);
    assert!(failure.message.contains("soak.rs:"), "the message says where the panic happened: {}", failure.message);
    assert_eq!(failure.replay, "snapsim run --seed 5");
    assert_eq!(failure.knobs, RunConfig::new(PANICKING_SEED).knobs().to_string());
    assert_eq!(failure.trace, None, "a panic is not minimized");
    let summary = report.summary();
    assert!(summary.contains("first seed 5: panic: panicked at ") && summary.contains("replay: snapsim run --seed 5"), "{summary}");
    assert!(summary.contains("seed 5: panicked at ") && summary.contains("planted panic in seed 5"), "{summary}");
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    let listed = json["failures"].as_array().unwrap().iter().find(|f| f["seed"] == PANICKING_SEED).expect("the panic is in the JSON report");
    assert_eq!(listed["invariant"], "panic");
    assert_eq!(listed["replay"], "snapsim run --seed 5");
    // Every other seed ran as in a soak without the planted panic.
    let others = |report: &SoakReport| -> BTreeMap<u64, Cause> { failures(report).into_iter().filter(|&(seed, _)| seed != PANICKING_SEED).collect() };
    assert_eq!(others(&report), others(&run(&plain)));
}

/// Drops like the world's engine does: powering off takes its lock.
struct PowersOff<'a, T>(&'a engine::sync::Mutex<T>, &'a std::sync::Mutex<T>);

impl<T> Drop for PowersOff<'_, T> {
    fn drop(&mut self) {
        drop(self.0.lock());
        drop(sim::world::observer::lock(self.1));
    }
}

#[test]
fn a_lock_poisoned_by_a_panic_is_taken_by_the_teardown_that_panic_runs_without_aborting() {
    let engine_lock = engine::sync::Mutex::new(0u32);
    let world_lock = std::sync::Mutex::new(0u32);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _powers_off = PowersOff(&engine_lock, &world_lock);
        // Dropped first while unwinding: both locks are poisoned when the
        // teardown takes them. A second panic there would abort this test.
        let _engine_guard = engine_lock.lock();
        let _world_guard = sim::world::observer::lock(&world_lock);
        panic!("a bug under both locks");
    }));
    assert!(caught.is_err());
    // Outside a teardown, a poisoned lock is still a bug.
    assert!(catch_unwind(AssertUnwindSafe(|| *engine_lock.lock())).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| *sim::world::observer::lock(&world_lock))).is_err());
}
