//! The block-device trait: the only way the engine touches storage.
//!
//! # Contract
//!
//! A device is an array of 512-byte sectors. It accepts three kinds of request
//! — read, write (with optional `preflush` and `fua`), and flush — and calls
//! each request's completion **exactly once**, with success or an [`IoError`].
//!
//! - **Never inline.** A completion never runs inside the call that submitted
//!   it; it runs later, from whatever drives the device (a
//!   [`CompletionQueue`], the simulator's event loop, an I/O thread). Engine
//!   code may therefore submit while holding its own locks.
//! - **Any order.** Requests in flight together may complete in any order,
//!   whatever order they were submitted in. Code that needs an order waits for
//!   one completion before it submits the next request.
//! - **Data at submission.** A write's data is captured when it is submitted.
//!   A read sees every write that completed before the read was submitted;
//!   overlapping requests in flight together see each other or not.
//! - **Volatile cache.** A completed write is not durable. `preflush` makes
//!   every write that completed *before this request was submitted* durable
//!   before this request is carried out. `fua` makes *this* write durable when
//!   it completes. FUA is not a barrier: it says nothing of other writes. A
//!   flush is a zero-length write with `preflush`.
//! - **Bounds.** Requests lie inside the device and are whole sectors; a
//!   request that does not gets [`IoErrorKind::OutOfRange`] or
//!   [`IoErrorKind::Misaligned`] through its completion, never a panic.

mod completion;
mod file;
mod memory;

pub use completion::{CompletionQueue, run_until_done};
pub use file::{FileDevice, OpenMode};
pub use memory::MemDevice;

/// Bytes in a sector, the unit of addressing and of atomicity.
pub const SECTOR_BYTES: usize = 512;

/// What becomes durable around a write (the kernel's `REQ_PREFLUSH` and `REQ_FUA`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WriteFlags {
    /// Make every write completed before this one was submitted durable first.
    pub preflush: bool,
    /// Make this write durable before it completes.
    pub fua: bool,
}

impl WriteFlags {
    /// A plain write into the volatile cache.
    pub const PLAIN: Self = Self { preflush: false, fua: false };
    /// `REQ_PREFLUSH | REQ_FUA`: everything before, and this write, durable.
    pub const PREFLUSH_FUA: Self = Self { preflush: true, fua: true };
}

/// A completion: called exactly once with the request's outcome.
pub type IoDone<T> = Box<dyn FnOnce(Result<T, IoError>) + Send + 'static>;

/// Identifies the storage behind a device, so that two handles on the same
/// storage (a COW opened as its own origin) can be told apart from two devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceIdentity {
    /// A regular file: its filesystem's device number and its inode number.
    File { dev: u64, ino: u64 },
    /// A block device: its device number, whatever path opened it.
    Block { rdev: u64 },
    /// An in-memory or simulated device with a process-unique number.
    Memory(u64),
}

/// The storage a snapshot lives on. See the module documentation for the contract.
pub trait BlockDevice: Send + Sync + 'static {
    /// The device size in 512-byte sectors.
    fn size_sectors(&self) -> u64;

    /// The logical block size in bytes (512 or a larger power of two).
    fn logical_block_bytes(&self) -> u32;

    /// Which storage this is (for refusing a COW that is its own origin).
    fn identity(&self) -> DeviceIdentity;

    /// Reads `sectors` sectors starting at `sector`.
    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>);

    /// Writes `data` (a whole number of sectors) starting at `sector`.
    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>);

    /// Makes every write completed before this call durable.
    fn flush(&self, done: IoDone<()>);
}

/// Runs work later, outside the caller: how a target completes a request it
/// refuses before any I/O (out of range, invalid snapshot) without breaking
/// the "never inline" rule. The simulator schedules deferred work as events;
/// real devices queue it on a [`CompletionQueue`].
pub trait Defer: Send + Sync + 'static {
    fn defer(&self, work: Box<dyn FnOnce() + Send + 'static>);
}

impl Defer for CompletionQueue {
    fn defer(&self, work: Box<dyn FnOnce() + Send + 'static>) {
        CompletionQueue::defer(self, work);
    }
}

/// The kind of request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    Read,
    Write,
    Flush,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Flush => "flush",
        })
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoErrorKind {
    #[error("beyond the end of the device ({device_sectors} sectors)")]
    OutOfRange { device_sectors: u64 },
    #[error("not a whole number of sectors ({bytes} bytes)")]
    Misaligned { bytes: usize },
    /// A device with logical blocks larger than a sector takes only whole,
    /// aligned blocks (as Linux does for direct I/O to such a device).
    #[error("not whole, aligned logical blocks of {block_bytes} bytes")]
    BlockMisaligned { block_bytes: u32 },
    #[error("device is read-only")]
    ReadOnly,
    #[error("media error")]
    Media,
    #[error("the snapshot is invalid")]
    SnapshotInvalid,
    #[error("the snapshot has overflowed: no space left for a new exception")]
    SnapshotOverflow,
    #[error("the merge failed")]
    MergeFailed,
    #[error("{message}")]
    Os { message: String, raw_os_error: Option<i32> },
}

/// A failed request: what was asked, where, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} of {sectors} sectors at sector {sector} failed: {kind}")]
pub struct IoError {
    pub op: IoOp,
    pub sector: u64,
    pub sectors: u64,
    pub kind: IoErrorKind,
}

impl IoError {
    /// An error for the request `op` over `sectors` sectors from `sector`.
    pub fn new(op: IoOp, sector: u64, sectors: u64, kind: IoErrorKind) -> Self {
        Self { op, sector, sectors, kind }
    }

    /// Wraps an operating-system error.
    pub fn os(op: IoOp, sector: u64, sectors: u64, error: &std::io::Error) -> Self {
        let kind = IoErrorKind::Os { message: error.to_string(), raw_os_error: error.raw_os_error() };
        Self::new(op, sector, sectors, kind)
    }
}

/// Checks a request against a device's bounds; shared by every device so that
/// all of them refuse the same requests with the same errors.
pub fn check_request(op: IoOp, sector: u64, bytes: usize, device_sectors: u64) -> Result<(), IoError> {
    let sectors = (bytes / SECTOR_BYTES) as u64;
    if bytes % SECTOR_BYTES != 0 {
        return Err(IoError::new(op, sector, sectors, IoErrorKind::Misaligned { bytes }));
    }
    match sector.checked_add(sectors) {
        Some(end) if end <= device_sectors => Ok(()),
        _ => Err(IoError::new(op, sector, sectors, IoErrorKind::OutOfRange { device_sectors })),
    }
}

/// Converts a sector number to a byte offset, refusing offsets past `u64`.
pub(crate) fn byte_offset(sector: u64) -> Option<u64> {
    sector.checked_mul(SECTOR_BYTES as u64)
}
