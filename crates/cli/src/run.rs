//! `softiommu run`: a supervisor that starts the server as a process of its
//! own (`softiommu serve`), runs the program with the shim preloaded, and
//! reports the program's exit status whatever happens to the server.
//!
//! Processes: the supervisor (this process, in the program's process
//! group, so it gets the terminal's signals as the program does), the
//! server (its own process group: Ctrl-C never reaches it), and the program.
//! - The program exits: the supervisor stops the server, removes the
//!   session directory and exits with the program's status.
//! - The server dies: the program's calls fail with `EIO`; the supervisor
//!   says so once and goes on waiting for the program.
//! - SIGINT, SIGTERM, SIGHUP or SIGQUIT sent to the supervisor by another
//!   process are passed on to the program; the terminal's own already
//!   reached it and are not sent twice.
//! - The supervisor is killed: the server gets SIGTERM (parent-death
//!   signal) and removes the session directory; a session directory left
//!   by a server that could not clean up is removed at the next start.

use crate::{TraceFormat, TraceOptions};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::{Cause, Sent};
use softiommu_server::trace::{self, Tracer};
use softiommu_server::Server;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};

/// The shim, built by `build.rs`.
const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libsoftiommu_preload.so"));

/// What a session directory is called: `softiommu-<supervisor pid>-<n>`.
const SESSION_PREFIX: &str = "softiommu-";

/// The signals the supervisor passes on to the program.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// The server's socket in a session directory.
pub const SOCKET_NAME: &str = "iommu.sock";

/// The environment variable that tells the program its session directory
/// (what `softiommu inspect --live` takes).
pub const SESSION_ENV: &str = "SOFTIOMMU_SESSION";

/// This user's running sessions as `(supervisor pid, directory)`: session
/// directories whose supervisor is alive and whose socket exists.
pub fn sessions() -> Vec<(i32, PathBuf)> {
    let base = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let uid = nix::unistd::getuid().as_raw();
    let mut found: Vec<(i32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = session_pid(&entry.file_name())?;
            let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
            let alive = nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok();
            let dir = entry.path();
            (ours && alive && dir.join(SOCKET_NAME).exists()).then_some((pid, dir))
        })
        .collect();
    found.sort();
    found
}

/// The supervisor pid in a session directory's name.
fn session_pid(name: &std::ffi::OsStr) -> Option<i32> {
    name.to_str()
        .and_then(|n| n.strip_prefix(SESSION_PREFIX))
        .and_then(|n| n.split_once('-'))
        .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<i32>().ok()))
}

/// A private directory for the socket and the shim, removed on drop.
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> std::io::Result<Workdir> {
        let base = std::env::temp_dir();
        remove_stale_sessions(&base);
        for attempt in 0..100u32 {
            let dir = base.join(format!("{SESSION_PREFIX}{}-{attempt}", std::process::id()));
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

/// Removes session directories of ours whose supervisor is gone (killed
/// before it could clean up). A directory whose pid is alive is kept, even
/// if that pid now belongs to another process: better a leftover than a
/// live session removed.
fn remove_stale_sessions(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = nix::unistd::getuid().as_raw();
    for entry in entries.flatten() {
        let Some(pid) = session_pid(&entry.file_name()) else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        let gone = matches!(
            nix::sys::signal::kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if ours && gone && pid > 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
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
/// when a signal ended it, as shells report it). `topology` is the machine
/// file the server loads (the built-in machine when `None`).
pub fn run(
    topology: Option<&Path>,
    trace: Option<&TraceOptions>,
    command: &[OsString],
) -> std::io::Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    // Signals are caught (not blocked: a blocked mask would pass to the
    // children) from before the first child starts, so none is missed.
    let mut watched: Vec<i32> = FORWARDED.iter().map(|s| *s as i32).collect();
    watched.push(Signal::SIGCHLD as i32);
    let mut signals = SignalsInfo::<WithOrigin>::new(&watched)?;
    let dir = Workdir::new()?;
    let shim = match std::env::var_os("SOFTIOMMU_PRELOAD") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = dir.0.join("libsoftiommu_preload.so");
            std::fs::write(&path, SHIM)?;
            path
        }
    };
    let socket = dir.0.join(SOCKET_NAME);
    let mut server = start_server(&socket, topology, trace)?;
    let mut child = match Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload_value(&shim))
        .env(softiommu_proto::SOCKET_ENV, &socket)
        .env(SESSION_ENV, &dir.0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            stop_server(&mut server);
            return Err(e);
        }
    };
    let status = supervise(&mut child, &mut server, &mut signals);
    signals.handle().close();
    stop_server(&mut server);
    drop(dir);
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code as u8))
}

