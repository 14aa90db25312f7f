//! The timeline's picture and table: lanes of labelled request bars over an
//! axis of ticks, crash lines, the legend (one meaning per colour), and a
//! table of every request under the picture.

use std::fmt::Write as _;

use super::{Bar, Fate, Timeline, escape};

const LEFT: f64 = 70.0;
const WIDTH_MIN: f64 = 1300.0;
/// A one-tick bar stays wide enough to show its request number; a long run
/// makes the picture wider (it scrolls) rather than its bars unreadable.
const TICK_MIN: f64 = 16.0;
const WIDTH_MAX: f64 = 40_000.0;
const ROW: f64 = 16.0;
const ROWS_MAX: usize = 16;
/// Room under the lanes for the axis of ticks.
const AXIS: f64 = 30.0;
/// Labels are 10px monospace, so their width is known without a browser.
const CHAR: f64 = 6.1;

/// Where everything goes.
struct Layout {
    scale: f64,
    width: f64,
    /// Bottom of the lanes, top of the axis.
    lanes_end: f64,
    height: f64,
    /// Row of each bar inside its lane.
    rows: Vec<usize>,
    lane_top: Vec<f64>,
    lane_rows: Vec<usize>,
}

impl Layout {
    fn x(&self, tick: u64) -> f64 {
        LEFT + tick as f64 * self.scale
    }
}

impl Timeline {
    /// The tick a bar's drawing ends at: its completion, or for a request
    /// never completed the crash (or the end) that stopped it.
    fn bar_end(&self, bar: &Bar) -> u64 {
        let stopped = self.markers.iter().map(|m| m.tick).filter(|&t| t >= bar.submitted).min().unwrap_or(self.end);
        bar.completed.unwrap_or(stopped)
    }

    /// The boot whose crash state failed: boots are counted by the crash and
    /// reload markers before it.
    pub(super) fn failing_boot(&self) -> Option<u64> {
        self.markers.iter().position(|m| m.failing).map(|i| i as u64)
    }

    fn layout(&self) -> Layout {
        let ticks = self.end.max(1) as f64;
        let width = (LEFT + ticks * TICK_MIN + 10.0).clamp(WIDTH_MIN, WIDTH_MAX);
        let scale = (width - LEFT - 10.0) / ticks;
        // Rows inside each lane, so that bars in flight together do not overlap.
        let mut rows = vec![0usize; self.bars.len()];
        let mut lane_rows = vec![1usize; self.devices.len()];
        for (lane, lane_rows) in lane_rows.iter_mut().enumerate() {
            let mut row_free: Vec<u64> = Vec::new();
            for (i, bar) in self.bars.iter().enumerate().filter(|(_, b)| b.disk == lane) {
                let end = self.bar_end(bar) + 1;
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
            y += n as f64 * ROW + 14.0;
        }
        Layout { scale, width, lanes_end: y, height: y + AXIS, rows, lane_top, lane_rows }
    }

    /// The SVG picture.
    pub(super) fn svg(&self) -> String {
        let layout = self.layout();
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<div class=\"scroll\"><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\">{DEFS}",
            layout.width, layout.height
        );
        for lane in 0..self.devices.len() {
            self.lane(&mut svg, &layout, lane);
        }
        for (i, bar) in self.bars.iter().enumerate() {
            let top = layout.lane_top[bar.disk] + 4.0 + layout.rows[i] as f64 * ROW;
            self.bar(&mut svg, &layout, bar, top);
        }
        self.axis(&mut svg, &layout);
        for marker in &self.markers {
            let id = if marker.failing { " id=\"crash-marker\"" } else { "" };
            let class = if marker.failing { "marker failing" } else { "marker" };
            let x = layout.x(marker.tick);
            // Near the right edge the label goes left of its line, not off the picture.
            let (text_x, text_class) = if x + marker.label.len() as f64 * 7.0 > layout.width { (x - 3.0, " class=\"left\"") } else { (x + 3.0, "") };
            let _ = writeln!(
                svg,
                "<g class=\"{class}\"{id}><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"12\" y2=\"{:.1}\"/><text{text_class} x=\"{text_x:.1}\" y=\"11\">{}</text></g>",
                layout.lanes_end,
                escape(&marker.label)
            );
        }
        svg += "</svg></div>\n";
        svg
    }

