//! The rust-vmm face (`--features vm-memory`): `vm_memory::IommuMemory`
//! over a device's translation reads and writes exactly what the engine's
//! own device DMA does, and fails where it faults.
#![cfg(feature = "vm-memory")]

use softiommu_engine::api::{DevId, DeviceIommu, Engine, Iommufd};
use softiommu_engine::Prot;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, IommuMemory};

const GPA: u64 = 0x8000_0000;
const RAM: usize = 1 << 20;
/// The first half of RAM, read-write.
const RW_IOVA: u64 = 0x10_0000;
/// The second half, read-only, right after it.
const RO_IOVA: u64 = RW_IOVA + (RAM as u64) / 2;

struct Vm {
    guest: GuestMemoryMmap<()>,
    fd: Iommufd,
    dev: DevId,
    dma: IommuMemory<GuestMemoryMmap<()>, DeviceIommu<GuestMemoryMmap<()>>>,
}

fn vm() -> Vm {
    let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GPA), RAM)]).unwrap();
    let pattern: Vec<u8> = (0..RAM).map(|i| (i * 7 + i / 4096) as u8).collect();
    guest.write_slice(&pattern, GuestAddress(GPA)).unwrap();
    let engine = Engine::new();
    let mut fd = engine.open();
    let (dev, _) = fd.bind_device("0000:02:00.0").unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let host = guest.get_host_address(GuestAddress(GPA)).unwrap() as u64;
    let half = RAM as u64 / 2;
    let rw = Prot {
        read: true,
        write: true,
    };
    let ro = Prot {
        read: true,
        write: false,
    };
    fd.map_user(ioas, host, half, Some(RW_IOVA), rw).unwrap();
    fd.map_user(ioas, host + half, half, Some(RO_IOVA), ro)
        .unwrap();
    fd.attach(dev, ioas).unwrap();
    let iommu = DeviceIommu::new(&fd, dev, guest.clone()).unwrap();
    let dma = IommuMemory::new(guest.clone(), iommu, true, ());
    Vm {
        guest,
        fd,
        dev,
        dma,
    }
}

/// Deterministic (offset, length) pairs inside `[0, span)`.
fn ranges(span: u64, count: usize) -> Vec<(u64, usize)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = 1 + (x >> 33) % 9000;
            let off = (x >> 7) % (span - len);
            (off, len as usize)
        })
        .collect()
}

#[test]
fn reads_agree_with_the_engines_device_dma_byte_for_byte() {
    let mut vm = vm();
    for (off, len) in ranges(RAM as u64, 300) {
        let iova = RW_IOVA + off;
        let mut through_vm_memory = vec![0u8; len];
        vm.dma
            .read_slice(&mut through_vm_memory, GuestAddress(iova))
            .unwrap();
        let mut through_engine = vec![0u8; len];
        vm.fd.dma_read(vm.dev, iova, &mut through_engine).unwrap();
        assert_eq!(
            through_vm_memory, through_engine,
            "{len} bytes at {iova:#x}"
        );
    }
}

#[test]
fn writes_land_where_the_engines_dma_reads_them_and_the_other_way() {
    let mut vm = vm();
    for (i, (off, len)) in ranges(RAM as u64 / 2, 100).into_iter().enumerate() {
        let iova = RW_IOVA + off;
        let data: Vec<u8> = (0..len).map(|b| (b + i) as u8).collect();
        if i % 2 == 0 {
            vm.dma.write_slice(&data, GuestAddress(iova)).unwrap();
            let mut back = vec![0u8; len];
            vm.fd.dma_read(vm.dev, iova, &mut back).unwrap();
            assert_eq!(back, data);
            // The guest sees it at the GPA behind the IOVA.
            let mut guest = vec![0u8; len];
            vm.guest
                .read_slice(&mut guest, GuestAddress(GPA + off))
                .unwrap();
            assert_eq!(guest, data);
        } else {
            vm.fd.dma_write(vm.dev, iova, &data).unwrap();
            let mut back = vec![0u8; len];
            vm.dma.read_slice(&mut back, GuestAddress(iova)).unwrap();
            assert_eq!(back, data);
        }
    }
}

#[test]
fn faults_are_where_the_device_faults_and_unmaps_are_seen_at_once() {
    let mut vm = vm();
    // Read-only: reading works, writing faults, in both paths.
    let mut buf = [0u8; 16];
    vm.dma
        .read_slice(&mut buf, GuestAddress(RO_IOVA + 8))
        .unwrap();
    assert!(vm.dma.write_slice(&buf, GuestAddress(RO_IOVA + 8)).is_err());
    assert!(vm.fd.dma_write(vm.dev, RO_IOVA + 8, &buf).is_err());
    // A write that runs from the read-write half into the read-only one
    // fails as a whole: no byte of it lands.
    let before = {
        let mut b = vec![0u8; 64];
        vm.guest
            .read_slice(&mut b, GuestAddress(GPA + RAM as u64 / 2 - 32))
            .unwrap();
        b
    };
    assert!(vm
        .dma
        .write_slice(&[0xee; 64], GuestAddress(RO_IOVA - 32))
        .is_err());
    let mut after = vec![0u8; 64];
    vm.guest
        .read_slice(&mut after, GuestAddress(GPA + RAM as u64 / 2 - 32))
        .unwrap();
    assert_eq!(after, before);
    // Unmapped IOVA.
    let past = RO_IOVA + RAM as u64 / 2;
    assert!(vm.dma.read_slice(&mut buf, GuestAddress(past)).is_err());
    assert!(vm.fd.dma_read(vm.dev, past, &mut buf).is_err());
    // Unmapping is seen by the very next access.
    vm.dma.read_slice(&mut buf, GuestAddress(RW_IOVA)).unwrap();
    let ioas = softiommu_engine::api::IoasId(vm.fd.inspect().ioas[0].id);
    vm.fd.unmap(ioas, RW_IOVA, RAM as u64 / 2).unwrap();
    assert!(vm.dma.read_slice(&mut buf, GuestAddress(RW_IOVA)).is_err());
    assert!(vm.fd.dma_read(vm.dev, RW_IOVA, &mut buf).is_err());
}
