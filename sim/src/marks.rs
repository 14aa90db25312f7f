//! Coverage marks: what a run, an exploration or a soak reached. The
//! engine's marks ([`engine::cov::Mark`]) and the world's own — crash
//! situations only the world can see, from what the disks hold when the
//! power goes — counted per thread and gathered into a [`MarkCounts`] per
//! run, which runs add up and `snapsim coverage` prints.

use std::cell::Cell;
use std::collections::BTreeMap;

use engine::cov::Mark;

/// A situation the world is in at a crash (or a reload, or a fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorldMark {
    CrashWithHeaderWriteNotDurable,
    CrashWithAreaWriteNotDurable,
    CrashWhileNextAreaZeroing,
    CrashWithCopiesNotDurable,
    CrashWithOriginWritesNotDurable,
    CrashDuringMerge,
    FaultOnMetadataArea,
    LoadRetried,
}

impl WorldMark {
    pub const ALL: [WorldMark; 8] = [
        WorldMark::CrashWithHeaderWriteNotDurable,
        WorldMark::CrashWithAreaWriteNotDurable,
        WorldMark::CrashWhileNextAreaZeroing,
        WorldMark::CrashWithCopiesNotDurable,
        WorldMark::CrashWithOriginWritesNotDurable,
        WorldMark::CrashDuringMerge,
        WorldMark::FaultOnMetadataArea,
        WorldMark::LoadRetried,
    ];

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            WorldMark::CrashWithHeaderWriteNotDurable => {
                ("crash-with-header-write-not-durable", "a crash may keep or lose a header write: a new COW's, or the invalidation (K1, K3)")
            }
            WorldMark::CrashWithAreaWriteNotDurable => {
                ("crash-with-area-write-not-durable", "a crash between an area write and its completion: the commit may be lost, never its ack")
            }
            WorldMark::CrashWhileNextAreaZeroing => {
                ("crash-while-next-area-zeroing", "a crash with the next area's zeroing not durable: a reload must not run into stale records")
            }
            WorldMark::CrashWithCopiesNotDurable => {
                ("crash-with-copies-not-durable", "a crash with copied chunks still in the cache: a later commit's PREFLUSH must cover them")
            }
            WorldMark::CrashWithOriginWritesNotDurable => {
                ("crash-with-origin-writes-not-durable", "a crash with origin writes unflushed: each sector holds its old or any newer value")
            }
            WorldMark::CrashDuringMerge => ("crash-during-merge", "a crash while a merge runs: the reboot resumes it without losing a chunk (I10)"),
            WorldMark::FaultOnMetadataArea => ("fault-on-metadata-area", "a scripted latent error or write failure lands on a metadata area"),
            WorldMark::LoadRetried => {
                ("load-retried", "a reboot's load failed on a media error and was activated again: the retry must load the same records (I6)")
            }
        }
    }

    pub fn name(self) -> &'static str {
        self.describe().0
    }

    pub fn why(self) -> &'static str {
        self.describe().1
    }
}

std::thread_local! {
    static WORLD_HITS: [Cell<u64>; WorldMark::ALL.len()] = const { [const { Cell::new(0) }; WorldMark::ALL.len()] };
}

/// Records that the world reached `mark`'s situation (on this thread).
pub fn hit(mark: WorldMark) {
    let index = mark as usize;
    debug_assert_eq!(WorldMark::ALL[index], mark, "ALL is in declaration order");
    WORLD_HITS.with(|hits| hits[index].set(hits[index].get() + 1));
}

/// Every mark: the engine's, then the world's, as (name, why).
pub fn all() -> Vec<(&'static str, &'static str)> {
    let engine = Mark::ALL.into_iter().map(|m| (m.name(), m.why()));
    let world = WorldMark::ALL.into_iter().map(|m| (m.name(), m.why()));
    engine.chain(world).collect()
}

/// Hits per mark, and which run first hit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkCounts {
    pub hits: BTreeMap<&'static str, u64>,
    /// The first run (a seed or a scenario) that hit each mark.
    pub first: BTreeMap<&'static str, String>,
}

impl MarkCounts {
    /// This thread's hits since the last take (engine and world), credited
    /// to `source`; the thread's counters start again from zero.
    pub fn take(source: &str) -> Self {
        let engine = engine::cov::take();
        let world: [u64; WorldMark::ALL.len()] = WORLD_HITS.with(|hits| std::array::from_fn(|index| hits[index].replace(0)));
        let mut counts = Self::default();
        let pairs = Mark::ALL.into_iter().map(Mark::name).zip(engine).chain(WorldMark::ALL.into_iter().map(WorldMark::name).zip(world));
        for (name, n) in pairs.filter(|&(_, n)| n > 0) {
            counts.hits.insert(name, n);
            counts.first.insert(name, source.to_string());
        }
        counts
    }

    /// Adds `other`'s hits; a mark's first run stays the earlier one.
    pub fn add(&mut self, other: &MarkCounts) {
        for (&name, &n) in &other.hits {
            *self.hits.entry(name).or_default() += n;
        }
        for (&name, source) in &other.first {
            self.first.entry(name).or_insert_with(|| source.clone());
        }
        debug_assert!(self.first.keys().eq(self.hits.keys()), "a first run for every mark hit, and only those");
    }

    /// Hits of the mark called `name`.
    pub fn of(&self, name: &str) -> u64 {
        self.hits.get(name).copied().unwrap_or(0)
    }

    /// Marks never hit.
    pub fn missing(&self) -> Vec<&'static str> {
        all().into_iter().map(|(name, _)| name).filter(|name| self.of(name) == 0).collect()
    }

    /// The table: mark, hits, first run, why.
    pub fn table(&self) -> String {
        let mut text = format!("{:<40} {:>10}  {:<28} why\n", "mark", "hits", "first hit by");
        for (name, why) in all() {
            let first = self.first.get(name).map_or("-", String::as_str);
            text += &format!("{name:<40} {:>10}  {first:<28} {why}\n", self.of(name));
        }
        let all = all().len();
        text += &format!("{} of {all} marks hit\n", all - self.missing().len());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_have_unique_names_and_counts_add_up() {
        let names: std::collections::BTreeSet<_> = all().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), all().len(), "two marks share a name");
        assert!(all().len() >= 40, "{} marks", all().len());
        let _ = MarkCounts::take("before");
        hit(WorldMark::CrashDuringMerge);
        hit(WorldMark::CrashDuringMerge);
        let mut total = MarkCounts::take("seed 1");
        assert_eq!(total.of("crash-during-merge"), 2);
        hit(WorldMark::CrashDuringMerge);
        total.add(&MarkCounts::take("seed 2"));
        assert_eq!(total.of("crash-during-merge"), 3);
        assert_eq!(total.first["crash-during-merge"], "seed 1");
        assert!(total.missing().contains(&"fault-on-metadata-area"));
    }
}
