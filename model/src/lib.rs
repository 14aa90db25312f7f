//! The reference model of snapshot semantics and the oracle that judges the
//! engine against it.
//!
//! The model is small enough to be obviously right: the origin and each
//! snapshot as sector versions with the set of values a crash may legally
//! leave ([`versions`]), fed with a run's [`event`]s. The [`oracle`] checks
//! the invariants of SPEC §5 ([`invariant`]) on live reads, reported state,
//! reloaded engines and COW images, which it reads with its own decoder
//! ([`cow`]). It does no I/O and knows nothing of the engine beyond what the
//! COW metadata says on disk.

#![forbid(unsafe_code)]

pub mod cow;
pub mod digest;
pub mod event;
pub mod invariant;
pub mod oracle;
pub mod versions;

pub use cow::{CowGeometry, CowState, SectorSource};
pub use event::{DiskOp, Event, Target, UserFlags};
pub use invariant::{Invariant, Violation};
pub use oracle::{Allowances, Oracle, OracleConfig, SnapshotSpec};
pub use versions::SectorVersions;
