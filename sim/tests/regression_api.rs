//! The harness as a library: regression tests written with the world's verbs.
//!
//! The story these guard: an origin write is acknowledged only once the copy
//! of its chunk is committed with PREFLUSH|FUA, so a power cut that keeps
//! the origin's unflushed writes and loses the COW's still leaves the
//! snapshot its old data. The kernel's fix "use barrier when writing
//! exception store" made it so; bug zoo Z7 undoes it (the area write goes
//! out plain) and the same test, with the same crash, then fails.

use model::{Invariant, Target};
use sim::crash_trace::mutations_of;
use sim::world::{Knobs, RunConfig, World};

/// Writes two chunks, crashes keeping the origin's newest values and losing
/// every unflushed COW sector, reloads and checks.
fn write_crash_check(config: RunConfig) -> Result<(), sim::world::Failure> {
    let mut world = World::boot(&config.with_knobs(Knobs::plain(8, 64, 160, 1)));
    world.write(Target::Origin, 0, 8);
    world.write(Target::Origin, 8, 4);
    world.run_until_quiet()?;
    world.crash_keeping(|disk, _sector, values| if disk == 0 { values - 1 } else { 0 });
    world.reload();
    world.run_until_quiet()?;
    world.check()
}

#[test]
fn acknowledged_origin_writes_keep_the_snapshot_through_a_crash() {
    write_crash_check(RunConfig::new(1)).unwrap();
}

#[test]
fn the_same_test_catches_a_commit_without_preflush_and_fua() {
    let failure = write_crash_check(RunConfig::new(1).with_mutations(mutations_of(Some("Z7")).unwrap())).unwrap_err();
    assert!(matches!(failure.violation.invariant, Invariant::I1AckedOriginWrite | Invariant::I2SnapshotView), "{failure}");
}

#[test]
fn a_script_crashes_with_writes_in_flight_and_goes_on() {
    let mut config = RunConfig::new(3).with_knobs(Knobs::plain(8, 64, 160, 1));
    config.script =
        Some(sim::world::script::parse_ops("write origin 0 8\nwrite origin 40 16\ncrash\nwrite origin 8 8\nwait\nread snapshot0 0 64").unwrap());
    let report = sim::world::run(&config);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.stats.crashes, 1);
}
