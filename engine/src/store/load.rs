//! Loading a persistent store: header, then every metadata area with read-ahead.
//!
//! The kernel reads areas through dm-bufio, prefetching up to 12 areas ahead
//! of the one it is parsing. Here up to `1 + PREFETCH_AREAS` area reads are in
//! flight; they may complete in any order, so results wait in `arrived` until
//! every earlier area has been parsed. Parsing stops at the first area that is
//! not full. Reads issued past it are still waited for (and discarded), so no
//! I/O of the load outlives its completion.
//!
//! Unlike the kernel, loading validates what it reads: a record that points
//! outside the COW or at metadata, two records for one origin chunk, or two
//! for one COW chunk, refuse the load with an error naming the record.

use std::collections::BTreeMap;

use super::persistent::State;
use super::{KernelPatches, LoadOutcome, Loaded, PersistentStore, StoreConfig, StoreError};
use crate::chunk::{ChunkSize, DEFAULT_CHUNK_SECTORS};
use crate::exception_table::ExceptionTable;
use crate::format::{DISK_VERSION, DiskHeader, HEADER_CHUNKS, Layout, Record, SNAP_MAGIC};
use crate::io::{BlockDevice, IoError, SECTOR_BYTES, WriteFlags};
use crate::sync::{Arc, Mutex};
use crate::zoo::{Mutation, Mutations};

/// Areas read ahead of the one being parsed (the kernel's `DM_PREFETCH_CHUNKS`).
pub const PREFETCH_AREAS: u64 = 12;

/// Receives the result of [`PersistentStore::load`].
pub type LoadDone<D> = Box<dyn FnOnce(Result<Loaded<D>, StoreError>) + Send + 'static>;

/// Everything fixed once the header has been read.
struct Setup<D: BlockDevice> {
    cow: Arc<D>,
    config: StoreConfig,
    kernel_patches: KernelPatches,
    layout: Layout,
    device_chunks: u64,
    chunk_size_override: Option<(u32, u32)>,
}

impl<D: BlockDevice> PersistentStore<D> {
    /// Loads (or, on a zeroed header, creates) the store on `cow`, writing
    /// headers as the stock kernel does ([`KernelPatches::Stock`]).
    ///
    /// A table chunk size that is invalid for the devices is refused at once
    /// with an error, and `done` is never called. Otherwise `done` is called
    /// exactly once, after every I/O of the load has completed.
    pub fn load(cow: Arc<D>, origin_block_bytes: u32, config: StoreConfig, done: LoadDone<D>) -> Result<(), StoreError> {
        Self::load_with_kernel_patches(cow, origin_block_bytes, config, KernelPatches::Stock, done)
    }

    /// [`PersistentStore::load`], with the store writing its headers (a new
    /// snapshot's, and the invalidated one) as `kernel_patches` says.
    pub fn load_with_kernel_patches(
        cow: Arc<D>,
        origin_block_bytes: u32,
        config: StoreConfig,
        kernel_patches: KernelPatches,
        done: LoadDone<D>,
    ) -> Result<(), StoreError> {
        let cow_block_bytes = cow.logical_block_bytes();
        let table_chunk = match config.chunk_sectors {
            Some(sectors) => ChunkSize::new(sectors, cow_block_bytes, origin_block_bytes).map_err(StoreError::TableChunkSize)?,
            None => {
                let sectors = DEFAULT_CHUNK_SECTORS.max(cow_block_bytes / SECTOR_BYTES as u32);
                ChunkSize::new(sectors, cow_block_bytes, origin_block_bytes).map_err(StoreError::TableChunkSize)?
            }
        };
        let header_sectors = (cow_block_bytes as usize / SECTOR_BYTES).max(1) as u32;
        assert!(header_sectors as usize * SECTOR_BYTES >= crate::format::HEADER_BYTES, "a header read of {header_sectors} sectors misses fields");
        // A chunk is a whole number of the COW's blocks: the header read stays in chunk 0.
        assert!(header_sectors <= table_chunk.sectors(), "a header read of {header_sectors} sectors past chunk 0");
        if cow.size_sectors() < u64::from(header_sectors) {
            return Err(too_small(cow.size_sectors(), table_chunk));
        }
        let reader = Arc::clone(&cow);
        reader.read(
            0,
            header_sectors,
            Box::new(move |result| match on_header(cow, origin_block_bytes, (config, kernel_patches), table_chunk, result) {
                HeaderNext::Finished(outcome) => done(outcome),
                HeaderNext::CreateNew(setup) => create_new(setup, done),
                HeaderNext::ReadAreas(setup) => AreaReader::start(setup, done),
            }),
        );
        Ok(())
    }
}

