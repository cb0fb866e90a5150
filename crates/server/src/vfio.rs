//! The VFIO files the server serves: device files (`/dev/vfio/devices/*`),
//! group files (`/dev/vfio/<n>`) and the dma-bufs device files export, each
//! a socket whose program end is the file, as a context's is. Their ioctls, reads, writes and BAR mappings
//! arrive on the program's call channels like a context's.

use super::{lock, remove_entry, CallFiles, State};
use softiommu_engine::memory::CallerFiles;
use softiommu_engine::memory::{EventSignal, ExportedDmabuf, ProcessHandle};
use softiommu_engine::vfio::{DeviceFile, GroupFile, GroupReply, SharedContext, VfioFds};
use softiommu_engine::{Arg, Caller, Errno};
use softiommu_iommu::{DeviceId, GroupId};
use softiommu_proto::{Hello, Reply, HELLO_VFIO_DEVICE, HELLO_VFIO_GROUP};
use softiommu_uapi::vfio::VFIO_PCI_OFFSET_SHIFT;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use zerocopy::IntoBytes;

/// The most one `pread`/`pwrite` of a device file moves; a longer one
/// returns this many bytes, as a short read or write may.
const MAX_TRANSFER: u64 = 1 << 20;

/// A group file's group.
fn group_of(file: &VfioFile) -> Option<GroupId> {
    match file {
        VfioFile::Group(g) => Some(g.group()),
        _ => None,
    }
}

/// What a caller's descriptor numbers open, for a device file's ioctl.
struct CallerFds<'a> {
    state: &'a Arc<State>,
    files: &'a CallFiles,
    /// The program's end of a dma-buf the ioctl exported, to go with the
    /// reply, and whether it closes on `exec`.
    exported: std::cell::RefCell<Option<(OwnedFd, bool)>>,
}

impl VfioFds for CallerFds<'_> {
    fn iommufd(&self, fd: i32) -> Result<SharedContext, Errno> {
        self.state.iommufd_of(self.files, fd)
    }

    fn vfio_group(&self, fd: i32) -> Result<GroupId, Errno> {
        let ino = self.files.inode_of(fd).map_err(|_| Errno::EBADF)?;
        self.state
            .vfio_file(ino)
            .and_then(|h| h.group)
            .ok_or(Errno::EINVAL)
    }

    fn dmabuf_file(
        &self,
        dmabuf: Arc<dyn ExportedDmabuf>,
        close_on_exec: bool,
    ) -> Result<(), Errno> {
        // Each served file costs a descriptor and a thread, as a side
        // file does: past the same limit, EMFILE.
        if lock(&self.state.vfio_files).len() >= self.state.limits.max_side_files {
            return Err(Errno(libc::EMFILE));
        }
        let (program_end, ino) = self.state.serve_new_vfio_file(VfioFile::Dmabuf)?;
        self.state.engine.shared().register_dmabuf(ino, dmabuf);
        *self.exported.borrow_mut() = Some((program_end, close_on_exec));
        Ok(())
    }
}

/// A VFIO file a program holds.
#[derive(Debug)]
pub(crate) enum VfioFile {
    Device(DeviceFile),
    Group(GroupFile),
    /// A dma-buf a device file exported: importers find it in the engine
    /// by this file's inode while the file is open.
    Dmabuf,
    /// Released (the program's last close): dropping the file unbinds it.
    Closed,
}

/// One VFIO file and the socket whose end-of-file is its last close. As for
/// contexts, the entry stays in the table until its release has finished.
#[derive(Debug)]
pub(crate) struct HostedVfio {
    pub(crate) file: Mutex<VfioFile>,
    pub(crate) socket: UnixStream,
    /// A group file's group, known without locking `file` (a device
    /// file's ioctl may name a group file while its own is locked).
    pub(crate) group: Option<GroupId>,
}

impl State {
    /// The VFIO file whose program end has inode `ino` (the table's lock is
    /// released on return).
    pub(crate) fn vfio_file(&self, ino: u64) -> Option<Arc<HostedVfio>> {
        lock(&self.vfio_files).get(&ino).cloned()
    }

    /// The machine device behind `/dev/vfio/devices/vfio<minor>`, if VFIO
    /// has it (a kernel driver's function is not).
    fn vfio_cdev(&self, minor: u32) -> Option<DeviceId> {
        let dev = self.engine.vfio().device_by_minor(minor)?;
        let core = lock(&self.engine.shared().iommu);
        core.topology()
            .device(dev)
            .kernel_driver
            .is_none()
            .then_some(dev)
    }

    /// Releases a VFIO file: drops it (a device file unbinds, a group file
    /// gives its group back), then leaves the table.
    pub(crate) fn release_vfio(&self, ino: u64) {
        let Some(h) = lock(&self.vfio_files).get(&ino).cloned() else {
            return;
        };
        let file = std::mem::replace(&mut *lock(&h.file), VfioFile::Closed);
        if matches!(file, VfioFile::Dmabuf) {
            self.engine.shared().forget_dmabuf(ino);
        }
        drop(file);
        remove_entry(&self.vfio_files, ino, &h);
    }

