//! `cargo xtask`: project tasks that need more than `cargo test`.
//!
//! `cargo xtask interop` is the differential test against the Linux kernel:
//! a Debian kernel boots under qemu with origin and COW images as virtio
//! disks, and dmsetup jobs run inside (see `interop/`). It checks both
//! directions:
//! - **engine → kernel**: COWs our engine wrote (chunk sizes 512 B to
//!   64 KiB, several metadata areas, a `PO` overflow, an invalidated
//!   snapshot, a merge done by our engine) load in the kernel with the
//!   status line we print and a snapshot view byte-identical to ours; a
//!   kernel snapshot-merge of our COW leaves the origin equal to our view;
//! - **kernel → engine**: the kernel runs random workloads with several
//!   parallel writers (its copies finish out of order), some runs killed
//!   mid-way like a power cut; our engine loads each resulting COW and
//!   serves exactly the view, with the status line, that the kernel serves
//!   after reloading it.
//!
//! `cargo xtask load-export DIR` loads a crash state `snapsim explore
//! --export DIR` wrote in the same kernel and prints the kernel's status
//! and view beside our engine's.
//!
//! Opt-in (it installs Debian packages and needs root); the nightly runs
//! it, `.ci/run` never does.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real virtual machines run in wall time, on threads of their own

mod interop;
mod kernel_crash;
mod kernel_mutants;
mod load_export;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Differential test against the Linux kernel under qemu (needs root and Debian's packages).
    Interop(interop::InteropArgs),
    /// The kernel's own writes recorded with dm-log-writes under qemu, and every crash state of them judged.
    KernelCrash(kernel_crash::KernelCrashArgs),
    /// A crash state `snapsim explore --export` wrote, loaded by the kernel; its status and view printed beside ours.
    LoadExport(load_export::LoadExportArgs),
    /// Mutants of the kernel's dm-snapshot C, each built and run on a subset of kernel-crash's workloads: killed or not.
    KernelMutants(kernel_mutants::KernelMutantsArgs),
}

/// Why a task stopped before its verdict.
#[derive(Debug)]
pub enum TaskError {
    /// The caller's input is at fault: a patch series that does not apply
    /// or a module that does not build (exit status 2 from every task).
    Input(String),
    /// The task could not run to its verdict.
    Run(String),
}

impl From<String> for TaskError {
    fn from(why: String) -> Self {
        TaskError::Run(why)
    }
}

impl From<vm::PrepareError> for TaskError {
    fn from(error: vm::PrepareError) -> Self {
        match error {
            vm::PrepareError::Patches(why) => TaskError::Input(why),
            vm::PrepareError::Setup(why) => TaskError::Run(why),
        }
    }
}

/// The exit status of a task's result: 0 passed, 1 failed, 2 bad input;
/// `run_error` is the status of a task that could not run to its verdict.
fn exit(task: &str, result: Result<bool, TaskError>, run_error: u8) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(TaskError::Input(error)) => {
            eprintln!("xtask {task}: error: {error}");
            ExitCode::from(2)
        }
        Err(TaskError::Run(error)) => {
            eprintln!("xtask {task}: error: {error}");
            ExitCode::from(run_error)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().task {
        Task::Interop(args) => exit("interop", interop::run(&args), 1),
        Task::LoadExport(args) => exit("load-export", load_export::run(&args), 2),
        Task::KernelCrash(args) => exit("kernel-crash", kernel_crash::run(&args), 2),
        Task::KernelMutants(args) => exit("kernel-mutants", kernel_mutants::run(&args), 2),
    }
}