fn too_small(device_sectors: u64, chunk: ChunkSize) -> StoreError {
    // Too small means no room for the header, metadata area 0 and one data chunk.
    debug_assert!(chunk.chunks_in(device_sectors) < HEADER_CHUNKS + 2, "{device_sectors} sectors called too small for {chunk:?}");
    StoreError::CowTooSmall { device_sectors, chunk_sectors: chunk.sectors(), chunks: chunk.chunks_in(device_sectors) }
}

enum HeaderNext<D: BlockDevice> {
    Finished(Result<Loaded<D>, StoreError>),
    CreateNew(Setup<D>),
    ReadAreas(Setup<D>),
}

fn on_header<D: BlockDevice>(
    cow: Arc<D>,
    origin_block_bytes: u32,
    (config, kernel_patches): (StoreConfig, KernelPatches),
    table_chunk: ChunkSize,
    result: Result<Vec<u8>, IoError>,
) -> HeaderNext<D> {
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(error) => return HeaderNext::Finished(Err(StoreError::io("reading the COW header", error))),
    };
    let header = DiskHeader::decode(&bytes);
    let device_sectors = cow.size_sectors();
    let setup = |chunk: ChunkSize, chunk_size_override| {
        let device_chunks = chunk.chunks_in(device_sectors);
        if device_chunks < HEADER_CHUNKS + 2 {
            return Err(too_small(device_sectors, chunk));
        }
        Ok(Setup { cow: Arc::clone(&cow), config, kernel_patches, layout: Layout::new(chunk), device_chunks, chunk_size_override })
    };
    if header.magic == 0 {
        return match setup(table_chunk, None) {
            Ok(setup) => HeaderNext::CreateNew(setup),
            Err(error) => HeaderNext::Finished(Err(error)),
        };
    }
    if header.magic != SNAP_MAGIC {
        return HeaderNext::Finished(Err(StoreError::BadMagic { found: header.magic }));
    }
    let mut chunk = table_chunk;
    let mut chunk_size_override = None;
    if header.chunk_size != table_chunk.sectors() {
        if config.chunk_sectors.is_some() {
            log::warn!("chunk size {} in device metadata overrides table chunk size of {}", header.chunk_size, table_chunk.sectors());
            chunk_size_override = Some((table_chunk.sectors(), header.chunk_size));
        }
        chunk = match ChunkSize::new(header.chunk_size, cow.logical_block_bytes(), origin_block_bytes) {
            Ok(chunk) => chunk,
            Err(source) => {
                return HeaderNext::Finished(Err(StoreError::HeaderChunkSize { value: header.chunk_size, source }));
            }
        };
    }
    // A valid header's chunk size is the one in force; a table's different one was overridden.
    assert_eq!(chunk.sectors(), header.chunk_size, "loading with another chunk size than the header's");
    assert!(chunk_size_override.is_none() || config.chunk_sectors.is_some(), "override of a chunk size the table did not give");
    if header.version != DISK_VERSION {
        return HeaderNext::Finished(Err(StoreError::UnsupportedVersion { found: header.version }));
    }
    let setup = match setup(chunk, chunk_size_override) {
        Ok(setup) => setup,
        Err(error) => return HeaderNext::Finished(Err(error)),
    };
    if header.valid == 0 {
        crate::cov::hit(crate::cov::Mark::LoadFoundInvalidHeader);
        let mut state = State::new(chunk);
        state.valid = false;
        return HeaderNext::Finished(Ok(finish(setup, state, LoadOutcome::Invalid, ExceptionTable::new())));
    }
    HeaderNext::ReadAreas(setup)
}

