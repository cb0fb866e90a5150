//! A caller with simulated memory, driving a context through the raw entry
//! point; [`cmd`] has one helper per command, in the style of Linux's
//! `iommufd_utils.h`, and [`test_err`] runs a table of errno cases
//! ([`test_table`] one whose rows may succeed).
#![allow(dead_code)]

pub mod cmd;
pub mod vfio;

use softiommu_engine::memory::{AddressSpace, SimFiles, SimMemory};
use softiommu_engine::ops::hwpt::HwptSpec;
use softiommu_engine::pages::EngineState;
use softiommu_engine::{Arg, Caller, Context, Credentials, Errno};
use std::fmt::Debug;
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Writable buffer region.
pub const BUF: u64 = 0x10_0000;
pub const BUF_LEN: u64 = 4 << 20;
/// Read-only region.
pub const RO: u64 = 0x80_0000;
pub const RO_LEN: u64 = 64 << 10;
/// Scratch region for arrays the structs point at.
pub const SCRATCH: u64 = 0x90_0000;
pub const PAGE: u64 = 4096;

pub struct Harness {
    pub shared: Arc<EngineState>,
    pub ctx: Context,
    pub sim: Arc<SimMemory>,
    pub mem: Arc<dyn AddressSpace>,
    pub files: SimFiles,
    pub creds: Credentials,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_shared(Arc::new(EngineState::default()))
    }

    pub fn with_shared(shared: Arc<EngineState>) -> Self {
        let sim = Arc::new(SimMemory::new());
        sim.map(BUF, BUF_LEN, true);
        sim.map(RO, RO_LEN, false);
        sim.map(SCRATCH, 64 << 10, true);
        let mem: Arc<dyn AddressSpace> = sim.clone();
        Harness {
            ctx: Context::new(shared.clone()),
            shared,
            sim,
            mem,
            files: SimFiles::default(),
            creds: Credentials::default(),
        }
    }

    /// A second context of the same engine, for the same process.
    pub fn sibling(&self) -> Harness {
        Harness {
            shared: self.shared.clone(),
            ctx: Context::new(self.shared.clone()),
            sim: self.sim.clone(),
            mem: self.mem.clone(),
            files: SimFiles::default(),
            creds: self.creds,
        }
    }

    /// This process as the caller of an operation.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            mem: &self.mem,
            files: &self.files,
            creds: self.creds,
        }
    }

    /// The context and this process as its caller, borrowed together, for
    /// the typed operations: `let (ctx, caller) = h.split();`.
    pub fn split(&mut self) -> (&mut Context, Caller<'_>) {
        let caller = Caller {
            mem: &self.mem,
            files: &self.files,
            creds: self.creds,
        };
        (&mut self.ctx, caller)
    }

    pub fn raw(&mut self, request: u32, bytes: &mut [u8]) -> Result<i64, Errno> {
        let (ctx, caller) = self.split();
        ctx.ioctl(&caller, request, Arg::Bytes(bytes))
    }

    pub fn ptr(&mut self, request: u32, arg: u64) -> Result<i64, Errno> {
        let (ctx, caller) = self.split();
        ctx.ioctl(&caller, request, Arg::User(arg))
    }

    /// Runs `request` on `cmd` (its `size` field must already be set).
    pub fn cmd<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        request: u32,
        cmd: &mut T,
    ) -> Result<i64, Errno> {
        self.raw(request, cmd.as_mut_bytes())
    }

    pub fn write_mem(&self, addr: u64, bytes: &[u8]) {
        self.mem.write(addr, bytes).expect("test memory write");
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(addr, &mut v).expect("test memory read");
        v
    }
}

/// One case of a table: what it checks, its input, the answer wanted.
pub type Case<'a, I, W> = (&'a str, I, W);

/// One errno case of a table: what it checks, its input, the errno Linux
/// gives.
pub type ErrCase<'a, I> = Case<'a, I, Errno>;

