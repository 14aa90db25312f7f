//! Unit tests of the oracle: events fed by hand, checks and counts expected.

use super::*;
use crate::event::DiskOp;
use crate::invariant::Invariant;

fn oracle(strict: bool) -> Oracle {
    let initial: Arc<[u64]> = (0..16).map(|s| 1000 + s).collect();
    let snapshots = vec![SnapshotSpec { chunk_sectors: 2, overflow_store: true, cow_sectors: 64 }];
    Oracle::new(OracleConfig { initial, snapshots, strict, cow_threshold: 2, kernel_patches_applied: false })
}

fn run(oracle: &mut Oracle, events: &[Event]) -> Result<(), Violation> {
    events.iter().try_for_each(|e| oracle.apply(e))
}

const S0: Target = Target::Snapshot(0);

#[test]
fn a_read_returning_origin_data_is_a_conflicting_read_live_and_i1_after_a_crash() {
    let mut o = oracle(false);
    run(
        &mut o,
        &[Event::Write { op: 0, target: Target::Origin, sector: 3, values: Arc::from([7]), flags: UserFlags::PLAIN }, Event::Ack { op: 0, ok: true }],
    )
    .unwrap();
    let read =
        [Event::Read { op: 1, target: S0, sector: 3, sectors: 1 }, Event::ReadDone { op: 1, values: Some(Arc::from([7])), snapshot_valid: true }];
    let error = run(&mut o.clone(), &read).unwrap_err();
    assert_eq!(error.invariant, Invariant::I13ConflictingReads);
    assert_eq!(error.events.len(), 4);
    run(&mut o, &[Event::Crash, Event::Reloaded { valid: vec![true] }]).unwrap();
    assert_eq!(run(&mut o, &read).unwrap_err().invariant, Invariant::I1AckedOriginWrite);
}

#[test]
fn snapshot_writes_are_legal_values_and_flushed_ones_are_the_only_ones() {
    let mut o = oracle(false);
    let crash = [Event::Crash, Event::Reloaded { valid: vec![true] }];
    run(&mut o, &[Event::Write { op: 0, target: S0, sector: 5, values: Arc::from([9]), flags: UserFlags::PLAIN }, Event::Ack { op: 0, ok: true }])
        .unwrap();
    // Live, an acknowledged write hides the old value; a crash may bring it back.
    assert_eq!(o.check_view_sector(0, 5, 1005, false, false).unwrap_err().invariant, Invariant::I2SnapshotView);
    assert!(o.check_view_sector(0, 5, 9, false, false).is_ok());
    let mut crashed = o.clone();
    run(&mut crashed, &crash).unwrap();
    assert!(crashed.check_view_sector(0, 5, 1005, false, true).is_ok() && crashed.check_view_sector(0, 5, 9, false, true).is_ok());
    // Flushed, it survives the crash alone.
    run(&mut o, &[Event::Flush { op: 1, target: S0 }, Event::Ack { op: 1, ok: true }]).unwrap();
    run(&mut o, &crash).unwrap();
    assert_eq!(o.check_view_sector(0, 5, 1005, false, true).unwrap_err().invariant, Invariant::I2SnapshotView);
    assert!(o.check_view_sector(0, 5, 9, false, true).is_ok());
}

#[test]
fn a_read_may_return_any_value_legal_while_it_was_in_flight() {
    let mut o = oracle(false);
    let events = [
        Event::Read { op: 0, target: S0, sector: 4, sectors: 1 },
        Event::Write { op: 1, target: S0, sector: 4, values: Arc::from([11]), flags: UserFlags::PLAIN },
        Event::Ack { op: 1, ok: true },
        Event::Write { op: 2, target: S0, sector: 4, values: Arc::from([12]), flags: UserFlags::PLAIN },
        Event::Ack { op: 2, ok: true },
        Event::Flush { op: 3, target: S0 },
        Event::Ack { op: 3, ok: true },
    ];
    run(&mut o, &events).unwrap();
    for value in [1004, 11, 12] {
        o.clone().apply(&Event::ReadDone { op: 0, values: Some(Arc::from([value])), snapshot_valid: true }).unwrap();
    }
    let error = o.clone().apply(&Event::ReadDone { op: 0, values: Some(Arc::from([13])), snapshot_valid: true }).unwrap_err();
    assert_eq!(error.invariant, Invariant::I2SnapshotView);
    // Values are named by the label they were written with (the newest,
    // when a value was labelled twice), unlabelled ones by their hash.
    assert!(error.message.contains(&format!("holds {:016x},", 13u64)), "{}", error.message);
    o.label(13, *b"s000009s000.....");
    o.label(12, *b"old-name........");
    o.label(12, *b"s000002s000.....");
    let error = o.apply(&Event::ReadDone { op: 0, values: Some(Arc::from([13])), snapshot_valid: true }).unwrap_err();
    assert!(error.message.contains("holds s000009s000,"), "{}", error.message);
    assert!(error.message.contains("legal: s000002s000") && !error.message.contains("old-name"), "{}", error.message);
}

