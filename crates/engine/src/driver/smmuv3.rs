//! Arm SMMUv3 nesting: the guest's stream table entry (STE) a nested HWPT
//! is made with, the context descriptor (CD) it points at in guest memory,
//! and the guest's invalidation commands sent through its vIOMMU.
//!
//! Field positions follow the SMMUv3 architecture (as Linux's
//! `arm-smmu-v3.h` names them). Only STE configurations a guest may hand
//! over are accepted (abort, bypass, stage-1 translate; `EIO` otherwise, as
//! Linux answers for invalid STE data), with a single (linear, `S1CDMax` 0
//! in practice) CD table whose first CD describes stage 1: 4 KiB granule,
//! AArch64 tables at TTB0, input size 64 − T0SZ.

use super::{DriverOps, InvalidationArray, Stage1Start};
use crate::errno::{Errno, Result};
use crate::object::{Object, ObjectTable};
use softiommu_pt::formats::ArmS1;
use softiommu_pt::nested::{Stage1, Stage1Format};
use softiommu_pt::FaultReason;
use softiommu_uapi::iommufd::{
    IommuViommuArmSmmuv3Invalidate, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
};

/// The SMMUv3 driver's ops.
pub struct Smmuv3;

impl DriverOps for Smmuv3 {
    /// The guest's STE, checked as Linux checks it (`EIO`).
    fn check_nested_data(&self, data: &[u8]) -> Result<()> {
        validate_ste(data)
    }

    /// 16-byte guest commands, read whole first, then handled in order; a
    /// command a guest may not send, or one naming a vSID the vIOMMU does not
    /// know, stops the array with `EIO`. TLB invalidations reach the stage-1
    /// IOTLBs of every nested HWPT made through this vIOMMU.
    fn invalidate_viommu(
        &self,
        objects: &mut ObjectTable,
        viommu: u32,
        array: InvalidationArray<'_>,
        done: &mut u32,
    ) -> Result<()> {
        if array.data_type != IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 {
            return Err(Errno::EINVAL);
        }
        let commands: Vec<IommuViommuArmSmmuv3Invalidate> = array.all()?;
        for command in commands {
            // Guest commands are little-endian, as the SMMU reads them.
            match decode_command(command.cmd.map(u64::from_le))? {
                Invalidation::Device { vsid } => {
                    objects
                        .device_by_virt_id(viommu, u64::from(vsid))
                        .ok_or(Errno::EIO)?;
                }
                action => {
                    for id in objects.nested_of_viommu(viommu) {
                        if let Some(Object::HwptNested(n)) = objects.get_mut(id) {
                            match action {
                                Invalidation::Range { iova, npages } => {
                                    n.stage1_tlb.invalidate(iova, npages)
                                }
                                _ => n.stage1_tlb.invalidate_all(),
                            }
                        }
                    }
                }
            }
            *done += 1;
        }
        Ok(())
    }

    /// The STE's configuration: abort, bypass, or the CD it points at.
    fn stage1(&self, data: &[u8]) -> Result<Stage1Start> {
        Ok(match ste_config(data) {
            SteConfig::Abort => Stage1Start::Abort,
            SteConfig::Bypass => Stage1Start::Bypass,
            SteConfig::Stage1 { cd_gpa } => Stage1Start::Descriptor {
                gpa: cd_gpa,
                len: CD_SIZE,
            },
        })
    }

    fn stage1_from_descriptor(
        &self,
        descriptor: &[u8],
    ) -> std::result::Result<(Stage1, u32), FaultReason> {
        let cd: &[u8; CD_SIZE] = descriptor.try_into().map_err(|_| FaultReason::NotPresent)?;
        cd_stage1(cd)
    }
}

const STE0_V: u64 = 1 << 0;
const STE0_CFG_SHIFT: u32 = 1;
const STE0_CFG_MASK: u64 = 0x7 << STE0_CFG_SHIFT;
const CFG_ABORT: u64 = 0;
const CFG_BYPASS: u64 = 4;
const CFG_S1_TRANS: u64 = 5;
/// S1ContextPtr, bits 51:6.
const STE0_S1CTXPTR: u64 = ((1 << 52) - 1) & !((1 << 6) - 1);
/// Fields of STE word 0 a guest may set: V, Config, S1Fmt, S1ContextPtr,
/// S1CDMax.
const STE0_ALLOWED: u64 = STE0_V | STE0_CFG_MASK | (0x3 << 4) | STE0_S1CTXPTR | (0x1f << 59);
/// Fields of STE word 1 a guest may set: S1DSS, S1CIR, S1COR, S1CSH,
/// S1STALLD, EATS.
const STE1_ALLOWED: u64 = 0xff | (1 << 27) | (0x3 << 28);
const STE1_EATS_SHIFT: u32 = 28;
/// EATS values Linux takes from a guest: abort and full ATS.
const EATS_ABT: u64 = 0;
const EATS_TRANS: u64 = 1;

