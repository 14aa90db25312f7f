//! What a crash state kept of each write that was not durable at its crash
//! point: the answer a cause shrinks and a timeline colours.

use std::sync::Arc;

use super::{Image, PendingWrite, SimDisk};

/// One non-durable write of a crash point, and which of its sectors a crash
/// state of that point holds.
#[derive(Debug, Clone)]
pub struct HeldWrite {
    /// Its disk: 0 the origin, `k + 1` COW `k`.
    pub disk: usize,
    pub write: PendingWrite,
    /// Indices into `write.sectors` of the sectors the state holds.
    pub held: Vec<usize>,
}

impl HeldWrite {
    /// Disk, request, sectors held, sectors.
    pub fn fate(&self) -> (usize, u64, u64, u64) {
        debug_assert!(self.held.len() <= self.write.sectors.len(), "more sectors held than written");
        (self.disk, self.write.request, self.held.len() as u64, self.write.sectors.len() as u64)
    }
}

/// Every non-durable write of `disks`, with the sectors of it `images` (a
/// crash state of them, origin first) hold.
pub fn held_writes(disks: &[Arc<SimDisk>], images: &[Image]) -> Vec<HeldWrite> {
    assert_eq!(disks.len(), images.len(), "one image per disk");
    let mut writes = Vec::new();
    for (disk, d) in disks.iter().enumerate() {
        for write in d.pending_writes() {
            let held = (0..write.sectors.len()).filter(|&i| images[disk].sector(write.sectors[i].0) == write.sectors[i].1.bytes()).collect();
            writes.push(HeldWrite { disk, write, held });
        }
    }
    writes
}

/// Each non-durable write of `disks` and how much of it `images` holds:
/// disk, request, sectors held, sectors.
pub fn fates(disks: &[Arc<SimDisk>], images: &[Image]) -> Vec<(usize, u64, u64, u64)> {
    held_writes(disks, images).iter().map(HeldWrite::fate).collect()
}
