//! `SimDisk`: a block device that misbehaves in every way a real disk may,
//! deterministically.
//!
//! # Fault model (SPEC §4)
//!
//! - **Sectors.** 512-byte sectors are the unit of atomicity.
//! - **Nothing completes by itself.** Requests wait in flight until the world
//!   completes them, in any order it picks ([`SimDisk::complete`]). Effects
//!   happen at completion; the request's callback is handed back to the world
//!   to run, never run under the disk's lock and never inside a submission.
//! - **Volatile cache.** A completed write is *not* durable. Reads see the
//!   newest completed write of each sector.
//! - **PREFLUSH** makes durable every write that had *completed before the
//!   request was submitted* — not writes that complete while it is in
//!   flight — before the request's own effect. A flush is a PREFLUSH with no
//!   data.
//! - **FUA** makes *that write only* durable when it completes. It is not a
//!   barrier: earlier completed writes stay volatile.
//! - **Crash.** Every sector written but not durable — by a completed write
//!   or by a write still in flight — independently holds its durable value
//!   or *any* value written to it since ([`SimDisk::crash_candidates`]).
//!   Torn multi-sector writes fall out of this. In-flight callbacks are lost.
//!   An in-flight write *with PREFLUSH* is taken as not yet processed: its
//!   data could reach the media only after its preflush had made the earlier
//!   writes durable, a dependency between sectors that independent choices
//!   cannot express. (The states this leaves out — preflush done, write torn
//!   — are legal but are not generated.)
//! - **Faults**, drawn from the disk's own seeded stream at completion:
//!   read, write and flush errors at configured rates, and latent sector
//!   errors (sectors whose reads fail until they are rewritten). A failed
//!   write or flush changes nothing. Every request completes exactly once.

pub mod fates;
pub mod image;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, DeviceIdentity, IoDone, IoError, IoErrorKind, IoOp, WriteFlags, check_request};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use fates::{HeldWrite, fates, held_writes};
pub use image::{Image, Sector};

/// Error rates of a disk, drawn per request at completion.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    pub read_error: f64,
    pub write_error: f64,
    pub flush_error: f64,
}

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Read,
    Write { fua: bool, preflush: bool },
    Flush,
}

/// A request as the trace records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestInfo {
    pub id: u64,
    pub kind: RequestKind,
    pub sector: u64,
    pub sectors: u64,
}

enum Callback {
    Read(IoDone<Vec<u8>>),
    Unit(IoDone<()>),
    /// A request refused at submission (outside the device): no effect, an error.
    Refused(Box<dyn FnOnce() + Send>),
}

struct InFlight {
    info: RequestInfo,
    data: Option<Arc<[u8]>>,
    /// Writes that had completed when this request was submitted (for PREFLUSH).
    completed_before: u64,
    callback: Callback,
}

/// A completed request's callback, ready for the world to run.
pub struct Completion {
    pub info: RequestInfo,
    pub ok: bool,
    run: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").field("info", &self.info).field("ok", &self.ok).finish()
    }
}

impl Completion {
    /// Runs the request's callback (outside the disk's lock).
    pub fn run(self) {
        (self.run)();
    }
}

/// A completed write not yet durable.
#[derive(Clone)]
struct Version {
    completed: u64,
    data: Sector,
}

/// One sector's value that is not durable: a completed version still in
/// the cache, or a sector of a write in flight.
enum Unflushed<'a> {
    Completed { sector: u64, version: &'a Version },
    InFlight { request: &'a InFlight, index: u64 },
}

impl Unflushed<'_> {
    /// The sector, and the value a crash may leave there.
    fn sector(&self) -> (u64, Sector) {
        match self {
            Self::Completed { sector, version } => (*sector, version.data.clone()),
            Self::InFlight { request, index } => {
                let data = request.data.as_ref().expect("a write in flight carries its data");
                (request.info.sector + index, Sector::of(data, *index as usize))
            }
        }
    }
}

