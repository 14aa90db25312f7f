//! The kernel confirms: sampled crash states loaded, one after another, in
//! one boot of the real kernel, whose status line and snapshot view are
//! compared with the ones our engine gives for the same state.
//!
//! The states lie side by side on the origin disk (written sparsely: a
//! COW is mostly zeros), each as an origin slice then a COW slice; the
//! guest job (`interop/guest/jobs/confirm.sh`) maps each pair with
//! dm-linear, loads a `snapshot` over it, and prints the status and the
//! md5 of the view. The kernel may write to the COW (a new header on a
//! zeroed one): it writes only to this scratch disk.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use engine::LoadOutcome;
use engine::io::{CompletionQueue, MemDevice};
use engine::store::{StoreConfig, load_blocking};
use engine::sync::Arc;
use serde::Serialize;

use super::judge::Sample;
use super::workload::Workload;
use crate::vm::{self, Disks, Machine};

/// One state loaded by both.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub state: String,
    pub engine_status: String,
    pub kernel_status: String,
    pub engine_view_md5: String,
    pub kernel_view_md5: String,
    pub agree: bool,
}

/// Our engine's status line and the md5 of its view ("unreadable" for an
/// invalid snapshot, whose reads fail) of one state.
fn engine_side(workload: &Workload, image: &[u8]) -> Result<(String, String), String> {
    let origin = workload.origin_sectors as usize * 512;
    let chunk = u64::from(workload.chunk_sectors);
    let queue = CompletionQueue::new();
    let device = Arc::new(MemDevice::from_bytes(image[origin..].to_vec(), &queue));
    let config = StoreConfig { kind: workload.store, chunk_sectors: Some(workload.chunk_sectors), ..StoreConfig::default() };
    let loaded = match load_blocking(&queue, Arc::clone(&device), 512, config) {
        Ok(loaded) => loaded,
        Err(error) => return Ok((format!("refused: {error}"), "unreadable".into())),
    };
    if loaded.outcome == LoadOutcome::Invalid {
        return Ok(("Invalid".into(), "unreadable".into()));
    }
    let mut view = Vec::with_capacity(origin);
    for s in 0..workload.origin_sectors {
        let at = match loaded.exceptions.lookup(s / chunk) {
            Some(new_chunk) => origin + ((new_chunk * chunk + s % chunk) * 512) as usize,
            None => s as usize * 512,
        };
        view.extend_from_slice(&image[at..at + 512]);
    }
    Ok((loaded.store.usage().to_string(), md5(&view)?))
}

/// The md5 of `bytes` as `md5sum` prints it (the guest's busybox computes the kernel's).
fn md5(bytes: &[u8]) -> Result<String, String> {
    let mut child = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| format!("cannot run md5sum: {e}"))?;
    child.stdin.take().ok_or("md5sum has no stdin")?.write_all(bytes).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_string).ok_or_else(|| "md5sum printed nothing".into())
}

/// Writes `bytes` at `offset` of `file`, skipping the 4 KiB blocks that are zero.
fn write_sparse(file: &std::fs::File, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    for (i, block) in bytes.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, offset + (i * 4096) as u64)?;
        }
    }
    Ok(())
}

/// Loads every sample of every workload in one boot and compares.
pub fn confirm(machine: &Machine, dir: &Path, samples: &[(&Workload, &Sample)]) -> Result<Vec<Confirmation>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let disks = Disks { dir: dir.to_path_buf() };
    let disk = std::fs::File::create(disks.origin()).map_err(|e| format!("{}: {e}", disks.origin().display()))?;
    let mut manifest = String::new();
    let mut offset_sectors = 0u64;
    for (i, (workload, sample)) in samples.iter().enumerate() {
        debug_assert_eq!(sample.image.len() as u64, (workload.origin_sectors + workload.cow_sectors) * 512, "a sample is a whole data disk");
        write_sparse(&disk, offset_sectors * 512, &sample.image).map_err(|e| format!("{}: {e}", disks.origin().display()))?;
        let store = workload.store.table_name();
        manifest.push_str(&format!("{i} {offset_sectors} {} {} {} {store}\n", workload.origin_sectors, workload.cow_sectors, workload.chunk_sectors));
        offset_sectors += (workload.origin_sectors + workload.cow_sectors).div_ceil(8) * 8;
    }
    disk.set_len(offset_sectors * 512).map_err(|e| e.to_string())?;
    std::fs::write(disks.cow(), vec![0u8; 1 << 20]).map_err(|e| e.to_string())?;
    let mut results = manifest.into_bytes();
    let manifest_sectors = results.len().div_ceil(512).max(1);
    results.resize((manifest_sectors * 512).max(1 << 20), 0);
    std::fs::write(disks.results(), &results).map_err(|e| e.to_string())?;
    let boot = vm::boot(machine, &disks, "confirm", &format!("msect={manifest_sectors}"), None)?;
    let mut out = Vec::new();
    for (i, (workload, sample)) in samples.iter().enumerate() {
        let (engine_status, engine_view_md5) = engine_side(workload, &sample.image)?;
        let line = boot.marker(&format!("S{i}")).unwrap_or("no status line");
        // `0 N snapshot A/B C`: the words after the target name.
        let words: Vec<&str> = line.split_whitespace().collect();
        let kernel_status = if words.len() >= 4 && words[2] == "snapshot" { words[3..].join(" ") } else { line.to_string() };
        let kernel_view_md5 = boot.marker(&format!("V{i}")).unwrap_or("unreadable").to_string();
        // A COW both refuse agrees, whatever words each refusal uses.
        let both_refused = engine_status.starts_with("refused") && kernel_status.starts_with("refused");
        let agree = both_refused || (engine_status == kernel_status && engine_view_md5 == kernel_view_md5);
        out.push(Confirmation { state: sample.name.clone(), engine_status, kernel_status, engine_view_md5, kernel_view_md5, agree });
    }
    Ok(out)
}
