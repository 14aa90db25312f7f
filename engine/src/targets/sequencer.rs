//! In-order completion: the reorder buffer between copies and commits.
//!
//! Each pending exception takes a sequence number when its COW chunk is
//! allocated. Copies finish in any order, but exceptions are committed
//! strictly in sequence order: a copy that finishes early waits here until
//! every earlier one has finished. Committing in allocation order keeps the
//! on-disk records in allocation order, so after a crash every allocated
//! chunk below the last record is referenced by a record — no space leaks
//! (the kernel's 230c83af "avoid snapshot space leak on crash").

use std::collections::BTreeMap;

/// Sequence numbers handed out at allocation and released in order.
#[derive(Debug, Default)]
pub struct Sequencer<T> {
    next_to_allocate: u64,
    next_to_release: u64,
    /// Finished ahead of their turn, by sequence number.
    waiting: BTreeMap<u64, T>,
}

impl<T> Sequencer<T> {
    pub fn new() -> Self {
        Self { next_to_allocate: 0, next_to_release: 0, waiting: BTreeMap::new() }
    }

    /// The sequence number of a newly allocated exception.
    pub fn allocate(&mut self) -> u64 {
        self.debug_check();
        let sequence = self.next_to_allocate;
        self.next_to_allocate += 1;
        sequence
    }

    /// Records that `sequence` has finished; returns, in order, every item
    /// now releasable (this one and any that were waiting on it).
    pub fn finish(&mut self, sequence: u64, item: T) -> Vec<T> {
        assert!(sequence < self.next_to_allocate, "sequence {sequence} was never allocated");
        assert!(sequence >= self.next_to_release, "sequence {sequence} finished twice");
        if sequence != self.next_to_release {
            let previous = self.waiting.insert(sequence, item);
            assert!(previous.is_none(), "sequence {sequence} finished twice");
            // The next to release is what every waiting one waits for: it is never among them.
            debug_assert!((self.waiting.len() as u64) < self.outstanding(), "every outstanding sequence is waiting");
            return Vec::new();
        }
        let mut released = vec![item];
        self.next_to_release += 1;
        while let Some(next) = self.waiting.remove(&self.next_to_release) {
            released.push(next);
            self.next_to_release += 1;
        }
        // Released: exactly `sequence` and the run of finished ones after it, in order.
        assert_eq!(released.len() as u64, self.next_to_release - sequence);
        self.debug_check();
        released
    }

    /// The waiting items are those finished ahead of their turn: after the
    /// next to release, and allocated (debug builds; walks the waiting ones).
    fn debug_check(&self) {
        assert!(self.next_to_release <= self.next_to_allocate, "released {} of {} allocated", self.next_to_release, self.next_to_allocate);
        debug_assert!(
            self.waiting.keys().all(|&s| s > self.next_to_release && s < self.next_to_allocate),
            "waiting sequence outside {}..{}",
            self.next_to_release,
            self.next_to_allocate
        );
    }

    /// Exceptions finished but waiting for an earlier one.
    pub fn waiting(&self) -> usize {
        // The next to release is never among them, so not all outstanding ones can wait.
        assert!(
            self.waiting.is_empty() || (self.waiting.len() as u64) < self.outstanding(),
            "{} waiting of {} outstanding",
            self.waiting.len(),
            self.outstanding()
        );
        self.waiting.len()
    }

    /// Exceptions allocated and not yet released.
    pub fn outstanding(&self) -> u64 {
        assert!(self.next_to_release <= self.next_to_allocate, "released {} of {} allocated", self.next_to_release, self.next_to_allocate);
        self.next_to_allocate - self.next_to_release
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_allocation_order_whatever_order_copies_finish_in() {
        let mut sequencer = Sequencer::new();
        let ids: Vec<u64> = (0..5).map(|_| sequencer.allocate()).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert!(sequencer.finish(3, 'd').is_empty());
        assert!(sequencer.finish(1, 'b').is_empty());
        assert_eq!(sequencer.waiting(), 2);
        assert_eq!(sequencer.finish(0, 'a'), vec!['a', 'b']);
        assert_eq!(sequencer.finish(2, 'c'), vec!['c', 'd']);
        assert_eq!(sequencer.finish(4, 'e'), vec!['e']);
        assert_eq!(sequencer.outstanding(), 0);
    }

    #[test]
    #[should_panic(expected = "finished twice")]
    fn finishing_twice_is_a_bug() {
        let mut sequencer = Sequencer::new();
        sequencer.allocate();
        sequencer.allocate();
        sequencer.finish(1, ());
        sequencer.finish(1, ());
    }
}
