//! The virtual machine: a Debian kernel under qemu (software emulation)
//! with an initramfs of busybox, dmsetup and the guest jobs, three virtio
//! disks (origin, COW, results) and the serial console as its report.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What `setup.sh` prepared.
#[derive(Debug, Clone)]
pub struct Machine {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
    /// The Debian package and version it came from.
    pub package: String,
    /// The dm-snapshot module it boots.
    pub module: Module,
    /// A job still running after this long is stopped and reported as not
    /// finishing (600 s; `kernel-mutants` sets less, so that a mutant that
    /// hangs a recording is killed within its 5 minutes).
    pub job_seconds_max: u64,
}

/// The dm-snapshot module a machine boots: Debian's, or one built from
/// Debian's source of the same kernel with a patch series applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    /// The patch files applied, in order, each with the first 12 hex digits
    /// of its SHA-256; empty for the stock module.
    pub patches: Vec<(String, String)>,
    /// `modinfo -F srcversion`: a digest of the module's source files;
    /// `none` for Debian's own module, built without it.
    pub srcversion: String,
    /// The first 16 hex digits of the `.ko` file's SHA-256.
    pub sha256: String,
}

impl std::fmt::Display for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.patches.is_empty() {
            write!(f, "dm-snapshot.ko stock (srcversion {}, sha256 {})", self.srcversion, self.sha256)
        } else {
            let series: Vec<String> = self.patches.iter().map(|(name, hash)| format!("{name} (sha256 {hash})")).collect();
            write!(f, "dm-snapshot.ko built from source with {} (srcversion {}, sha256 {})", series.join(", "), self.srcversion, self.sha256)
        }
    }
}

/// Why a machine could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// The patch series does not apply or the module does not build: the
    /// caller's input is at fault (exit status 2).
    Patches(String),
    /// Anything else: packages, the kernel, the initramfs.
    Setup(String),
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::Patches(why) | PrepareError::Setup(why) => f.write_str(why),
        }
    }
}

/// The exit status `setup.sh` gives a patch series it cannot apply or build.
const SETUP_REFUSED_PATCHES: i32 = 3;

