//! What the benchmarks that time a C program under `softiommu run` share:
//! building the program and running it for `iters` operations.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Compiles `benches/c/<name>.c` into the temporary directory.
pub fn build_timer(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/c/{name}.c"));
    let exe = std::env::temp_dir().join(format!("softiommu-bench-{name}-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {}", src.display());
    exe
}

/// Runs `timer` with `args` under `softiommu run` (on `topology`, or the
/// built-in machine); the time it printed, in nanoseconds.
pub fn timed(timer: &Path, topology: Option<&Path>, args: &[String]) -> Duration {
    let mut run_args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(t) = topology {
        run_args.push("--topology".into());
        run_args.push(t.into());
    }
    timed_with(timer, &run_args, args)
}

/// [`timed`], with `run_args` for `softiommu run` (a topology, a trace).
pub fn timed_with(timer: &Path, run_args: &[std::ffi::OsString], args: &[String]) -> Duration {
    let mut command = Command::new(env!("CARGO_BIN_EXE_softiommu"));
    command.arg("run").args(run_args);
    let out = command.arg("--").arg(timer).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_nanos(ns)
}
