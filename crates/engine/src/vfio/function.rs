//! One emulated PCI function: configuration space, BAR memory, interrupts.

use crate::errno::{Errno, Result};
use crate::memory::{EventSignal, FileBacking, MemFile};
use softiommu_iommu::{DeviceId, GroupId};
use softiommu_pci::{ConfigSpace, FunctionSpec};
use softiommu_uapi::vfio::*;
use std::sync::Arc;

/// The largest BAR a function backs with memory. BARs are anonymous files
/// the server holds (pages are allocated as they are touched), so the cap
/// only guards against topologies that would describe absurd sizes.
pub const MAX_BAR_MEMORY: u64 = 1 << 30;

/// The interrupts a program set with `VFIO_DEVICE_SET_IRQS`.
///
/// Invariant: `triggers[i]` has exactly as many slots as the function has
/// vectors of IRQ index `i` (`Function::irq_count`).
#[derive(Debug, Default)]
pub struct Irqs {
    /// By IRQ index (INTx, MSI, MSI-X, ERR, REQ), the eventfd of each vector.
    pub triggers: Vec<Vec<Option<Arc<dyn EventSignal>>>>,
    /// The active interrupt type (`VFIO_PCI_{INTX,MSI,MSIX}_IRQ_INDEX`);
    /// only one is active at a time.
    pub active: Option<u32>,
    /// INTx is masked (`VFIO_IRQ_SET_ACTION_MASK`, or automatically after
    /// it fired, until unmasked).
    pub intx_masked: bool,
    /// Signals raised while masked, delivered at unmask.
    pub intx_pending: bool,
    /// The INTx unmask eventfd (Linux's irqfd for INTx): signalling it
    /// unmasks INTx, as KVM's resampler does. Watched by a thread of its
    /// own once `started`.
    pub intx_unmask: Option<UnmaskWatch>,
}

/// An INTx unmask eventfd and the stop flag of the thread that watches it.
#[derive(Debug)]
pub struct UnmaskWatch {
    /// The eventfd the program gave.
    pub eventfd: Arc<dyn EventSignal>,
    /// Set to end the watching thread.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// A thread watches it.
    pub started: bool,
}

impl Drop for UnmaskWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// A trigger taken by `signal_irq`: the eventfd the program set, if any.
pub type IrqTrigger = Option<Arc<dyn EventSignal>>;

/// One function of the machine. Owned by the [`VfioHost`](super::VfioHost)
/// behind a lock that comes before any context's.
#[derive(Debug)]
pub struct Function {
    /// The machine device it is.
    pub dev: DeviceId,
    /// Its IOMMU group.
    pub group: GroupId,
    spec: FunctionSpec,
    /// Its configuration space as vfio-pci presents it.
    pub config: ConfigSpace,
    /// Memory behind each BAR, by BAR index, made at the first access (a
    /// machine has many functions a program never touches); never made for
    /// an absent BAR or the upper half of a 64-bit one.
    bars: [std::sync::OnceLock<Arc<MemFile>>; 6],
    /// Interrupt wiring.
    pub irqs: Irqs,
    /// Its device node's minor number (`/dev/vfio/devices/vfio<minor>`),
    /// unique among the machine's functions while it exists.
    pub minor: u32,
    /// Its part in SR-IOV: PF, VF or neither.
    pub sriov: super::SriovRole,
    /// Device files open on it (cdev or group), which keep a VF from
    /// being removed (Linux's registration references).
    pub open_files: u32,
    /// A VF its PF removed: the machine no longer has it, so it opens no
    /// more files.
    pub removed: bool,
    /// Runtime low-power state a user asked for
    /// (`VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY*`).
    pub low_power: Option<LowPower>,
    /// The device model behind the registers, if any (taken out while it
    /// runs a step).
    pub(crate) model: Option<Box<dyn super::DeviceModel>>,
    /// The configuration-space reset count the model last saw.
    pub(crate) model_resets: u64,
    /// A runner thread is stepping the model.
    pub(crate) model_running: bool,
    /// That thread, to wake when a write leaves work pending.
    pub(crate) runner: Option<std::thread::Thread>,
    /// Where the function's DMA goes: the context a device file bound it
    /// to and its device object there. Cleared before the unbind.
    pub(crate) dma_port: Option<(super::SharedContext, u32)>,
    /// Dma-bufs exported from its BARs that still exist (see
    /// [`super::dmabuf`]).
    pub(crate) dmabufs: Vec<std::sync::Weak<super::dmabuf::VfioDmabuf>>,
}