/// CD word 0: T0SZ 5:0, TG0 7:6, EPD0 14, V 31, AA64 41.
const CD0_T0SZ: u64 = 0x3f;
const CD0_TG0_SHIFT: u32 = 6;
const CD0_EPD0: u64 = 1 << 14;
const CD0_V: u64 = 1 << 31;
const CD0_AA64: u64 = 1 << 41;
/// CD word 1: TTB0, bits 51:4.
const CD1_TTB0: u64 = ((1 << 52) - 1) & !0xf;
/// A context descriptor's size in bytes.
const CD_SIZE: usize = 64;

/// What a guest STE asks of the translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SteConfig {
    /// No DMA gets through.
    Abort,
    /// Stage 2 only.
    Bypass,
    /// Stage 1 described by the CD at this GPA, then stage 2.
    Stage1 { cd_gpa: u64 },
}

fn words(data: &[u8]) -> (u64, u64) {
    let word = |k: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&data[k..k + 8]);
        u64::from_le_bytes(raw)
    };
    (word(0), word(8))
}

/// Checks a guest STE handed to `IOMMU_HWPT_ALLOC` (Linux
/// `arm_smmu_validate_vste`): an invalid STE (V clear) aborts and is fine;
/// fields a guest may not set, other configurations and EATS values other
/// than abort or full ATS are `EIO`.
fn validate_ste(data: &[u8]) -> Result<()> {
    let (ste0, ste1) = words(data);
    if ste0 & STE0_V == 0 {
        return Ok(());
    }
    if ste0 & !STE0_ALLOWED != 0 || ste1 & !STE1_ALLOWED != 0 {
        return Err(Errno::EIO);
    }
    if !matches!(
        (ste0 & STE0_CFG_MASK) >> STE0_CFG_SHIFT,
        CFG_ABORT | CFG_BYPASS | CFG_S1_TRANS
    ) {
        return Err(Errno::EIO);
    }
    if !matches!((ste1 >> STE1_EATS_SHIFT) & 0x3, EATS_ABT | EATS_TRANS) {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// The translation a (validated) guest STE selects.
fn ste_config(data: &[u8]) -> SteConfig {
    let (ste0, _) = words(data);
    if ste0 & STE0_V == 0 {
        return SteConfig::Abort;
    }
    match (ste0 & STE0_CFG_MASK) >> STE0_CFG_SHIFT {
        CFG_BYPASS => SteConfig::Bypass,
        CFG_S1_TRANS => SteConfig::Stage1 {
            cd_gpa: ste0 & STE0_S1CTXPTR,
        },
        _ => SteConfig::Abort,
    }
}

/// Stage 1 as a context descriptor describes it; a CD the model cannot
/// walk (invalid, TTB0 walks disabled, not AArch64, a granule other than
/// 4 KiB, a bad input size) is a translation fault.
fn cd_stage1(cd: &[u8; CD_SIZE]) -> std::result::Result<(Stage1, u32), FaultReason> {
    let (cd0, cd1) = words(cd);
    if cd0 & CD0_V == 0 || cd0 & CD0_EPD0 != 0 || cd0 & CD0_AA64 == 0 {
        return Err(FaultReason::NotPresent);
    }
    if (cd0 >> CD0_TG0_SHIFT) & 0x3 != 0 {
        return Err(FaultReason::NotPresent);
    }
    let t0sz = (cd0 & CD0_T0SZ) as u32;
    if !(16..=39).contains(&t0sz) {
        return Err(FaultReason::NotPresent);
    }
    let ia_bits = 64 - t0sz;
    let stage1 = Stage1 {
        format: Stage1Format::ArmS1,
        root_gpa: cd1 & CD1_TTB0 & !0xfff,
        top_level: ArmS1::top_level(ia_bits),
    };
    Ok((stage1, ia_bits))
}

/// Guest commands the vIOMMU accepts (Linux `arm_vsmmu_convert_user_cmd`).
mod cmd {
    pub const CFGI_CD: u64 = 0x05;
    pub const CFGI_CD_ALL: u64 = 0x06;
    pub const TLBI_NH_ALL: u64 = 0x10;
    pub const TLBI_NH_ASID: u64 = 0x11;
    pub const TLBI_NH_VA: u64 = 0x12;
    pub const TLBI_NH_VAA: u64 = 0x13;
    pub const TLBI_NSNH_ALL: u64 = 0x30;
    pub const ATC_INV: u64 = 0x40;
}

/// What one guest command does to the stage-1 IOTLBs of its vIOMMU's
/// nested HWPTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invalidation {
    /// Every cached translation (ASIDs are not modelled: a per-ASID flush
    /// flushes them all, which is never less than the guest asked for).
    All,
    /// `[iova, iova + npages × 4 KiB)`.
    Range { iova: u64, npages: u64 },
    /// A command about a device (vSID) that drops no translation.
    Device { vsid: u32 },
}

/// Decodes one 16-byte guest command; `EIO` for commands a guest may not
/// send.
fn decode_command(entry: [u64; 2]) -> Result<Invalidation> {
    let op = entry[0] & 0xff;
    match op {
        cmd::TLBI_NH_ALL | cmd::TLBI_NSNH_ALL | cmd::TLBI_NH_ASID => Ok(Invalidation::All),
        cmd::TLBI_NH_VA | cmd::TLBI_NH_VAA => {
            let iova = entry[1] & !0xfff;
            // Range form (TG non-zero): NUM 16:12 and SCALE 24:20 of word 0
            // count (NUM + 1) << SCALE granules of TG (1: 4 KiB, 2: 16 KiB,
            // 3: 64 KiB).
            let tg = (entry[1] >> 10) & 0x3;
            let npages = if tg == 0 {
                1
            } else {
                let num = (entry[0] >> 12) & 0x1f;
                let scale = (entry[0] >> 20) & 0x1f;
                let granule_pages = [1, 1, 4, 16][tg as usize];
                ((num + 1) << scale) * granule_pages
            };
            Ok(Invalidation::Range { iova, npages })
        }
        cmd::CFGI_CD | cmd::CFGI_CD_ALL | cmd::ATC_INV => Ok(Invalidation::Device {
            vsid: (entry[0] >> 32) as u32,
        }),
        _ => Err(Errno::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ste(ste0: u64, ste1: u64) -> Vec<u8> {
        let mut d = ste0.to_le_bytes().to_vec();
        d.extend_from_slice(&ste1.to_le_bytes());
        d
    }

    #[test]
    fn guest_stes_are_checked_as_linux_checks_them() {
        assert_eq!(
            validate_ste(&ste(0, u64::MAX)),
            Ok(()),
            "invalid STEs abort"
        );
        assert_eq!(validate_ste(&ste(1 | (5 << 1) | 0x4000, 0)), Ok(()));
        assert_eq!(validate_ste(&ste(1 | (4 << 1), 0)), Ok(()));
        assert_eq!(
            validate_ste(&ste(1 | (6 << 1), 0)),
            Err(Errno::EIO),
            "stage 2 is the host's"
        );
        assert_eq!(
            validate_ste(&ste(1 | (5 << 1) | (1 << 52), 0)),
            Err(Errno::EIO)
        );
        assert_eq!(validate_ste(&ste(1 | (5 << 1), 1 << 8)), Err(Errno::EIO));
        assert_eq!(
            validate_ste(&ste(1 | (5 << 1), 2 << 28)),
            Err(Errno::EIO),
            "split ATS"
        );
        assert_eq!(
            ste_config(&ste(1 | (5 << 1) | 0x4000, 0)),
            SteConfig::Stage1 { cd_gpa: 0x4000 }
        );
        assert_eq!(ste_config(&ste(4 << 1, 0)), SteConfig::Abort);
    }

    #[test]
    fn range_invalidations_count_granules() {
        let va = |w0: u64, w1: u64| decode_command([cmd::TLBI_NH_VA | w0, w1]);
        assert_eq!(
            va(0, 0x5000),
            Ok(Invalidation::Range {
                iova: 0x5000,
                npages: 1
            })
        );
        assert_eq!(
            va((3 << 12) | (1 << 20), 0x5000 | (1 << 10)),
            Ok(Invalidation::Range {
                iova: 0x5000,
                npages: 8
            })
        );
        assert_eq!(decode_command([0x20, 0]), Err(Errno::EIO));
    }
}
