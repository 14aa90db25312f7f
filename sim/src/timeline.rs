//! The I/O timeline of a run: every disk request as a bar from submission
//! to completion, lane by device, crashes marked, and for a failing crash
//! state which non-durable writes persisted, were lost or were torn; drawn
//! as one self-contained HTML page (`--timeline out.html`).
//!
//! Time is the world's own: one tick per operation submitted and per event
//! stepped (a disk completion or deferred engine work), the same for every
//! replay of a seed. A [`Recorder`] lives in the world only when
//! [`crate::world::RunConfig::timeline`] asks for it; the disks then keep
//! their submissions for it to collect.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::disk::{RequestKind, SimDisk};

mod page;
mod style;
mod table;

use style::{LEGEND, SCRIPT, STYLE};

/// What became of a non-durable write in the failing crash state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fate {
    Persisted,
    Lost,
    /// `held` of its `sectors` sectors reached the media.
    Torn {
        held: u64,
        sectors: u64,
    },
}

/// One disk request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    /// 0 the origin, `k + 1` COW `k`.
    pub disk: usize,
    /// Boots before this request's (its disk's request numbers restart at each boot).
    pub boot: u64,
    pub request: u64,
    /// `read`, `write` or `flush`.
    pub kind: &'static str,
    pub preflush: bool,
    pub fua: bool,
    pub sector: u64,
    pub sectors: u64,
    pub submitted: u64,
    /// None: still in flight when the machine stopped.
    pub completed: Option<u64>,
    pub ok: bool,
    /// In the failing crash state, when there is one.
    pub fate: Option<Fate>,
    /// One of the writes the failure needs (see [`crate::cause`]).
    pub needed: bool,
}

/// A crash or a clean reload, at a tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub tick: u64,
    pub label: String,
    /// The crash whose state broke an invariant.
    pub failing: bool,
}

/// A run's timeline, and what failed in it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Timeline {
    pub title: String,
    /// Lane names: `origin`, `cow0`, …
    pub devices: Vec<String>,
    pub bars: Vec<Bar>,
    pub markers: Vec<Marker>,
    pub end: u64,
    /// The violation, in words.
    pub failure: Option<String>,
    /// The writes the failure needs, in words.
    pub cause: Option<String>,
    /// Sectors the violation names (`sector 992`).
    pub sectors: Vec<u64>,
}

/// Collects a running world's requests.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    tick: u64,
    boot: u64,
    bars: Vec<Bar>,
    /// Bars of requests in flight, by (disk, request).
    open: BTreeMap<(usize, u64), usize>,
    markers: Vec<Marker>,
}

impl Recorder {
    /// Takes the requests `disks` submitted since the last call.
    pub fn collect(&mut self, disks: &[Arc<SimDisk>]) {
        for (disk, d) in disks.iter().enumerate() {
            for info in d.take_submissions() {
                let (kind, preflush, fua) = match info.kind {
                    RequestKind::Read => ("read", false, false),
                    RequestKind::Write { preflush, fua } => ("write", preflush, fua),
                    RequestKind::Flush => ("flush", true, false),
                };
                self.open.insert((disk, info.id), self.bars.len());
                self.bars.push(Bar {
                    disk,
                    boot: self.boot,
                    request: info.id,
                    kind,
                    preflush,
                    fua,
                    sector: info.sector,
                    sectors: info.sectors,
                    submitted: self.tick,
                    completed: None,
                    ok: true,
                    fate: None,
                    needed: false,
                });
            }
        }
    }

    /// Request `request` of disk `disk` completed now.
    pub fn completed(&mut self, disk: usize, request: u64, ok: bool) {
        if let Some(index) = self.open.remove(&(disk, request)) {
            let bar = &mut self.bars[index];
            bar.completed = Some(self.tick);
            bar.ok = ok;
        }
    }

    /// One tick of the world's time passed.
    pub fn tick(&mut self) {
        self.tick += 1;
    }

    /// The machine stopped (a crash, or a clean reload) and boots again:
    /// requests in flight never complete, and request numbers start over.
    pub fn reboot(&mut self, label: &str) {
        self.markers.push(Marker { tick: self.tick, label: label.to_string(), failing: false });
        self.open.clear();
        self.boot += 1;
        self.tick += 1;
    }

    /// The timeline so far, with lanes for `snapshots` COWs.
    pub fn timeline(&self, title: &str, snapshots: usize) -> Timeline {
        let mut devices = vec!["origin".to_string()];
        devices.extend((0..snapshots).map(|k| format!("cow{k}")));
        Timeline { title: title.to_string(), devices, bars: self.bars.clone(), markers: self.markers.clone(), end: self.tick, ..Timeline::default() }
    }

    /// A crash now leaves each non-durable write of the running disks as
    /// `fates` says (disk, request, sectors held, sectors).
    pub fn crash_fates(&mut self, fates: &[(usize, u64, u64, u64)]) {
        apply_fates(&mut self.bars, self.boot, fates);
    }

    /// The current boot (the failing crash state's writes belong to it).
    pub fn boot(&self) -> u64 {
        self.boot
    }
}

