//! The shuttle rig: the whole engine on simulated disks, under real thread
//! interleavings: the concurrency the single-threaded world cannot show.
//!
//! The world runs the engine on one thread, so every engine call is atomic
//! there: a race between two lock holds inside one call can never happen.
//! Here the engine is compiled with `--cfg shuttle`, which switches its
//! `sync` facade to shuttle's types, and several threads drive it at once:
//!
//! - **user threads** write the origin, write and read snapshots, one
//!   operation at a time, each waiting for its completion;
//! - **completion threads** complete in-flight disk requests, in an order
//!   shuttle's scheduler picks, and run deferred engine work;
//! - per case, a thread that creates a snapshot or runs a merge.
//!
//! Every user operation and completion goes to the model's oracle (under a
//! plain lock, which is no scheduling point, so the order the oracle sees is
//! the order of the interleaving). At the end every snapshot and the origin
//! are read back and judged, each COW's records are checked (I4, I5), the
//! status lines judged (I12 bounds), and a lost completion shows as a
//! shuttle deadlock (I11). The simulated disks inject no faults: faults are
//! the world's business; this module is about interleavings.
//!
//! The cases themselves are in `sim/tests/shuttle.rs`; this module is
//! the rig they are built with.
//!
//! A failing schedule is written under `target/shuttle-failures/` and the
//! failure prints the command that replays it ([`replay_command`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, Defer, DeviceIdentity, IoDone, WriteFlags};
use engine::store::{StoreConfig, StoreKind};
use engine::targets::{Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use engine::zoo::Mutations;
use model::{Event, Invariant, Oracle, OracleConfig, SnapshotSpec, Target, Violation};
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::Mutex;
use shuttle::sync::mpsc::{Receiver, Sender, channel};

use crate::disk::{FaultRates, Image, SimDisk};
use crate::world::observer::{Observer, lock};
use crate::world::{initial_origin, initial_sector, label_sectors, sector_hash, sector_hashes, tagged};

/// How a case is explored.
#[derive(Debug, Clone)]
pub struct Config {
    /// Schedules tried. Default 2000; `SNAPSIM_SHUTTLE_ITERATIONS` overrides
    /// (the nightly soak runs tens of thousands).
    pub iterations: usize,
    /// Which scheduler picks the interleavings. Default random;
    /// `SNAPSIM_SHUTTLE_SCHEDULER=pct` (or `pct:3`) switches to PCT.
    pub scheduler: Scheduler,
    /// The random scheduler's seed. Default 0; `SNAPSIM_SHUTTLE_SEED` overrides.
    pub seed: u64,
    /// Historical bugs switched on in the engine. Default none.
    pub mutations: Mutations,
}

/// Shuttle's schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Uniformly random choice at every scheduling point.
    Random,
    /// Probabilistic concurrency testing with this many priority change points.
    Pct { depth: usize },
}

impl Default for Config {
    fn default() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        let iterations = env("SNAPSIM_SHUTTLE_ITERATIONS").and_then(|v| v.parse().ok()).unwrap_or(2000);
        let seed = env("SNAPSIM_SHUTTLE_SEED").and_then(|v| v.parse().ok()).unwrap_or(0);
        let scheduler = match env("SNAPSIM_SHUTTLE_SCHEDULER").as_deref() {
            Some(pct) if pct.starts_with("pct") => Scheduler::Pct { depth: pct.strip_prefix("pct:").and_then(|d| d.parse().ok()).unwrap_or(3) },
            _ => Scheduler::Random,
        };
        Self { iterations, scheduler, seed, mutations: Mutations::NONE }
    }
}

/// A case: a small world with its threads, run once per schedule. Its
/// name (the test's name) goes into the replay command.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub body: fn(Mutations),
}

/// The command that replays a failing schedule saved at `schedule`.
pub fn replay_command(case: Case, schedule: &std::path::Path, mutations: Mutations) -> String {
    debug_assert!(!case.name.is_empty(), "a case has a name");
    let mutation = engine::zoo::Mutation::ALL.into_iter().find(|&m| mutations.has(m));
    let mutation = mutation.map(|m| format!("SNAPSIM_SHUTTLE_MUTATION={} ", m.id())).unwrap_or_default();
    format!(
        "{mutation}SNAPSIM_SHUTTLE_CASE={} SNAPSIM_SHUTTLE_REPLAY={} RUSTFLAGS='--cfg shuttle' cargo test -p sim --release --target-dir target/shuttle --test shuttle -- replay_saved_schedule --exact --nocapture",
        case.name,
        schedule.display(),
    )
}

