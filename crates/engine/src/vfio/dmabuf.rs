//! `VFIO_DEVICE_FEATURE_DMA_BUF` (Linux `vfio_pci_dmabuf.c`): ranges of a
//! memory BAR exported as a dma-buf, which `IOMMU_IOAS_MAP_FILE` maps so
//! that another device's DMA reaches the BAR (peer to peer).
//!
//! A dma-buf is revoked while the function does not decode memory (the
//! command register's Memory bit off, D3hot), when it enters runtime low
//! power, across every reset, and for good once the function's user closes it. An
//! importer's mappings leave its domains at the revoke and never come
//! back (see [`crate::memory::dmabuf`]); a restore only lets new maps in.
//!
//! Lock order: a function, then its dma-buf's state (a leaf); importers
//! are told of a revoke with the function locked and the state not.
//!
//! Deviations: the file is a socket, not an anonymous dma-buf inode; it
//! answers no dma-buf ioctl (`ENOTTY`) and cannot be mapped (`EINVAL`, as
//! Linux for an exporter without `mmap`).

use super::{DeviceFile, Function, VfioFds};
use crate::context::Caller;
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::memory::{DmabufImporter, ExportedDmabuf, FileBacking, MemFile, PAGE_SIZE};
use crate::sync::Locked;
use std::sync::{Arc, Mutex, Weak};

/// Bytes of `struct vfio_device_feature_dma_buf` before its ranges.
const HEAD: usize = 16;
/// Bytes of one `struct vfio_region_dma_range`.
const RANGE: usize = 16;
/// The largest range array Linux copies in (`memdup_array_user` stops at
/// the largest kmalloc, 4 MiB): past it `ENOMEM`.
const MAX_RANGES_BYTES: usize = 4 << 20;
/// `O_CLOEXEC` in `open_flags` (Linux's generic value).
const O_CLOEXEC: u32 = 0o2_000_000;
/// A dma-buf's total length may not reach this bit (Linux keeps it for
/// `DMA_IOVA_USE_SWIOTLB`).
const LENGTH_LIMIT: u64 = 1 << 63;

/// One exported dma-buf: ranges of one BAR's memory, back to back.
#[derive(Debug)]
pub struct VfioDmabuf {
    /// Its identity as a file (areas that map it name it by this).
    id: u64,
    bar: Arc<MemFile>,
    /// `(offset, length)` in the BAR, in the order the program gave them.
    ranges: Vec<(u64, u64)>,
    size: u64,
    state: Mutex<ExportState>,
}

#[derive(Debug)]
struct ExportState {
    revoked: bool,
    /// The function's user closed it: revoked for good.
    closed: bool,
    /// Who mapped it since it was made (each told of every revoke).
    importers: Vec<Weak<dyn DmabufImporter>>,
}

impl VfioDmabuf {
    /// Revokes it (`closed`: for good), and tells every importer.
    fn revoke(&self, closed: bool) {
        let importers = {
            let mut state = self.state.locked();
            let was = state.revoked;
            state.revoked = true;
            state.closed |= closed;
            state.importers.retain(|i| i.strong_count() > 0);
            if was {
                return;
            }
            state.importers.clone()
        };
        for importer in importers.iter().filter_map(Weak::upgrade) {
            importer.revoke(self.id);
        }
    }

    /// Lets new maps of it in again, unless the function was closed.
    fn restore(&self) {
        let mut state = self.state.locked();
        if !state.closed {
            state.revoked = false;
        }
    }

    /// Where byte `offset` of the dma-buf lies in the BAR, and how many
    /// bytes from there stay in the same range.
    fn locate(&self, mut offset: u64) -> Option<(u64, u64)> {
        for &(start, length) in &self.ranges {
            if offset < length {
                return Some((start + offset, length - offset));
            }
            offset -= length;
        }
        None
    }

