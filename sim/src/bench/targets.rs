//! Target figures: the cost of breaking sharing, and memory under a burst.
//!
//! 1. **First-write throughput** on real files, 64 KiB chunks: every chunk of
//!    a 256 MiB origin is overwritten once through the snapshot-origin target
//!    (each write copies the old chunk to the COW, commits its exception, then
//!    writes the origin). Compared, in the same run, with a plain copy of the
//!    same bytes from the origin to another file through the same device
//!    layer. The ratio is snapshot throughput / plain copy (1.0 = free).
//! 2. **Burst memory**: 16 snapshots with 4 KiB chunks, bursts of origin chunk
//!    writes of growing size, on discard devices (so that only the engine's
//!    own memory is counted). The writer behaves like a kernel writer thread:
//!    when the COW throttle holds its write, it waits (runs completions)
//!    before writing more. Peak memory is sampled after every step; with the
//!    throttle it stays flat as the burst grows, without it it grows.

use std::path::Path;

use engine::io::{BlockDevice, CompletionQueue, DeviceIdentity, FileDevice, IoDone, OpenMode, SECTOR_BYTES, WriteFlags, run_until_done};
use engine::store::StoreConfig;
use engine::sync::Arc;
use engine::targets::OriginConfig;
use engine::testing::Rig;

use super::{MIB, MemoryProbe};

fn wait(queue: &CompletionQueue, start: impl FnOnce(IoDone<()>)) {
    run_until_done(queue, start).expect("completed").expect("I/O succeeded");
}

fn plain_copy(dir: &Path, origin_bytes: u64, chunk_bytes: u64) -> f64 {
    let queue = CompletionQueue::new();
    let source = FileDevice::open(&dir.join("origin"), OpenMode::ReadOnly, &queue).unwrap();
    let target = FileDevice::open(&dir.join("copy"), OpenMode::ReadWrite, &queue).unwrap();
    let sectors = (chunk_bytes / SECTOR_BYTES as u64) as u32;
    let start = std::time::Instant::now();
    for chunk in 0..origin_bytes / chunk_bytes {
        let sector = chunk * u64::from(sectors);
        let data = run_until_done(&queue, |done| source.read(sector, sectors, done)).unwrap().unwrap();
        wait(&queue, |done| target.write(sector, data, WriteFlags::PLAIN, done));
    }
    wait(&queue, |done| target.flush(done));
    start.elapsed().as_secs_f64()
}

fn snapshot_first_writes(dir: &Path, origin_bytes: u64, chunk_bytes: u64) -> (f64, String) {
    let queue = CompletionQueue::new();
    std::fs::write(dir.join("cow"), vec![0u8; (origin_bytes + 64 * chunk_bytes) as usize]).unwrap();
    let origin_dev = Arc::new(FileDevice::open(&dir.join("origin"), OpenMode::ReadWrite, &queue).unwrap());
    let cow = Arc::new(FileDevice::open(&dir.join("cow"), OpenMode::ReadWrite, &queue).unwrap());
    let mut rig = Rig::new(&queue, origin_dev, OriginConfig::default());
    let sectors = (chunk_bytes / SECTOR_BYTES as u64) as u32;
    let config = StoreConfig { chunk_sectors: Some(sectors), ..StoreConfig::default() };
    let k = rig.add_snapshot(cow, config).expect("the snapshot loads");
    let (origin, snapshot) = (Arc::clone(&rig.origin), Arc::clone(&rig.snapshots[k]));
    let device = rig.origin_device();
    let chunks = origin_bytes / chunk_bytes;
    let mut buffers: Vec<Vec<u8>> = (0..chunks).map(|_| vec![0x5au8; chunk_bytes as usize]).collect();
    let start = std::time::Instant::now();
    for chunk in 0..chunks {
        let data = buffers.pop().expect("one buffer per chunk");
        device.write(chunk * u64::from(sectors), data, WriteFlags::PLAIN, Box::new(|r| r.expect("write")));
        while origin.throttled_writes() > 0 {
            queue.run_one();
        }
    }
    queue.run_until_idle();
    wait(&queue, |done| origin.device().flush(done));
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(snapshot.exception_count(), origin_bytes / chunk_bytes);
    (seconds, snapshot.status())
}

/// A device that stores nothing: writes succeed, reads return zeros.
struct Discard {
    sectors: u64,
    queue: Arc<CompletionQueue>,
    id: u64,
}

impl BlockDevice for Discard {
    fn size_sectors(&self) -> u64 {
        self.sectors
    }
    fn logical_block_bytes(&self) -> u32 {
        512
    }
    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory(u64::MAX - self.id)
    }
    fn read(&self, _sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let data = vec![0; sectors as usize * SECTOR_BYTES];
        self.queue.defer(move || done(Ok(data)));
    }
    fn write(&self, _sector: u64, _data: Vec<u8>, _flags: WriteFlags, done: IoDone<()>) {
        self.queue.defer(move || done(Ok(())));
    }
    fn flush(&self, done: IoDone<()>) {
        self.queue.defer(move || done(Ok(())));
    }
}

