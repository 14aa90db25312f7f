//! Devices that hold every request until the search completes it, and log
//! what completes as dm-log-writes does.
//!
//! Origin and COW lie side by side on one image, as on the guest's data
//! disk. A plain write is logged at the next flush submitted after it
//! completed, in completion order; a FUA write when it completes; a
//! PREFLUSH write as an empty flush (covering the plain writes completed
//! before it was submitted) and then the write; a mark at once. Reads are
//! never logged, so the search completes them at once.

use std::sync::{Mutex, MutexGuard, PoisonError};

use engine::io::{BlockDevice, DeviceIdentity, IoDone, IoError, IoOp, WriteFlags, check_request};
use sim::logwrites::{Entry, EntryFlags};

/// A request the engine issued and the search has not completed yet.
pub enum Request {
    Read {
        sector: u64,
        sectors: u32,
        done: IoDone<Vec<u8>>,
    },
    Write {
        sector: u64,
        data: Vec<u8>,
        flags: WriteFlags,
        covered: Option<Vec<Entry>>,
        done: IoDone<()>,
    },
    Flush {
        covered: Vec<Entry>,
        done: IoDone<()>,
    },
    /// A write past the device's end (the zeroing of a next area that lies
    /// past the COW, K4): the block layer fails it before dm-log-writes
    /// sees it, so it is never logged.
    Refused {
        error: IoError,
        done: IoDone<()>,
    },
}

impl Request {
    /// Reads and refused writes are never logged: the search completes them at once.
    pub fn is_read(&self) -> bool {
        matches!(self, Request::Read { .. } | Request::Refused { .. })
    }

    /// What completing it logs at once (plain writes: nothing yet).
    pub fn logs(&self) -> Vec<Entry> {
        match self {
            Request::Read { .. } | Request::Refused { .. } => Vec::new(),
            Request::Write { sector, data, flags, covered, .. } => {
                let mut out = covered.clone().map(|mut c| {
                    c.push(Entry::flush());
                    c
                });
                if flags.fua {
                    out.get_or_insert_with(Vec::new).push(Entry::write(*sector, data.clone(), EntryFlags::FUA));
                }
                out.unwrap_or_default()
            }
            Request::Flush { covered, .. } => {
                let mut out = covered.clone();
                out.push(Entry::flush());
                out
            }
        }
    }

    /// The plain writes a flush (or PREFLUSH write) covers, taken when it was submitted.
    pub fn covered(&self) -> Option<&[Entry]> {
        match self {
            Request::Write { covered, .. } => covered.as_deref(),
            Request::Flush { covered, .. } => Some(covered),
            Request::Read { .. } | Request::Refused { .. } => None,
        }
    }

    /// The plain write completing it adds to the unflushed list, if any.
    pub fn unflushed(&self) -> Option<Entry> {
        match self {
            Request::Write { sector, data, flags, .. } if !flags.fua => Some(Entry::write(*sector, data.clone(), 0)),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Request::Read { sector, sectors, .. } => format!("read {sector}+{sectors}"),
            Request::Write { sector, data, flags, covered, .. } => {
                let preflush = if covered.is_some() { "PREFLUSH " } else { "" };
                let fua = if flags.fua { "FUA " } else { "" };
                format!("{preflush}{fua}write {sector}+{}", data.len() / 512)
            }
            Request::Flush { .. } => "flush".to_string(),
            Request::Refused { error, .. } => format!("refused: {error}"),
        }
    }
}

/// The image, the held requests and the log: one per run.
#[derive(Default)]
pub struct Disk {
    pub image: Vec<u8>,
    /// Held requests by issue number, oldest first.
    pub held: Vec<(u64, Request)>,
    next_id: u64,
    /// What the log holds so far.
    pub entries: Vec<Entry>,
    /// Plain writes completed since the last flush was submitted.
    pub unflushed: Vec<Entry>,
    /// Requests the device has completed (and the log shows) whose
    /// completion the engine has not seen yet: the kernel's waiter wakes up
    /// some time after the device's end_io, and other requests complete meanwhile.
    pub completed: Vec<(u64, Box<dyn FnOnce() + Send>)>,
    /// FUA writes in the order submitted (commits and durable headers).
    pub fua_submitted: Vec<Entry>,
    /// The first write to each COW chunk, with how many FUA writes had
    /// been submitted by then: when a new exception's chunk was allocated.
    pub first_writes: Vec<(u64, usize, Vec<u8>)>,
    written_chunks: std::collections::BTreeSet<u64>,
    /// Every write as submitted: its sector, data and how many writes to
    /// that sector were submitted before it.
    pub submitted: Vec<(u64, Vec<u8>, usize)>,
    pub per_sector: std::collections::BTreeMap<u64, usize>,
    /// The COW's first sector and chunk size, to tell chunks apart.
    pub cow: (u64, u64),
}

