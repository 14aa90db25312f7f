//! One recording: the workload's initial disk and script written to the
//! machine's disks, one boot of the guest's `record` job, the log and the
//! final disk kept beside the status lines the kernel printed.

use std::path::{Path, PathBuf};

use super::workload::{Workload, initial_image};
use crate::vm::{self, Disks, Machine};

/// The log disk: sparse, far larger than any workload logs.
const LOG_BYTES: u64 = 256 << 20;

pub fn record(machine: &Machine, dir: &Path, workload: &Workload) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let disks = Disks { dir: dir.to_path_buf() };
    let write = |path: PathBuf, bytes: &[u8]| std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()));
    write(disks.origin(), &initial_image(workload))?;
    write(dir.join("initial.img"), &initial_image(workload))?;
    let log = std::fs::File::create(disks.cow()).map_err(|e| format!("{}: {e}", disks.cow().display()))?;
    log.set_len(LOG_BYTES).map_err(|e| e.to_string())?;
    let mut script = workload.script().into_bytes();
    script.resize(script.len().div_ceil(512).max(1) * 512, 0);
    let script_sectors = script.len() / 512;
    script.resize(script.len().max(1 << 20), 0);
    write(disks.results(), &script)?;
    let args = format!(
        "osect={} csect={} chunk={} store={} w={} wsect={script_sectors} cowdelay={}",
        workload.origin_sectors,
        workload.cow_sectors,
        workload.chunk_sectors,
        workload.store.table_name(),
        workload.id,
        workload.slow_cow_ms
    );
    let boot = vm::boot(machine, &disks, "record", &args, None)?;
    std::fs::write(dir.join("status.txt"), format!("{}\n{}\n", boot.marker("STATUS").unwrap_or(""), boot.marker("LOGSTATUS").unwrap_or("")))
        .map_err(|e| e.to_string())?;
    Ok(())
}