/// Peak bytes allocated during a burst of `writes` origin chunk writes under 16 snapshots.
fn burst_peak(memory: MemoryProbe, writes: u64, cow_threshold: usize) -> (usize, usize) {
    let queue = CompletionQueue::new();
    let chunk_sectors = 8u64;
    let discard = |id, sectors| Arc::new(Discard { sectors, queue: Arc::clone(&queue), id });
    let mut rig = Rig::new(&queue, discard(0, writes * chunk_sectors), OriginConfig { cow_threshold, ..OriginConfig::default() });
    let config = StoreConfig { chunk_sectors: Some(chunk_sectors as u32), ..StoreConfig::default() };
    for id in 1..=16 {
        rig.add_snapshot(discard(id, (writes + writes / 256 + 16) * chunk_sectors), config).expect("the snapshot loads");
    }
    let (origin, snapshots) = (Arc::clone(&rig.origin), rig.snapshots.clone());
    let device = rig.origin_device();
    let baseline = memory.allocated();
    let mut peak = 0usize;
    let mut sample = || peak = peak.max(memory.allocated().saturating_sub(baseline));
    for chunk in 0..writes {
        device.write(chunk * chunk_sectors, vec![1u8; 4096], WriteFlags::PLAIN, Box::new(|r| r.expect("write")));
        sample();
        // A kernel writer sleeps in wait_for_in_progress; this one runs completions.
        while origin.throttled_writes() > 0 {
            queue.run_one();
            sample();
        }
    }
    while queue.run_one() {
        sample();
    }
    let max_copies = snapshots.iter().map(|s| s.copies_in_flight().1).max().unwrap_or(0);
    assert!(snapshots.iter().all(|s| s.exception_count() == writes && s.is_valid()));
    (peak, max_copies)
}

/// First-write throughput against a plain copy, files under `dir`.
pub fn print_throughput(dir: &Path) {
    let origin_bytes = 256 * MIB;
    let chunk_bytes = 64 * 1024;
    super::say!("first-write throughput: {} MiB origin, 64 KiB chunks, files under {}", origin_bytes / MIB, dir.display());
    super::say!("{:<6} {:>14} {:>14} {:>10}   status", "run", "plain MiB/s", "snapshot MiB/s", "ratio");
    let mut ratios = Vec::new();
    // Run 0 warms the page cache and is not counted.
    for run in 0..=5 {
        std::fs::write(dir.join("origin"), vec![0xa5u8; origin_bytes as usize]).unwrap();
        std::fs::write(dir.join("copy"), vec![0u8; origin_bytes as usize]).unwrap();
        let plain = plain_copy(dir, origin_bytes, chunk_bytes);
        let (snapshot, status) = snapshot_first_writes(dir, origin_bytes, chunk_bytes);
        let mib = (origin_bytes / MIB) as f64;
        let label = if run == 0 { "warm".to_string() } else { run.to_string() };
        if run > 0 {
            ratios.push(plain / snapshot);
        }
        super::say!("{label:<6} {:>14.0} {:>14.0} {:>10.2}   {status}", mib / plain, mib / snapshot, plain / snapshot);
    }
    ratios.sort_by(f64::total_cmp);
    super::say!("median ratio of 5 (snapshot throughput / plain copy): {:.2}", ratios[ratios.len() / 2]);
    super::record("targets.first_write_slowdown_median", ratios[ratios.len() / 2]);
    super::say!("(a first write copies the old chunk to the COW and writes the new one: twice the bytes of the plain copy)");
}

/// Peak memory of write bursts under 16 snapshots, with and without the throttle.
pub fn print_burst(memory: MemoryProbe) {
    super::say!("burst memory: 16 snapshots, 4 KiB chunks, discard devices");
    super::say!("{:<12} {:>10} {:>14} {:>16}", "threshold", "writes", "peak MiB", "copies in flight");
    for (threshold, bursts) in
        [(engine::targets::DEFAULT_COW_THRESHOLD, &[25_000u64, 50_000, 100_000, 200_000][..]), (0, &[2_500, 5_000, 10_000][..])]
    {
        for &writes in bursts {
            let (peak, copies) = burst_peak(memory, writes, threshold);
            let name = if threshold == 0 { "unlimited".to_string() } else { threshold.to_string() };
            super::say!("{name:<12} {writes:>10} {:>14.1} {copies:>16}", peak as f64 / MIB as f64);
            super::record(&format!("targets.burst.threshold_{name}.writes_{writes}.peak_mib"), peak as f64 / MIB as f64);
        }
    }
}