/// A device the user let enter low power: any access through the device
/// file wakes it, signalling the wake-up eventfd if one was given
/// (Linux's `pm_wake_eventfd_ctx`).
#[derive(Debug)]
pub struct LowPower {
    /// The eventfd of `LOW_POWER_ENTRY_WITH_WAKEUP`.
    pub wakeup: Option<Arc<dyn EventSignal>>,
}

impl Function {
    /// A function as `spec` describes it, freshly reset.
    /// `EINVAL` for a spec the PCI model refuses or a BAR larger than
    /// [`MAX_BAR_MEMORY`].
    pub fn new(dev: DeviceId, group: GroupId, spec: &FunctionSpec, minor: u32) -> Result<Self> {
        if spec.bars.iter().any(|b| b.size > MAX_BAR_MEMORY) {
            return Err(Errno::EINVAL);
        }
        let config = ConfigSpace::new(spec).map_err(|_| Errno::EINVAL)?;
        let bars = Default::default();
        let mut function = Function {
            dev,
            group,
            spec: spec.clone(),
            config,
            bars,
            irqs: Irqs::default(),
            minor,
            sriov: super::SriovRole::None,
            open_files: 0,
            removed: false,
            low_power: None,
            model: None,
            model_resets: 0,
            model_running: false,
            runner: None,
            dma_port: None,
            dmabufs: Vec::new(),
        };
        function.irqs.triggers = (0..VFIO_PCI_NUM_IRQS)
            .map(|i| vec![None; function.irq_count(i) as usize])
            .collect();
        Ok(function)
    }

    /// The description it was built from.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Size of BAR `index` in bytes (0 when absent).
    pub fn bar_size(&self, index: u32) -> u64 {
        self.spec
            .bars
            .iter()
            .find(|b| u32::from(b.index) == index)
            .map_or(0, |b| b.size)
    }

    /// The memory behind BAR `index`, which a transport maps for a program;
    /// made now if this is the first access. `None` for an absent BAR, or
    /// when no memory could be made.
    pub fn bar_memory(&self, index: u32) -> Option<&Arc<MemFile>> {
        let size = self.bar_size(index);
        let cell = self.bars.get(index as usize).filter(|_| size != 0)?;
        if let Some(memory) = cell.get() {
            return Some(memory);
        }
        let name = format!("softiommu-bar{index}");
        let memory = Arc::new(MemFile::new(&name, size).ok()?);
        // Another thread may have made it meanwhile: theirs stays.
        let _ = cell.set(memory);
        cell.get()
    }

    /// How many vectors IRQ index `index` has (vfio-pci's
    /// `vfio_pci_get_irq_count`): INTx one when the function has a pin,
    /// MSI and MSI-X as many as the capability offers, ERR one on PCI
    /// Express, REQ one.
    pub fn irq_count(&self, index: u32) -> u32 {
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => u32::from(self.spec.interrupt_pin != 0),
            VFIO_PCI_MSI_IRQ_INDEX => u32::from(self.spec.msi_vectors),
            VFIO_PCI_MSIX_IRQ_INDEX => self.spec.msix.as_ref().map_or(0, |m| u32::from(m.vectors)),
            VFIO_PCI_ERR_IRQ_INDEX => u32::from(self.spec.pcie),
            VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }

    /// Whether BAR `index` can be mapped by the program: memory BARs can
    /// (vfio-pci maps them, extending small ones to a page), I/O BARs not.
    pub fn bar_mmap(&self, index: u32) -> bool {
        self.spec
            .bars
            .iter()
            .any(|b| u32::from(b.index) == index && b.kind.is_memory())
    }

    /// Whether a function-level reset exists (the PCI Express capability
    /// advertises FLR), so `VFIO_DEVICE_RESET` works.
    pub fn reset_works(&self) -> bool {
        self.spec.pcie
    }

    /// Function-level reset: registers back to their power-on values. The
    /// interrupt wiring is the program's and stays.
    pub fn reset(&mut self) {
        self.config.reset();
        // Linux restores the SR-IOV state a reset clears
        // (`pci_restore_iov_state`): the VFs stay.
        if let super::SriovRole::Pf { vfs, .. } = &self.sriov {
            let _ = self.config.set_sriov_enabled(vfs.len() as u16);
        }
        // As Linux's reset restores MSI-X state: the interrupts stay on.
        self.sync_msix_enable();
        self.reset_model();
        self.irqs.intx_masked = false;
        self.irqs.intx_pending = false;
        self.sync_dmabufs(true);
    }

