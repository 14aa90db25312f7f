//! A FIFO of completions for devices whose I/O finishes at once (files, memory).
//!
//! Such devices do their work when a request is submitted but, to honour the
//! "never inline" rule of the block-device contract, hand the completion to a
//! queue. Whoever drives the engine runs the queue: a command-line tool calls
//! [`CompletionQueue::run_until_idle`] (or [`run_until_done`]) on its own
//! thread. Running completions in FIFO order keeps real-file runs repeatable.

use std::collections::VecDeque;

use crate::sync::{Arc, Mutex};

type Work = Box<dyn FnOnce() + Send + 'static>;

/// Completions waiting to run, in the order their requests finished.
#[derive(Default)]
pub struct CompletionQueue {
    ready: Mutex<VecDeque<Work>>,
}

impl std::fmt::Debug for CompletionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionQueue").field("ready", &self.ready.lock().len()).finish()
    }
}

impl CompletionQueue {
    /// A new, empty queue, shared by the devices that feed it.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues `work` to run later.
    pub fn defer(&self, work: impl FnOnce() + Send + 'static) {
        self.ready.lock().push_back(Box::new(work));
    }

    /// Runs one queued completion, if any; returns whether one ran.
    pub fn run_one(&self) -> bool {
        // The lock is released before the completion runs: completions submit
        // new requests, which queue new completions.
        let next = self.ready.lock().pop_front();
        match next {
            Some(work) => {
                work();
                true
            }
            None => false,
        }
    }

    /// Runs completions (including ones queued meanwhile) until none is left;
    /// returns how many ran.
    pub fn run_until_idle(&self) -> usize {
        let mut ran = 0;
        while self.run_one() {
            ran += 1;
        }
        ran
    }

    /// How many completions are waiting.
    pub fn len(&self) -> usize {
        self.ready.lock().len()
    }

    /// Whether no completion is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts an operation that reports through a callback and runs `queue` until
/// it has; returns its result, or `None` if the queue ran dry first (a lost
/// completion: the operation's callback was never called).
pub fn run_until_done<T: Send + 'static>(queue: &CompletionQueue, start: impl FnOnce(Box<dyn FnOnce(T) + Send + 'static>)) -> Option<T> {
    let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
    let filler = Arc::clone(&slot);
    start(Box::new(move |value| {
        let previous = filler.lock().replace(value);
        assert!(previous.is_none(), "a completion ran twice");
    }));
    loop {
        if let Some(value) = slot.lock().take() {
            return Some(value);
        }
        if !queue.run_one() {
            return slot.lock().take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_empty_only_with_nothing_waiting() {
        let queue = CompletionQueue::new();
        assert!(queue.is_empty());
        queue.defer(|| {});
        assert!(!queue.is_empty());
        queue.run_until_idle();
        assert!(queue.is_empty());
    }

    #[test]
    fn runs_completions_in_fifo_order_including_ones_queued_meanwhile() {
        let queue = CompletionQueue::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let log = Arc::clone(&log);
            let requeue = Arc::clone(&queue);
            queue.defer(move || {
                log.lock().push(i);
                if i == 0 {
                    let log = Arc::clone(&log);
                    requeue.defer(move || log.lock().push(10));
                }
            });
        }
        assert_eq!(queue.run_until_idle(), 4);
        assert_eq!(*log.lock(), vec![0, 1, 2, 10]);
    }

    #[test]
    fn run_until_done_reports_a_lost_completion() {
        let queue = CompletionQueue::new();
        let got: Option<u32> = run_until_done(&queue, |_done| { /* never called */ });
        assert_eq!(got, None);
        let got = run_until_done(&queue, |done| {
            let inner = Arc::clone(&queue);
            queue.defer(move || inner.defer(move || done(7)));
        });
        assert_eq!(got, Some(7));
    }
}