fn finish<D: BlockDevice>(setup: Setup<D>, state: State, outcome: LoadOutcome, exceptions: ExceptionTable) -> Loaded<D> {
    assert!(setup.device_chunks >= HEADER_CHUNKS + 2, "a store of {} chunks", setup.device_chunks);
    assert_eq!(state.valid, outcome != LoadOutcome::Invalid, "a {outcome:?} load with valid = {}", state.valid);
    assert!(outcome == LoadOutcome::Valid || exceptions.is_empty(), "a {outcome:?} load with exceptions");
    assert_eq!(state.pending_count, 0, "a store loaded with exceptions pending");
    state.check(setup.layout, setup.config.mutations);
    let store = PersistentStore {
        cow: setup.cow,
        kind: setup.config.kind,
        layout: setup.layout,
        mutations: setup.config.mutations,
        kernel_patches: setup.kernel_patches,
        state: Mutex::new(state),
    };
    Loaded { store: Arc::new(store), outcome, exceptions, chunk_size_override: setup.chunk_size_override }
}

/// A new snapshot: its header and an empty metadata area 0. The stock
/// kernel writes the header, then zeroes the area, both plain writes that
/// the first commit's PREFLUSH makes durable; a crash before it can keep
/// the header and lose the zeroing (K3). With [`KernelPatches::Applied`] the
/// zeroing goes first and the header follows with PREFLUSH, so the header
/// can reach the media only after the zeroing has.
fn create_new<D: BlockDevice>(setup: Setup<D>, done: LoadDone<D>) {
    crate::cov::hit(crate::cov::Mark::LoadCreatedNewCow);
    let chunk = setup.layout.chunk();
    let header = DiskHeader::new(true, chunk).encode_chunk(chunk);
    // What a new snapshot writes, the next load reads back as valid with this chunk size.
    debug_assert_eq!(DiskHeader::decode(&header), DiskHeader { magic: SNAP_MAGIC, valid: 1, version: DISK_VERSION, chunk_size: chunk.sectors() });
    assert_eq!(setup.layout.area_location(0), HEADER_CHUNKS, "area 0 follows the header");
    let area_sector = chunk.chunk_to_sector(setup.layout.area_location(0));
    let zeros =
        NewWrite { sector: area_sector, bytes: vec![0; chunk.bytes()], flags: WriteFlags::PLAIN, what: "zeroing metadata area 0 of a new snapshot" };
    let writes = match setup.kernel_patches {
        KernelPatches::Stock => {
            let header = NewWrite { sector: 0, bytes: header, flags: WriteFlags::PLAIN, what: "writing the header of a new snapshot" };
            [header, zeros]
        }
        KernelPatches::Applied => {
            // The flush before the header makes the zeroing, completed by then, durable.
            let flags = WriteFlags { preflush: true, ..WriteFlags::PLAIN };
            [zeros, NewWrite { sector: 0, bytes: header, flags, what: "writing the header of a new snapshot" }]
        }
    };
    write_in_order(setup, writes.into(), done);
}

/// One write of a new snapshot's metadata, and what it is (for its error).
struct NewWrite {
    sector: u64,
    bytes: Vec<u8>,
    flags: WriteFlags,
    what: &'static str,
}

