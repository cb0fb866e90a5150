//! `softiommu`: Linux's iommufd and IOMMU core in user space.
//!
//! - `softiommu demo` (the default): a user-space driver copies a buffer with
//!   the built-in machine's emulated I/OAT DMA engine through VFIO and
//!   iommufd, then unmaps the source and shows the device halt on the
//!   translation fault.
//! - `softiommu ioas-demo`: drives the engine through the raw ioctl
//!   interface, as a program using `/dev/iommu` would, and prints what the IO
//!   address spaces hold.
//! - `softiommu run -- CMD [ARGS]`: runs an unmodified program with
//!   `/dev/iommu` served by softiommu; exits with the program's status.
//! - `softiommu serve --socket PATH`: the server alone (what `run` starts).

use clap::{Parser, Subcommand};
use softiommu_engine::api::{Engine, IoasId, Iommufd};
use softiommu_engine::dispatch::Arg;
use softiommu_engine::memory::{SimFile, PAGE_SIZE};
use softiommu_engine::Prot;
use softiommu_iommu::Topology;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod driver_demo;
mod live;
mod run;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "softiommu",
    version,
    about = "Linux's iommufd (/dev/iommu) and IOMMU core, in user space"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A user-space driver copies with the emulated I/OAT DMA engine through
    /// VFIO and iommufd, then faults on an unmapped source (the default).
    Demo,
    /// Run a scenario through raw iommufd ioctls and print what each IOAS holds.
    IoasDemo,
    /// Run a program with /dev/iommu served by softiommu.
    Run {
        /// Machine description (TOML); the built-in machine otherwise.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Write one line per call on /dev/iommu and VFIO files to FILE
        /// (`--trace=FILE`; `--trace` alone: standard error).
        #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true,
              default_missing_value = "-")]
        trace: Option<PathBuf>,
        /// The trace's format: `text` (strace-like) or `json` (one object
        /// per line, see docs/trace.md).
        #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
        trace_format: TraceFormat,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Serve /dev/iommu and VFIO on a socket until SIGTERM; a program finds
    /// it through SOFTIOMMU_SOCKET with the shim preloaded (`softiommu run`
    /// starts one of these for each program).
    Serve {
        /// The socket to listen on; its directory holds the session's views
        /// (sysfs, debugfs).
        #[arg(long)]
        socket: PathBuf,
        /// Machine description (TOML); the built-in machine otherwise.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The supervising `softiommu run`: the server exits with it and
        /// removes the socket's directory.
        #[arg(long, hide = true)]
        supervisor: Option<i32>,
        /// Write one line per call to FILE (`-`: standard error).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// The trace's format.
        #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
        trace_format: TraceFormat,
    },
    /// Show each device's group, holder and domain, which IOAS feeds that
    /// domain, and the mappings, after a scenario.
    Inspect {
        /// Machine description (TOML); the built-in machine otherwise.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// `group`: bind one device of a multi-device group and attach it to an
        /// IOAS; `none`: the machine as it boots.
        #[arg(long, default_value = "group")]
        scenario: String,
        /// Show a running `softiommu run` instead: its session directory or
        /// pid (`$SOFTIOMMU_SESSION` in the program), or nothing when only
        /// one runs.
        #[arg(long, value_name = "SESSION", num_args = 0..=1, require_equals = false,
              default_missing_value = "")]
        live: Option<String>,
        /// Print the JSON document (schema in docs/inspect.md).
        #[arg(long)]
        json: bool,
    },
}

/// The trace's format on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// One strace-like line per call.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and how `run` and `serve` trace calls.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// The file (`-`: standard error).
    pub file: PathBuf,
    /// Its format.
    pub format: TraceFormat,
}

fn load_topology(path: Option<&Path>) -> Result<Topology, Box<dyn std::error::Error>> {
    match path {
        None => Ok(Topology::default_machine()),
        Some(p) => Ok(Topology::from_toml(&std::fs::read_to_string(p)?)?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Demo) {
        Command::Demo => match driver_demo::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("softiommu: {e}");
                ExitCode::FAILURE
            }
        },
        Command::IoasDemo => match demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("softiommu: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Inspect {
            topology,
            scenario,
            live,
            json,
        } => match match live {
            Some(which) => live::inspect_live(Some(which.as_str()).filter(|w| !w.is_empty()), json),
            None => inspect(topology.as_deref(), &scenario, json),
        } {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("softiommu inspect: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            topology,
            trace,
            trace_format,
            command,
        } => match load_topology(topology.as_deref())
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| {
                let trace = trace.map(|file| TraceOptions {
                    file,
                    format: trace_format,
                });
                run::run(topology.as_deref(), trace.as_ref(), &command)
            }) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("softiommu run: {e}");
                ExitCode::from(127)
            }
        },
        Command::Serve {
            socket,
            topology,
            supervisor,
            trace,
            trace_format,
        } => match load_topology(topology.as_deref())
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|t| {
                let trace = trace.map(|file| TraceOptions {
                    file,
                    format: trace_format,
                });
                run::serve(t, &socket, supervisor, trace.as_ref())
            }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("softiommu serve: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_ioas(fd: &Iommufd, ioas: IoasId) -> Result<(), Box<dyn std::error::Error>> {
    let (ranges, align) = fd.iova_ranges(ioas)?;
    println!("IOAS {}: iova alignment {align:#x}", ioas.0);
    for (start, last) in ranges {
        println!("  usable  [{start:#018x}, {last:#018x}]");
    }
    for a in fd.areas(ioas)? {
        let rw = format!(
            "{}{}",
            if a.prot.read { "r" } else { "-" },
            if a.prot.write { "w" } else { "-" }
        );
        println!(
            "  area    [{:#018x}, {:#018x}] {rw} {:>8} bytes, {} pages pinned, from {}",
            a.iova,
            a.iova + a.length - 1,
            a.length,
            a.pinned_pages,
            a.source
        );
    }
    Ok(())
}

