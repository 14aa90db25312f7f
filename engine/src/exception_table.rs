//! The table of completed exceptions: which origin chunks live where in the COW.
//!
//! Like the kernel's `dm_exception_table` with `DM_CHUNK_CONSECUTIVE_BITS`,
//! exceptions whose origin chunks *and* COW chunks are both consecutive are
//! kept as one run, so a snapshot written sequentially costs memory per run,
//! not per chunk. Unlike the kernel's hash table, runs are kept in a B-tree
//! ordered by origin chunk: lookups find the run that starts at or before the
//! chunk, iteration is ordered (deterministic), and a table loaded from disk is
//! built in one bulk pass from sorted records.
//!
//! Memory: one B-tree entry of 8 + 16 bytes per run; a bulk-built tree packs
//! its nodes full, so the worst case (no two records consecutive) costs about
//! 28 bytes per exception (measured by the `load` benchmark).

use std::collections::BTreeMap;

use crate::format::Record;

/// A run of consecutive exceptions: origin chunks `old_start .. old_start+len`
/// live in COW chunks `new_start .. new_start+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub old_start: u64,
    pub new_start: u64,
    pub len: u64,
}

/// The value stored per run; the key is the run's first origin chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunTail {
    new_start: u64,
    /// Chunks in the run beyond the first (the kernel's "consecutive count").
    extra: u32,
}

impl RunTail {
    fn len(self) -> u64 {
        u64::from(self.extra) + 1
    }
}

/// Why an exception could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("origin chunk {old_chunk} has two exceptions: COW chunks {first_new} and {second_new}")]
    DuplicateOldChunk { old_chunk: u64, first_new: u64, second_new: u64 },
}

/// Completed exceptions, grouped into consecutive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionTable {
    runs: BTreeMap<u64, RunTail>,
    chunks: u64,
}

