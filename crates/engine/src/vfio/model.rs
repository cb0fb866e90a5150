//! Device models: what gives a function behaviour beyond plain BAR memory.
//!
//! A program drives a device with plain loads and stores to the BARs it
//! mapped, which the server cannot trap; so a model *observes* its
//! registers. Register writes that reach the server (a `pwrite`, or a
//! store the shim traps) go to [`DeviceModel::write`], which acts at once;
//! and while a file is open on the function a runner thread calls
//! [`DeviceModel::step`] with the function locked, for the work a write
//! leaves pending (the rest of a descriptor chain) and for stores it never
//! saw. The model reads the registers from BAR memory, acts (DMA through
//! the function's domain, interrupts through the program's eventfds) and
//! writes status back. The runner steps at once while the model reports
//! work, spins briefly after the last work, then sleeps in growing steps up
//! to [`MAX_IDLE_SLEEP`] — a write that leaves work pending wakes it — so
//! an idle device costs next to nothing.
//!
//! The function lock is held for one step only: the program's own accesses
//! through the device file (`pread`, `pwrite`, ioctls) wait at most one
//! step (one descriptor, in the I/OAT model).

use super::Function;
use crate::errno::{Errno, Result};
use crate::ops::dma::DmaError;
use crate::sync::Locked;
use softiommu_uapi::vfio::VFIO_PCI_MSIX_IRQ_INDEX;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The longest the runner sleeps between looks at an idle device: the
/// worst-case delay from a doorbell to the model noticing it.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_millis(100);
/// How long the runner keeps looking without sleeping after the model last
/// had work.
const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// The behaviour of one function.
pub trait DeviceModel: Send + Debug {
    /// Power-on state: the model's registers in the BARs and its internal
    /// state. Called when the function is made and at each reset.
    fn reset(&mut self, io: &mut Function);
    /// Observes the registers and makes progress. Returns whether there
    /// was anything to do (the runner then looks again at once).
    fn step(&mut self, io: &mut Function) -> bool;

    /// The bytes of BAR `bar` whose stores must reach the model as writes
    /// (its registers), as a range; the transport traps stores to the
    /// pages holding them in a program's mapping. Empty for none.
    fn trapped(&self, bar: u32) -> std::ops::Range<u64> {
        let _ = bar;
        0..0
    }

    /// A write of `data` at `offset` of BAR `bar`, as the device sees a
    /// register write: by default the bytes land and the model takes a
    /// step, so a doorbell acts before the write returns.
    fn write(&mut self, io: &mut Function, bar: u32, offset: u64, data: &[u8]) -> Result<()> {
        io.bar_write(bar, offset, data)?;
        self.step(io);
        Ok(())
    }

    /// Whether work is left that the runner should do without waiting for
    /// another write (a chain in progress).
    fn pending(&self) -> bool {
        false
    }
}

/// Why a device's DMA failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaFailure {
    /// Bus mastering is off in the command register, or no program has the
    /// function bound to an IOMMU context.
    NoBus,
    /// The IOMMU did not translate the access at `iova` (or refused its
    /// permission).
    Translation {
        /// The first IOVA of the access that failed.
        iova: u64,
    },
}

impl Function {
    /// The device reads `buf.len()` bytes at `iova` through the domain its
    /// group translates through, as the function's DMA would.
    pub fn dma_read(&self, iova: u64, buf: &mut [u8]) -> std::result::Result<(), DmaFailure> {
        self.dma(None, iova, buf, false)
    }

    /// [`dma_read`](Self::dma_read) tagged with `pasid` (untagged for
    /// `None`): through the HWPT attached to that PASID of the function.
    pub fn dma_read_as(
        &self,
        pasid: Option<u32>,
        iova: u64,
        buf: &mut [u8],
    ) -> std::result::Result<(), DmaFailure> {
        self.dma(pasid, iova, buf, false)
    }

    /// [`dma_write`](Self::dma_write) tagged with `pasid`.
    pub fn dma_write_as(
        &self,
        pasid: Option<u32>,
        iova: u64,
        data: &mut [u8],
    ) -> std::result::Result<(), DmaFailure> {
        self.dma(pasid, iova, data, true)
    }

    /// The device writes `data` at `iova` (dirty bits set while tracking is
    /// on). Mutable only because the engine's DMA path takes one buffer
    /// for both directions; `data` is not changed.
    pub fn dma_write(&self, iova: u64, data: &mut [u8]) -> std::result::Result<(), DmaFailure> {
        self.dma(None, iova, data, true)
    }

