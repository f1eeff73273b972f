//! Human durations for TTLs and timeouts: `90s`, `30m`, `2h`, `7d`, `1h30m`, `500ms`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a duration; write a number with a unit, like `30s`, `15m`, `2h` or `1d`")]
pub struct DurationError {
    pub value: String,
}

/// Parses `1h30m`-style durations. Units: `ms`, `s`, `m`, `h`, `d`. A bare number is rejected so
/// that `--ttl 2` cannot silently mean two seconds.
pub fn parse_duration(value: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        value: value.to_owned(),
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(err());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n * millis_per).ok_or_else(err)?;
    }
    let millis = u64::try_from(total).map_err(|_| err())?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way `lane ls` shows time left: `2d 3h`, `1h 5m`, `4m 10s`, `12s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if days > 0 => format!("{days}d {hours}h"),
        _ if hours > 0 => format!("{hours}h {mins}m"),
        _ if mins > 0 => format!("{mins}m {s}s"),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases = [
            ("500ms", 500),
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            (" 5s ", 5_000),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects() {
        for bad in ["", "2", "h", "2x", "-1h", "1.5h", "2 h", "99999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats() {
        let cases = [
            (5, "5s"),
            (65, "1m 5s"),
            (3_700, "1h 1m"),
            (90_000, "1d 1h"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_duration(Duration::from_secs(secs)), want);
        }
    }
}
