//! Crash-state exploration: one recorded run, every crash point, and every
//! crash state the disk contract allows at it, judged whole where the point
//! allows and within a bound where it does not; and how much of the
//! crash-state space was reached.
//!
//! # The space
//!
//! The disk contract lets every non-durable sector hold its durable value or
//! any value written to it since, independently: at a crash point (between
//! two events of the run; points where no disk changed are skipped) the
//! space of crash states is the product, over sectors, of their distinct
//! candidate values ([`SimDisk::crash_candidates`]). [`Coverage`] counts
//! that space and the part of it reached, point by point; a run is
//! `complete` only when it reached all of it at every point.
//!
//! # Three ways to judge a point
//!
//! - **Brute force**, for a point of at most [`Bounds::brute_force_max`]
//!   states: every sector takes each of its values in every combination.
//! - **Per data sector**, when every combination of the metadata sectors'
//!   values times the most values one data sector may hold is at most
//!   [`Bounds::per_sector_states_max`]: by the argument in ARCHITECTURE.md
//!   this finds every violation any state of the point has.
//! - **The write bound**, for a point too large for both (no scenario of
//!   `scenarios/` has one): each disk's writes that are not durable, oldest
//!   first ([`SimDisk::pending_writes`]); if there are at most
//!   [`Bounds::writes_max`], every subset of them is applied over the
//!   durable images, in order; with more, every subset of the newest
//!   `writes_max`, once over the older ones all applied and once over none.
//!   Each applied write of several sectors is also torn, one write per
//!   state, at the cuts [`Bounds::tear_cuts`] lists. The coverage says how
//!   much of the point this reached, never "exhaustive" for less.
//!
//! Identical states are checked once, by a hash of their contents kept
//! incrementally: a sum over sectors of a digest of (disk, sector, bytes)
//! minus that of the base. Each distinct state is judged by
//! [`World::check_crash_state`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use model::Violation;

use crate::disk::{Image, PendingWrite, Sector, SimDisk};
use crate::world::{CrashPoint, Incremental, IncrementalStats, Judged, RunConfig, World, sector_hash};

pub use crate::crash_space::StateSpace;
use crate::crash_space::{CrashSpace, Way};
pub use crate::shape::Bounds;

/// What an exploration covered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Events of the recorded run.
    pub steps: u64,
    /// The coverage marks the run and its crash states reached.
    pub marks: crate::marks::MarkCounts,
    /// Crash points where some disk had changed.
    pub crash_points: u64,
    /// Crash states generated (before deduplication).
    pub states: u64,
    /// Distinct crash states, each reloaded and checked.
    pub distinct: u64,
    /// The most non-durable writes seen at one point.
    pub pending_max: usize,
    /// Distinct states that showed kernel behaviour K3 (a stale area 0 under
    /// a fresh header), allowed and counted instead of judged.
    pub allowed_k3: u64,
    /// The crash-state space of every crash point together (see the module
    /// doc), and the distinct states of it the bound reached.
    pub space: StateSpace,
    pub covered: u64,
    /// The space of the points judged whole per data sector.
    pub judged: StateSpace,
    /// The states no way of judging reached (at most this many, where a
    /// point's space is too large to count exactly).
    pub missed: StateSpace,
    /// Points where brute force and per-sector judging disagreed (with
    /// [`Bounds::cross_check`]): step, brute force's verdict, per-sector's.
    pub cross_check_mismatches: Vec<String>,
    /// Points both judged, under [`Bounds::cross_check`], and how many of
    /// them brute force found failing.
    pub cross_checked_points: u64,
    pub cross_checked_failing: u64,
    /// How the distinct states were read back: against their point's
    /// reference, or whole.
    pub judging: IncrementalStats,
    /// States whose whole and incremental verdicts differed (with
    /// [`Bounds::check_incremental`]): step, state, both verdicts.
    pub incremental_mismatches: Vec<String>,
    /// Every crash point's whole space was reached.
    pub complete: bool,
    /// The run stopped at [`Bounds::states_max`]: states were left unchecked.
    pub truncated: bool,
    /// The recorded run's trace hash (the same for every replay of it).
    pub trace_hash: u64,
    /// The recorded run's schedule, when [`RunConfig::record_schedule`] asked for it.
    pub schedule: Option<Vec<crate::world::guide::Decision>>,
}

