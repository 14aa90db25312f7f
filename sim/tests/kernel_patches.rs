//! The engine with the kernel-patches/ series' header writes
//! ([`KernelPatches::Applied`]) against the stock kernel's: under `--strict`
//! the stock engine fails on K1 (`overflow-p`) and K3 (`stale-area-zero`),
//! the patched one passes every scenario that shows either; the setting
//! travels through scenario files, crash traces and replay commands.
//!
//! `cargo test -p sim --test kernel_patches -- --ignored` explores every
//! scenario with the series applied, strict (about a minute and a half).

use engine::store::KernelPatches;
use model::Invariant;
use sim::crash_trace::CrashTrace;
use sim::explore::explore;
use sim::scenario::{Scenario, all_in, scenarios_dir};
use sim::world::RunConfig;

/// Explores `scenario` strictly with `kernel_patches` over each of its seeds:
/// the first failure's invariant, if any.
fn explore_strict(scenario: &Scenario, kernel_patches: KernelPatches) -> Option<Invariant> {
    let mut scenario = scenario.clone();
    scenario.file.shape.kernel_patches = kernel_patches;
    for &seed in &scenario.file.seeds {
        let config = scenario.run_config(seed).with_strict(true);
        assert_eq!(config.kernel_patches, kernel_patches, "the scenario's setting reaches its runs");
        let (coverage, outcome) = explore(&config, &scenario.bounds());
        if let Err(failure) = outcome {
            return Some(failure.violation.invariant);
        }
        assert!(coverage.complete, "{} seed {seed}: {}", scenario.name, coverage.describe(&scenario.bounds()));
    }
    None
}

fn load(name: &str) -> Scenario {
    Scenario::load(name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn k1_and_k3_fail_stock_strict_and_pass_with_kernel_patches_applied() {
    for (name, stock) in [("overflow-p", Invariant::I8Invalidation), ("stale-area-zero", Invariant::I4MetadataWellFormed)] {
        let scenario = load(name);
        assert_eq!(explore_strict(&scenario, KernelPatches::Stock), Some(stock), "{name}: stock, strict");
        assert_eq!(explore_strict(&scenario, KernelPatches::Applied), None, "{name}: the series applied, strict");
    }
}

/// Every scenario that fails strict with the stock engine (on K1, K2 or K3).
const SHOWING_A_KERNEL_BEHAVIOUR: [&str; 11] = [
    "area-zero-error",
    "copy-error",
    "four-snapshots-faults",
    "invalidated-reads",
    "merge-invalidated",
    "metadata-error",
    "overflow-p",
    "po-commit-before-invalidation",
    "po-fills-in-flight",
    "stale-area-zero",
    "throttle-failures",
];

#[test]
fn every_scenario_showing_a_kernel_behaviour_passes_strict_with_kernel_patches_applied() {
    for name in SHOWING_A_KERNEL_BEHAVIOUR {
        assert_eq!(explore_strict(&load(name), KernelPatches::Applied), None, "{name}: the series applied, strict");
    }
}

#[test]
#[ignore = "explores all 34 scenarios (about a minute and a half): run with --ignored"]
fn every_scenario_passes_strict_with_kernel_patches_applied() {
    for scenario in all_in(&scenarios_dir()).unwrap() {
        let stock = explore_strict(&scenario, KernelPatches::Stock);
        assert_eq!(stock.is_some(), SHOWING_A_KERNEL_BEHAVIOUR.contains(&scenario.name.as_str()), "{}: stock, strict: {stock:?}", scenario.name);
        assert_eq!(explore_strict(&scenario, KernelPatches::Applied), None, "{}: the series applied, strict", scenario.name);
    }
}

#[test]
fn a_scenario_file_names_its_kernel_patches_and_a_wrong_one_is_refused() {
    let text = "description = \"d\"\nchunk_sectors = 8\norigin_chunks = 4\ncow_chunks = 8\nsnapshots = 1\nkernel_patches = \"applied\"\nops = \"write origin 0 8\"\n";
    let scenario = Scenario::parse("s", std::path::Path::new("s.toml"), text).unwrap();
    assert_eq!(scenario.run_config(1).kernel_patches, KernelPatches::Applied);
    let default = Scenario::parse("s", std::path::Path::new("s.toml"), &text.replace("kernel_patches = \"applied\"\n", "")).unwrap();
    assert_eq!(default.run_config(1).kernel_patches, KernelPatches::Stock, "stock unless the file says otherwise");
    let error = Scenario::parse("s", std::path::Path::new("s.toml"), &text.replace("\"applied\"", "\"fua\"")).unwrap_err();
    assert!(error.to_string().contains("`kernel_patches` = \"fua\": neither"), "{error}");
    assert!(matches!(error.problem, sim::shape::FileProblem::Syntax(_)), "{error}");
}

#[test]
fn a_run_with_kernel_patches_applied_replays_with_them() {
    let config = RunConfig::new(3).with_strict(true).with_kernel_patches(KernelPatches::Applied);
    assert_eq!(config.replay_command(), "snapsim run --seed 3 --strict --kernel-patches applied");
    assert!(config.replay_test_command().contains("SNAPSIM_KERNEL_PATCHES=applied"), "{}", config.replay_test_command());
    assert_eq!(RunConfig::new(3).with_strict(true).replay_command(), "snapsim run --seed 3 --strict", "stock adds nothing");
}

#[test]
fn a_crash_trace_keeps_the_kernel_patches_of_its_run() {
    let scenario = load("overflow-p");
    let violation = model::Violation::new(Invariant::I8Invalidation, "made up for the test");
    let mut patched = scenario.clone();
    patched.file.shape.kernel_patches = KernelPatches::Applied;
    let trace = CrashTrace::from_explore(&patched, 1, engine::zoo::Mutations::NONE, true, &violation);
    assert_eq!(trace.file_name(), "i8-explore-seed1-strict-patched.toml");
    let text = trace.to_text(&trace.file_name());
    assert!(text.contains("kernel_patches = \"applied\""), "{text}");
    let stock = CrashTrace::from_explore(&scenario, 1, engine::zoo::Mutations::NONE, true, &violation);
    assert!(!stock.to_text("x").contains("kernel_patches"), "a stock trace is written as before");
}

/// K2: with stock origin writes, `invalidated-reads` lets an origin write
/// overtake a read the invalidated snapshot still has in flight (counted as
/// K2 on a plain run, an I13 failure under `--strict`); with the series the
/// write waits for the read, no seed counts K2 and strict passes.
#[test]
fn k2_shows_stock_and_is_gone_with_kernel_patches_applied() {
    let mut scenario = load("invalidated-reads");
    let k2 = |scenario: &Scenario| -> u64 {
        scenario.file.seeds.iter().map(|&seed| sim::world::run(&scenario.run_config(seed)).allowances.raced_invalidation).sum()
    };
    assert_eq!(scenario.file.shape.kernel_patches, KernelPatches::Applied, "the scenario is written for the series");
    assert_eq!(k2(&scenario), 0, "K2 with the series applied");
    assert_eq!(explore_strict(&scenario, KernelPatches::Applied), None, "the series applied, strict");
    scenario.file.shape.kernel_patches = KernelPatches::Stock;
    assert!(k2(&scenario) > 0, "the stock engine no longer shows K2 on invalidated-reads");
}
