//! Tracked chunks: I/O in flight on a chunk that an exception must wait for.
//!
//! A snapshot read of a chunk with no completed exception goes to the
//! origin. If an origin write then completes the chunk's exception and is
//! released, it could overwrite the origin under that read (the kernel's
//! cd45daff "track snapshot reads"). So the read is tracked, and completing
//! the exception waits until no tracked I/O remains on the chunk. Merging
//! waits the same way for writes remapped to the COW.
//!
//! Waiting never blocks: the waiter is queued and handed back when the last
//! tracked I/O on its chunk ends.

use std::collections::BTreeMap;

/// In-flight I/O per chunk, and who waits for each chunk to drain.
#[derive(Debug)]
pub struct Tracked<W> {
    in_flight: BTreeMap<u64, u32>,
    waiters: BTreeMap<u64, Vec<W>>,
}

impl<W> Default for Tracked<W> {
    fn default() -> Self {
        Self { in_flight: BTreeMap::new(), waiters: BTreeMap::new() }
    }
}

impl<W> Tracked<W> {
    /// I/O on `chunk` has started.
    pub fn start(&mut self, chunk: u64) {
        // Only a tracked chunk has waiters.
        debug_assert!(self.in_flight.contains_key(&chunk) || !self.waiters.contains_key(&chunk), "waiters on untracked chunk {chunk}");
        *self.in_flight.entry(chunk).or_insert(0) += 1;
    }

    /// I/O on `chunk` has ended; returns the waiters released if it was the last.
    pub fn end(&mut self, chunk: u64) -> Vec<W> {
        let count = self.in_flight.get_mut(&chunk).expect("ending I/O on a chunk that was not tracked");
        // A chunk is untracked when its count reaches zero, so a tracked count is positive.
        assert!(*count > 0, "chunk {chunk} tracked with no I/O in flight");
        *count -= 1;
        if *count > 0 {
            return Vec::new();
        }
        self.in_flight.remove(&chunk);
        let waiters = self.waiters.remove(&chunk).unwrap_or_default();
        debug_assert!(self.waiters.len() <= self.in_flight.len(), "waiters on untracked chunks");
        waiters
    }

    /// Whether any I/O is in flight on `chunk`.
    pub fn is_tracked(&self, chunk: u64) -> bool {
        debug_assert_ne!(self.in_flight.get(&chunk), Some(&0), "chunk {chunk} tracked with no I/O in flight");
        self.in_flight.contains_key(&chunk)
    }

    /// Queues `waiter` until `chunk` has no I/O in flight.
    ///
    /// # Panics
    /// If the chunk is not tracked: the caller must check first and proceed at once.
    pub fn wait(&mut self, chunk: u64, waiter: W) {
        assert!(self.is_tracked(chunk), "waiting on a chunk with no I/O in flight");
        debug_assert!(self.in_flight[&chunk] > 0);
        self.waiters.entry(chunk).or_default().push(waiter);
    }

    /// The chunks with I/O in flight, in order.
    pub fn chunks(&self) -> impl Iterator<Item = u64> + '_ {
        debug_assert!(self.in_flight.values().all(|&count| count > 0), "a chunk tracked with no I/O in flight");
        self.in_flight.keys().copied()
    }

    /// Chunks with I/O in flight.
    pub fn len(&self) -> usize {
        debug_assert!(self.waiters.len() <= self.in_flight.len(), "waiters on untracked chunks");
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        // No I/O in flight, no one waiting.
        debug_assert!(!self.in_flight.is_empty() || self.waiters.is_empty(), "waiters with nothing tracked");
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_released_by_the_last_io_on_their_chunk() {
        let mut tracked = Tracked::default();
        tracked.start(4);
        tracked.start(4);
        tracked.wait(4, "commit");
        assert!(tracked.end(4).is_empty());
        assert_eq!(tracked.end(4), vec!["commit"]);
        assert!(!tracked.is_tracked(4));
        assert!(tracked.is_empty());
    }
}
