//! A small device model doing DMA through softiommu with rust-vmm's
//! `vm-memory`: a copy engine reads a descriptor and copies a buffer, all
//! at IOVAs, through `IommuMemory` over the guest's memory and the
//! device's `DeviceIommu`. Then the source is unmapped and the same copy
//! faults, as the device would.
//!
//! Run: `cargo run -p softiommu-engine --features vm-memory --example vm_memory_dma`

use softiommu_engine::api::{DeviceIommu, Engine};
use softiommu_engine::Prot;
use vm_memory::{
    Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, IommuMemory,
};

/// Guest RAM: 2 MiB at 2 GiB.
const GPA: u64 = 0x8000_0000;
const RAM: usize = 2 << 20;
/// Where the guest's driver mapped things for the device.
const DESCRIPTOR_IOVA: u64 = 0x1000;
const SOURCE_IOVA: u64 = 0x10_0000;
const DESTINATION_IOVA: u64 = 0x20_0000;

/// The device: one descriptor `{ source, destination, length }` (three
/// little-endian u64s) at a fixed IOVA; running it copies `length` bytes.
fn run_copy_engine(dma: &impl GuestMemory) -> Result<u64, String> {
    let mut descriptor = [0u64; 3];
    for (i, word) in descriptor.iter_mut().enumerate() {
        *word = dma
            .read_obj(GuestAddress(DESCRIPTOR_IOVA + 8 * i as u64))
            .map_err(|e| format!("reading the descriptor: {e}"))?;
    }
    let [source, destination, length] = descriptor;
    let mut data = vec![0u8; length as usize];
    dma.read_slice(&mut data, GuestAddress(source))
        .map_err(|e| format!("reading the source: {e}"))?;
    dma.write_slice(&data, GuestAddress(destination))
        .map_err(|e| format!("writing the destination: {e}"))?;
    Ok(length)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GPA), RAM)])?;
    let host = guest.get_host_address(GuestAddress(GPA))? as u64;
    // The guest's descriptor at GPA, its data at GPA + 1 MiB.
    let message = b"bytes the device moved through the IOMMU";
    guest.write_slice(message, GuestAddress(GPA + (1 << 20)))?;
    let descriptor = [SOURCE_IOVA, DESTINATION_IOVA, message.len() as u64];
    for (i, word) in descriptor.iter().enumerate() {
        guest.write_obj(*word, GuestAddress(GPA + 8 * i as u64))?;
    }

    // The VMM: the NIC's DMA goes through an IOAS that maps guest pages.
    let engine = Engine::new();
    let mut fd = engine.open();
    let (dev, _) = fd.bind_device("0000:02:00.0")?;
    let ioas = fd.alloc_ioas()?;
    let ro = Prot {
        read: true,
        write: false,
    };
    let rw = Prot {
        read: true,
        write: true,
    };
    fd.map_user(ioas, host, 4096, Some(DESCRIPTOR_IOVA), ro)?;
    fd.map_user(ioas, host + (1 << 20), 4096, Some(SOURCE_IOVA), ro)?;
    fd.map_user(
        ioas,
        host + (1 << 20) + 4096,
        4096,
        Some(DESTINATION_IOVA),
        rw,
    )?;
    let (hwpt, _) = fd.attach(dev, ioas)?;
    println!(
        "0000:02:00.0 attached to IOAS {} through HWPT {}",
        ioas.0, hwpt.0
    );

    // The device model sees only IOVAs.
    let iommu = DeviceIommu::new(&fd, dev, guest.clone())?;
    let dma = IommuMemory::new(guest.clone(), iommu, true, ());
    let copied = run_copy_engine(&dma)?;
    let mut landed = vec![0u8; copied as usize];
    guest.read_slice(&mut landed, GuestAddress(GPA + (1 << 20) + 4096))?;
    println!(
        "copied {copied} bytes: {:?}",
        String::from_utf8_lossy(&landed)
    );

    fd.unmap(ioas, SOURCE_IOVA, 4096)?;
    match run_copy_engine(&dma) {
        Ok(_) => Err("the copy went through an unmapped source".into()),
        Err(fault) => {
            println!("after unmapping the source: {fault}");
            Ok(())
        }
    }
}
