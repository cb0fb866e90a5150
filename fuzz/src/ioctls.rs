//! iommufd ioctls on the engine: two `/dev/iommu` contexts and one VFIO
//! container share one machine; argument structs, the pages they map and
//! the files they name live in simulated memory and files, so every
//! pointer the input makes up is either in them or `EFAULT`.
//!
//! Operations (first byte, modulo 8): 0–4 an ioctl (context, request,
//! where the struct goes, its bytes); 5 bytes into the mappable pages; 6
//! close a side file (an access, a fault queue, …); 7 close a context and
//! open a new one. At the end every context is closed and nothing may stay
//! charged: a pin that outlives its context is a leak. The engine is
//! shared by all inputs, so state an input leaves behind shows up too.

use crate::Input;
use softiommu_engine::memory::{AddressSpace, SimFile, SimFiles, SimMemory};
use softiommu_engine::{Arg, Caller, Context, Credentials};
use softiommu_uapi::ioctl::*;
use softiommu_uapi::vfio::*;
use std::sync::Arc;

/// Where argument structs go (writable).
pub const ARGS: u64 = 0x1_0000;
const ARGS_LEN: u64 = 0x4000;
/// Pages a map may name (writable), and read-only ones after them.
pub const DATA: u64 = 0x10_0000;
pub const DATA_LEN: u64 = 16 * 4096;
const RODATA: u64 = 0x20_0000;
const RODATA_LEN: u64 = 4 * 4096;

/// Every request a context answers; any other u32 may come raw.
pub const REQUESTS: &[u32] = &[
    IOMMU_DESTROY,
    IOMMU_IOAS_ALLOC,
    IOMMU_IOAS_ALLOW_IOVAS,
    IOMMU_IOAS_COPY,
    IOMMU_IOAS_IOVA_RANGES,
    IOMMU_IOAS_MAP,
    IOMMU_IOAS_UNMAP,
    IOMMU_OPTION,
    IOMMU_VFIO_IOAS,
    IOMMU_HWPT_ALLOC,
    IOMMU_GET_HW_INFO,
    IOMMU_HWPT_SET_DIRTY_TRACKING,
    IOMMU_HWPT_GET_DIRTY_BITMAP,
    IOMMU_HWPT_INVALIDATE,
    IOMMU_FAULT_QUEUE_ALLOC,
    IOMMU_IOAS_MAP_FILE,
    IOMMU_VIOMMU_ALLOC,
    IOMMU_VDEVICE_ALLOC,
    IOMMU_IOAS_CHANGE_PROCESS,
    IOMMU_VEVENTQ_ALLOC,
    IOMMU_HW_QUEUE_ALLOC,
    IOMMU_TEST_CMD,
    IOMMU_TEST_CMD,
    IOMMU_TEST_CMD,
    VFIO_GET_API_VERSION,
    VFIO_CHECK_EXTENSION,
    VFIO_SET_IOMMU,
    VFIO_IOMMU_GET_INFO,
    VFIO_IOMMU_MAP_DMA,
    VFIO_IOMMU_UNMAP_DMA,
    VFIO_IOMMU_DIRTY_PAGES,
];

/// Simulated memory with the regions above, the first holding `fill`.
pub fn memory(fill: &[u8]) -> Arc<SimMemory> {
    let mem = SimMemory::new();
    mem.map(ARGS, ARGS_LEN, true);
    mem.map(DATA, DATA_LEN, true);
    mem.map(RODATA, RODATA_LEN, false);
    let _ = mem.poke(ARGS, fill);
    Arc::new(mem)
}

/// Descriptors 3 (a writable file) and 4 (a read-only one) for `MAP_FILE`.
pub fn files() -> SimFiles {
    let mut files = SimFiles::default();
    files.insert(3, Arc::new(SimFile::new(16 * 4096, true)));
    files.insert(4, Arc::new(SimFile::new(4 * 4096, false)));
    files
}