fn failure_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/shuttle-failures")
}

/// Explores `case` under `config`; panics, after printing the replay command,
/// if any schedule breaks an invariant or deadlocks.
pub fn check(case: Case, config: &Config) {
    let dir = failure_dir();
    let _ = std::fs::create_dir_all(&dir);
    let before: Vec<PathBuf> = saved_schedules(&dir);
    let mut shuttle_config = shuttle::Config::new();
    shuttle_config.failure_persistence = shuttle::FailurePersistence::File(Some(dir.clone()));
    shuttle_config.max_steps = shuttle::MaxSteps::FailAfter(200_000);
    let mutations = config.mutations;
    EXECUTIONS.store(0, Ordering::SeqCst);
    let body = move || {
        EXECUTIONS.fetch_add(1, Ordering::SeqCst);
        (case.body)(mutations);
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match config.scheduler {
        Scheduler::Random => {
            let scheduler = shuttle::scheduler::RandomScheduler::new_from_seed(config.seed, config.iterations);
            shuttle::Runner::new(scheduler, shuttle_config).run(body);
        }
        Scheduler::Pct { depth } => {
            let scheduler = shuttle::scheduler::PctScheduler::new_from_seed(config.seed, depth, config.iterations);
            shuttle::Runner::new(scheduler, shuttle_config).run(body);
        }
    }));
    if let Err(panic) = outcome {
        let saved = saved_schedules(&dir).into_iter().find(|p| !before.contains(p));
        match saved {
            Some(schedule) => eprintln!("replay: {}", replay_command(case, &schedule, mutations)),
            None => eprintln!("replay: no schedule was saved under {}", dir.display()),
        }
        std::panic::resume_unwind(panic);
    }
    println!("{}: {} schedules under {:?}, all passed", case.name, EXECUTIONS.load(Ordering::SeqCst), config.scheduler);
}

/// Schedules run by the current [`check`] (for its report line).
static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

/// Replays the schedule saved in `schedule` for `case`.
pub fn replay(case: Case, schedule: &std::path::Path, mutations: Mutations) {
    shuttle::replay_from_file(move || (case.body)(mutations), schedule);
}

fn saved_schedules(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

// ---- the machinery of one execution ----

/// Work for the completion threads.
enum Job {
    /// A request was submitted to disk `n`: complete one of its requests.
    Complete(usize),
    /// Deferred engine work.
    Deferred(Box<dyn FnOnce() + Send>),
    /// The run is over.
    Stop,
}

/// Where jobs are posted, and how many are not yet done.
#[derive(Clone)]
struct Jobs {
    sender: Arc<Mutex<Sender<Job>>>,
    outstanding: Arc<AtomicUsize>,
}

impl Jobs {
    fn post(&self, job: Job) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        self.sender.lock().expect("job sender").send(job).expect("completion threads alive");
    }
}

impl Defer for Jobs {
    fn defer(&self, work: Box<dyn FnOnce() + Send + 'static>) {
        self.post(Job::Deferred(work));
    }
}

/// A simulated disk whose every request posts a completion job.
pub struct ThreadedDisk {
    disk: Arc<SimDisk>,
    index: usize,
    jobs: Jobs,
}

impl std::fmt::Debug for ThreadedDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedDisk").field("index", &self.index).finish()
    }
}

impl BlockDevice for ThreadedDisk {
    fn size_sectors(&self) -> u64 {
        self.disk.size_sectors()
    }
    fn logical_block_bytes(&self) -> u32 {
        self.disk.logical_block_bytes()
    }
    fn identity(&self) -> DeviceIdentity {
        self.disk.identity()
    }
    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        self.disk.read(sector, sectors, done);
        self.jobs.post(Job::Complete(self.index));
    }
    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        self.disk.write(sector, data, flags, done);
        self.jobs.post(Job::Complete(self.index));
    }
    fn flush(&self, done: IoDone<()>) {
        self.disk.flush(done);
        self.jobs.post(Job::Complete(self.index));
    }
}