pub type SharedDisk = std::sync::Arc<Mutex<Disk>>;

pub fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Disk {
    pub fn new(image: Vec<u8>) -> SharedDisk {
        std::sync::Arc::new(Mutex::new(Disk { image, ..Disk::default() }))
    }

    fn hold(&mut self, request: Request) {
        self.next_id += 1;
        self.held.push((self.next_id, request));
    }

    /// Completes held request `id` at the device: applies it to the image
    /// and logs it; its completion waits in `completed` until delivered.
    pub fn complete(&mut self, id: u64) {
        let done = self.finish(id);
        self.completed.push((id, done));
    }

    /// Hands completed request `id`'s completion over, to run outside the lock.
    pub fn deliver(&mut self, id: u64) -> Box<dyn FnOnce() + Send> {
        let at = self.completed.iter().position(|(i, _)| *i == id).expect("delivering a request that has not completed");
        self.completed.remove(at).1
    }

    /// Applies and logs held request `id`, and returns its completion.
    pub fn finish(&mut self, id: u64) -> Box<dyn FnOnce() + Send> {
        let at = self.held.iter().position(|(i, _)| *i == id).expect("completing a request that is not held");
        let (_, request) = self.held.remove(at);
        self.entries.extend(request.logs());
        if let Some(entry) = request.unflushed() {
            self.unflushed.push(entry);
        }
        match request {
            Request::Read { sector, sectors, done } => {
                let length = sectors as usize * 512;
                let result = check_request(IoOp::Read, sector, length, (self.image.len() / 512) as u64)
                    .map(|()| self.image[sector as usize * 512..][..length].to_vec());
                Box::new(move || done(result))
            }
            Request::Write { sector, data, done, .. } => {
                let start = sector as usize * 512;
                self.image[start..start + data.len()].copy_from_slice(&data);
                Box::new(move || done(Ok(())))
            }
            Request::Flush { done, .. } => Box::new(move || done(Ok(()))),
            Request::Refused { error, done } => Box::new(move || done(Err(error))),
        }
    }
}

/// One device (origin or COW) of the image, at `base`.
pub struct HeldDevice {
    pub disk: SharedDisk,
    pub base: u64,
    pub sectors: u64,
    pub id: u64,
}

impl HeldDevice {
    /// Refuses what the device could not take, through the request's completion.
    fn check(&self, op: IoOp, sector: u64, bytes: usize) -> Result<(), IoError> {
        check_request(op, sector, bytes, self.sectors)
    }
}

impl BlockDevice for HeldDevice {
    fn size_sectors(&self) -> u64 {
        self.sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        512
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory(self.id)
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        // Out of range: fails when completed, checked against the whole image there.
        let sector = if self.check(IoOp::Read, sector, sectors as usize * 512).is_ok() { self.base + sector } else { u64::MAX / 1024 };
        lock(&self.disk).hold(Request::Read { sector, sectors, done });
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        // Past the device's end (K4's zeroing): the block layer fails it, unlogged.
        if let Err(error) = self.check(IoOp::Write, sector, data.len()) {
            return lock(&self.disk).hold(Request::Refused { error, done });
        }
        let mut disk = lock(&self.disk);
        let covered = flags.preflush.then(|| std::mem::take(&mut disk.unflushed));
        if flags.fua {
            let entry = Entry::write(self.base + sector, data.clone(), EntryFlags::FUA);
            disk.fua_submitted.push(entry);
        }
        let nth = {
            let count = disk.per_sector.entry(self.base + sector).or_insert(0);
            *count += 1;
            *count - 1
        };
        disk.submitted.push((self.base + sector, data.clone(), nth));
        let (cow_start, chunk) = disk.cow;
        if self.base == cow_start && chunk > 0 {
            let c = sector / chunk;
            if disk.written_chunks.insert(c) {
                let fua = disk.fua_submitted.len();
                disk.first_writes.push((c, fua, data.clone()));
            }
        }
        disk.hold(Request::Write { sector: self.base + sector, data, flags, covered, done });
    }

    fn flush(&self, done: IoDone<()>) {
        let mut disk = lock(&self.disk);
        let covered = std::mem::take(&mut disk.unflushed);
        disk.hold(Request::Flush { covered, done });
    }
}
