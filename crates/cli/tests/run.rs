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
    exit_noticed,
    equivalence,
    fail_nth,
    fault_queue,
    fd_identity,
    foreign_context,
    ioas_basic,
    last_close,
    limits,
    mock_domain,
    pasid,
    paused,
    pid_reuse,
    server_death,
    soak,
    traced,
    uffd_stall,
    veventq,
    viommu_mmap,
    device_stores,
    vfio_device,
    vfio_dmabuf,
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

/// Runs `traced.c` under `softiommu run` with `trace_args`; the trace's
/// lines.
fn trace_of_traced(trace_args: &[&str]) -> Vec<String> {
    // A directory of its own: tests run at once, and each removes its own.
    let tag = format!("trace{}", trace_args.join("-"));
    let exe = build_c_at(&c_sources().join("traced.c"), &tag);
    let file = exe.with_file_name("trace.out");
    let out = softiommu()
        .arg("run")
        .arg(format!("--trace={}", file.display()))
        .args(trace_args)
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.ends_with("0 failed\n"), "{stdout}");
    let trace = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    trace.lines().map(str::to_owned).collect()
}

#[test]
fn the_trace_of_a_known_program_matches_its_transcript() {
    let lines = trace_of_traced(&[]);
    // Times, pids and the buffer's address change from run to run.
    let stable: Vec<String> = lines
        .iter()
        .map(|l| {
            let (time, rest) = l.split_once(" [").unwrap();
            assert!(time.parse::<f64>().is_ok(), "{l}");
            let (ids, rest) = rest.split_once("] ").unwrap();
            let (pid, tid) = ids.split_once('/').unwrap();
            assert_eq!(pid, tid, "a single-threaded program: {l}");
            match rest.split_once("user_va=0x") {
                Some((head, tail)) => {
                    let after = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit());
                    format!("{head}user_va=VA{after}")
                }
                None => rest.to_owned(),
            }
        })
        .collect();
    let expected = [
        "ioctl(3<iommufd>, IOMMU_IOAS_ALLOC, {flags=0x0, out_ioas_id=0} => {out_ioas_id=1}) = 0",
        "ioctl(3<iommufd>, IOMMU_IOAS_MAP, {flags=FIXED_IOVA|WRITEABLE|READABLE, ioas_id=1, \
         user_va=VA, length=0x1000, iova=0x1000000}) = 0",
        "ioctl(3<iommufd>, IOMMU_IOAS_UNMAP, {ioas_id=1, iova=0x200000, length=0x1000}) \
         = -1 ENOENT",
        "ioctl(3<iommufd>, IOMMU_TEST_CMD(MOCK_DOMAIN), {id=1}) = 0 (DMA moved: mock:9)",
        "ioctl(3<iommufd>, IOMMU_DESTROY, {id=1}) = -1 EBUSY",
        "ioctl(3<iommufd>, IOMMU_DESTROY, {id=2}) = 0 (DMA moved: mock:9)",
        "ioctl(5<vfio-device>, VFIO_DEVICE_BIND_IOMMUFD, {flags=0x0, iommufd=3, out_devid=0} \
         => {out_devid=2}) = 0 (DMA moved: 0000:02:00.0)",
        "ioctl(5<vfio-device>, VFIO_DEVICE_ATTACH_IOMMUFD_PT, {flags=0x0, pt_id=1, pasid=0} \
         => {pt_id=3}) = 0 (DMA moved: 0000:02:00.0)",
        "ioctl(5<vfio-device>, VFIO_DEVICE_ATTACH_IOMMUFD_PT, {flags=0x0, pt_id=99, pasid=0}) \
         = -1 ENOENT",
    ];
    assert_eq!(stable, expected);
}

/// The JSON trace's schema (docs/trace.md): each key, and the JSON type
/// its value has.
const TRACE_SCHEMA: &[(&str, &str, bool)] = &[
    // (key, type, always present)
    ("time", "number", true),
    ("pid", "number", true),
    ("tid", "number", true),
    ("fd", "number", true),
    ("file", "string", true),
    ("call", "string", true),
    ("name", "string", false),
    ("request", "string", false),
    ("arg", "string", false),
    ("args", "object", true),
    ("out", "object", true),
    ("result", "number", true),
    ("errno", "string", false),
    ("devices", "array", true),
];

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[test]
fn the_json_trace_follows_its_schema_and_round_trips() {
    let lines = trace_of_traced(&["--trace-format", "json"]);
    assert_eq!(lines.len(), 9);
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        for (key, ty, always) in TRACE_SCHEMA {
            match obj.get(*key) {
                Some(value) => assert_eq!(json_type(value), *ty, "{key} in {line}"),
                None => assert!(!always, "{key} missing in {line}"),
            }
        }
        for key in obj.keys() {
            assert!(
                TRACE_SCHEMA.iter().any(|(k, _, _)| k == key),
                "{key} is not in the schema: {line}"
            );
        }
        assert_eq!(obj.contains_key("errno"), v["result"] == -1, "{line}");
        for value in v["args"].as_object().unwrap().values() {
            assert!(value.is_u64() || value.is_string(), "{line}");
        }
        // Written, read and written again: the same object.
        let again: serde_json::Value = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(again, v);
    }
    let map: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(map["name"], "IOMMU_IOAS_MAP");
    assert_eq!(map["args"]["ioas_id"], 1);
    assert_eq!(map["args"]["iova"], "0x1000000");
    assert_eq!(map["args"]["flags"], "FIXED_IOVA|WRITEABLE|READABLE");
    let bind: serde_json::Value = serde_json::from_str(&lines[6]).unwrap();
    assert_eq!(bind["out"]["out_devid"], 2);
    assert_eq!(bind["devices"][0], "0000:02:00.0");
    let failed: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(failed["errno"], "ENOENT");
}

