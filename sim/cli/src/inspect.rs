//! `snapsim inspect COW`: what a COW device holds, as a storage engineer asks it.
//!
//! Prints the header, validity, chunk size, metadata areas, exception count and
//! the usage line exactly as `dmsetup status` shows it for the snapshot. With
//! `--records`, dumps every on-disk record as a JSON line instead (read raw, so
//! that a COW the loader refuses can still be examined); with `--json`, prints
//! the report as one JSON object. Never writes to the device.

use std::path::PathBuf;

use engine::format::{Layout, Record, SNAP_MAGIC};
use engine::io::{BlockDevice, CompletionQueue, run_until_done};
use engine::store::{LoadOutcome, StoreConfig, StoreKind, load_blocking};
use engine::sync::Arc;
use engine::{ChunkSize, SECTOR_BYTES};
use serde::Serialize;

use super::CliError;
use super::devices::{Opened, open_read_only, read_header};

/// Options of `snapsim inspect`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  snapsim inspect cow.img\n  snapsim inspect --json cow.img\n  snapsim inspect --records cow.img | head")]
pub struct InspectArgs {
    /// The COW device or image (a `.gz` image is decompressed in memory).
    pub cow: PathBuf,
    /// The table's chunk size in sectors (the header's overrides it, as in the kernel).
    #[arg(long, value_name = "SECTORS")]
    pub chunk_size: Option<u32>,
    /// Dump every on-disk record as a JSON line instead of the report.
    #[arg(long, conflicts_with = "json")]
    pub records: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One metadata area as found on disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AreaReport {
    pub area: u64,
    pub chunk: u64,
    pub records: u32,
    pub full: bool,
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    pub device_sectors: u64,
    pub logical_block_bytes: u32,
    pub magic: u32,
    pub valid: u32,
    pub version: u32,
    pub header_chunk_sectors: u32,
    /// `valid`, `invalid`, `new` (zero magic) or `error`.
    pub state: &'static str,
    pub error: Option<String>,
    /// Why the load failed, when it did: the exit status follows it.
    #[serde(skip)]
    pub error_kind: Option<super::ErrorKind>,
    pub chunk_sectors: Option<u32>,
    pub exceptions_per_area: Option<u32>,
    pub areas: Vec<AreaReport>,
    pub exceptions: Option<u64>,
    pub runs: Option<usize>,
    pub next_free_chunk: Option<u64>,
    /// The snapshot's `dmsetup status` after the target name: `488/2048 16`, `Invalid`.
    pub status: Option<String>,
}

/// Reads metadata areas raw, up to the first partial one or the device's end,
/// calling `each` with every area and its records.
fn scan_areas(
    queue: &CompletionQueue,
    device: &Opened,
    layout: Layout,
    mut each: impl FnMut(u64, &[Record], bool),
) -> Result<Vec<AreaReport>, CliError> {
    let device_chunks = layout.chunk().chunks_in(device.size_sectors());
    let mut areas = Vec::new();
    for area in 0.. {
        let chunk = layout.area_location(area);
        if chunk >= device_chunks {
            break;
        }
        let sector = layout.chunk().chunk_to_sector(chunk);
        let bytes = run_until_done(queue, |done| device.read(sector, layout.chunk().sectors(), done))
            .ok_or_else(|| CliError::failed("a metadata read never completed"))?
            .map_err(|error| CliError::failed(format!("reading metadata area {area}: {error}")))?;
        let decoded = layout.decode_area(&bytes);
        each(area, &decoded.records, decoded.full);
        areas.push(AreaReport { area, chunk, records: decoded.records.len() as u32, full: decoded.full });
        if !decoded.full {
            break;
        }
    }
    Ok(areas)
}

/// Builds the report; the `Err` case is for failures to read the device at all.
pub fn report(args: &InspectArgs) -> Result<Report, CliError> {
    let queue = CompletionQueue::new();
    let device = Arc::new(open_read_only(&args.cow, &queue)?);
    let header = read_header(&queue, &device)?;
    let mut report = Report {
        path: args.cow.display().to_string(),
        device_sectors: device.size_sectors(),
        logical_block_bytes: device.logical_block_bytes(),
        magic: header.magic,
        valid: header.valid,
        version: header.version,
        header_chunk_sectors: header.chunk_size,
        state: "error",
        error: None,
        error_kind: None,
        chunk_sectors: None,
        exceptions_per_area: None,
        areas: Vec::new(),
        exceptions: None,
        runs: None,
        next_free_chunk: None,
        status: None,
    };
    if header.magic == 0 {
        report.state = "new";
        return Ok(report);
    }
    let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: args.chunk_size, ..StoreConfig::default() };
    let loaded = match load_blocking(&queue, Arc::clone(&device), SECTOR_BYTES as u32, config) {
        Ok(loaded) => loaded,
        Err(error) => {
            report.error = Some(error.to_string());
            report.error_kind = Some(CliError::from(error).kind);
            return Ok(report);
        }
    };
    let layout = loaded.store.layout();
    report.chunk_sectors = Some(layout.chunk().sectors());
    report.exceptions_per_area = Some(layout.exceptions_per_area());
    if loaded.outcome == LoadOutcome::Invalid {
        report.state = "invalid";
        report.status = Some("Invalid".to_string());
        return Ok(report);
    }
    report.state = "valid";
    report.areas = scan_areas(&queue, &device, layout, |_, _, _| {})?;
    report.exceptions = Some(loaded.exceptions.len());
    report.runs = Some(loaded.exceptions.run_count());
    report.next_free_chunk = Some(loaded.store.next_free());
    report.status = Some(loaded.store.usage().to_string());
    Ok(report)
}

