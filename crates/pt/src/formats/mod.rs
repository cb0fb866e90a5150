//! The page-table formats. Each file is one format's bit layout and its
//! domain configurations; bit positions follow the hardware specifications.

mod amd_layout;
pub mod amdv1;
pub mod arm_s1;
pub mod arm_s2;
pub mod mock;
pub mod vtd_ss;
pub mod x86_64;

pub use amdv1::AmdV1;
pub use arm_s1::ArmS1;
pub use arm_s2::ArmS2;
pub use mock::{Mock, MockKind};
pub use vtd_ss::VtdSecondStage;
pub use x86_64::X86_64;
