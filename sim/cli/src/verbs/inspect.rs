//! `snapsim inspect`: what a COW device holds.

use crate::outcome::{Outcome, Verdict};
use crate::{CliError, ErrorKind, inspect};

/// Inspects the COW. `--records` streams one JSON line per record; the
/// report is printed whole (under `--json`, as its one object).
pub fn run(args: &inspect::InspectArgs) -> Result<Outcome, CliError> {
    if args.records {
        let stdout = std::io::stdout();
        let records = inspect::dump_records(args, &mut stdout.lock())?;
        let mut outcome = Outcome::new(Verdict::Pass, serde_json::json!({ "records": records }));
        outcome.lines.push(format!("{records} records"));
        outcome.streamed = true;
        return Ok(outcome);
    }
    let report = inspect::report(args)?;
    let body = serde_json::to_value(&report).map_err(|e| CliError::failed(e.to_string()))?;
    let mut outcome = Outcome::new(Verdict::Pass, body);
    outcome.lines.extend(inspect::render(&report).lines().map(String::from));
    if report.state == "error" {
        // A COW the engine refuses, or cannot read: the report says why.
        outcome.verdict = Verdict::of_error(report.error_kind.unwrap_or(ErrorKind::BadInput));
        outcome.detail = Some(format!("{}: {}", report.path, report.error.unwrap_or_default()));
        outcome.error.clone_from(&outcome.detail);
    }
    Ok(outcome)
}
