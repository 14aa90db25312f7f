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
pub fn run(args: &ViewArgs) -> Result<ViewStats, CliError> {
    let queue = CompletionQueue::new();
    let origin = open_read_only(&args.origin, &queue)?;
    let cow = Arc::new(open_read_only(&args.cow, &queue)?);
    check_not_same(&args.origin, &origin, &args.cow, &cow)?;
    if read_header(&queue, &cow)?.magic == 0 {
        return Err(CliError::new("the COW has a zero magic: no snapshot has been created on it yet"));
    }
    let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: args.chunk_size, ..StoreConfig::default() };
    let loaded = load_blocking(&queue, cow, engine::io::BlockDevice::logical_block_bytes(&origin), config)?;
    let file = std::fs::File::create(&args.out)
        .map_err(|error| CliError::new(format!("cannot create {}: {error}", args.out.display())))?;
    let mut sink = std::io::BufWriter::new(file);
    let stats = engine::view::export(&queue, &origin, &loaded, &mut sink).map_err(|error| CliError::new(error.to_string()))?;
    std::io::Write::flush(&mut sink).map_err(|error| CliError::new(format!("writing {}: {error}", args.out.display())))?;
    Ok(stats)
}