fn print_affected(what: &str, affected: &softiommu_engine::api::Affected, topo: &Topology) {
    let names: Vec<&str> = affected
        .devices()
        .iter()
        .map(|d| topo.device(*d).name.as_str())
        .collect();
    if names.is_empty() {
        println!("{what}: no device's DMA changed");
    } else {
        println!("{what}: DMA changed for {}", names.join(", "));
    }
}

fn inspect(
    topology: Option<&Path>,
    scenario: &str,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let topo = load_topology(topology)?;
    let engine = Engine::with_topology(topo.clone());
    let mut fd = engine.open();
    match scenario {
        "none" => {}
        "group" => {
            // The first device of a multi-device group that no kernel driver holds.
            let group = topo
                .groups
                .iter()
                .find(|g| {
                    g.devices.len() > 1
                        && g.devices
                            .iter()
                            .all(|d| topo.device(*d).kernel_driver.is_none())
                })
                .ok_or("the topology has no free multi-device group")?;
            let name = topo.device(group.devices[0]).name.clone();
            let (dev, bound) = fd.bind_device(&name)?;
            if !json {
                print_affected(&format!("bind {name}"), &bound, &topo);
            }
            let ioas = fd.alloc_ioas()?;
            // Page-aligned memory: a 4 KiB-page domain needs page-aligned areas.
            let memory = vec![0u8; 17 * PAGE_SIZE as usize];
            let aligned = (memory.as_ptr() as u64).next_multiple_of(PAGE_SIZE);
            fd.map_user(
                ioas,
                aligned,
                16 * PAGE_SIZE,
                Some(0x10_0000),
                Prot {
                    read: true,
                    write: true,
                },
            )?;
            let (hwpt, attached) = fd.attach(dev, ioas)?;
            if !json {
                print_affected(
                    &format!("attach {name} to IOAS {} (HWPT {hwpt})", ioas.0),
                    &attached,
                    &topo,
                );
            }
            if !json {
                println!();
            }
        }
        other => return Err(format!("unknown scenario {other}").into()),
    }
    let report = fd.inspect();
    if json {
        let view = softiommu_server::inspect::ContextView {
            id: 1,
            pid: Some(std::process::id() as i32),
            file: "iommufd",
            report: report.clone(),
        };
        println!(
            "{}",
            softiommu_server::inspect::snapshot(&report.devices, &[view])
        );
    } else {
        print!("{report}");
    }
    Ok(())
}

fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new();
    let mut fd = engine.open();

    // The same steps a VMM takes through /dev/iommu, spoken as raw ioctls.
    let mut alloc = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    fd.ioctl(
        IOMMU_IOAS_ALLOC,
        Arg::Bytes(zerocopy::IntoBytes::as_mut_bytes(&mut alloc)),
    )?;
    let ioas = IoasId(alloc.out_ioas_id);
    println!("IOMMU_IOAS_ALLOC -> ioas {}", ioas.0);

    let guest_ram = vec![0xa5u8; 64 * PAGE_SIZE as usize];
    let mut map = IommuIoasMap {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas.0,
        user_va: guest_ram.as_ptr() as u64,
        length: guest_ram.len() as u64,
        ..Default::default()
    };
    fd.ioctl(
        IOMMU_IOAS_MAP,
        Arg::Bytes(zerocopy::IntoBytes::as_mut_bytes(&mut map)),
    )?;
    println!(
        "IOMMU_IOAS_MAP {} bytes -> iova {:#x}",
        map.length, map.iova
    );

    // A fixed mapping, a read-only window and a file-backed one.
    let rom = vec![0x5au8; 4 * PAGE_SIZE as usize];
    let rom_iova = fd.map_buffer(
        ioas,
        &rom,
        Some(0x1000_0000),
        Prot {
            read: true,
            write: false,
        },
    )?;
    println!("map_buffer (read-only) -> iova {rom_iova:#x}");
    let file = Arc::new(SimFile::new(16 * PAGE_SIZE as usize, true));
    let file_iova = fd.map_file(
        ioas,
        file,
        0,
        16 * PAGE_SIZE,
        None,
        Prot {
            read: true,
            write: true,
        },
    )?;
    println!("map_file 16 pages -> iova {file_iova:#x}");

    // An emulated device pins part of guest RAM and writes through the IOAS.
    let pin = fd.pin(ioas, map.iova, 4 * PAGE_SIZE, true)?;
    fd.write(ioas, map.iova + 8, b"softiommu")?;
    println!(
        "pinned 4 pages, wrote 9 bytes at iova {:#x}: guest sees {:?}",
        map.iova + 8,
        &guest_ram[8..17]
    );

    // A second IOAS shares the same pages through IOAS_COPY.
    let second = fd.alloc_ioas()?;
    let copied = fd.copy(
        second,
        ioas,
        map.iova,
        16 * PAGE_SIZE,
        None,
        Prot {
            read: true,
            write: false,
        },
    )?;
    println!(
        "IOAS_COPY 16 pages into ioas {} -> iova {copied:#x}",
        second.0
    );

    println!();
    print_ioas(&fd, ioas)?;
    print_ioas(&fd, second)?;

    fd.unpin(ioas, pin)?;
    let unmapped = fd.unmap_all(ioas)?;
    println!(
        "\nunmapped {unmapped} bytes from ioas {}; pinned frames left: {}",
        ioas.0,
        engine.shared().pinned_frames()
    );
    Ok(())
}
