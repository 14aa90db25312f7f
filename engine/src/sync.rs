//! The one facade through which the engine takes locks and shares state.
//!
//! Engine code names `crate::sync::{Arc, Mutex}` and never `std::sync`
//! directly, so that the model checkers (loom, shuttle) can later swap their
//! instrumented types in at this single point without touching engine logic.
//!
//! `Mutex::lock` returns the guard directly: a poisoned lock means another
//! thread panicked in the middle of mutating engine state, which is a bug, so
//! it is propagated as a panic rather than handed to callers as an error.

pub use std::sync::Arc;
pub use std::sync::Weak;
pub use std::sync::atomic;

/// A mutual-exclusion lock whose `lock` never returns an error.
#[derive(Debug, Default)]
pub struct Mutex<T> {
    inner: std::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
pub type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Wraps `value` in a new lock.
    pub fn new(value: T) -> Self {
        Self { inner: std::sync::Mutex::new(value) }
    }

    /// Takes the lock, blocking the calling thread until it is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        match self.inner.lock() {
            Ok(guard) => guard,
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
