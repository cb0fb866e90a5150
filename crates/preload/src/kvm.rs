//! The KVM VFIO pseudo device (Linux `virt/kvm/vfio.c`): a VMM registers
//! each VFIO group or device file with it (`KVM_SET_DEVICE_ATTR`, group
//! `KVM_DEV_VFIO_FILE`, `KVM_DEV_VFIO_FILE_ADD` / `_DEL`, `addr` pointing at
//! the descriptor number). KVM refuses files that are not the kernel's VFIO
//! files, which ours are not, so for a served VFIO file on a real
//! `kvm-vfio` device the shim answers as KVM would: a file added twice is
//! `EEXIST`, one deleted that was not added `ENOENT`. Everything else — real
//! VFIO files, other attributes, other devices — goes to the kernel.
//!
//! What is not modelled: KVM uses the registration to tell the VFIO driver
//! its VM (for devices that need it) and to keep the file referenced until
//! deletion; our VFIO files need neither, and their last close releases them
//! as usual.

use libc::c_int;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `KVM_SET_DEVICE_ATTR`: `_IOW(KVMIO, 0xe1, struct kvm_device_attr)`.
pub(crate) const KVM_SET_DEVICE_ATTR: libc::c_ulong = 0x4018_aee1;
/// `KVM_DEV_VFIO_FILE` (formerly `KVM_DEV_VFIO_GROUP`).
const KVM_DEV_VFIO_FILE: u32 = 1;
const KVM_DEV_VFIO_FILE_ADD: u64 = 1;
const KVM_DEV_VFIO_FILE_DEL: u64 = 2;

/// `struct kvm_device_attr`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, zerocopy::FromBytes, zerocopy::KnownLayout,
)]
pub(crate) struct KvmDeviceAttr {
    pub flags: u32,
    pub group: u32,
    pub attr: u64,
    pub addr: u64,
}

/// What an attribute asks of the VFIO pseudo device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileVerb {
    Add,
    Del,
}

impl FileVerb {
    /// The verb of `attr`, when it adds or deletes a file.
    pub(crate) fn of(attr: &KvmDeviceAttr) -> Option<FileVerb> {
        match (attr.group, attr.attr) {
            (KVM_DEV_VFIO_FILE, KVM_DEV_VFIO_FILE_ADD) => Some(FileVerb::Add),
            (KVM_DEV_VFIO_FILE, KVM_DEV_VFIO_FILE_DEL) => Some(FileVerb::Del),
            _ => None,
        }
    }
}

/// Served VFIO files registered with a `kvm-vfio` descriptor, as
/// (descriptor, file inode).
#[derive(Debug, Default)]
pub(crate) struct Registry(BTreeSet<(c_int, u64)>);

impl Registry {
    /// Adds or deletes file `ino` on device `kvm_fd`: `Err(errno)` as KVM.
    pub(crate) fn apply(&mut self, kvm_fd: c_int, ino: u64, verb: FileVerb) -> Result<(), c_int> {
        match verb {
            FileVerb::Add if self.0.insert((kvm_fd, ino)) => Ok(()),
            FileVerb::Add => Err(libc::EEXIST),
            FileVerb::Del if self.0.remove(&(kvm_fd, ino)) => Ok(()),
            FileVerb::Del => Err(libc::ENOENT),
        }
    }

    /// Forgets device `kvm_fd` (its close).
    pub(crate) fn forget(&mut self, kvm_fd: c_int) {
        self.0.retain(|&(fd, _)| fd != kvm_fd);
    }
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
/// Whether `REGISTRY` may hold anything: closes skip the lock otherwise.
static ANY: AtomicBool = AtomicBool::new(false);

/// Registers or unregisters file `ino` on `kvm_fd`.
pub(crate) fn apply(kvm_fd: c_int, ino: u64, verb: FileVerb) -> Result<(), c_int> {
    ANY.store(true, Ordering::Release);
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .apply(kvm_fd, ino, verb)
}

/// Forgets what `fd` registered, if it was a `kvm-vfio` device.
pub(crate) fn forget(fd: c_int) {
    if ANY.load(Ordering::Acquire) {
        if let Some(r) = REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            r.forget(fd);
        }
    }
}

/// Whether `fd` is KVM's VFIO pseudo device (its anonymous inode's name).
pub(crate) fn is_kvm_vfio(fd: c_int) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:kvm-vfio")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_add_and_del_are_ours() {
        let attr = |group, attr| KvmDeviceAttr {
            group,
            attr,
            ..Default::default()
        };
        assert_eq!(FileVerb::of(&attr(1, 1)), Some(FileVerb::Add));
        assert_eq!(FileVerb::of(&attr(1, 2)), Some(FileVerb::Del));
        assert_eq!(FileVerb::of(&attr(1, 3)), None, "SPAPR TCE");
        assert_eq!(FileVerb::of(&attr(2, 1)), None);
        assert_eq!(std::mem::size_of::<KvmDeviceAttr>(), 24);
    }

    #[test]
    fn files_register_once_per_device_as_kvm_keeps_them() {
        let mut r = Registry::default();
        assert_eq!(r.apply(5, 100, FileVerb::Del), Err(libc::ENOENT));
        assert_eq!(r.apply(5, 100, FileVerb::Add), Ok(()));
        assert_eq!(r.apply(5, 100, FileVerb::Add), Err(libc::EEXIST));
        assert_eq!(r.apply(6, 100, FileVerb::Add), Ok(()), "another device");
        assert_eq!(r.apply(5, 100, FileVerb::Del), Ok(()));
        assert_eq!(r.apply(5, 100, FileVerb::Del), Err(libc::ENOENT));
        r.forget(6);
        assert_eq!(r.apply(6, 100, FileVerb::Del), Err(libc::ENOENT));
    }

    #[test]
    fn a_plain_descriptor_is_no_kvm_device() {
        assert!(!is_kvm_vfio(0) || !is_kvm_vfio(-1));
        assert!(!is_kvm_vfio(-1));
    }
}
