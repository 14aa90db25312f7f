//! The coverage marks no scenario reaches, each reached by a swarm seed.
//!
//! Scenario files document the marks their exploration reaches, and
//! `explore_scenarios` fails when one stops reaching them. The few marks
//! left to the swarm are pinned here to the seed that first reached one in
//! `snapsim coverage`: if a change to the workload, the knobs or the engine
//! stops that seed from reaching its mark, this test says which, and the
//! mark needs a new seed or a scenario of its own — it must not silently go
//! unreached, since `cargo test` is one of the two places each mark is
//! promised to be hit.

use sim::marks;
use sim::world::{RunConfig, run};

/// Runs swarm seed `seed` and expects it to reach `mark`.
fn check(mark: &str, seed: u64) {
    assert!(marks::all().iter().any(|(name, _)| *name == mark), "{mark} is not a coverage mark");
    let report = run(&RunConfig::new(seed));
    assert!(report.failure.is_none(), "seed {seed} failed: {:?}", report.failure);
    assert!(report.marks.of(mark) > 0, "swarm seed {seed} no longer reaches {mark}; `snapsim coverage` names a seed that does");
}

#[test]
fn a_reboot_meets_a_media_error_while_reading_an_area_and_activates_again() {
    check("load-area-read-error", 1);
    check("load-retried", 1);
}

#[test]
fn a_copy_cannot_write_the_cow() {
    check("copy-write-error", 23);
}

#[test]
fn the_invalid_header_cannot_be_written() {
    check("header-invalidation-failed", 492);
}

/// Devices that end mid-chunk are drawn by at least one swarm seed in
/// five, and the swarm reaches the last chunk's clipped copy and reads past
/// the last whole chunk (the scenarios `irregular-origin` and
/// `short-origin` reach them too).
#[test]
fn the_swarm_draws_devices_that_end_mid_chunk() {
    let seeds = 0..1000u64;
    let irregular = seeds.clone().filter(|&seed| RunConfig::new(seed).knobs().irregular()).count();
    assert!(irregular * 5 >= seeds.clone().count(), "only {irregular} of {} swarm seeds draw an irregular geometry", seeds.count());
    let shorter = (0..1000u64).filter(|&seed| RunConfig::new(seed).knobs().origin_chunks == 0).count();
    assert!(shorter > 0, "no swarm seed draws an origin shorter than one chunk of its largest snapshot");
    check("copy-clipped-at-origin-end", 1);
    check("read-past-last-whole-chunk", 1);
}

/// Every mark is either documented by a scenario file or pinned above.
#[test]
fn every_mark_is_promised_somewhere() {
    let pinned = ["load-area-read-error", "load-retried", "copy-write-error", "header-invalidation-failed"];
    let scenarios = sim::scenario::all_in(&sim::scenario::scenarios_dir()).expect("the scenarios load");
    let documented: std::collections::BTreeSet<&str> = scenarios.iter().flat_map(|s| s.file.reaches.iter().map(String::as_str)).collect();
    let unpromised: Vec<&str> =
        marks::all().iter().map(|(name, _)| *name).filter(|name| !documented.contains(name) && !pinned.contains(name)).collect();
    assert!(unpromised.is_empty(), "no scenario documents and no swarm seed pins the marks {unpromised:?}");
}