    /// The context a descriptor of the caller opens: `EBADF` for no
    /// descriptor, `EBADFD` for one that is no iommufd (a `/dev/iommu` or a
    /// `/dev/vfio/vfio` container).
    fn iommufd_of(&self, files: &CallFiles, fd: i32) -> Result<SharedContext, Errno> {
        let ino = files.inode_of(fd).map_err(|_| Errno::EBADF)?;
        lock(&self.contexts)
            .get(&ino)
            .map(|h| h.context.clone())
            .ok_or(Errno::EBADFD)
    }

    /// A VFIO file's ioctl. A group's `GET_DEVICE_FD` gives a device file,
    /// and a device's `DMA_BUF` feature a dma-buf: its program end comes
    /// back to go with the reply (its server end is already served), with
    /// whether it closes on `exec`.
    pub(crate) fn vfio_ioctl(
        self: &Arc<Self>,
        h: &HostedVfio,
        caller: &Caller<'_>,
        files: &CallFiles,
        request: u32,
        arg: u64,
    ) -> Result<(i64, Option<(OwnedFd, bool)>), Errno> {
        let iommufd_of = |fd: i32| self.iommufd_of(files, fd);
        let fds = CallerFds {
            state: self,
            files,
            exported: std::cell::RefCell::new(None),
        };
        let mut file = lock(&h.file);
        match &mut *file {
            VfioFile::Device(d) => {
                let value = d.ioctl(caller, request, Arg::User(arg), &fds)?;
                Ok((value, fds.exported.take()))
            }
            VfioFile::Group(g) => match g.ioctl(caller, request, Arg::User(arg), &iommufd_of)? {
                GroupReply::Value(v) => Ok((v, None)),
                GroupReply::Device(device) => {
                    drop(file);
                    let (program_end, _) = self.serve_new_vfio_file(VfioFile::Device(device))?;
                    Ok((0, Some((program_end, true))))
                }
            },
            // Linux's dma-buf file answers its own ioctls only.
            VfioFile::Dmabuf => Err(Errno::ENOTTY),
            VfioFile::Closed => Err(Errno::EBADF),
        }
    }

    /// Serves `file` on a new socket pair; returns the program's end and
    /// its inode.
    fn serve_new_vfio_file(self: &Arc<Self>, file: VfioFile) -> Result<(OwnedFd, u64), Errno> {
        let (program_end, server_end) = UnixStream::pair().map_err(|_| Errno::ENOMEM)?;
        let ino = rustix::fs::fstat(&program_end)
            .map_err(|_| Errno::ENOMEM)?
            .st_ino;
        let watch = server_end.try_clone().map_err(|_| Errno::ENOMEM)?;
        let hosted = Arc::new(HostedVfio {
            group: group_of(&file),
            file: Mutex::new(file),
            socket: server_end,
        });
        lock(&self.vfio_files).insert(ino, hosted);
        let state = self.clone();
        let spawned = super::spawn_server_thread(move || {
            wait_for_eof(watch);
            state.release_vfio(ino);
        });
        if spawned.is_err() {
            self.release_vfio(ino);
            return Err(Errno::ENOMEM);
        }
        Ok((program_end.into(), ino))
    }

    /// `pread` (`write` false) or `pwrite` of a device file: `len` bytes at
    /// `offset`, to or from the caller's buffer at `buf`.
    pub(crate) fn vfio_rw(
        &self,
        h: &HostedVfio,
        caller: &Caller<'_>,
        buf: u64,
        len: u64,
        offset: u64,
        write: bool,
    ) -> Result<i64, Errno> {
        let file = lock(&h.file);
        let VfioFile::Device(d) = &*file else {
            return Err(Errno::EINVAL);
        };
        let n = len.min(MAX_TRANSFER) as usize;
        let mut bytes = vec![0u8; n];
        if write {
            caller.mem.read(buf, &mut bytes)?;
            d.write(offset, &bytes)?;
        } else {
            d.read(offset, &mut bytes)?;
            caller.mem.write(buf, &bytes)?;
        }
        Ok(n as i64)
    }

