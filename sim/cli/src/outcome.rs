//! What every verb returns, and the one place a verdict becomes words, a
//! JSON object and an exit status.
//!
//! A verb streams its progress through [`Out`] while it works and returns
//! an [`Outcome`]: its [`Verdict`], the lines that close its report, and the
//! body of its JSON object. `main` prints the outcome and exits with
//! [`Verdict::exit_code`]; a command refused before it ran is a
//! [`CliError`](crate::CliError) instead, printed the same way.

use serde_json::{Value, json};

use crate::{CliError, ErrorKind};

/// How a verb's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Everything asked was checked, and it passed (exit 0).
    Pass,
    /// A violation was found, or an operation on real data failed (exit 1).
    Fail,
    /// No violation in what was checked, but not everything asked was
    /// checked or written: a limit, an interrupt, an output the disk refused (exit 3).
    Partial,
    /// An input the verb read and refused, with its report (exit 2).
    #[serde(rename = "BAD INPUT")]
    BadInput,
}

impl Verdict {
    /// The process exit status of this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => ErrorKind::Failed.exit_code(),
            Verdict::Partial => ErrorKind::Partial.exit_code(),
            Verdict::BadInput => ErrorKind::BadInput.exit_code(),
        }
    }

    /// The verdict of a command that ended with an error of `kind`.
    pub fn of_error(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Failed => Verdict::Fail,
            ErrorKind::BadInput => Verdict::BadInput,
            ErrorKind::Partial => Verdict::Partial,
        }
    }

    /// The word the verdict line and the JSON object carry.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Partial => "PARTIAL",
            Verdict::BadInput => ErrorKind::BadInput.verdict(),
        }
    }

    /// Pass when `failed` is false, Fail otherwise.
    pub fn fail_if(failed: bool) -> Self {
        if failed { Verdict::Fail } else { Verdict::Pass }
    }
}

/// What a verb found: printed by `main`, which also picks the exit status.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// What the verdict line says after the word (`verdict: FAIL: …`).
    pub detail: Option<String>,
    /// Lines printed before the verdict line.
    pub lines: Vec<String>,
    /// Lines printed after it (the events, the replay command).
    pub after: Vec<String>,
    /// The JSON object's fields besides `command` and `verdict`.
    pub body: Value,
    /// The verb already wrote its stdout (a stream of JSON lines): its
    /// lines and verdict go to stderr, and no object follows.
    pub streamed: bool,
    /// An error that ended the run, also printed on stderr as every
    /// refusal is (`snapsim: error: …`).
    pub error: Option<String>,
}

impl Outcome {
    /// An outcome with no lines yet and `body` as its JSON fields.
    pub fn new(verdict: Verdict, body: Value) -> Self {
        Self { verdict, detail: None, lines: Vec::new(), after: Vec::new(), body, streamed: false, error: None }
    }

    /// Sets what the verdict line says after the word.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The verdict line.
    pub fn verdict_line(&self) -> String {
        match &self.detail {
            Some(detail) => format!("verdict: {}: {detail}", self.verdict.word()),
            None => format!("verdict: {}", self.verdict.word()),
        }
    }

    /// Records that an output could not be written after the run: a
    /// passing run becomes PARTIAL (not everything asked was done), never
    /// a failure, which would read as a bug found.
    pub fn output_failed(&mut self, error: &CliError) {
        self.lines.push(format!("not written: {error}"));
        if self.verdict == Verdict::Pass {
            self.verdict = Verdict::Partial;
            self.detail = Some(format!("the run passed, but an output was not written: {error}"));
        }
        if let Value::Object(fields) = &mut self.body {
            fields.insert("output_error".to_string(), json!(error.message));
        }
    }

    /// The one JSON object of `--json`.
    pub fn object(&self, command: &str) -> Value {
        let mut object = json!({ "command": command, "verdict": self.verdict });
        if let (Value::Object(into), Value::Object(fields)) = (&mut object, &self.body) {
            for (key, value) in fields {
                into.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        if let Some(detail) = &self.detail {
            object["detail"] = json!(detail);
        }
        object
    }
}

impl Outcome {
    /// Prints the outcome (its lines, the verdict line, the lines after it
    /// and, under `--json`, its one object) and returns the exit status.
    pub fn print(&self, command: &str, out: Out) -> u8 {
        let out = if self.streamed { Out { json: true } } else { out };
        for line in self.lines.iter().chain(std::iter::once(&self.verdict_line())).chain(&self.after) {
            out.line(line);
        }
        if out.json && !self.streamed {
            println!("{}", self.object(command));
        }
        if let Some(error) = &self.error {
            eprintln!("snapsim: error: {error}");
        }
        self.verdict.exit_code()
    }
}

/// Prints a command refused or failed before it had an outcome (the one
/// JSON object too, under `--json`) and returns the exit status.
pub fn print_error(command: Option<&str>, error: &CliError, out: Out) -> u8 {
    if out.json {
        println!("{}", error_object(command, error));
    }
    eprintln!("snapsim: error: {error}");
    error.kind.exit_code()
}

/// The JSON object of a command refused or failed before it had an outcome.
pub fn error_object(command: Option<&str>, error: &CliError) -> Value {
    json!({ "command": command, "verdict": error.kind.verdict(), "error": error.message })
}

/// Where a verb's human lines go: stdout, or stderr when stdout carries
/// the one JSON object `--json` asked for.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints one human line.
    pub fn line(self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_the_disk_refused_makes_a_pass_partial_and_leaves_a_fail() {
        let mut passed = Outcome::new(Verdict::Pass, json!({}));
        passed.output_failed(&CliError::failed("--timeline t.html: No space left on device"));
        assert_eq!(passed.verdict, Verdict::Partial);
        assert_eq!(passed.verdict.exit_code(), 3);
        let mut failed = Outcome::new(Verdict::Fail, json!({}));
        failed.output_failed(&CliError::failed("x"));
        assert_eq!(failed.verdict, Verdict::Fail);
        assert_eq!(passed.object("run")["verdict"], "PARTIAL");
    }
}
