//! User I/O as the targets see it: writes that wait on exceptions, and the
//! splitting of requests at chunk boundaries.
//!
//! Device-mapper splits every bio at the target's `max_io_len` before the
//! target sees it: a snapshot's chunk size, or for an origin the smallest
//! chunk size of its snapshots. [`split`] does the same, and [`Join`]
//! completes the caller's request once every piece has completed (with the
//! first error, if any).

use crate::io::{IoDone, IoError, SECTOR_BYTES, WriteFlags};
use crate::sync::{Arc, Mutex};

/// A write held by a target until an exception it depends on is complete.
pub struct WriteBio {
    pub sector: u64,
    pub data: Vec<u8>,
    pub flags: WriteFlags,
    pub done: IoDone<()>,
}

impl std::fmt::Debug for WriteBio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBio").field("sector", &self.sector).field("sectors", &self.sectors()).finish()
    }
}

impl WriteBio {
    pub fn sectors(&self) -> u64 {
        // Requests are checked for whole sectors before they are split into bios.
        debug_assert_eq!(self.data.len() % SECTOR_BYTES, 0, "a write of {} bytes", self.data.len());
        (self.data.len() / SECTOR_BYTES) as u64
    }

    /// Fails the write.
    pub fn fail(self, error: IoError) {
        assert_eq!(error.op, crate::io::IoOp::Write, "a write failed with a {:?} error", error.op);
        (self.done)(Err(error));
    }
}

/// The pieces `(sector, sectors)` of a request split at multiples of `boundary` sectors.
pub fn split(sector: u64, sectors: u64, boundary: u64) -> Vec<(u64, u64)> {
    assert!(boundary.is_power_of_two(), "split boundary {boundary} is not a power of two");
    // Requests are range-checked against their device first.
    assert!(sector.checked_add(sectors).is_some(), "request of {sectors} sectors at {sector} runs past u64");
    let mut pieces = Vec::new();
    let (mut at, end) = (sector, sector + sectors);
    while at < end {
        let next = ((at / boundary) + 1) * boundary;
        let piece_end = next.min(end);
        // Each piece is non-empty and within one boundary-sized block.
        assert!(at < piece_end && piece_end - at <= boundary, "piece {at}..{piece_end} at boundary {boundary}");
        pieces.push((at, piece_end - at));
        at = piece_end;
    }
    // The pieces tile the request: from its first sector, each where the last ended, to its end.
    debug_assert!(pieces.first().is_none_or(|&(first, _)| first == sector), "pieces start elsewhere than the request");
    debug_assert!(pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "pieces with a gap or an overlap");
    debug_assert_eq!(pieces.iter().map(|&(_, n)| n).sum::<u64>(), sectors, "the pieces cover the request exactly");
    pieces
}

/// The data of one piece of a split write: the whole buffer, moved, when
/// the write is a single piece (the common case); a copy of the piece otherwise.
fn piece_of(data: &mut Vec<u8>, single: bool, offset: usize, sectors: u64) -> Vec<u8> {
    if single {
        debug_assert_eq!((offset, data.len()), (0, sectors as usize * SECTOR_BYTES));
        return std::mem::take(data);
    }
    assert!(offset + sectors as usize * SECTOR_BYTES <= data.len(), "piece at byte {offset} beyond the write");
    data[offset..offset + sectors as usize * SECTOR_BYTES].to_vec()
}

/// Splits a write at multiples of `boundary` sectors and hands each piece to
/// `submit`; `done` runs once every piece has completed. Only the first
/// piece carries `preflush`; every piece carries `fua`.
pub fn split_write(sector: u64, data: Vec<u8>, flags: WriteFlags, boundary: u64, done: IoDone<()>, mut submit: impl FnMut(WriteBio)) {
    assert_eq!(data.len() % SECTOR_BYTES, 0, "a write of {} bytes split", data.len());
    let pieces = split(sector, (data.len() / SECTOR_BYTES) as u64, boundary);
    let single = pieces.len() == 1;
    if !single {
        crate::cov::hit(crate::cov::Mark::OriginWriteSplit);
    }
    let mut data = data;
    let join = Join::new(pieces.len(), (), done);
    for (index, (piece_sector, piece_sectors)) in pieces.into_iter().enumerate() {
        let piece_data = piece_of(&mut data, single, (piece_sector - sector) as usize * SECTOR_BYTES, piece_sectors);
        assert_eq!(piece_data.len() as u64, piece_sectors * SECTOR_BYTES as u64, "piece at sector {piece_sector} carries other data");
        let piece_flags = WriteFlags { preflush: flags.preflush && index == 0, fua: flags.fua };
        submit(WriteBio { sector: piece_sector, data: piece_data, flags: piece_flags, done: join.piece(|_: &mut (), _: ()| {}) });
    }
}