impl Coverage {
    /// Counts a crash point of `space` states, `reached` of them built and
    /// judged one by one (or all of them, judged per data sector).
    fn add_point(&mut self, space: StateSpace, reached: Reached) {
        self.space = self.space.plus(space);
        match reached {
            Reached::PerDataSector => self.judged = self.judged.plus(space),
            Reached::States(reached) => {
                self.complete &= space.exact == Some(reached);
                self.missed = self.missed.plus(space.less(reached));
                debug_assert!(space.exact.is_none_or(|space| reached <= space), "more distinct states than the space holds");
            }
        }
    }

    /// One line on how much of the crash-state space the run reached.
    pub fn describe(&self, bounds: &Bounds) -> String {
        let judged = if self.judged.exact == Some(0) { String::new() } else { format!(", {} of them judged per data sector", self.judged) };
        if self.complete {
            return format!("complete: every one of the {} crash states{judged}", self.space);
        }
        let reached = self.judged.plus(StateSpace::count(self.covered));
        let share = self.space.fraction_of(reached);
        format!(
            "bounded (at points too large to judge whole, the newest {} non-durable writes' subsets, tears at 1, half and all-but-one sectors): {} of {} crash states{judged}, {}; unreached: {}{}",
            bounds.writes_max,
            reached,
            self.space,
            if share >= 1.0 { "all but the unreached".to_string() } else { percent(share) },
            if self.missed.exact.is_some() { "" } else { "at most " },
            self.missed
        )
    }
}

/// How much of a crash point was judged.
#[derive(Debug, Clone, Copy)]
enum Reached {
    /// All of it, per data sector.
    PerDataSector,
    /// This many of its states, each built and judged.
    States(u128),
}

/// A fraction as a percentage people can read, however small.
fn percent(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if percent < 0.1 {
        return format!("{percent:.1e}%");
    }
    // Never round a part up to the whole: as many decimals as show the gap.
    let mut decimals = 1;
    while fraction < 1.0 && decimals < 12 && format!("{percent:.decimals$}").starts_with("100") {
        decimals += 1;
    }
    format!("{percent:.decimals$}%")
}

/// A crash state that broke an invariant.
#[derive(Debug, Clone)]
pub struct CrashFailure {
    /// The step of the recorded run the crash struck after.
    pub step: u64,
    /// Which non-durable writes the state applied (index into the point's
    /// pending writes, oldest first) and the torn one, if any.
    pub applied: String,
    pub violation: Violation,
    /// The failing crash state's images (origin first), when it is one.
    pub images: Option<Vec<Image>>,
    /// The writes the failure needs, shrunk from the failing state.
    pub cause: Option<Box<crate::cause::Cause>>,
    /// The recorded run's I/O up to the failure, the failing state marked
    /// (when [`RunConfig::timeline`] asked for it).
    pub timeline: Option<Box<crate::timeline::Timeline>>,
}

impl CrashFailure {
    fn new(step: u64, applied: impl Into<String>, violation: Violation, images: Option<Vec<Image>>) -> Self {
        Self { step, applied: applied.into(), violation, images, cause: None, timeline: None }
    }
}

impl std::fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (crash after step {}, {})", self.violation, self.step, self.applied)
    }
}

/// Every non-durable sector of a crash point: its disk, its number, the
/// values it may hold after a crash (its durable one first) and each
/// value's [`digest`], computed once per point.
struct PointChoices {
    sectors: Vec<(usize, u64, Vec<Sector>)>,
    digests: Vec<Vec<u64>>,
}

