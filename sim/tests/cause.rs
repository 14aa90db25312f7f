//! The writes a crash-state failure needs, shrunk by delta debugging.
//!
//! Bug zoo Z7 undoes the kernel's "use barrier when writing exception
//! store": metadata areas are written without PREFLUSH|FUA, so a crash can
//! keep an area's record while losing the copied chunk it points at. The
//! harness found that long ago; what an engineer then asks is which writes
//! the failing state needs, and the answer must name the area write (the
//! record that persisted) and nothing the failure does not need. One
//! `check` explores a scenario under a mutation and compares the answer in
//! words.

use engine::zoo::{Mutation, Mutations};
use sim::explore::{Bounds, explore};
use sim::scenario::Scenario;

/// Explores `scenario` under `mutation` and expects a crash-state failure
/// whose cause mentions every fragment of `mentions`.
fn check(scenario: &str, mutation: &str, mentions: &[&str]) {
    let scenario = Scenario::load(scenario).expect("the scenario loads");
    let mut config = scenario.run_config(scenario.file.seeds[0]);
    config.mutations = Mutations::only(Mutation::parse(mutation).expect("a zoo mutation"));
    let (_, outcome) = explore(&config, &Bounds::default());
    let failure = outcome.expect_err("the mutation is caught");
    let cause = failure.cause.as_ref().unwrap_or_else(|| panic!("no cause for {failure}"));
    let text = cause.to_string();
    for fragment in mentions {
        assert!(text.contains(fragment), "{text:?} does not mention {fragment:?}");
    }
    assert!(cause.judged <= sim::cause::JUDGED_MAX + cause.pending as u64 + 1);
    assert!(!cause.truncated, "{text}");
}

#[test]
fn a_torn_or_reordered_metadata_write_is_named_with_its_area() {
    check("basic-cow", "Z7", &["the failure needs: ", "on cow0 (area 0", "persisted"]);
}

#[test]
fn a_failure_the_durable_images_show_needs_no_write() {
    check("basic-cow", "Z3", &["the failure needs no non-durable write"]);
}

#[test]
fn a_merge_failure_names_the_data_chunk_it_needs() {
    check("merge-concurrent-writes", "Z16", &["chunk", "data) persisted"]);
}
