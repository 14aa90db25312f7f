//! The simulation harness: the world, its simulated disk, exploration, the
//! soak and the zoo, as a library (the `snapsim` command line is its own
//! crate, `sim/cli`).
//!
//! - [`disk`]: `SimDisk`, the simulated block device and its fault model.
//! - [`world`]: the deterministic world: engine, disks, workload, crashes.
//! - [`timeline`]: a run's I/O as an HTML timeline (`--timeline`).
//! - [`trace`]: run traces and their hashes.
//! - [`bench`]: the performance figures (`snapsim bench`, `cargo bench -p sim`).
//! - [`limits`]: the bounds every input file is read within.
//! - [`cause`]: the writes a crash-state failure needs (delta debugging).
//! - [`export`]: a failing crash state's images and the dmsetup tables that load them.
//! - [`marks`]: coverage marks, the engine's and the world's: what a run reached.
//! - [`shape`]: `RunShape`, the run's shape that scenario files and crash traces share, and `FileError`.
//! - [`hostile`]: `arbitrary` descriptions of COW devices and operation sequences (fuzzing).
//! - [`zoo`]: the hunt for the kernel's historical bugs (`snapsim zoo`).
//! - [`soak`]: swarm seeds on parallel workers for hours (`snapsim soak`), sharded.
//! - `threads` (only with `--cfg shuttle`): the shuttle rig, the whole engine
//!   under several threads (the cases are in `tests/shuttle.rs`).

#![forbid(unsafe_code)]

pub mod bench;
pub mod cause;
pub mod crash_space;
pub mod crash_trace;
pub mod disk;
pub mod explore;
pub mod export;
pub mod hostile;
pub mod limits;
pub mod logwrites;
pub mod marks;
pub mod panics;
pub mod scenario;
pub mod shape;
pub mod soak;
pub mod survey;
#[cfg(shuttle)]
pub mod threads;
pub mod timeline;
pub mod trace;
pub mod world;
pub mod zoo;
