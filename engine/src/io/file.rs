//! The production block device: a regular file or a block device node.
//!
//! Reads and writes are positional (`pread`/`pwrite`); `preflush`, `fua` and
//! flush are all mapped to `fdatasync`, which is how user space asks the
//! kernel for exactly those guarantees. The I/O happens when a request is
//! submitted and its completion is queued on a [`CompletionQueue`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{BlockDevice, CompletionQueue, DeviceIdentity, IoDone, IoError, IoErrorKind, IoOp, SECTOR_BYTES, WriteFlags, byte_offset, check_request};
use crate::sync::Arc;

/// Whether a [`FileDevice`] may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    ReadWrite,
}

/// A file or block device opened for snapshot I/O.
#[derive(Debug)]
pub struct FileDevice {
    path: PathBuf,
    file: File,
    mode: OpenMode,
    size_sectors: u64,
    logical_block_bytes: u32,
    identity: DeviceIdentity,
    queue: Arc<CompletionQueue>,
}

impl FileDevice {
    /// Opens `path`, queueing completions on `queue`. The size is the file's
    /// length (or the block device's capacity) rounded down to whole sectors.
    pub fn open(path: &Path, mode: OpenMode, queue: &Arc<CompletionQueue>) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(mode == OpenMode::ReadWrite).open(path)?;
        let metadata = file.metadata()?;
        let (size_bytes, logical_block_bytes, identity) = if metadata.file_type().is_block_device() {
            use std::io::{Seek, SeekFrom};
            let mut handle = &file;
            let size = handle.seek(SeekFrom::End(0))?;
            let block = rustix::fs::ioctl_blksszget(&file).map_err(std::io::Error::from)?;
            (size, block, DeviceIdentity::Block { rdev: metadata.rdev() })
        } else {
            let identity = DeviceIdentity::File { dev: metadata.dev(), ino: metadata.ino() };
            (metadata.len(), SECTOR_BYTES as u32, identity)
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            mode,
            size_sectors: size_bytes / SECTOR_BYTES as u64,
            logical_block_bytes,
            identity,
            queue: Arc::clone(queue),
        })
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sync(&self, op: IoOp, sector: u64, sectors: u64) -> Result<(), IoError> {
        self.file.sync_data().map_err(|error| IoError::os(op, sector, sectors, &error))
    }

    fn do_read(&self, sector: u64, sectors: u32) -> Result<Vec<u8>, IoError> {
        let bytes = sectors as usize * SECTOR_BYTES;
        check_request(IoOp::Read, sector, bytes, self.size_sectors)?;
        let mut buffer = vec![0u8; bytes];
        let offset = byte_offset(sector).unwrap_or(u64::MAX);
        self.file.read_exact_at(&mut buffer, offset).map_err(|error| IoError::os(IoOp::Read, sector, u64::from(sectors), &error))?;
        Ok(buffer)
    }

    fn do_write(&self, sector: u64, data: &[u8], flags: WriteFlags) -> Result<(), IoError> {
        check_request(IoOp::Write, sector, data.len(), self.size_sectors)?;
        let sectors = (data.len() / SECTOR_BYTES) as u64;
        if self.mode == OpenMode::ReadOnly {
            return Err(IoError::new(IoOp::Write, sector, sectors, IoErrorKind::ReadOnly));
        }
        if flags.preflush {
            self.sync(IoOp::Write, sector, sectors)?;
        }
        let offset = byte_offset(sector).unwrap_or(u64::MAX);
        self.file.write_all_at(data, offset).map_err(|error| IoError::os(IoOp::Write, sector, sectors, &error))?;
        if flags.fua {
            self.sync(IoOp::Write, sector, sectors)?;
        }
        Ok(())
    }
}

impl BlockDevice for FileDevice {
    fn size_sectors(&self) -> u64 {
        self.size_sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        self.logical_block_bytes
    }

    fn identity(&self) -> DeviceIdentity {
        self.identity
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let result = self.do_read(sector, sectors);
        self.queue.defer(move || done(result));
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let result = self.do_write(sector, &data, flags);
        self.queue.defer(move || done(result));
    }

    fn flush(&self, done: IoDone<()>) {
        let result = match self.mode {
            OpenMode::ReadOnly => Ok(()),
            OpenMode::ReadWrite => self.sync(IoOp::Flush, 0, 0),
        };
        self.queue.defer(move || done(result));
    }
}