struct State {
    durable: Image,
    /// Completed, non-durable versions per sector, oldest first.
    volatile: BTreeMap<u64, Vec<Version>>,
    in_flight: BTreeMap<u64, InFlight>,
    next_id: u64,
    /// Writes completed so far (each write's completion number).
    completed_writes: u64,
    latent: BTreeSet<u64>,
    /// Sector ranges whose next writes fail: (first sector, end, writes
    /// left to fail, writes to let through first).
    failing_writes: Vec<(u64, u64, u32, u32)>,
    /// Requests completed so far.
    completions: u64,
    /// Media errors returned so far (drawn, latent or scripted).
    media_errors: u64,
    /// Each completed non-FUA write's request number and PREFLUSH, by
    /// completion number: what a crash may lose, named as the run knows it.
    completed_requests: BTreeMap<u64, (u64, bool)>,
    /// Requests submitted since the last [`SimDisk::take_submissions`],
    /// kept only once [`SimDisk::record_submissions`] asked (a timeline).
    submissions: Option<Vec<RequestInfo>>,
    faults: FaultRates,
    rng: ChaCha8Rng,
}

/// A disk's contents as reads see them: the newest completed version of
/// each sector, else the durable one.
struct CachedView<'a> {
    state: &'a State,
    sectors: u64,
}

impl model::SectorSource for CachedView<'_> {
    fn sector_count(&self) -> u64 {
        self.sectors
    }

    fn sector(&self, sector: u64) -> &[u8] {
        match self.state.volatile.get(&sector).and_then(|versions| versions.last()) {
            Some(newest) => newest.data.bytes(),
            None => self.state.durable.sector(sector),
        }
    }
}

/// The simulated disk.
pub struct SimDisk {
    state: Mutex<State>,
    sectors: u64,
    id: u64,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk").field("id", &self.id).field("sectors", &self.sectors).finish()
    }
}

/// A write a crash may leave applied, partly applied or not at all: its
/// sectors that are not durable, in order.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    pub sectors: Vec<(u64, Sector)>,
    /// The request's number on its disk (the `request` of its `Disk` event).
    pub request: u64,
    pub preflush: bool,
    pub fua: bool,
    /// Completed (in the volatile cache) rather than still in flight.
    pub completed: bool,
}

/// For every sector a crash may change: its durable value first, then every
/// value it may hold instead.
pub type CrashCandidates = BTreeMap<u64, Vec<Sector>>;

impl State {
    /// The one walk over what is not durable, which the crash candidates,
    /// the non-durable sectors and the pending writes are views of: every
    /// completed version still in the cache (by sector, oldest first), then
    /// every sector of every write in flight (by submission) except
    /// PREFLUSH ones, which cannot reach the media before they complete.
    fn unflushed(&self) -> impl Iterator<Item = Unflushed<'_>> {
        let completed =
            self.volatile.iter().flat_map(|(&sector, versions)| versions.iter().map(move |version| Unflushed::Completed { sector, version }));
        let in_flight = self
            .in_flight
            .values()
            .filter(|request| !matches!(request.info.kind, RequestKind::Write { preflush: true, .. }) && request.data.is_some())
            .flat_map(|request| (0..request.info.sectors).map(move |index| Unflushed::InFlight { request, index }));
        completed.chain(in_flight)
    }
}

impl SimDisk {
    /// A disk holding `image` durably, with fault draws from `seed`.
    pub fn new(id: u64, image: Image, faults: FaultRates, seed: u64) -> Self {
        let sectors = image.sectors();
        let state = State {
            durable: image,
            volatile: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_id: 0,
            completed_writes: 0,
            latent: BTreeSet::new(),
            failing_writes: Vec::new(),
            completions: 0,
            media_errors: 0,
            completed_requests: BTreeMap::new(),
            submissions: None,
            faults,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        Self { state: Mutex::new(state), sectors, id }
    }

    /// A poisoned lock is a bug and panics, except on a thread already
    /// unwinding from that panic (the world powering its disks off as it is
    /// dropped), where a second panic would abort the process.
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) if std::thread::panicking() => poisoned.into_inner(),
            Err(poisoned) => panic!("SimDisk lock poisoned: {poisoned}"),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Power loss: every request in flight is dropped, its completion never
    /// delivered. (Their callbacks hold the engine that holds this disk; a
    /// machine that is thrown away must let go of them.)
    pub fn power_off(&self) {
        let dropped = std::mem::take(&mut self.lock().in_flight);
        // Dropped outside the lock: a callback's captures may touch this disk.
        drop(dropped);
    }

