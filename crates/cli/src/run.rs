//! `softiommu run`: host the engine and run a program with the shim preloaded.

use softiommu_server::Server;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The shim, built by `build.rs`.
const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libsoftiommu_preload.so"));

/// A private directory for the socket and the shim, removed on drop.
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> std::io::Result<Workdir> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let dir = base.join(format!("softiommu-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                    return Ok(Workdir(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free temporary directory name"))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn preload_value(shim: &Path) -> OsString {
    let mut v = OsString::from(shim);
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|e| !e.is_empty()) {
        v.push(":");
        v.push(existing);
    }
    v
}

/// Runs `command` to completion; its exit status becomes ours (128 + signal
/// when a signal ended it, as shells report it).
pub fn run(topology: softiommu_iommu::Topology, command: &[OsString]) -> std::io::Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    let dir = Workdir::new()?;
    let shim = match std::env::var_os("SOFTIOMMU_PRELOAD") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = dir.0.join("libsoftiommu_preload.so");
            std::fs::write(&path, SHIM)?;
            path
        }
    };
    let socket = dir.0.join("iommu.sock");
    let server = Server::bind_with(
        &socket,
        softiommu_engine::api::Engine::with_topology(topology),
    )?;
    std::thread::spawn(move || server.serve());
    let status = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload_value(&shim))
        .env(softiommu_proto::SOCKET_ENV, &socket)
        .status()?;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code as u8))
}
