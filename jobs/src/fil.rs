//! Amounts of FIL as a job spec states them (an input's `max_price`) and the spending ledger
//! keeps them: exact attoFIL in a `u128`, parsed from FIL (`"0.001 FIL"`, `"1.5"`) or attoFIL
//! (`"1500 attoFIL"`), never negative and never above the total supply ([`MAX_ATTOFIL`]).
//!
//! The filecoin crate's `amount` module parses through these functions into its
//! `TokenAmount`s, so a price means the same in a spec, on the command line and on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::spending::MAX_ATTOFIL;

/// attoFIL in one FIL.
const ATTO_PER_FIL: u128 = 1_000_000_000_000_000_000;

/// Decimals of FIL one attoFIL is.
const DECIMALS: usize = 18;

/// Longest decimal string parsed: the total supply has 28 digits, and longer input is an
/// overflow however it parses (checked before building the number).
const MAX_DIGITS: usize = 40;

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing to parse.
    #[error("empty amount")]
    Empty,
    /// Not a decimal number (with an optional `FIL`/`attoFIL` unit).
    #[error("invalid amount {input:?}: expected a decimal number of FIL (\"1.5\", \"1.5 FIL\") or attoFIL (\"1500 attoFIL\")")]
    Invalid {
        /// What was given.
        input: String,
    },
    /// Below zero.
    #[error("negative amount {input}: amounts of FIL are never below zero")]
    Negative {
        /// What was given, or the result that went below zero.
        input: String,
    },
    /// More than 18 decimals of FIL (finer than one attoFIL).
    #[error("amount {input} is finer than one attoFIL (at most 18 decimals of FIL)")]
    TooPrecise {
        /// What was given.
        input: String,
    },
    /// Above the total FIL supply.
    #[error("amount {input} overflows: above the total FIL supply of 2000000000 FIL")]
    Overflow {
        /// What was given, or the result that overflowed.
        input: String,
    },
}

/// An exact, non-negative amount of FIL, at most the total supply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttoFil(u128);

impl AttoFil {
    /// `atto` attoFIL, if it is at most [`MAX_ATTOFIL`].
    pub fn new(atto: u128) -> Result<AttoFil, AmountError> {
        if atto > MAX_ATTOFIL {
            return Err(AmountError::Overflow { input: atto.to_string() });
        }
        Ok(AttoFil(atto))
    }

    /// The amount in attoFIL.
    pub fn atto(self) -> u128 {
        self.0
    }

    /// A decimal attoFIL integer, the form Lotus uses on the wire (`"1500"`); a sign is
    /// accepted only on zero (`"-0"`, `"+0"`), and `"+n"` is `n`.
    pub fn parse_atto(input: &str) -> Result<AttoFil, AmountError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Invalid { input: input.to_owned() });
        }
        if negative && digits.bytes().any(|b| b != b'0') {
            return Err(AmountError::Negative { input: input.to_owned() });
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return Err(AmountError::Overflow { input: input.to_owned() });
        }
        let overflow = || AmountError::Overflow { input: input.to_owned() };
        let atto = if significant.is_empty() { 0 } else { significant.parse::<u128>().map_err(|_| overflow())? };
        AttoFil::new(atto).map_err(|_| overflow())
    }

    /// A decimal number of FIL (`"1.5"`, `".25"`, `"0.000000000000000001"`), at most 18
    /// decimals.
    pub fn parse_fil(input: &str) -> Result<AttoFil, AmountError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let is_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !is_digits(whole) || !is_digits(fraction) {
            return Err(AmountError::Invalid { input: input.to_owned() });
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > DECIMALS {
            return Err(AmountError::TooPrecise { input: input.to_owned() });
        }
        let mut atto = String::with_capacity(1 + whole.len() + DECIMALS);
        if negative {
            atto.push('-');
        }
        atto.push_str(if whole.is_empty() { "0" } else { whole });
        atto.push_str(fraction);
        atto.extend(std::iter::repeat_n('0', DECIMALS - fraction.len()));
        AttoFil::parse_atto(&atto).map_err(|e| e.for_input(input))
    }

    /// An amount with an optional unit: `"1.5"` and `"1.5 FIL"` are FIL, `"1500 attoFIL"` (or
    /// `"1500 atto"`) is attoFIL. Units are case-insensitive.
    pub fn parse(input: &str) -> Result<AttoFil, AmountError> {
        let lower = input.trim().to_ascii_lowercase();
        let parsed = if let Some(number) = lower.strip_suffix("attofil").or_else(|| lower.strip_suffix("atto")) {
            AttoFil::parse_atto(number)
        } else if let Some(number) = lower.strip_suffix("fil") {
            AttoFil::parse_fil(number)
        } else {
            AttoFil::parse_fil(&lower)
        };
        parsed.map_err(|e| match e {
            AmountError::Empty => AmountError::Invalid { input: input.to_owned() },
            other => other.for_input(input),
        })
    }
}

