//! Booting the engine on a set of disk images, and checking what it loaded against the images (I4–I6).

use std::sync::Arc;

use engine::store::StoreConfig;
use engine::targets::{Origin, OriginConfig, OriginDevice, Snapshot, SnapshotDevice};
use model::{CowState, Event, Invariant, Violation};
use rand::RngExt;

use super::tables::differing_chunks;
use super::{DeferQueue, Engine, Slot, World};
use crate::disk::{FaultRates, Image, SimDisk};
use crate::world::config::stream;
use crate::world::observer::lock;

/// A COW image's decoded state, and that of the durable image before the
/// crash (when its records must survive), or the violation decoding found.
type Decoded = Result<(CowState, Option<Result<CowState, Violation>>), Violation>;

/// Activations of one snapshot a reboot tries before a load failing on
/// media errors is a violation: with the swarm's error rates, more failures
/// in a row than this would mean the engine, not the disk, is failing.
const LOAD_ATTEMPTS_MAX: u32 = 16;

impl World {
    /// Builds the engine on disks holding `images`, loading every snapshot,
    /// and checks what it loaded against what the images say.
    pub(super) fn boot_on(&mut self, images: Vec<Image>) {
        // What the COW images say, read before the disks take them over.
        let decoded: Vec<Decoded> = (0..self.knobs.snapshots).map(|k| self.decode_cows(k, &images[k + 1])).collect();
        // The model's verdict on the disks comes first: an engine refusing
        // to load ill-formed metadata is a symptom, not the cause.
        if let Some(Err(violation)) = decoded.iter().find(|d| d.is_err()) {
            return lock(&self.shared).fail(violation.clone());
        }
        let disks: Vec<Arc<SimDisk>> = images
            .into_iter()
            .enumerate()
            .map(|(index, image)| {
                let seed = stream(self.seed, &format!("disk{index}-epoch{}", self.epoch)).random::<u64>();
                // The first boot loads on quiet disks; a reboot's loads meet
                // the run's faults, as an activation after a crash would.
                let faults = if self.epoch > 0 { self.knobs.faults } else { FaultRates::default() };
                Arc::new(SimDisk::new(index as u64, image, faults, seed))
            })
            .collect();
        if self.timeline.is_some() {
            disks.iter().for_each(|disk| disk.record_submissions());
        }
        let deferred = Arc::new(DeferQueue::default());
        let origin = Origin::new(
            Arc::clone(&disks[0]),
            deferred.clone(),
            OriginConfig { cow_threshold: self.knobs.cow_threshold, mutations: self.mutations, kernel_patches: self.kernel_patches },
        );
        self.engine = Engine { disks, deferred, origin: Arc::new(OriginDevice::new(Arc::clone(&origin))), snapshots: Vec::new() };
        for index in 0..self.knobs.snapshots {
            let mut attempt = 0;
            let snapshot = loop {
                let cow = Arc::clone(&self.engine.disks[index + 1]);
                let media_errors_before = cow.media_errors();
                match self.load_snapshot(&origin, index) {
                    Ok(snapshot) => break snapshot,
                    Err(message) => {
                        // A load may fail only on a media error the disk
                        // returned; the operator then activates it again
                        // (a drawn error is transient), as many times as
                        // a stubborn administrator would.
                        let disk_failed = cow.media_errors() > media_errors_before;
                        attempt += 1;
                        if !disk_failed || attempt > LOAD_ATTEMPTS_MAX || message.is_empty() {
                            let message = format!("snapshot {index} failed to load after {} crash(es): {message}", self.epoch);
                            return self.fail(Invariant::I6Reload, message);
                        }
                        crate::marks::hit(crate::marks::WorldMark::LoadRetried);
                        self.emit(Event::LoadFailed { snapshot: index });
                    }
                }
            };
            self.engine.snapshots.push(Arc::new(SnapshotDevice::new(snapshot)));
        }
        let valid = self.engine.snapshots.iter().map(|d| d.snapshot().is_valid()).collect();
        self.emit(Event::Reloaded { valid });
        for (index, decoded) in decoded.into_iter().enumerate() {
            if let Err(violation) = self.check_loaded(index, decoded) {
                return lock(&self.shared).fail(violation);
            }
        }
        // A snapshot a crash revived over durable headers is read whole
        // now: its view must be what it was, and a later write may
        // invalidate it again before the run's read-back.
        let revived = lock(&self.shared).oracle.take_revived();
        for k in revived {
            let device = Arc::clone(&self.engine.snapshots[k]);
            if !self.read_back(device.as_ref(), true, |oracle, sector, value| oracle.check_view_sector(k, sector, value, false, true)) {
                return;
            }
        }
        if let Some((k, _)) = self.merging {
            self.start_merge(k);
        }
        for disk in &self.engine.disks {
            disk.set_faults(self.knobs.faults);
        }
    }

