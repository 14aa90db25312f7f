//! Crashes: crash images and the reboot on them, crash points, and judging a crash state on a fresh machine.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use engine::zoo::Mutations;
use model::{Event, Invariant, Oracle, Target, UserFlags, Violation};
use rand::RngExt;

use super::World;
use super::data::stale_sector;
use crate::disk::{FaultRates, Image, SimDisk};
use crate::world::guide::Decision;
use crate::world::knobs::Knobs;
use crate::world::observer::{Observer, lock};
use crate::world::script::ScriptOp;

/// How a crash state was judged, when no invariant broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Reloaded and checked.
    Checked,
    /// Kernel behaviour K3 (a stale area 0 under a fresh header): allowed
    /// and counted, not judged further; `--strict` makes it an I4 failure.
    AllowedK3,
}

/// Everything needed to judge one crash state later, taken at a crash point.
#[derive(Debug, Clone)]
pub struct CrashPoint {
    seed: u64,
    knobs: Knobs,
    oracle: Oracle,
    durable_cows: Vec<Option<Image>>,
    merging: Option<usize>,
    epoch: u64,
    mutations: Mutations,
    kernel_patches: engine::store::KernelPatches,
    /// Each snapshot's completed (committed) exceptions at the crash point.
    committed: Vec<u64>,
    /// What the oracle reads in `durable_cows`: read once, for every state.
    durable_decoded: Arc<OnceLock<super::DurableDecoded>>,
}

impl CrashPoint {
    /// The boot of the run the point is in (a reboot, crash or reload, starts the next).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The oracle's reading of each durable COW image (I4, I5), read once.
    fn durable_decoded(&self) -> super::DurableDecoded {
        let read =
            || self.durable_cows.iter().enumerate().map(|(k, durable)| durable.as_ref().map(|image| self.oracle.check_cow(k, image))).collect();
        Arc::clone(self.durable_decoded.get_or_init(read))
    }

    /// A digest of everything besides the images that a crash state here
    /// is judged by: the model's obligations, each COW's durable image
    /// (whose records must survive), the merge, the exceptions committed.
    /// Two points with one key judge an image alike.
    pub fn judgement_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut state = model::digest::Digest::default();
        self.oracle.obligations_digest().hash(&mut state);
        for durable in &self.durable_cows {
            match durable {
                Some(image) => image.overlay().for_each(|(sector, bytes)| (sector, bytes).hash(&mut state)),
                None => u64::MAX.hash(&mut state),
            }
        }
        (self.merging, self.epoch, &self.committed).hash(&mut state);
        state.finish()
    }

    /// Whether `sector` of disk `disk` (0 the origin, `k + 1` COW `k`) is
    /// metadata a reload reads: a COW's header sector (the first of its
    /// header chunk, the only one the loader and the model read) or a
    /// sector of one of its metadata areas. Every other sector is data, seen
    /// only through the values a read returns, or never read at all (the
    /// rest of the header chunk).
    /// Where a write of `sectors` sectors at `sector` of disk `disk` lands,
    /// in words: `sectors 16+8` of the origin; a COW's `header`, `area 2`
    /// or `chunk 5, data`.
    pub fn place(&self, disk: usize, sector: u64, sectors: u64) -> String {
        if disk == 0 {
            return format!("sectors {sector}+{sectors}");
        }
        let chunk_sectors = self.knobs.snapshot_chunk_sectors(disk - 1);
        let layout = engine::format::Layout::new(engine::ChunkSize::from_sectors(chunk_sectors));
        let chunk = sector / u64::from(chunk_sectors);
        if chunk == 0 {
            "header".to_string()
        } else if layout.is_metadata_chunk(chunk) {
            format!("area {}", (chunk - 1) / layout.stride())
        } else {
            format!("chunk {chunk}, data")
        }
    }

    pub fn is_metadata(&self, disk: usize, sector: u64) -> bool {
        disk > 0 && {
            let geometry = self.oracle.geometry(disk - 1);
            let chunk = sector / u64::from(geometry.chunk_sectors);
            sector == 0 || (chunk != 0 && geometry.is_metadata(chunk))
        }
    }
}

