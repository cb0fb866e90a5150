//! The VFIO type1 container ioctls served on an iommufd context (Linux
//! `vfio_compat.c`). They act on the compatibility IOAS chosen with
//! `IOMMU_VFIO_IOAS` (`ENODEV` without one). Type1 (v1) may unmap inside a
//! mapping, so selecting it disables large pages and unmaps cut areas first.

use crate::context::{Caller, Context, MapArgs};
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::ioas::Prot;
use crate::memory::PAGE_SIZE;
use crate::sync::Locked;
use softiommu_uapi::vfio::*;
use zerocopy::{FromBytes, IntoBytes};

/// `struct vfio_iommu_type1_info` up to and including `iova_pgsizes`.
const INFO_MINSZ: usize = 16;
const MAP_MINSZ: usize = 32;
const UNMAP_MINSZ: usize = 24;
const INFO_SIZE: usize = 24;
const DMA_AVAIL_CAP_SIZE: u64 = 12;
const IOVA_CAP_HEADER_SIZE: u64 = 16;
const IOVA_RANGE_SIZE: u64 = 16;

impl Context {
    pub(crate) fn vfio_ioctl(
        &mut self,
        caller: &Caller<'_>,
        request: u32,
        mut arg: Arg<'_>,
    ) -> Result<i64> {
        match request {
            VFIO_GET_API_VERSION => Ok(VFIO_API_VERSION),
            VFIO_SET_IOMMU => self.vfio_set_iommu(arg.value()).map(|()| 0),
            VFIO_CHECK_EXTENSION => self.vfio_check_extension(arg.value()),
            VFIO_IOMMU_GET_INFO => self.vfio_get_info(caller, &mut arg).map(|()| 0),
            VFIO_IOMMU_MAP_DMA => self.vfio_map_dma(caller, &arg).map(|()| 0),
            VFIO_IOMMU_UNMAP_DMA => self.vfio_unmap_dma(caller, &mut arg).map(|()| 0),
            _ => Err(Errno::ENOTTY),
        }
    }

    fn vfio_check_extension(&self, ext: u64) -> Result<i64> {
        match ext {
            VFIO_TYPE1_IOMMU | VFIO_TYPE1V2_IOMMU | VFIO_UNMAP_ALL => Ok(1),
            // Every driver of this machine enforces cache coherency, so the
            // compatibility IOAS's domains do (ENODEV until it exists).
            VFIO_DMA_CC_IOMMU => self.compat_ioas().map(|_| 1),
            _ => Ok(0),
        }
    }

    fn vfio_set_iommu(&mut self, kind: u64) -> Result<()> {
        if kind != VFIO_TYPE1_IOMMU && kind != VFIO_TYPE1V2_IOMMU {
            return Err(Errno::EINVAL);
        }
        let id = self.compat_ioas()?;
        if kind == VFIO_TYPE1_IOMMU {
            self.ioas_mut(id)?.disable_large_pages()?;
        }
        Ok(())
    }

