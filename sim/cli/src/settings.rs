//! The settings every harness verb shares: `--strict` and `SNAPSIM_STRICT`,
//! `--kernel-patches`, `--mutation`, `--bias`, and the note each adds to a
//! run's settings line.

use engine::store::KernelPatches;

use crate::CliError;

/// The variable that switches strict checking on for every run.
pub const STRICT_VARIABLE: &str = "SNAPSIM_STRICT";

/// Parses a boolean environment value strictly: `0`, `1`, `true`, `false`.
/// Anything else is refused, so that `SNAPSIM_STRICT=false` or a typo never
/// quietly means the opposite of what was meant.
pub fn parse_bool_variable(name: &str, value: &str) -> Result<bool, CliError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CliError::bad_input(format!("{name}={value:?}: must be 0, 1, true or false"))),
    }
}

/// Where strictness came from, for the settings line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strict {
    Off,
    Flag,
    Variable,
}

impl Strict {
    /// `--strict` or, failing that, `SNAPSIM_STRICT` (read once, strictly).
    pub fn resolve(flag: bool) -> Result<Self, CliError> {
        let variable = match std::env::var(STRICT_VARIABLE) {
            Ok(value) => parse_bool_variable(STRICT_VARIABLE, &value)?,
            Err(std::env::VarError::NotPresent) => false,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::bad_input(format!("{STRICT_VARIABLE}: not UTF-8; must be 0, 1, true or false")));
            }
        };
        Ok(if flag {
            Strict::Flag
        } else if variable {
            Strict::Variable
        } else {
            Strict::Off
        })
    }

    pub fn on(self) -> bool {
        self != Strict::Off
    }

    /// What the settings line says: nothing when off, so that default runs
    /// print what they always have.
    pub fn note(self) -> &'static str {
        match self {
            Strict::Off => "",
            Strict::Flag => "; strict (--strict)",
            Strict::Variable => "; strict (SNAPSIM_STRICT set)",
        }
    }
}

/// Parses `--kernel-patches`.
pub fn parse_kernel_patches(text: &str) -> Result<KernelPatches, String> {
    KernelPatches::parse(text).ok_or_else(|| format!("{text:?} is neither stock nor applied"))
}

/// Parses `--bias`.
pub fn parse_bias(text: &str) -> Result<sim::world::knobs::SwarmBias, String> {
    text.parse()
}

/// What a settings line adds for `kernel_patches`: nothing for the stock
/// kernel's, so that the default runs print what they always have.
pub fn kernel_patches_note(kernel_patches: KernelPatches) -> String {
    match kernel_patches {
        KernelPatches::Stock => String::new(),
        KernelPatches::Applied => "; the kernel-patches/ series applied".to_string(),
    }
}

/// The mutations `--mutation` asks for (a usage error if this build cannot
/// make them). `source` names where the id came from: the flag, or a trace.
pub fn mutations(id: Option<&str>, source: &str) -> Result<engine::zoo::Mutations, CliError> {
    sim::crash_trace::mutations_of(id).map_err(|e| CliError::bad_input(format!("{source}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_variables_are_parsed_strictly() {
        assert!(parse_bool_variable("V", "1").unwrap());
        assert!(parse_bool_variable("V", "true").unwrap());
        assert!(!parse_bool_variable("V", "0").unwrap());
        assert!(!parse_bool_variable("V", "false").unwrap());
        for bad in ["", "yes", "FALSE", "2", " 1"] {
            assert!(parse_bool_variable("V", bad).is_err(), "{bad:?}");
        }
    }
}