impl World {
    /// A crash: every disk becomes a crash image; the engine is rebuilt from them.
    pub(super) fn crash_seeded(&mut self) {
        self.note_crash_marks();
        let images: Vec<Image> = match self.guide.as_mut().map(|guide| guide.front().cloned()) {
            // Following a schedule: its crash keeps what it says (clamped to
            // the values a sector now has), every other sector its durable value.
            Some(front) => {
                let keep = match front {
                    Some(Decision::Crash { keep }) => {
                        self.guide.as_mut().map(VecDeque::pop_front);
                        keep
                    }
                    _ => Vec::new(),
                };
                crash_images(&self.engine.disks, |disk, sector, n| {
                    keep.iter().find(|(d, s, _)| *d == disk && *s == sector).map_or(0, |(_, _, p)| (*p).min(n - 1))
                })
            }
            None => {
                let crash = &mut self.crash;
                let mut keep = Vec::new();
                let images = crash_images(&self.engine.disks, |disk, sector, n| {
                    let pick = crash.random_range(0..n);
                    if pick != 0 {
                        keep.push((disk, sector, pick));
                    }
                    pick
                });
                if let Some(recorded) = &mut self.recorded {
                    recorded.push(Decision::Crash { keep });
                }
                images
            }
        };
        if self.timeline.is_some() {
            // Taken before the recorder's collect: the point is the moment the power went.
            let point = self.point_now().ok();
            let boot = self.timeline_boot().unwrap_or(0);
            self.last_crash = point.map(|point| {
                let disks = self.engine.disks.clone();
                Box::new(super::LastCrash { point, disks, images: images.clone(), boot, step: self.stats.steps })
            });
        }
        if let Some(recorder) = &mut self.timeline {
            recorder.collect(&self.engine.disks);
            recorder.crash_fates(&crate::disk::fates(&self.engine.disks, &images));
        }
        self.reboot(images, false);
    }

    /// Counts the crash situations this moment is in (the world's coverage
    /// marks): which kinds of write a crash now may keep or lose.
    fn note_crash_marks(&self) {
        use crate::marks::{WorldMark, hit};
        if self.merging.is_some() {
            hit(WorldMark::CrashDuringMerge);
        }
        if !self.engine.disks[0].non_durable_sectors().is_empty() {
            hit(WorldMark::CrashWithOriginWritesNotDurable);
        }
        let (mut header, mut area, mut zeroing, mut data) = (false, false, false, false);
        for (k, disk) in self.engine.disks[1..].iter().enumerate() {
            let chunk_sectors = u64::from(self.knobs.snapshot_chunk_sectors(k));
            let layout = engine::format::Layout::new(engine::ChunkSize::from_sectors(chunk_sectors as u32));
            for (sector, zero) in disk.non_durable_sectors() {
                let chunk = sector / chunk_sectors;
                if chunk == 0 {
                    header = true;
                } else if layout.is_metadata_chunk(chunk) {
                    area = true;
                    zeroing |= zero && chunk > 1;
                } else {
                    data = true;
                }
            }
        }
        for (reached, mark) in [
            (header, WorldMark::CrashWithHeaderWriteNotDurable),
            (area, WorldMark::CrashWithAreaWriteNotDurable),
            (zeroing, WorldMark::CrashWhileNextAreaZeroing),
            (data, WorldMark::CrashWithCopiesNotDurable),
        ] {
            if reached {
                hit(mark);
            }
        }
    }

    /// Stops the machine and boots it on `images`.
    pub(super) fn reboot(&mut self, images: Vec<Image>, clean: bool) {
        let durable = self.engine.disks[1..].iter().map(|disk| Some(disk.durable())).collect();
        self.reboot_keeping(images, durable, clean);
    }