    /// The memory a mapping of a device file at `offset` shows (vfio-pci's
    /// rules: shared, a mappable BAR, inside it) and where in that memory
    /// the mapping starts.
    pub(crate) fn vfio_mmap(
        &self,
        h: &HostedVfio,
        offset: u64,
        len: u64,
        flags: u32,
    ) -> Result<(OwnedFd, u64, (u32, u32)), Errno> {
        let file = lock(&h.file);
        let d = match &*file {
            VfioFile::Device(d) => d,
            // Linux: an exporter without `mmap` (vfio-pci's).
            VfioFile::Dmabuf => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENODEV),
        };
        if flags & libc::MAP_SHARED as u32 == 0 {
            return Err(Errno::EINVAL);
        }
        let index = offset >> VFIO_PCI_OFFSET_SHIFT;
        let start = offset & ((1 << VFIO_PCI_OFFSET_SHIFT) - 1);
        let function = lock(d.function());
        let index = u32::try_from(index).map_err(|_| Errno::EINVAL)?;
        if index > 5 || !function.bar_mmap(index) {
            return Err(Errno::EINVAL);
        }
        let size = function.bar_size(index);
        if len == 0
            || start
                .checked_add(len)
                .is_none_or(|end| end > size.max(4096))
        {
            return Err(Errno::EINVAL);
        }
        let memory = function.bar_memory(index).ok_or(Errno::EINVAL)?;
        let fd = memory
            .fd()
            .try_clone_to_owned()
            .map_err(|_| Errno::ENOMEM)?;
        Ok((
            fd,
            start,
            trap_in_mapping(function.trapped(index), start, len),
        ))
    }
}

/// The pages of a mapping of `[start, start + len)` of a BAR that hold
/// the model's `trapped` bytes, relative to the mapping's start: `(offset,
/// length)`, `(0, 0)` for none.
fn trap_in_mapping(trapped: std::ops::Range<u64>, start: u64, len: u64) -> (u32, u32) {
    const PAGE: u64 = 4096;
    let first = (trapped.start & !(PAGE - 1)).max(start);
    let end = trapped
        .end
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .min(start + len);
    if trapped.is_empty() || first >= end {
        return (0, 0);
    }
    let offset = first - start;
    // A mapping starts on a page; keep the trapped part whole pages of it.
    let offset = offset & !(PAGE - 1);
    let length = (end - start - offset).div_ceil(PAGE) * PAGE;
    (offset as u32, length as u32)
}

/// Serves a VFIO file a program opened: the hello named it; the reply says
/// whether it exists; the file lives until the program's last close.
pub(crate) fn serve_vfio_open(state: Arc<State>, stream: UnixStream, hello: &Hello) {
    let Ok(mut watch) = stream.try_clone() else {
        return;
    };
    let vfio = state.engine.vfio().clone();
    let opened = match hello.kind {
        HELLO_VFIO_DEVICE => state
            .vfio_cdev(hello.index)
            .ok_or(Errno::ENOENT)
            .and_then(|dev| vfio.open(dev))
            .map(VfioFile::Device),
        HELLO_VFIO_GROUP => vfio
            .open_group(state.engine.shared(), GroupId(hello.index))
            .map_err(|e| if e == Errno::ENODEV { Errno::ENOENT } else { e })
            .map(VfioFile::Group),
        _ => Err(Errno::EINVAL),
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            let reply = Reply {
                result: -1,
                errno: e.0,
                ..Reply::default()
            };
            let _ = watch.write_all(reply.as_bytes());
            return;
        }
    };
    lock(&state.vfio_files).insert(
        hello.ino,
        Arc::new(HostedVfio {
            group: group_of(&file),
            file: Mutex::new(file),
            socket: stream,
        }),
    );
    if watch.write_all(Reply::default().as_bytes()).is_err() {
        state.release_vfio(hello.ino);
        return;
    }
    wait_for_eof(watch);
    state.release_vfio(hello.ino);
}

/// Returns at the program's last close of the socket.
fn wait_for_eof(mut watch: UnixStream) {
    let mut sink = [0u8; 64];
    while let Ok(n) = watch.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// An eventfd of a program, taken over with `pidfd_getfd` (the same
/// permission the server already needs to read the program's memory).
#[derive(Debug)]
pub(crate) struct Eventfd(OwnedFd);

impl EventSignal for Eventfd {
    fn signal(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    fn wait(&self, timeout: std::time::Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
            return false;
        }
        let mut count = [0u8; 8];
        matches!(rustix::io::read(&self.0, &mut count), Ok(8))
    }
}

/// The eventfd behind descriptor `fd` of `process`: `EBADF` for no
/// descriptor, `EINVAL` for one that is no eventfd.
pub(crate) fn take_eventfd(
    process: &ProcessHandle,
    fd: i32,
) -> Result<Arc<dyn EventSignal>, Errno> {
    use rustix::process::{pidfd_getfd, PidfdGetfdFlags};
    let pidfd = process.pidfd().ok_or(Errno::EBADF)?;
    let theirs = pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()).map_err(|_| Errno::EBADF)?;
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&theirs.as_fd())
    ))
    .map_err(|_| Errno::EBADF)?;
    if link.to_str() != Some("anon_inode:[eventfd]") {
        return Err(Errno::EINVAL);
    }
    Ok(Arc::new(Eventfd(theirs)))
}
