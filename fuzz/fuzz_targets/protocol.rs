//! cargo fuzz target: see softiommu_fuzz::protocol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| softiommu_fuzz::protocol::run(data));
