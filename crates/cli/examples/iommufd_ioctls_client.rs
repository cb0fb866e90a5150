//! A client of rust-vmm's `iommufd-ioctls` crate, used unmodified: the test
//! suite runs it under `softiommu run` to show that Rust VMM code reaches the
//! engine through `/dev/iommu` like C programs do.

use iommufd_bindings::iommufd::*;
use iommufd_ioctls::{IommuFd, IommufdIoas};
use std::fs::File;
use std::sync::Arc;

fn main() {
    let fd = Arc::new(IommuFd::new().expect("open /dev/iommu"));
    let ioas = IommufdIoas::new(fd.clone()).expect("IOAS_ALLOC");
    println!("ioas {}", ioas.id());

    let buffer = vec![0x11u8; 64 * 1024];
    let map = iommu_ioas_map {
        size: std::mem::size_of::<iommu_ioas_map>() as u32,
        flags: iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
            | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE
            | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id: ioas.id(),
        __reserved: 0,
        user_va: buffer.as_ptr() as u64,
        length: buffer.len() as u64,
        iova: 0x10_0000,
    };
    fd.map_iommu_ioas(&map).expect("IOAS_MAP");
    println!("mapped user memory at {:#x}", map.iova);
    assert!(
        fd.map_iommu_ioas(&map).is_err(),
        "a second map at the same IOVA must fail"
    );

    let memfd = nix::sys::memfd::memfd_create(c"client", nix::sys::memfd::MemFdCreateFlag::empty())
        .expect("memfd");
    let file = File::from(memfd);
    file.set_len(1 << 20).expect("ftruncate");
    use std::os::fd::AsRawFd;
    ioas.map_file(file.as_raw_fd(), 0, 1 << 20, 0x20_0000, true)
        .expect("IOAS_MAP_FILE");
    println!("mapped a memfd at {:#x}", 0x20_0000);

    ioas.unmap(0x20_0000, 1 << 20).expect("unmap the memfd");
    ioas.unmap(0x10_0000, buffer.len() as u64)
        .expect("unmap the buffer");
    assert!(
        ioas.unmap(0x10_0000, buffer.len() as u64).is_err(),
        "nothing left to unmap"
    );
    let id = ioas.id();
    drop(ioas);
    assert!(
        fd.destroy_iommu_object(id).is_err(),
        "the IOAS was destroyed on drop"
    );
    println!("client done");
}
