//! cargo fuzz target: see softiommu_fuzz::vfio.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softiommu_fuzz::vfio::run(data));
