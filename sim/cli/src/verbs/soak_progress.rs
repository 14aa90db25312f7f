//! The soak's progress display: a bar on a terminal, a line a minute in CI logs.

use std::io::IsTerminal;
use std::time::Duration;

use crate::CliError;

/// Shows the soak's counters as it runs.
#[derive(Debug)]
pub struct Display {
    bar: indicatif::ProgressBar,
    plain: bool,
    last_plain: Duration,
}

impl Display {
    /// A bar sized by the seeds, or by the seconds of a timed soak.
    pub fn new(config: &sim::soak::SoakConfig) -> Result<Self, CliError> {
        let length = match (config.seeds, config.duration) {
            (Some(seeds), _) => config.shard.seeds_of(seeds),
            (None, Some(duration)) => duration.as_secs().max(1),
            (None, None) => 1,
        };
        let bar = indicatif::ProgressBar::new(length);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                .map_err(|e| CliError::failed(e.to_string()))?
                .progress_chars("=> "),
        );
        Ok(Self { bar, plain: !std::io::stderr().is_terminal(), last_plain: Duration::ZERO })
    }

    /// Shows `p`.
    pub fn show(&mut self, p: &sim::soak::Progress) {
        let seconds = p.elapsed.as_secs_f64().max(1e-9);
        let message = format!(
            "{} seeds ({:.1}/s), {} crash states ({:.1}/s), {} failures",
            p.seeds_run,
            p.seeds_run as f64 / seconds,
            p.crash_states,
            p.crash_states as f64 / seconds,
            p.failures
        );
        self.bar.set_position(if p.seeds_total.is_some() { p.seeds_run } else { p.elapsed.as_secs() });
        self.bar.set_message(message.clone());
        // Without a terminal (CI logs) the bar is hidden: a line a minute instead.
        if self.plain && p.elapsed >= self.last_plain + Duration::from_secs(60) {
            self.last_plain = p.elapsed;
            eprintln!("[{}] {message}", humantime::format_duration(Duration::from_secs(p.elapsed.as_secs())));
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