    /// Drops every eventfd and clears INTx masking: vfio-pci turns the
    /// function's interrupts off when its last user closes it.
    pub fn reset_irqs(&mut self) {
        self.low_power = None;
        self.irqs.intx_unmask = None;
        for vectors in &mut self.irqs.triggers {
            vectors.iter_mut().for_each(|t| *t = None);
        }
        self.irqs.active = None;
        self.irqs.intx_masked = false;
        self.irqs.intx_pending = false;
        self.sync_msix_enable();
    }

    /// A configuration write from the program, as vfio-pci filters it: MSI
    /// Enable only while MSI is the active interrupt type (it is enabled by
    /// `SET_IRQS`, not by config writes), and the MSI-X control register
    /// not at all — it reads as the host set it, enabled while MSI-X is
    /// active ([`sync_msix_enable`](Self::sync_msix_enable)).
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        use softiommu_pci::layout::{MSIX_OFFSET, MSI_OFFSET};
        use softiommu_pci::regs::{MSIX_CONTROL, MSI_CONTROL, MSI_CONTROL_ENABLE};
        let msix_control = (MSIX_OFFSET + MSIX_CONTROL) as u64;
        let mut saved = [0u8; 2];
        let has_msix = self.config.msix().is_some();
        if has_msix {
            self.config
                .read(msix_control, &mut saved)
                .map_err(|_| Errno::EINVAL)?;
        }
        let resets = self.config.resets();
        self.config.write(offset, data).map_err(|_| Errno::EINVAL)?;
        // Memory decoding or the power state may have changed, or an FLR
        // run: exported dma-bufs follow.
        self.sync_dmabufs(self.config.resets() != resets);
        if has_msix {
            let _ = self.config.set_by_device(msix_control, &saved);
        }
        if self.config.msi().is_some() && self.irqs.active != Some(VFIO_PCI_MSI_IRQ_INDEX) {
            let at = (MSI_OFFSET + MSI_CONTROL) as u64;
            let mut control = [0u8; 2];
            let _ = self.config.read(at, &mut control);
            let control = u16::from_le_bytes(control) & !MSI_CONTROL_ENABLE;
            let _ = self.config.set_by_device(at, &control.to_le_bytes());
        }
        Ok(())
    }

    /// MSI-X Enable reads as the host sets it: on while MSI-X is the
    /// active interrupt type.
    pub fn sync_msix_enable(&mut self) {
        use softiommu_pci::layout::MSIX_OFFSET;
        use softiommu_pci::regs::{MSIX_CONTROL, MSIX_CONTROL_ENABLE};
        if self.config.msix().is_none() {
            return;
        }
        let at = (MSIX_OFFSET + MSIX_CONTROL) as u64;
        let mut control = [0u8; 2];
        let _ = self.config.read(at, &mut control);
        let mut control = u16::from_le_bytes(control) & !MSIX_CONTROL_ENABLE;
        if self.irqs.active == Some(VFIO_PCI_MSIX_IRQ_INDEX) {
            control |= MSIX_CONTROL_ENABLE;
        }
        let _ = self.config.set_by_device(at, &control.to_le_bytes());
    }

    /// Reads BAR `index` at `offset` (`EINVAL` past its end or for an absent
    /// BAR, as vfio-pci answers a region access out of range).
    pub fn bar_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.bar_check(index, offset, buf.len())?
            .read_at(offset, buf)
    }

    /// Writes BAR `index` at `offset`.
    pub fn bar_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        self.bar_check(index, offset, data.len())?
            .write_at(offset, data)
    }

    fn bar_check(&self, index: u32, offset: u64, len: usize) -> Result<&Arc<MemFile>> {
        let memory = self.bar_memory(index).ok_or(Errno::EINVAL)?;
        let end = offset.checked_add(len as u64).ok_or(Errno::EINVAL)?;
        if end > self.bar_size(index) {
            return Err(Errno::EINVAL);
        }
        Ok(memory)
    }

    /// Raises vector `vector` of IRQ index `index`, as the device model
    /// does: signals its eventfd if one is set. INTx is level-triggered and
    /// masks itself (vfio-pci's automasking) until the program unmasks it.
    /// Returns whether an eventfd was signalled.
    pub fn signal_irq(&mut self, index: u32, vector: u32) -> bool {
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            if self.irqs.intx_masked {
                self.irqs.intx_pending = true;
                return false;
            }
            self.irqs.intx_masked = true;
        }
        let trigger = self
            .irqs
            .triggers
            .get(index as usize)
            .and_then(|v| v.get(vector as usize))
            .cloned()
            .flatten();
        match trigger {
            Some(t) => {
                t.signal();
                true
            }
            None => false,
        }
    }
}