/// Issues `writes` one after the other, each once the previous one has
/// completed; the store is ready once the last has.
fn write_in_order<D: BlockDevice>(setup: Setup<D>, mut writes: std::collections::VecDeque<NewWrite>, done: LoadDone<D>) {
    let Some(write) = writes.pop_front() else {
        let state = State::new(setup.layout.chunk());
        return done(Ok(finish(setup, state, LoadOutcome::New, ExceptionTable::new())));
    };
    // Only the header chunk and area 0 are written for a new snapshot.
    debug_assert!(write.sector < setup.layout.chunk().chunk_to_sector(HEADER_CHUNKS + 1), "new-snapshot write at sector {}", write.sector);
    assert!(!write.flags.fua, "a new snapshot's {} with FUA", write.what);
    let cow = Arc::clone(&setup.cow);
    cow.write(
        write.sector,
        write.bytes,
        write.flags,
        Box::new(move |result| match result {
            Err(error) => done(Err(StoreError::io(write.what, error))),
            Ok(()) => write_in_order(setup, writes, done),
        }),
    );
}

/// The read-ahead loader of metadata areas.
struct AreaReader<D: BlockDevice> {
    cow: Arc<D>,
    layout: Layout,
    mutations: Mutations,
    device_chunks: u64,
    /// Handed to the loaded store once the last area has been parsed.
    setup: Option<Setup<D>>,
    done: Option<LoadDone<D>>,
    /// The next area to parse.
    parse_next: u64,
    /// The next area to read.
    read_next: u64,
    in_flight: usize,
    /// Reads completed ahead of their turn.
    arrived: BTreeMap<u64, Result<Vec<u8>, IoError>>,
    records: Vec<Record>,
    /// One bit per COW chunk: claimed by a record already parsed.
    claimed: Vec<u64>,
    /// One past the highest COW chunk claimed (the allocator's start).
    next_free: u64,
    result: Option<Result<Loaded<D>, StoreError>>,
}

impl<D: BlockDevice> AreaReader<D> {
    fn start(setup: Setup<D>, done: LoadDone<D>) {
        let words = setup.device_chunks.div_ceil(64) as usize;
        assert!(words as u64 * 64 >= setup.device_chunks, "the claimed bitmap misses COW chunks");
        // Area 0 is on the device, so the first read is.
        assert!(setup.layout.area_location(0) < setup.device_chunks, "area 0 beyond a device of {} chunks", setup.device_chunks);
        let reader = Arc::new(Mutex::new(AreaReader {
            cow: Arc::clone(&setup.cow),
            layout: setup.layout,
            mutations: setup.config.mutations,
            device_chunks: setup.device_chunks,
            setup: Some(setup),
            done: Some(done),
            parse_next: 0,
            read_next: 0,
            in_flight: 0,
            arrived: BTreeMap::new(),
            records: Vec::new(),
            claimed: vec![0; words],
            next_free: HEADER_CHUNKS + 1,
            result: None,
        }));
        Self::progress(&reader);
    }

    /// Parses what has arrived in order, issues reads up to the read-ahead
    /// window, and reports once parsing is over and no read is in flight.
    fn progress(this: &Arc<Mutex<Self>>) {
        let mut reads = Vec::new();
        let (report, cow, layout) = {
            let mut reader = this.lock();
            reader.parse_arrived();
            // Reads that arrived early wait for every area before them to be parsed (Z8 strands those it skips).
            debug_assert!(
                reader.mutations.has(Mutation::Z8LoadSkipsEveryOtherArea) || reader.arrived.keys().all(|&area| area > reader.parse_next),
                "area read held back while its turn has come"
            );
            if reader.result.is_none() {
                reader.plan_reads(&mut reads);
            }
            let report = if reader.result.is_some() && reader.in_flight == 0 { reader.done.take().zip(reader.result.take()) } else { None };
            (report, Arc::clone(&reader.cow), reader.layout)
        };
        for area in reads {
            let this = Arc::clone(this);
            debug_assert!(layout.is_metadata_chunk(layout.area_location(area)), "area {area} read from a data chunk");
            let sector = layout.chunk().chunk_to_sector(layout.area_location(area));
            cow.read(
                sector,
                layout.chunk().sectors(),
                Box::new(move |result| {
                    {
                        let mut reader = this.lock();
                        assert!(reader.in_flight > 0, "area {area} read completed, uncounted");
                        // The load reports only once no read is in flight.
                        assert!(reader.done.is_some(), "area {area} read completed after the load finished");
                        reader.in_flight -= 1;
                        if reader.result.is_none() {
                            let previous = reader.arrived.insert(area, result);
                            assert!(previous.is_none(), "area {area} read twice");
                        }
                    }
                    Self::progress(&this);
                }),
            );
        }
        if let Some((done, result)) = report {
            done(result);
        }
    }

