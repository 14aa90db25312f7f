//! The persistent exception store (`dm-snap-persistent.c`): the COW device's
//! metadata, loaded, extended and merged exactly as the kernel does it.
//!
//! - [`load`](PersistentStore::load) reads the header and every metadata area
//!   (with read-ahead), builds the [`ExceptionTable`] and sets the allocator.
//! - [`prepare_exception`](PersistentStore::prepare_exception) allocates a COW
//!   chunk; [`commit_exception`](PersistentStore::commit_exception) records it,
//!   batching records and calling callbacks only after the area write with
//!   PREFLUSH|FUA has completed.
//! - [`prepare_merge`](PersistentStore::prepare_merge) and
//!   [`commit_merge`](PersistentStore::commit_merge) walk the records backwards
//!   for snapshot-merge.
//! - [`drop_snapshot`](PersistentStore::drop_snapshot) marks the header invalid.
//!
//! [`KernelPatches`] chooses the stock kernel's behaviour or that of the
//! kernel with the kernel-patches/ series: headers durable before anything
//! relies on them.

mod load;
mod persistent;

pub use load::LoadDone;
pub use persistent::{CommitCallback, HeaderWaiter, MergeRun, MergeStep, PersistentStore, StoreDone};

use crate::chunk::ChunkSizeError;
use crate::exception_table::{ExceptionTable, TableError};
use crate::io::IoError;
use crate::sync::Arc;

/// The store types the kernel offers for persistent snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreKind {
    /// `P`: running out of COW space invalidates the snapshot.
    #[default]
    Persistent,
    /// `PO`: running out of space through a snapshot write fails that write and
    /// reports `Overflow`, leaving the header valid.
    PersistentOverflow,
}

impl StoreKind {
    /// The name used in a device-mapper table (`P` or `PO`).
    pub fn table_name(self) -> &'static str {
        let name = match self {
            StoreKind::Persistent => "P",
            StoreKind::PersistentOverflow => "PO",
        };
        // `dmsetup table` prints what a table line parses back to.
        debug_assert_eq!(StoreKind::parse(name), Some(self));
        name
    }

    /// Parses a table name: `P`, `p`, `PO`, `Po`, `persistent`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "P" | "PERSISTENT" => Some(StoreKind::Persistent),
            "PO" => Some(StoreKind::PersistentOverflow),
            _ => None,
        }
    }
}

/// Which dm-snapshot the engine behaves as: the stock kernel (the default,
/// what this port reproduces, K1–K3 included), or the kernel with the
/// project's `kernel-patches/` series applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KernelPatches {
    /// As the stock kernel (6.1). `persistent_read_metadata` writes a new
    /// snapshot's header, then zeroes metadata area 0, both plain writes
    /// that only the first commit's PREFLUSH makes durable: a crash before
    /// it can keep the header and lose the zeroing (K3).
    /// `persistent_drop_snapshot` writes the `valid = 0` header as a plain
    /// write and origin writes go ahead at once: a crash can keep them and
    /// lose the header (K1).
    #[default]
    Stock,
    /// As the kernel with the kernel-patches/ series.
    /// `0001-dm-snapshot-make-the-invalidated-header-durable…`:
    /// `persistent_drop_snapshot` writes the `valid = 0` header with FUA,
    /// and since the kernel writes it synchronously under the snapshot's
    /// lock, no origin write released by the invalidation (or issued after
    /// it) reaches the origin before that write has completed.
    /// `0002-dm-snapshot-zero-metadata-area-0-before-writing…`:
    /// `persistent_read_metadata` zeroes area 0 first and only then writes
    /// the new header, with PREFLUSH, so no header that makes the snapshot
    /// valid can be durable before the zeroing is.
    /// K2 (a snapshot read in flight when the snapshot is invalidated may
    /// return origin data written after) is not addressed by the series.
    Applied,
}

impl KernelPatches {
    /// The name a scenario file or a command line uses: `stock` or `applied`.
    pub fn name(self) -> &'static str {
        let name = match self {
            KernelPatches::Stock => "stock",
            KernelPatches::Applied => "applied",
        };
        // Every name parses back to what printed it.
        debug_assert_eq!(KernelPatches::parse(name), Some(self));
        name
    }

    /// Parses `stock` or `applied` (any case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "stock" => Some(KernelPatches::Stock),
            "applied" => Some(KernelPatches::Applied),
            _ => None,
        }
    }
}

/// How a store is set up: the table line's store type and chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// The table's chunk size in sectors; `None` takes the COW header's (or
    /// the default of 32 sectors for a new COW). A valid header's chunk size
    /// overrides this one, with a warning.
    pub chunk_sectors: Option<u32>,
    /// Historical bugs to re-create (only with the `bug-zoo` feature); the
    /// origin sets its own when it loads a snapshot.
    pub mutations: crate::zoo::Mutations,
}

