//! The one facade through which the engine takes locks and shares state.
//!
//! Engine code names `crate::sync::{Arc, Mutex, atomic}` and never
//! `std::sync` for anything that synchronises, so that the model checkers
//! swap their instrumented types in at this single point without touching
//! engine logic:
//!
//! | build | `Mutex`, `atomic` | `Arc`, `Weak` |
//! |---|---|---|
//! | normal | `std::sync` | `std::sync` |
//! | `RUSTFLAGS="--cfg loom"` | `loom::sync` | `std::sync` |
//! | `RUSTFLAGS="--cfg shuttle"` | `shuttle::sync` | `std::sync` |
//!
//! `Arc` and `Weak` stay std's in every build: reference counts are not where
//! the engine's races live, and loom's `Arc` has no `Weak`. Process-unique
//! identity counters (device numbers) also use std atomics directly: they
//! order nothing.
//!
//! An instrumented build is only usable inside its checker (`loom::model`,
//! `shuttle::check_*`): the test suites under `engine/tests/loom.rs` and
//! `sim/tests/shuttle.rs` are the only code compiled that way.
//!
//! `Mutex::lock` returns the guard directly: a poisoned lock means another
//! thread panicked in the middle of mutating engine state, which is a bug, so
//! it is propagated as a panic rather than handed to callers as an error.
//! The one exception is a thread already unwinding from that panic (a
//! destructor powering the engine off): a second panic there would abort the
//! process, so it gets the guard and the first panic carries on.

pub use std::sync::Arc;
pub use std::sync::Weak;

#[cfg(not(any(loom, shuttle)))]
use std::sync as backend;
#[cfg(not(any(loom, shuttle)))]
pub use std::sync::atomic;

#[cfg(loom)]
use loom::sync as backend;
#[cfg(loom)]
pub use loom::sync::atomic;

#[cfg(all(shuttle, not(loom)))]
use shuttle::sync as backend;
#[cfg(all(shuttle, not(loom)))]
pub use shuttle::sync::atomic;

/// A mutual-exclusion lock whose `lock` never returns an error.
#[derive(Debug, Default)]
pub struct Mutex<T> {
    inner: backend::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
pub type MutexGuard<'a, T> = backend::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Wraps `value` in a new lock.
    pub fn new(value: T) -> Self {
        Self { inner: backend::Mutex::new(value) }
    }

    /// Takes the lock, blocking the calling thread until it is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) if std::thread::panicking() => poisoned.into_inner(),
            Err(poisoned) => panic!("engine lock poisoned by an earlier panic: {poisoned}"),
        }
    }

    /// Consumes the lock and returns the value inside.
    pub fn into_inner(self) -> T {
        match self.inner.into_inner() {
            Ok(value) => value,
            Err(poisoned) => panic!("engine lock poisoned by an earlier panic: {poisoned}"),
        }
    }
}
