//! PCI addresses as Linux names functions (`dddd:bb:dd.f`), and where an
//! SR-IOV physical function's virtual functions sit.

use crate::spec::SriovSpec;
use std::fmt;

/// A function's address: PCI segment (domain) and 16-bit routing ID
/// (bus in bits 15:8, device 7:3, function 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// PCI segment.
    pub domain: u16,
    /// Bus, device and function as one routing ID.
    pub routing_id: u16,
}

impl Address {
    /// Parses `dddd:bb:dd.f` (hex, device 0..=0x1f, function 0..=7), the
    /// form sysfs uses; `None` for anything else.
    pub fn parse(text: &str) -> Option<Address> {
        let hex = |s: &str, digits: usize| -> Option<u16> {
            (s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u16::from_str_radix(s, 16).ok())
                .flatten()
        };
        let (domain, rest) = text.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        let (device, function) = (hex(device, 2)?, hex(function, 1)?);
        if device > 0x1f || function > 7 {
            return None;
        }
        Some(Address {
            domain: hex(domain, 4)?,
            routing_id: hex(bus, 2)? << 8 | device << 3 | function,
        })
    }

    /// The address of virtual function `index` (0-based) of the physical
    /// function here: First VF Offset plus `index` times VF Stride past the
    /// PF's routing ID. `None` past TotalVFs or past the last bus.
    pub fn virtual_function(self, sriov: &SriovSpec, index: u16) -> Option<Address> {
        if index >= sriov.total_vfs {
            return None;
        }
        let distance =
            u32::from(sriov.first_vf_offset) + u32::from(index) * u32::from(sriov.vf_stride);
        let routing_id = u16::try_from(u32::from(self.routing_id) + distance).ok()?;
        Some(Address {
            domain: self.domain,
            routing_id,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.routing_id;
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain,
            r >> 8,
            (r >> 3) & 0x1f,
            r & 7
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_refuse_malformed_text() {
        for text in ["0000:00:00.0", "0000:04:10.2", "abcd:ff:1f.7"] {
            assert_eq!(Address::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "0000:00:00",
            "0000:00:20.0",
            "0000:00:00.8",
            "000:00:00.0",
            "0000:0g:00.0",
            "0000:00:00.0 ",
            "mock:0",
        ] {
            assert_eq!(Address::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn virtual_functions_follow_offset_and_stride() {
        let sriov = SriovSpec {
            total_vfs: 4,
            vf_device: 0x10ed,
            first_vf_offset: 0x80,
            vf_stride: 2,
            vf_bars: Vec::new(),
            vf_msix: None,
        };
        let pf = Address::parse("0000:04:00.0").unwrap();
        let vf = |i| pf.virtual_function(&sriov, i).map(|a| a.to_string());
        assert_eq!(vf(0).as_deref(), Some("0000:04:10.0"));
        assert_eq!(vf(1).as_deref(), Some("0000:04:10.2"));
        assert_eq!(vf(3).as_deref(), Some("0000:04:10.6"));
        assert_eq!(vf(4), None, "past TotalVFs");
        let last_bus = Address::parse("0000:ff:1f.0").unwrap();
        assert_eq!(last_bus.virtual_function(&sriov, 0), None);
    }
}