/// What loading found on the COW device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Zero magic: a new snapshot; a header and an empty first area were written.
    New,
    /// The header says the snapshot was invalidated; no records were read.
    Invalid,
    /// A valid snapshot; its records are in [`Loaded::exceptions`].
    Valid,
}

/// A loaded store with its completed exceptions.
#[derive(Debug)]
pub struct Loaded<D: crate::io::BlockDevice> {
    pub store: Arc<PersistentStore<D>>,
    pub outcome: LoadOutcome,
    pub exceptions: ExceptionTable,
    /// `(table, header)` chunk sizes when the header overrode the table's.
    pub chunk_size_override: Option<(u32, u32)>,
}

/// Space accounting as the kernel's `persistent_usage` reports it, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Chunks below the allocator's next free chunk, header and areas included.
    pub sectors_allocated: u64,
    /// The COW device's size.
    pub total_sectors: u64,
    /// The header plus every metadata area up to the current one.
    pub metadata_sectors: u64,
}

impl std::fmt::Display for Usage {
    /// The snapshot status line as `dmsetup status` prints it after the target
    /// name: `<allocated>/<total> <metadata>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.sectors_allocated, self.total_sectors, self.metadata_sectors)
    }
}

/// Why a store could not be loaded or used. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("invalid chunk size in the table: {0}")]
    TableChunkSize(ChunkSizeError),
    #[error("invalid chunk size {value} in the COW header: {source}")]
    HeaderChunkSize { value: u32, source: ChunkSizeError },
    #[error("COW header magic is {found:#010x}, expected {expected:#010x} (\"SnAp\"): not a snapshot COW device, or its header is corrupt", expected = crate::format::SNAP_MAGIC)]
    BadMagic { found: u32 },
    #[error("COW header version is {found}: only on-disk version 1 exists")]
    UnsupportedVersion { found: u32 },
    #[error(
        "COW device too small: {device_sectors} sectors hold {chunks} chunks of {chunk_sectors} sectors, \
         and a snapshot needs at least 3 (header, first metadata area, one data chunk)"
    )]
    CowTooSmall { device_sectors: u64, chunk_sectors: u32, chunks: u64 },
    #[error("the COW device is the origin device: a snapshot cannot store its exceptions on its own origin")]
    CowIsOrigin,
    #[error(
        "metadata area {area} would be at chunk {chunk}, beyond the end of the COW device ({device_chunks} chunks): \
         the device is truncated, or area {previous} is corrupt",
        previous = area.saturating_sub(1)
    )]
    AreaBeyondDevice { area: u64, chunk: u64, device_chunks: u64 },
    #[error(
        "record {index} of metadata area {area} maps origin chunk {old_chunk} to COW chunk {new_chunk}, \
         beyond the end of the COW device ({device_chunks} chunks)"
    )]
    RecordOutsideCow { area: u64, index: u32, old_chunk: u64, new_chunk: u64, device_chunks: u64 },
    #[error(
        "record {index} of metadata area {area} maps origin chunk {old_chunk} to COW chunk {new_chunk}, \
         which holds metadata (a metadata area), not data"
    )]
    RecordOnMetadata { area: u64, index: u32, old_chunk: u64, new_chunk: u64 },
    #[error("COW chunk {new_chunk} is claimed by two records: origin chunks {first_old} and {second_old}")]
    DuplicateNewChunk { new_chunk: u64, first_old: u64, second_old: u64 },
    #[error("duplicate record: {0}")]
    DuplicateOldChunk(TableError),
    #[error("COW I/O error while {context}: {source}")]
    Io { context: String, source: IoError },
    #[error("no space left on the COW device ({device_sectors} sectors; next free chunk {next_free})")]
    NoSpace { device_sectors: u64, next_free: u64 },
    #[error("an operation on the COW device never completed (a completion was lost)")]
    Stalled,
}

impl StoreError {
    fn io(context: impl Into<String>, source: IoError) -> Self {
        let context = context.into();
        debug_assert!(!context.is_empty(), "an I/O error that does not say what failed: {source}");
        StoreError::Io { context, source }
    }
}

/// Loads a store over devices whose completions run on `queue`, running the
/// queue until the load has finished. For tools and tests on real files or
/// memory; the simulator drives [`PersistentStore::load`] itself.
pub fn load_blocking<D: crate::io::BlockDevice>(
    queue: &crate::io::CompletionQueue,
    cow: Arc<D>,
    origin_block_bytes: u32,
    config: StoreConfig,
) -> Result<Loaded<D>, StoreError> {
    let mut refused = None;
    let finished = crate::io::run_until_done(queue, |done| {
        if let Err(error) = PersistentStore::load(cow, origin_block_bytes, config, done) {
            refused = Some(error);
        }
    });
    // A refused load never calls its callback.
    assert!(refused.is_none() || finished.is_none(), "a refused load also finished");
    match (refused, finished) {
        (Some(error), _) => Err(error),
        (None, Some(result)) => result,
        (None, None) => Err(StoreError::Stalled),
    }
}
