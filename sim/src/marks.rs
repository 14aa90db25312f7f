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

/// The marks reached by exploring every seed of `scenarios` completely
/// and running swarm seeds `0..swarm_seeds`, one after the other on this
/// thread; also each scenario's own counts. A failing run counts too: the
/// marks say what was reached, the verdicts are `explore`'s and `run`'s business.
pub fn survey(scenarios: &[crate::scenario::Scenario], swarm_seeds: u64) -> (MarkCounts, Vec<(String, MarkCounts)>) {
    let mut total = MarkCounts::default();
    let mut per_scenario = Vec::new();
    for scenario in scenarios {
        let mut counts = MarkCounts::default();
        for &seed in &scenario.file.seeds {
            let (coverage, _) = crate::explore::explore(&scenario.run_config(seed), &scenario.bounds());
            let mut marks = coverage.marks;
            for source in marks.first.values_mut() {
                *source = format!("{} seed {seed}", scenario.name);
            }
            counts.add(&marks);
        }
        total.add(&counts);
        per_scenario.push((scenario.name.clone(), counts));
    }
    for seed in 0..swarm_seeds {
        total.add(&crate::world::run(&crate::world::RunConfig::new(seed)).marks);
    }
    (total, per_scenario)
}

/// Plain against directed swarm on the rarest marks (`snapsim bench`).
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmFigure {
    /// The five marks the pilot reached least often (but at least once).
    pub rarest: Vec<&'static str>,
    /// The odds the directed swarm drew with.
    pub bias: crate::world::knobs::SwarmBias,
    /// Seeds each swarm ran.
    pub seeds: u64,
    /// Hits of the rarest marks over those seeds, plain and directed.
    pub plain_hits: u64,
    pub directed_hits: u64,
}

impl SwarmFigure {
    /// The figure in words (`snapsim bench`, `snapsim coverage --directed`).
    pub fn describe(&self) -> String {
        let per = |hits: u64| hits as f64 * 10_000.0 / self.seeds.max(1) as f64;
        let odds: Vec<String> =
            crate::world::knobs::SwarmBias::FEATURES.iter().zip(self.bias.odds).map(|(name, p)| format!("{name} {p:.2}")).collect();
        format!(
            "directed swarm: rarest five marks [{}]: {:.0} hits per 10,000 seeds plain, {:.0} directed ({:.1}x), over {} seeds each; directed odds: {}",
            self.rarest.join(", "),
            per(self.plain_hits),
            per(self.directed_hits),
            self.directed_hits as f64 / self.plain_hits.max(1) as f64,
            self.seeds,
            odds.join(", ")
        )
    }
}

/// One swarm seed with its knobs drawn at `bias`'s odds: its knobs and marks.
fn swarm_seed(seed: u64, bias: &crate::world::knobs::SwarmBias) -> (crate::world::Knobs, MarkCounts) {
    // The run draws its own knobs at these odds, as a directed soak's seed does.
    let config = crate::world::RunConfig { bias: *bias, ..crate::world::RunConfig::new(seed) };
    let report = crate::world::run(&config);
    (report.knobs, report.marks)
}

/// Directed swarm (swarm testing, Groce et al.; directed swarm, ISSTA'16):
/// a pilot of `pilot` plain seeds finds the five rarest marks it reached
/// and which knob features the seeds that reached them have more (or less)
/// often than the rest; the directed swarm draws those features (almost)
/// always (or never). Then seeds `pilot..pilot + seeds` run once plain and once with
/// those odds, and the rarest marks' hits are counted in each.
pub fn directed_swarm(pilot: u64, seeds: u64) -> SwarmFigure {
    let (rarest, bias) = pilot_bias(pilot);
    let plain = crate::world::knobs::SwarmBias::default();
    let rare_hits = |marks: &MarkCounts| rarest.iter().map(|name| marks.of(name)).sum::<u64>();
    let (mut plain_hits, mut directed_hits) = (0, 0);
    for seed in pilot..pilot + seeds {
        plain_hits += rare_hits(&swarm_seed(seed, &plain).1);
        directed_hits += rare_hits(&swarm_seed(seed, &bias).1);
    }
    assert!(rarest.len() <= 5, "five marks at most");
    SwarmFigure { rarest, bias, seeds, plain_hits, directed_hits }
}

/// The pilot of the directed swarm: `pilot` plain seeds; the five rarest
/// marks they reached, and the odds that favour the features of the seeds
/// that reached them.
pub fn pilot_bias(pilot: u64) -> (Vec<&'static str>, crate::world::knobs::SwarmBias) {
    use crate::world::knobs::SwarmBias;
    let plain = SwarmBias::default();
    let mut total = MarkCounts::default();
    let runs: Vec<_> = (0..pilot).map(|seed| swarm_seed(seed, &plain)).collect();
    for (_, marks) in &runs {
        total.add(marks);
    }
    let mut reached: Vec<(&'static str, u64)> = total.hits.iter().map(|(&name, &n)| (name, n)).collect();
    reached.sort_by_key(|&(name, n)| (n, name));
    let rarest: Vec<&'static str> = reached.iter().take(5).map(|&(name, _)| name).collect();
    // Each pilot seed scores by its share of each rare mark's hits (so the
    // rarest of the five weighs as much as the least rare), and each
    // feature is pushed toward on or off as the scoring seeds have it more
    // or less often than the pilot as a whole.
    let score = |marks: &MarkCounts| rarest.iter().map(|name| marks.of(name) as f64 / total.of(name).max(1) as f64).sum::<f64>();
    let scores: Vec<f64> = runs.iter().map(|(_, marks)| score(marks)).collect();
    let weight: f64 = scores.iter().sum();
    let mut bias = plain;
    if weight > 0.0 {
        for (index, odds) in bias.odds.iter_mut().enumerate() {
            let with: f64 = runs.iter().zip(&scores).filter(|((knobs, _), _)| knobs.features()[index]).map(|(_, s)| s).sum();
            let among_rare = with / weight;
            let among_all = runs.iter().filter(|(knobs, _)| knobs.features()[index]).count() as f64 / runs.len().max(1) as f64;
            let enrichment = among_rare / among_all.max(1e-9);
            *odds = if enrichment > 1.25 {
                1.0 - SwarmBias::ODDS_MIN
            } else if enrichment < 0.8 {
                SwarmBias::ODDS_MIN
            } else {
                among_rare.clamp(SwarmBias::ODDS_MIN, 1.0 - SwarmBias::ODDS_MIN)
            };
        }
    }
    (rarest, bias)
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