impl AmountError {
    /// The same refusal, naming `input` (what the user wrote, not an intermediate form).
    fn for_input(self, input: &str) -> AmountError {
        let input = input.to_owned();
        match self {
            AmountError::Empty => AmountError::Empty,
            AmountError::Invalid { .. } => AmountError::Invalid { input },
            AmountError::Negative { .. } => AmountError::Negative { input },
            AmountError::TooPrecise { .. } => AmountError::TooPrecise { input },
            AmountError::Overflow { .. } => AmountError::Overflow { input },
        }
    }
}

/// In FIL without trailing zeros, exactly: `"1.5 FIL"`, `"0.000000000000000001 FIL"`, `"0 FIL"`.
impl fmt::Display for AttoFil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / ATTO_PER_FIL, self.0 % ATTO_PER_FIL);
        if fraction == 0 {
            return write!(f, "{whole} FIL");
        }
        let fraction = format!("{fraction:0>DECIMALS$}");
        write!(f, "{whole}.{} FIL", fraction.trim_end_matches('0'))
    }
}

impl FromStr for AttoFil {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<AttoFil, AmountError> {
        AttoFil::parse(s)
    }
}

/// Written as its [`Display`](fmt::Display) form, exact and readable (`"0.001 FIL"`).
impl Serialize for AttoFil {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read with [`AttoFil::parse`]: FIL or attoFIL, with or without a unit.
impl<'de> Deserialize<'de> for AttoFil {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AttoFil, D::Error> {
        let text = String::deserialize(deserializer)?;
        AttoFil::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fil_and_atto_forms_are_the_same_amount_and_print_exactly() {
        let amount = AttoFil::parse("1.5 FIL").unwrap();
        assert_eq!(amount.atto(), 1_500_000_000_000_000_000);
        assert_eq!(AttoFil::parse("1500000000000000000 attoFIL").unwrap(), amount);
        assert_eq!(AttoFil::parse("1500000000000000000 atto").unwrap(), amount);
        assert_eq!(AttoFil::parse("1.5").unwrap(), amount);
        assert_eq!(amount.to_string(), "1.5 FIL");
        assert_eq!(AttoFil::parse("0.000000000000000001 fil").unwrap().to_string(), "0.000000000000000001 FIL");
        assert_eq!(AttoFil::parse(".25").unwrap().to_string(), "0.25 FIL");
        assert_eq!(AttoFil::parse("2000000000").unwrap().to_string(), "2000000000 FIL");
        assert_eq!(AttoFil::parse_atto("-0").unwrap(), AttoFil::default());
        assert_eq!(AttoFil::default().to_string(), "0 FIL");
    }

    #[test]
    fn negative_overflowing_too_precise_and_malformed_amounts_are_refused() {
        assert!(matches!(AttoFil::parse("-0.5 FIL"), Err(AmountError::Negative { .. })));
        assert!(matches!(AttoFil::parse_atto("-1"), Err(AmountError::Negative { .. })));
        assert!(matches!(AttoFil::parse("2000000000.000000000000000001"), Err(AmountError::Overflow { .. })));
        assert!(matches!(AttoFil::parse_atto(&"9".repeat(100)), Err(AmountError::Overflow { .. })));
        assert!(matches!(AttoFil::new(MAX_ATTOFIL + 1), Err(AmountError::Overflow { .. })));
        assert!(matches!(AttoFil::parse("0.0000000000000000001"), Err(AmountError::TooPrecise { .. })));
        for bad in ["", "abc", "1.2.3", "1e18", "0x10", "1,5", ".", "1 BTC", "1.5 attoFIL"] {
            assert!(AttoFil::parse(bad).is_err(), "{bad:?} accepted");
        }
        let error = AttoFil::parse("-2 FIL").unwrap_err().to_string();
        assert!(error.contains("-2 FIL"), "{error}");
    }

    #[test]
    fn serde_round_trips_through_the_exact_fil_form() {
        let amount: AttoFil = serde_json::from_str("\"1000000000000000 attoFIL\"").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"0.001 FIL\"");
        assert_eq!(serde_json::from_str::<AttoFil>("\"0.001 FIL\"").unwrap(), amount);
        let error = serde_json::from_str::<AttoFil>("\"-1 FIL\"").unwrap_err().to_string();
        assert!(error.contains("negative"), "{error}");
    }
}
