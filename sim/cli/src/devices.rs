//! Opening the devices a command names: files, block devices, or gzip images.
//!
//! A path ending in `.gz` is decompressed into a read-only memory device, so
//! that compressed images (such as the kernel's golden vectors) can be
//! inspected as they are.

use std::io::Read;
use std::path::{Path, PathBuf};

use engine::format::DiskHeader;
use engine::io::{BlockDevice, CompletionQueue, DeviceIdentity, FileDevice, IoDone, MemDevice, OpenMode, WriteFlags, run_until_done};
use engine::sync::Arc;

use super::CliError;
use super::limits::GZ_IMAGE_BYTES_MAX;

/// A device opened by path: a file or block device, or a decompressed image.
#[derive(Debug)]
pub enum Opened {
    File(FileDevice),
    Image(MemDevice),
}

impl BlockDevice for Opened {
    fn size_sectors(&self) -> u64 {
        match self {
            Opened::File(device) => device.size_sectors(),
            Opened::Image(device) => device.size_sectors(),
        }
    }
    fn logical_block_bytes(&self) -> u32 {
        match self {
            Opened::File(device) => device.logical_block_bytes(),
            Opened::Image(device) => device.logical_block_bytes(),
        }
    }
    fn identity(&self) -> DeviceIdentity {
        match self {
            Opened::File(device) => device.identity(),
            Opened::Image(device) => device.identity(),
        }
    }
    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        match self {
            Opened::File(device) => device.read(sector, sectors, done),
            Opened::Image(device) => device.read(sector, sectors, done),
        }
    }
    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        match self {
            Opened::File(device) => device.write(sector, data, flags, done),
            Opened::Image(device) => device.write(sector, data, flags, done),
        }
    }
    fn flush(&self, done: IoDone<()>) {
        match self {
            Opened::File(device) => device.flush(done),
            Opened::Image(device) => device.flush(done),
        }
    }
}

/// Opens `path` read-only.
pub fn open_read_only(path: &Path, queue: &Arc<CompletionQueue>) -> Result<Opened, CliError> {
    let fail = |error: std::io::Error| CliError::bad_input(format!("cannot open {}: {error}", path.display()));
    check_device_path(path)?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        let file = std::fs::File::open(path).map_err(fail)?;
        let mut bytes = Vec::new();
        // A gzip bomb stops at the bound instead of filling memory.
        flate2::read::GzDecoder::new(file)
            .take(GZ_IMAGE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::bad_input(format!("{}: not a readable gzip image: {e}", path.display())))?;
        if bytes.len() as u64 > GZ_IMAGE_BYTES_MAX {
            return Err(CliError::bad_input(format!(
                "{}: decompresses to more than {GZ_IMAGE_BYTES_MAX} bytes; decompress it to a file and name that instead",
                path.display()
            )));
        }
        return Ok(Opened::Image(MemDevice::from_bytes(bytes, queue).read_only()));
    }
    Ok(Opened::File(FileDevice::open(path, OpenMode::ReadOnly, queue).map_err(fail)?))
}

/// Refuses a path that is neither a regular file nor a block device before
/// opening it: a directory, and a FIFO or character device, whose open or
/// reads could block forever or never end. A missing path is left to the
/// open, which names it.
pub fn check_device_path(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(CliError::bad_input(format!("{} is a directory, not a device or image", path.display())));
    }
    if !kind.is_file() && !kind.is_block_device() {
        return Err(CliError::bad_input(format!("{} is neither a regular file nor a block device", path.display())));
    }
    Ok(())
}

/// Refuses to use one path as both origin and COW, whether named twice or
/// reached through a link (same device and inode).
pub fn check_not_same(origin_path: &Path, origin: &Opened, cow_path: &Path, cow: &Opened) -> Result<(), CliError> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    if canonical(origin_path) == canonical(cow_path) {
        return Err(engine::StoreError::CowIsOrigin.into());
    }
    engine::view::check_distinct(origin, cow)?;
    Ok(())
}

/// Reads the first sector and decodes the header fields, unvalidated.
pub fn read_header(queue: &CompletionQueue, device: &Opened) -> Result<DiskHeader, CliError> {
    if device.size_sectors() == 0 {
        return Err(CliError::bad_input("the COW device is empty (0 sectors)"));
    }
    let bytes = run_until_done(queue, |done| device.read(0, 1, done))
        .ok_or_else(|| CliError::failed("reading the COW header never completed"))?
        .map_err(|error| CliError::failed(format!("reading the COW header: {error}")))?;
    Ok(DiskHeader::decode(&bytes))
}
