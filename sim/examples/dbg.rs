fn main() {
    let path = std::env::args().nth(1).unwrap();
    let trace = sim::crash_trace::CrashTrace::load(std::path::Path::new(&path)).unwrap();
    let scenario = trace.scenario().unwrap();
    let mut config = scenario.run_config(trace.seed);
    config.strict = trace.strict;
    config.keep_events = true;
    config.schedule = trace.schedule.as_deref().map(|s| sim::world::guide::parse(s).unwrap());
    let report = sim::world::run(&config);
    let sector: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
    for (i, e) in report.events.iter().enumerate() {
        let s = e.to_string();
        let interesting = s.contains("CRASH")
            || s.contains("merge")
            || s.contains("reloaded")
            || s.contains("RELOAD")
            || s.contains("Invalid")
            || s.contains("Overflow")
            || matches!(e, model::Event::Write { sector: s0, values, .. } if *s0 <= sector && sector < *s0 + values.len() as u64)
            || matches!(e, model::Event::Disk { disk: 0, sector: s0, sectors, op: model::DiskOp::Write{..}, .. } if *s0 <= sector && sector < *s0 + *sectors)
            || matches!(e, model::Event::Disk { disk: 0, op: model::DiskOp::Flush, .. })
            || matches!(e, model::Event::Disk { op: model::DiskOp::Write { preflush: true, .. }, disk: 0, .. });
        if interesting {
            println!("{i}: {s}");
        }
        if let model::Event::Ack { op, .. } = e {
            if *op == 71 || *op == 70 {
                println!("{i}: {s}");
            }
        }
    }
    println!("{:?}", report.failure.map(|f| f.violation.message));
}