impl PointChoices {
    fn new(disks: &[std::sync::Arc<SimDisk>]) -> Self {
        // The disk lists each write's copy of a sector; two writes of the
        // same bytes are one value here, one state of the space.
        let distinct = |mut values: Vec<Sector>| {
            let mut kept: Vec<Sector> = Vec::with_capacity(values.len());
            values.drain(..).for_each(|value| {
                if !kept.iter().any(|k| k.bytes() == value.bytes()) {
                    kept.push(value);
                }
            });
            kept
        };
        let sectors: Vec<(usize, u64, Vec<Sector>)> = disks
            .iter()
            .enumerate()
            .flat_map(|(disk, d)| d.crash_candidates().into_iter().map(move |(sector, values)| (disk, sector, distinct(values))))
            .filter(|(_, _, values)| values.len() > 1)
            .collect();
        debug_assert!(sectors.iter().all(|(_, _, values)| values.len() >= 2), "a listed sector may change");
        let digests = sectors.iter().map(|(disk, sector, values)| values.iter().map(|v| digest(*disk, *sector, v.bytes())).collect()).collect();
        Self { sectors, digests }
    }

    /// Values sector `i` may hold.
    fn values_of(&self, i: usize) -> usize {
        self.sectors[i].2.len()
    }

    /// The hash of the state where sector `i` holds its value `state[i]`.
    fn hash(&self, durable_hash: u64, state: &[usize]) -> u64 {
        let picks = state.iter().copied().enumerate().filter(|&(_, v)| v != 0);
        picks.fold(durable_hash, |h, (i, v)| h.wrapping_add(self.digests[i][v]).wrapping_sub(self.digests[i][0]))
    }

    /// The state `state` names, built over `durable`.
    fn images(&self, durable: &[Image], state: &[usize]) -> Vec<Image> {
        let mut images = durable.to_vec();
        for (i, v) in state.iter().copied().enumerate().filter(|&(_, v)| v != 0) {
            let (disk, sector, values) = &self.sectors[i];
            images[*disk].set(*sector, values[v].clone());
        }
        images
    }

    /// The sectors of `among` that hold a newer value in `state`, in words.
    fn describe(&self, state: &[usize], among: impl Iterator<Item = usize>) -> String {
        let newer: Vec<String> = among
            .filter(|&i| state[i] != 0)
            .map(|i| format!("disk {} sector {}: value {} of {}", self.sectors[i].0, self.sectors[i].1, state[i], self.values_of(i) - 1))
            .collect();
        newer.join(", ")
    }
}

impl PointSpace<'_> {
    /// Judges a crash state of the point, whole or incrementally as the
    /// bounds ask (both, comparing the verdicts, under
    /// [`Bounds::check_incremental`]), counting kernel behaviour K3 where it shows.
    fn judge(&self, images: Vec<Image>, coverage: &mut Coverage) -> Result<(), Violation> {
        let mut plan = self.plan.borrow_mut();
        let verdict = match (plan.as_mut(), self.check_incremental) {
            (None, _) => World::check_crash_state(self.point, images),
            (Some(plan), false) => World::check_crash_state_incrementally(self.point, images, plan),
            (Some(plan), true) => {
                let whole = World::check_crash_state(self.point, images.clone());
                let incremental = World::check_crash_state_incrementally(self.point, images, plan);
                let words =
                    |v: &Result<Judged, Violation>| v.as_ref().map_or_else(|e| format!("{}: {}", e.invariant.id(), e.message), |j| format!("{j:?}"));
                if words(&whole) != words(&incremental) {
                    coverage.incremental_mismatches.push(format!("step {}: whole {}, incremental {}", self.step, words(&whole), words(&incremental)));
                }
                whole
            }
        };
        match plan.as_mut() {
            Some(plan) => coverage.judging = coverage.judging.plus(std::mem::take(&mut plan.stats)),
            // Every state was read back whole (or stopped before a read-back).
            None => coverage.judging.whole += u64::from(!matches!(verdict, Ok(Judged::AllowedK3))),
        }
        if verdict? == Judged::AllowedK3 {
            coverage.allowed_k3 += 1;
        }
        Ok(())
    }
}

