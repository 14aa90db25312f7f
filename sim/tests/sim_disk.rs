//! SimDisk's fault model, one small fixture per rule.
//!
//! A [`Script`] submits requests by name, completes them in the order a
//! fixture says, and reads back what a crash may leave: for each sector the
//! tags of its candidates (durable value first). Sector contents are tags:
//! `A`, `B`… repeated through the sector; a never-written sector reads `-`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use engine::io::{BlockDevice, WriteFlags};
use sim::disk::{FaultRates, Image, SimDisk};

/// Every request's outcomes by name (read data, or the error's message).
type Results = Arc<Mutex<BTreeMap<&'static str, Vec<Result<Vec<u8>, String>>>>>;

struct Script {
    disk: SimDisk,
    ids: BTreeMap<&'static str, u64>,
    results: Results,
}

/// `sectors` sectors, each the tag repeated from the sector's start.
fn fill(tag: &str, sectors: u64) -> Vec<u8> {
    (0..sectors).flat_map(|_| tag.as_bytes().iter().copied().cycle().take(512)).collect()
}

fn tag_of(bytes: &[u8]) -> String {
    if bytes.iter().all(|&b| b == b'-') {
        return "-".into();
    }
    let end = bytes.iter().skip(1).position(|&b| b == bytes[0]).map_or(bytes.len(), |p| p + 1);
    String::from_utf8_lossy(&bytes[..end.min(8)]).into_owned()
}

const FUA: WriteFlags = WriteFlags { preflush: false, fua: true };
const PREFLUSH_FUA: WriteFlags = WriteFlags::PREFLUSH_FUA;
const PLAIN: WriteFlags = WriteFlags::PLAIN;

impl Script {
    fn new(sectors: u64) -> Self {
        Self::with_faults(sectors, FaultRates::default())
    }

    fn with_faults(sectors: u64, faults: FaultRates) -> Self {
        let disk = SimDisk::new(1, Image::from_bytes(fill("-", sectors)), faults, 7);
        Self { disk, ids: BTreeMap::new(), results: Default::default() }
    }

    fn last_id(&mut self, name: &'static str) {
        let id = self.disk.in_flight().last().expect("submitted").id;
        self.ids.insert(name, id);
    }

    fn recorder<T: Into<Vec<u8>> + Send + 'static>(&self, name: &'static str) -> engine::io::IoDone<T> {
        let results = Arc::clone(&self.results);
        Box::new(move |r: Result<T, engine::IoError>| {
            results.lock().unwrap().entry(name).or_default().push(r.map(Into::into).map_err(|e| e.to_string()));
        })
    }

    fn write(&mut self, name: &'static str, sector: u64, tag: &str, sectors: u64, flags: WriteFlags) {
        let done = self.recorder::<Vec<u8>>(name);
        self.disk.write(sector, fill(tag, sectors), flags, Box::new(move |r| done(r.map(|()| Vec::new()))));
        self.last_id(name);
    }

    fn flush(&mut self, name: &'static str) {
        let done = self.recorder::<Vec<u8>>(name);
        self.disk.flush(Box::new(move |r| done(r.map(|()| Vec::new()))));
        self.last_id(name);
    }

    fn read(&mut self, name: &'static str, sector: u64, sectors: u32) {
        let done = self.recorder::<Vec<u8>>(name);
        self.disk.read(sector, sectors, done);
        self.last_id(name);
    }

    fn complete(&mut self, name: &'static str) {
        let completion = self.disk.complete(self.ids[name]);
        assert!(self.results.lock().unwrap().get(name).is_none(), "{name} completed before its completion ran");
        completion.run();
    }

    /// Tags a crash may leave in `sector`, durable first.
    fn candidates(&self, sector: u64) -> Vec<String> {
        match self.disk.crash_candidates().get(&sector) {
            Some(options) => options.iter().map(|s| tag_of(s.bytes())).collect(),
            None => vec![tag_of(self.disk.durable().sector(sector))],
        }
    }

    fn durable(&self, sector: u64) -> String {
        tag_of(self.disk.durable().sector(sector))
    }

    fn result(&self, name: &str) -> Vec<Result<String, String>> {
        self.results.lock().unwrap().get(name).cloned().unwrap_or_default().into_iter().map(|r| r.map(|b| tag_of(&b))).collect()
    }
}