    fn plan_reads(&mut self, reads: &mut Vec<u64>) {
        assert!(self.result.is_none(), "reads planned for a load that has finished");
        // Every area before the one to parse has arrived, so reads in flight are of areas from it on.
        assert!(
            self.mutations.has(Mutation::Z8LoadSkipsEveryOtherArea) || self.in_flight as u64 <= self.read_next - self.parse_next,
            "{} reads in flight for areas {}..{}",
            self.in_flight,
            self.parse_next,
            self.read_next
        );
        let (layout, device_chunks) = (self.layout, self.device_chunks);
        if self.read_next <= self.parse_next && layout.area_location(self.parse_next) >= device_chunks {
            let area = self.parse_next;
            self.fail(StoreError::AreaBeyondDevice { area, chunk: layout.area_location(area), device_chunks });
            return;
        }
        while self.read_next <= self.parse_next + PREFETCH_AREAS && layout.area_location(self.read_next) < device_chunks {
            reads.push(self.read_next);
            self.read_next += 1;
            self.in_flight += 1;
        }
        assert!(self.read_next <= self.parse_next + PREFETCH_AREAS + 1, "read ahead to area {} from area {}", self.read_next, self.parse_next);
    }

    fn fail(&mut self, error: StoreError) {
        assert!(self.result.is_none(), "a load failed twice, now with: {error}");
        assert!(self.done.is_some(), "a load failed after it reported: {error}");
        self.arrived.clear();
        self.result = Some(Err(error));
    }

    fn parse_arrived(&mut self) {
        while self.result.is_none() {
            let Some(read) = self.arrived.remove(&self.parse_next) else { return };
            let area = self.parse_next;
            assert!(area < self.read_next, "area {area} parsed before it was read");
            match read {
                Err(error) => {
                    crate::cov::hit(crate::cov::Mark::LoadAreaReadError);
                    self.fail(StoreError::io(format!("reading metadata area {area}"), error))
                }
                Ok(bytes) => self.parse_area(area, bytes),
            }
        }
    }

