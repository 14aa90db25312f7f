//! The timeline page in a real browser: a failing crash state (bug zoo Z7,
//! area writes without PREFLUSH|FUA) explored with a timeline, the page
//! rendered by headless Chromium, its DOM read back after its script ran.
//!
//! The page must load without a script error (its script ends by marking
//! the body ready, and Chromium's console log must hold no uncaught
//! error), hold a lane per device and a bar per request, and show the
//! failing crash marker; the screenshot must be a PNG. Where no Chromium is
//! installed the test says plainly that it was skipped; CI installs
//! Debian's `chromium` package, so there it always runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::zoo::{Mutation, Mutations};
use sim::explore::{Bounds, explore};
use sim::scenario::Scenario;

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

fn headless(browser: &Path, args: &[&str], page: &Path) -> std::process::Output {
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser runs")
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
    assert!(html.contains("id=\"crash-marker\""), "the failing crash marker: {html}");

    let screenshot = dir.path().join("timeline.png");
    let shot = headless(&browser, &[&format!("--screenshot={}", screenshot.display()), "--window-size=1400,700"], &page);
    assert!(shot.status.success(), "{browser:?} --screenshot failed: {}", String::from_utf8_lossy(&shot.stderr));
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "the screenshot is a PNG of a page, {} bytes", png.len());
    println!("rendered in {}: {} lanes, {} requests, screenshot {} bytes", browser.display(), timeline.devices.len(), timeline.bars.len(), png.len());
}
