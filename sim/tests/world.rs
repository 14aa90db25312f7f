//! The world is deterministic: a seed replays bit for bit.
//!
//! `SEED=<n> cargo test -p sim --test world replay_seed -- --nocapture`
//! replays one seed and prints its report, as `snapsim run --seed <n>` does.

use sim::world::{RunConfig, run};

#[test]
fn a_seed_run_twice_gives_the_same_trace_hash() {
    for seed in 0..24 {
        let first = run(&RunConfig::new(seed));
        let second = run(&RunConfig::new(seed));
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}: trace hashes differ between two runs");
        assert_eq!(first.stats, second.stats, "seed {seed}");
        assert_eq!(first.failure, second.failure, "seed {seed}");
    }
}

#[test]
fn different_seeds_explore_different_runs() {
    let hashes: std::collections::BTreeSet<u64> = (0..24).map(|seed| run(&RunConfig::new(seed)).trace_hash).collect();
    assert_eq!(hashes.len(), 24);
}

#[test]
fn the_readme_seed_passes() {
    let report = run(&RunConfig::new(42));
    assert_eq!(report.failure, None, "seed 42: replay with {}", report.replay_command());
    assert!(report.stats.operations > 0 && report.stats.sectors_checked > 0);
}

/// Swarm runs with out-of-order completions, faults and crashes: each seed
/// must pass the oracle (kernel behaviours K1/K2 allowed and counted).
#[test]
fn swarm_seeds_pass_the_oracle() {
    let mut allowed = 0;
    for seed in 100..140 {
        let report = run(&RunConfig::new(seed));
        if let Some(failure) = &report.failure {
            panic!("seed {seed}: {failure}\nreplay: {}\n    or: {}", report.replay_command(), report.replay_test_command());
        }
        allowed += report.allowances.revived_invalid + report.allowances.raced_invalidation;
    }
    println!("40 swarm seeds pass; kernel behaviours allowed {allowed} time(s)");
}

#[test]
fn replay_seed() {
    // The options `snapsim run` prints in its replay command, as variables.
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42);
    let mut config = RunConfig::new(seed);
    if let Ok(steps) = std::env::var("SNAPSIM_MAX_STEPS") {
        config.max_steps = steps.parse().expect("SNAPSIM_MAX_STEPS is a number of steps");
    }
    if let Ok(bias) = std::env::var("SNAPSIM_BIAS") {
        config.bias = bias.parse().expect("SNAPSIM_BIAS holds five odds");
    }
    if let Ok(kernel_patches) = std::env::var("SNAPSIM_KERNEL_PATCHES") {
        config.kernel_patches = engine::store::KernelPatches::parse(&kernel_patches).expect("SNAPSIM_KERNEL_PATCHES is stock or durable");
    }
    let mutation = std::env::var("SNAPSIM_MUTATION").ok();
    config.mutations = sim::crash_trace::mutations_of(mutation.as_deref()).expect("SNAPSIM_MUTATION names a mutation");
    let report = run(&config);
    println!("seed {seed}: {}", report.knobs);
    println!("{:?}", report.stats);
    println!("trace hash {:016x}", report.trace_hash);
    println!("kernel behaviours allowed: {}", report.allowances);
    match &report.failure {
        None => println!("verdict: PASS"),
        Some(failure) => {
            println!("verdict: FAIL: {failure}");
            failure.violation.events.iter().for_each(|e| println!("  {e}"));
            panic!("seed {seed} fails; replay with {}", report.replay_command());
        }
    }
}

/// What a crash state is judged by besides its images changes when a
/// flush is acknowledged (an earlier write may no longer be lost):
/// `explore` skips a state met again only under the same key, so a state
/// judged before the flush is judged again after it.
#[test]
fn a_flush_acknowledged_changes_the_judgement_key_and_a_point_taken_again_keeps_it() {
    use model::Target;
    use sim::world::{Knobs, World};
    let config = RunConfig::new(1).with_knobs(Knobs::plain(8, 64, 160, 1));
    let mut world = World::boot(&config);
    world.write(Target::Origin, 56, 2);
    world.run_until_quiet().unwrap();
    let written = world.crash_point().unwrap().judgement_key();
    assert_eq!(world.crash_point().unwrap().judgement_key(), written, "a point taken twice has one key");
    world.flush(Target::Origin);
    world.run_until_quiet().unwrap();
    let flushed = world.crash_point().unwrap().judgement_key();
    assert_ne!(flushed, written, "after the flush, losing sectors 56+2 is a violation: the key must say so");
}