/// One non-durable write of one disk.
struct Candidate {
    disk: usize,
    write: PendingWrite,
    /// Each sector's [`digest`], computed once per crash point.
    digests: Vec<u64>,
}

/// [`explore`], with a panic caught and returned as the run's finding: a
/// broken engine is a verdict to report with its scenario, seed and replay
/// command, not the end of the process. The panic is not printed by the
/// panic hook; the caller reports it.
pub fn explore_catching(config: &RunConfig, bounds: &Bounds) -> Result<(Coverage, Result<(), CrashFailure>), crate::panics::EnginePanic> {
    let caught = crate::panics::catch(|| explore(config, bounds));
    // The panicking run left its coverage marks behind: not the next run's.
    if caught.is_err() {
        let _ = crate::marks::MarkCounts::take("");
    }
    caught
}

/// Runs `config` once and checks every crash state within `bounds`.
pub fn explore(config: &RunConfig, bounds: &Bounds) -> (Coverage, Result<(), CrashFailure>) {
    // Marks count per thread: what an earlier run here left is not ours.
    let _ = crate::marks::MarkCounts::take("");
    let mut world = World::new(config);
    world.start();
    let mut coverage = Coverage { complete: true, ..Coverage::default() };
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut last_stamps: Vec<u64> = Vec::new();
    let mut outcome: Result<(), CrashFailure> = Ok(());
    let mut failing_point: Option<CrashPoint> = None;
    let plan = RefCell::new((bounds.incremental || bounds.check_incremental).then(Incremental::new));
    if plan.borrow().is_some() {
        world.note_writes();
    }
    // The entries of the world's write log handed to the plan so far.
    let mut writes_seen = 0;
    world.main_loop(config.max_steps, &mut |world| {
        let stamps: Vec<u64> = world.disks().iter().map(|d| d.stamp()).collect();
        if stamps == last_stamps {
            return true;
        }
        last_stamps = stamps;
        coverage.crash_points += 1;
        if coverage.crash_points <= bounds.skip_points {
            // The plan takes the writes since its last point at the next one judged.
            coverage.complete = false;
            return true;
        }
        let step = world.stats().steps;
        let point = match world.crash_point() {
            Ok(point) => point,
            Err(violation) => {
                outcome = Err(CrashFailure::new(step, "a crash point", violation, None));
                return false;
            }
        };
        if let Some(plan) = plan.borrow_mut().as_mut() {
            let written = world.writes_since(writes_seen);
            writes_seen += written.len();
            plan.at_point(world.disks(), written, &point);
        }

        if let Err(failure) = explore_point(world.disks(), (&point, &plan), bounds, step, &mut seen, &mut coverage) {
            outcome = Err(failure);
            failing_point = Some(point);
            return false;
        }
        bounds.states_max == 0 || coverage.distinct < bounds.states_max
    });
    // The world stopped at the failing point: its disks still hold the writes the cause is made of.
    if let (Err(failure), Some(point)) = (&mut outcome, &failing_point) {
        explain(&world, point, failure);
    }
    coverage.steps = world.stats().steps;
    coverage.truncated = outcome.is_ok() && bounds.states_max != 0 && coverage.distinct >= bounds.states_max;
    // A run stopped early left later points unvisited.
    coverage.complete &= !coverage.truncated;
    let report = world.report();
    coverage.trace_hash = report.trace_hash;
    coverage.schedule = report.schedule.clone();
    coverage.marks = crate::marks::MarkCounts::take(&format!("explore seed {}", config.seed));
    if outcome.is_ok() {
        if let Some(failure) = report.failure {
            let mut failure = CrashFailure::new(failure.step, "the live run (no crash)", failure.violation, None);
            failure.timeline = report.timeline.map(Box::new);
            outcome = Err(failure);
        }
    }
    (coverage, outcome)
}

