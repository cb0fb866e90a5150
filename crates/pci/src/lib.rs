//! A PCI function's type-0 configuration space as a VFIO user sees it
//! through vfio-pci, built from a specification.
//!
//! # Vocabulary
//!
//! - **Function**: one PCI function (bus/device/function); what a VFIO
//!   device file stands for.
//! - **Configuration space**: the function's registers, 256 bytes for
//!   conventional PCI and 4096 for PCI Express (the part from 0x100 is the
//!   **extended** space). Multi-byte registers are little-endian.
//! - **Spec**: what the function is made of ([`FunctionSpec`]): identity,
//!   BARs, MSI, MSI-X, PCI Express, SR-IOV, ACS, INTx pin. A spec is checked
//!   by [`FunctionSpec::validate`] before anything is built from it.
//! - **BAR**: base address register; software writes all ones, reads back
//!   the size mask with the type bits, then writes the address. A 64-bit
//!   BAR takes two slots, the upper one holding the high half.
//! - **Write mask / write-1-to-clear mask**: per byte of the space, the bits
//!   a config write stores, and the bits a written 1 clears (error status).
//!   Everything else is read-only: a write leaves it as it was.
//! - **Capability**: a structure in the list that starts at the capabilities
//!   pointer (0x34), each with an ID and a next pointer; **extended
//!   capabilities** form a second list from 0x100 with 16-bit IDs.
//! - **FLR**: function-level reset, back to power-on values.
//!
//! # Layout
//!
//! The header is type 0, single-function, BIST not capable, no expansion
//! ROM (0x30 reads 0), latency timer 0. The command register's I/O, memory,
//! bus master, parity, SERR# and INTx-disable bits are writable; the status
//! register has the capabilities-list bit and its six error bits are
//! write-1-to-clear. Cache line size and interrupt line are read-write
//! scratch; interrupt pin is the spec's.
//!
//! Capabilities sit at fixed offsets (see [`layout`]) and are linked in this
//! order:
//!
//! | offset | ID   | capability                                            |
//! |--------|------|-------------------------------------------------------|
//! | 0x40   | 0x01 | power management 1.2: D0 and D3hot, no PME (always)   |
//! | 0x50   | 0x05 | MSI: 64-bit address, per-vector masking               |
//! | 0x70   | 0x11 | MSI-X                                                 |
//! | 0x80   | 0x10 | PCI Express v2 endpoint, FLR capable, x1 at 8 GT/s    |
//!
//! Extended capabilities are packed from 0x100: SR-IOV (0x0010, 64 bytes)
//! when the spec has it, then ACS (0x000d) when asked for. A PCI Express
//! function without either reads 0 at 0x100, meaning "none".
//!
//! Which bits are writable follows what vfio-pci lets a user write, with
//! the device owning the state where vfio-pci would trap to hardware:
//! MSI and MSI-X enable, MSI-X function mask, MSI address, data, mask bits
//! and multiple message enable are writable, the rest of their message
//! control is read-only; the PM power state is writable (D1 and D2, which
//! the function lacks, are refused); PCI Express device status errors are
//! write-1-to-clear and writing Initiate FLR resets the function (counted by
//! [`ConfigSpace::resets`]).
//!
//! # Example
//!
//! ```
//! use softiommu_pci::{BarKind, BarSpec, ConfigSpace, FunctionSpec, PciIds};
//!
//! let spec = FunctionSpec {
//!     ids: PciIds { vendor: 0x1af4, device: 0x1041, class: 0x020000, ..Default::default() },
//!     bars: vec![BarSpec { index: 0, size: 0x4000, kind: BarKind::Mem64 { prefetchable: true } }],
//!     pcie: true,
//!     ..Default::default()
//! };
//! let mut space = ConfigSpace::new(&spec)?;
//! space.write(0x10, &[0xff; 8])?; // size BAR 0 (both halves)
//! let mut bar = [0; 8];
//! space.read(0x10, &mut bar)?;
//! assert_eq!(u64::from_le_bytes(bar), !0x3fff | 0b1100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod address;
pub mod layout;
pub mod presets;
pub mod regs;
mod space;
mod spec;

pub use address::Address;
pub use space::{ConfigError, ConfigSpace, MsiState, MsixState};
pub use spec::{
    BarKind, BarSpec, DeviceRegister, FunctionSpec, MsixSpec, PciIds, SpecError, SriovSpec,
};
