//! `softiommu run`'s processes and what survives what: the program's status
//! always comes back, signals sent to `softiommu run` reach the program,
//! and no session directory outlives its session.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn softiommu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_softiommu"))
}

/// A private temporary directory for one test's sessions (`TMPDIR`).
fn private_tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softiommu-life-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sessions_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("softiommu-"))
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// Starts `softiommu run -- sh -c script` with sessions under `tmp`,
/// stdin and stderr piped, and returns it with the first line the script
/// printed (which says it is ready).
fn run_script(tmp: &Path, script: &str) -> (std::process::Child, String) {
    let mut run = softiommu()
        .env("TMPDIR", tmp)
        .args(["run", "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (run, line)
}

#[test]
fn a_signal_sent_to_run_reaches_the_program() {
    let tmp = private_tmp("signal");
    let (mut run, line) = run_script(
        &tmp,
        "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    );
    assert_eq!(line, "ready\n");
    kill(run.id(), "-TERM");
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(42), "the program's trap ran");
    assert!(sessions_in(&tmp).is_empty(), "the session is cleaned up");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The server serving sessions under `tmp`: its pid, from its command line.
fn server_in(tmp: &Path) -> Option<u32> {
    let tmp = tmp.to_str()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let serve = args.iter().any(|a| *a == b"serve");
        let ours = args.iter().any(|a| a.starts_with(tmp.as_bytes()));
        (serve && ours).then_some(pid)
    })
}

#[test]
fn a_dead_servers_program_is_still_reported() {
    // The server is killed while the program runs; the program then exits
    // 3: softiommu run says what happened and exits 3.
    let tmp = private_tmp("death");
    let (mut run, _) = run_script(&tmp, "echo ready; read line; exit 3");
    let server = server_in(&tmp).expect("the server runs");
    kill(server, "-KILL");
    // Reaped: softiommu run has seen it end while the program runs.
    wait_until("the server is reaped", || {
        !Path::new(&format!("/proc/{server}")).exists()
    });
    drop(run.stdin.take());
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the server exited"), "{stderr}");
    assert!(sessions_in(&tmp).is_empty(), "the session is cleaned up");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn killing_run_leaves_no_session_behind() {
    let tmp = private_tmp("sigkill");
    let (mut run, line) = run_script(&tmp, "echo $$; exec sleep 30");
    let program: u32 = line.trim().parse().unwrap();
    assert_eq!(sessions_in(&tmp).len(), 1);
    run.kill().unwrap();
    run.wait().unwrap();
    // The server follows its supervisor and removes the session.
    wait_until("the session directory goes", || {
        sessions_in(&tmp).is_empty()
    });
    kill(program, "-KILL");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn stale_sessions_of_dead_runs_are_removed_at_the_next_start() {
    let tmp = private_tmp("stale");
    // A pid that is certainly free: a child that has been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = tmp.join(format!("softiommu-{dead}-0"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("iommu.sock"), b"").unwrap();
    // A live process's session, and a directory that is no session.
    let live = tmp.join(format!("softiommu-{}-0", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let other = tmp.join("softiommu-notes");
    std::fs::create_dir(&other).unwrap();
    let st = softiommu()
        .env("TMPDIR", &tmp)
        .args(["run", "--", "true"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!stale.exists(), "a dead run's session is removed");
    assert!(live.exists(), "a live process's is kept");
    assert!(other.exists(), "and so is what is no session");
    std::fs::remove_dir_all(&tmp).unwrap();
}
