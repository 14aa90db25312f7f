//! One crash point's space of crash states, as numbers: how many values each non-durable sector may hold, which sectors a reload reads as metadata, and the states to judge, whole or per data sector.
//!
//! Both enumerators of the harness use it: `explore` at the crash points of
//! a simulated run (values from the simulated disk), and the kernel judge
//! at the marks of a dm-log-writes log (values from the log's splice). Each
//! keeps its own values and judge; this type only counts and enumerates.
//!
//! A state is one value index per sector, 0 being the sector's durable
//! value. **Whole** visits every combination, the first sector's index
//! turning fastest. **Per data sector** visits every combination of the
//! metadata sectors' indices, each with every data sector at its `v`-th
//! value (its last, when it has fewer) for every `v` below the most values
//! a data sector holds: every value of every data sector meets every
//! metadata combination once, which finds every violation a state of the
//! point has (ARCHITECTURE.md, "Judging a crash point whole").

use std::ops::ControlFlow;

/// A count of crash states that may not fit in any integer: exact while it
/// fits in a `u128`, as its base-2 logarithm always.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateSpace {
    pub exact: Option<u128>,
    pub log2: f64,
}

impl StateSpace {
    /// The empty count.
    pub fn zero() -> Self {
        Self { exact: Some(0), log2: f64::NEG_INFINITY }
    }

    /// The product of `factors` (each at least 1).
    pub fn product(factors: impl Iterator<Item = usize>) -> Self {
        let mut exact = Some(1u128);
        let mut log2 = 0.0;
        for factor in factors {
            debug_assert!(factor >= 1, "a sector has at least its durable value");
            exact = exact.and_then(|e| e.checked_mul(factor as u128));
            log2 += (factor as f64).log2();
        }
        Self { exact, log2 }
    }

    /// The sum of two counts.
    pub fn plus(self, other: Self) -> Self {
        let exact = self.exact.zip(other.exact).and_then(|(a, b)| a.checked_add(b));
        let (high, low) = if self.log2 >= other.log2 { (self.log2, other.log2) } else { (other.log2, self.log2) };
        let log2 = if low == f64::NEG_INFINITY { high } else { high + (1.0 + (low - high).exp2()).log2() };
        Self { exact, log2 }
    }

    /// `covered` as a fraction of this space.
    pub fn fraction(self, covered: u64) -> f64 {
        self.fraction_of(Self::count(covered))
    }

    /// `part` (a part of this space) as a fraction of it.
    pub fn fraction_of(self, part: Self) -> f64 {
        match (self.exact, part.exact) {
            (Some(0), _) => 1.0,
            (Some(whole), Some(part)) => part as f64 / whole as f64,
            _ => (part.log2 - self.log2).exp2(),
        }
    }

    /// An exact count.
    pub fn count(n: u64) -> Self {
        Self::exactly(u128::from(n))
    }

    /// An exact count, however large.
    pub fn exactly(n: u128) -> Self {
        Self { exact: Some(n), log2: if n == 0 { f64::NEG_INFINITY } else { (n as f64).log2() } }
    }

    /// This space less `reached` of its states: exact when this space is,
    /// else (an upper bound) the whole space.
    pub fn less(self, reached: u128) -> Self {
        match self.exact {
            Some(exact) => Self::exactly(exact.saturating_sub(reached)),
            None => self,
        }
    }

    /// Whether the count is known to be at most `limit`.
    pub fn at_most(self, limit: u64) -> bool {
        self.exact.is_some_and(|states| states <= u128::from(limit))
    }
}

impl Default for StateSpace {
    fn default() -> Self {
        Self::zero()
    }
}

impl std::fmt::Display for StateSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exact {
            Some(exact) => write!(f, "{exact}"),
            None => write!(f, "about 2^{:.1}", self.log2),
        }
    }
}

/// How a crash point is judged, by its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Every combination of every sector's values.
    Whole,
    /// Every metadata combination times each value index of the data sectors.
    PerDataSector,
    /// Too large for both: the caller bounds it.
    TooLarge,
}

/// The crash states of one point, as value counts (see the module doc).
#[derive(Debug, Clone)]
pub struct CrashSpace {
    /// Per non-durable sector, how many distinct values it may hold (at least 2).
    values: Vec<usize>,
    /// Indices of the metadata sectors, and of the data sectors.
    metadata: Vec<usize>,
    data: Vec<usize>,
    /// The most values a data sector may hold (1 with none).
    values_max: usize,
}

impl CrashSpace {
    /// The space of sectors holding `values[i]` values each, sector `i`
    /// metadata when `is_metadata(i)`.
    pub fn new(values: Vec<usize>, is_metadata: impl Fn(usize) -> bool) -> Self {
        debug_assert!(values.iter().all(|&n| n >= 1), "a sector has at least its durable value");
        let (metadata, data): (Vec<usize>, Vec<usize>) = (0..values.len()).partition(|&i| is_metadata(i));
        let values_max = data.iter().map(|&i| values[i]).max().unwrap_or(1);
        debug_assert_eq!(metadata.len() + data.len(), values.len(), "every sector is metadata or data");
        Self { values, metadata, data, values_max }
    }

    /// Non-durable sectors.
    pub fn sectors(&self) -> usize {
        self.values.len()
    }

