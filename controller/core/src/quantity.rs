//! Kubernetes `resource.Quantity` strings (`500m`, `1`, `1.5`, `1k`, `2Ki`, `1e3`) as integer
//! milli-units, the unit SMI TrafficSplit v1alpha1 weights are normalised to so that `500m`
//! and `1` keep their 1:2 proportion. Pure: used by the conversion webhook and by the
//! tolerant TrafficSplit parser.

/// A weight that is not a usable quantity; the message says what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a quantity at all.
    #[error(
        "{0:?} is not a quantity: use a number with an optional suffix, e.g. 100m, 1, 0.5, 25 or 1k"
    )]
    Syntax(String),
    /// Below zero.
    #[error("{0:?} is negative: weights must be >= 0 (0 sends no traffic)")]
    Negative(String),
    /// Too large to be a weight.
    #[error("{0:?} is too large: a weight must be below {max} milli-units", max = MAX_MILLI + 1)]
    TooLarge(String),
}

/// The largest weight in milli-units (the int32 range of the stored v1alpha4 weight).
pub const MAX_MILLI: u64 = i32::MAX as u64;

/// Parses `s` and returns its value in milli-units, rounded up to a whole milli-unit (as
/// Kubernetes' `MilliValue` does).
pub fn parse_milli(s: &str) -> Result<u64, QuantityError> {
    let syntax = || QuantityError::Syntax(s.to_string());
    let t = s.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(syntax());
    }
    // value = mantissa * base^exp10 (decimal) or * 2^exp2 (binary).
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().map_err(|_| syntax())?, 0),
        _ => return Err(syntax()),
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(QuantityError::TooLarge(s.to_string()));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| syntax())?
    };
    if mantissa == 0 {
        return Ok(0);
    }
    if negative {
        return Err(QuantityError::Negative(s.to_string()));
    }
    // milli = mantissa * 10^(exp10 + 3 - frac_len) * 2^exp2, rounded up.
    let too_large = || QuantityError::TooLarge(s.to_string());
    // In i64: an exponent near i32::MIN or i32::MAX must not overflow (found by fuzzing).
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| too_large())?;
    let scale = i64::from(exp10) + 3 - frac_len;
    let pow10 = |e: u64| u32::try_from(e).ok().and_then(|e| 10u128.checked_pow(e));
    let mut v = mantissa.checked_shl(exp2).ok_or_else(too_large)?;
    if v >> exp2 != mantissa {
        return Err(too_large());
    }
    if scale >= 0 {
        let p = pow10(scale.unsigned_abs()).ok_or_else(too_large)?;
        v = v.checked_mul(p).ok_or_else(too_large)?;
    } else {
        v = match pow10(scale.unsigned_abs()) {
            Some(p) => v.div_ceil(p),
            // Smaller than any milli-unit but not zero.
            None => 1,
        };
    }
    if v > u128::from(MAX_MILLI) {
        return Err(too_large());
    }
    u64::try_from(v).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzzing, issue 15): exponents near the ends of i32 overflowed the scale.
    #[test]
    fn extreme_exponents_fail_or_round_without_overflow() {
        assert!(matches!(
            parse_milli("1e2147483647"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            parse_milli("1E2147483645"),
            Err(QuantityError::TooLarge(_))
        ));
        assert_eq!(parse_milli("1.2345e-2147483648"), Ok(1));
        assert_eq!(parse_milli("0e2147483647"), Ok(0));
    }

    #[test]
    fn valid_quantities_in_milli_units() {
        for (s, want) in [
            ("10m", 10),
            ("1", 1000),
            ("1500m", 1500),
            ("0.5", 500),
            ("25", 25_000),
            ("75", 75_000),
            ("1k", 1_000_000),
            ("1.5", 1500),
            (".5", 500),
            ("+2", 2000),
            ("0", 0),
            ("0m", 0),
            ("-0", 0),
            ("1Ki", 1_024_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1u", 1),
            ("100n", 1),
            ("0.0001", 1),
            (" 3 ", 3000),
            ("2147483647m", 2_147_483_647),
        ] {
            assert_eq!(parse_milli(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn invalid_quantities_say_why() {
        for s in [
            "", "abc", "1.2.3", "5x", "m", "1 k", "1kk", "e3", ".", "1e", "--1",
        ] {
            let e = parse_milli(s).unwrap_err();
            assert!(matches!(e, QuantityError::Syntax(_)), "{s}: {e:?}");
            assert!(e.to_string().contains("e.g. 100m"), "{e}");
        }
        assert!(matches!(parse_milli("-5"), Err(QuantityError::Negative(_))));
        assert!(matches!(
            parse_milli("-500m"),
            Err(QuantityError::Negative(_))
        ));
        for s in [
            "10M",
            "1E",
            "1Ei",
            "2147483648m",
            "1e40",
            "99999999999999999999999999999999",
        ] {
            assert!(
                matches!(parse_milli(s), Err(QuantityError::TooLarge(_))),
                "{s}"
            );
        }
    }
}
