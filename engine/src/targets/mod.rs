//! The device-mapper targets (`dm-snap.c`): snapshot, snapshot-origin and
//! snapshot-merge, over the persistent exception store.
//!
//! - [`origin`]: an origin and its snapshots; origin writes that preserve
//!   chunks first; the COW throttle.
//! - [`snapshot`]: a snapshot's map (reads remapped or tracked, writes that
//!   create exceptions), copies, in-order commit, completion, invalidation.
//! - [`merge`]: merging a snapshot back into its origin.
//! - [`sequencer`], [`tracked`], [`bio`], [`copy`]: the building blocks.
//!
//! Every target is also a [`BlockDevice`](crate::io::BlockDevice):
//! [`OriginDevice`] and [`SnapshotDevice`] are what a user of
//! `/dev/mapper/...` would read and write.

pub mod bio;
pub mod copy;
pub mod merge;
pub mod origin;
pub mod sequencer;
pub mod snapshot;
pub mod tracked;

pub use merge::{MergeDone, MergeOutcome};
pub use origin::{DEFAULT_COW_THRESHOLD, Origin, OriginConfig, OriginDevice};
pub use snapshot::{Role, Snapshot, SnapshotDevice};
