//! Object lifetime (Linux `main.c`): `IOMMU_DESTROY` and closing a context,
//! which destroys everything, leaves first, and never fails.

use crate::context::Context;
use crate::errno::{Errno, Result};
use crate::object::Object;

impl Context {
    /// Destroys any object: `ENOENT` unknown, `EBUSY` in use.
    pub fn destroy(&mut self, id: u32) -> Result<()> {
        // Accesses are not user objects: only their file's close ends them.
        if matches!(
            self.objects.kind(id),
            Some(crate::object::ObjectType::Access | crate::object::ObjectType::Dmabuf)
        ) {
            return Err(Errno::ENOENT);
        }
        let object = self.objects.remove(id)?;
        if self.vfio_ioas == Some(id) {
            self.vfio_ioas = None;
        }
        self.destroy_object(id, object);
        Ok(())
    }

    pub(crate) fn destroy_object(&mut self, id: u32, object: Object) {
        match object {
            Object::Ioas(mut ioas) => {
                ioas.iopt.release_all_pins();
                let _ = ioas.iopt.unmap_all();
            }
            Object::Device(dev) => self.destroy_device(*dev),
            Object::HwptPaging(hwpt) => self.destroy_hwpt(id, *hwpt),
            Object::HwptNested(hwpt) => self.destroy_nested(*hwpt),
            Object::Access(a) => self.destroy_access(*a),
            Object::Dmabuf(d) => {
                self.side_files.remove(&d.inode);
            }
            Object::FaultQueue(q) => {
                self.side_files.remove(&q.inode);
            }
            Object::Viommu(v) => self.destroy_viommu(*v),
            Object::Vdevice(v) => self.destroy_vdevice(*v),
            Object::Veventq(q) => self.destroy_veventq(*q),
            Object::HwQueue(q) => self.destroy_hw_queue(id, *q),
            Object::Selftest(t) => {
                // The mock device goes with its selftest object: unplugged
                // from the machine, so a test that makes mock devices
                // forever keeps the machine's size bounded.
                let dev = self.objects.device(t.device).map(|d| d.dev);
                self.objects.drop_user(t.device);
                if self.destroy(t.device).is_ok() {
                    if let Ok(dev) = dev {
                        let _ = self.core().remove_device(dev);
                    }
                }
            }
        }
    }

    /// Destroys every object, leaves first; never fails (Linux `iommufd_fops_release`).
    pub fn close(&mut self) {
        // A fault queue's open file outlives the context here (Linux keeps
        // the context for it instead): the queue stops delivering.
        for id in self.objects.ids_of(crate::object::ObjectType::FaultQueue) {
            self.fault_queue_file_closed(id);
        }
        for id in self.objects.ids_of(crate::object::ObjectType::Veventq) {
            self.veventq_file_closed(id);
        }
        while !self.objects.is_empty() {
            let leaves = self.objects.leaves();
            if leaves.is_empty() {
                break;
            }
            for id in leaves {
                if let Ok(object) = self.objects.remove(id) {
                    self.destroy_object(id, object);
                }
            }
        }
        self.vfio_ioas = None;
    }
}
