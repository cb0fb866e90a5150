//! Access permissions of a mapping and the direction of one DMA access.

/// What a leaf lets a device do. `Prot::NONE` is never mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    /// Device reads (DMA from memory) allowed.
    pub read: bool,
    /// Device writes (DMA to memory) allowed.
    pub write: bool,
}

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
    };
    /// Read only.
    pub const READ: Prot = Prot {
        read: true,
        write: false,
    };
    /// Write only.
    pub const WRITE: Prot = Prot {
        read: false,
        write: true,
    };
    /// Read and write.
    pub const READ_WRITE: Prot = Prot {
        read: true,
        write: true,
    };

    /// Whether this grants `access`.
    #[inline]
    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }

    /// Whether no access is granted.
    pub fn is_none(self) -> bool {
        !self.read && !self.write
    }
}

/// Direction of a device access, seen from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The device reads memory.
    Read,
    /// The device writes memory.
    Write,
}
