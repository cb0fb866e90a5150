//! `VFIO_DEVICE_SET_IRQS` on a function (Linux `vfio_pci_intrs.c`): which
//! interrupt type is active (none, INTx, MSI or MSI-X — one at a time), the
//! eventfd of each vector, INTx masking, and loopback triggers
//! (`DATA_NONE` / `DATA_BOOL` fire the vectors, as tests use them).
//!
//! An INTx unmask eventfd (`ACTION_UNMASK` with `DATA_EVENTFD`, which KVM's
//! resampler signals) unmasks INTx whenever it is signalled, watched by a
//! thread of its own (see [`watch_unmask`]); -1 removes it.

use super::Function;
use crate::errno::{Errno, Result};
use crate::memory::{CallerFiles, EventSignal};
use softiommu_uapi::vfio::*;
use std::sync::Arc;

/// The data that follows a `SET_IRQS` header, decoded by its type.
#[derive(Clone, Copy, Debug)]
pub enum IrqData<'a> {
    /// `VFIO_IRQ_SET_DATA_NONE`.
    None,
    /// `VFIO_IRQ_SET_DATA_BOOL`: one byte a vector.
    Bool(&'a [u8]),
    /// `VFIO_IRQ_SET_DATA_EVENTFD`: one descriptor a vector, -1 to clear.
    Eventfd(&'a [i32]),
}

impl Function {
    /// The active interrupt type, if any (`VFIO_PCI_*_IRQ_INDEX`).
    pub fn irq_type(&self) -> Option<u32> {
        self.irqs.active
    }

    /// Performs `action` (`VFIO_IRQ_SET_ACTION_*`) on vectors
    /// `[start, start + count)` of IRQ index `index`, after the header
    /// checks of `vfio_set_irqs_validate_and_prepare`. An action the index
    /// does not have is `ENOTTY`, as in Linux.
    pub fn set_irqs(
        &mut self,
        files: &dyn CallerFiles,
        action: u32,
        index: u32,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        match (index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) => {
                self.intx_mask(start, count, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                self.intx_unmask(files, start, count, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.intx_trigger(files, start, count, data)
            }
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.msi_trigger(files, index, start, count, data)
            }
            (VFIO_PCI_ERR_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) if self.spec().pcie => {
                self.single_trigger(files, index, start, count, data)
            }
            (VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.single_trigger(files, index, start, count, data)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn intx_mask(&mut self, start: u32, count: u32, data: IrqData<'_>) -> Result<()> {
        if self.irqs.active != Some(VFIO_PCI_INTX_IRQ_INDEX) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match data {
            IrqData::None => self.irqs.intx_masked = true,
            IrqData::Bool(b) => self.irqs.intx_masked |= b.first().is_some_and(|&v| v != 0),
            IrqData::Eventfd(_) => return Err(Errno::ENOTTY),
        }
        Ok(())
    }

    fn intx_unmask(
        &mut self,
        files: &dyn CallerFiles,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        if self.irqs.active != Some(VFIO_PCI_INTX_IRQ_INDEX) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        let unmask = match data {
            IrqData::None => true,
            IrqData::Bool(b) => b.first().is_some_and(|&v| v != 0),
            IrqData::Eventfd(fds) => {
                self.irqs.intx_unmask = match fds.first() {
                    Some(&fd) if fd >= 0 => Some(super::function::UnmaskWatch {
                        eventfd: files.eventfd(fd)?,
                        stop: Arc::default(),
                        started: false,
                    }),
                    _ => None,
                };
                false
            }
        };
        if unmask {
            self.unmask_intx();
        }
        Ok(())
    }

    /// Unmasks INTx; a level interrupt still asserted fires again at once.
    pub fn unmask_intx(&mut self) {
        self.irqs.intx_masked = false;
        if std::mem::take(&mut self.irqs.intx_pending) {
            self.signal_irq(VFIO_PCI_INTX_IRQ_INDEX, 0);
        }
    }

    fn intx_trigger(
        &mut self,
        files: &dyn CallerFiles,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        let is_intx = self.irqs.active == Some(VFIO_PCI_INTX_IRQ_INDEX);
        if is_intx && count == 0 && matches!(data, IrqData::None) {
            self.disable_irqs();
            return Ok(());
        }
        if !(is_intx || self.irqs.active.is_none()) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match data {
            IrqData::Eventfd(fds) => {
                let trigger = eventfd_of(files, fds[0])?;
                self.irqs.triggers[VFIO_PCI_INTX_IRQ_INDEX as usize][0] = trigger;
                self.irqs.active = Some(VFIO_PCI_INTX_IRQ_INDEX);
                Ok(())
            }
            _ if !is_intx => Err(Errno::EINVAL),
            IrqData::None => {
                self.signal_vector(VFIO_PCI_INTX_IRQ_INDEX, 0);
                Ok(())
            }
            IrqData::Bool(b) => {
                if b[0] != 0 {
                    self.signal_vector(VFIO_PCI_INTX_IRQ_INDEX, 0);
                }
                Ok(())
            }
        }
    }

    fn msi_trigger(
        &mut self,
        files: &dyn CallerFiles,
        index: u32,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        let is_index = self.irqs.active == Some(index);
        if is_index && count == 0 && matches!(data, IrqData::None) {
            self.disable_irqs();
            return Ok(());
        }
        if !(is_index || self.irqs.active.is_none()) {
            return Err(Errno::EINVAL);
        }
        match data {
            IrqData::Eventfd(fds) => {
                // Every descriptor is checked before any vector changes.
                let triggers = fds
                    .iter()
                    .map(|&fd| eventfd_of(files, fd))
                    .collect::<Result<Vec<_>>>();
                let triggers = match triggers {
                    Ok(t) => t,
                    Err(e) => {
                        if !is_index {
                            self.disable_irqs();
                        }
                        return Err(e);
                    }
                };
                self.irqs.active = Some(index);
                let vectors = &mut self.irqs.triggers[index as usize];
                for (slot, trigger) in vectors[start as usize..].iter_mut().zip(triggers) {
                    *slot = trigger;
                }
                Ok(())
            }
            _ if !is_index => Err(Errno::EINVAL),
            IrqData::None => {
                for v in start..start + count {
                    self.signal_vector(index, v);
                }
                Ok(())
            }
            IrqData::Bool(b) => {
                for (v, &fire) in (start..start + count).zip(b) {
                    if fire != 0 {
                        self.signal_vector(index, v);
                    }
                }
                Ok(())
            }
        }
    }

    /// ERR and REQ: one eventfd each (Linux `vfio_pci_set_ctx_trigger_single`).
    fn single_trigger(
        &mut self,
        files: &dyn CallerFiles,
        index: u32,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        if start != 0 || count > 1 {
            return Err(Errno::EINVAL);
        }
        let slot = index as usize;
        match data {
            IrqData::None => {
                let trigger = self.irqs.triggers[slot][0].clone().ok_or(Errno::EINVAL)?;
                if count > 0 {
                    trigger.signal();
                } else {
                    self.irqs.triggers[slot][0] = None;
                }
                Ok(())
            }
            IrqData::Bool(b) => {
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                if b[0] != 0 {
                    if let Some(t) = &self.irqs.triggers[slot][0] {
                        t.signal();
                    }
                }
                Ok(())
            }
            IrqData::Eventfd(fds) => {
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                match fds[0] {
                    -1 => self.irqs.triggers[slot][0] = None,
                    fd if fd >= 0 => self.irqs.triggers[slot][0] = Some(files.eventfd(fd)?),
                    _ => return Err(Errno::EINVAL),
                }
                Ok(())
            }
        }
    }

    /// Turns the active interrupt type off and forgets its eventfds.
    fn disable_irqs(&mut self) {
        if let Some(index) = self.irqs.active.take() {
            for t in &mut self.irqs.triggers[index as usize] {
                *t = None;
            }
        }
        self.irqs.intx_masked = false;
        self.irqs.intx_pending = false;
        self.irqs.intx_unmask = None;
    }

    /// Signals a vector's eventfd, if set (a loopback trigger).
    fn signal_vector(&self, index: u32, vector: u32) {
        if let Some(Some(t)) = self
            .irqs
            .triggers
            .get(index as usize)
            .and_then(|v| v.get(vector as usize))
        {
            t.signal();
        }
    }
}

/// The eventfd behind `fd`; `-1` clears the vector.
fn eventfd_of(files: &dyn CallerFiles, fd: i32) -> Result<Option<Arc<dyn EventSignal>>> {
    match fd {
        -1 => Ok(None),
        fd if fd >= 0 => files.eventfd(fd).map(Some),
        _ => Err(Errno::EINVAL),
    }
}

/// Starts the thread that watches `function`'s new INTx unmask eventfd, if
/// it has one not yet watched: each signal unmasks INTx. The thread ends
/// when the eventfd is replaced or removed, or the function goes.
pub(crate) fn watch_unmask(function: &Arc<std::sync::Mutex<Function>>) {
    use crate::sync::Locked;
    use std::sync::atomic::Ordering;
    let (eventfd, stop) = {
        let mut f = function.locked();
        match f.irqs.intx_unmask.as_mut() {
            Some(w) if !w.started => {
                w.started = true;
                (w.eventfd.clone(), w.stop.clone())
            }
            _ => return,
        }
    };
    let weak = Arc::downgrade(function);
    let _ = std::thread::Builder::new()
        .name("softiommu-irqfd".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if eventfd.wait(std::time::Duration::from_millis(50)) {
                    let Some(f) = weak.upgrade() else { return };
                    let mut f = f.locked();
                    if !stop.load(Ordering::Acquire) {
                        f.unmask_intx();
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
            }
        });
}