    /// Values sector `i` may hold.
    pub fn values_of(&self, i: usize) -> usize {
        self.values[i]
    }

    /// The metadata sectors' indices.
    pub fn metadata(&self) -> &[usize] {
        &self.metadata
    }

    /// The most values a data sector may hold.
    pub fn values_max(&self) -> usize {
        self.values_max
    }

    /// Every state of the point.
    pub fn space(&self) -> StateSpace {
        StateSpace::product(self.values.iter().copied())
    }

    /// The states per data sector judging visits.
    pub fn per_sector_states(&self) -> StateSpace {
        StateSpace::product(self.metadata.iter().map(|&i| self.values[i]).chain([self.values_max]))
    }

    /// Whole when the space holds at most `whole_max` states, else per data
    /// sector when that takes at most `per_sector_max`, else too large.
    pub fn way(&self, whole_max: u64, per_sector_max: u64) -> Way {
        if self.space().at_most(whole_max) {
            Way::Whole
        } else if self.per_sector_states().at_most(per_sector_max) {
            Way::PerDataSector
        } else {
            Way::TooLarge
        }
    }

    /// Visits every state, the first sector's value index turning fastest,
    /// until `visit` breaks.
    pub fn whole<B>(&self, mut visit: impl FnMut(&[usize]) -> ControlFlow<B>) -> ControlFlow<B> {
        let mut state = vec![0usize; self.values.len()];
        loop {
            visit(&state)?;
            if !next_combination(&mut state, |i| self.values[i]) {
                return ControlFlow::Continue(());
            }
        }
    }

    /// Visits the states of per data sector judging, each with its `v`,
    /// until `visit` breaks: every metadata combination (the first metadata
    /// sector turning fastest), and for each, `v` from 0 up.
    pub fn per_data_sector<B>(&self, mut visit: impl FnMut(&[usize], usize) -> ControlFlow<B>) -> ControlFlow<B> {
        let mut picked = vec![0usize; self.metadata.len()];
        let mut state = vec![0usize; self.values.len()];
        loop {
            for (&i, &value) in self.metadata.iter().zip(&picked) {
                state[i] = value;
            }
            for v in 0..self.values_max {
                for &i in &self.data {
                    state[i] = v.min(self.values[i] - 1);
                }
                visit(&state, v)?;
            }
            if !next_combination(&mut picked, |j| self.values[self.metadata[j]]) {
                return ControlFlow::Continue(());
            }
        }
    }
}

/// Moves `digits` (digit `i` counting to `radix(i)`) to the next
/// combination, like an odometer; false after the last one.
fn next_combination(digits: &mut [usize], radix: impl Fn(usize) -> usize) -> bool {
    let Some(i) = (0..digits.len()).find(|&i| digits[i] + 1 < radix(i)) else { return false };
    digits[..i].iter_mut().for_each(|d| *d = 0);
    digits[i] += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(space: &CrashSpace, per_sector: bool) -> Vec<Vec<usize>> {
        let mut seen = Vec::new();
        let _: ControlFlow<()> = if per_sector {
            space.per_data_sector(|state, _| {
                seen.push(state.to_vec());
                ControlFlow::Continue(())
            })
        } else {
            space.whole(|state| {
                seen.push(state.to_vec());
                ControlFlow::Continue(())
            })
        };
        seen
    }

    #[test]
    fn whole_visits_every_combination_once_the_first_sector_fastest() {
        let space = CrashSpace::new(vec![2, 3], |_| false);
        assert_eq!(states(&space, false), vec![vec![0, 0], vec![1, 0], vec![0, 1], vec![1, 1], vec![0, 2], vec![1, 2]]);
        assert_eq!(space.space().exact, Some(6));
    }

    #[test]
    fn per_data_sector_meets_every_data_value_with_every_metadata_combination() {
        // Sector 1 is metadata (2 values); sectors 0 and 2 are data with 3 and 2 values.
        let space = CrashSpace::new(vec![3, 2, 2], |i| i == 1);
        let seen = states(&space, true);
        assert_eq!(seen, vec![vec![0, 0, 0], vec![1, 0, 1], vec![2, 0, 1], vec![0, 1, 0], vec![1, 1, 1], vec![2, 1, 1]]);
        assert_eq!(space.per_sector_states().exact, Some(6));
        for metadata in 0..2 {
            for (data, values) in [(0, 3), (2, 2)] {
                for value in 0..values {
                    assert!(seen.iter().any(|s| s[1] == metadata && s[data] == value), "metadata {metadata}, sector {data} value {value}");
                }
            }
        }
    }

    #[test]
    fn the_way_follows_the_sizes_and_a_break_stops_the_visit() {
        let space = CrashSpace::new(vec![2; 13], |i| i < 2);
        assert_eq!(space.way(4096, 65_536), Way::PerDataSector, "2^13 states, 2 metadata sectors times 2 values: 8");
        assert_eq!(space.way(1 << 13, 65_536), Way::Whole);
        assert_eq!(space.way(4096, 4), Way::TooLarge);
        let mut visited = 0;
        let stopped = space.whole(|_| {
            visited += 1;
            if visited == 5 { ControlFlow::Break(visited) } else { ControlFlow::Continue(()) }
        });
        assert_eq!(stopped, ControlFlow::Break(5));
    }
}
