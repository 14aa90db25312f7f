//! `snapsim view`: the snapshot's view written to a file.

use serde_json::json;

use crate::outcome::{Outcome, Verdict};
use crate::paths::{check_not_an_input, check_output};
use crate::{CliError, view};

/// Options of `snapsim view`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim view --origin origin.img --cow cow.img --out snapshot.img\n  \
                        snapsim view --origin origin.img.gz --cow cow.img --out snapshot.img --force")]
pub struct ViewCommand {
    #[command(flatten)]
    pub view: view::ViewArgs,
    /// Replace an existing --out file (its mode is kept).
    #[arg(long)]
    pub force: bool,
}

/// Writes the view; an existing --out is replaced only with --force.
pub fn run(args: &ViewCommand) -> Result<Outcome, CliError> {
    let view = &args.view;
    // Naming an input is the worse mistake: said first.
    check_not_an_input("--out", &view.out, &[("--origin", &view.origin), ("--cow", &view.cow)])?;
    check_output("--out", &view.out, args.force)?;
    let stats = view::run(view)?;
    let from_origin = stats.chunks - stats.chunks_from_cow;
    let mut outcome = Outcome::new(
        Verdict::Pass,
        json!({ "out": view.out.display().to_string(), "chunks": stats.chunks, "from_cow": stats.chunks_from_cow, "from_origin": from_origin }),
    );
    outcome.lines.push(format!(
        "wrote {}: {} chunks, {} from the COW, {from_origin} from the origin",
        view.out.display(),
        stats.chunks,
        stats.chunks_from_cow
    ));
    Ok(outcome)
}
