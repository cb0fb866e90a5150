//! Numbers written as text to kernel attributes (sysfs and procfs stores),
//! parsed as Linux's `kstrtou*(text, 0)` parses them.

use crate::errno::{Errno, Result};

/// An unsigned number no larger than `max`: decimal, `0x` hex or
/// leading-`0` octal, one leading `+` and one trailing newline allowed;
/// `EINVAL` for anything else, `ERANGE` past `max`.
pub fn parse_unsigned(text: &[u8], max: u64) -> Result<u64> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = std::str::from_utf8(text).map_err(|_| Errno::EINVAL)?;
    let text = text.strip_prefix('+').unwrap_or(text);
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(Errno::EINVAL);
    }
    let value = u64::from_str_radix(digits, radix).map_err(|_| Errno::ERANGE)?;
    if value > max {
        return Err(Errno::ERANGE);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_kstrtou() {
        let u32_max = u64::from(u32::MAX);
        assert_eq!(parse_unsigned(b"7", u32_max), Ok(7));
        assert_eq!(parse_unsigned(b"12\n", u32_max), Ok(12));
        assert_eq!(parse_unsigned(b"+3", u32_max), Ok(3));
        assert_eq!(parse_unsigned(b"0x1f", u32_max), Ok(31));
        assert_eq!(parse_unsigned(b"010", u32_max), Ok(8));
        assert_eq!(parse_unsigned(b"0", u32_max), Ok(0));
        assert_eq!(parse_unsigned(b"", u32_max), Err(Errno::EINVAL));
        assert_eq!(parse_unsigned(b"-1", u32_max), Err(Errno::EINVAL));
        assert_eq!(parse_unsigned(b"1 ", u32_max), Err(Errno::EINVAL));
        assert_eq!(parse_unsigned(b"09", u32_max), Err(Errno::EINVAL));
        assert_eq!(parse_unsigned(b"4294967296", u32_max), Err(Errno::ERANGE));
        assert_eq!(parse_unsigned(b"65536", 65535), Err(Errno::ERANGE));
    }
}