    /// The device copies `len` bytes from `src` to `dst` (tagged with
    /// `pasid`, untagged for `None`), as a DMA engine moves data: both
    /// ranges are translated before anything moves, and the bytes go in
    /// one step where the memory allows it, through `scratch` where not.
    /// A failure says whether the source (`false`) or the destination
    /// (`true`) was at fault.
    pub fn dma_copy_as(
        &self,
        pasid: Option<u32>,
        (src, dst, len): (u64, u64, usize),
        scratch: &mut [u8],
    ) -> std::result::Result<(), (DmaFailure, bool)> {
        let (ctx, dev_id) = self.dma_port.as_ref().ok_or((DmaFailure::NoBus, false))?;
        if !self.config.bus_master() {
            return Err((DmaFailure::NoBus, false));
        }
        let outcome = ctx
            .locked()
            .device_dma_copy(*dev_id, pasid, (src, dst, len), scratch);
        match outcome {
            Ok(()) => Ok(()),
            Err(DmaError::Fault(f)) => Err((
                DmaFailure::Translation { iova: f.iova },
                f.access == softiommu_pt::Access::Write,
            )),
            Err(DmaError::Errno(_)) => Err((DmaFailure::NoBus, false)),
        }
    }

    fn dma(
        &self,
        pasid: Option<u32>,
        iova: u64,
        buf: &mut [u8],
        write: bool,
    ) -> std::result::Result<(), DmaFailure> {
        let (ctx, dev_id) = self.dma_port.as_ref().ok_or(DmaFailure::NoBus)?;
        if !self.config.bus_master() {
            return Err(DmaFailure::NoBus);
        }
        let outcome = ctx.locked().device_dma_as(*dev_id, pasid, iova, buf, write);
        match outcome {
            Ok(()) => Ok(()),
            Err(DmaError::Fault(f)) => Err(DmaFailure::Translation { iova: f.iova }),
            Err(DmaError::Errno(_)) => Err(DmaFailure::NoBus),
        }
    }

    /// Raises MSI-X vector `vector` (the eventfd the program set, if any).
    pub fn raise_msix(&mut self, vector: u32) -> bool {
        self.signal_irq(VFIO_PCI_MSIX_IRQ_INDEX, vector)
    }

    /// Runs one step of the model, if the function has one; resets it
    /// first when software reset the function through its configuration
    /// space since the last step.
    pub(crate) fn step_model(&mut self) -> bool {
        let Some(mut model) = self.model.take() else {
            return false;
        };
        if self.config.resets() != self.model_resets {
            self.model_resets = self.config.resets();
            model.reset(self);
        }
        let busy = model.step(self);
        self.model = Some(model);
        busy
    }

    /// A write to BAR `index` through the device file (`pwrite`, or a
    /// trapped store): the model's, when it has one.
    pub fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        match self.model.take() {
            Some(mut model) => {
                let outcome = model.write(self, index, offset, data);
                if model.pending() {
                    if let Some(runner) = &self.runner {
                        runner.unpark();
                    }
                }
                self.model = Some(model);
                outcome
            }
            None => self.bar_write(index, offset, data),
        }
    }

    /// The bytes of BAR `index` whose stores the model must see.
    pub fn trapped(&self, index: u32) -> std::ops::Range<u64> {
        self.model.as_ref().map_or(0..0, |m| m.trapped(index))
    }

    /// Resets the model now (a function-level reset).
    pub(crate) fn reset_model(&mut self) {
        if let Some(mut model) = self.model.take() {
            self.model_resets = self.config.resets();
            model.reset(self);
            self.model = Some(model);
        }
    }

    /// Gives the function its model and its power-on state.
    pub(crate) fn install_model(&mut self, model: Box<dyn DeviceModel>) {
        self.model = Some(model);
        self.reset_model();
    }
}

/// Starts the runner of `function`'s model unless it is running or there
/// is no model. It stops by itself once no file is open on the function.
pub(crate) fn start_runner(function: &Arc<Mutex<Function>>) -> Result<()> {
    {
        let mut f = function.locked();
        if f.model.is_none() || f.model_running {
            return Ok(());
        }
        f.model_running = true;
    }
    let weak = Arc::downgrade(function);
    std::thread::Builder::new()
        .name("softiommu-device".into())
        .spawn(move || run(weak))
        .map(|_| ())
        .map_err(|_| {
            function.locked().model_running = false;
            Errno::ENOMEM
        })
}

fn run(function: Weak<Mutex<Function>>) {
    if let Some(f) = function.upgrade() {
        f.locked().runner = Some(std::thread::current());
    }
    let mut last_work = Instant::now();
    let mut sleep = Duration::from_micros(20);
    loop {
        let Some(f) = function.upgrade() else {
            return;
        };
        let busy = {
            let mut f = f.locked();
            if f.open_files == 0 {
                f.model_running = false;
                f.runner = None;
                return;
            }
            f.step_model()
        };
        drop(f);
        if busy {
            last_work = Instant::now();
            sleep = Duration::from_micros(20);
        } else if last_work.elapsed() < SPIN_WINDOW {
            std::thread::yield_now();
        } else {
            std::thread::park_timeout(sleep);
            sleep = (sleep * 2).min(MAX_IDLE_SLEEP);
        }
    }
}
