//! VFIO device files on the built-in machine: an I210 NIC, the I/OAT and
//! DSA models, an SR-IOV port and a multi-function group. Two iommufd
//! contexts (descriptors 5 and 6) can be bound; with the setup flag, the
//! first device starts bound to context 5 and attached to an IOAS that
//! maps the simulated pages at IOVA 1 MiB, so register writes reach DMA
//! at once.
//!
//! Operations (first byte, modulo 8): 0–2 a device ioctl (device, request,
//! struct); 3–4 a region write (device, region, offset, bytes); 5 a region
//! read; 6 an iommufd ioctl (as the `ioctls` target); 7 close a device
//! file and open it again. The device models run on their own threads:
//! the target ends by closing everything, which must stop them.

use crate::ioctls::{World, ARGS, DATA, DATA_LEN, REQUESTS};
use crate::Input;
use softiommu_engine::memory::{CallerFiles, ExportedDmabuf, SimFiles};
use softiommu_engine::vfio::{DeviceFile, SharedContext, VfioFds};
use softiommu_engine::{Arg, Caller, Context, Credentials, Errno};
use softiommu_iommu::GroupId;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::vfio::*;
use std::cell::RefCell;
use std::sync::Arc;
use zerocopy::IntoBytes;

const DEVICES: &[&str] = &[
    "0000:00:04.0",
    "0000:6a:01.0",
    "0000:02:00.0",
    "0000:04:00.0",
    "0000:01:00.0",
    "0000:01:00.1",
];

const DEVICE_REQUESTS: &[u32] = &[
    VFIO_DEVICE_BIND_IOMMUFD,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    VFIO_DEVICE_DETACH_IOMMUFD_PT,
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_DEVICE_SET_IRQS,
    VFIO_DEVICE_RESET,
    VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
    VFIO_DEVICE_PCI_HOT_RESET,
    VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_DETACH_PASID,
];

/// Descriptors 5 and 6 are the two contexts; dma-bufs are side files of
/// the caller (from 100 up), remembered to be forgotten at the end.
struct Fds<'a>(&'a [SharedContext], &'a SimFiles, &'a RefCell<Vec<u64>>);

impl VfioFds for Fds<'_> {
    fn dmabuf_file(
        &self,
        dmabuf: Arc<dyn ExportedDmabuf>,
        _close_on_exec: bool,
    ) -> softiommu_engine::Result<()> {
        let (_, inode) = self.1.create_side_file(u64::MAX)?;
        crate::engine().shared().register_dmabuf(inode, dmabuf);
        self.2.borrow_mut().push(inode);
        Ok(())
    }
    fn iommufd(&self, fd: i32) -> softiommu_engine::Result<SharedContext> {
        match fd {
            5 | 6 => Ok(self.0[(fd - 5) as usize].clone()),
            0..=99 => Err(Errno::EBADFD),
            _ => Err(Errno::EBADF),
        }
    }
    fn vfio_group(&self, _fd: i32) -> softiommu_engine::Result<GroupId> {
        Err(Errno::EBADF)
    }
}

fn lock(ctx: &SharedContext) -> std::sync::MutexGuard<'_, Context> {
    ctx.lock().unwrap_or_else(|e| e.into_inner())
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
    let caller = Caller {
        mem: &mem,
        files: &files,
        creds: Credentials {
            uid: 0,
            cap_ipc_lock: true,
            cap_sys_resource: true,
            memlock_limit: u64::MAX,
        },
    };
    let contexts: Vec<SharedContext> = (0..2)
        .map(|_| Context::new(engine.shared().clone()).into_shared())
        .collect();
    let exported = RefCell::new(Vec::new());
    let open = |name: &str| {
        let topology = engine
            .shared()
            .iommu
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dev = topology.topology().device_by_name(name)?;
        drop(topology);
        engine.vfio().open(dev).ok()
    };
    let mut devices: Vec<Option<DeviceFile>> = DEVICES.iter().map(|n| open(n)).collect();
    if flags & 1 != 0 {
        set_up_dma(
            &caller,
            &contexts,
            devices[usize::from(flags >> 1) % DEVICES.len()].as_mut(),
            &Fds(&contexts, &files, &exported),
        );
    }
    while let Some(op) = input.byte() {
        let d = input.byte().unwrap_or(0) as usize % DEVICES.len();
        match op % 8 {
            0..=2 => {
                let request = input.pick(DEVICE_REQUESTS).unwrap_or(0);
                let _ = sim.poke(ARGS, input.blob());
                if let Some(dev) = devices[d].as_mut() {
                    let _ = dev.ioctl(
                        &caller,
                        request,
                        Arg::User(ARGS),
                        &Fds(&contexts, &files, &exported),
                    );
                }
            }
            3..=5 => {
                let region = u64::from(input.byte().unwrap_or(0) % 10);
                let offset = input.uint(3).unwrap_or(0);
                let at = (region << VFIO_PCI_OFFSET_SHIFT) | offset;
                if let Some(dev) = devices[d].as_ref() {
                    if op % 8 == 5 {
                        let mut buf = vec![0u8; input.byte().unwrap_or(4) as usize];
                        let _ = dev.read(at, &mut buf);
                    } else {
                        let _ = dev.write(at, input.blob());
                    }
                }
            }
            6 => {
                let request = input.pick(REQUESTS).unwrap_or(0);
                let _ = sim.poke(ARGS, input.blob());
                let _ = lock(&contexts[d % 2]).ioctl(&caller, request, Arg::User(ARGS));
            }
            _ => {
                devices[d] = None;
                devices[d] = open(DEVICES[d]);
            }
        }
    }
    devices.clear();
    for ctx in &contexts {
        lock(ctx).close();
    }
    for inode in exported.take() {
        engine.shared().forget_dmabuf(inode);
    }
}

/// Binds `dev` to the first context, maps the simulated pages at IOVA
/// 1 MiB in a new IOAS and attaches the device to it; bus mastering on.
fn set_up_dma(
    caller: &Caller<'_>,
    contexts: &[SharedContext],
    dev: Option<&mut DeviceFile>,
    fds: &Fds<'_>,
) {
    let Some(dev) = dev else { return };
    let mut bind = VfioDeviceBindIommufd {
        argsz: 24,
        iommufd: 5,
        ..Default::default()
    };
    if dev
        .ioctl(
            caller,
            VFIO_DEVICE_BIND_IOMMUFD,
            Arg::Bytes(bind.as_mut_bytes()),
            fds,
        )
        .is_err()
    {
        return;
    }
    let mut ctx = lock(&contexts[0]);
    let mut alloc = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    if ctx
        .ioctl(caller, IOMMU_IOAS_ALLOC, Arg::Bytes(alloc.as_mut_bytes()))
        .is_err()
    {
        return;
    }
    let mut map = IommuIoasMap {
        size: 40,
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: alloc.out_ioas_id,
        user_va: DATA,
        length: DATA_LEN,
        iova: 1 << 20,
        ..Default::default()
    };
    let _ = ctx.ioctl(caller, IOMMU_IOAS_MAP, Arg::Bytes(map.as_mut_bytes()));
    drop(ctx);
    let mut attach = VfioDeviceAttachIommufdPt {
        argsz: 16,
        pt_id: alloc.out_ioas_id,
        ..Default::default()
    };
    let _ = dev.ioctl(
        caller,
        VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        Arg::Bytes(attach.as_mut_bytes()),
        fds,
    );
    // PCI_COMMAND: memory space and bus master.
    let _ = dev.write(
        (u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << VFIO_PCI_OFFSET_SHIFT) | 4,
        &[0x06, 0x00],
    );
}
