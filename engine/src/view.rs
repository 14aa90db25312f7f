//! The read-only snapshot view: what a snapshot device serves, chunk by chunk.
//!
//! An origin chunk with a completed exception reads from its COW chunk; any
//! other chunk reads from the origin. An invalid snapshot serves nothing (the
//! kernel fails every read with an I/O error). This is the offline view of a
//! quiescent COW, for tools; live I/O goes through the snapshot target.

use crate::exception_table::ExceptionTable;
use crate::io::{BlockDevice, CompletionQueue, IoError, SECTOR_BYTES, run_until_done};
use crate::store::{LoadOutcome, Loaded, StoreError};

/// Why the view could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("the snapshot is invalid: the kernel fails every read of it with an I/O error")]
    Invalid,
    #[error("the COW device is the origin device: a snapshot cannot store its exceptions on its own origin")]
    CowIsOrigin,
    #[error("{device} I/O error: {source}")]
    Io { device: &'static str, source: IoError },
    #[error("an I/O never completed (a completion was lost)")]
    Stalled,
    #[error("writing the view failed: {0}")]
    Sink(#[from] std::io::Error),
}

/// Figures about an exported view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewStats {
    pub chunks: u64,
    pub chunks_from_cow: u64,
}

/// Refuses a COW that is the origin itself (the kernel's snapshot constructor does too).
pub fn check_distinct<O: BlockDevice, C: BlockDevice>(origin: &O, cow: &C) -> Result<(), StoreError> {
    if origin.identity() == cow.identity() { Err(StoreError::CowIsOrigin) } else { Ok(()) }
}

fn read_blocking<D: BlockDevice>(queue: &CompletionQueue, device: &D, name: &'static str, sector: u64, sectors: u32) -> Result<Vec<u8>, ViewError> {
    run_until_done(queue, |done| device.read(sector, sectors, done))
        .ok_or(ViewError::Stalled)?
        .map_err(|source| ViewError::Io { device: name, source })
}

/// Reads origin chunk `chunk` as the snapshot serves it: `sectors` sectors
/// from the chunk's start (fewer than a chunk only at the origin's end).
pub fn read_chunk<O: BlockDevice, C: BlockDevice>(
    queue: &CompletionQueue,
    origin: &O,
    cow: &C,
    exceptions: &ExceptionTable,
    chunk_sectors: u32,
    chunk: u64,
    sectors: u32,
) -> Result<(Vec<u8>, bool), ViewError> {
    match exceptions.lookup(chunk) {
        Some(new_chunk) => {
            let sector = new_chunk * u64::from(chunk_sectors);
            Ok((read_blocking(queue, cow, "COW", sector, sectors)?, true))
        }
        None => Ok((read_blocking(queue, origin, "origin", chunk * u64::from(chunk_sectors), sectors)?, false)),
    }
}

/// Writes the whole snapshot view (origin-sized) to `sink`.
pub fn export<O: BlockDevice, C: BlockDevice>(
    queue: &CompletionQueue,
    origin: &O,
    loaded: &Loaded<C>,
    sink: &mut dyn std::io::Write,
) -> Result<ViewStats, ViewError> {
    check_distinct(origin, loaded.store.cow().as_ref()).map_err(|_| ViewError::CowIsOrigin)?;
    if loaded.outcome == LoadOutcome::Invalid || !loaded.store.is_valid() {
        return Err(ViewError::Invalid);
    }
    let chunk = loaded.store.chunk_size();
    let origin_sectors = origin.size_sectors();
    let mut stats = ViewStats::default();
    let mut sector = 0;
    while sector < origin_sectors {
        let sectors = (origin_sectors - sector).min(u64::from(chunk.sectors())) as u32;
        let chunk_index = chunk.sector_to_chunk(sector);
        let cow = loaded.store.cow().as_ref();
        let (bytes, from_cow) = read_chunk(queue, origin, cow, &loaded.exceptions, chunk.sectors(), chunk_index, sectors)?;
        debug_assert_eq!(bytes.len(), sectors as usize * SECTOR_BYTES);
        sink.write_all(&bytes)?;
        stats.chunks += 1;
        stats.chunks_from_cow += u64::from(from_cow);
        sector += u64::from(sectors);
    }
    Ok(stats)
}
