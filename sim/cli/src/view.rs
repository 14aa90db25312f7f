//! `snapsim view --origin ORIGIN --cow COW --out FILE`: writes the snapshot's view.
//!
//! The file holds what the snapshot device would serve: every origin chunk
//! with an exception read from the COW, every other chunk from the origin.
//! Both devices are opened read-only.

use std::path::PathBuf;

use engine::io::CompletionQueue;
use engine::store::{StoreConfig, StoreKind, load_blocking};
use engine::sync::Arc;
use engine::view::ViewStats;

use super::CliError;
use super::devices::{check_not_same, open_read_only, read_header};
use super::paths::{AtomicOutput, check_not_an_input, check_not_compressed};

/// Options of `snapsim view`.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// The origin device or image (`.gz` images are decompressed in memory).
    #[arg(long)]
    pub origin: PathBuf,
    /// The COW device or image.
    #[arg(long)]
    pub cow: PathBuf,
    /// Where to write the snapshot view (origin-sized).
    #[arg(long)]
    pub out: PathBuf,
    /// The table's chunk size in sectors (the header's overrides it).
    #[arg(long, value_name = "SECTORS")]
    pub chunk_size: Option<u32>,
}

/// Writes the view; returns its figures.
///
/// `--out` is checked against both inputs before anything is opened, and
/// written to a temporary file beside it that is renamed into place only
/// when the whole view was written: a refused or failed `view` leaves an
/// existing `--out` as it was.
pub fn run(args: &ViewArgs) -> Result<ViewStats, CliError> {
    check_not_an_input("--out", &args.out, &[("--origin", &args.origin), ("--cow", &args.cow)])?;
    check_not_compressed("--out", &args.out)?;
    let queue = CompletionQueue::new();
    let origin = open_read_only(&args.origin, &queue)?;
    let cow = Arc::new(open_read_only(&args.cow, &queue)?);
    check_not_same(&args.origin, &origin, &args.cow, &cow)?;
    if read_header(&queue, &cow)?.magic == 0 {
        return Err(CliError::bad_input("the COW has a zero magic: no snapshot has been created on it yet"));
    }
    let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: args.chunk_size, ..StoreConfig::default() };
    let loaded = load_blocking(&queue, cow, engine::io::BlockDevice::logical_block_bytes(&origin), config)?;
    // As merge does: a view would silently drop these exceptions.
    super::live::check_exceptions_fit(&args.cow, &args.origin, engine::io::BlockDevice::size_sectors(&origin), &loaded)?;
    let mut output = AtomicOutput::create("--out", &args.out)?;
    let stats = {
        let mut sink = std::io::BufWriter::new(output.file());
        let stats = engine::view::export(&queue, &origin, &loaded, &mut sink).map_err(|error| CliError::failed(error.to_string()))?;
        std::io::Write::flush(&mut sink).map_err(|error| CliError::failed(format!("writing {}: {error}", args.out.display())))?;
        stats
    };
    output.commit()?;
    Ok(stats)
}
