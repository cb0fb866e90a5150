//! A VFIO group file (`/dev/vfio/<n>`, Linux `group.c`): the legacy way to a
//! group's devices. The container it is set to is an iommufd context: a
//! `/dev/vfio/vfio` container here *is* one (Linux's
//! `CONFIG_IOMMUFD_VFIO_CONTAINER` choice), and `/dev/iommu` works too.
//! Setting the container creates the context's VFIO compatibility IOAS;
//! each device fd the group hands out is bound to that context and
//! attached to that IOAS.

use super::{DeviceFile, Function, HostState, SharedContext};
use crate::context::Caller;
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::pages::EngineState;
use crate::sync::Locked;
use softiommu_iommu::{DeviceState, GroupId};
use softiommu_uapi::vfio::*;
use std::sync::{Arc, Mutex};

/// The longest device name `VFIO_GROUP_GET_DEVICE_FD` reads (a page, as
/// Linux's `strndup_user`).
const MAX_NAME: usize = 4096;

/// What a group ioctl gives back: a value, or a new device file for the
/// transport to hand to the program as a descriptor.
#[derive(Debug)]
pub enum GroupReply {
    /// The ioctl's return value.
    Value(i64),
    /// `VFIO_GROUP_GET_DEVICE_FD`'s device.
    Device(DeviceFile),
}

/// One open group file. Invariant: while it lives, its group is in
/// `HostState::open` and no device of it is bound through a cdev.
#[derive(Debug)]
pub struct GroupFile {
    group: GroupId,
    /// The group's VFIO functions (devices a kernel driver holds are not).
    members: Vec<Arc<Mutex<Function>>>,
    shared: Arc<EngineState>,
    host: Arc<HostState>,
    container: Option<SharedContext>,
}

impl GroupFile {
    pub(super) fn new(
        group: GroupId,
        members: Vec<Arc<Mutex<Function>>>,
        shared: Arc<EngineState>,
        host: Arc<HostState>,
    ) -> Self {
        GroupFile {
            group,
            members,
            shared,
            host,
            container: None,
        }
    }

    /// The group it opens.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Whether the group may be used: every device of it is VFIO's or
    /// driverless, and no context owns its DMA (the seed's rule, as
    /// `VFIO_GROUP_FLAGS_VIABLE` shows it).
    pub fn viable(&self) -> bool {
        let core = self.shared.iommu.locked();
        let topology = core.topology();
        let members = &topology.group(self.group).devices;
        core.group_owner(self.group).is_none()
            && members.iter().all(|&d| {
                topology.device(d).kernel_driver.is_none()
                    && !matches!(core.device_state(d), DeviceState::Kernel(_))
            })
    }

