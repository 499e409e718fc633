//! Durations as plugin.yaml writes them: `500` (milliseconds), `"500ms"`,
//! `"2s"`, `"1m"`, `"1h"`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing was written.
    #[error("it is empty")]
    Empty,
    /// The text does not start with a number (signs are not accepted).
    #[error("it does not start with a whole number")]
    MissingNumber,
    /// A number was written without a unit, which would be ambiguous in a string.
    #[error("it has no unit")]
    MissingUnit,
    /// The unit is not one of `ms`, `s`, `m`, `h`.
    #[error("unknown unit {unit:?}")]
    UnknownUnit {
        /// What followed the number.
        unit: String,
    },
    /// A negative amount of time.
    #[error("it is negative")]
    Negative,
    /// A fraction such as `1.5s`; write `1500ms` instead.
    #[error("it is not a whole number")]
    NotWhole,
    /// More milliseconds than fit in 64 bits.
    #[error("it is too large")]
    Overflow,
}

/// Parses a duration string: a whole number followed by `ms`, `s`, `m` or `h`,
/// with nothing around or between them.
///
/// ```
/// use mqtt_cluster_core::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
/// assert!(parse_duration("2").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = match (text.get(..split), text.get(split..)) {
        (Some(d), Some(u)) => (d, u),
        _ => return Err(DurationError::MissingNumber),
    };
    if digits.is_empty() {
        return Err(DurationError::MissingNumber);
    }
    if unit.starts_with(['.', ',']) {
        return Err(DurationError::NotWhole);
    }
    let factor: u64 = match unit {
        "" => return Err(DurationError::MissingUnit),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.chars().take(20).collect(),
            })
        }
    };
    let amount: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
    let millis = amount.checked_mul(factor).ok_or(DurationError::Overflow)?;
    Ok(Duration::from_millis(millis))
}

/// Writes `d` in the largest unit that represents it exactly, so messages
/// show what the user would have written.
pub(super) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    if ms != 0 && ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms != 0 && ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms != 0 && ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn refuses_malformed_durations_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("ms"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration("+5s"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration(" 5s"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration("500"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(parse_duration("1.5s"), Err(DurationError::NotWhole));
        assert_eq!(
            parse_duration("5 s"),
            Err(DurationError::UnknownUnit { unit: " s".into() })
        );
        assert_eq!(
            parse_duration("5sec"),
            Err(DurationError::UnknownUnit { unit: "sec".into() })
        );
        assert_eq!(
            parse_duration("1m30s"),
            Err(DurationError::UnknownUnit {
                unit: "m30s".into()
            })
        );
        assert_eq!(
            parse_duration("5µs"),
            Err(DurationError::UnknownUnit { unit: "µs".into() })
        );
        assert_eq!(
            parse_duration("99999999999999999999ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
    }
}
