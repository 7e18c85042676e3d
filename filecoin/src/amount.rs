//! FIL amounts: parsing and printing FIL and attoFIL, and the checks every amount passes.
//!
//! Amounts are `fvm_shared`'s [`TokenAmount`] (an attoFIL big integer, `Ord`). Lotus sends
//! them as decimal attoFIL strings (`"1500000000000000000"` is 1.5 FIL). Every amount this
//! crate reads or sends is checked: never negative, and never above the total FIL supply
//! (2 × 10⁹ FIL) — a larger figure cannot be a real balance or price and is refused as an
//! overflow rather than carried along as an unbounded big integer. Parsing is shoal-jobs'
//! ([`AttoFil`]), so a price reads the same in a job spec as here.

use fvm_shared::bigint::Sign;
use fvm_shared::econ::TokenAmount;
use shoal_jobs::AttoFil;

/// The most attoFIL any amount may hold: the total FIL supply, 2 × 10⁹ FIL — the bound the
/// spending ledger keeps its books to ([`shoal_jobs::MAX_ATTOFIL`]), so the two agree.
pub fn max_amount() -> TokenAmount {
    TokenAmount::from_atto(shoal_jobs::MAX_ATTOFIL)
}

pub use shoal_jobs::AmountError;

/// Checks that `amount` is neither negative nor above [`max_amount`].
pub fn check(amount: &TokenAmount) -> Result<(), AmountError> {
    if amount.is_negative() {
        return Err(AmountError::Negative { input: format_atto(amount) });
    }
    if *amount > max_amount() {
        return Err(AmountError::Overflow { input: format_atto(amount) });
    }
    Ok(())
}

/// `a + b`, refused if the sum leaves the valid range.
pub fn checked_add(a: &TokenAmount, b: &TokenAmount) -> Result<TokenAmount, AmountError> {
    check(a)?;
    check(b)?;
    let sum = a + b;
    check(&sum)?;
    Ok(sum)
}

/// `a - b`, refused if the difference is negative (spending more than there is).
pub fn checked_sub(a: &TokenAmount, b: &TokenAmount) -> Result<TokenAmount, AmountError> {
    check(a)?;
    check(b)?;
    let difference = a - b;
    check(&difference)?;
    Ok(difference)
}

/// Parses a decimal attoFIL integer — the form Lotus uses on the wire (`"1500"`).
pub fn parse_atto(input: &str) -> Result<TokenAmount, AmountError> {
    AttoFil::parse_atto(input).map(token_amount)
}

/// Parses a decimal number of FIL (`"1.5"`, `"0.000000000000000001"`), at most 18 decimals.
pub fn parse_fil(input: &str) -> Result<TokenAmount, AmountError> {
    AttoFil::parse_fil(input).map(token_amount)
}

/// Parses an amount with an optional unit: `"1.5"` and `"1.5 FIL"` are FIL, `"1500 attoFIL"`
/// (or `"1500 atto"`) is attoFIL. Units are case-insensitive.
pub fn parse_amount(input: &str) -> Result<TokenAmount, AmountError> {
    AttoFil::parse(input).map(token_amount)
}

/// The same amount as a `TokenAmount`.
pub fn token_amount(amount: AttoFil) -> TokenAmount {
    TokenAmount::from_atto(amount.atto())
}

/// The decimal attoFIL string Lotus uses on the wire (`"1500000000000000000"`).
pub fn format_atto(amount: &TokenAmount) -> String {
    amount.atto().to_str_radix(10)
}

/// A human-readable amount in FIL without trailing zeros: `"1.5 FIL"`, `"0 FIL"`.
pub fn format_fil(amount: &TokenAmount) -> String {
    let atto = amount.atto();
    let sign = if atto.sign() == Sign::Minus { "-" } else { "" };
    let digits = atto.magnitude().to_str_radix(10);
    let padded = format!("{digits:0>width$}", width = TokenAmount::DECIMALS + 1);
    let (whole, fraction) = padded.split_at(padded.len() - TokenAmount::DECIMALS);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{whole} FIL")
    } else {
        format!("{sign}{whole}.{fraction} FIL")
    }
}

/// Serde for a [`TokenAmount`] as Lotus's decimal attoFIL string, checked on the way in and
/// out (`#[serde(with = "shoal_filecoin::amount::atto_string")]`).
pub mod atto_string {
    use fvm_shared::econ::TokenAmount;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the amount as a decimal attoFIL string.
    pub fn serialize<S: Serializer>(amount: &TokenAmount, serializer: S) -> Result<S::Ok, S::Error> {
        super::check(amount).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&super::format_atto(amount))
    }

    /// Reads a decimal attoFIL string, refusing negative and overflowing amounts.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TokenAmount, D::Error> {
        let s = String::deserialize(deserializer)?;
        super::parse_atto(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fil_and_atto_round_trip() {
        let amount = parse_fil("1.5").unwrap();
        assert_eq!(format_atto(&amount), "1500000000000000000");
        assert_eq!(format_fil(&amount), "1.5 FIL");
        assert_eq!(parse_atto("1500000000000000000").unwrap(), amount);
        assert_eq!(parse_amount("1.5 FIL").unwrap(), amount);
        assert_eq!(parse_amount("1500000000000000000 attoFIL").unwrap(), amount);
        assert_eq!(format_fil(&parse_fil("0.000000000000000001").unwrap()), "0.000000000000000001 FIL");
        assert_eq!(format_fil(&TokenAmount::from_atto(0)), "0 FIL");
        assert_eq!(format_fil(&parse_fil(".25").unwrap()), "0.25 FIL");
        assert_eq!(format_fil(&parse_fil("2000000000").unwrap()), "2000000000 FIL");
        assert_eq!(parse_atto("-0").unwrap(), TokenAmount::from_atto(0));
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert!(matches!(parse_fil("-1"), Err(AmountError::Negative { .. })));
        assert!(matches!(parse_atto("-1"), Err(AmountError::Negative { .. })));
        assert!(matches!(parse_amount("-0.5 FIL"), Err(AmountError::Negative { .. })));
        assert!(matches!(check(&TokenAmount::from_atto(-1)), Err(AmountError::Negative { .. })));
        let one = TokenAmount::from_atto(1);
        let two = TokenAmount::from_atto(2);
        assert!(matches!(checked_sub(&one, &two), Err(AmountError::Negative { .. })));
        assert_eq!(checked_sub(&two, &one).unwrap(), one);
    }

    #[test]
    fn overflowing_amounts_are_refused() {
        assert!(matches!(parse_fil("2000000000.000000000000000001"), Err(AmountError::Overflow { .. })));
        assert!(matches!(parse_atto(&"9".repeat(100)), Err(AmountError::Overflow { .. })));
        assert!(matches!(checked_add(&max_amount(), &TokenAmount::from_atto(1)), Err(AmountError::Overflow { .. })));
        assert!(matches!(
            serde_json::from_str::<Wrapped>("\"2000000000000000000000000001\""),
            Err(e) if e.to_string().contains("overflows")
        ));
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for bad in ["", "abc", "1.2.3", "1e18", "0x10", "1,5", ".", "1 BTC"] {
            assert!(parse_amount(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(parse_fil("0.0000000000000000001"), Err(AmountError::TooPrecise { .. })));
        assert!(matches!(parse_atto("1.5"), Err(AmountError::Invalid { .. })));
    }

    #[derive(serde::Deserialize)]
    #[serde(transparent)]
    struct Wrapped(
        #[serde(with = "atto_string")]
        #[allow(dead_code)]
        TokenAmount,
    );
}