/// Installs the host packages and builds kernel and initramfs (cached);
/// with `patches`, dm-snapshot.ko is built from source with the series
/// (see `setup.sh`).
pub fn prepare(cache: &Path, patches: Option<&Path>) -> Result<Machine, PrepareError> {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/setup.sh");
    let mut command = Command::new("bash");
    command.arg(&setup).arg(cache);
    if let Some(dir) = patches {
        command.arg(dir);
    }
    let output = command.stderr(Stdio::inherit()).output().map_err(|e| PrepareError::Setup(format!("cannot run {}: {e}", setup.display())))?;
    if output.status.code() == Some(SETUP_REFUSED_PATCHES) {
        let dir = patches.map_or_else(String::new, |d| d.display().to_string());
        return Err(PrepareError::Patches(format!("the patch series {dir} does not apply or does not build (the reason is printed above)")));
    }
    if !output.status.success() {
        return Err(PrepareError::Setup(format!("{} failed ({})", setup.display(), output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
            .map(str::to_string)
            .ok_or_else(|| PrepareError::Setup(format!("setup.sh printed no {key}=")))
    };
    let module_words = field("MODULE")?;
    let applied: Vec<(String, String)> = module_words
        .split_whitespace()
        .skip(1)
        .filter_map(|word| word.rsplit_once(':').map(|(name, hash)| (name.to_string(), hash.to_string())))
        .collect();
    // A patched build names every patch it applied; the stock module names none.
    if (module_words == "stock") != applied.is_empty() || applied.is_empty() != patches.is_none() {
        return Err(PrepareError::Setup(format!("setup.sh printed MODULE={module_words}, which does not match the request")));
    }
    let module = Module { patches: applied, srcversion: field("SRCVERSION")?, sha256: field("MODULE_SHA256")? };
    Ok(Machine {
        kernel: field("KERNEL")?.into(),
        initrd: field("INITRD")?.into(),
        release: field("KVER")?,
        package: field("KERNEL_PACKAGE")?,
        module,
        job_seconds_max: 600,
    })
}

/// The disks of one boot, in a directory: origin.img, cow.img, results.img.
#[derive(Debug, Clone)]
pub struct Disks {
    pub dir: PathBuf,
}

impl Disks {
    pub fn origin(&self) -> PathBuf {
        self.dir.join("origin.img")
    }
    pub fn cow(&self) -> PathBuf {
        self.dir.join("cow.img")
    }
    pub fn results(&self) -> PathBuf {
        self.dir.join("results.img")
    }
}

/// How a boot ended.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The guest's `@@` lines, without the `@@`.
    pub markers: Vec<String>,
    /// The machine was killed on purpose (a crash).
    pub killed: bool,
    pub seconds: f64,
    /// Seconds from `@@WRITING` to the last `@@WRITER_DONE`, if both were printed.
    pub writing_seconds: Option<f64>,
}

impl Boot {
    /// The rest of the first marker line starting with `key `.
    pub fn marker(&self, key: &str) -> Option<&str> {
        self.markers.iter().find_map(|m| {
            let (word, rest) = m.split_once(' ').unwrap_or((m, ""));
            (word == key).then_some(rest)
        })
    }
}

/// Boots `machine` on `disks` and runs `job` with `args` (kernel command
/// line words). With `kill_after`, the machine is killed (SIGKILL, a power
/// cut) that long after the guest prints `@@WRITING`.
pub fn boot(machine: &Machine, disks: &Disks, job: &str, args: &str, kill_after: Option<Duration>) -> Result<Boot, String> {
    let drive = |file: PathBuf, id: &str| {
        [
            "-drive".to_string(),
            format!("file={},format=raw,if=none,id={id},cache=unsafe", file.display()),
            "-device".to_string(),
            format!("virtio-blk-pci,drive={id},serial={id}"),
        ]
    };
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-accel", "tcg", "-m", "256M", "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none"])
        .args(["-serial", "stdio", "-net", "none"])
        .arg("-kernel")
        .arg(&machine.kernel)
        .arg("-initrd")
        .arg(&machine.initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 quiet panic=-1 job={job} {args}"))
        .args(drive(disks.origin(), "origin"))
        .args(drive(disks.cow(), "cow"))
        .args(drive(disks.results(), "results"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().ok_or("qemu has no stdout")?;
    let (lines, received) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = line.trim_end_matches('\r').to_string();
            if line.starts_with("@@") && lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = start + Duration::from_secs(machine.job_seconds_max);
    let mut markers = Vec::new();
    let mut kill_at = None;
    let mut writing_since = None;
    let mut writers_done = None;
    let mut killed = false;
    loop {
        let now = Instant::now();
        if kill_at.is_some_and(|at| now >= at) || now >= deadline {
            killed = kill_at.is_some_and(|at| now >= at);
            child.kill().map_err(|e| format!("cannot kill qemu: {e}"))?;
            break;
        }
        let wait = kill_at.unwrap_or(deadline).min(deadline).saturating_duration_since(now).min(Duration::from_millis(100));
        match received.recv_timeout(wait) {
            Ok(line) => {
                let line = line.trim_start_matches("@@").to_string();
                if line.starts_with("WRITING") {
                    writing_since = Some(Instant::now());
                    kill_at = kill_after.map(|delay| Instant::now() + delay);
                }
                if line.starts_with("WRITER_DONE") {
                    writers_done = writing_since.map(|since| since.elapsed().as_secs_f64());
                }
                markers.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("qemu: {e}"))?;
    let _ = reader.join();
    markers.extend(received.try_iter().map(|l| l.trim_start_matches("@@").to_string()));
    let seconds = start.elapsed().as_secs_f64();
    if !killed && Instant::now() >= deadline {
        return Err(format!("the {job} job did not finish within {} s; guest said: {markers:?}", machine.job_seconds_max));
    }
    if !killed && !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        return Err(format!("qemu failed ({status}): {stderr}"));
    }
    let boot = Boot { markers, killed, seconds, writing_seconds: writers_done };
    // The guest names the module it loaded: never another than the one built.
    if let Some(loaded) = boot.marker("MODULE") {
        let expected = format!("srcversion={}", machine.module.srcversion);
        if loaded != expected {
            return Err(format!("the guest loaded dm-snapshot with {loaded}, not the module prepared ({expected})"));
        }
    }
    if !killed {
        match boot.marker("JOB_RC") {
            Some("0") => {}
            other => return Err(format!("the {job} job failed (rc {other:?}): {:?}", boot.markers)),
        }
    }
    Ok(boot)
}