    /// Stops the machine and boots it on `images`; every record of
    /// `must_keep` (one COW image per snapshot) must load again. A `clean`
    /// reboot (a scripted reload) loses nothing: the oracle is told so.
    fn reboot_keeping(&mut self, images: Vec<Image>, must_keep: Vec<Option<Image>>, clean: bool) {
        self.stats.crashes += 1;
        if let Some(recorder) = &mut self.timeline {
            recorder.collect(&self.engine.disks);
            recorder.reboot(if clean { "clean reload" } else { "crash" });
        }
        self.report_status();
        self.emit(if clean { Event::CleanReload } else { Event::Crash });
        self.durable_cows = must_keep;
        self.durable_decoded = None;
        {
            let mut observer = lock(&self.shared);
            if observer.traces() {
                for image in &images {
                    observer.mix(image.delta_hash());
                }
            }
            // The operations in flight died with the machine.
            observer.counters.in_flight = 0;
        }
        lock(&self.engine.deferred.0).clear();
        self.epoch += 1;
        self.boot_on(images);
    }

    /// What a crash right now would need judging: the oracle as the crash
    /// leaves it, and the durable COW images.
    pub fn crash_point(&self) -> Result<CrashPoint, Violation> {
        self.note_crash_marks();
        self.point_now()
    }

    /// [`World::crash_point`] without counting the moment's coverage marks
    /// (a seeded crash has counted them already).
    fn point_now(&self) -> Result<CrashPoint, Violation> {
        let mut oracle = lock(&self.shared).oracle.clone();
        for status in self.statuses(false) {
            oracle.apply(&status)?;
        }
        oracle.apply(&Event::Crash)?;
        Ok(CrashPoint {
            seed: self.seed,
            knobs: self.knobs.clone(),
            oracle,
            durable_cows: self.engine.disks[1..].iter().map(|d| Some(d.durable())).collect(),
            merging: self.merging.as_ref().map(|(k, _)| *k),
            epoch: self.epoch + 1,
            mutations: self.mutations,
            kernel_patches: self.kernel_patches,
            committed: self.engine.snapshots.iter().map(|d| d.snapshot().exception_count()).collect(),
            durable_decoded: Arc::default(),
        })
    }

    /// Judges one crash state: boots on `images` as a reboot would, checks
    /// the load (I4–I6), makes one more exception and reloads cleanly (I6,
    /// I7), lets a merge in progress finish (I10), and reads everything back
    /// (I1–I3).
    ///
    /// A violation's events are the story up to the crash, in the request
    /// numbers the cause names, then what the judge did after it, each
    /// marked so (the boot after a crash numbers its requests afresh).
    pub fn check_crash_state(point: &CrashPoint, images: Vec<Image>) -> Result<Judged, Violation> {
        Self::judge_crash_state(point, images, None).map_err(|violation| Self::with_story(point, violation))
    }

    /// [`World::check_crash_state`], with the final read-back judged against
    /// the plan's reference where the state fits it (see `incremental.rs`):
    /// the same verdict, for the cost of what the state changed.
    pub fn check_crash_state_incrementally(point: &CrashPoint, images: Vec<Image>, plan: &mut super::Incremental) -> Result<Judged, Violation> {
        Self::judge_crash_state(point, images, Some(plan)).map_err(|violation| Self::with_story(point, violation))
    }

    fn with_story(point: &CrashPoint, mut violation: Violation) -> Violation {
        let after = violation.events.iter().map(|event| format!("after the crash: {event}"));
        violation.events = point.oracle.story().into_iter().chain(after).collect();
        violation
    }