/// Runs `cases` in order on `h` through `run` (the style of the selftest's
/// `test_err_*`), checking each one's errno; a failure names the case.
#[track_caller]
pub fn test_err<I: Clone + Debug, T: Debug>(
    h: &mut Harness,
    cases: &[ErrCase<'_, I>],
    mut run: impl FnMut(&mut Harness, I) -> Result<T, Errno>,
) {
    for (what, input, errno) in cases {
        let got = run(h, input.clone());
        assert!(
            matches!(got, Err(e) if e == *errno),
            "case `{what}`: got {got:?}, want Err({errno:?}); input {input:?}"
        );
    }
}

/// Runs `cases` in order on `h` through `run`, checking each one's whole
/// answer (a success and its value, or an errno): for sequences where a
/// success between failures is part of what is checked (the selftest's
/// `test_cmd_*` and `test_err_*` lines in a row). A failure names the case.
#[track_caller]
pub fn test_table<I: Clone + Debug, W: PartialEq + Debug>(
    h: &mut Harness,
    cases: &[Case<'_, I, W>],
    mut run: impl FnMut(&mut Harness, I) -> W,
) {
    for (what, input, want) in cases {
        let got = run(h, input.clone());
        assert!(
            got == *want,
            "case `{what}`: got {got:?}, want {want:?}; input {input:?}"
        );
    }
}

/// [`test_err`] for a command issued as its whole struct: each case's input is
/// the struct (its `size` set), usually a valid one with one field changed.
/// Returns each case's struct as the command left it, for what a failing
/// command writes back.
#[track_caller]
pub fn test_err_ioctl<T: IntoBytes + FromBytes + Immutable + Clone + Debug>(
    h: &mut Harness,
    request: u32,
    cases: &[ErrCase<'_, T>],
) -> Vec<T> {
    let mut left = Vec::with_capacity(cases.len());
    test_err(h, cases, |h, mut c| {
        let r = h.cmd(request, &mut c);
        left.push(c);
        r
    });
    left
}

/// [`test_table`] for a command issued as its whole struct, against what
/// `ioctl` returns.
#[track_caller]
pub fn test_ioctl<T: IntoBytes + FromBytes + Immutable + Clone + Debug>(
    h: &mut Harness,
    request: u32,
    cases: &[Case<'_, T, Result<i64, Errno>>],
) {
    test_table(h, cases, |h, mut c| h.cmd(request, &mut c));
}

/// A machine of one IOMMU instance running `driver` with one device, bound
/// here; a nest-parent HWPT over a new IOAS where the first `guest_len` bytes
/// of the buffer are mapped read-write at IOVA 0 (the guest's physical
/// memory, for nested translation). Returns the harness, device and parent.
pub fn nesting_machine(driver: softiommu_iommu::DriverInfo, guest_len: u64) -> (Harness, u32, u32) {
    use softiommu_iommu::{domain::PagingFlags, DeviceId, Topology};
    let topo = Topology::builder()
        .iommu("iommu", driver)
        .group("iommu", &["dev0"])
        .unwrap()
        .build();
    let mut h = Harness::with_shared(Arc::new(EngineState::with_topology(topo)));
    let ioas = h.ctx.ioas_alloc().unwrap();
    let (dev, _) = h.ctx.device_bind(DeviceId(0)).unwrap();
    let flags = PagingFlags {
        dirty_tracking: false,
        nest_parent: true,
    };
    let parent = h
        .ctx
        .hwpt_alloc(
            dev,
            HwptSpec::Paging {
                ioas,
                flags,
                pgsize_bitmap: None,
            },
        )
        .unwrap();
    let args = softiommu_engine::MapArgs {
        iova: Some(0),
        length: guest_len,
        prot: softiommu_engine::Prot {
            read: true,
            write: true,
        },
    };
    let (ctx, caller) = h.split();
    ctx.ioas_map(&caller, ioas, BUF, args).unwrap();
    (h, dev, parent)
}