/// Completes requests and runs deferred work until told to stop.
fn completion_thread(jobs: Arc<Mutex<Receiver<Job>>>, disks: Vec<Arc<SimDisk>>, outstanding: Arc<AtomicUsize>) {
    loop {
        let job = jobs.lock().expect("job receiver").recv().expect("job senders alive");
        match job {
            Job::Stop => return,
            Job::Complete(index) => {
                let disk = &disks[index];
                // One token per request: at least one is in flight, and no
                // scheduling point separates choosing it from completing it.
                let count = disk.in_flight_count();
                assert!(count > 0, "a completion job with no request in flight");
                let id = disk.in_flight_id(thread_rng().gen_range(0..count)).expect("in range");
                disk.complete(id).run();
            }
            Job::Deferred(work) => work(),
        }
        outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

type Shared = Arc<StdMutex<Observer>>;
type Device = Arc<dyn BlockDevice>;

/// One execution's engine, disks and observer.
pub struct Rig {
    jobs: Jobs,
    pub disks: Vec<Arc<SimDisk>>,
    pub origin: Arc<Origin<ThreadedDisk>>,
    origin_device: Arc<OriginDevice<ThreadedDisk>>,
    pub snapshots: Vec<Arc<Snapshot<ThreadedDisk>>>,
    pub devices: Vec<Arc<SnapshotDevice<ThreadedDisk>>>,
    shared: Shared,
    next_op: Arc<AtomicU64>,
    completion_threads: Vec<shuttle::thread::JoinHandle<()>>,
    /// COWs for snapshots created during the run, which the oracle does not know.
    pub spare_cows: Vec<Arc<ThreadedDisk>>,
}

/// The shape of a case's world.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The origin's size, in chunks of [`BASE_CHUNK_SECTORS`].
    pub origin_chunks: u64,
    /// One snapshot per entry, of this chunk size.
    pub chunk_sectors: Vec<u32>,
    pub cow_threshold: usize,
    /// COWs made ready for snapshots created during the run.
    pub spare_cows: usize,
}

/// The chunk size [`chunk`] counts in.
pub const BASE_CHUNK_SECTORS: u64 = 8;

impl Rig {
    pub fn new(shape: &Shape, mutations: Mutations) -> Self {
        let origin_sectors = shape.origin_chunks * BASE_CHUNK_SECTORS;
        let (origin_image, initial) = initial_origin(origin_sectors);
        let cow_sectors = |chunk_sectors: u32| u64::from(chunk_sectors) * (origin_sectors / u64::from(chunk_sectors) + 8);
        let specs = shape
            .chunk_sectors
            .iter()
            .map(|&chunk_sectors| SnapshotSpec { chunk_sectors, overflow_store: false, cow_sectors: cow_sectors(chunk_sectors) })
            .collect();
        let mut oracle = Oracle::new(OracleConfig {
            initial: Arc::clone(&initial),
            snapshots: specs,
            strict: false,
            cow_threshold: shape.cow_threshold as u32,
            kernel_patches_applied: false,
        });
        label_sectors(&mut oracle, &origin_image, &initial);
        let (sender, receiver) = channel();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let jobs = Jobs { sender: Arc::new(Mutex::new(sender)), outstanding: Arc::clone(&outstanding) };
        let mut images = vec![Image::from_bytes(origin_image)];
        images.extend(shape.chunk_sectors.iter().map(|&c| Image::zeroed(cow_sectors(c))));
        images.extend((0..shape.spare_cows).map(|_| Image::zeroed(cow_sectors(BASE_CHUNK_SECTORS as u32))));
        let disks: Vec<Arc<SimDisk>> =
            images.into_iter().enumerate().map(|(i, image)| Arc::new(SimDisk::new(i as u64 + 1, image, FaultRates::default(), i as u64))).collect();
        let threaded: Vec<Arc<ThreadedDisk>> =
            disks.iter().enumerate().map(|(index, disk)| Arc::new(ThreadedDisk { disk: Arc::clone(disk), index, jobs: jobs.clone() })).collect();
        let receiver = Arc::new(Mutex::new(receiver));
        let completion_threads = (0..2)
            .map(|_| {
                let (receiver, disks, outstanding) = (Arc::clone(&receiver), disks.clone(), Arc::clone(&outstanding));
                shuttle::thread::spawn(move || completion_thread(receiver, disks, outstanding))
            })
            .collect();
        let config = OriginConfig { cow_threshold: shape.cow_threshold, mutations, ..OriginConfig::default() };
        let origin = Origin::new(Arc::clone(&threaded[0]), Arc::new(jobs.clone()), config);
        let mut rig = Self {
            jobs,
            origin_device: Arc::new(OriginDevice::new(Arc::clone(&origin))),
            origin,
            snapshots: Vec::new(),
            devices: Vec::new(),
            shared: Arc::new(StdMutex::new(Observer::quiet(oracle))),
            next_op: Arc::new(AtomicU64::new(0)),
            completion_threads,
            spare_cows: threaded[1 + shape.chunk_sectors.len()..].to_vec(),
            disks,
        };
        for (k, &chunk_sectors) in shape.chunk_sectors.iter().enumerate() {
            let snapshot = rig.create_snapshot(Arc::clone(&threaded[k + 1]), chunk_sectors);
            rig.devices.push(Arc::new(SnapshotDevice::new(Arc::clone(&snapshot))));
            rig.snapshots.push(snapshot);
        }
        rig
    }

    /// Creates a snapshot on `cow` and waits for it.
    pub fn create_snapshot(&self, cow: Arc<ThreadedDisk>, chunk_sectors: u32) -> Arc<Snapshot<ThreadedDisk>> {
        let (sender, receiver) = channel();
        let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: Some(chunk_sectors), ..StoreConfig::default() };
        self.origin
            .create_snapshot(cow, config, Box::new(move |created| sender.send(created).expect("creator waiting")))
            .expect("snapshot table accepted");
        receiver.recv().expect("snapshot load completed").expect("snapshot created")
    }

    /// A user: runs `ops` one at a time, each waiting for its completion.
    pub fn user(&self, ops: Vec<Op>) -> shuttle::thread::JoinHandle<()> {
        let user = self.user_handle();
        shuttle::thread::spawn(move || {
            for op in ops {
                user.run(op);
            }
        })
    }

    pub fn user_handle(&self) -> User {
        User {
            shared: Arc::clone(&self.shared),
            next_op: Arc::clone(&self.next_op),
            origin: self.origin_device.clone(),
            snapshots: self.devices.clone(),
        }
    }

    /// Waits until no request is in flight and no work is queued.
    pub fn quiesce(&self) {
        while self.jobs.outstanding.load(Ordering::SeqCst) != 0 {
            shuttle::thread::yield_now();
        }
    }

    /// Reads everything back and judges it; stops the completion threads.
    pub fn finish(self) {
        self.quiesce();
        for (k, snapshot) in self.snapshots.iter().enumerate() {
            let (_, copies_max) = snapshot.copies_in_flight();
            let status = Event::Status {
                snapshot: k,
                valid: snapshot.is_valid(),
                overflowed: snapshot.is_overflowed(),
                quiescent: true,
                copies_max: copies_max as u32,
            };
            self.emit(status);
            let judged = snapshot.is_valid() && lock(&self.shared).oracle.judges(k);
            if judged && snapshot.role() == Role::Snapshot {
                let cow = &self.disks[k + 1];
                let verdict = cow.with_cached(|source| lock(&self.shared).oracle.check_cow(k, source).map(|_| ()));
                self.judge(verdict);
            }
            if judged {
                let device = Arc::clone(&self.devices[k]);
                self.read_back(device, |oracle, sector, value| oracle.check_view_sector(k, sector, value, false, true));
            }
        }
        let origin: Device = self.origin_device.clone();
        self.read_back(origin, |oracle, sector, value| oracle.check_origin_sector(sector, value));
        self.quiesce();
        for _ in &self.completion_threads {
            self.jobs.post(Job::Stop);
        }
        for thread in self.completion_threads {
            thread.join().expect("completion thread");
        }
    }

    fn read_back(&self, device: Device, check: impl Fn(&mut Oracle, u64, u64) -> Result<(), Violation>) {
        let sectors = device.size_sectors();
        for start in (0..sectors).step_by(64) {
            let count = (sectors - start).min(64) as u32;
            let data = wait(|done| device.read(start, count, done)).unwrap_or_else(|error| panic!("read-back at sector {start} failed: {error}"));
            for (i, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
                let verdict = check(&mut lock(&self.shared).oracle, start + i as u64, sector_hash(bytes));
                self.judge(verdict);
            }
        }
    }

    /// Hands `event` to the oracle.
    pub fn emit(&self, event: Event) {
        emit(&self.shared, event);
    }

    /// Records a verdict of the case's own; panics if anything has failed.
    pub fn judge(&self, verdict: Result<(), Violation>) {
        judge(&self.shared, verdict);
    }
}