    /// One ioctl on the group file. `container_of` turns a descriptor of
    /// the caller into the context it opens (`EBADF` for none, `EBADFD` for
    /// one that is neither a container nor an iommufd).
    pub fn ioctl(
        &mut self,
        caller: &Caller<'_>,
        request: u32,
        mut arg: Arg<'_>,
        container_of: &dyn Fn(i32) -> Result<SharedContext>,
    ) -> Result<GroupReply> {
        match request {
            VFIO_GROUP_GET_STATUS => {
                let mut status = VfioGroupStatus::default();
                let mut head = [0u8; 8];
                arg.read(caller, 0, &mut head)?;
                status.argsz = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
                if status.argsz < 8 {
                    return Err(Errno::EINVAL);
                }
                status.flags = if self.container.is_some() {
                    VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE
                } else if self.viable() {
                    VFIO_GROUP_FLAGS_VIABLE
                } else {
                    0
                };
                arg.write(caller, 0, zerocopy::IntoBytes::as_bytes(&status))?;
                Ok(GroupReply::Value(0))
            }
            VFIO_GROUP_SET_CONTAINER => {
                let mut raw = [0u8; 4];
                arg.read(caller, 0, &mut raw)?;
                let fd = i32::from_ne_bytes(raw);
                if fd < 0 {
                    return Err(Errno::EBADF);
                }
                let ctx = container_of(fd)?;
                if self.container.is_some() {
                    return Err(Errno::EINVAL);
                }
                ctx.locked().vfio_compat_ioas_create()?;
                self.container = Some(ctx);
                Ok(GroupReply::Value(0))
            }
            VFIO_GROUP_UNSET_CONTAINER => {
                self.container.take().ok_or(Errno::EINVAL)?;
                Ok(GroupReply::Value(0))
            }
            VFIO_GROUP_GET_DEVICE_FD => self.get_device_fd(caller, &arg).map(GroupReply::Device),
            _ => Err(Errno::ENOTTY),
        }
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`: the device named by the string at the
    /// argument, opened bound and attached. The name may be followed by
    /// options as vfio-pci's `match` reads them: spaces, then at most one
    /// `vf_token=<uuid>` (anything else, or a malformed UUID, is
    /// `EINVAL`; a name followed by anything but a space names nothing).
    /// `ENODEV` for no function of this group; the VF token rules of
    /// [`SriovRole::match_token`](super::SriovRole::match_token); then
    /// `EINVAL` without a container.
    fn get_device_fd(&self, caller: &Caller<'_>, arg: &Arg<'_>) -> Result<DeviceFile> {
        let text = read_string(caller, arg)?;
        let mut found = None;
        for function in &self.members {
            let name = {
                let f = function.locked();
                self.shared
                    .iommu
                    .locked()
                    .topology()
                    .device(f.dev)
                    .name
                    .clone()
            };
            if let Some(options) = match_name(&text, &name) {
                let token = parse_options(options)?;
                function.locked().sriov.match_token(token.as_ref())?;
                found = Some((function.clone(), token));
                break;
            }
        }
        let (function, token) = found.ok_or(Errno::ENODEV)?;
        let ctx = self.container.clone().ok_or(Errno::EINVAL)?;
        DeviceFile::open_via_group(function, self.host.clone(), ctx, token.as_ref())
    }
}

/// The options after `name` in `text` when `text` names it: `Some("")` for
/// the bare name, the rest after a space, `None` for another name.
fn match_name<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(name)?;
    if rest.is_empty() || rest.starts_with(' ') {
        Some(rest)
    } else {
        None
    }
}

/// The VF token among `options` (Linux `vfio_pci_core_match`).
fn parse_options(options: &str) -> Result<Option<[u8; 16]>> {
    const KEY: &str = "vf_token=";
    const UUID_LEN: usize = 36;
    let mut token = None;
    let mut rest = options;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(token);
        }
        match rest.strip_prefix(KEY) {
            Some(value) if token.is_none() => {
                let uuid = value.get(..UUID_LEN).ok_or(Errno::EINVAL)?;
                token = Some(parse_uuid(uuid).ok_or(Errno::EINVAL)?);
                rest = &value[UUID_LEN..];
            }
            _ => return Err(Errno::EINVAL),
        }
    }
}

/// A UUID in its 36-character text form, bytes in text order (Linux
/// `uuid_parse`).
pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| ![8, 13, 18, 23].contains(i))
        .map(|(_, &b)| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    let mut uuid = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        uuid[i] = pair[0] << 4 | pair[1];
    }
    Some(uuid)
}

impl Drop for GroupFile {
    fn drop(&mut self) {
        self.host.groups.locked().open.remove(&self.group);
    }
}

/// A NUL-terminated string at the argument, at most [`MAX_NAME`] bytes
/// (`EFAULT` unreadable, `EINVAL` unterminated or not UTF-8, as
/// Linux's `strndup_user`).
fn read_string(caller: &Caller<'_>, arg: &Arg<'_>) -> Result<String> {
    let mut bytes = Vec::new();
    let mut piece = [0u8; 64];
    while bytes.len() < MAX_NAME {
        let n = piece.len().min(MAX_NAME - bytes.len());
        // Read byte by byte near the end of readable memory.
        if arg
            .read(caller, bytes.len() as u64, &mut piece[..n])
            .is_err()
        {
            let mut one = [0u8; 1];
            arg.read(caller, bytes.len() as u64, &mut one)?;
            if one[0] == 0 {
                break;
            }
            bytes.push(one[0]);
            continue;
        }
        if let Some(end) = piece[..n].iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&piece[..end]);
            return String::from_utf8(bytes).map_err(|_| Errno::EINVAL);
        }
        bytes.extend_from_slice(&piece[..n]);
    }
    if bytes.len() >= MAX_NAME {
        return Err(Errno::EINVAL);
    }
    String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
}
