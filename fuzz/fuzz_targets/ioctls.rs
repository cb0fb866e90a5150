//! cargo fuzz target: see softiommu_fuzz::ioctls.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softiommu_fuzz::ioctls::run(data));
