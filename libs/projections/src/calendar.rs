//! The calendar figures are counted in: days, weeks (from Monday) and months of one IANA
//! time zone, so a Beijing day starts at 00:00 in Beijing and a London day is 23 or 25
//! hours long when the clocks change. Instants stay microseconds since the epoch (UTC)
//! everywhere; only bucket boundaries and the days facts fall on are local.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Microseconds in 24 hours (a local day may be shorter or longer).
pub const DAY_US: i64 = 86_400_000_000;

const HOUR_US: i64 = 3_600_000_000;

/// Calendar buckets for "per day / week / month" (weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            other => Err(format!("granularity {other:?} is not day, week or month")),
        }
    }
}

/// The days, weeks and months of one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    zone: Tz,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::UTC
    }
}

impl std::str::FromStr for Calendar {
    type Err = String;
    /// An IANA time zone name (`Asia/Shanghai`, `Europe/London`, `UTC`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        name.parse::<Tz>().map(Self::new).map_err(|_| {
            format!(
                "{name:?} is not an IANA time zone (for example Asia/Shanghai, Europe/London, UTC)"
            )
        })
    }
}

impl std::fmt::Display for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.zone.name())
    }
}

fn utc(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl Calendar {
    pub const UTC: Calendar = Calendar { zone: Tz::UTC };

    pub fn new(zone: Tz) -> Self {
        Self { zone }
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The zone's offset from UTC at instant `us`, in microseconds.
    pub fn offset_us(&self, us: i64) -> i64 {
        let offset = self.zone.offset_from_utc_datetime(&utc(us).naive_utc());
        i64::from(offset.fix().local_minus_utc()) * 1_000_000
    }

    /// The local date holding instant `us`.
    pub fn date(&self, us: i64) -> NaiveDate {
        utc(us).with_timezone(&self.zone).date_naive()
    }

    /// The first instant of local date `d`: its midnight, or where a clock change that
    /// skipped midnight resumed.
    pub fn start_of(&self, d: NaiveDate) -> i64 {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        let mut local = midnight;
        // A gap is at most a few hours; step through it a quarter of an hour at a time
        // (every zone's offset is a whole number of quarter hours).
        for _ in 0..4 * 24 {
            if let Some(t) = self.zone.from_local_datetime(&local).earliest() {
                return t.timestamp_micros();
            }
            local += Duration::minutes(15);
        }
        midnight.and_utc().timestamp_micros()
    }

    /// Start of the bucket holding `us`.
    pub fn bucket_start(&self, us: i64, g: Granularity) -> i64 {
        let d = self.date(us);
        self.start_of(match g {
            Granularity::Day => d,
            Granularity::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Granularity::Month => d.with_day(1).expect("day 1 exists"),
        })
    }

    /// Start of the bucket after the one starting at `start`.
    pub fn bucket_end(&self, start: i64, g: Granularity) -> i64 {
        let d = self.date(start);
        self.start_of(match g {
            Granularity::Day => d + Duration::days(1),
            Granularity::Week => d + Duration::days(7),
            Granularity::Month => {
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).expect("first of month")
            }
        })
    }

    /// The buckets `[start, end)` covering `[from_us, to_us)`.
    pub fn buckets(&self, from_us: i64, to_us: i64, g: Granularity) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut start = self.bucket_start(from_us, g);
        while start < to_us {
            let end = self.bucket_end(start, g);
            out.push((start, end));
            start = end;
        }
        out
    }

    /// The local day number of instant `us`: local days since 1970-01-01.
    pub fn day_number(&self, us: i64) -> i64 {
        (us + self.offset_us(us)).div_euclid(DAY_US)
    }

    /// The first instant of local day number `n`.
    pub fn day_start(&self, n: i64) -> i64 {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
        self.start_of(epoch + Duration::days(n))
    }

    /// The stretches of `[from_us, to_us)` over which the zone's offset does not change:
    /// (first instant, offset in microseconds), in order.
    pub fn offsets(&self, from_us: i64, to_us: i64) -> Vec<(i64, i64)> {
        let mut out = vec![(from_us, self.offset_us(from_us))];
        let mut t = from_us;
        while t < to_us {
            let next = (t + HOUR_US).min(to_us);
            let current = out.last().expect("one stretch").1;
            if self.offset_us(next) != current {
                // The change is in (t, next]: find its first instant.
                let (mut lo, mut hi) = (t, next);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset_us(mid) == current {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                if hi < to_us {
                    out.push((hi, self.offset_us(hi)));
                }
            }
            t = next;
        }
        out
    }

    /// An SQL expression (both backends) for the local day number of instant column
    /// `col`, exact for instants in `[from_us, to_us)`: the instant shifted by the offset
    /// in force, in whole days. Only integers computed here go into it.
    pub fn day_sql(&self, col: &str, from_us: i64, to_us: i64) -> String {
        let stretches = self.offsets(from_us, to_us);
        let shifted = match stretches.as_slice() {
            [(_, offset)] => format!("{col} + {offset}"),
            _ => {
                let mut case = String::from("CASE");
                for pair in stretches.windows(2) {
                    let ((_, offset), (next, _)) = (pair[0], pair[1]);
                    case.push_str(&format!(" WHEN {col} < {next} THEN {col} + {offset}"));
                }
                let (_, last) = stretches.last().expect("one stretch");
                format!("{case} ELSE {col} + {last} END")
            }
        };
        format!("(({shifted}) / {DAY_US})")
    }

    /// Instant `us` as an RFC 3339 timestamp with this zone's offset
    /// (`2026-12-01T08:30:00+08:00`; fractions of a second only when there are any).
    pub fn rfc3339(&self, us: i64) -> String {
        utc(us)
            .with_timezone(&self.zone)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
    }
}

/// Serialize an instant (microseconds) as an RFC 3339 timestamp in UTC:
/// `#[serde(serialize_with = "instant")]`.
pub fn instant<S: serde::Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&Calendar::UTC.rfc3339(*us))
}

