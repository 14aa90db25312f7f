//! A deliberately broken engine is caught, by the right invariant.
//!
//! The engine built for tests carries the bug zoo (the `bug-zoo` feature,
//! never in production builds). With Z3 — exceptions committed in copy
//! completion order, undoing the kernel's 230c83af — the on-disk records
//! leave allocation order, and a crash then leaks the chunks skipped: the
//! oracle must name I5.

use engine::zoo::{Mutation, Mutations};
use model::Invariant;
use sim::explore::explore;
use sim::scenario::Scenario;

#[test]
fn commits_in_completion_order_are_caught_as_i5() {
    let scenario = Scenario::load("basic-cow").unwrap();
    let mut config = scenario.run_config(1);
    config.mutations = Mutations::only(Mutation::Z3CommitInCompletionOrder);
    let (coverage, outcome) = explore(&config, &scenario.bounds());
    let failure = outcome.expect_err("Z3 went unnoticed");
    println!("caught after {} distinct crash states: {failure}", coverage.distinct);
    assert_eq!(failure.violation.invariant, Invariant::I5InOrderCommit, "{failure}");
    assert!(failure.violation.message.contains("precedes"), "{failure}");
    assert!(!failure.violation.events.is_empty(), "a failure tells the events that led there");
}

#[test]
fn the_same_scenario_without_the_mutation_passes() {
    let scenario = Scenario::load("basic-cow").unwrap();
    let (_, outcome) = explore(&scenario.run_config(1), &scenario.bounds());
    assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
}