    /// Requests in flight, oldest first.
    pub fn in_flight(&self) -> Vec<RequestInfo> {
        self.lock().in_flight.values().map(|r| r.info).collect()
    }

    pub fn in_flight_count(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Every request in flight, oldest first.
    pub fn in_flight_infos(&self) -> Vec<RequestInfo> {
        self.lock().in_flight.values().map(|request| request.info).collect()
    }

    /// The id of the `n`-th request in flight, oldest first.
    pub fn in_flight_id(&self, n: usize) -> Option<u64> {
        self.lock().in_flight.keys().nth(n).copied()
    }

    /// Makes reads of `sectors` fail until they are rewritten.
    pub fn inject_latent(&self, sectors: std::ops::Range<u64>) {
        self.lock().latent.extend(sectors);
    }

    /// Makes the next `count` writes that touch `sectors` fail (a scripted
    /// write error: a copy or a metadata write that the disk refuses).
    pub fn fail_writes(&self, sectors: std::ops::Range<u64>, count: u32) {
        self.fail_writes_after(sectors, count, 0);
    }

    /// As [`Self::fail_writes`], once `skip` writes touching the range have succeeded.
    pub fn fail_writes_after(&self, sectors: std::ops::Range<u64>, count: u32, skip: u32) {
        self.lock().failing_writes.push((sectors.start, sectors.end, count, skip));
    }

    pub fn set_faults(&self, faults: FaultRates) {
        self.lock().faults = faults;
    }

    /// Keeps every request submitted from now on, for [`Self::take_submissions`].
    pub fn record_submissions(&self) {
        self.lock().submissions.get_or_insert_with(Vec::new);
    }

    /// The requests submitted since the last call (none unless recording).
    pub fn take_submissions(&self) -> Vec<RequestInfo> {
        self.lock().submissions.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Media errors this disk has returned so far (drawn, latent or scripted).
    pub fn media_errors(&self) -> u64 {
        self.lock().media_errors
    }

    /// The durable image (what a crash right now with every choice "durable" leaves).
    pub fn durable(&self) -> Image {
        self.lock().durable.clone()
    }

    /// What reads see now: the durable image under the newest completed writes.
    pub fn cached(&self) -> Image {
        let state = self.lock();
        let mut image = state.durable.clone();
        for (&sector, versions) in &state.volatile {
            if let Some(newest) = versions.last() {
                image.set(sector, newest.data.clone());
            }
        }
        image
    }

    /// Runs `read` over what reads see now (as [`SimDisk::cached`]) without
    /// building an image.
    pub fn with_cached<R>(&self, read: impl FnOnce(&dyn model::SectorSource) -> R) -> R {
        let state = self.lock();
        read(&CachedView { state: &state, sectors: self.sectors })
    }

    /// Completes request `id`: applies its effect and returns its callback.
    ///
    /// # Panics
    /// If `id` is not in flight.
    pub fn complete(&self, id: u64) -> Completion {
        let mut state = self.lock();
        let request = state.in_flight.remove(&id).unwrap_or_else(|| panic!("request {id} is not in flight on disk {}", self.id));
        state.completions += 1;
        let info = request.info;
        let error = |kind| IoError::new(op_of(info.kind), info.sector, info.sectors, kind);
        match request.callback {
            Callback::Refused(run) => Completion { info, ok: false, run },
            Callback::Read(done) => {
                let failed = state.latent.range(info.sector..info.sector + info.sectors).next().is_some() || draw(&mut state, |f| f.read_error);
                state.media_errors += u64::from(failed);
                let result = if failed { Err(error(IoErrorKind::Media)) } else { Ok(read_cached(&state, info.sector, info.sectors)) };
                let ok = result.is_ok();
                Completion { info, ok, run: Box::new(move || done(result)) }
            }
            Callback::Unit(done) => {
                let (preflush, fua) = match info.kind {
                    RequestKind::Write { preflush, fua } => (preflush, fua),
                    RequestKind::Flush => (true, false),
                    RequestKind::Read => unreachable!("a read with a unit callback"),
                };
                let failed = match info.kind {
                    RequestKind::Flush => draw(&mut state, |f| f.flush_error),
                    _ => scripted_write_failure(&mut state, info.sector, info.sectors) || draw(&mut state, |f| f.write_error),
                };
                if !failed {
                    if preflush {
                        make_durable_through(&mut state, request.completed_before);
                    }
                    if let Some(data) = &request.data {
                        apply_write(&mut state, info.sector, data, fua);
                        if !fua {
                            let completed = state.completed_writes;
                            state.completed_requests.insert(completed, (info.id, preflush && info.kind != RequestKind::Flush));
                        }
                    }
                }
                state.media_errors += u64::from(failed);
                let result = if failed { Err(error(IoErrorKind::Media)) } else { Ok(()) };
                Completion { info, ok: !failed, run: Box::new(move || done(result)) }
            }
        }
    }

    /// Every sector a crash now may leave changed, with its candidates:
    /// durable value first, then each value written since (completed or in flight).
    pub fn crash_candidates(&self) -> CrashCandidates {
        let state = self.lock();
        let mut candidates: CrashCandidates = BTreeMap::new();
        for (sector, data) in state.unflushed().map(|unflushed| unflushed.sector()) {
            let list = candidates.entry(sector).or_insert_with(|| vec![Sector::from_bytes(state.durable.sector(sector))]);
            if !list.contains(&data) {
                list.push(data);
            }
        }
        candidates
    }

    /// Every sector a crash now may change (as [`Self::crash_candidates`]),
    /// with whether any value it may take instead is all zeros; cheaper
    /// than the candidates: nothing is copied.
    pub fn non_durable_sectors(&self) -> BTreeMap<u64, bool> {
        let state = self.lock();
        let mut sectors: BTreeMap<u64, bool> = BTreeMap::new();
        for (sector, data) in state.unflushed().map(|unflushed| unflushed.sector()) {
            *sectors.entry(sector).or_default() |= data.bytes().iter().all(|&b| b == 0);
        }
        sectors
    }

    /// Every write not yet durable, oldest first: completed writes in
    /// completion order (their sectors still in the cache), then writes in
    /// flight in submission order (except PREFLUSH ones, as above).
    pub fn pending_writes(&self) -> Vec<PendingWrite> {
        let state = self.lock();
        let mut completed: BTreeMap<u64, Vec<(u64, Sector)>> = BTreeMap::new();
        let mut in_flight: Vec<PendingWrite> = Vec::new();
        for unflushed in state.unflushed() {
            match unflushed {
                Unflushed::Completed { sector, version } => completed.entry(version.completed).or_default().push((sector, version.data.clone())),
                Unflushed::InFlight { request, .. } => {
                    let (sector, data) = unflushed.sector();
                    match in_flight.last_mut().filter(|write| write.request == request.info.id) {
                        Some(write) => write.sectors.push((sector, data)),
                        None => {
                            let fua = matches!(request.info.kind, RequestKind::Write { fua: true, .. });
                            let sectors = vec![(sector, data)];
                            in_flight.push(PendingWrite { sectors, request: request.info.id, preflush: false, fua, completed: false });
                        }
                    }
                }
            }
        }
        let completed = completed.into_iter().map(|(number, sectors)| {
            let (request, preflush) = state.completed_requests.get(&number).copied().unwrap_or((u64::MAX, false));
            PendingWrite { sectors, request, preflush, fua: false, completed: true }
        });
        completed.chain(in_flight).collect()
    }

    /// A number that changes whenever a request is submitted or completed.
    pub fn stamp(&self) -> u64 {
        let state = self.lock();
        state.next_id.wrapping_mul(1_000_003).wrapping_add(state.completions)
    }

    /// The image a crash leaves when `choose(sector, candidates)` picks, for
    /// every changeable sector, the index of the candidate it holds.
    pub fn crash_image(&self, mut choose: impl FnMut(u64, usize) -> usize) -> Image {
        let candidates = self.crash_candidates();
        let mut image = self.durable();
        for (sector, options) in candidates {
            let pick = choose(sector, options.len());
            assert!(pick < options.len(), "choice {pick} of {} candidates", options.len());
            if pick > 0 {
                image.set(sector, options[pick].clone());
            }
        }
        image
    }
}

fn op_of(kind: RequestKind) -> IoOp {
    match kind {
        RequestKind::Read => IoOp::Read,
        RequestKind::Write { .. } => IoOp::Write,
        RequestKind::Flush => IoOp::Flush,
    }
}

fn draw(state: &mut State, rate: impl Fn(&FaultRates) -> f64) -> bool {
    let p = rate(&state.faults);
    p > 0.0 && state.rng.random_bool(p.min(1.0))
}

/// Whether a scripted failure claims this write (and uses it up).
fn scripted_write_failure(state: &mut State, sector: u64, sectors: u64) -> bool {
    let hit = state.failing_writes.iter_mut().find(|(start, end, left, _)| *left > 0 && sector < *end && *start < sector + sectors);
    match hit {
        Some((_, _, _, skip)) if *skip > 0 => {
            *skip -= 1;
            false
        }
        Some((_, _, left, _)) => {
            *left -= 1;
            true
        }
        None => false,
    }
}

fn read_cached(state: &State, sector: u64, sectors: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    for s in sector..sector + sectors {
        match state.volatile.get(&s).and_then(|v| v.last()) {
            Some(version) => bytes.extend_from_slice(version.data.bytes()),
            None => bytes.extend_from_slice(state.durable.sector(s)),
        }
    }
    bytes
}

/// PREFLUSH: every write completed up to `completed_before` becomes durable.
fn make_durable_through(state: &mut State, completed_before: u64) {
    let State { volatile, durable, .. } = state;
    volatile.retain(|&sector, versions| {
        let covered = versions.partition_point(|v| v.completed <= completed_before);
        if covered > 0 {
            durable.set(sector, versions[covered - 1].data.clone());
            versions.drain(..covered);
        }
        !versions.is_empty()
    });
}

fn apply_write(state: &mut State, sector: u64, data: &Arc<[u8]>, fua: bool) {
    state.completed_writes += 1;
    let completed = state.completed_writes;
    for index in 0..(data.len() / SECTOR_BYTES) as u64 {
        let s = sector + index;
        let value = Sector::of(data, index as usize);
        state.latent.remove(&s);
        if fua {
            // This write is durable; older cached versions are gone from the cache.
            state.durable.set(s, value);
            state.volatile.remove(&s);
        } else {
            state.volatile.entry(s).or_default().push(Version { completed, data: value });
        }
    }
}

impl SimDisk {
    fn submit(&self, kind: RequestKind, sector: u64, sectors: u64, data: Option<Arc<[u8]>>, callback: Callback) {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let completed_before = state.completed_writes;
        let info = RequestInfo { id, kind, sector, sectors };
        if let Some(submissions) = &mut state.submissions {
            submissions.push(info);
        }
        state.in_flight.insert(id, InFlight { info, data, completed_before, callback });
    }

    /// A request outside the device: it waits in flight like any other (so it
    /// never completes inline) and completes with `error`, changing nothing.
    fn submit_refused<T: Send + 'static>(&self, kind: RequestKind, sector: u64, sectors: u64, error: IoError, done: IoDone<T>) {
        self.submit(kind, sector, sectors, None, Callback::Refused(Box::new(move || done(Err(error)))));
    }
}

impl BlockDevice for SimDisk {
    fn size_sectors(&self) -> u64 {
        self.sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        SECTOR_BYTES as u32
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory((1 << 56) + self.id)
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        if let Err(error) = check_request(IoOp::Read, sector, sectors as usize * SECTOR_BYTES, self.sectors) {
            return self.submit_refused(RequestKind::Read, sector, u64::from(sectors), error, done);
        }
        self.submit(RequestKind::Read, sector, u64::from(sectors), None, Callback::Read(done));
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let sectors = (data.len() / SECTOR_BYTES) as u64;
        let kind = RequestKind::Write { fua: flags.fua, preflush: flags.preflush };
        if let Err(error) = check_request(IoOp::Write, sector, data.len(), self.sectors) {
            return self.submit_refused(kind, sector, sectors, error, done);
        }
        self.submit(kind, sector, sectors, Some(Arc::from(data)), Callback::Unit(done));
    }

    fn flush(&self, done: IoDone<()>) {
        self.submit(RequestKind::Flush, 0, 0, None, Callback::Unit(done));
    }
}