#[test]
fn fua_is_not_a_barrier() {
    let mut s = Script::new(8);
    s.write("a", 0, "A", 1, PLAIN);
    s.complete("a");
    s.write("b", 1, "B", 1, FUA);
    s.complete("b");
    assert_eq!(s.candidates(1), ["B"], "the FUA write is durable");
    assert_eq!(s.candidates(0), ["-", "A"], "the earlier plain write may still be lost");
}

#[test]
fn preflush_covers_only_writes_completed_before_submission() {
    let mut s = Script::new(8);
    s.write("a", 0, "A", 1, PLAIN);
    s.complete("a");
    s.write("b", 1, "B", 1, PLAIN);
    s.flush("f");
    s.complete("b"); // completes after the flush was submitted
    s.complete("f");
    assert_eq!(s.candidates(0), ["A"]);
    assert_eq!(s.candidates(1), ["-", "B"]);
}

#[test]
fn preflush_fua_write_makes_earlier_writes_and_itself_durable() {
    let mut s = Script::new(8);
    s.write("data", 4, "D", 2, PLAIN);
    s.complete("data");
    s.write("meta", 1, "M", 1, PREFLUSH_FUA);
    s.complete("meta");
    assert_eq!([s.candidates(4), s.candidates(5), s.candidates(1)], [["D"], ["D"], ["M"]]);
}

#[test]
fn an_in_flight_preflush_write_never_lands_without_the_writes_it_follows() {
    let mut s = Script::new(8);
    s.write("data", 4, "D", 1, PLAIN);
    s.complete("data");
    s.write("record", 1, "R", 1, PREFLUSH_FUA); // in flight at the crash
    assert_eq!(s.candidates(1), ["-"], "the record cannot be on the media while D may not be");
    assert_eq!(s.candidates(4), ["-", "D"]);
    s.write("plain", 2, "P", 1, FUA); // an in-flight write without PREFLUSH may land
    assert_eq!(s.candidates(2), ["-", "P"]);
}

#[test]
fn a_failed_flush_makes_nothing_durable() {
    let mut s = Script::with_faults(8, FaultRates { flush_error: 1.0, ..FaultRates::default() });
    s.write("a", 0, "A", 1, PLAIN);
    s.complete("a");
    s.flush("f");
    s.complete("f");
    assert!(s.result("f")[0].is_err());
    assert_eq!(s.candidates(0), ["-", "A"]);
}

#[test]
fn reads_see_the_newest_completed_write_only() {
    let mut s = Script::new(8);
    s.write("a", 2, "A", 1, PLAIN);
    s.complete("a");
    s.write("b", 2, "B", 1, PLAIN);
    s.read("before", 2, 1);
    s.complete("before");
    s.complete("b");
    s.read("after", 2, 1);
    s.complete("after");
    assert_eq!(s.result("before"), [Ok("A".to_string())]);
    assert_eq!(s.result("after"), [Ok("B".to_string())]);
}

#[test]
fn a_crash_may_leave_any_value_written_since_the_durable_one() {
    let mut s = Script::new(8);
    for (name, tag) in [("a", "A"), ("b", "B"), ("c", "C")] {
        s.write(name, 3, tag, 1, PLAIN);
        s.complete(name);
    }
    s.write("d", 3, "D", 1, PLAIN); // still in flight
    assert_eq!(s.candidates(3), ["-", "A", "B", "C", "D"]);
    s.flush("f");
    s.complete("f");
    assert_eq!(s.candidates(3), ["C", "D"], "after the flush: durable C, or the in-flight D");
}