/// One record as `--records` prints it.
#[derive(Debug, Clone, Copy, Serialize)]
struct RecordLine {
    area: u64,
    index: usize,
    old_chunk: u64,
    new_chunk: u64,
}

/// Writes every on-disk record as a JSON line: `{"area":0,"index":0,"old_chunk":…,"new_chunk":…}`.
pub fn dump_records(args: &InspectArgs, out: &mut dyn std::io::Write) -> Result<u64, CliError> {
    let queue = CompletionQueue::new();
    let device = open_read_only(&args.cow, &queue)?;
    let header = read_header(&queue, &device)?;
    if header.magic != SNAP_MAGIC {
        return Err(CliError::bad_input(format!("no snapshot header: magic is {:#010x}", header.magic)));
    }
    let block = device.logical_block_bytes();
    let chunk = ChunkSize::new(header.chunk_size, block, block)
        .map_err(|error| CliError::bad_input(format!("invalid chunk size {} in the COW header: {error}", header.chunk_size)))?;
    let mut written = 0u64;
    let mut failure: Option<std::io::Error> = None;
    scan_areas(&queue, &device, Layout::new(chunk), |area, records, _| {
        for (index, record) in records.iter().enumerate() {
            if failure.is_some() {
                return;
            }
            let line = RecordLine { area, index, old_chunk: record.old_chunk, new_chunk: record.new_chunk };
            let text = serde_json::to_string(&line).unwrap_or_default();
            match writeln!(out, "{text}") {
                Ok(()) => written += 1,
                Err(error) => failure = Some(error),
            }
        }
    })?;
    match failure {
        // The reader went away (`| head`): not an error of ours.
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(written),
        Some(error) => Err(CliError::failed(format!("writing records: {error}"))),
        None => Ok(written),
    }
}

/// Renders the report for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "{label:<18}{value}");
    };
    line("COW device:", format!("{} ({} sectors, logical block {} bytes)", report.path, report.device_sectors, report.logical_block_bytes));
    let magic_name = if report.magic == SNAP_MAGIC { " (\"SnAp\")" } else { "" };
    line(
        "header:",
        format!(
            "magic {:#010x}{magic_name}, valid {}, version {}, chunk size {} sectors",
            report.magic, report.valid, report.version, report.header_chunk_sectors
        ),
    );
    match report.state {
        "new" => line("state:", "new: zero magic, no snapshot yet (loading it would write a fresh header)".into()),
        "error" => line("state:", format!("refused: {}", report.error.as_deref().unwrap_or("unknown error"))),
        state => line("state:", state.to_string()),
    }
    if let (Some(chunk), Some(per_area)) = (report.chunk_sectors, report.exceptions_per_area) {
        line("chunk size:", format!("{chunk} sectors ({} bytes), {per_area} records per metadata area", chunk as usize * SECTOR_BYTES));
    }
    if !report.areas.is_empty() {
        line("metadata areas:", format!("{} in use", report.areas.len()));
        for area in &report.areas {
            let fill = if area.full { " (full)" } else { "" };
            line("", format!("area {} at chunk {}: {} records{fill}", area.area, area.chunk, area.records));
        }
    }
    if let (Some(exceptions), Some(runs)) = (report.exceptions, report.runs) {
        line("exceptions:", format!("{exceptions} in {runs} runs of consecutive chunks"));
    }
    if let Some(next_free) = report.next_free_chunk {
        line("next free chunk:", next_free.to_string());
    }
    if let Some(status) = &report.status {
        line("status:", status.clone());
    }
    text
}