    /// Calls `f` with each BAR offset and the part of a `len`-byte buffer
    /// at dma-buf offset `offset` that lies there, range by range.
    fn pieces(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0;
        while done < len {
            let (at, left) = offset
                .checked_add(done as u64)
                .and_then(|o| self.locate(o))
                .ok_or(Errno::EFAULT)?;
            let n = (len - done).min(usize::try_from(left).unwrap_or(usize::MAX));
            f(at, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    fn check_live(&self) -> Result<()> {
        if self.state.locked().revoked {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }
}

impl ExportedDmabuf for VfioDmabuf {
    fn size(&self) -> u64 {
        self.size
    }

    fn import(self: Arc<Self>, importer: Weak<dyn DmabufImporter>) -> Result<Arc<dyn FileBacking>> {
        // Linux: the exporter refuses an attach once revoked, then
        // `vfio_pci_dma_buf_iommufd_map` maps one range only.
        {
            let mut state = self.state.locked();
            if state.revoked {
                return Err(Errno::ENODEV);
            }
            if self.ranges.len() != 1 {
                return Err(Errno::EOPNOTSUPP);
            }
            state.importers.retain(|i| i.strong_count() > 0);
            if !state.importers.iter().any(|i| i.ptr_eq(&importer)) {
                state.importers.push(importer);
            }
        }
        Ok(self)
    }
}

/// The BAR memory it stands for, as importers read and write it (a device
/// DMA that reaches it); `EFAULT` while revoked.
impl FileBacking for VfioDmabuf {
    fn id(&self) -> u64 {
        self.id
    }

    fn size(&self) -> Result<u64> {
        Ok(self.size)
    }

    fn writable(&self) -> bool {
        true
    }

    fn is_dmabuf(&self) -> bool {
        true
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_live()?;
        self.pieces(offset, buf.len(), |at, range| {
            self.bar.read_at(at, &mut buf[range])
        })
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_live()?;
        self.pieces(offset, buf.len(), |at, range| {
            self.bar.write_at(at, &buf[range])
        })
    }
}

impl Function {
    /// Whether the function decodes memory as vfio-pci sees it
    /// (`__vfio_pci_memory_enabled`): the Memory bit on, in D0-D2.
    fn decodes_memory(&self) -> bool {
        self.config.memory_enabled() && self.config.power_state() < 3
    }

    /// Revokes every dma-buf, whatever the function's state (runtime low
    /// power's entry).
    pub(crate) fn revoke_dmabufs(&mut self) {
        self.dmabufs.retain(|d| d.strong_count() > 0);
        for dmabuf in self.dmabufs.iter().filter_map(Weak::upgrade) {
            dmabuf.revoke(false);
        }
    }

    /// Brings its dma-bufs in line with its state (Linux
    /// `vfio_pci_dma_buf_move`): revoked across a reset (`reset`) and
    /// while memory is not decoded, live otherwise.
    pub(crate) fn sync_dmabufs(&mut self, reset: bool) {
        self.dmabufs.retain(|d| d.strong_count() > 0);
        if self.dmabufs.is_empty() {
            return;
        }
        let live = self.decodes_memory();
        for dmabuf in self.dmabufs.iter().filter_map(Weak::upgrade) {
            if reset || !live {
                dmabuf.revoke(false);
            }
            if live {
                dmabuf.restore();
            }
        }
    }

    /// Its user closed it: every dma-buf is revoked for good (Linux
    /// `vfio_pci_dma_buf_cleanup`).
    pub(crate) fn close_dmabufs(&mut self) {
        for dmabuf in self.dmabufs.drain(..).filter_map(|d| d.upgrade()) {
            dmabuf.revoke(true);
        }
    }
}

impl DeviceFile {
    /// `VFIO_DEVICE_FEATURE_DMA_BUF` with `GET`, after the feature's own
    /// checks: reads the request at `at` in the argument, makes the
    /// dma-buf and has the transport give the caller its file.
    pub(super) fn export_dmabuf(
        &self,
        caller: &Caller<'_>,
        arg: &Arg<'_>,
        at: u64,
        fds: &dyn VfioFds,
    ) -> Result<()> {
        let mut head = [0u8; HEAD];
        arg.read(caller, at, &mut head)?;
        let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (region, open_flags, flags, count) = (word(0), word(4), word(8), word(12));
        if count == 0 || flags != 0 {
            return Err(Errno::EINVAL);
        }
        if region > 5 || self.function().locked().bar_size(region) == 0 {
            return Err(Errno::ENODEV);
        }
        let bytes = count as usize * RANGE;
        if bytes > MAX_RANGES_BYTES {
            return Err(Errno::ENOMEM);
        }
        let mut raw = vec![0u8; bytes];
        arg.read(caller, at + HEAD as u64, &mut raw)?;
        let ranges: Vec<(u64, u64)> = raw
            .chunks_exact(RANGE)
            .map(|r| {
                let offset = u64::from_ne_bytes(r[..8].try_into().unwrap_or_default());
                let length = u64::from_ne_bytes(r[8..].try_into().unwrap_or_default());
                (offset, length)
            })
            .collect();
        // Every range is checked for shape before any against the BAR.
        let mut size = 0u64;
        for &(offset, length) in &ranges {
            if length == 0 || offset % PAGE_SIZE != 0 || length % PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            size = size.checked_add(length).ok_or(Errno::EINVAL)?;
        }
        if size >= LENGTH_LIMIT {
            return Err(Errno::EINVAL);
        }
        let mut function = self.function().locked();
        // Peer-to-peer memory is a memory BAR's.
        if !function.bar_mmap(region) {
            return Err(Errno::EINVAL);
        }
        let bar_size = function.bar_size(region);
        for &(offset, length) in &ranges {
            let end = offset.checked_add(length).ok_or(Errno::EOVERFLOW)?;
            if end > bar_size {
                return Err(Errno::EINVAL);
            }
        }
        let bar = function.bar_memory(region).ok_or(Errno::ENOMEM)?.clone();
        let revoked = !function.decodes_memory();
        let dmabuf = Arc::new(VfioDmabuf {
            id: crate::memory::new_space_id(),
            bar,
            ranges,
            size,
            state: Mutex::new(ExportState {
                revoked,
                closed: false,
                importers: Vec::new(),
            }),
        });
        // Of `open_flags` only `O_CLOEXEC` means anything to a socket.
        fds.dmabuf_file(dmabuf.clone(), open_flags & O_CLOEXEC != 0)?;
        function.dmabufs.push(Arc::downgrade(&dmabuf));
        Ok(())
    }
}
