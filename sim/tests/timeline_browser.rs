//! The timeline page in a real browser: a failing crash state (bug zoo Z7,
//! area writes without PREFLUSH|FUA) explored with a timeline, the page
//! rendered by headless Chromium, its DOM read back after its script ran;
//! and a fixed small timeline screenshotted and compared with a kept
//! reference picture.
//!
//! The page must load without a script error (its script ends by marking
//! the body ready, and Chromium's console log must hold no uncaught
//! error), hold a lane per device, a bar per request, each bar wide enough
//! labelled `W3 16+8`, a table row per request, and the failing crash
//! marker. Where no Chromium is installed the tests say plainly that they
//! were skipped; CI installs Debian's `chromium` package, so there they run.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::zoo::{Mutation, Mutations};
use sim::explore::{Bounds, explore};
use sim::scenario::Scenario;
use sim::timeline::{Bar, Fate, Marker, Timeline};

/// The browser: `SNAPSIM_CHROMIUM`, or the first of the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SNAPSIM_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium headless, with what makes its pictures repeatable: one device
/// pixel per CSS pixel, no scrollbars, no GPU, no LCD subpixel text.
fn headless(browser: &Path, args: &[&str], page: &Path) -> std::process::Output {
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000"])
        .args(["--force-device-scale-factor=1", "--hide-scrollbars", "--disable-lcd-text", "--font-render-hinting=none"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser runs")
}

/// `W3`, as the page names a request.
fn name(bar: &Bar) -> String {
    let letter = match bar.kind {
        "write" => "W",
        "read" => "R",
        _ => "F",
    };
    format!("{letter}{}", bar.request)
}

#[test]
fn the_timeline_of_a_failing_crash_state_renders_in_a_browser() {
    let scenario = Scenario::load("basic-cow").unwrap();
    let mut config = scenario.run_config(scenario.file.seeds[0]);
    config.mutations = Mutations::only(Mutation::Z7AreaWriteWithoutFlushFua);
    config.timeline = true;
    let (_, outcome) = explore(&config, &Bounds::default());
    let failure = outcome.expect_err("Z7 is caught");
    let timeline = failure.timeline.expect("a timeline was asked for");
    assert!(timeline.markers.iter().any(|m| m.failing), "the failing crash is marked");
    assert!(timeline.bars.iter().any(|b| b.needed), "the writes the failure needs are marked");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("timeline.html");
    std::fs::write(&page, timeline.to_html()).unwrap();

    let Some(browser) = chromium() else {
        println!("SKIPPED: no Chromium here (set SNAPSIM_CHROMIUM or install Debian's chromium); the page was written but not rendered");
        return;
    };
    let dom = headless(&browser, &["--dump-dom"], &page);
    assert!(dom.status.success(), "{browser:?} --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    let html = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(!log.contains("Uncaught"), "the page's script failed: {log}");
    assert!(html.contains("data-timeline-ready=\"yes\""), "the page's script did not finish: {html}");
    assert!(html.contains(&format!("data-lanes=\"{}\"", timeline.devices.len())), "a lane per device: {html}");
    assert!(html.contains(&format!("data-requests=\"{}\"", timeline.bars.len())), "a bar per request: {html}");
    assert!(html.contains(&format!("data-rows=\"{}\"", timeline.bars.len())), "a table row per request: {html}");
    assert!(html.contains("id=\"crash-marker\""), "the failing crash marker: {html}");
    assert!(html.contains("id=\"axis\""), "the axis of ticks: {html}");
    check_labels_and_rows(&timeline, &html);
    println!("rendered in {}: {} lanes, {} requests", browser.display(), timeline.devices.len(), timeline.bars.len());
}

/// Each write the failure needs is labelled in the picture (they span a
/// tick or more of a short run, room enough), and every request has its
/// row in the table, the needed ones marked so.
fn check_labels_and_rows(timeline: &Timeline, html: &str) {
    for bar in timeline.bars.iter().filter(|b| b.needed) {
        let label = format!(">{} {}+{}</text>", name(bar), bar.sector, bar.sectors);
        assert!(html.contains(&label), "the needed write is labelled {label}: {html}");
    }
    for bar in &timeline.bars {
        let device = &timeline.devices[bar.disk];
        let class = if bar.needed { " class=\"needed\"" } else { "" };
        let row = format!("<tr{class} data-request=\"{}\" data-device=\"{device}\" data-boot=\"{}\">", name(bar), bar.boot);
        assert!(html.contains(&row), "a table row {row}: {html}");
    }
    let needed = timeline.bars.iter().filter(|b| b.needed).count();
    assert_eq!(html.matches("<tr class=\"needed\"").count(), needed, "one needed row per needed write");
}

/// A small timeline that touches every mark of the legend: two boots, a
/// crash and the failing one, PREFLUSH and FUA, an I/O error, a request in
/// flight, writes persisted, lost and torn, the needed ones, and one over
/// the sector the violation names. Built by hand so that only a change to
/// the page, not to the engine, changes its picture.
fn fixed_timeline() -> Timeline {
    let bar = |disk, boot, request, kind, (sector, sectors), (submitted, completed): (u64, Option<u64>)| Bar {
        disk,
        boot,
        request,
        kind,
        preflush: kind == "flush",
        fua: false,
        sector,
        sectors,
        submitted,
        completed,
        ok: true,
        fate: None,
        needed: false,
    };
    let mut bars = vec![
        bar(0, 0, 0, "read", (0, 8), (0, Some(1))),
        bar(1, 0, 1, "write", (0, 8), (1, Some(3))),
        bar(1, 0, 2, "flush", (0, 0), (3, Some(4))),
        bar(1, 0, 3, "write", (16, 8), (4, Some(6))),
        bar(1, 1, 0, "read", (0, 1), (8, Some(9))),
        bar(0, 1, 1, "write", (992, 8), (9, Some(11))),
        bar(1, 1, 1, "write", (8, 8), (10, Some(12))),
        bar(1, 1, 2, "write", (24, 8), (11, Some(13))),
        bar(1, 1, 3, "write", (32, 8), (13, None)),
    ];
    (bars[1].preflush, bars[1].fua) = (true, true);
    bars[3].ok = false;
    bars[5].fate = Some(Fate::Persisted);
    (bars[6].fate, bars[6].needed) = (Some(Fate::Torn { held: 3, sectors: 8 }), true);
    (bars[7].fate, bars[7].needed) = (Some(Fate::Lost), true);
    (bars[8].fate, bars[8].fua) = (Some(Fate::Persisted), true);
    Timeline {
        title: "a fixed timeline".into(),
        devices: vec!["origin".into(), "cow0".into()],
        bars,
        markers: vec![
            Marker { tick: 7, label: "crash".into(), failing: false },
            Marker { tick: 15, label: "crash (failing state)".into(), failing: true },
        ],
        end: 16,
        failure: Some("I2 snapshot view: snapshot 0 sector 992 holds a value never legal there".into()),
        cause: Some("the failure needs: W2 on cow0 lost while W1 on cow0 torn".into()),
        sectors: vec![992],
    }
}

/// The kept reference picture of [`fixed_timeline`], and what drew it: the
/// fonts the page's families resolve to and the browser's version.
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/timeline-reference.png");
const REFERENCE_FONTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/timeline-reference.fonts");
/// Share of pixels that may differ. The same Chromium and fonts draw the
/// same pixels (no difference at all); this leaves room for antialiasing,
/// not for one bar recoloured (about 0.2% of the picture) or moved. Labels
/// and rows are checked in the DOM.
const TOLERANCE: f64 = 0.001;

/// What draws the page here: the fonts its generic families resolve to,
/// and the names Chromium asks fontconfig for them (its default sans-serif
/// is Arial, which resolves to Liberation Sans where fonts-liberation is
/// installed and to DejaVu Sans where it is not), then the browser's
/// version. None without fontconfig.
fn drawing_environment(browser: &Path) -> Option<String> {
    let mut text = String::new();
    for family in ["sans-serif", "monospace", "Arial", "Courier New"] {
        let out = Command::new("fc-match").arg(family).output().ok()?;
        text += &format!("{family}: {}", String::from_utf8_lossy(&out.stdout));
    }
    Some(text + &format!("browser: {}\n", version(browser)))
}

fn version(browser: &Path) -> String {
    Command::new(browser).arg("--version").output().map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string()).unwrap_or_default()
}

/// The fixed timeline, screenshotted at a fixed window size, matches the
/// kept reference within [`TOLERANCE`]. `SNAPSIM_UPDATE_REFERENCE=1` writes
/// a new reference (after a deliberate change to the page; look at it).
#[test]
fn the_fixed_timeline_looks_like_its_reference() {
    let Some(browser) = chromium() else {
        println!("SKIPPED: no Chromium here (set SNAPSIM_CHROMIUM or install Debian's chromium); nothing was compared");
        return;
    };
    let update = std::env::var_os("SNAPSIM_UPDATE_REFERENCE").is_some();
    let here = drawing_environment(&browser);
    let kept = std::fs::read_to_string(REFERENCE_FONTS).ok();
    if !update && (here.is_none() || here != kept) {
        println!("SKIPPED: the reference was drawn with other fonts or another browser ({kept:?}; here {here:?}); its pixels would not compare");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fixed.html");
    std::fs::write(&page, fixed_timeline().to_html()).unwrap();
    let screenshot = dir.path().join("fixed.png");
    let shot = headless(&browser, &[&format!("--screenshot={}", screenshot.display()), "--window-size=1400,760"], &page);
    assert!(shot.status.success(), "{browser:?} --screenshot failed: {}", String::from_utf8_lossy(&shot.stderr));
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    if update {
        std::fs::write(REFERENCE, &png).unwrap();
        std::fs::write(REFERENCE_FONTS, here.unwrap_or_default()).unwrap();
        println!("wrote {REFERENCE}");
        return;
    }
    let actual = decode_png(&png);
    let reference = decode_png(&std::fs::read(REFERENCE).expect("the reference picture is kept"));
    let ratio = difference(&actual, &reference);
    let kept_actual = Path::new(env!("CARGO_TARGET_TMPDIR")).join("timeline-actual.png");
    std::fs::write(&kept_actual, &png).unwrap();
    assert!(
        ratio <= TOLERANCE,
        "{:.3}% of the pixels differ from {REFERENCE} (at most {:.3}%): see {} (drawn by {}); \
after a deliberate change to the page, SNAPSIM_UPDATE_REFERENCE=1 writes a new reference",
        ratio * 100.0,
        TOLERANCE * 100.0,
        kept_actual.display(),
        version(&browser)
    );
    println!("{:.3}% of the pixels differ from the reference", ratio * 100.0);
}

/// A picture: width, height, RGB pixels row by row.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

/// Share of pixels whose colour moved by more than a faint antialiasing
/// shade on any channel; pictures of different sizes differ entirely.
fn difference(a: &Picture, b: &Picture) -> f64 {
    if (a.width, a.height) != (b.width, b.height) {
        return 1.0;
    }
    let differ = a.rgb.iter().zip(&b.rgb).filter(|(p, q)| p.iter().zip(q.iter()).any(|(x, y)| x.abs_diff(*y) > 40)).count();
    differ as f64 / a.rgb.len().max(1) as f64
}

/// Decodes the PNGs Chromium writes: 8-bit RGB or RGBA, not interlaced.
fn decode_png(png: &[u8]) -> Picture {
    use std::io::Read as _;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (mut at, mut header, mut data) = (8, None, Vec::new());
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let (kind, body) = (&png[at + 4..at + 8], &png[at + 8..at + 8 + len]);
        match kind {
            b"IHDR" => header = Some(body.to_vec()),
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        at += 12 + len;
    }
    let header = header.expect("an IHDR chunk");
    let width = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
    let height = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
    let channels = match (header[8], header[9], header[12]) {
        (8, 2, 0) => 3,
        (8, 6, 0) => 4,
        other => panic!("a PNG of 8-bit RGB or RGBA, not interlaced: {other:?}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&data[..]).read_to_end(&mut raw).expect("the pixels inflate");
    let stride = width * channels;
    let mut pixels = vec![0u8; stride * height];
    for y in 0..height {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let left = if x >= channels { pixels[y * stride + x - channels] } else { 0 };
            let up = if y > 0 { pixels[(y - 1) * stride + x] } else { 0 };
            let corner = if y > 0 && x >= channels { pixels[(y - 1) * stride + x - channels] } else { 0 };
            pixels[y * stride + x] = unfilter(line[0], line[1 + x], left, up, corner);
        }
    }
    let rgb = pixels.chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Picture { width, height, rgb }
}

/// One byte of a PNG scanline, its filter undone.
fn unfilter(filter: u8, byte: u8, left: u8, up: u8, corner: u8) -> u8 {
    let predicted = match filter {
        0 => 0,
        1 => left,
        2 => up,
        3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
        4 => {
            let p = i16::from(left) + i16::from(up) - i16::from(corner);
            let (pa, pb, pc) = ((p - i16::from(left)).abs(), (p - i16::from(up)).abs(), (p - i16::from(corner)).abs());
            if pa <= pb && pa <= pc {
                left
            } else if pb <= pc {
                up
            } else {
                corner
            }
        }
        other => panic!("PNG filter {other}"),
    };
    byte.wrapping_add(predicted)
}
