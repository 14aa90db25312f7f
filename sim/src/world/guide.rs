//! A run's schedule in the workload's terms, recorded and replayed: which
//! step came next (the next operation submitted, a disk request completed,
//! engine work run, a crash and what it kept), each named by what it is —
//! the request's disk, kind and sectors, the sectors a crash kept — and
//! never by a random draw or an event counter.
//!
//! A trace that keeps its schedule replays it step by step, whatever the
//! seed's random streams would now draw. Where the engine changed (a request
//! the schedule names is not in flight, a crash keeps a sector no write
//! touched any more), the replay takes the oldest request instead and goes
//! on: the failure still shows as long as the change did not remove it,
//! where a seed's draws would have sent every later step elsewhere.
//!
//! Text form, one decision a word: `o` (submit the next operation), `w`
//! (run engine work), `d1:w8+8` (complete disk 1's write of sectors 8..16;
//! `r` a read, `f` a flush; `d0:r0+2#1`: the second oldest of several such
//! requests in flight), `c[]` or `c[1:8=1,0:40=2]` (a crash keeping
//! for disk 1 sector 8 the first value written since its durable one, for
//! disk 0 sector 40 the second; every other sector its durable value).

use std::collections::VecDeque;

use crate::disk::{RequestInfo, RequestKind};

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The main loop submits the workload's next operation.
    Op,
    /// One piece of deferred engine work runs.
    Work,
    /// The request of `disk` of this kind and extent completes (the
    /// `rank`-th oldest of those in flight alike, usually the only one).
    Done { disk: usize, kind: char, sector: u64, sectors: u64, rank: usize },
    /// A crash: each listed sector keeps that value (0 its durable one,
    /// `i` the `i`-th written since), every other sector its durable value.
    Crash { keep: Vec<(usize, u64, usize)> },
}

impl Decision {
    /// The decision completing request `info` of disk `disk`, the
    /// `rank`-th oldest of the requests in flight alike.
    pub fn done(disk: usize, info: &RequestInfo, rank: usize) -> Self {
        Self::Done { disk, kind: kind_letter(info.kind), sector: info.sector, sectors: info.sectors, rank }
    }

    /// Whether request `info` of `disk` is alike the one this names (same
    /// disk, kind and sectors; the rank aside).
    pub fn names(&self, disk: usize, info: &RequestInfo) -> bool {
        matches!(self, Self::Done { disk: d, kind, sector, sectors, .. } if *d == disk && *kind == kind_letter(info.kind) && *sector == info.sector && *sectors == info.sectors)
    }
}

fn kind_letter(kind: RequestKind) -> char {
    match kind {
        RequestKind::Read => 'r',
        RequestKind::Write { .. } => 'w',
        RequestKind::Flush => 'f',
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Op => f.write_str("o"),
            Self::Work => f.write_str("w"),
            Self::Done { disk, kind, sector, sectors, rank: 0 } => write!(f, "d{disk}:{kind}{sector}+{sectors}"),
            Self::Done { disk, kind, sector, sectors, rank } => write!(f, "d{disk}:{kind}{sector}+{sectors}#{rank}"),
            Self::Crash { keep } => {
                let keep: Vec<String> = keep.iter().map(|(disk, sector, pick)| format!("{disk}:{sector}={pick}")).collect();
                write!(f, "c[{}]", keep.join(","))
            }
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, String> {
        let bad = || format!("schedule step {word:?}: expected o, w, dDISK:KSECTOR+N or c[DISK:SECTOR=PICK,…]");
        let number = |text: &str| text.parse::<u64>().map_err(|_| bad());
        match word {
            "o" => Ok(Self::Op),
            "w" => Ok(Self::Work),
            _ if word.starts_with('d') => {
                let (disk, rest) = word[1..].split_once(':').ok_or_else(bad)?;
                let kind = rest.chars().next().filter(|k| "rwf".contains(*k)).ok_or_else(bad)?;
                let (sector, sectors) = rest[1..].split_once('+').ok_or_else(bad)?;
                let (sectors, rank) = sectors.split_once('#').unwrap_or((sectors, "0"));
                Ok(Self::Done {
                    disk: number(disk)? as usize,
                    kind,
                    sector: number(sector)?,
                    sectors: number(sectors)?,
                    rank: number(rank)? as usize,
                })
            }
            _ if word.starts_with("c[") && word.ends_with(']') => {
                let inner = &word[2..word.len() - 1];
                let mut keep = Vec::new();
                for item in inner.split(',').filter(|i| !i.is_empty()) {
                    let (place, pick) = item.split_once('=').ok_or_else(bad)?;
                    let (disk, sector) = place.split_once(':').ok_or_else(bad)?;
                    keep.push((number(disk)? as usize, number(sector)?, number(pick)? as usize));
                }
                Ok(Self::Crash { keep })
            }
            _ => Err(bad()),
        }
    }
}

/// A schedule as text: its decisions, a few to a line.
pub fn to_text(decisions: &[Decision]) -> String {
    let mut text = String::new();
    let mut line = 0;
    for decision in decisions {
        let word = decision.to_string();
        if line > 0 && line + word.len() > 100 {
            text.push('\n');
            line = 0;
        } else if line > 0 {
            text.push(' ');
            line += 1;
        }
        line += word.len();
        text += &word;
    }
    text.push('\n');
    text
}

/// Parses a schedule's text.
pub fn parse(text: &str) -> Result<VecDeque<Decision>, String> {
    text.split_whitespace().map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_back_as_written_and_bad_ones_say_why() {
        let decisions = vec![
            Decision::Op,
            Decision::Work,
            Decision::Done { disk: 1, kind: 'w', sector: 8, sectors: 8, rank: 0 },
            Decision::Done { disk: 0, kind: 'r', sector: 0, sectors: 2, rank: 1 },
            Decision::Crash { keep: vec![] },
            Decision::Crash { keep: vec![(1, 8, 1), (0, 40, 2)] },
        ];
        let text = to_text(&decisions);
        assert_eq!(text, "o w d1:w8+8 d0:r0+2#1 c[] c[1:8=1,0:40=2]\n");
        assert_eq!(parse(&text).unwrap(), decisions);
        assert!(parse("o x").unwrap_err().contains("\"x\""));
        assert!(parse("d1:q8+8").is_err());
        assert!(parse("c[1:8]").is_err());
    }
}