    fn judge_crash_state(point: &CrashPoint, images: Vec<Image>, plan: Option<&mut super::Incremental>) -> Result<Judged, Violation> {
        if let Some(k) = Self::stale_area_zero_revived(point, &images) {
            // Only before the first commit: its PREFLUSH makes the zeroing durable.
            if point.committed.get(k).is_some_and(|&n| n > 0) {
                let message = format!(
                    "snapshot {k}'s COW shows a stale area 0 although {} exception(s) were committed: the first commit's PREFLUSH did not make the zeroing of area 0 durable",
                    point.committed[k]
                );
                return Err(Violation::new(Invariant::I4MetadataWellFormed, message));
            }
            let message = format!(
                "snapshot {k}'s COW holds a valid header over a stale area 0 (kernel behaviour K3: a new snapshot's header and the zeroing of its first area are plain writes, and a crash before the first commit kept the one and lost the other)"
            );
            return if point.oracle.strict() { Err(Violation::new(Invariant::I4MetadataWellFormed, message)) } else { Ok(Judged::AllowedK3) };
        }
        let mut knobs = point.knobs.clone();
        knobs.faults = FaultRates::default();
        knobs.crashes = 0;
        let mut oracle = point.oracle.clone();
        oracle.forget_story();
        let mut world = Self::unbooted(point.seed, "-after-crash", knobs, Observer::quiet(oracle), (point.mutations, point.kernel_patches));
        world.durable_cows = point.durable_cows.clone();
        world.durable_decoded = Some(point.durable_decoded());
        world.epoch = point.epoch;
        world.merging = point.merging.map(|k| (k, Arc::default()));
        world.read_back_at_end = false;
        if plan.is_some() {
            world.note_writes();
        }
        let loaded_from: Vec<Option<Image>> = images[1..].iter().cloned().map(Some).collect();
        world.boot_on(images);
        if !world.failed() && world.merging.is_none() {
            world.script = Some(world.probe().into_iter().collect());
            world.main_loop(1_000_000, &mut |_| true);
            if !world.failed() {
                let images = world.engine.disks.iter().map(|d| d.cached()).collect();
                world.reboot_keeping(images, loaded_from, false);
            }
        }
        if !world.failed() {
            world.script = Some(VecDeque::new());
            world.read_back_at_end = plan.is_none();
            world.main_loop(1_000_000, &mut |_| true);
            if let Some(plan) = plan.filter(|_| !world.failed()) {
                world.read_back_against(plan);
            }
        }
        let failure = lock(&world.shared).failure.clone();
        failure.map_or(Ok(Judged::Checked), |f| Err(f.violation))
    }

    /// K3: the snapshot whose COW image, over a reused device whose area 0
    /// was never wiped, has a valid header while some sector of area 0
    /// still holds the old snapshot's records (the zeroing was lost).
    fn stale_area_zero_revived(point: &CrashPoint, images: &[Image]) -> Option<usize> {
        if !(point.knobs.stale_cow && point.knobs.stale_area_zero) {
            return None;
        }
        let stale = stale_sector();
        (0..point.knobs.snapshots).find(|&k| {
            let image = &images[k + 1];
            let chunk = u64::from(point.knobs.snapshot_chunk_sectors(k));
            let header = image.sector(0);
            let header_written = header[..4] == engine::format::SNAP_MAGIC.to_le_bytes() && header[4..8] == 1u32.to_le_bytes();
            header_written && (chunk..2 * chunk).any(|sector| image.sector(sector) == &stale[..])
        })
    }

    /// After a reload: one origin write to a chunk no valid snapshot has
    /// copied yet, so that the store allocates and commits once more.
    fn probe(&self) -> Option<ScriptOp> {
        let chunk_sectors = u64::from(self.knobs.chunk_sectors);
        let copied = |chunk: u64| {
            self.engine.snapshots.iter().filter(|d| d.snapshot().is_valid()).any(|d| {
                let small = u64::from(d.snapshot().chunk_size().sectors());
                (chunk * chunk_sectors / small..(chunk + 1) * chunk_sectors / small).any(|c| d.snapshot().lookup(c).is_some())
            })
        };
        let chunk = (0..self.knobs.origin_sectors().div_ceil(chunk_sectors)).find(|&c| !copied(c))?;
        Some(ScriptOp::Write { target: Target::Origin, sector: chunk * chunk_sectors, sectors: 1, flags: UserFlags::PLAIN })
    }
}

/// Every disk's crash image, `choose(disk, sector, values)` picking for each
/// non-durable sector of disk `disk` (0 the origin, `k + 1` COW `k`) the
/// index of the value it keeps among `values` (0 its durable value, then
/// each value written since, oldest first).
pub(super) fn crash_images(disks: &[Arc<SimDisk>], mut choose: impl FnMut(usize, u64, usize) -> usize) -> Vec<Image> {
    disks
        .iter()
        .enumerate()
        .map(|(disk, d)| {
            d.crash_image(|sector, values| {
                let pick = choose(disk, sector, values);
                assert!(pick < values, "chose value {pick} of {values} for disk {disk} sector {sector}");
                pick
            })
        })
        .collect()
}