    fn vfio_get_info(&mut self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let mut head = [0u8; INFO_SIZE];
        arg.read(caller, 0, &mut head[..INFO_MINSZ])?;
        let (mut info, _) =
            VfioIommuType1Info::read_from_prefix(&head[..]).map_err(|_| Errno::EFAULT)?;
        let argsz = info.argsz as u64;
        if (argsz as usize) < INFO_MINSZ {
            return Err(Errno::EINVAL);
        }
        let minsz = (argsz as usize).min(INFO_SIZE);
        let id = self.compat_ioas()?;
        let iopt = self.ioas(id)?;
        // The sizes every domain accepts, and never below PAGE_SIZE (Linux
        // `iommufd_get_pagesizes`).
        let mut pgsizes = u64::MAX;
        for d in iopt.domains() {
            pgsizes &= d.table.locked().pgsize_bitmap();
        }
        if pgsizes & (PAGE_SIZE - 1) != 0 {
            pgsizes &= !(PAGE_SIZE - 1);
            pgsizes |= PAGE_SIZE;
        }
        info.flags = VFIO_IOMMU_INFO_PGSIZES;
        info.iova_pgsizes = pgsizes.max(iopt.iova_alignment());
        info.cap_offset = 0;

        let ranges = iopt.usable_ranges();
        let mut total = INFO_SIZE as u64;
        let mut last_cap: Option<u64> = None;
        // Capability 1: DMA_AVAIL.
        let avail_at = total;
        if argsz > total && argsz - total >= DMA_AVAIL_CAP_SIZE {
            let cap = VfioIommuType1InfoDmaAvail {
                header: VfioInfoCapHeader {
                    id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
                    version: 1,
                    next: 0,
                },
                avail: u32::MAX,
            };
            arg.write(caller, avail_at, cap.as_bytes())?;
        }
        last_cap = last_cap.or(Some(avail_at));
        total += DMA_AVAIL_CAP_SIZE;
        // Capability 2: IOVA_RANGE.
        let iova_at = total;
        let avail = argsz.saturating_sub(total);
        let iova_size = IOVA_CAP_HEADER_SIZE + IOVA_RANGE_SIZE * ranges.len() as u64;
        for (i, &(start, last)) in ranges.iter().enumerate() {
            if avail >= IOVA_CAP_HEADER_SIZE + IOVA_RANGE_SIZE * (i as u64 + 1) {
                let r = VfioIovaRange { start, end: last };
                arg.write(
                    caller,
                    iova_at + IOVA_CAP_HEADER_SIZE + IOVA_RANGE_SIZE * i as u64,
                    r.as_bytes(),
                )?;
            }
        }
        if avail >= iova_size {
            let cap = VfioIommuType1InfoCapIovaRange {
                header: VfioInfoCapHeader {
                    id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
                    version: 1,
                    next: 0,
                },
                nr_iovas: ranges.len() as u32,
                reserved: 0,
            };
            arg.write(caller, iova_at, cap.as_bytes())?;
        }
        if let Some(prev) = last_cap {
            if argsz >= total {
                // Link the previous capability to this one.
                arg.write(caller, prev + 4, &(total as u32).to_ne_bytes())?;
            }
        }
        total += iova_size;
        if argsz >= total {
            info.cap_offset = INFO_SIZE as u32;
        }
        info.argsz = total as u32;
        info.flags |= VFIO_IOMMU_INFO_CAPS;
        arg.write(caller, 0, &info.as_bytes()[..minsz])
    }

    fn vfio_map_dma(&mut self, caller: &Caller<'_>, arg: &Arg<'_>) -> Result<()> {
        let mut raw = [0u8; MAP_MINSZ];
        arg.read(caller, 0, &mut raw)?;
        let map = VfioIommuType1DmaMap::read_from_bytes(&raw[..]).map_err(|_| Errno::EFAULT)?;
        if (map.argsz as usize) < MAP_MINSZ
            || map.flags & !(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) != 0
        {
            return Err(Errno::EINVAL);
        }
        let prot = Prot {
            read: map.flags & VFIO_DMA_MAP_FLAG_READ != 0,
            write: map.flags & VFIO_DMA_MAP_FLAG_WRITE != 0,
        };
        let id = self.compat_ioas()?;
        self.ioas_map(
            caller,
            id,
            map.vaddr,
            MapArgs {
                iova: Some(map.iova),
                length: map.size,
                prot,
            },
        )
        .map(|_| ())
    }

    fn vfio_unmap_dma(&mut self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let mut raw = [0u8; UNMAP_MINSZ];
        arg.read(caller, 0, &mut raw)?;
        let mut unmap =
            VfioIommuType1DmaUnmap::read_from_bytes(&raw[..]).map_err(|_| Errno::EFAULT)?;
        if (unmap.argsz as usize) < UNMAP_MINSZ || unmap.flags & !VFIO_DMA_UNMAP_FLAG_ALL != 0 {
            return Err(Errno::EINVAL);
        }
        let id = self.compat_ioas()?;
        let iopt = self.ioas_mut(id)?;
        let outcome = if unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL != 0 {
            if unmap.iova != 0 || unmap.size != 0 {
                return Err(Errno::EINVAL);
            }
            iopt.unmap_all()
        } else {
            if iopt.large_pages_disabled() {
                // Cut at the range's last byte and just before its first, so
                // the unmap covers whole areas; a failed cut writes nothing back.
                let cuts = [
                    unmap.iova.wrapping_add(unmap.size).wrapping_sub(1),
                    unmap.iova.wrapping_sub(1),
                ];
                iopt.cut(if unmap.iova != 0 {
                    &cuts[..]
                } else {
                    &cuts[..1]
                })?;
            }
            match iopt.unmap(unmap.iova, unmap.size) {
                // Type1 unmaps of an empty range succeed (Linux's
                // iopt_unmap_iova_range starts from success); a partly covered
                // area still fails.
                Err(Errno::ENOENT) if !iopt.has_area_in(unmap.iova, unmap.size) => Ok(0),
                other => other,
            }
        };
        unmap.size = *outcome.as_ref().unwrap_or(&0);
        arg.write(caller, 0, unmap.as_bytes())?;
        outcome.map(|_| ())
    }
}
