//! What the world's callbacks share: the oracle, the trace hash and the
//! event log, fed one [`Event`] at a time.

use std::sync::{Arc, Mutex, MutexGuard};

use model::{Event, Oracle, Violation};

use crate::trace::Fnv;

/// An invariant the run saw broken, and at which step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: u64,
    pub violation: Violation,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at step {}", self.violation, self.step)
    }
}

/// Counters the callbacks update.
#[derive(Debug, Default)]
pub struct Counters {
    pub in_flight: usize,
    pub acknowledged: u64,
    pub failed: u64,
    pub sectors_checked: u64,
}

/// The observer of a run.
#[derive(Debug)]
pub struct Observer {
    pub step: u64,
    pub counters: Counters,
    pub oracle: Oracle,
    pub failure: Option<Failure>,
    trace: Fnv,
    log: Option<Vec<Event>>,
    /// Print every event to stderr (`SNAPSIM_EVENTS=1`).
    show: bool,
    /// Keep a trace hash (not when judging a crash state, where nobody reads it).
    tracing: bool,
}

pub type Shared = Arc<Mutex<Observer>>;

/// Takes a world lock. A poisoned one is a bug and panics, except on a
/// thread already unwinding from that panic (the world being dropped), where
/// a second panic would abort the process instead of reporting the first.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) if std::thread::panicking() => poisoned.into_inner(),
        Err(poisoned) => panic!("world lock poisoned: {poisoned}"),
    }
}

impl Observer {
    pub fn new(oracle: Oracle, keep_log: bool) -> Self {
        Self {
            step: 0,
            counters: Counters::default(),
            oracle,
            failure: None,
            trace: Fnv::new(),
            log: keep_log.then(Vec::new),
            show: std::env::var_os("SNAPSIM_EVENTS").is_some(),
            tracing: true,
        }
    }

    /// An observer that keeps no log and prints nothing (judging crash states).
    pub fn quiet(oracle: Oracle) -> Self {
        Self { step: 0, counters: Counters::default(), oracle, failure: None, trace: Fnv::new(), log: None, show: false, tracing: false }
    }

    /// Records `event` in the trace and lets the oracle judge it.
    pub fn emit(&mut self, event: Event) {
        if self.show {
            eprintln!("step {:>6}: {event}", self.step);
        }
        if self.tracing {
            let trace = &mut self.trace;
            event.encode(&mut |word| trace.u64(word));
        }
        let verdict = self.oracle.apply(&event);
        if let Some(log) = &mut self.log {
            log.push(event);
        }
        if let Err(violation) = verdict {
            self.fail(violation);
        }
    }

    /// Whether this observer keeps a trace hash.
    pub fn traces(&self) -> bool {
        self.tracing
    }

    /// Mixes a value that is not an event (an image hash) into the trace.
    pub fn mix(&mut self, value: u64) {
        self.trace.u64(value);
    }

    /// Records the first violation of the run (with its story, if it has none).
    pub fn fail(&mut self, violation: Violation) {
        if self.failure.is_none() {
            let violation = if violation.events.is_empty() { self.oracle.with_story(violation) } else { violation };
            self.failure = Some(Failure { step: self.step, violation });
        }
    }

    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    pub fn take_log(&mut self) -> Vec<Event> {
        self.log.take().unwrap_or_default()
    }
}