#[test]
fn kernel_behaviours_are_counted_unless_strict() {
    let revive = [
        Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 },
        Event::Crash,
        Event::Reloaded { valid: vec![true] },
    ];
    let mut o = oracle(false);
    run(&mut o, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }]).unwrap();
    run(&mut o, &revive).unwrap();
    assert_eq!(o.allowances().revived_invalid, 1);
    let mut strict = oracle(true);
    run(&mut strict, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }]).unwrap();
    assert_eq!(run(&mut strict, &revive).unwrap_err().invariant, Invariant::I8Invalidation);
}

#[test]
fn invalid_and_overflow_stay_until_a_reload() {
    let status = |valid, overflowed| Event::Status { snapshot: 0, valid, overflowed, quiescent: true, copies_max: 0 };
    let mut o = oracle(false);
    o.apply(&status(false, false)).unwrap();
    assert_eq!(o.clone().apply(&status(true, false)).unwrap_err().invariant, Invariant::I8Invalidation);
    let mut o = oracle(false);
    o.snapshots[0].io_error_seen = true;
    o.config.snapshots[0].overflow_store = true;
    // More chunks needed than the COW's 30 data chunks: it may be full (I15).
    o.snapshots[0].claimed = (0..31).collect();
    o.apply(&status(true, true)).unwrap();
    assert_eq!(o.clone().apply(&status(true, false)).unwrap_err().invariant, Invariant::I9Overflow);
    o.apply(&Event::MergeStart { snapshot: 0 }).unwrap();
    o.apply(&status(true, true)).unwrap();
    o.apply(&Event::Crash).unwrap();
    o.apply(&Event::Reloaded { valid: vec![true] }).unwrap();
    o.apply(&status(true, false)).unwrap();
}

#[test]
fn a_clean_reload_never_revives_an_invalid_snapshot() {
    let invalid = Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 };
    let mut o = oracle(false);
    run(&mut o, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }, invalid.clone()])
        .unwrap();
    let error = o.clone().apply(&Event::Reloaded { valid: vec![true] }).unwrap_err();
    assert_eq!(error.invariant, Invariant::I8Invalidation);
    assert!(error.message.contains("clean reload"), "{}", error.message);
    o.apply(&Event::Reloaded { valid: vec![false] }).unwrap();
    // A failed COW write after the invalidation may have been its header.
    let header_write_failed =
        Event::Disk { disk: 1, request: 9, op: DiskOp::Write { preflush: false, fua: false }, sector: 0, sectors: 1, ok: false };
    run(&mut o, &[header_write_failed, Event::Reloaded { valid: vec![true] }]).unwrap();
    assert_eq!(o.allowances().revived_invalid, 1);
}

#[test]
fn invalidation_and_overflow_follow_the_errors_seen() {
    let cow_write_failed = Event::Disk { disk: 1, request: 3, op: DiskOp::Write { preflush: false, fua: false }, sector: 8, sectors: 2, ok: false };
    let mut o = oracle(false);
    o.apply(&cow_write_failed).unwrap();
    let error = o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: true, copies_max: 0 }).unwrap_err();
    assert_eq!(error.invariant, Invariant::I8Invalidation);
    let mut o = oracle(false);
    o.apply(&Event::Reloaded { valid: vec![true] }).unwrap();
    let error = o.apply(&Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 }).unwrap_err();
    assert_eq!(error.invariant, Invariant::I9Overflow);
    let mut o = oracle(false);
    o.apply(&Event::Reloaded { valid: vec![false] }).unwrap();
    o.apply(&Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 }).unwrap();
}

