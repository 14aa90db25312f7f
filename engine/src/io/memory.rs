//! An in-memory block device: a RAM disk for tests, benchmarks and tools that
//! work on images held in memory (a decompressed COW, say).
//!
//! Every completed write is immediately durable; the volatile-cache and crash
//! behaviour of real disks is the simulated disk's job, not this one's.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{BlockDevice, CompletionQueue, DeviceIdentity, IoDone, IoError, IoErrorKind, IoOp, SECTOR_BYTES, WriteFlags, check_request};
use crate::sync::{Arc, Mutex};

static NEXT_MEMORY_ID: AtomicU64 = AtomicU64::new(1);

/// A device whose sectors live in a `Vec<u8>`.
#[derive(Debug)]
pub struct MemDevice {
    bytes: Mutex<Vec<u8>>,
    size_sectors: u64,
    logical_block_bytes: u32,
    read_only: bool,
    id: u64,
    queue: Arc<CompletionQueue>,
}

impl MemDevice {
    /// A zero-filled device of `sectors` sectors.
    pub fn zeroed(sectors: u64, queue: &Arc<CompletionQueue>) -> Self {
        Self::from_bytes(vec![0; sectors as usize * SECTOR_BYTES], queue)
    }

    /// A device holding `bytes`; a trailing partial sector is dropped, as a
    /// block device of that length would not expose it.
    pub fn from_bytes(mut bytes: Vec<u8>, queue: &Arc<CompletionQueue>) -> Self {
        bytes.truncate(bytes.len() / SECTOR_BYTES * SECTOR_BYTES);
        let size_sectors = (bytes.len() / SECTOR_BYTES) as u64;
        Self {
            bytes: Mutex::new(bytes),
            size_sectors,
            logical_block_bytes: SECTOR_BYTES as u32,
            read_only: false,
            id: NEXT_MEMORY_ID.fetch_add(1, Ordering::Relaxed),
            queue: Arc::clone(queue),
        }
    }

    /// The same device, reporting `bytes` as its logical block size.
    pub fn with_logical_block_bytes(mut self, bytes: u32) -> Self {
        self.logical_block_bytes = bytes;
        self
    }

    /// The same device, refusing writes.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The contents, without a copy: a tool that loads many images of one
    /// size reuses one buffer instead of zeroing a new one each time.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes.into_inner()
    }

    /// A copy of the device's contents.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.lock().clone()
    }

    /// Whole, aligned logical blocks only: a 4 KiB-block device refuses a
    /// one-sector read, so an engine that reads less than a block is caught.
    fn check_blocks(&self, op: IoOp, sector: u64, bytes: usize) -> Result<(), IoError> {
        let block_sectors = (self.logical_block_bytes as usize / SECTOR_BYTES).max(1) as u64;
        let sectors = (bytes / SECTOR_BYTES) as u64;
        if sector % block_sectors == 0 && sectors % block_sectors == 0 {
            return Ok(());
        }
        Err(IoError::new(op, sector, sectors, IoErrorKind::BlockMisaligned { block_bytes: self.logical_block_bytes }))
    }

    fn do_read(&self, sector: u64, sectors: u32) -> Result<Vec<u8>, IoError> {
        let length = sectors as usize * SECTOR_BYTES;
        check_request(IoOp::Read, sector, length, self.size_sectors)?;
        self.check_blocks(IoOp::Read, sector, length)?;
        let start = sector as usize * SECTOR_BYTES;
        Ok(self.bytes.lock()[start..start + length].to_vec())
    }

    fn do_write(&self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        check_request(IoOp::Write, sector, data.len(), self.size_sectors)?;
        self.check_blocks(IoOp::Write, sector, data.len())?;
        if self.read_only {
            let sectors = (data.len() / SECTOR_BYTES) as u64;
            return Err(IoError::new(IoOp::Write, sector, sectors, IoErrorKind::ReadOnly));
        }
        let start = sector as usize * SECTOR_BYTES;
        self.bytes.lock()[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl BlockDevice for MemDevice {
    fn size_sectors(&self) -> u64 {
        self.size_sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        self.logical_block_bytes
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory(self.id)
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let result = self.do_read(sector, sectors);
        self.queue.defer(move || done(result));
    }

    fn write(&self, sector: u64, data: Vec<u8>, _flags: WriteFlags, done: IoDone<()>) {
        let result = self.do_write(sector, &data);
        self.queue.defer(move || done(result));
    }

    fn flush(&self, done: IoDone<()>) {
        self.queue.defer(move || done(Ok(())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::run_until_done;

    #[test]
    fn requests_outside_the_device_fail_through_their_completion() {
        let queue = CompletionQueue::new();
        let device = MemDevice::zeroed(8, &queue);
        let result = run_until_done(&queue, |done| device.read(7, 2, done)).unwrap();
        let error = result.unwrap_err();
        assert_eq!(error.kind, IoErrorKind::OutOfRange { device_sectors: 8 });
        assert_eq!(error.to_string(), "read of 2 sectors at sector 7 failed: beyond the end of the device (8 sectors)");
        let result = run_until_done(&queue, |done| device.write(0, vec![1; 100], WriteFlags::PLAIN, done)).unwrap();
        assert_eq!(result.unwrap_err().kind, IoErrorKind::Misaligned { bytes: 100 });
    }

    #[test]
    fn a_device_of_large_logical_blocks_takes_only_whole_blocks() {
        let queue = CompletionQueue::new();
        let device = MemDevice::zeroed(64, &queue).with_logical_block_bytes(4096);
        for (sector, sectors) in [(0, 1), (4, 8), (8, 4)] {
            let result = run_until_done(&queue, |done| device.read(sector, sectors, done)).unwrap();
            assert_eq!(result.unwrap_err().kind, IoErrorKind::BlockMisaligned { block_bytes: 4096 }, "read {sector}+{sectors}");
        }
        assert!(run_until_done(&queue, |done| device.read(8, 16, done)).unwrap().is_ok());
    }

    #[test]
    fn completions_never_run_inline() {
        let queue = CompletionQueue::new();
        let device = MemDevice::zeroed(8, &queue);
        let ran = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&ran);
        device.write(0, vec![7; 512], WriteFlags::PLAIN, Box::new(move |r| *flag.lock() = r.is_ok()));
        assert!(!*ran.lock(), "completion ran inside submit");
        queue.run_until_idle();
        assert!(*ran.lock());
        assert_eq!(run_until_done(&queue, |done| device.read(0, 1, done)).unwrap().unwrap(), vec![7; 512]);
    }
}
