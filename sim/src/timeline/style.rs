//! The timeline page's style, legend and script. Each colour means one
//! thing: [`COLOURS`] names them, a test holds the style to that list.

/// Every colour that carries a meaning, with the meaning (a test holds
/// [`STYLE`] to it).
#[cfg(test)]
pub(super) const COLOURS: [(&str, &str); 11] = [
    ("#8fb3d9", "read"),
    ("#7cc47c", "write"),
    ("#b08fd9", "flush"),
    ("#8b4513", "I/O error (hatched)"),
    ("#e0c040", "torn in the failing state"),
    ("#000000", "persisted in the failing state (outline)"),
    ("#d00000", "the failure: its crash line, the writes it needs (outline), its message"),
    ("#c000c0", "writes over the sectors the violation names (dashed frame)"),
    ("#e07000", "PREFLUSH (left edge)"),
    ("#004080", "FUA (right edge)"),
    ("#777777", "other crashes and clean reloads (dashed lines)"),
];

/// Colours that say nothing: text, borders, the flush-epoch bands, the axis,
/// the outline of a bar with no fate, and the white under a hatching.
#[cfg(test)]
pub(super) const NEUTRAL: [&str; 8] = ["#222222", "#333333", "#444444", "#f4f4f4", "#e6ecf2", "#fafafa", "#cccccc", "#ffffff"];

pub(super) const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222222}h1{font-size:18px}\
.failure{color:#d00000;font-weight:bold}.cause{color:#d00000}\
.scroll{overflow-x:auto}\
.epoch{fill:#f4f4f4}.epoch.odd{fill:#e6ecf2}.lane-name{font-size:12px;fill:#333333}\
.req{stroke:#444444;stroke-width:0.5}.req.read{fill:#8fb3d9}.req.write{fill:#7cc47c}.req.flush{fill:#b08fd9}\
.req.unfinished{stroke-dasharray:3,2;fill-opacity:0.5}.req.failed{fill:url(#hatch-error)}\
.req.persisted{stroke:#000000;stroke-width:1.5}.req.lost{fill-opacity:0.25;stroke-opacity:0.4}.req.torn{fill:#e0c040}\
.req.needed{stroke:#d00000;stroke-width:2.5;stroke-opacity:1}\
.involved-mark{fill:none;stroke:#c000c0;stroke-width:1.5;stroke-dasharray:4,2}\
.preflush-mark{fill:#e07000}.fua-mark{fill:#004080}\
.label{pointer-events:none;overflow:hidden}.label text{font-family:monospace;font-size:10px;fill:#222222}\
.req.failed~.label text{paint-order:stroke;stroke:#ffffff;stroke-width:3px}\
.marker line{stroke:#777777;stroke-width:1.5;stroke-dasharray:4,2}.marker text{font-size:11px;fill:#777777}.marker text.left{text-anchor:end}\
.marker.failing line{stroke:#d00000;stroke-width:2.5;stroke-dasharray:none}.marker.failing text{fill:#d00000}\
.axis line{stroke:#444444;stroke-width:1}.axis text{font-size:11px;fill:#444444}.axis text.tick{text-anchor:middle}\
#info{background:#fafafa;border:1px solid #cccccc;padding:6px;min-height:1.5em}\
.legend{font-size:12px}.legend span{display:inline-block;margin:0 12px 4px 0}.legend svg{vertical-align:middle;margin-right:4px}\
#requests{border-collapse:collapse;font-size:12px;margin-top:12px}#requests th,#requests td{border:1px solid #cccccc;padding:2px 6px;text-align:left}\
#requests td:nth-child(1),#requests td:nth-child(5){font-family:monospace}#requests tr.needed td:nth-child(10){color:#d00000;font-weight:bold}";

/// A sample of each mark, drawn with the bars' own classes so that the
/// legend cannot disagree with the picture.
pub(super) const LEGEND: &str = "<p class=\"legend\" id=\"legend\">\
<span><svg width=\"26\" height=\"14\"><rect class=\"req read\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>read</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>write</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req flush\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>flush</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write failed\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>I/O error</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write unfinished\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>in flight when the machine stopped</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write persisted\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>persisted</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write lost\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>lost</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write torn\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>torn</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write needed\" x=\"2\" y=\"2\" width=\"22\" height=\"10\"/></svg>needed by the failure</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"involved-mark\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/></svg>over a sector the violation names</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/><rect class=\"preflush-mark\" x=\"1\" y=\"1\" width=\"3\" height=\"12\"/></svg>PREFLUSH</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"req write\" x=\"1\" y=\"1\" width=\"24\" height=\"12\"/><rect class=\"fua-mark\" x=\"22\" y=\"1\" width=\"3\" height=\"12\"/></svg>FUA</span>\
<span><svg width=\"26\" height=\"14\" class=\"marker failing\"><line x1=\"13\" x2=\"13\" y1=\"0\" y2=\"14\"/></svg>the failing crash</span>\
<span><svg width=\"26\" height=\"14\" class=\"marker\"><line x1=\"13\" x2=\"13\" y1=\"0\" y2=\"14\"/></svg>other crash or reload</span>\
<span><svg width=\"26\" height=\"14\"><rect class=\"epoch\" x=\"0\" y=\"1\" width=\"13\" height=\"12\"/><rect class=\"epoch odd\" x=\"13\" y=\"1\" width=\"13\" height=\"12\"/></svg>flush epochs</span>\
<span>labels: <code>W3 16+8</code> is write request 3 of its disk, 8 sectors from sector 16</span></p>\n";

/// Shows the request under the pointer, and marks the body once it ran
/// (the browser test reads that back).
pub(super) const SCRIPT: &str = "(function(){var info=document.getElementById('info');\
var reqs=document.querySelectorAll('#timeline .req');\
reqs.forEach(function(r){r.addEventListener('mouseover',function(){info.textContent=r.getAttribute('data-detail');});});\
document.body.setAttribute('data-lanes',String(document.querySelectorAll('#timeline .lane').length));\
document.body.setAttribute('data-requests',String(reqs.length));\
document.body.setAttribute('data-labels',String(document.querySelectorAll('#timeline .label text').length));\
document.body.setAttribute('data-rows',String(document.querySelectorAll('#requests tbody tr').length));\
document.body.setAttribute('data-timeline-ready','yes');})();";