/// Explains a failing crash state once exploration has stopped at its
/// point: the writes it needs (the cause), and the run's timeline with
/// their fates and the failure marked.
fn explain(world: &World, point: &CrashPoint, failure: &mut CrashFailure) {
    failure.cause = failure
        .images
        .as_ref()
        .and_then(|images| crate::cause::minimal_cause(world.disks(), point, images, failure.violation.invariant))
        .map(Box::new);
    failure.timeline = world.timeline().map(|mut timeline| {
        let fates = match (&failure.cause, &failure.images) {
            (Some(cause), _) => cause.fates.clone(),
            (None, Some(images)) => crate::disk::fates(world.disks(), images),
            (None, None) => Vec::new(),
        };
        let needed = failure.cause.as_ref().map(|c| c.named()).unwrap_or_default();
        timeline.mark_crash_state(world.timeline_boot().unwrap_or(0), &fates, &needed);
        timeline.set_failure(&failure.to_string(), &failure.violation.message);
        timeline.cause = failure.cause.as_ref().map(ToString::to_string);
        Box::new(timeline)
    });
}

/// One crash point's space of crash states: the durable images, the
/// non-durable writes and sectors, what the states are judged against. It
/// counts the space and judges its states whole (brute force), per data
/// sector, or within the write bound.
struct PointSpace<'a> {
    point: &'a CrashPoint,
    step: u64,
    durable: Vec<Image>,
    /// The durable state's hash, keyed by the point's judgement key.
    durable_hash: u64,
    candidates: Vec<Candidate>,
    choices: PointChoices,
    /// The states as value indices of `choices.sectors`.
    space: CrashSpace,
    /// The run's incremental judging, unless every state is read back whole.
    plan: &'a RefCell<Option<Incremental>>,
    /// Judge every state both ways too ([`Bounds::check_incremental`]).
    check_incremental: bool,
}

impl<'a> PointSpace<'a> {
    fn new(disks: &[std::sync::Arc<SimDisk>], (point, plan): (&'a CrashPoint, &'a RefCell<Option<Incremental>>), step: u64, bounds: &Bounds) -> Self {
        let durable: Vec<Image> = disks.iter().map(|d| d.durable()).collect();
        // A state's hash starts from what it is judged against besides its
        // images, so that `seen` skips a state only where it was judged under
        // the same obligations: one seen before a flush was acknowledged (when
        // losing a write was legal) is judged again after it.
        let durable_hash = durable.iter().enumerate().fold(point.judgement_key(), |h, (disk, image)| {
            image.overlay().fold(h, |h, (sector, bytes)| {
                h.wrapping_add(digest(disk, sector, bytes)).wrapping_sub(digest(disk, sector, image.base_sector(sector)))
            })
        });
        let candidates: Vec<Candidate> =
            disks.iter().enumerate().flat_map(|(disk, d)| d.pending_writes().into_iter().map(move |write| Candidate::new(disk, write))).collect();
        let choices = PointChoices::new(disks);
        let values = (0..choices.sectors.len()).map(|i| choices.values_of(i)).collect();
        let space = CrashSpace::new(values, |i| point.is_metadata(choices.sectors[i].0, choices.sectors[i].1));
        Self { point, step, durable, durable_hash, candidates, choices, space, plan, check_incremental: bounds.check_incremental }
    }
}

#[allow(clippy::result_large_err)] // one failure per exploration: its size costs nothing
fn explore_point(
    disks: &[std::sync::Arc<SimDisk>],
    point: (&CrashPoint, &RefCell<Option<Incremental>>),
    bounds: &Bounds,
    step: u64,
    seen: &mut BTreeSet<u64>,
    coverage: &mut Coverage,
) -> Result<(), CrashFailure> {
    let space = PointSpace::new(disks, point, step, bounds);
    coverage.pending_max = coverage.pending_max.max(space.candidates.len());
    // This point's whole space, and the distinct states of it reached here.
    let point_space = space.space.space();
    let covered_before = coverage.covered;
    match space.space.way(bounds.brute_force_max, bounds.per_sector_states_max) {
        Way::Whole => {
            let mut point_seen: BTreeSet<u64> = BTreeSet::new();
            let brute = space.brute_force(bounds.states_max, seen, &mut point_seen, coverage);
            if bounds.cross_check {
                cross_check(&space, brute.as_ref().err(), coverage);
            }
            brute?;
            // Short of the whole space only when --states-max stopped it.
            coverage.add_point(point_space, Reached::States(u128::from(coverage.covered - covered_before)));
            Ok(())
        }
        Way::PerDataSector => {
            let finished = space.per_sector(bounds.states_max, seen, coverage)?;
            coverage.add_point(point_space, if finished { Reached::PerDataSector } else { Reached::States(0) });
            Ok(())
        }
        Way::TooLarge => space.within_bound(bounds, seen, coverage, point_space, covered_before),
    }
}