    fn parse_area(&mut self, area: u64, bytes: Vec<u8>) {
        let (layout, device_chunks) = (self.layout, self.device_chunks);
        let per_area = layout.exceptions_per_area();
        assert_eq!(area, self.parse_next, "areas are parsed in order");
        assert_eq!(bytes.len(), layout.chunk().bytes(), "area {area} read as {} bytes", bytes.len());
        let mut used = per_area;
        for index in 0..per_area {
            let record = Record::decode(&bytes, index as usize);
            if record.is_end_marker() {
                used = index;
                break;
            }
            if let Err(error) = self.admit(layout, device_chunks, area, index, record) {
                return self.fail(error);
            }
        }
        if used == per_area {
            crate::cov::hit(crate::cov::Mark::LoadStoppedAtFullAreaBoundary);
            // Z8: the 2.4-era loop stepped over every other area.
            self.parse_next += if self.mutations.has(Mutation::Z8LoadSkipsEveryOtherArea) { 2 } else { 1 };
            return;
        }
        // The last, partial area: it becomes the store's in-memory area.
        if used > 0 {
            crate::cov::hit(crate::cov::Mark::LoadPartialLastArea);
        }
        let setup = self.setup.take().expect("the last area is parsed once");
        let mut state = State::new(layout.chunk());
        state.current_area = area;
        state.current_committed = used;
        state.area = bytes;
        // Whatever follows the end marker is not a record: on a COW this
        // engine (or the kernel) wrote it is zero, on a damaged or hostile
        // one it is garbage that the next commit, overwriting the marker,
        // would bring back to life as records. Cleared here, so a commit
        // writes only what the table holds.
        let tail = used as usize * crate::format::RECORD_BYTES;
        state.area[tail..].fill(0);
        debug_assert_eq!(layout.decode_area(&state.area).records.len(), used as usize);
        if self.mutations.has(Mutation::Z2LastAreaNotKeptAfterLoad) {
            // Z2: the records just read are not carried into the in-memory area.
            state.area.fill(0);
        }
        let z1 = self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad);
        // Z1: the allocator resumes right after the highest chunk in use.
        state.next_free = if z1 { self.next_free } else { layout.skip_metadata(self.next_free) };
        assert!(z1 || !layout.is_metadata_chunk(state.next_free), "allocator would hand out metadata chunk {}", state.next_free);
        assert!(state.next_free >= self.next_free, "allocator behind chunk {} in use", self.next_free - 1);
        let z8 = self.mutations.has(Mutation::Z8LoadSkipsEveryOtherArea);
        // Every area before this one is full, and the records read are all distinct data
        // chunks: there are as many data chunks below this area, so the allocator lies beyond it.
        assert!(z1 || z8 || state.next_free > layout.area_location(area), "allocator at chunk {} before area {area}", state.next_free);
        assert!(
            z8 || self.records.len() as u64 == area * u64::from(per_area) + u64::from(used),
            "{} records read from {area} full areas and {used} more",
            self.records.len()
        );
        let records = std::mem::take(&mut self.records);
        let count = records.len() as u64;
        self.result = Some(match ExceptionTable::from_records(records) {
            Ok(table) => {
                assert_eq!(table.len(), count, "the table holds one exception per record");
                Ok(finish(setup, state, LoadOutcome::Valid, table))
            }
            Err(duplicate) => Err(StoreError::DuplicateOldChunk(duplicate)),
        });
    }

    /// Checks one record against the device and the records before it.
    fn admit(&mut self, layout: Layout, device_chunks: u64, area: u64, index: u32, record: Record) -> Result<(), StoreError> {
        let Record { old_chunk, new_chunk } = record;
        assert!(index < layout.exceptions_per_area(), "record {index} of area {area} is beyond the area");
        assert!(!record.is_end_marker(), "the end marker of area {area} admitted as a record");
        if new_chunk >= device_chunks {
            return Err(StoreError::RecordOutsideCow { area, index, old_chunk, new_chunk, device_chunks });
        }
        if layout.is_metadata_chunk(new_chunk) {
            return Err(StoreError::RecordOnMetadata { area, index, old_chunk, new_chunk });
        }
        let (word, bit) = ((new_chunk / 64) as usize, 1u64 << (new_chunk % 64));
        if self.claimed[word] & bit != 0 {
            let first_old = self.records.iter().find(|r| r.new_chunk == new_chunk).map_or(0, |r| r.old_chunk);
            return Err(StoreError::DuplicateNewChunk { new_chunk, first_old, second_old: old_chunk });
        }
        // Chunk 0 is the end marker's, chunk 1 is area 0: a data chunk comes later.
        debug_assert!(new_chunk > HEADER_CHUNKS, "record on chunk {new_chunk} admitted");
        self.claimed[word] |= bit;
        self.next_free = self.next_free.max(new_chunk + 1);
        self.records.push(record);
        Ok(())
    }
}
