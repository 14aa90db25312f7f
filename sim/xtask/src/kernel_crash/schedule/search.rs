//! The search for a schedule: a limited-discrepancy search, checkpointed
//! at the kernel's marks.
//!
//! A schedule is a path of moves, each the `taken`-th of the moves offered
//! then ([`Run::moves`] offers the likeliest first). A run replays a path
//! from the start (our engine cannot be copied), checking every move, then
//! extends it with the first move offered until it fails, sticks or ends.
//!
//! Plain depth-first search revises the latest moves first. Here the wrong
//! move is usually early: a writer that closed its device before another
//! wrote into the cache decides which pages a writeback takes, and that
//! shows in the log only dozens of moves later, past more alternatives
//! than any budget can try. So the path is cut into segments at the
//! kernel's marks (the end of each operation): a run that logs a mark the
//! segment has not reached opens a new segment there. Within a segment the
//! search allows `k` discrepancies (moves other than the first offered):
//! first none, then one, then two; a revision anywhere in the segment is
//! tried before a second one. A segment whose continuations are all tried
//! within its limit is given up and the search goes back into the segment
//! before it. The first pass limits each segment to [`DISCREPANCIES_FIRST`];
//! if it finds no schedule and gave up a segment for the limit, a second
//! pass is plain depth-first search (every segment allows any number of
//! discrepancies from the start): it tries every schedule once, so that
//! "none matches" is a proof.

use sim::logwrites::{Entry, EntryKind, Log};

use super::{Budget, Commits, Following, Run};
use crate::kernel_crash::workload::Workload;
use engine::store::KernelPatches;

/// Discrepancies per segment in the first pass.
const DISCREPANCIES_FIRST: usize = 2;

/// One level of a path: the move taken among those offered.
#[derive(Debug, Clone, Copy)]
struct Level {
    taken: usize,
    count: usize,
}

/// A stretch of the path between two marks the kernel logged.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Its first level.
    start: usize,
    /// Kernel entries our log matched when it began.
    logged: usize,
    /// Discrepancies allowed in it now.
    k: usize,
    /// Whether a move was left untried because of `k`.
    refused: bool,
}

/// How a run ended.
enum Ending {
    /// Our log is the kernel's, whole.
    Matched,
    /// It failed, stuck or ended short: how far it got and why.
    Short(usize, String),
}

struct Search<'a> {
    workload: &'a Workload,
    initial: &'a [u8],
    entries: &'a [Entry],
    commits: Commits,
    kernel_patches: KernelPatches,
    budget: Budget,
    out: Following,
    /// The furthest kernel entry any run reached, and why it stopped there.
    furthest: (usize, String),
    /// The discrepancies a segment allows when it opens in this pass.
    opening_k: usize,
}

pub fn follow(workload: &Workload, initial: &[u8], kernel: &Log, kernel_patches: KernelPatches, budget: Budget) -> Following {
    let entries = &kernel.entries[..];
    let out = Following { workload: workload.name.clone(), kernel_entries: entries.len(), ..Following::default() };
    let commits = Commits::of(workload, entries);
    let mut search = Search { workload, initial, entries, commits, kernel_patches, budget, out, furthest: (0, String::new()), opening_k: 0 };
    // A first pass that limits each segment; if it gave a segment up for
    // the limit and found nothing, a second that tries every schedule.
    let mut complete = search.pass(DISCREPANCIES_FIRST).unwrap_or_default();
    if !complete && search.out.matching_schedules == 0 && search.out.replays < budget.replays {
        complete = search.pass(usize::MAX).unwrap_or_default();
    }
    search.out.exhausted = complete;
    if search.out.matching_schedules == 0 {
        let bounded = if complete { "every schedule tried" } else { "search bounded" };
        search.out.divergence = Some(format!("no schedule found ({bounded}, {} runs); furthest: {}", search.out.replays, search.furthest.1));
    }
    search.out
}