/// The ways a subset `chosen` of the `newer` writes may land: whole
/// (`None`), and with `tear`, each chosen write torn at each of its cuts,
/// keeping its first or its last sectors: `(write, cut, first)`.
fn tears(tear: bool, chosen: &[usize], newer: &[Candidate]) -> Vec<Option<(usize, usize, bool)>> {
    let mut variants = vec![None];
    if tear {
        for &i in chosen {
            for cut in Bounds::tear_cuts(newer[i].write.sectors.len()) {
                variants.push(Some((i, cut, true)));
                variants.push(Some((i, cut, false)));
            }
        }
    }
    variants
}

/// Which state of the write bound failed, in words: the older writes'
/// family, the newer ones applied (numbered among all the point's writes),
/// and a tear.
fn describe_subset((older, older_applied): (usize, bool), newer: usize, chosen: &[usize], tear: Option<(usize, usize, bool)>) -> String {
    let older_words =
        if older == 0 { String::new() } else { format!("{older} older write(s) {}, ", if older_applied { "applied" } else { "dropped" }) };
    let torn = tear.map_or(String::new(), |(i, cut, first)| {
        format!(", write {} torn to its {} {cut} sector(s)", older + i, if first { "first" } else { "last" })
    });
    let applied: Vec<usize> = chosen.iter().map(|i| older + i).collect();
    format!("{older_words}of the newest {newer} non-durable write(s) applied {applied:?}{torn}")
}

/// `Bounds::cross_check`: the point judged per data sector alone too; the
/// two verdicts must agree (ARCHITECTURE.md's argument, checked).
fn cross_check(space: &PointSpace, brute: Option<&CrashFailure>, coverage: &mut Coverage) {
    let mut alone = Coverage::default();
    let judged = space.per_sector(0, &mut BTreeSet::new(), &mut alone);
    let by_brute = brute.map_or_else(|| "pass".to_string(), |f| f.violation.invariant.id().to_string());
    let by_sector = judged.as_ref().err().map_or_else(|| "pass".to_string(), |f| f.violation.invariant.id().to_string());
    coverage.cross_checked_points += 1;
    coverage.cross_checked_failing += u64::from(by_brute != "pass");
    if by_brute != by_sector {
        coverage.cross_check_mismatches.push(format!("step {}: brute force {by_brute}, per data sector {by_sector}", space.step));
    }
}

