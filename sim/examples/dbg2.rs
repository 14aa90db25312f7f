fn main() {
    let path = std::env::args().nth(1).unwrap();
    let trace = sim::crash_trace::CrashTrace::load(std::path::Path::new(&path)).unwrap();
    let scenario = trace.scenario().unwrap();
    let mut config = scenario.run_config(trace.seed);
    config.keep_events = true;
    config.schedule = trace.schedule.as_deref().map(|s| sim::world::guide::parse(s).unwrap());
    let report = sim::world::run(&config);
    let from: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let to: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    for (i, e) in report.events.iter().enumerate().skip(from).take(to - from) {
        println!("{i}: {e}");
    }
}
