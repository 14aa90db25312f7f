//! The bounds every input is checked against before anything is allocated
//! or written, so that no file or flag can make a verb panic, hang or
//! exhaust memory. README's "Exit status and input bounds" lists them.

/// A `.gz` image is decompressed into memory up to this size (1 GiB).
pub const GZ_IMAGE_BYTES_MAX: u64 = 1 << 30;
/// A workload file is read whole up to this size (64 MiB).
pub const WORKLOAD_FILE_BYTES_MAX: u64 = 64 << 20;
/// Requests in one workload.
pub const WORKLOAD_REQUESTS_MAX: usize = 1 << 20;
/// Sectors one workload write may carry (32 MiB): its data is built in memory.
pub const WRITE_SECTORS_MAX: u64 = 1 << 16;
/// A scenario or crash-trace file is read whole up to this size (4 MiB).
pub const SCRIPT_FILE_BYTES_MAX: u64 = 4 << 20;

/// Reads `path` as text, refusing a file larger than `bytes_max` before
/// reading it (a directory, a device or a FIFO is refused too).
pub fn read_text_bounded(path: &std::path::Path, bytes_max: u64) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > bytes_max {
        return Err(format!("{}: {} bytes, more than the {bytes_max} this input may have", path.display(), meta.len()));
    }
    let mut text = String::new();
    // The file may grow after the check: read one byte past the bound at most.
    file.take(bytes_max + 1).read_to_string(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > bytes_max {
        return Err(format!("{}: more than the {bytes_max} bytes this input may have", path.display()));
    }
    Ok(text)
}
