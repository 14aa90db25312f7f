//! The coverage surveys: every scenario explored and swarm seeds run,
//! their marks added up (`snapsim coverage`), and the directed swarm's
//! pilot, which finds the rarest marks and draws knobs toward them. The
//! drivers at the top of the house; the counters they add up are
//! [`crate::marks`], at the bottom.

use crate::marks::MarkCounts;

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