impl ExceptionTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a table from records in any order (as loaded from disk),
    /// refusing two records for one origin chunk.
    pub fn from_records(mut records: Vec<Record>) -> Result<Self, TableError> {
        let count = records.len() as u64;
        radsort::sort_by_key(&mut records, |record| record.old_chunk);
        let mut runs: Vec<(u64, RunTail)> = Vec::with_capacity(records.len() / 2 + 1);
        let mut previous: Option<Record> = None;
        for record in records {
            if let Some(before) = previous {
                if before.old_chunk == record.old_chunk {
                    return Err(TableError::DuplicateOldChunk {
                        old_chunk: record.old_chunk,
                        first_new: before.new_chunk,
                        second_new: record.new_chunk,
                    });
                }
            }
            // Sorted, and no two records for one origin chunk: strictly increasing.
            assert!(previous.is_none_or(|before| before.old_chunk < record.old_chunk), "records out of order after sorting");
            previous = Some(record);
            if let Some((old_start, tail)) = runs.last_mut() {
                let extends = *old_start + tail.len() == record.old_chunk
                    && tail.new_start.checked_add(tail.len()) == Some(record.new_chunk)
                    && tail.extra < u32::MAX;
                if extends {
                    tail.extra += 1;
                    continue;
                }
            }
            runs.push((record.old_chunk, RunTail { new_start: record.new_chunk, extra: 0 }));
        }
        let chunks = runs.iter().map(|(_, tail)| tail.len()).sum();
        assert_eq!(chunks, count, "the runs hold one chunk per record");
        let run_count = runs.len();
        // Keys arrive sorted and unique, so the B-tree is bulk-built with full nodes.
        let runs: BTreeMap<u64, RunTail> = runs.into_iter().collect();
        assert_eq!(runs.len(), run_count, "two runs start at one origin chunk");
        let table = Self { runs, chunks };
        table.debug_check();
        Ok(table)
    }

    /// The COW chunk holding origin chunk `old_chunk`, if it has an exception.
    pub fn lookup(&self, old_chunk: u64) -> Option<u64> {
        let (&old_start, tail) = self.runs.range(..=old_chunk).next_back()?;
        debug_assert!(self.chunks >= tail.len(), "a run of {} chunks in a table of {}", tail.len(), self.chunks);
        let offset = old_chunk - old_start;
        // Runs only extend while their COW chunks count up without overflowing.
        debug_assert!(tail.new_start.checked_add(tail.len() - 1).is_some(), "run at chunk {old_start} overflows the COW's numbering");
        (offset < tail.len()).then(|| tail.new_start + offset)
    }

    /// Records that origin chunk `old_chunk` now lives in COW chunk `new_chunk`,
    /// joining it to the runs on either side when both chunk numbers continue them.
    pub fn insert(&mut self, old_chunk: u64, new_chunk: u64) -> Result<(), TableError> {
        if let Some(existing) = self.lookup(old_chunk) {
            return Err(TableError::DuplicateOldChunk { old_chunk, first_new: existing, second_new: new_chunk });
        }
        // The chunks on either side keep their exceptions (checked after the insert).
        let neighbours =
            |table: &Self| (old_chunk.checked_sub(1).and_then(|c| table.lookup(c)), old_chunk.checked_add(1).and_then(|c| table.lookup(c)));
        let before_insert = cfg!(debug_assertions).then(|| neighbours(self));
        let mut start = old_chunk;
        let mut tail = RunTail { new_start: new_chunk, extra: 0 };
        if let Some((&before_start, &before)) = self.runs.range(..old_chunk).next_back() {
            if before_start + before.len() == old_chunk && before.new_start.checked_add(before.len()) == Some(new_chunk) && before.extra < u32::MAX {
                start = before_start;
                tail = RunTail { new_start: before.new_start, extra: before.extra + 1 };
                assert_eq!(start + u64::from(tail.extra), old_chunk, "chunk {old_chunk} joined to a run it does not end");
            }
        }
        if let Some(&after) = old_chunk.checked_add(1).and_then(|next| self.runs.get(&next)) {
            let joined = u64::from(tail.extra) + after.len();
            if new_chunk.checked_add(1) == Some(after.new_start) && joined <= u64::from(u32::MAX) {
                self.runs.remove(&(old_chunk + 1));
                tail.extra = joined as u32;
            }
        }
        let replaced = self.runs.insert(start, tail);
        // Only a run this one extends is replaced; a new run starts at a free key.
        assert!(replaced.is_none() || start < old_chunk, "a run at chunk {start} overwritten");
        self.chunks += 1;
        debug_assert_eq!(self.lookup(old_chunk), Some(new_chunk));
        debug_assert!(before_insert.is_none_or(|before| before == neighbours(self)), "inserting chunk {old_chunk} moved its neighbours");
        assert!(self.runs.len() as u64 <= self.chunks, "{} runs for {} chunks", self.runs.len(), self.chunks);
        Ok(())
    }

    /// Forgets the exception of `old_chunk` (a merged chunk), splitting its run
    /// if needed; returns the COW chunk it lived in.
    pub fn remove(&mut self, old_chunk: u64) -> Option<u64> {
        let (&start, &tail) = self.runs.range(..=old_chunk).next_back()?;
        let offset = old_chunk - start;
        if offset >= tail.len() {
            return None;
        }
        assert!(self.chunks >= tail.len(), "a run of {} chunks in a table of {}", tail.len(), self.chunks);
        let neighbours =
            |table: &Self| (old_chunk.checked_sub(1).and_then(|c| table.lookup(c)), old_chunk.checked_add(1).and_then(|c| table.lookup(c)));
        let before_remove = cfg!(debug_assertions).then(|| neighbours(self));
        self.runs.remove(&start);
        if offset > 0 {
            self.runs.insert(start, RunTail { new_start: tail.new_start, extra: (offset - 1) as u32 });
        }
        let after = tail.len() - offset - 1;
        if after > 0 {
            let new_start = tail.new_start + offset + 1;
            self.runs.insert(old_chunk + 1, RunTail { new_start, extra: (after - 1) as u32 });
        }
        self.chunks -= 1;
        debug_assert_eq!(self.lookup(old_chunk), None, "chunk {old_chunk} still mapped after its removal");
        debug_assert!(before_remove.is_none_or(|before| before == neighbours(self)), "removing chunk {old_chunk} moved its neighbours");
        Some(tail.new_start + offset)
    }

    /// Exceptions in the table (chunks, not runs).
    pub fn len(&self) -> u64 {
        debug_assert!(self.runs.len() as u64 <= self.chunks, "{} runs for {} chunks", self.runs.len(), self.chunks);
        self.chunks
    }

    pub fn is_empty(&self) -> bool {
        debug_assert_eq!(self.chunks == 0, self.runs.is_empty(), "{} chunks in {} runs", self.chunks, self.runs.len());
        self.chunks == 0
    }

    /// How many runs hold those exceptions.
    pub fn run_count(&self) -> usize {
        debug_assert!(self.runs.len() as u64 <= self.chunks, "{} runs for {} chunks", self.runs.len(), self.chunks);
        self.runs.len()
    }

    /// Checks the table's invariants (debug builds; walks every run):
    /// runs in origin-chunk order never overlap, and their lengths sum to the chunk count.
    fn debug_check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut end = None;
        for (&old_start, tail) in &self.runs {
            debug_assert!(end.is_none_or(|end| end <= old_start), "run at chunk {old_start} overlaps the one before it");
            end = old_start.checked_add(tail.len());
        }
        debug_assert_eq!(self.runs.values().map(|tail| tail.len()).sum::<u64>(), self.chunks, "runs disagree with the chunk count");
    }

    /// Every exception as `(origin chunk, COW chunk)`, in origin-chunk order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs().flat_map(|run| (0..run.len).map(move |i| (run.old_start + i, run.new_start + i)))
    }

    /// The runs in origin-chunk order.
    pub fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        self.debug_check();
        self.runs.iter().map(|(&old_start, tail)| Run { old_start, new_start: tail.new_start, len: tail.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(u64, u64)]) -> Vec<Record> {
        pairs.iter().map(|&(old_chunk, new_chunk)| Record { old_chunk, new_chunk }).collect()
    }

    fn runs(table: &ExceptionTable) -> Vec<(u64, u64, u64)> {
        table.runs().map(|r| (r.old_start, r.new_start, r.len)).collect()
    }

    #[test]
    fn bulk_build_groups_consecutive_chunks_whatever_the_disk_order() {
        let table = ExceptionTable::from_records(records(&[(12, 4), (10, 2), (11, 3), (20, 5), (21, 9)])).unwrap();
        assert_eq!(runs(&table), vec![(10, 2, 3), (20, 5, 1), (21, 9, 1)]);
        assert_eq!(table.len(), 5);
        assert_eq!(table.lookup(11), Some(3));
        assert_eq!(table.lookup(13), None);
        assert_eq!(table.lookup(9), None);
        assert_eq!(table.lookup(21), Some(9));
        // Every exception, one by one, inside runs too.
        assert_eq!(table.iter().collect::<Vec<_>>(), vec![(10, 2), (11, 3), (12, 4), (20, 5), (21, 9)]);
    }

    #[test]
    fn bulk_build_refuses_duplicate_origin_chunks() {
        let error = ExceptionTable::from_records(records(&[(7, 2), (8, 3), (7, 4)])).unwrap_err();
        assert_eq!(error, TableError::DuplicateOldChunk { old_chunk: 7, first_new: 2, second_new: 4 });
    }

    #[test]
    fn insert_joins_runs_on_both_sides_and_matches_bulk_build() {
        let pairs = [(5, 10), (7, 12), (6, 11), (1, 3), (2, 4), (9, 20), (8, 13)];
        let mut table = ExceptionTable::new();
        for &(old, new) in &pairs {
            table.insert(old, new).unwrap();
        }
        assert_eq!(runs(&table), vec![(1, 3, 2), (5, 10, 4), (9, 20, 1)]);
        assert_eq!(table, ExceptionTable::from_records(records(&pairs)).unwrap());
        assert!(table.insert(6, 99).is_err());
    }

    #[test]
    fn remove_splits_and_trims_runs() {
        let mut table = ExceptionTable::from_records(records(&[(10, 2), (11, 3), (12, 4), (13, 5)])).unwrap();
        assert_eq!(table.remove(11), Some(3));
        assert_eq!(runs(&table), vec![(10, 2, 1), (12, 4, 2)]);
        assert_eq!(table.remove(13), Some(5));
        assert_eq!(table.remove(13), None);
        assert_eq!(table.remove(10), Some(2));
        assert_eq!(runs(&table), vec![(12, 4, 1)]);
        assert_eq!(table.len(), 1);
    }
}