    /// Loads snapshot `index` on its COW disk, stepping the world until the
    /// load reports; the error's text if it failed.
    fn load_snapshot(&mut self, origin: &Arc<Origin<SimDisk>>, index: usize) -> Result<Arc<Snapshot<SimDisk>>, String> {
        let config = StoreConfig { kind: self.knobs.store, chunk_sectors: Some(self.knobs.snapshot_chunk_sectors(index)), ..StoreConfig::default() };
        let slot: Slot<Result<Arc<Snapshot<SimDisk>>, engine::StoreError>> = Arc::default();
        let filler = Arc::clone(&slot);
        let cow = Arc::clone(&self.engine.disks[index + 1]);
        if let Err(error) = origin.create_snapshot(cow, config, Box::new(move |r| *lock(&filler) = Some(r))) {
            return Err(format!("refused: {error}"));
        }
        while lock(&slot).is_none() {
            if !self.step_event() {
                self.fail(Invariant::I11Liveness, format!("loading snapshot {index} stalled"));
                return Err(String::new());
            }
        }
        let loaded = lock(&slot).take().expect("the load reported");
        loaded.map_err(|error| error.to_string())
    }

    /// I4/I5 on the COW image snapshot `k` is about to load from, and on
    /// the durable image before the crash (whose records must survive).
    fn decode_cows(&self, k: usize, image: &Image) -> Decoded {
        let merging = self.merging.as_ref().is_some_and(|(m, _)| *m == k);
        // Both images are read under one lock, not a copy of the oracle.
        let observer = lock(&self.shared);
        let state = observer.oracle.check_cow(k, image)?;
        let before = match &self.durable_decoded {
            Some(decoded) => decoded[k].clone().filter(|_| !merging),
            None => self.durable_cows[k].as_ref().filter(|_| !merging).map(|durable| observer.oracle.check_cow(k, durable)),
        };
        Ok((state, before))
    }

    /// I6: the engine loaded exactly the records of the image it loaded
    /// from, and every record durable before the crash is among them.
    fn check_loaded(&self, k: usize, decoded: Decoded) -> Result<(), Violation> {
        let (state, before) = decoded?;
        let snapshot = self.engine.snapshots[k].snapshot();
        // The records by origin chunk (a COW that names one twice failed decoding).
        let mut table = state.records().to_vec();
        table.sort_unstable();
        let recorded = |old: u64| table.binary_search_by_key(&old, |&(o, _)| o).ok().map(|i| table[i].1);
        if matches!(state, CowState::Valid(_)) != snapshot.is_valid() && !matches!(state, CowState::Fresh) {
            let message = format!("snapshot {k}'s COW says {state:?} but the engine loaded it as valid={}", snapshot.is_valid());
            return Err(Violation::new(Invariant::I6Reload, message));
        }
        if snapshot.is_valid() {
            // The last chunk may end past the origin's end: it is a chunk all the same.
            let origin_chunks = self.knobs.origin_sectors().div_ceil(u64::from(self.knobs.snapshot_chunk_sectors(k)));
            let loaded = snapshot.completed_table();
            let inside = |&(old, _): &(u64, u64)| old < origin_chunks;
            let on_disk = table.iter().copied().take_while(inside);
            if let Some(chunk) = differing_chunks(loaded.iter().take_while(inside), on_disk).next() {
                let message =
                    format!("snapshot {k} origin chunk {chunk}: the COW records {:?}, the engine loaded {:?}", recorded(chunk), loaded.lookup(chunk));
                return Err(Violation::new(Invariant::I6Reload, message));
            }
        }
        if let Some(before) = before {
            let before = before?;
            if let (CowState::Valid(before), CowState::Valid(_)) = (&before, &state) {
                if let Some(&(old, new)) = before.iter().find(|&&(old, new)| recorded(old) != Some(new)) {
                    let message = format!("snapshot {k}: the durable record origin chunk {old} → COW chunk {new} disappeared in the crash");
                    return Err(Violation::new(Invariant::I6Reload, message));
                }
            }
        }
        Ok(())
    }
}
