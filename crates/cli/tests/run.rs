//! `softiommu run` with unmodified programs: our own C programs (built here with
//! the system C compiler) and plain shell commands.

use std::path::{Path, PathBuf};
use std::process::Command;

fn softiommu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_softiommu"))
}

fn c_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/c")
}

/// Compiles `tests/c/<name>.c` into a fresh directory.
fn build_c(name: &str) -> PathBuf {
    build_c_at(&c_sources().join(format!("{name}.c")), name)
}

/// Compiles the C program `source` into a fresh directory, as `name`.
fn build_c_at(source: &Path, name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("softiommu-ctest-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let exe = out.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(source)
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "compiling {name}.c");
    exe
}

/// Builds `tests/c/<name>.c`, runs it under `softiommu run` and checks that
/// it exits 0, fails no check and ends with its "0 failed" line.
fn c_program_passes_every_check(name: &str) {
    let exe = build_c(name);
    let out = softiommu()
        .envs(server_env(name).iter().copied())
        .arg("run")
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().last() == Some("0 failed"),
        "{name}: {stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{name}: {stdout}");
    // A failing program's directory stays, to run it again by hand.
    if let Some(dir) = exe.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What a C program needs in the server's environment.
fn server_env(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        // Small limits, so that reaching them takes a moment.
        "limits" => &[
            ("SOFTIOMMU_MAX_SIDE_FILES", "16"),
            ("SOFTIOMMU_MAX_CONNECTIONS", "64"),
            ("SOFTIOMMU_MAX_CONNECTIONS_PER_PROCESS", "40"),
            ("SOFTIOMMU_HELLO_TIMEOUT_MS", "2000"),
            ("SOFTIOMMU_MAX_OBJECTS_PER_CONTEXT", "32"),
            ("SOFTIOMMU_MAX_RANGES_PER_CONTEXT", "64"),
        ],
        _ => &[],
    }
}

/// One test per C program, so that one failing program does not hide the
/// others, and the list of names for [`every_c_program_has_its_test`].
macro_rules! c_programs {
    ($($name:ident),* $(,)?) => {
        const C_PROGRAMS: &[&str] = &[$(stringify!($name)),*];

        mod c_program {
            $(
                #[test]
                fn $name() {
                    super::c_program_passes_every_check(stringify!($name));
                }
            )*
        }
    };
}

c_programs!(
    access,
    bad_pointers,
    dirty_nested,
    fail_nth,
    fault_queue,
    foreign_context,
    ioas_basic,
    last_close,
    limits,
    mock_domain,
    pasid,
    pid_reuse,
    server_death,
    soak,
    uffd_stall,
    veventq,
    viommu_mmap,
    device_stores,
    vfio_device,
    vfio_kvm,
    vfio_sriov,
    vm_pin,
);

/// A new `tests/c/*.c` file needs its line in `c_programs!`; a removed one
/// must leave it.
#[test]
fn every_c_program_has_its_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(c_sources())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".c").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = C_PROGRAMS.iter().map(|&n| n.to_owned()).collect();
    listed.sort();
    let untested: Vec<&String> = on_disk.iter().filter(|n| !listed.contains(n)).collect();
    let missing: Vec<&String> = listed.iter().filter(|n| !on_disk.contains(n)).collect();
    assert!(
        untested.is_empty() && missing.is_empty(),
        "tests/c programs without a test (add them to c_programs!): {untested:?}; \
         tests without a program: {missing:?}"
    );
}

#[test]
fn the_exit_status_is_the_programs() {
    let st = softiommu()
        .args(["run", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(7));
    let st = softiommu()
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(128 + 15));
    let st = softiommu()
        .args(["run", "--", "/nonexistent/program"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(127));
}

#[test]
fn programs_that_do_not_use_dev_iommu_are_untouched() {
    let out = softiommu()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo hello; ls /nonexistent 2>/dev/null; echo $?",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n2\n");
}

#[test]
fn the_main_job_copies_with_the_device_then_shows_the_fault() {
    let out = softiommu().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0000:00:04.0: Intel I/OAT"), "{stdout}");
    assert!(
        stdout.contains("channel DONE, destination holds the source's bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("channel HALTED, CHANERR 0x1 (source address error)"),
        "{stdout}"
    );
    assert!(stdout.contains("destination untouched: true"), "{stdout}");
}

#[test]
fn the_ioat_example_drives_the_device_by_hand() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ioat_copy.c");
    let exe = build_c_at(&source, "ioat_copy");
    let out = softiommu().arg("run").arg("--").arg(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("copy: channel DONE, destination holds the source's bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("channel HALTED, CHANERR 0x1, destination untouched"),
        "{stdout}"
    );
    if let Some(dir) = exe.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn the_ioas_demo_prints_the_ioas() {
    let out = softiommu().arg("ioas-demo").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("IOMMU_IOAS_MAP"), "{stdout}");
    assert!(stdout.contains("pinned frames left: 0"), "{stdout}");
}

#[test]
fn rust_vmm_iommufd_ioctls_works_unmodified() {
    let exe = Path::new(env!("CARGO_BIN_EXE_softiommu"))
        .parent()
        .unwrap()
        .join("examples/iommufd_ioctls_client");
    assert!(
        exe.exists(),
        "{} is missing: run the whole suite (`cargo test --workspace`), which builds the examples",
        exe.display()
    );
    let out = softiommu().arg("run").arg("--").arg(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("client done"), "{stdout}");
}

#[test]
fn inspect_shows_the_whole_group_moving_with_one_device() {
    let out = softiommu().arg("inspect").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("DMA changed for 0000:01:00.0, 0000:01:00.1, 0000:01:00.2"),
        "{stdout}"
    );
    let sibling = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("0000:01:00.2"))
        .unwrap();
    assert!(
        sibling.contains("fed by IOAS"),
        "a never-attached sibling shows its group's domain: {sibling}"
    );
    let out = softiommu()
        .args(["inspect", "--scenario", "none"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kernel driver nvme"));
}

#[test]
fn topology_files_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("softiommu-topo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[iommu]]\nname = \"smmu\"\ndriver = \"arm_smmuv3\"\n[[group]]\niommu = \"smmu\"\ndevices = [\"nic.0\", \"nic.1\"]\n",
    )
    .unwrap();
    let out = softiommu()
        .arg("inspect")
        .arg("--topology")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("DMA changed for nic.0, nic.1"), "{stdout}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[iommu]]\nname = \"x\"\ndriver = \"nope\"\n").unwrap();
    let out = softiommu()
        .arg("inspect")
        .arg("--topology")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown driver"));
    let st = softiommu()
        .arg("run")
        .arg("--topology")
        .arg(&good)
        .args(["--", "true"])
        .status()
        .unwrap();
    assert!(st.success());
}