impl Timeline {
    /// Marks the failing crash state at the end: a crash marker, and each
    /// non-durable write's fate (`fates`: disk, request, sectors held, sectors).
    pub fn mark_crash_state(&mut self, boot: u64, fates: &[(usize, u64, u64, u64)], needed: &[(usize, u64)]) {
        self.markers.push(Marker { tick: self.end, label: "crash (failing state)".into(), failing: true });
        apply_fates(&mut self.bars, boot, fates);
        self.mark_needed(boot, needed);
        self.end += 1;
    }

    /// Marks the writes of boot `boot` that a failure needs, by disk and
    /// request (a cause's [`crate::cause::Cause::named`]); no other write
    /// of that boot is marked.
    pub fn mark_needed(&mut self, boot: u64, needed: &[(usize, u64)]) {
        for bar in self.bars.iter_mut().filter(|b| b.boot == boot) {
            bar.needed = needed.contains(&(bar.disk, bar.request));
        }
    }

    /// Records the failure as shown (`failure`) and the sectors the
    /// violation's own message names.
    pub fn set_failure(&mut self, failure: &str, violation: &str) {
        self.failure = Some(failure.to_string());
        let words: Vec<&str> = violation.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        self.sectors = words.windows(2).filter(|w| w[0] == "sector").filter_map(|w| w[1].parse().ok()).collect();
        self.sectors.dedup();
    }

    /// The page: one self-contained HTML file, an SVG timeline and a
    /// few lines of script for the details of the request under the pointer.
    pub fn to_html(&self) -> String {
        let mut page = String::new();
        let title = escape(&self.title);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
        );
        if let Some(failure) = &self.failure {
            let _ = writeln!(page, "<p class=\"failure\" id=\"failure\">{}</p>", escape(failure));
        }
        if let Some(cause) = &self.cause {
            let _ = writeln!(page, "<p class=\"cause\" id=\"cause\">{}</p>", escape(cause));
        }
        // Only explore shrinks a crash state to the writes it needs; say
        // so rather than let an unmarked picture read as "none needed".
        if self.failing_boot().is_some() && self.cause.is_none() && !self.bars.iter().any(|b| b.needed) {
            page += "<p class=\"note\" id=\"no-cause\">the writes the failure needs are not marked here: \
`snapsim explore` computes them for the crash states it judges</p>\n";
        }
        if !self.sectors.is_empty() {
            let list: Vec<String> = self.sectors.iter().map(u64::to_string).collect();
            let _ = writeln!(page, "<p>sectors the violation names: {} (origin requests over them are framed, dashed)</p>", list.join(", "));
        }
        page += LEGEND;
        page += &self.svg();
        page += "<pre id=\"info\">hover a request for its sectors, flags and fate</pre>\n";
        page += &self.table();
        let _ = write!(page, "<script>{SCRIPT}</script>\n</body></html>\n");
        page
    }

    /// The bar's hover text: device, sectors, flags, ticks, fate.
    fn describe(&self, bar: &Bar) -> String {
        let flags = table::flags(bar);
        let flags = if flags.is_empty() { String::new() } else { format!(" {}", flags.join("|")) };
        let completed = match bar.completed {
            Some(tick) => format!("completed at tick {tick}{}", if bar.ok { "" } else { " with an I/O ERROR" }),
            None => "never completed (in flight when the machine stopped)".into(),
        };
        // A run's earlier crashes gave their writes fates too.
        let state =
            if self.failing_boot() == Some(bar.boot) { "in the failing state".to_string() } else { format!("at the crash ending boot {}", bar.boot) };
        let fate = match bar.fate {
            Some(Fate::Persisted) => format!("; {state}: persisted"),
            Some(Fate::Lost) => format!("; {state}: lost"),
            Some(Fate::Torn { held, sectors }) => format!("; {state}: torn, {held} of {sectors} sectors persisted"),
            None => String::new(),
        };
        let needed = if bar.needed { "; the failure needs it" } else { "" };
        let sectors = match table::sectors(bar) {
            s if s.is_empty() => String::new(),
            s => format!(" sectors {s}"),
        };
        format!(
            "{} on {} (boot {}): {}{sectors}{flags}; submitted at tick {}, {completed}{fate}{needed}",
            bar.name(),
            self.device(bar),
            bar.boot,
            bar.kind,
            bar.submitted
        )
    }
}

