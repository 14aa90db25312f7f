//! Reading every judged snapshot and the origin back to completion, each sector checked against the model (I1–I3).

use std::sync::Arc;

use engine::SECTOR_BYTES;
use engine::io::BlockDevice;
use model::{Invariant, Oracle, Violation};

use super::{Slot, World, sector_hash};
use crate::world::observer::lock;

impl World {
    /// Reads `count` sectors from `device` to completion.
    fn read_now(&mut self, device: &dyn BlockDevice, sector: u64, count: u64) -> Option<Result<Vec<u8>, engine::IoError>> {
        let slot: Slot<Result<Vec<u8>, engine::IoError>> = Arc::default();
        let filler = Arc::clone(&slot);
        device.read(sector, count as u32, Box::new(move |r| *lock(&filler) = Some(r)));
        while lock(&slot).is_none() {
            if !self.step_event() {
                self.fail(Invariant::I11Liveness, "a final read never completed".into());
                return None;
            }
        }
        lock(&slot).take()
    }

    /// At the end: every sector of every judged snapshot and of the origin, checked.
    pub(super) fn read_back_everything(&mut self) {
        for (k, device) in self.engine.snapshots.clone().iter().enumerate() {
            if !device.snapshot().is_valid() || !lock(&self.shared).oracle.judges(k) {
                continue;
            }
            if !self.read_back(device.as_ref(), true, |oracle, sector, value| oracle.check_view_sector(k, sector, value, false, true)) {
                return;
            }
        }
        let origin = Arc::clone(&self.engine.origin);
        self.read_back(origin.as_ref(), false, |oracle, sector, value| oracle.check_origin_sector(sector, value));
    }

    /// Reads all of `device` in 64-sector pieces and has `check` judge each
    /// sector; `false` once a read stalled or a sector failed its check.
    pub(super) fn read_back(
        &mut self,
        device: &dyn BlockDevice,
        count_checked: bool,
        check: impl Fn(&mut Oracle, u64, u64) -> Result<(), Violation>,
    ) -> bool {
        let origin_sectors = self.knobs.origin_sectors();
        (0..origin_sectors).step_by(64).all(|sector| self.read_checked(device, sector, (origin_sectors - sector).min(64), count_checked, &check))
    }

    /// Reads `count` sectors of `device` from `sector` and has `check` judge
    /// each; `false` once the read stalled or a sector failed its check.
    pub(super) fn read_checked(
        &mut self,
        device: &dyn BlockDevice,
        sector: u64,
        count: u64,
        count_checked: bool,
        check: &impl Fn(&mut Oracle, u64, u64) -> Result<(), Violation>,
    ) -> bool {
        let Some(result) = self.read_now(device, sector, count) else { return false };
        if let Ok(data) = result {
            let mut observer = lock(&self.shared);
            if count_checked {
                observer.counters.sectors_checked += count;
            }
            for (j, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
                let value = sector_hash(bytes);
                observer.mix(value);
                if let Err(violation) = check(&mut observer.oracle, sector + j as u64, value) {
                    observer.fail(violation);
                    return false;
                }
            }
        }
        true
    }
}
