//! Test infrastructure: a block device whose completions the test controls,
//! and [`rig`], the origin-and-snapshots rig every suite builds with.
//!
//! [`ScriptedDevice`] holds every request until the test completes it, in
//! whatever order the test chooses, and logs what was submitted. It is how the
//! engine's own tests check ordering rules ("callbacks only after the area
//! write completes", "the next area is zeroed before the full one is
//! written") without the full simulator. It has no volatile cache: that, and
//! crashes, are the simulated disk's business.

use std::collections::BTreeMap;

pub mod rig;
pub use rig::{Rig, Slot};

use crate::io::{BlockDevice, DeviceIdentity, IoDone, IoError, IoErrorKind, IoOp, SECTOR_BYTES, WriteFlags, check_request};
use crate::sync::Mutex;

/// One submitted request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: u64,
    pub op: IoOp,
    pub sector: u64,
    pub sectors: u64,
    pub flags: WriteFlags,
}

enum Held {
    Read { sector: u64, sectors: u32, done: IoDone<Vec<u8>> },
    Write { sector: u64, data: Vec<u8>, done: IoDone<()> },
    Flush { done: IoDone<()> },
}

struct Inner {
    bytes: Vec<u8>,
    next_id: u64,
    held: BTreeMap<u64, Held>,
    log: Vec<Submitted>,
}

/// A memory-backed device whose requests complete only when the test says.
pub struct ScriptedDevice {
    inner: Mutex<Inner>,
    size_sectors: u64,
    id: u64,
}

impl std::fmt::Debug for ScriptedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedDevice").field("size_sectors", &self.size_sectors).finish()
    }
}

impl ScriptedDevice {
    /// A device holding `bytes` (a whole number of sectors).
    pub fn new(bytes: Vec<u8>) -> Self {
        assert_eq!(bytes.len() % SECTOR_BYTES, 0);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
        let size_sectors = (bytes.len() / SECTOR_BYTES) as u64;
        let inner = Inner { bytes, next_id: 0, held: BTreeMap::new(), log: Vec::new() };
        Self { inner: Mutex::new(inner), size_sectors, id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// Every request submitted so far, in submission order.
    pub fn log(&self) -> Vec<Submitted> {
        self.inner.lock().log.clone()
    }

    /// Ids of the requests submitted but not yet completed, oldest first.
    pub fn in_flight(&self) -> Vec<u64> {
        self.inner.lock().held.keys().copied().collect()
    }

    /// The device's current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().bytes.clone()
    }

    /// Completes request `id` (successfully unless `fail`), running its callback.
    ///
    /// # Panics
    /// If `id` is not in flight.
    pub fn complete(&self, id: u64, fail: bool) {
        let (held, size) = {
            let mut inner = self.inner.lock();
            let held = inner.held.remove(&id).unwrap_or_else(|| panic!("request {id} is not in flight"));
            (held, self.size_sectors)
        };
        let media = |op, sector, sectors| IoError::new(op, sector, sectors, IoErrorKind::Media);
        match held {
            Held::Read { sector, sectors, done } => {
                let result = check_request(IoOp::Read, sector, sectors as usize * SECTOR_BYTES, size).and_then(|()| {
                    if fail {
                        return Err(media(IoOp::Read, sector, u64::from(sectors)));
                    }
                    let start = sector as usize * SECTOR_BYTES;
                    Ok(self.inner.lock().bytes[start..start + sectors as usize * SECTOR_BYTES].to_vec())
                });
                done(result);
            }
            Held::Write { sector, data, done } => {
                let result = check_request(IoOp::Write, sector, data.len(), size).and_then(|()| {
                    if fail {
                        return Err(media(IoOp::Write, sector, (data.len() / SECTOR_BYTES) as u64));
                    }
                    let start = sector as usize * SECTOR_BYTES;
                    self.inner.lock().bytes[start..start + data.len()].copy_from_slice(&data);
                    Ok(())
                });
                done(result);
            }
            Held::Flush { done } => done(if fail { Err(media(IoOp::Flush, 0, 0)) } else { Ok(()) }),
        }
    }

    /// Completes the oldest request in flight; returns whether there was one.
    pub fn complete_oldest(&self) -> bool {
        let first = self.inner.lock().held.keys().next().copied();
        first.map(|id| self.complete(id, false)).is_some()
    }

    /// Completes the newest request in flight; returns whether there was one.
    pub fn complete_newest(&self) -> bool {
        let last = self.inner.lock().held.keys().next_back().copied();
        last.map(|id| self.complete(id, false)).is_some()
    }

    /// Completes requests, newest first, until none is in flight.
    pub fn drain_newest_first(&self) -> usize {
        let mut count = 0;
        while self.complete_newest() {
            count += 1;
        }
        count
    }

    /// Completes requests, oldest first, until none is in flight.
    pub fn drain_oldest_first(&self) -> usize {
        let mut count = 0;
        while self.complete_oldest() {
            count += 1;
        }
        count
    }

    fn hold(&self, op: IoOp, sector: u64, sectors: u64, flags: WriteFlags, held: Held) {
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.log.push(Submitted { id, op, sector, sectors, flags });
        inner.held.insert(id, held);
    }
}

impl BlockDevice for ScriptedDevice {
    fn size_sectors(&self) -> u64 {
        self.size_sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        SECTOR_BYTES as u32
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory(self.id)
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        self.hold(IoOp::Read, sector, u64::from(sectors), WriteFlags::PLAIN, Held::Read { sector, sectors, done });
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let sectors = (data.len() / SECTOR_BYTES) as u64;
        self.hold(IoOp::Write, sector, sectors, flags, Held::Write { sector, data, done });
    }

    fn flush(&self, done: IoDone<()>) {
        self.hold(IoOp::Flush, 0, 0, WriteFlags { preflush: true, fua: false }, Held::Flush { done });
    }
}