/// Sets the fate of each write of boot `boot` that `fates` names.
fn apply_fates(bars: &mut [Bar], boot: u64, fates: &[(usize, u64, u64, u64)]) {
    for bar in bars.iter_mut().filter(|b| b.boot == boot && b.kind == "write") {
        if let Some(&(_, _, held, sectors)) = fates.iter().find(|(d, r, _, _)| *d == bar.disk && *r == bar.request) {
            bar.fate = Some(match held {
                0 => Fate::Lost,
                h if h == sectors => Fate::Persisted,
                h => Fate::Torn { held: h, sectors },
            });
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_a_lane_per_device_a_bar_per_request_and_the_crash() {
        let mut recorder = Recorder::default();
        recorder.bars.push(Bar {
            disk: 1,
            boot: 0,
            request: 4,
            kind: "write",
            preflush: true,
            fua: true,
            sector: 8,
            sectors: 8,
            submitted: 0,
            completed: None,
            ok: true,
            fate: None,
            needed: false,
        });
        recorder.tick = 5;
        let mut timeline = recorder.timeline("basic-cow <Z7>", 1);
        timeline.mark_crash_state(0, &[(1, 4, 3, 8)], &[(1, 4)]);
        timeline
            .set_failure("I2 snapshot view: snapshot 0 sector 992 holds x (crash after step 3, disk 1 sector 8)", "snapshot 0 sector 992 holds x");
        assert_eq!(timeline.sectors, vec![992]);
        let page = timeline.to_html();
        assert_eq!(page.matches("class=\"lane\"").count(), 2);
        assert!(page.contains("id=\"crash-marker\""));
        assert!(page.contains("req write unfinished torn needed"), "{page}");
        assert!(page.contains("W4 on cow0 (boot 0): write sectors 8+8 (8-15) PREFLUSH|FUA; submitted at tick 0"), "{page}");
        assert!(page.contains("basic-cow &lt;Z7&gt;"));
        // Labelled, on an axis, and listed in the table.
        assert!(page.contains(">W4 8+8</text>"), "{page}");
        assert!(page.contains("id=\"axis\""));
        assert!(!page.contains("id=\"no-cause\""), "{page}");
        assert!(page.contains("<tr class=\"needed\" data-request=\"W4\" data-device=\"cow0\" data-boot=\"0\">"), "{page}");
        assert!(page.contains("<td>torn: 3 of 8 sectors persisted</td><td>yes</td>"), "{page}");
    }

    #[test]
    fn a_label_too_long_for_its_bar_falls_back_to_the_request_number() {
        let bar = |request, submitted, completed| Bar {
            disk: 0,
            boot: 0,
            request,
            kind: "write",
            preflush: false,
            fua: false,
            sector: 123_456,
            sectors: 128,
            submitted,
            completed: Some(completed),
            ok: true,
            fate: None,
            needed: false,
        };
        // 2,000 ticks: a one-tick bar is 16px wide, a 20-tick bar 320px.
        let timeline = Timeline { devices: vec!["origin".into()], bars: vec![bar(1, 0, 1), bar(2, 10, 30)], end: 2000, ..Timeline::default() };
        let page = timeline.to_html();
        assert!(page.contains(">W1</text>"), "{page}");
        assert!(page.contains(">W2 123456+128</text>"), "{page}");
    }

    #[test]
    fn fates_from_an_earlier_crash_of_a_run_say_so() {
        let mut recorder = Recorder::default();
        for (disk, request) in [(0, 1), (0, 2)] {
            recorder.bars.push(Bar {
                disk,
                boot: recorder.boot,
                request,
                kind: "write",
                preflush: false,
                fua: false,
                sector: 0,
                sectors: 8,
                submitted: recorder.tick,
                completed: Some(recorder.tick + 1),
                ok: true,
                fate: None,
                needed: false,
            });
            recorder.tick += 2;
            recorder.crash_fates(&[(disk, request, 0, 8)]);
            recorder.reboot("crash");
        }
        let mut timeline = recorder.timeline("a run", 0);
        // As the world marks a failing run: its last crash made the failing state.
        timeline.markers[1].failing = true;
        let page = timeline.to_html();
        assert!(
            page.contains(
                "W1 on origin (boot 0): write sectors 0+8 (0-7); submitted at tick 0, completed at tick 1; at the crash ending boot 0: lost"
            ),
            "{page}"
        );
        assert!(
            page.contains("W2 on origin (boot 1): write sectors 0+8 (0-7); submitted at tick 3, completed at tick 4; in the failing state: lost"),
            "{page}"
        );
        assert!(page.contains("<td>lost (an earlier crash)</td>"), "{page}");
        assert!(page.contains("id=\"no-cause\""), "a run's page says its needed writes are not marked: {page}");
    }

    /// Each colour of the page means one thing: every colour the style and
    /// the patterns use is either listed once with its meaning or neutral.
    #[test]
    fn each_colour_means_one_thing() {
        let meanings: Vec<&str> = style::COLOURS.iter().map(|(colour, _)| *colour).collect();
        let mut distinct = meanings.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), meanings.len(), "a colour listed twice");
        assert!(meanings.iter().all(|c| !style::NEUTRAL.contains(c)));
        let page = Timeline::default().to_html();
        let used: Vec<&str> =
            page.match_indices('#').filter_map(|(i, _)| page.get(i..i + 7)).filter(|c| c[1..].chars().all(|h| h.is_ascii_hexdigit())).collect();
        for colour in &used {
            assert!(meanings.contains(colour) || style::NEUTRAL.contains(colour), "{colour} has no meaning listed");
        }
        // Torn writes are yellow; nothing else is.
        let torn = style::COLOURS.iter().find(|(_, meaning)| meaning.starts_with("torn")).unwrap().0;
        assert_eq!(style::STYLE.matches(torn).count(), 1, "yellow means torn only");
    }
}
