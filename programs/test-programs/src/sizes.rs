//! Parsing of byte counts given on the command line.

/// A byte count argument that is not a number.
#[derive(Debug, thiserror::Error)]
#[error("{argument:?} is not a byte count (digits with an optional K, M or G binary suffix)")]
pub struct ByteCountError {
    /// The argument as given.
    pub argument: String,
}

/// Parses `1048576`, `1024K`, `1M` or `1G` (binary multiples) into bytes.
pub fn parse_byte_count(argument: &str) -> Result<u64, ByteCountError> {
    let error = || ByteCountError {
        argument: argument.to_owned(),
    };
    let (digits, multiplier) = match argument.as_bytes().last() {
        Some(b'K' | b'k') => (&argument[..argument.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&argument[..argument.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&argument[..argument.len() - 1], 1 << 30),
        _ => (argument, 1),
    };
    let count: u64 = digits.parse().map_err(|_| error())?;
    count.checked_mul(multiplier).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::parse_byte_count;

    #[test]
    fn parses_plain_and_suffixed_counts() {
        assert_eq!(parse_byte_count("4096").unwrap(), 4096);
        assert_eq!(parse_byte_count("3K").unwrap(), 3 * 1024);
        assert_eq!(parse_byte_count("2M").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_byte_count("1G").unwrap(), 1 << 30);
        for bad in ["", "G", "-1", "1.5M", "1T", "99999999999999999999G"] {
            assert!(parse_byte_count(bad).is_err(), "{bad:?} accepted");
        }
    }
}
