//! How a run goes: [`RunConfig`] (the seed and every setting a replay
//! needs), the random stream of each component, and `SNAPSIM_STRICT` read
//! strictly.

use engine::store::KernelPatches;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::guide;
use super::knobs::{self, Knobs};
use super::script::ScriptOp;
use crate::trace::Fnv;

/// An independent stream for `component` of the run with root `seed`.
pub fn stream(seed: u64, component: &str) -> ChaCha8Rng {
    let mut hash = Fnv::new();
    hash.u64(seed);
    hash.bytes(component.as_bytes());
    ChaCha8Rng::seed_from_u64(hash.finish())
}

/// How a run goes: [`RunConfig::new`] gives the defaults, the `with_`
/// methods change one field each.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The root of every random stream of the run (knobs, scheduler,
    /// workload, crashes, faults). No default; `SEED` for `replay_seed`.
    pub seed: u64,
    /// Steps after which a run that has not finished is a liveness failure.
    /// Default 2,000,000.
    pub max_steps: u64,
    /// Fail on the kernel behaviours the oracle otherwise counts (K1, K2).
    /// Default off; `SNAPSIM_STRICT=1` turns it on.
    pub strict: bool,
    /// How the engine writes COW headers: [`KernelPatches::Stock`] (the
    /// default, the stock kernel's) or [`KernelPatches::Applied`] (the kernel
    /// with the kernel-patches/ series, which closes K1 and K3; the oracle
    /// is told, see `model::OracleConfig::kernel_patches_applied`).
    /// `SNAPSIM_KERNEL_PATCHES` for `replay_seed`.
    pub kernel_patches: KernelPatches,
    /// Keep every event in the report (for trace files). Default off.
    pub keep_events: bool,
    /// A schedule to follow instead of the seed's scheduling draws (see
    /// [`guide`]): a crash trace's. Default none.
    pub schedule: Option<std::collections::VecDeque<guide::Decision>>,
    /// Keep the run's schedule in the report ([`crate::world::Report::schedule`]).
    /// Default off.
    pub record_schedule: bool,
    /// Record every disk request for an I/O timeline ([`crate::world::Report::timeline`],
    /// `--timeline`). Default off: it costs memory per request.
    pub timeline: bool,
    /// Knobs to use instead of the ones the seed draws (a scenario, a
    /// minimized run, a test). Default: drawn from the seed.
    pub knobs: Option<Knobs>,
    /// Operations [`crate::world::run`] runs instead of the random workload (a scenario).
    /// Default: none, the random workload.
    pub script: Option<Vec<ScriptOp>>,
    /// Scripted faults, armed once the first boot is done. Default: none.
    pub injections: Vec<Injection>,
    /// Historical kernel bugs to re-create in the engine (bug-zoo builds
    /// only). Default: none; `SNAPSIM_MUTATION` for `replay_seed`.
    pub mutations: engine::zoo::Mutations,
    /// The odds the seed's knobs are drawn with (the directed swarm's).
    /// Default: the plain swarm's; `SNAPSIM_BIAS` for `replay_seed`.
    pub bias: knobs::SwarmBias,
}

/// A scripted fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Reads of these sectors of disk `disk` (0 the origin, `k + 1` COW `k`) fail until rewritten.
    Latent { disk: usize, sector: u64, sectors: u64 },
    /// The next `count` writes touching these sectors of disk `disk` fail.
    FailWrites { disk: usize, sector: u64, sectors: u64, count: u32, skip: u32 },
}

/// `SNAPSIM_STRICT` as every part of the harness reads it: unset, `0` or
/// `false` is off; `1` or `true` is on; anything else is refused, so that
/// `SNAPSIM_STRICT=false` or a typo never means the opposite of what was meant.
pub fn strict_from_env() -> Result<bool, String> {
    match std::env::var("SNAPSIM_STRICT") {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(value) => parse_strict(&value),
        Err(std::env::VarError::NotUnicode(value)) => Err(format!("SNAPSIM_STRICT={value:?}: must be 0, 1, true or false")),
    }
}

/// A value of `SNAPSIM_STRICT` (see [`strict_from_env`]).
pub fn parse_strict(value: &str) -> Result<bool, String> {
    match value {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        other => Err(format!("SNAPSIM_STRICT={other:?}: must be 0, 1, true or false")),
    }
}

impl RunConfig {
    /// [`RunConfig::max_steps`] unless changed.
    pub const MAX_STEPS_DEFAULT: u64 = 2_000_000;