#[test]
fn more_copies_in_flight_than_the_threshold_break_i12() {
    let mut o = oracle(false);
    o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: false, copies_max: 2 }).unwrap();
    let error = o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: false, copies_max: 3 }).unwrap_err();
    assert_eq!(error.invariant, Invariant::I12Bounds, "{error}");
}

#[test]
fn status_lines_follow_the_kernel_formula() {
    // 2-sector chunks: 64 records per area; a 64-chunk COW of 128 sectors.
    let o = oracle(false);
    let mut cow = vec![0u8; 128 * 512];
    cow[..16].copy_from_slice(&[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    for n in 0..3u64 {
        let at = 2 * 512 + n as usize * 16;
        cow[at..at + 8].copy_from_slice(&n.to_le_bytes());
        cow[at + 8..at + 16].copy_from_slice(&(2 + n).to_le_bytes());
    }
    assert_eq!(o.check_status_line(0, true, false, "10/128 4", cow.as_slice()), Ok(()));
    assert_eq!(o.check_status_line(0, false, false, "Invalid", cow.as_slice()), Ok(()));
    assert_eq!(o.check_status_line(0, true, true, "Overflow", cow.as_slice()), Ok(()));
    let error = o.check_status_line(0, true, false, "8/128 4", cow.as_slice()).unwrap_err();
    assert_eq!(error.to_string(), "I14 status: snapshot 0's status line is `8/128 4`; the kernel's formula gives `10/128 4`");
}

/// A COW write that failed inside a load that then failed (and is tried
/// again) was the load's own: the snapshot that loads afterwards may report
/// valid. The same failed write outside a load obliges invalidation.
#[test]
fn a_failed_load_s_own_write_obliges_no_invalidation() {
    let cow_write_failed = Event::Disk { disk: 1, request: 3, op: DiskOp::Write { preflush: false, fua: false }, sector: 8, sectors: 8, ok: false };
    let valid = Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: true, copies_max: 0 };
    let mut o = oracle(false);
    run(&mut o, &[Event::Crash, cow_write_failed.clone(), Event::LoadFailed { snapshot: 0 }, Event::Reloaded { valid: vec![true] }, valid.clone()])
        .unwrap();
    let mut o = oracle(false);
    run(&mut o, &[Event::Crash, Event::Reloaded { valid: vec![true] }, cow_write_failed]).unwrap();
    assert_eq!(o.apply(&valid).unwrap_err().invariant, Invariant::I8Invalidation);
}

/// I15: the events of one user request that failed, after `before`.
fn failed(before: &[Event], request: Event, op: u64) -> Result<(), Violation> {
    let mut o = oracle(false);
    run(&mut o, &[Event::Reloaded { valid: vec![true] }])?;
    run(&mut o, before)?;
    let done = match request {
        Event::Read { .. } => Event::ReadDone { op, values: None, snapshot_valid: true },
        _ => Event::Ack { op, ok: false },
    };
    run(&mut o, &[request, done])
}

#[test]
fn a_failed_request_needs_a_cause() {
    let origin_write = Event::Write { op: 7, target: Target::Origin, sector: 2, values: Arc::from([9]), flags: UserFlags::PLAIN };
    assert_eq!(failed(&[], origin_write.clone(), 7).unwrap_err().invariant, Invariant::I15Availability);
    let origin_error = Event::Disk { disk: 0, request: 1, op: DiskOp::Write { preflush: false, fua: false }, sector: 2, sectors: 1, ok: false };
    failed(&[origin_error], origin_write, 7).unwrap();
    let read = Event::Read { op: 8, target: S0, sector: 4, sectors: 2 };
    let error = failed(&[], read.clone(), 8).unwrap_err();
    assert_eq!(error.invariant, Invariant::I15Availability);
    assert!(error.message.contains("read snapshot 0 4+2"), "{}", error.message);
    let cow_read_error = Event::Disk { disk: 1, request: 1, op: DiskOp::Read, sector: 10, sectors: 2, ok: false };
    failed(&[cow_read_error], read, 8).unwrap();
    let flush = Event::Flush { op: 9, target: S0 };
    assert_eq!(failed(&[], flush, 9).unwrap_err().invariant, Invariant::I15Availability);
}

#[test]
fn invalid_or_overflow_needs_a_cause() {
    let status = |valid, overflowed| Event::Status { snapshot: 0, valid, overflowed, quiescent: true, copies_max: 0 };
    let mut o = oracle(false);
    // Every chunk of the 16-sector origin written: 8 chunks of 2 sectors, on a COW with room for 30.
    let writes: Vec<Event> = (0..8u64)
        .map(|c| Event::Write { op: 100 + c, target: Target::Origin, sector: 2 * c, values: Arc::from([c, c]), flags: UserFlags::PLAIN })
        .collect();
    run(&mut o, &[Event::Reloaded { valid: vec![true] }]).unwrap();
    run(&mut o, &writes).unwrap();
    assert_eq!(o.data_capacity(0), 30);
    assert!(!o.may_be_full(0), "8 chunks needed: the COW has room");
    assert_eq!(o.clone().apply(&status(false, false)).unwrap_err().invariant, Invariant::I15Availability);
    assert_eq!(o.clone().apply(&status(true, true)).unwrap_err().invariant, Invariant::I15Availability);
    let found_invalid = [Event::Read { op: 1, target: S0, sector: 0, sectors: 1 }, Event::ReadDone { op: 1, values: None, snapshot_valid: false }];
    assert_eq!(run(&mut o.clone(), &found_invalid).unwrap_err().invariant, Invariant::I15Availability);
    // More chunks needed than the COW holds (a merge's, say): it may be full.
    o.snapshots[0].claimed.extend(8..31);
    o.clone().apply(&status(true, true)).unwrap();
    o.apply(&status(false, false)).unwrap();
}

#[test]
fn an_engine_request_past_a_device_end_is_no_cause_but_the_kernels_own_next_area_zeroing_is() {
    let mut o = oracle(false);
    let write = DiskOp::Write { preflush: false, fua: false };
    let past_origin = Event::Disk { disk: 0, request: 1, op: DiskOp::Read, sector: 14, sectors: 4, ok: false };
    let error = o.clone().apply(&past_origin).unwrap_err();
    assert_eq!(error.invariant, Invariant::I15Availability);
    assert!(error.message.contains("past its end (16 sectors)"), "{}", error.message);
    // The COW's 32 chunks end where area 1 would begin (chunk 66 of 2 sectors is past them anyway).
    let next_area = Event::Disk { disk: 1, request: 2, op: write, sector: 66 * 2, sectors: 2, ok: false };
    o.apply(&next_area).unwrap();
    let past_cow_data = Event::Disk { disk: 1, request: 3, op: write, sector: 64, sectors: 2, ok: false };
    assert_eq!(o.apply(&past_cow_data).unwrap_err().invariant, Invariant::I15Availability);
}

#[test]
fn a_full_po_snapshot_refuses_writes_but_serves_reads_and_says_overflow() {
    let mut o = oracle(false);
    run(&mut o, &[Event::Reloaded { valid: vec![true] }]).unwrap();
    // 31 chunks needed by the snapshot's own writes, 30 data chunks: full.
    o.snapshots[0].claimed = (0..31).collect();
    let write = Event::Write { op: 1, target: S0, sector: 2, values: Arc::from([5]), flags: UserFlags::PLAIN };
    run(&mut o, &[write, Event::Ack { op: 1, ok: false }]).unwrap();
    let read = [Event::Read { op: 2, target: S0, sector: 0, sectors: 1 }, Event::ReadDone { op: 2, values: None, snapshot_valid: true }];
    let error = run(&mut o.clone(), &read).unwrap_err();
    assert_eq!(error.invariant, Invariant::I15Availability);
    assert!(error.message.contains("still serves reads"), "{}", error.message);
    // Refused for room: it must say Overflow until a reload (a handover that forgets it is I9).
    let status = |valid, overflowed| Event::Status { snapshot: 0, valid, overflowed, quiescent: false, copies_max: 0 };
    assert_eq!(o.clone().apply(&status(true, false)).unwrap_err().invariant, Invariant::I9Overflow);
    o.clone().apply(&status(true, true)).unwrap();
    o.apply(&status(false, false)).unwrap_err();
}