/// Starts `softiommu serve` for `socket` and waits until it listens.
fn start_server(
    socket: &Path,
    topology: Option<&Path>,
    trace: Option<&TraceOptions>,
) -> std::io::Result<Child> {
    let mut serve = Command::new(std::env::current_exe()?);
    serve
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--supervisor")
        .arg(std::process::id().to_string());
    if let Some(t) = topology {
        serve.arg("--topology").arg(t);
    }
    if let Some(t) = trace {
        let format = match t.format {
            TraceFormat::Text => "text",
            TraceFormat::Json => "json",
        };
        serve
            .arg("--trace")
            .arg(&t.file)
            .arg("--trace-format")
            .arg(format);
    }
    let mut server = serve
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let mut line = String::new();
    let ready = server
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line))
        .is_some_and(|r| r.is_ok() && line.trim() == "ready");
    if !ready {
        stop_server(&mut server);
        return Err(std::io::Error::other("the server did not start"));
    }
    Ok(server)
}

/// Waits for the program, passing on signals and noticing the server's
/// death; the program's status.
fn supervise(
    child: &mut Child,
    server: &mut Child,
    signals: &mut SignalsInfo<WithOrigin>,
) -> ExitStatus {
    let program = Pid::from_raw(child.id() as i32);
    let mut server_alive = true;
    loop {
        // The server first: when both have ended since the last look, the
        // server's death is still told.
        if server_alive {
            if let Ok(Some(status)) = server.try_wait() {
                server_alive = false;
                eprintln!(
                    "softiommu run: the server exited ({status}); the program's iommufd and \
                     VFIO calls now fail with EIO"
                );
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        // Wakes at the next signal; SIGCHLD comes when either child ends.
        for origin in signals.wait() {
            let Ok(signal) = Signal::try_from(origin.signal) else {
                continue;
            };
            // Sent by a process (kill(2), sigqueue(3)): pass it on. The
            // terminal's (sent by the kernel) reached the program already.
            let from_process = matches!(origin.cause, Cause::Sent(Sent::User | Sent::Queue));
            if FORWARDED.contains(&signal) && from_process {
                let _ = nix::sys::signal::kill(program, signal);
            }
        }
    }
}

/// Stops the server: SIGTERM, then SIGKILL if it has not exited in 2 s.
fn stop_server(server: &mut Child) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = Pid::from_raw(server.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    for _ in 0..200 {
        if matches!(server.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// `softiommu serve`: serves `socket` until SIGTERM (or, under a
/// supervisor, until the supervisor dies). Prints `ready` once it listens.
pub fn serve(
    topology: softiommu_iommu::Topology,
    socket: &Path,
    supervisor: Option<i32>,
    trace: Option<&TraceOptions>,
) -> std::io::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGHUP);
    mask.thread_block().map_err(std::io::Error::from)?;
    if let Some(parent) = supervisor {
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
        // The supervisor may have died before the line above.
        if nix::unistd::getppid().as_raw() != parent {
            return Ok(());
        }
    }
    // Every context, VFIO file and side file costs the server a descriptor:
    // take what the hard limit allows (the server's own limits bound them).
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let server = Server::bind_with(
        socket,
        softiommu_engine::api::Engine::with_topology(topology),
    )?;
    let tracer = match trace {
        Some(t) => Some(start_trace(t)?),
        None => None,
    };
    if let Some(tracer) = &tracer {
        server.set_trace(tracer.clone());
    }
    let session = socket.parent().map(Path::to_owned);
    std::thread::spawn(move || server.serve());
    println!("ready");
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    let _ = signals.read_signal();
    // Write every call answered before exiting (the sync waits for lines
    // a serving thread is still formatting).
    if let Some(tracer) = &tracer {
        tracer.sync(std::time::Duration::from_secs(5));
    }
    // Under a supervisor the session is its directory: leave none behind.
    if let (Some(_), Some(dir)) = (supervisor, session) {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

/// Opens the trace's file (`-`: standard error) and starts its writer.
fn start_trace(t: &TraceOptions) -> std::io::Result<Tracer> {
    let out: Box<dyn std::io::Write + Send> = if t.file.as_os_str() == "-" {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::fs::File::create(&t.file)?)
    };
    let format = match t.format {
        TraceFormat::Text => trace::Format::Text,
        TraceFormat::Json => trace::Format::Json,
    };
    Tracer::start(out, format)
}