/// A process-unique identity for a target device (dm devices are distinct
/// from the devices under them, and from each other).
pub fn next_target_identity() -> crate::io::DeviceIdentity {
    // A std atomic, not the facade's: an identity orders nothing, and a
    // static needs a `const` constructor, which loom's atomics lack.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Target identities keep to their own range, 2^48 .. 2^49, apart from the devices under them.
    assert!(next < 1 << 48, "target identities used up");
    crate::io::DeviceIdentity::Memory((1 << 48) + next)
}

struct JoinState<T> {
    remaining: usize,
    error: Option<IoError>,
    value: T,
    done: Option<IoDone<T>>,
}

/// Completes one request made of several pieces.
pub struct Join<T> {
    state: Arc<Mutex<JoinState<T>>>,
}

impl<T> std::fmt::Debug for Join<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join").field("remaining", &self.state.lock().remaining).finish()
    }
}

impl<T: Default + Send + 'static> Join<T> {
    /// A join of `pieces` pieces that reports `value` (as filled in by the pieces) to `done`.
    pub fn new(pieces: usize, value: T, done: IoDone<T>) -> Self {
        assert!(pieces > 0, "a request of no pieces");
        Self { state: Arc::new(Mutex::new(JoinState { remaining: pieces, error: None, value, done: Some(done) })) }
    }

    /// The completion of one piece; `fill` stores its result into the joined value.
    pub fn piece<R: Send + 'static>(&self, fill: impl FnOnce(&mut T, R) + Send + 'static) -> IoDone<R> {
        let state = Arc::clone(&self.state);
        Box::new(move |result: Result<R, IoError>| {
            let finished = {
                let mut join = state.lock();
                match result {
                    Ok(piece) => fill(&mut join.value, piece),
                    Err(error) => {
                        join.error.get_or_insert(error);
                    }
                }
                assert!(join.remaining > 0, "a piece completed twice");
                assert!(join.done.is_some(), "a piece completed after its request");
                join.remaining -= 1;
                if join.remaining == 0 {
                    let done = join.done.take().expect("joined request completes once");
                    let outcome = match join.error.take() {
                        Some(error) => Err(error),
                        None => Ok(std::mem::take(&mut join.value)),
                    };
                    Some((done, outcome))
                } else {
                    None
                }
            };
            if let Some((done, outcome)) = finished {
                done(outcome);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_boundaries() {
        assert_eq!(split(0, 8, 8), vec![(0, 8)]);
        assert_eq!(split(6, 12, 8), vec![(6, 2), (8, 8), (16, 2)]);
        assert_eq!(split(3, 1, 1), vec![(3, 1)]);
    }

    #[test]
    fn join_reports_once_with_the_first_error() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let join = Join::new(3, Vec::<u8>::new(), Box::new(move |r: Result<Vec<u8>, IoError>| log.lock().push(r.map_err(|e| e.sector))));
        let error = |sector| IoError::new(crate::io::IoOp::Read, sector, 1, crate::io::IoErrorKind::Media);
        join.piece(|v: &mut Vec<u8>, x: u8| v.push(x))(Ok(1));
        join.piece(|v: &mut Vec<u8>, x: u8| v.push(x))(Err(error(5)));
        assert!(seen.lock().is_empty());
        join.piece(|v: &mut Vec<u8>, x: u8| v.push(x))(Err(error(9)));
        assert_eq!(*seen.lock(), vec![Err(5)]);
    }
}