/// Hands `event` to the oracle; panics with its story if anything has failed.
fn emit(shared: &Shared, event: Event) {
    lock(shared).emit(event);
    judge(shared, Ok(()));
}

/// Records `verdict`; panics with the oracle's story if anything has failed.
fn judge(shared: &Shared, verdict: Result<(), Violation>) {
    let mut observer = lock(shared);
    if let Err(violation) = verdict {
        observer.fail(violation);
    }
    if let Some(failure) = &observer.failure {
        panic!("{}", failure.violation);
    }
}

/// Waits on a shuttle channel for a completion.
pub fn wait<T: Send + 'static>(start: impl FnOnce(IoDone<T>)) -> Result<T, engine::IoError> {
    let (sender, receiver) = channel();
    start(Box::new(move |result| sender.send(result).expect("waiter alive")));
    match receiver.recv() {
        Ok(result) => result,
        Err(_) => panic!("{}", Violation::new(Invariant::I11Liveness, String::from("an operation's completion was dropped without being called"))),
    }
}

/// A user operation.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    WriteOrigin { sector: u64, sectors: u64 },
    WriteSnapshot { k: usize, sector: u64, sectors: u64 },
    ReadSnapshot { k: usize, sector: u64, sectors: u64 },
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("disks", &self.disks.len()).field("snapshots", &self.snapshots.len()).finish_non_exhaustive()
    }
}