/// [`instant`] for an instant that may be absent (`null`).
pub fn maybe_instant<S: serde::Serializer>(us: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match us {
        Some(us) => instant(us, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cal: &Calendar, y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        cal.zone
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .unwrap()
            .timestamp_micros()
    }

    fn utc_at(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn utc_buckets_follow_the_calendar() {
        let cal = Calendar::UTC;
        // 2026-11-25 is a Wednesday.
        let mid = utc_at(2026, 11, 25, 15);
        assert_eq!(
            cal.bucket_start(mid, Granularity::Day),
            utc_at(2026, 11, 25, 0)
        );
        assert_eq!(
            cal.bucket_start(mid, Granularity::Week),
            utc_at(2026, 11, 23, 0)
        );
        assert_eq!(
            cal.bucket_start(mid, Granularity::Month),
            utc_at(2026, 11, 1, 0)
        );
        assert_eq!(
            cal.bucket_end(utc_at(2026, 12, 1, 0), Granularity::Month),
            utc_at(2027, 1, 1, 0)
        );
        assert_eq!(
            cal.buckets(
                utc_at(2026, 11, 30, 5),
                utc_at(2027, 1, 2, 0),
                Granularity::Month
            ),
            vec![
                (utc_at(2026, 11, 1, 0), utc_at(2026, 12, 1, 0)),
                (utc_at(2026, 12, 1, 0), utc_at(2027, 1, 1, 0)),
                (utc_at(2027, 1, 1, 0), utc_at(2027, 2, 1, 0)),
            ]
        );
    }

    #[test]
    fn a_beijing_day_starts_at_midnight_in_beijing() {
        let cal: Calendar = "Asia/Shanghai".parse().unwrap();
        // 2026-12-01 07:59 UTC is 15:59 in Beijing; the day began at 16:00 UTC before.
        let t = utc_at(2026, 12, 1, 7);
        assert_eq!(
            cal.bucket_start(t, Granularity::Day),
            utc_at(2026, 11, 30, 16)
        );
        assert_eq!(
            cal.bucket_start(t, Granularity::Month),
            utc_at(2026, 11, 30, 16)
        );
        assert_eq!(
            cal.rfc3339(utc_at(2026, 11, 30, 16)),
            "2026-12-01T00:00:00+08:00"
        );
        assert_eq!(cal.day_number(utc_at(2026, 11, 30, 16)), cal.day_number(t));
        assert_eq!(
            cal.day_number(utc_at(2026, 11, 30, 15)) + 1,
            cal.day_number(t)
        );
        assert_eq!(
            cal.offsets(utc_at(2026, 1, 1, 0), utc_at(2027, 1, 1, 0))
                .len(),
            1
        );
        assert!("Mars/Olympus".parse::<Calendar>().is_err());
    }

    #[test]
    fn days_stretch_and_shrink_when_the_clocks_change() {
        let cal: Calendar = "Europe/London".parse().unwrap();
        // Clocks go forward on 2026-03-29 at 01:00 UTC and back on 2026-10-25 at 01:00.
        let spring = cal.bucket_start(at(&cal, 2026, 3, 29, 12, 0), Granularity::Day);
        assert_eq!(
            cal.bucket_end(spring, Granularity::Day) - spring,
            23 * HOUR_US
        );
        let autumn = cal.bucket_start(at(&cal, 2026, 10, 25, 12, 0), Granularity::Day);
        assert_eq!(
            cal.bucket_end(autumn, Granularity::Day) - autumn,
            25 * HOUR_US
        );
        let year = cal.buckets(
            utc_at(2026, 1, 1, 0),
            utc_at(2027, 1, 1, 0),
            Granularity::Day,
        );
        assert_eq!(year.len(), 365);
        assert!(year.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(
            cal.offsets(utc_at(2026, 1, 1, 0), utc_at(2027, 1, 1, 0)),
            vec![
                (utc_at(2026, 1, 1, 0), 0),
                (utc_at(2026, 3, 29, 1), HOUR_US),
                (utc_at(2026, 10, 25, 1), 0),
            ]
        );
        // Every instant's day number is the day its local date says.
        for (start, end) in year {
            for t in [start, start + HOUR_US, end - 1] {
                assert_eq!(cal.day_start(cal.day_number(t)), start);
            }
        }
    }

    /// A zone whose clocks skipped midnight: the day starts when they resumed.
    #[test]
    fn a_day_without_a_midnight_starts_after_the_gap() {
        // Cuba moves its clocks from 00:00 to 01:00 in March (2026-03-08).
        let cal: Calendar = "America/Havana".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(cal.rfc3339(cal.start_of(d)), "2026-03-08T01:00:00-04:00");
    }
}
