//! The engine: a port of Linux device-mapper snapshots (the persistent
//! exception store of `dm-snap-persistent.c`) whose on-disk COW format is the
//! kernel's, byte for byte.
//!
//! Everything here is generic over [`io::BlockDevice`]: the engine never does
//! I/O directly, never reads a clock and never spawns a thread. The same code
//! runs over real files ([`io::FileDevice`]), over memory ([`io::MemDevice`])
//! and over the simulated disk of the `sim` crate.
//!
//! Codemap:
//! - [`chunk`]: chunk-size validation (power of two, block-size multiple, limit).
//! - [`format`]: the on-disk layout as pure functions (header, records, areas).
//! - [`io`]: the block-device trait, its request semantics, and the real devices.
//! - [`exception_table`]: completed exceptions, grouped into consecutive runs.
//! - [`store`]: the persistent exception store (load, allocate, commit, merge, drop).
//! - [`targets`]: the snapshot, snapshot-origin and snapshot-merge targets.
//! - [`view`]: the read-only snapshot view (what a snapshot device serves).
//! - [`sync`]: the one facade through which the engine takes locks.
//! - [`testing`]: test infrastructure (a device whose completions tests control).
//! - [`zoo`]: historical kernel bugs, re-creatable only with the `bug-zoo` feature.

#![forbid(unsafe_code)]
// Disk I/O errors are returned, never unwrapped.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod chunk;
pub mod cov;
pub mod exception_table;
pub mod format;
pub mod io;
pub mod store;
pub mod sync;
pub mod targets;
pub mod testing;
pub mod view;
pub mod zoo;

pub use chunk::{ChunkSize, ChunkSizeError};
pub use exception_table::ExceptionTable;
pub use io::{BlockDevice, IoError, SECTOR_BYTES};
pub use store::{LoadOutcome, PersistentStore, StoreConfig, StoreError, StoreKind, Usage};