/// A user thread's handle: runs operations and tells the oracle.
pub struct User {
    shared: Shared,
    next_op: Arc<AtomicU64>,
    origin: Arc<OriginDevice<ThreadedDisk>>,
    snapshots: Vec<Arc<SnapshotDevice<ThreadedDisk>>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("snapshots", &self.snapshots.len()).finish_non_exhaustive()
    }
}

impl User {
    /// Runs `op` to completion; returns the sector values a write wrote.
    pub fn run(&self, op: Op) -> Option<Arc<[u64]>> {
        let id = self.next_op.fetch_add(1, Ordering::SeqCst);
        match op {
            Op::WriteOrigin { sector, sectors } => {
                let data = tagged(&format!("o{id:05}"), sectors);
                let values = self.emit_write(id, Target::Origin, sector, &data);
                let result = wait(|done| self.origin.write(sector, data, WriteFlags::PLAIN, done));
                self.emit(Event::Ack { op: id, ok: result.is_ok() });
                Some(values)
            }
            Op::WriteSnapshot { k, sector, sectors } => {
                let data = tagged(&format!("s{k}{id:05}"), sectors);
                let values = self.emit_write(id, Target::Snapshot(k), sector, &data);
                let result = wait(|done| self.snapshots[k].write(sector, data, WriteFlags::PLAIN, done));
                self.emit(Event::Ack { op: id, ok: result.is_ok() });
                Some(values)
            }
            Op::ReadSnapshot { k, sector, sectors } => {
                self.emit(Event::Read { op: id, target: Target::Snapshot(k), sector, sectors });
                let device = &self.snapshots[k];
                let result = wait(|done| device.read(sector, sectors as u32, done));
                let snapshot_valid = device.snapshot().is_valid();
                let values = result.ok().map(|data| Arc::from(sector_hashes(&data)));
                self.emit(Event::ReadDone { op: id, values, snapshot_valid });
                None
            }
        }
    }

    fn emit_write(&self, op: u64, target: Target, sector: u64, data: &[u8]) -> Arc<[u64]> {
        let values: Arc<[u64]> = Arc::from(sector_hashes(data));
        label_sectors(&mut lock(&self.shared).oracle, data, &values);
        self.emit(Event::Write { op, target, sector, values: Arc::clone(&values), flags: model::UserFlags::PLAIN });
        values
    }

    fn emit(&self, event: Event) {
        emit(&self.shared, event);
    }
}

/// The first sector of chunk `c` (of [`BASE_CHUNK_SECTORS`]).
pub fn chunk(c: u64) -> u64 {
    c * BASE_CHUNK_SECTORS
}

/// Joins the user threads.
pub fn join_all(threads: Vec<shuttle::thread::JoinHandle<()>>) {
    for thread in threads {
        thread.join().expect("user thread");
    }
}

/// The value (hash) a sector holds before any write.
pub fn initial_value(sector: u64) -> u64 {
    sector_hash(&initial_sector(sector))
}

/// The value (hash) of a sector's bytes.
pub fn value_of(bytes: &[u8]) -> u64 {
    sector_hash(bytes)
}
