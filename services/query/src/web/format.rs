//! Dates, times and figures as the pages show them: in the bank's time zone, with the
//! date always (periods on different days must not look as if they overlap).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use crm_projections::calendar::Calendar;

/// `2026-11-25 09:30` in the calendar's zone.
pub(crate) fn local(cal: &Calendar, us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| {
            t.with_timezone(&cal.zone())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

pub(crate) fn maybe_local(cal: &Calendar, us: Option<i64>) -> String {
    us.map(|u| local(cal, u)).unwrap_or_default()
}

/// The value of a `datetime-local` control for an instant: `2026-11-25T09:30`.
pub(crate) fn input_value(cal: &Calendar, us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| {
            t.with_timezone(&cal.zone())
                .format("%Y-%m-%dT%H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// An instant from a `datetime-local` control (local to the calendar's zone, to the
/// minute or second) or RFC 3339; `Err` names what was expected.
pub(crate) fn parse_instant(cal: &Calendar, s: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("{s:?} is not a date and time (2026-11-25T09:30)"))?;
    cal.zone()
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_micros())
        .ok_or_else(|| format!("{s} does not exist in {cal}"))
}

/// A share as a percentage with one decimal: `42.5 %`.
pub(crate) fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// Money in minor units as major units with thousands separators: `1,234,500.00`.
pub(crate) fn money(minor: i64) -> String {
    let major = minor.abs() / 100;
    let digits = major.to_string();
    // Groups of three from the right: the first group takes what is left over.
    let head = match digits.len() % 3 {
        0 => 3,
        n => n,
    };
    let mut grouped = digits[..head.min(digits.len())].to_string();
    for group in digits.as_bytes()[head.min(digits.len())..].chunks(3) {
        grouped.push(',');
        grouped.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{grouped}.{:02}", minor.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_carry_the_date_in_the_banks_zone() {
        let cal: Calendar = "Asia/Shanghai".parse().unwrap();
        // 2026-11-25T17:30Z is the next day, 01:30, in Beijing.
        let us = DateTime::parse_from_rfc3339("2026-11-25T17:30:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(local(&cal, us), "2026-11-26 01:30");
        assert_eq!(input_value(&cal, us), "2026-11-26T01:30");
        assert_eq!(parse_instant(&cal, "2026-11-26T01:30"), Ok(us));
        assert_eq!(parse_instant(&cal, "2026-11-25T17:30:00Z"), Ok(us));
        assert!(parse_instant(&cal, "yesterday").is_err());
    }

    #[test]
    fn figures() {
        assert_eq!(money(123_450_000), "1,234,500.00");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(100_000), "1,000.00");
        assert_eq!(percent(Some(0.425)), "42.5 %");
        assert_eq!(percent(None), "–");
    }
}