impl PointSpace<'_> {
    /// The space too large for the other two ways: every subset of the
    /// newest `bounds.writes_max` non-durable writes (each whole, or torn),
    /// over the older ones all dropped or all applied.
    #[allow(clippy::result_large_err)] // one failure per exploration: its size costs nothing
    fn within_bound(
        &self,
        bounds: &Bounds,
        seen: &mut BTreeSet<u64>,
        coverage: &mut Coverage,
        point_space: StateSpace,
        covered_before: u64,
    ) -> Result<(), CrashFailure> {
        let (durable, durable_hash, step, candidates) = (&self.durable, self.durable_hash, self.step, &self.candidates);
        let mut point_seen: BTreeSet<u64> = BTreeSet::new();
        let split = candidates.len().saturating_sub(bounds.writes_max);
        let (older, newer) = candidates.split_at(split);
        let families: &[bool] = if older.is_empty() { &[false] } else { &[false, true] };
        for &older_applied in families {
            let mut base = durable.clone();
            let mut base_hash = durable_hash;
            if older_applied {
                older.iter().for_each(|c| apply(&mut base, Some(&mut base_hash), c, None));
            }
            // What each newer write's sectors hold in `base`, digested once.
            let base_digests: Vec<Vec<u64>> = newer
                .iter()
                .map(|c| c.write.sectors.iter().map(|(sector, _)| digest(c.disk, *sector, base[c.disk].sector(*sector))).collect())
                .collect();
            for mask in 0u32..(1 << newer.len()) {
                let chosen: Vec<usize> = (0..newer.len()).filter(|i| mask & (1 << i) != 0).collect();
                for tear in tears(bounds.tear, &chosen, newer) {
                    let torn_of = |i: usize| tear.filter(|&(t, _, _)| t == i).map(|(_, cut, prefix)| (cut, prefix));
                    // Hash first: most states repeat one already judged, and
                    // building their images would cost more than the hash.
                    let mut hash = base_hash;
                    let mut written: Vec<(usize, u64, u64)> = Vec::new();
                    for &i in &chosen {
                        hash_apply(&base_digests[i], &mut written, &mut hash, &newer[i], torn_of(i));
                    }
                    coverage.states += 1;
                    if point_seen.insert(hash) {
                        coverage.covered += 1;
                    }
                    if !seen.insert(hash) {
                        continue;
                    }
                    coverage.distinct += 1;
                    let mut images = base.clone();
                    // The hash is known; debug builds recompute it as a cross-check.
                    let mut check_hash = cfg!(debug_assertions).then_some(base_hash);
                    for &i in &chosen {
                        apply(&mut images, check_hash.as_mut(), &newer[i], torn_of(i));
                    }
                    debug_assert!(check_hash.is_none_or(|h| h == hash), "hash-only and applied state hashes agree");
                    if let Err(violation) = self.judge(images.clone(), coverage) {
                        let applied = describe_subset((older.len(), older_applied), newer.len(), &chosen, tear);
                        return Err(CrashFailure::new(step, applied, violation, Some(images)));
                    }
                    if bounds.states_max != 0 && coverage.distinct >= bounds.states_max {
                        coverage.add_point(point_space, Reached::States(u128::from(coverage.covered - covered_before)));
                        return Ok(());
                    }
                }
            }
        }
        coverage.add_point(point_space, Reached::States(u128::from(coverage.covered - covered_before)));
        Ok(())
    }
}