    /// A device's lane, shaded by flush epoch: each completed flush (or
    /// PREFLUSH write) makes what completed before it durable and starts a band.
    fn lane(&self, svg: &mut String, layout: &Layout, lane: usize) {
        let name = escape(&self.devices[lane]);
        let (top, h) = (layout.lane_top[lane], layout.lane_rows[lane] as f64 * ROW + 6.0);
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
            let (x0, x1) = (layout.x(w[0]), layout.x(w[1]));
            let _ = writeln!(svg, "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>", (x1 - x0).max(0.5));
        }
        let _ = writeln!(svg, "<text class=\"lane-name\" x=\"4\" y=\"{:.1}\">{name}</text></g>", top + h / 2.0 + 4.0);
    }

    /// One request: its bar, its PREFLUSH and FUA edges, its label, and
    /// the frame that says it writes sectors the violation names.
    fn bar(&self, svg: &mut String, layout: &Layout, bar: &Bar, top: f64) {
        let x0 = layout.x(bar.submitted);
        let x1 = layout.x(self.bar_end(bar)).max(x0 + 2.0);
        let (w, h) = (x1 - x0, ROW - 3.0);
        let detail = escape(&self.describe(bar));
        let _ = writeln!(
            svg,
            "<g class=\"bar\" data-request=\"{}\" data-device=\"{}\" data-boot=\"{}\">",
            bar.name(),
            escape(self.device(bar)),
            bar.boot
        );
        let _ = writeln!(
            svg,
            "<rect class=\"req {}\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" data-detail=\"{detail}\"><title>{detail}</title></rect>",
            self.classes(bar)
        );
        if bar.preflush {
            let _ = writeln!(svg, "<rect class=\"preflush-mark\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"2.5\" height=\"{h:.1}\"/>");
        }
        if bar.fua {
            let _ = writeln!(svg, "<rect class=\"fua-mark\" x=\"{:.1}\" y=\"{top:.1}\" width=\"2.5\" height=\"{h:.1}\"/>", x1 - 2.5);
        }
        if self.involved(bar) {
            let _ = writeln!(
                svg,
                "<rect class=\"involved-mark\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
                x0 - 2.0,
                top - 2.0,
                w + 4.0,
                h + 4.0
            );
        }
        // The whole label where it fits, else the request number, clipped
        // by the inner svg's own viewport where even that does not fit.
        if w >= 8.0 {
            let full = bar.label();
            let text = if full.len() as f64 * CHAR + 5.0 <= w { full } else { bar.name() };
            let _ = writeln!(
                svg,
                "<svg class=\"label\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"><text x=\"3\" y=\"10\">{text}</text></svg>"
            );
        }
        svg.push_str("</g>\n");
    }

    fn classes(&self, bar: &Bar) -> String {
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
        class.join(" ")
    }

    /// An origin request over a sector the violation names.
    pub(super) fn involved(&self, bar: &Bar) -> bool {
        bar.disk == 0 && self.sectors.iter().any(|&s| (bar.sector..bar.sector + bar.sectors).contains(&s))
    }

    /// The axis of ticks under the lanes, a tick mark every 1, 2 or 5 times
    /// a power of ten, whichever leaves at least 50px between numbers.
    fn axis(&self, svg: &mut String, layout: &Layout) {
        let mut step = 1u64;
        while (step as f64) * layout.scale < 50.0 {
            step = match step.to_string().as_bytes()[0] {
                b'1' => step * 2,
                b'2' => step / 2 * 5,
                _ => step * 2,
            };
        }
        let y = layout.lanes_end;
        let _ = writeln!(
            svg,
            "<g class=\"axis\" id=\"axis\" data-step=\"{step}\"><line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"4\" y=\"{:.1}\">tick</text>",
            layout.x(self.end),
            y + 16.0
        );
        for tick in (0..=self.end).step_by(step as usize) {
            let x = layout.x(tick);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\">{tick}</text>",
                y + 5.0,
                y + 16.0
            );
        }
        svg.push_str("</g>\n");
    }
}

impl Bar {
    /// `W3`: the op's letter and the request's number on its disk.
    pub(super) fn name(&self) -> String {
        let letter = match self.kind {
            "write" => "W",
            "read" => "R",
            _ => "F",
        };
        format!("{letter}{}", self.request)
    }

    /// `W3 16+8`: the name, start sector and sectors (a flush has none).
    pub(super) fn label(&self) -> String {
        if self.kind == "flush" { self.name() } else { format!("{} {}+{}", self.name(), self.sector, self.sectors) }
    }
}

/// Patterns the bars use: an I/O error is hatched.
const DEFS: &str = "<defs><pattern id=\"hatch-error\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<rect width=\"6\" height=\"6\" fill=\"#ffffff\"/><rect width=\"3\" height=\"6\" fill=\"#8b4513\"/></pattern></defs>\n";
