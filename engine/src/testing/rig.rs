//! The one test rig: an origin and its snapshots on any devices, driven by
//! one completion queue, and [`Slot`], the callback-to-value pattern every
//! suite needs once it has an engine to call.
//!
//! The engine's suites, the state-machine test and the benches build their
//! targets with [`Rig`]; a suite whose devices complete only when the test
//! says (a [`super::ScriptedDevice`]) keeps its own scheduling and takes
//! the rig's origin and snapshots, and catches callbacks with [`Slot`].

use crate::io::{BlockDevice, CompletionQueue, run_until_done};
use crate::store::{StoreConfig, StoreError};
use crate::sync::{Arc, Mutex};
use crate::targets::{Origin, OriginConfig, OriginDevice, Snapshot, SnapshotDevice};

/// Where a callback leaves its value: [`Slot::callback`] fills it (once),
/// [`Slot::take`] empties it.
pub struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("filled", &self.0.lock().is_some()).finish()
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T: Send + 'static> Slot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A callback that leaves its value here. Calling it twice, or while
    /// the slot still holds an earlier value, is a bug and panics.
    pub fn callback(&self) -> Box<dyn FnOnce(T) + Send + 'static> {
        let filler = Arc::clone(&self.0);
        Box::new(move |value| {
            let previous = filler.lock().replace(value);
            assert!(previous.is_none(), "a callback ran twice, or its slot was not emptied");
        })
    }

    /// Whether the callback has not run yet (or its value was taken).
    pub fn is_empty(&self) -> bool {
        self.0.lock().is_none()
    }

    /// The value, if the callback has run; the slot is empty again.
    pub fn take(&self) -> Option<T> {
        self.0.lock().take()
    }
}

/// An origin and its snapshots on devices of type `D`, driven by `queue`.
pub struct Rig<D: BlockDevice> {
    pub queue: Arc<CompletionQueue>,
    pub origin: Arc<Origin<D>>,
    /// Each snapshot's COW device and snapshot, in creation order.
    pub cows: Vec<Arc<D>>,
    pub snapshots: Vec<Arc<Snapshot<D>>>,
}

impl<D: BlockDevice> std::fmt::Debug for Rig<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("snapshots", &self.snapshots.len()).finish_non_exhaustive()
    }
}

impl<D: BlockDevice + 'static> Rig<D> {
    /// An origin on `origin_device` with no snapshot yet; its completions
    /// run on `queue` (the queue the devices were made with).
    pub fn new(queue: &Arc<CompletionQueue>, origin_device: Arc<D>, config: OriginConfig) -> Self {
        let defer: Arc<dyn crate::io::Defer> = Arc::clone(queue) as Arc<dyn crate::io::Defer>;
        let origin = Origin::new(origin_device, defer, config);
        let rig = Self { queue: Arc::clone(queue), origin, cows: Vec::new(), snapshots: Vec::new() };
        assert!(rig.snapshots.is_empty() && rig.cows.is_empty(), "a new rig has no snapshot");
        rig
    }

    /// Creates (or loads) the snapshot on `cow` and runs the queue until it
    /// has; returns its index. The table's refusal and the load's error
    /// are returned; a load that never reports panics (a lost completion).
    pub fn add_snapshot(&mut self, cow: Arc<D>, config: StoreConfig) -> Result<usize, StoreError> {
        let origin = Arc::clone(&self.origin);
        let for_load = Arc::clone(&cow);
        let mut refused = None;
        let created = run_until_done(&self.queue, |done| {
            if let Err(error) = origin.create_snapshot(for_load, config, done) {
                refused = Some(error);
            }
        });
        if let Some(error) = refused {
            assert!(created.is_none(), "a refused snapshot table reported a load");
            return Err(error);
        }
        let snapshot = created.expect("the snapshot load never completed")?;
        self.cows.push(cow);
        self.snapshots.push(snapshot);
        assert_eq!(self.cows.len(), self.snapshots.len(), "one COW per snapshot");
        Ok(self.snapshots.len() - 1)
    }

    /// Starts an operation and runs the queue until it reports; a lost
    /// completion panics.
    pub fn wait<T: Send + 'static>(&self, start: impl FnOnce(Box<dyn FnOnce(T) + Send + 'static>)) -> T {
        run_until_done(&self.queue, start).expect("an operation never completed (a lost completion)")
    }

    /// The origin's device face (what `snapshot-origin` serves).
    pub fn origin_device(&self) -> OriginDevice<D> {
        OriginDevice::new(Arc::clone(&self.origin))
    }

    /// Snapshot `k`'s device face (what `snapshot` serves).
    pub fn snapshot_device(&self, k: usize) -> SnapshotDevice<D> {
        assert!(k < self.snapshots.len(), "no snapshot {k}: the rig has {}", self.snapshots.len());
        SnapshotDevice::new(Arc::clone(&self.snapshots[k]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{MemDevice, WriteFlags};

    #[test]
    fn a_slot_takes_what_its_callback_left_once() {
        let slot = Slot::new();
        let callback = slot.callback();
        assert_eq!(slot.take(), None);
        callback(7u32);
        assert_eq!(slot.take(), Some(7));
        assert_eq!(slot.take(), None);
    }

    #[test]
    fn the_rig_builds_an_origin_with_a_snapshot_that_keeps_the_old_data() {
        let queue = CompletionQueue::new();
        let origin = Arc::new(MemDevice::from_bytes(vec![0xaa; 64 * 512], &queue));
        let mut rig = Rig::new(&queue, Arc::clone(&origin), OriginConfig::default());
        let k = rig.add_snapshot(Arc::new(MemDevice::zeroed(64, &queue)), StoreConfig { chunk_sectors: Some(8), ..StoreConfig::default() });
        assert_eq!(k.expect("a snapshot on a zeroed COW"), 0);
        let origin_device = rig.origin_device();
        rig.wait(|done| origin_device.write(0, vec![0x55; 4096], WriteFlags::PLAIN, done)).expect("the write");
        let snapshot_device = rig.snapshot_device(0);
        let seen = rig.wait(|done| snapshot_device.read(0, 8, done)).expect("the read");
        assert!(seen.iter().all(|&b| b == 0xaa), "the snapshot shows the origin as it was");
        assert!(rig.add_snapshot(origin, StoreConfig::default()).is_err(), "a COW that is the origin is refused");
        assert_eq!(rig.snapshots.len(), 1);
    }
}
