//! Timestamps as the API writes them: RFC 3339 in UTC with microseconds,
//! converted from and to the store's µs since the epoch. Civil-from-days
//! arithmetic (Howard Hinnant's algorithm) spares a date crate.

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// `micros` (µs since the epoch) as RFC 3339 in UTC with six fractional
/// digits: `2026-12-01T17:40:22.123456Z`.
pub fn rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(MICROS_PER_SECOND);
    let fraction = micros.rem_euclid(MICROS_PER_SECOND);
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Reads an RFC 3339 timestamp (`2026-12-01T17:40:22Z`, with optional
/// fractional seconds and a `Z` or `±HH:MM` offset) as µs since the epoch.
/// Digits beyond microseconds are dropped.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("`{text}` is not an RFC 3339 timestamp ({why}); write e.g. 2026-12-01T17:40:22Z");
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |from: usize, to: usize| -> Result<i64, String> {
        let part = text.get(from..to).ok_or_else(|| bad("not ASCII"))?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| bad("a number is out of range"))
        } else {
            Err(bad("a digit was expected"))
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad("the separators are not YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time of day"));
    }
    let mut pos = 19;
    let mut fraction = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 6 {
                fraction = fraction * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(bad("no digits after the decimal point"));
        }
        for _ in (pos - start)..6 {
            fraction *= 10;
        }
    }
    let offset_seconds = match &b[pos..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(pos + 1, pos + 3)?, num(pos + 4, pos + 6)?);
            if h > 23 || m > 59 {
                return Err(bad("no such offset"));
            }
            let magnitude = h * 3600 + m * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return Err(bad("the offset must be Z or ±HH:MM")),
    };
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
    Ok(seconds * MICROS_PER_SECOND + fraction)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of a day number counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number counted from 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_are_written_in_utc_with_microseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_796_146_822_123_456), "2026-12-01T17:40:22.123456Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn written_instants_parse_back_to_the_same_micros() {
        for micros in
            [0, -1, 1, 951_782_400_000_000, 1_796_146_822_123_456, 4_102_444_800_000_000 - 1, -2_208_988_800_000_000]
        {
            assert_eq!(parse_rfc3339(&rfc3339(micros)).unwrap(), micros, "{}", rfc3339(micros));
        }
        let mut micros = -10_000_000_000_000i64;
        while micros < 10_000_000_000_000_000 {
            assert_eq!(parse_rfc3339(&rfc3339(micros)).unwrap(), micros);
            micros += 86_399_999_977;
        }
    }

    #[test]
    fn offsets_and_short_fractions_are_understood() {
        assert_eq!(parse_rfc3339("2026-12-01T17:40:22Z").unwrap(), 1_796_146_822_000_000);
        assert_eq!(parse_rfc3339("2026-12-01T18:40:22.5+01:00").unwrap(), 1_796_146_822_500_000);
        assert_eq!(parse_rfc3339("2026-12-01t16:40:22.1234567-01:00").unwrap(), 1_796_146_822_123_456);
    }

    #[test]
    fn malformed_timestamps_are_refused_with_an_example() {
        for text in [
            "",
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T00:00:00+1:00",
            "2026/12/01T00:00:00Z",
            "２026-12-01T00:00:00Z",
        ] {
            let err = parse_rfc3339(text).unwrap_err();
            assert!(err.contains("2026-12-01T17:40:22Z"), "{text}: {err}");
        }
    }
}
