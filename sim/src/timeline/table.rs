//! The table under the timeline's picture: every request with its device,
//! op, sectors, flags, ticks, fate at its crash and whether the
//! failure needs it, as text one can copy into a report.

use std::fmt::Write as _;

use super::{Bar, Fate, Timeline, escape};

impl Timeline {
    /// One row per request, in the order they were submitted.
    pub(super) fn table(&self) -> String {
        let failing = self.failing_boot();
        let mut table = String::from(
            "<table id=\"requests\"><thead><tr><th>request</th><th>boot</th><th>device</th><th>op</th><th>sectors</th><th>flags</th>\
<th>submitted</th><th>completed</th><th>at the crash</th><th>needed by the failure</th></tr></thead><tbody>\n",
        );
        for bar in &self.bars {
            let completed = match (bar.completed, bar.ok) {
                (Some(tick), true) => tick.to_string(),
                (Some(tick), false) => format!("{tick} (I/O error)"),
                (None, _) => "never (in flight)".to_string(),
            };
            let class = if bar.needed { " class=\"needed\"" } else { "" };
            let _ = writeln!(
                table,
                "<tr{class} data-request=\"{name}\" data-device=\"{device}\" data-boot=\"{boot}\"><td>{name}</td><td>{boot}</td><td>{device}</td>\
<td>{kind}</td><td>{sectors}</td><td>{flags}</td><td>{submitted}</td><td>{completed}</td><td>{fate}</td><td>{needed}</td></tr>",
                name = bar.name(),
                boot = bar.boot,
                device = escape(self.device(bar)),
                kind = bar.kind,
                sectors = sectors(bar),
                flags = flags(bar).join(" "),
                submitted = bar.submitted,
                fate = fate(bar, failing),
                needed = if bar.needed { "yes" } else { "" },
            );
        }
        table.push_str("</tbody></table>\n");
        table
    }

    pub(super) fn device<'a>(&'a self, bar: &Bar) -> &'a str {
        self.devices.get(bar.disk).map_or("?", String::as_str)
    }
}

/// `16+8 (16-23)`: start and count, then the first and last sector.
pub(super) fn sectors(bar: &Bar) -> String {
    match bar.sectors {
        _ if bar.kind == "flush" => String::new(),
        0 => format!("{}+0", bar.sector),
        n => format!("{}+{n} ({}-{})", bar.sector, bar.sector, bar.sector + n - 1),
    }
}

/// PREFLUSH and FUA, as the block layer names them (a flush is all PREFLUSH).
pub(super) fn flags(bar: &Bar) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if bar.preflush && bar.kind == "write" {
        flags.push("PREFLUSH");
    }
    if bar.fua {
        flags.push("FUA");
    }
    flags
}

/// What the crash that ended a write's boot kept of it: its fate where it
/// was not durable, `durable` for a completed write of the failing boot the
/// crash could not lose. Fates from a run's earlier crashes say so.
fn fate(bar: &Bar, failing: Option<u64>) -> String {
    let earlier = if bar.fate.is_some() && failing.is_some_and(|boot| boot != bar.boot) { " (an earlier crash)" } else { "" };
    let fate: String = match bar.fate {
        Some(Fate::Persisted) => "persisted".into(),
        Some(Fate::Lost) => "lost".into(),
        Some(Fate::Torn { held, sectors }) => format!("torn: {held} of {sectors} sectors persisted"),
        None if failing == Some(bar.boot) && bar.kind == "write" && bar.ok && bar.completed.is_some() => "durable".into(),
        None => String::new(),
    };
    fate + earlier
}