    /// The defaults, with `strict` from `SNAPSIM_STRICT` (see [`strict_from_env`]).
    ///
    /// # Panics
    /// If `SNAPSIM_STRICT` holds anything but `0`, `1`, `true` or `false`:
    /// a test run told `SNAPSIM_STRICT=yes` must not quietly run lenient.
    /// (`snapsim` checks the variable before any run and exits 2 instead.)
    pub fn new(seed: u64) -> Self {
        let strict = strict_from_env().unwrap_or_else(|error| panic!("{error}"));
        Self {
            seed,
            max_steps: Self::MAX_STEPS_DEFAULT,
            strict,
            kernel_patches: KernelPatches::Stock,
            keep_events: false,
            schedule: None,
            record_schedule: false,
            timeline: false,
            knobs: None,
            script: None,
            injections: Vec::new(),
            mutations: engine::zoo::Mutations::NONE,
            bias: knobs::SwarmBias::default(),
        }
    }

    /// The same run on `knobs` instead of the seed's.
    pub fn with_knobs(mut self, knobs: Knobs) -> Self {
        self.knobs = Some(knobs);
        self
    }

    /// The same run with [`RunConfig::strict`] set to `strict`.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The same run with the engine writing COW headers as `kernel_patches` says.
    pub fn with_kernel_patches(mut self, kernel_patches: KernelPatches) -> Self {
        self.kernel_patches = kernel_patches;
        self
    }

    /// The same run with the engine's historical-bug `mutations` (bug-zoo builds only).
    pub fn with_mutations(mut self, mutations: engine::zoo::Mutations) -> Self {
        self.mutations = mutations;
        self
    }

    /// The knobs this run uses.
    pub fn knobs(&self) -> Knobs {
        self.knobs.clone().unwrap_or_else(|| Knobs::draw_biased(&mut stream(self.seed, "knobs"), &self.bias))
    }

    /// The `snapsim run` command that reproduces this run exactly: the seed
    /// and every option that changes the run. A scripted run (a scenario or
    /// crash trace) is replayed from its file instead.
    pub fn replay_command(&self) -> String {
        if self.knobs.is_some() || self.script.is_some() {
            return "a scripted run: replay it from its scenario or crash-trace file".to_string();
        }
        let flags: String = self
            .replay_options()
            .iter()
            .map(|(flag, _, value)| format!(" {flag}{}", value.as_ref().map_or(String::new(), |v| format!(" {v}"))))
            .collect();
        format!("snapsim run --seed {}{flags}", self.seed)
    }

    /// The `cargo test` form of [`RunConfig::replay_command`].
    pub fn replay_test_command(&self) -> String {
        let variables: String =
            self.replay_options().iter().map(|(_, variable, value)| format!(" {variable}={}", value.as_deref().unwrap_or("1"))).collect();
        format!("SEED={}{variables} cargo test -p sim --test world replay_seed -- --nocapture", self.seed)
    }

    /// Every option that changed this run from `run --seed`'s defaults: its
    /// flag, its `replay_seed` variable, and its value (none for a switch).
    fn replay_options(&self) -> Vec<(&'static str, &'static str, Option<String>)> {
        let mut options = Vec::new();
        if self.strict {
            options.push(("--strict", "SNAPSIM_STRICT", None));
        }
        if self.kernel_patches != KernelPatches::Stock {
            options.push(("--kernel-patches", "SNAPSIM_KERNEL_PATCHES", Some(self.kernel_patches.name().to_string())));
        }
        if let Some(mutation) = self.mutations.id() {
            options.push(("--mutation", "SNAPSIM_MUTATION", Some(mutation.to_string())));
        }
        if self.max_steps != Self::MAX_STEPS_DEFAULT {
            options.push(("--max-steps", "SNAPSIM_MAX_STEPS", Some(self.max_steps.to_string())));
        }
        if self.bias != knobs::SwarmBias::default() {
            options.push(("--bias", "SNAPSIM_BIAS", Some(self.bias.to_string())));
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::parse_strict;

    #[test]
    fn snapsim_strict_is_read_strictly() {
        assert_eq!(parse_strict("1"), Ok(true));
        assert_eq!(parse_strict("true"), Ok(true));
        assert_eq!(parse_strict("0"), Ok(false));
        assert_eq!(parse_strict("false"), Ok(false));
        // Once read as "anything but 0 is strict": never again.
        for value in ["no", "off", "", "yes", "TRUE"] {
            assert!(parse_strict(value).unwrap_err().contains("must be 0, 1, true or false"), "{value:?}");
        }
    }
}