impl PointSpace<'_> {
    /// Every state of the point ([`CrashSpace::whole`]); a state is built
    /// and judged only when its hash is new.
    #[allow(clippy::result_large_err)] // one failure per exploration: its size costs nothing
    fn brute_force(
        &self,
        states_max: u64,
        seen: &mut BTreeSet<u64>,
        point_seen: &mut BTreeSet<u64>,
        coverage: &mut Coverage,
    ) -> Result<(), CrashFailure> {
        let choices = &self.choices;
        let visited = self.space.whole(|state| {
            let hash = choices.hash(self.durable_hash, state);
            coverage.states += 1;
            if point_seen.insert(hash) {
                coverage.covered += 1;
            }
            if !seen.insert(hash) {
                return ControlFlow::Continue(());
            }
            coverage.distinct += 1;
            if let Err(violation) = self.judge(choices.images(&self.durable, state), coverage) {
                let applied = format!("brute force, non-durable sectors holding a newer value: [{}]", choices.describe(state, 0..state.len()));
                return ControlFlow::Break(Err(CrashFailure::new(self.step, applied, violation, Some(choices.images(&self.durable, state)))));
            }
            if states_max != 0 && coverage.distinct >= states_max {
                return ControlFlow::Break(Ok(()));
            }
            ControlFlow::Continue(())
        });
        match visited {
            ControlFlow::Break(ended) => ended,
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Judges the whole point per data sector ([`CrashSpace::per_data_sector`]):
    /// by the argument in ARCHITECTURE.md this finds every violation any
    /// state of the point has. Returns whether it went to the end (not
    /// stopped by `states_max`).
    #[allow(clippy::result_large_err)] // one failure per exploration: its size costs nothing
    fn per_sector(&self, states_max: u64, seen: &mut BTreeSet<u64>, coverage: &mut Coverage) -> Result<bool, CrashFailure> {
        let choices = &self.choices;
        let visited = self.space.per_data_sector(|state, v| {
            let hash = choices.hash(self.durable_hash, state);
            coverage.states += 1;
            if !seen.insert(hash) {
                return ControlFlow::Continue(());
            }
            coverage.distinct += 1;
            if let Err(violation) = self.judge(choices.images(&self.durable, state), coverage) {
                let applied = format!(
                    "judged per data sector: metadata sectors holding a newer value [{}], every data sector at its value {v}",
                    choices.describe(state, self.space.metadata().iter().copied())
                );
                return ControlFlow::Break(Err(CrashFailure::new(self.step, applied, violation, Some(choices.images(&self.durable, state)))));
            }
            if states_max != 0 && coverage.distinct >= states_max {
                return ControlFlow::Break(Ok(false));
            }
            ControlFlow::Continue(())
        });
        match visited {
            ControlFlow::Break(ended) => ended,
            ControlFlow::Continue(()) => Ok(true),
        }
    }
}

/// A sector's contribution to a state's hash.
fn digest(disk: usize, sector: u64, bytes: &[u8]) -> u64 {
    let place = ((disk as u64) << 56 ^ sector).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mixed = (sector_hash(bytes) ^ place).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed ^ (mixed >> 31)
}

/// The sectors a torn (`Some((cut, prefix))`) or whole write puts on the media.
fn written_range(sectors: usize, torn: Option<(usize, bool)>) -> std::ops::Range<usize> {
    match torn {
        None => 0..sectors,
        Some((cut, true)) => 0..cut,
        Some((cut, false)) => sectors - cut..sectors,
    }
}

/// Updates `hash` as if `candidate` were applied over the base (whose
/// sectors under it digest to `base_digests`) and the writes already listed
/// in `written` (disk, sector, digest), without building the image.
fn hash_apply(base_digests: &[u64], written: &mut Vec<(usize, u64, u64)>, hash: &mut u64, candidate: &Candidate, torn: Option<(usize, bool)>) {
    let disk = candidate.disk;
    for j in written_range(candidate.write.sectors.len(), torn) {
        let (sector, new) = (candidate.write.sectors[j].0, candidate.digests[j]);
        let old = match written.iter_mut().rev().find(|(d, s, _)| *d == disk && *s == sector) {
            Some(entry) => std::mem::replace(&mut entry.2, new),
            None => {
                written.push((disk, sector, new));
                base_digests[j]
            }
        };
        *hash = hash.wrapping_add(new).wrapping_sub(old);
    }
}

impl Candidate {
    fn new(disk: usize, write: PendingWrite) -> Self {
        let digests = write.sectors.iter().map(|(sector, data)| digest(disk, *sector, data.bytes())).collect();
        Self { disk, write, digests }
    }
}

/// Applies `candidate` to its disk's image — every sector, or only the first
/// (`prefix`) or last `cut` sectors of a torn write — keeping `hash`, if
/// given, current.
fn apply(images: &mut [Image], mut hash: Option<&mut u64>, candidate: &Candidate, torn: Option<(usize, bool)>) {
    let sectors = &candidate.write.sectors;
    let disk = candidate.disk;
    for j in written_range(sectors.len(), torn) {
        let (sector, data) = &sectors[j];
        if let Some(hash) = hash.as_deref_mut() {
            let old = digest(disk, *sector, images[disk].sector(*sector));
            *hash = hash.wrapping_add(candidate.digests[j]).wrapping_sub(old);
        }
        images[disk].set(*sector, data.clone());
    }
}