/// What every engine-level input starts from: a flags byte, then the
/// simulated memory (its argument region filled from the input) and files.
pub struct World {
    pub flags: u8,
    pub sim: Arc<SimMemory>,
    pub mem: Arc<dyn AddressSpace>,
    pub files: SimFiles,
}

impl World {
    /// Reads the flags byte and the argument region's bytes from `input`.
    pub fn new(input: &mut Input<'_>) -> World {
        let flags = input.byte().unwrap_or(0);
        let sim = memory(input.blob());
        World {
            flags,
            mem: sim.clone(),
            sim,
            files: files(),
        }
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let engine = crate::engine();
    let World {
        flags,
        sim,
        mem,
        files,
    } = World::new(&mut input);
    let creds = Credentials {
        uid: 1000,
        cap_ipc_lock: flags & 1 != 0,
        cap_sys_resource: flags & 2 != 0,
        memlock_limit: if flags & 4 != 0 { 1 << 20 } else { 64 << 20 },
    };
    let caller = Caller {
        mem: &mem,
        files: &files,
        creds,
    };
    let new_context = |i: usize| {
        let mut ctx = Context::new(engine.shared().clone());
        if i == 2 {
            ctx.set_legacy_vfio_container();
        }
        ctx
    };
    let mut contexts: Vec<Context> = (0..3).map(new_context).collect();
    let mut side_files = Vec::new();
    while let Some(op) = input.byte() {
        match op % 8 {
            0..=4 => {
                let i = input.byte().unwrap_or(0) as usize % contexts.len();
                let request = if op & 0x80 != 0 {
                    input.uint(4).unwrap_or(0) as u32
                } else {
                    input.pick(REQUESTS).unwrap_or(IOMMU_IOAS_ALLOC)
                };
                let at = ARGS + (u64::from(input.byte().unwrap_or(0)) * 64) % ARGS_LEN;
                let _ = sim.poke(at, input.blob());
                // Now and then a pointer that is not the struct's.
                let arg = match op & 0x60 {
                    0x60 => input.uint(8).unwrap_or(0),
                    0x40 => RODATA,
                    _ => at,
                };
                let ctx = &mut contexts[i];
                let _ = ctx.ioctl(&caller, request, Arg::User(arg));
                let _ = ctx.take_side_output();
                // Every IOAS's hole index, where built, still matches its
                // areas (IDs are handed out from 1 and the inputs are short).
                for id in 1..=32 {
                    if let Ok(t) = ctx.ioas(id) {
                        assert!(t.free_space_is_consistent(), "hole index of IOAS {id}");
                    }
                }
                // Side files the call made: closed later, or at the end.
                side_files.extend((100..110).filter(|fd| files_inode(&files, *fd).is_some()));
                side_files.sort_unstable();
                side_files.dedup();
            }
            5 => {
                let at = DATA + (u64::from(input.byte().unwrap_or(0)) * 256) % DATA_LEN;
                let _ = sim.poke(at, input.blob());
            }
            6 => {
                if let Some(fd) = input.pick(&side_files) {
                    if let Some(inode) = files.close_side_file(fd) {
                        for ctx in &mut contexts {
                            ctx.side_file_closed(inode);
                        }
                    }
                    side_files.retain(|&f| f != fd);
                }
            }
            _ => {
                let i = input.byte().unwrap_or(0) as usize % contexts.len();
                contexts[i].close();
                contexts[i] = new_context(i);
            }
        }
    }
    for ctx in &mut contexts {
        ctx.close();
    }
    let left = engine.shared().accounting.mm(mem.id());
    assert_eq!(
        (left.pinned_vm, left.locked_vm),
        (0, 0),
        "pages stay charged after every context closed"
    );
}

fn files_inode(files: &SimFiles, fd: i32) -> Option<u64> {
    use softiommu_engine::memory::CallerFiles;
    files.inode_of(fd).ok()
}