#[test]
fn live_inspect_shows_a_paused_programs_mappings_and_devices() {
    use std::io::BufRead;
    let exe = build_c_at(&c_sources().join("paused.c"), "paused-live");
    let mut run = softiommu()
        .arg("run")
        .arg("--")
        .arg(&exe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(run.stdout.take().unwrap()).lines();
    let mut session = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(dir) = line.strip_prefix("# session ") {
            session = Some(dir.to_owned());
        }
        if line == "# paused" {
            break;
        }
    }
    let session = session.expect("the program says its session");
    // By the pid of `softiommu run`, as JSON.
    let out = softiommu()
        .args(["inspect", "--json", "--live"])
        .arg(run.id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    let contexts = doc["contexts"].as_array().unwrap();
    assert_eq!(contexts.len(), 1, "{doc}");
    let ctx = &contexts[0];
    assert_eq!(ctx["file"], "iommufd");
    assert!(ctx["pid"].as_i64().unwrap() > 0);
    let ioas = &ctx["ioas"][0];
    assert_eq!(ioas["areas"].as_array().unwrap().len(), 1, "{doc}");
    let area = &ioas["areas"][0];
    assert_eq!(area["start"], "0x1000000");
    assert_eq!(area["last"], "0x100ffff");
    assert_eq!(area["prot"], "rw");
    assert_eq!(area["pinned_pages"], 16);
    assert_eq!(
        ioas["hwpts"].as_array().unwrap().len(),
        2,
        "mock and NIC domains: {doc}"
    );
    let nic = doc["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "0000:02:00.0")
        .unwrap();
    assert_eq!(nic["holder"], "user");
    assert_eq!(nic["owner_context"], ctx["id"]);
    assert_eq!(nic["domain"]["kind"], "paging");
    assert!(ctx["hwpts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["domain"] == nic["domain"]["id"]));
    // By the session directory the program was given, as text.
    let out = softiommu()
        .args(["inspect", "--live", &session])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("[0x1000000, 0x100ffff] rw 16 pages pinned"),
        "{text}"
    );
    let nic_line = text.lines().find(|l| l.contains("0000:02:00.0")).unwrap();
    assert!(nic_line.contains("owned by context"), "{nic_line}");
    assert!(nic_line.contains("fed by IOAS 1"), "{nic_line}");
    // Let the program go on.
    drop(run.stdin.take());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(run.wait().unwrap().success(), "{rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("0 failed"),
        "{rest:?}"
    );
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
}

/// Bytes from hex text.
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `equivalence.c` runs a random sequence of iommufd calls through the
/// shim and prints each call's bytes before and after; the same bytes go
/// through the library here, over a simulated caller whose memory is the
/// program's region (same address, same pattern). Every result, errno and
/// returned struct must be the same, and so must the region at the end.
#[test]
fn the_shim_and_the_library_agree_call_for_call() {
    use softiommu_engine::api::{current_credentials, Engine};
    use softiommu_engine::memory::{AddressSpace, SimFiles, SimMemory};
    use softiommu_engine::Arg;
    const REGION: u64 = 0x3f00_0000_0000;
    const LEN: u64 = 64 * 4096;
    let exe = build_c_at(&c_sources().join("equivalence.c"), "equivalence-replay");
    for seed in 1..=8 {
        let out = softiommu()
            .arg("run")
            .arg("--")
            .arg(&exe)
            .args([seed.to_string(), "400".to_owned()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "seed {seed}: {stdout}");
        let sim = std::sync::Arc::new(SimMemory::new());
        sim.map(REGION, LEN, true);
        let pattern: Vec<u8> = (0..LEN)
            .map(|i| (i.wrapping_mul(31) + i / 4096) as u8)
            .collect();
        sim.write(REGION, &pattern).unwrap();
        let engine = Engine::new();
        let mut fd = engine.open_as(
            sim.clone(),
            Box::new(SimFiles::default()),
            current_credentials(),
        );
        let mut lines = stdout.lines().filter(|l| !l.starts_with("ok "));
        let mut calls = 0;
        while let Some(line) = lines.next() {
            if let Some(hash) = line.strip_prefix("region ") {
                let mut memory = vec![0u8; LEN as usize];
                sim.read(REGION, &mut memory).unwrap();
                let ours = memory.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                assert_eq!(
                    format!("{ours:016x}"),
                    hash,
                    "seed {seed}: the region after the run"
                );
                break;
            }
            let call: Vec<&str> = line.split(' ').collect();
            assert_eq!(call[0], "call", "seed {seed}: {line}");
            let request = u32::from_str_radix(call[1], 16).unwrap();
            let mut bytes = unhex(call[2]);
            let ret = lines.next().unwrap();
            let shim: Vec<&str> = ret.split(' ').collect();
            assert_eq!(shim[0], "ret", "seed {seed}: {ret}");
            let library = match fd.ioctl(request, Arg::Bytes(&mut bytes)) {
                Ok(v) => (v.to_string(), "0".to_owned()),
                Err(e) => ("-1".to_owned(), e.0.to_string()),
            };
            assert_eq!(
                (shim[1], shim[2]),
                (library.0.as_str(), library.1.as_str()),
                "seed {seed}, call {calls}: {line}"
            );
            assert_eq!(unhex(shim[3]), bytes, "seed {seed}, call {calls}: {line}");
            calls += 1;
        }
        assert_eq!(calls, 400, "seed {seed}: every call compared");
    }
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
}