impl Search<'_> {
    /// One pass with at most `k_max` discrepancies per segment. `Some(true)`:
    /// every schedule within the limit was tried and none was left out for
    /// it; `Some(false)`: some were; `None`: stopped by the budget or by
    /// enough matches.
    fn pass(&mut self, k_max: usize) -> Option<bool> {
        let mut path: Vec<Level> = Vec::new();
        // Unlimited, each segment allows every discrepancy at once: plain
        // depth-first search, which tries each schedule once.
        self.opening_k = if k_max == usize::MAX { usize::MAX } else { 0 };
        let mut segments = vec![Segment { start: 0, logged: 0, k: self.opening_k, refused: false }];
        let mut left_out = false;
        loop {
            if self.out.replays >= self.budget.replays {
                return None;
            }
            match self.run(&mut path, &mut segments) {
                Ending::Matched => {
                    self.out.matching_schedules += 1;
                    if self.out.matching_schedules == 1 {
                        self.out.moves = path.len();
                    }
                    if self.out.matching_schedules > self.budget.more_matches {
                        return None;
                    }
                }
                Ending::Short(reached, why) => {
                    if reached >= self.furthest.0 {
                        self.furthest = (reached, why);
                    }
                }
            }
            if !backtrack(&mut path, &mut segments, k_max, &mut left_out) {
                return Some(!left_out);
            }
        }
    }

    /// Replays `path`, then extends it with the first move offered until
    /// the run fails, sticks or ends; opens a segment at each new mark.
    fn run(&mut self, path: &mut Vec<Level>, segments: &mut Vec<Segment>) -> Ending {
        self.out.replays += 1;
        let mut run = Run::new(self.workload, self.initial, self.entries, &self.commits, self.kernel_patches);
        for (level, step) in path.iter().enumerate() {
            let moves = run.moves();
            assert_eq!(moves.len(), step.count, "a replay offered other moves: our engine is not deterministic");
            run.apply(moves[step.taken]);
            // Checked move by move as when first taken (a write laid over a
            // page is judged by the writebacks before it); every move but
            // the last passed then.
            let why = run.mismatch();
            if level + 1 < path.len() {
                assert!(why.is_none(), "a replayed move that passed fails now: {why:?}");
            } else if let Some(why) = why {
                return Ending::Short(run.logged(), why);
            }
        }
        loop {
            if let Some(whole) = run.finished() {
                return if whole {
                    Ending::Matched
                } else {
                    Ending::Short(run.logged(), "ours ends with the log above, the kernel's goes on or differs at its end".to_string())
                };
            }
            let moves = run.moves();
            if moves.is_empty() {
                return Ending::Short(run.logged(), run.stuck());
            }
            path.push(Level { taken: 0, count: moves.len() });
            run.apply(moves[0]);
            if let Some(why) = run.mismatch() {
                return Ending::Short(run.logged(), why);
            }
            let logged = run.logged();
            let segment = segments.last().expect("the first segment");
            if logged > segment.logged && matches!(self.entries[logged - 1].kind, EntryKind::Mark(_)) {
                segments.push(Segment { start: path.len(), logged, k: self.opening_k, refused: false });
            }
        }
    }
}

/// Moves `path` to the next schedule to try: the deepest revision the last
/// segment's limit allows; else the same segment with one discrepancy more
/// (if one was refused and `k_max` allows it); else the segment is given
/// up and the one before it revised. False when no segment is left.
fn backtrack(path: &mut Vec<Level>, segments: &mut Vec<Segment>, k_max: usize, left_out: &mut bool) -> bool {
    loop {
        let Some(segment) = segments.last_mut() else { return false };
        debug_assert!(segment.start <= path.len(), "a segment starts past the path");
        let mut used: usize = path[segment.start..].iter().filter(|l| l.taken > 0).count();
        for i in (segment.start..path.len()).rev() {
            let level = path[i];
            if level.taken > 0 {
                used -= 1;
            }
            if level.taken + 1 >= level.count {
                continue;
            }
            if level.taken == 0 && used + 1 > segment.k {
                segment.refused = true;
                continue;
            }
            path[i].taken += 1;
            path.truncate(i + 1);
            return true;
        }
        if segment.refused && segment.k < k_max {
            segment.k += 1;
            segment.refused = false;
            path.truncate(segment.start);
            return true;
        }
        *left_out |= segment.refused;
        let start = segment.start;
        segments.pop();
        path.truncate(start);
    }
}
