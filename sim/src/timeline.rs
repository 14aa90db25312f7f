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
        for bar in self.bars.iter_mut().filter(|b| b.boot == boot) {
            bar.needed = needed.contains(&(bar.disk, bar.request));
        }
        self.end += 1;
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
        if !self.sectors.is_empty() {
            let list: Vec<String> = self.sectors.iter().map(u64::to_string).collect();
            let _ = writeln!(page, "<p>sectors the violation names: {} (their origin requests are outlined in yellow)</p>", list.join(", "));
        }
        page += LEGEND;
        page += &self.svg();
        page += "<pre id=\"info\">hover a request for its sectors and flags</pre>\n";
        let _ = write!(page, "<script>{SCRIPT}</script>\n</body></html>\n");
        page
    }

    fn svg(&self) -> String {
        const LEFT: f64 = 70.0;
        const WIDTH: f64 = 1300.0;
        const ROW: f64 = 9.0;
        const ROWS_MAX: usize = 16;
        let scale = (WIDTH - LEFT - 10.0) / (self.end.max(1) as f64);
        let x = |tick: u64| LEFT + tick as f64 * scale;
        // Rows inside each lane, so that bars in flight together do not overlap.
        let mut rows = vec![0usize; self.bars.len()];
        let mut lane_rows = vec![1usize; self.devices.len()];
        for (lane, lane_rows) in lane_rows.iter_mut().enumerate() {
            let mut row_free: Vec<u64> = Vec::new();
            for (i, bar) in self.bars.iter().enumerate().filter(|(_, b)| b.disk == lane) {
                let stopped = self.markers.iter().map(|m| m.tick).filter(|&t| t >= bar.submitted).min().unwrap_or(self.end);
                let end = bar.completed.unwrap_or(stopped) + 1;
                let row = row_free.iter().position(|&free| free <= bar.submitted).unwrap_or_else(|| {
                    row_free.push(0);
                    row_free.len() - 1
                });
                row_free[row] = end;
                rows[i] = row.min(ROWS_MAX - 1);
            }
            *lane_rows = row_free.len().clamp(1, ROWS_MAX);
        }
        let mut lane_top = Vec::new();
        let mut y = 20.0;
        for &n in &lane_rows {
            lane_top.push(y);
            y += n as f64 * ROW + 16.0;
        }
        let height = y + 10.0;
        let mut svg = String::new();
        let _ = writeln!(svg, "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\">");
        // Lanes, shaded by flush epoch: each completed flush (or PREFLUSH
        // write) makes what completed before it durable and starts a band.
        for (lane, name) in self.devices.iter().enumerate() {
            let (top, h) = (lane_top[lane], lane_rows[lane] as f64 * ROW + 8.0);
            let _ = writeln!(svg, "<g class=\"lane\" data-device=\"{name}\">");
            let mut bounds: Vec<u64> = self
                .bars
                .iter()
                .filter(|b| b.disk == lane && b.preflush && b.ok)
                .filter_map(|b| b.completed)
                .chain(self.markers.iter().map(|m| m.tick))
                .collect();
            bounds.push(0);
            bounds.push(self.end);
            bounds.sort_unstable();
            bounds.dedup();
            for (i, w) in bounds.windows(2).enumerate() {
                let class = if i % 2 == 0 { "epoch" } else { "epoch odd" };
                let _ = writeln!(
                    svg,
                    "<rect class=\"{class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                    x(w[0]),
                    (x(w[1]) - x(w[0])).max(0.5)
                );
            }
            let _ = writeln!(svg, "<text class=\"lane-name\" x=\"4\" y=\"{:.1}\">{name}</text></g>", top + h / 2.0 + 4.0);
        }
        for (i, bar) in self.bars.iter().enumerate() {
            let top = lane_top[bar.disk] + 4.0 + rows[i] as f64 * ROW;
            // A request never completed ends at the crash that stopped it.
            let stopped = self.markers.iter().map(|m| m.tick).filter(|&t| t >= bar.submitted).min().unwrap_or(self.end);
            let end = bar.completed.unwrap_or(stopped);
            let (x0, x1) = (x(bar.submitted), x(end).max(x(bar.submitted) + 2.0));
            let mut class = vec![bar.kind];
            if bar.completed.is_none() {
                class.push("unfinished");
            }
            if !bar.ok {
                class.push("failed");
            }
            match bar.fate {
                Some(Fate::Persisted) => class.push("persisted"),
                Some(Fate::Lost) => class.push("lost"),
                Some(Fate::Torn { .. }) => class.push("torn"),
                None => {}
            }
            if bar.needed {
                class.push("needed");
            }
            if bar.disk == 0 && self.sectors.iter().any(|&s| (bar.sector..bar.sector + bar.sectors).contains(&s)) {
                class.push("involved");
            }
            let detail = escape(&self.describe(bar));
            let _ = writeln!(
                svg,
                "<rect class=\"req {}\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" data-detail=\"{detail}\"><title>{detail}</title></rect>",
                class.join(" "),
                x1 - x0,
                ROW - 2.0
            );
            if bar.preflush {
                let _ = writeln!(svg, "<rect class=\"preflush-mark\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"2\" height=\"{:.1}\"/>", ROW - 2.0);
            }
            if bar.fua {
                let _ = writeln!(svg, "<rect class=\"fua-mark\" x=\"{:.1}\" y=\"{top:.1}\" width=\"2\" height=\"{:.1}\"/>", x1 - 2.0, ROW - 2.0);
            }
        }
        for marker in &self.markers {
            let id = if marker.failing { " id=\"crash-marker\"" } else { "" };
            let class = if marker.failing { "marker failing" } else { "marker" };
            let _ = writeln!(
                svg,
                "<g class=\"{class}\"{id}><line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"12\" y2=\"{1:.1}\"/><text x=\"{2:.1}\" y=\"11\">{3}</text></g>",
                x(marker.tick),
                height - 6.0,
                x(marker.tick) + 3.0,
                escape(&marker.label)
            );
        }
        svg += "</svg>\n";
        svg
    }

    fn describe(&self, bar: &Bar) -> String {
        let mut flags = Vec::new();
        if bar.preflush && bar.kind == "write" {
            flags.push("PREFLUSH");
        }
        if bar.fua {
            flags.push("FUA");
        }
        let flags = if flags.is_empty() { String::new() } else { format!(" {}", flags.join("|")) };
        let completed = match bar.completed {
            Some(tick) => format!("completed at {tick}{}", if bar.ok { "" } else { " with an ERROR" }),
            None => "never completed (in flight when the machine stopped)".into(),
        };
        let fate = match bar.fate {
            Some(Fate::Persisted) => "; in the failing state: persisted".to_string(),
            Some(Fate::Lost) => "; in the failing state: lost".to_string(),
            Some(Fate::Torn { held, sectors }) => format!("; in the failing state: torn, {held} of {sectors} sectors persisted"),
            None => String::new(),
        };
        let needed = if bar.needed { "; the failure needs it" } else { "" };
        let letter = match bar.kind {
            "write" => "W",
            "read" => "R",
            _ => "F",
        };
        format!(
            "{letter}{} on {} (boot {}): {} sectors {}+{}{flags}; submitted at {}, {completed}{fate}{needed}",
            bar.request,
            self.devices.get(bar.disk).map_or("?", String::as_str),
            bar.boot,
            bar.kind,
            bar.sector,
            bar.sectors,
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

const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222}h1{font-size:18px}\
.failure{color:#b00;font-weight:bold}.cause{color:#630}\
.epoch{fill:#f4f4f4}.epoch.odd{fill:#e6ecf2}.lane-name{font-size:12px;fill:#333}\
.req{stroke:#444;stroke-width:0.5}.req.read{fill:#8fb3d9}.req.write{fill:#7cc47c}.req.flush{fill:#b08fd9}\
.req.unfinished{stroke-dasharray:2,2;fill-opacity:0.5}.req.failed{fill:#e05050}\
.req.persisted{stroke:#000;stroke-width:1.5}.req.lost{fill-opacity:0.2;stroke:#999}.req.torn{fill:#e0c040}\
.req.needed{stroke:#d00000;stroke-width:2.5}.req.involved{stroke:#f0c000;stroke-width:2.5}\
.preflush-mark{fill:#e07000}.fua-mark{fill:#004080}\
.marker line{stroke:#900;stroke-width:1.5;stroke-dasharray:4,2}.marker text{font-size:11px;fill:#900}\
.marker.failing line{stroke:#f00;stroke-width:2.5;stroke-dasharray:none}\
#info{background:#fafafa;border:1px solid #ccc;padding:6px;min-height:1.5em}\
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:18px;height:9px;margin-right:4px;border:1px solid #444}";

const LEGEND: &str = "<p class=\"legend\"><span><i style=\"background:#8fb3d9\"></i>read</span><span><i style=\"background:#7cc47c\"></i>write</span>\
<span><i style=\"background:#b08fd9\"></i>flush</span><span><i style=\"background:#e07000\"></i>PREFLUSH (left edge)</span>\
<span><i style=\"background:#004080\"></i>FUA (right edge)</span><span><i style=\"background:#e05050\"></i>failed</span>\
<span><i style=\"background:#e0c040\"></i>torn</span><span><i style=\"background:#fff;opacity:0.4\"></i>lost</span>\
<span><i style=\"border:2px solid #000\"></i>persisted</span><span><i style=\"border:2px solid #d00000\"></i>needed by the failure</span>\
<span>bands: flush epochs; red lines: crashes and reloads</span></p>\n";

const SCRIPT: &str = "(function(){var info=document.getElementById('info');\
var reqs=document.querySelectorAll('#timeline .req');\
reqs.forEach(function(r){r.addEventListener('mouseover',function(){info.textContent=r.getAttribute('data-detail');});});\
document.body.setAttribute('data-lanes',String(document.querySelectorAll('#timeline .lane').length));\
document.body.setAttribute('data-requests',String(reqs.length));\
document.body.setAttribute('data-timeline-ready','yes');})();";

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
        assert!(page.contains("W4 on cow0 (boot 0): write sectors 8+8 PREFLUSH|FUA"));
        assert!(page.contains("basic-cow &lt;Z7&gt;"));
    }
}
