//! Scripted workloads: the operations of a scenario, one per line.
//!
//! ```text
//! write origin 0 8        # SECTOR SECTORS
//! write origin 6 12 fua   # with REQ_FUA (every split piece carries it)
//! write snapshot1 16 4 preflush   # with REQ_PREFLUSH (`preflush fua` for both)
//! flush snapshot0         # an empty flush of the snapshot device
//! read snapshot0 0 16
//! flush origin
//! wait                    # until nothing is in flight
//! reload                  # clean shutdown and reload (waits first)
//! merge 0                 # hand snapshot 0 to snapshot-merge and start merging (waits first)
//! crash                   # a power cut now: unflushed writes kept or lost as the seed picks
//! status                  # every snapshot's state and status line, taken now (judged by the oracle)
//! ```

use model::{Target, UserFlags};

/// One scripted step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptOp {
    Write {
        target: Target,
        sector: u64,
        sectors: u64,
        flags: UserFlags,
    },
    Read {
        snapshot: usize,
        sector: u64,
        sectors: u64,
    },
    Flush {
        target: Target,
    },
    Wait,
    Reload,
    Merge {
        snapshot: usize,
    },
    /// A power cut at once (in-flight writes die, persisted or not as the
    /// seed's crash stream picks), then a reboot on the crash images.
    Crash,
    /// Every snapshot's state taken now, in flight or not, and judged
    /// (its status line too, when nothing is in flight).
    Status,
}

fn target(word: &str) -> Result<Target, String> {
    if word == "origin" {
        return Ok(Target::Origin);
    }
    word.strip_prefix("snapshot")
        .and_then(|k| k.parse().ok())
        .map(Target::Snapshot)
        .ok_or_else(|| format!("unknown target {word:?} (origin, snapshot0, snapshot1, …)"))
}

fn number(word: Option<&str>, what: &str) -> Result<u64, String> {
    word.ok_or_else(|| format!("missing {what}"))?.parse().map_err(|_| format!("{what} is not a number"))
}

impl ScriptOp {
    /// Parses one line (without comments).
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let verb = words.next().ok_or("empty operation")?;
        let op = match verb {
            "write" | "read" => {
                let target = target(words.next().ok_or("missing target")?)?;
                let sector = number(words.next(), "sector")?;
                let sectors = number(words.next(), "sector count")?;
                if !(1..=256).contains(&sectors) {
                    return Err(format!("sector count {sectors} is not 1..=256"));
                }
                match (verb, target) {
                    ("write", _) => {
                        let mut flags = UserFlags::PLAIN;
                        for word in words.by_ref() {
                            match word {
                                "fua" if !flags.fua => flags.fua = true,
                                "preflush" if !flags.preflush => flags.preflush = true,
                                other => return Err(format!("unexpected {other:?} (a write's flags are fua and preflush, each once)")),
                            }
                        }
                        Self::Write { target, sector, sectors, flags }
                    }
                    ("read", Target::Snapshot(snapshot)) => Self::Read { snapshot, sector, sectors },
                    _ => return Err("reads are of snapshots".into()),
                }
            }
            "flush" => Self::Flush { target: target(words.next().ok_or("missing target")?)? },
            "wait" => Self::Wait,
            "reload" => Self::Reload,
            "crash" => Self::Crash,
            "status" => Self::Status,
            "merge" => Self::Merge { snapshot: number(words.next(), "snapshot")? as usize },
            other => return Err(format!("unknown operation {other:?}")),
        };
        match words.next() {
            Some(extra) => Err(format!("unexpected {extra:?}")),
            None => Ok(op),
        }
    }

    /// Whether the world must be quiet before this step runs.
    pub fn needs_quiet(self) -> bool {
        matches!(self, Self::Wait | Self::Reload | Self::Merge { .. })
    }
}

/// Parses a script: one operation per line, `#` comments, blank lines skipped.
pub fn parse_ops(text: &str) -> Result<Vec<ScriptOp>, String> {
    let mut ops = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            ops.push(ScriptOp::parse(line).map_err(|e| format!("ops line {}: {e}", index + 1))?);
        }
    }
    Ok(ops)
}

impl std::fmt::Display for ScriptOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = |t: &Target| match t {
            Target::Origin => "origin".to_string(),
            Target::Snapshot(k) => format!("snapshot{k}"),
        };
        match self {
            Self::Write { target: t, sector, sectors, flags } => write!(f, "write {} {sector} {sectors}{flags}", target(t)),
            Self::Read { snapshot, sector, sectors } => write!(f, "read snapshot{snapshot} {sector} {sectors}"),
            Self::Flush { target: t } => write!(f, "flush {}", target(t)),
            Self::Wait => write!(f, "wait"),
            Self::Reload => write!(f, "reload"),
            Self::Merge { snapshot } => write!(f, "merge {snapshot}"),
            Self::Crash => write!(f, "crash"),
            Self::Status => write!(f, "status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_and_bad_ones_say_why() {
        assert_eq!(
            ScriptOp::parse("write origin 8 4"),
            Ok(ScriptOp::Write { target: Target::Origin, sector: 8, sectors: 4, flags: UserFlags::PLAIN })
        );
        assert_eq!(
            ScriptOp::parse("write origin 6 12 fua preflush"),
            Ok(ScriptOp::Write { target: Target::Origin, sector: 6, sectors: 12, flags: UserFlags { preflush: true, fua: true } })
        );
        assert!(ScriptOp::parse("write origin 6 12 fua fua").is_err());
        assert!(ScriptOp::parse("read snapshot0 6 12 fua").is_err());
        assert_eq!(ScriptOp::parse("read snapshot1 0 16"), Ok(ScriptOp::Read { snapshot: 1, sector: 0, sectors: 16 }));
        assert_eq!(ScriptOp::parse("merge 0"), Ok(ScriptOp::Merge { snapshot: 0 }));
        assert_eq!(ScriptOp::parse("read origin 0 1"), Err("reads are of snapshots".into()));
        assert_eq!(ScriptOp::parse("write snap 0 1"), Err("unknown target \"snap\" (origin, snapshot0, snapshot1, …)".into()));
        assert_eq!(ScriptOp::parse("write origin 0 0"), Err("sector count 0 is not 1..=256".into()));
        assert_eq!(ScriptOp::parse("wait now"), Err("unexpected \"now\"".into()));
        for line in [
            "write origin 8 4",
            "write origin 6 12 fua",
            "write snapshot0 0 8 preflush",
            "write origin 0 1 preflush fua",
            "write snapshot2 0 1",
            "read snapshot0 3 7",
            "flush snapshot1",
            "wait",
            "reload",
            "merge 1",
            "crash",
        ] {
            assert_eq!(ScriptOp::parse(line).unwrap().to_string(), line);
        }
    }
}