#[test]
fn torn_writes_appear_at_sector_granularity() {
    let mut s = Script::new(8);
    s.write("w", 0, "W", 4, PLAIN);
    s.complete("w");
    for sector in 0..4 {
        assert_eq!(s.candidates(sector), ["-", "W"], "each sector independently");
    }
    let torn = s.disk.crash_image(|sector, _| (sector % 2) as usize);
    let tags: Vec<String> = (0..4).map(|sector| tag_of(torn.sector(sector))).collect();
    assert_eq!(tags, ["-", "W", "-", "W"]);
}

#[test]
fn a_crash_never_invents_data() {
    // A scrambled history; every candidate must be the initial value or a value written.
    let mut s = Script::new(16);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let names: Vec<&'static str> = (0..40).map(|i| &*Box::leak(format!("w{i}").into_boxed_str())).collect();
    let tags: Vec<&'static str> = (0..40).map(|i| &*Box::leak(format!("T{i:02}").into_boxed_str())).collect();
    let mut written: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for i in 0..40 {
        let (sector, sectors) = (next(14), 1 + next(3));
        let flags = [PLAIN, FUA, PREFLUSH_FUA][next(3) as usize];
        s.write(names[i], sector, tags[i], sectors, flags);
        for sector in sector..sector + sectors {
            written.entry(sector).or_default().push(tags[i].to_string());
        }
        if next(2) == 0 {
            let in_flight = s.disk.in_flight();
            let pick = in_flight[next(in_flight.len() as u64) as usize].id;
            s.disk.complete(pick).run();
        }
    }
    for sector in 0..16 {
        for candidate in s.candidates(sector) {
            assert!(
                candidate == "-" || written.get(&sector).is_some_and(|w| w.contains(&candidate)),
                "sector {sector}: {candidate} was never written there"
            );
        }
    }
}

#[test]
fn errors_complete_each_request_exactly_once_and_change_nothing() {
    let mut s = Script::with_faults(8, FaultRates { read_error: 1.0, write_error: 1.0, flush_error: 1.0 });
    s.write("w", 0, "W", 1, PLAIN);
    s.flush("f");
    s.read("r", 0, 1);
    for name in ["w", "f", "r"] {
        s.complete(name);
        assert_eq!(s.result(name).len(), 1, "{name} completed once");
        assert!(s.result(name)[0].is_err(), "{name} failed");
    }
    assert!(s.disk.crash_candidates().is_empty(), "a failed write leaves nothing behind");
    assert_eq!(s.durable(0), "-");
}

#[test]
fn latent_sector_errors_fail_reads_until_rewritten() {
    let mut s = Script::new(8);
    s.disk.inject_latent(3..5);
    s.read("r3", 3, 1);
    s.read("r0", 0, 1);
    s.complete("r3");
    s.complete("r0");
    assert!(s.result("r3")[0].is_err());
    assert!(s.result("r0")[0].is_ok());
    s.write("w3", 3, "N", 1, PLAIN);
    s.complete("w3");
    s.read("again3", 3, 1);
    s.read("r4", 4, 1);
    s.complete("again3");
    s.complete("r4");
    assert_eq!(s.result("again3"), [Ok("N".to_string())]);
    assert!(s.result("r4")[0].is_err(), "sector 4 was not rewritten");
}

#[test]
fn requests_outside_the_device_fail_through_their_completion() {
    let mut s = Script::new(8);
    s.read("r", 7, 2);
    assert!(s.result("r").is_empty(), "not completed inline");
    s.complete("r");
    assert!(s.result("r")[0].as_ref().unwrap_err().contains("beyond the end"));
}

#[test]
fn crash_images_share_their_base() {
    let mut s = Script::new(1 << 17); // 64 MiB
    s.write("w", 100, "W", 8, PLAIN);
    s.complete("w");
    let image = s.disk.crash_image(|_, n| n - 1);
    assert_eq!(image.overlay_len(), 8, "only the changed sectors are held apart from the base");
    assert_eq!(tag_of(image.sector(100)), "W");
}
