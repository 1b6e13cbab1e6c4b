//! Calendar arithmetic for the retention policy, reproducing what restic gets from Go's
//! `time` package: a snapshot's wall clock in its own recorded UTC offset (its hour, day, ISO
//! week, month, year), and `time.AddDate` going back from the newest snapshot for the
//! `--keep-within*` cut-offs, in the zone Go would give that snapshot's time.
//!
//! Go decodes a snapshot's RFC 3339 time into the machine's local zone when the recorded
//! offset is the one that zone had at that instant, and into a fixed offset otherwise. The
//! wall clock is the same either way, so the buckets do not depend on the machine; only a
//! cut-off that crosses a daylight-saving change does (`AddDate` keeps the wall clock, and
//! the local zone then changes the offset). So the local zone is a parameter here, never read
//! from the environment, and the pure policy stays testable.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

/// One instant as restic's policy sees it: nanoseconds since the epoch and the UTC offset the
/// snapshot recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// ns since the Unix epoch.
    pub unix_ns: i64,
    /// The recorded UTC offset, in seconds.
    pub offset_s: i32,
}

/// The wall-clock fields the bucket functions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wall {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// The ISO 8601 week-numbering year and week (Go's `ISOWeek`).
    pub iso_year: i64,
    pub iso_week: i64,
}

/// The recorded offset as a zone. An offset jiff cannot represent (beyond ±25:59:59; cista
/// never writes one, but the bytes come from a repository) is read as UTC rather than failing
/// the whole policy.
fn fixed(offset_s: i32) -> TimeZone {
    TimeZone::fixed(Offset::from_seconds(offset_s).unwrap_or(Offset::UTC))
}

fn timestamp(unix_ns: i64) -> Timestamp {
    // Every i64 of nanoseconds (years 1677..2262) is inside jiff's range.
    Timestamp::from_nanosecond(i128::from(unix_ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The wall clock of `m` at its recorded offset.
pub fn wall(m: Moment) -> Wall {
    let dt = timestamp(m.unix_ns).to_zoned(fixed(m.offset_s)).datetime();
    let iso = dt.date().iso_week_date();
    Wall {
        year: dt.year().into(),
        month: dt.month().into(),
        day: dt.day().into(),
        hour: dt.hour().into(),
        minute: dt.minute().into(),
        second: dt.second().into(),
        iso_year: iso.year().into(),
        iso_week: iso.week().into(),
    }
}

/// The zone Go's JSON decoder gives `m`: `local` if it had the recorded offset at that
/// instant, else the fixed offset.
pub fn go_zone(m: Moment, local: &TimeZone) -> TimeZone {
    if local.to_offset(timestamp(m.unix_ns)).seconds() == m.offset_s {
        local.clone()
    } else {
        fixed(m.offset_s)
    }
}

/// Days from 1970-01-01 to `year-month-day` in the proleptic Gregorian calendar, for any
/// month 1..=12 and any day (a day past the month's end runs into the next, as in Go's
/// `time.Date`). `None` on overflow.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    // Howard Hinnant's algorithm, with March as the first month of the computing year.
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)?
        .checked_add(day.checked_sub(1)?)
}

/// Go's `time.Date(year, month, day, hour, min, sec, nsec, zone)` as ns since the epoch:
/// months and days out of range are normalised, and a wall time that a daylight-saving change
/// skips or repeats is resolved as Go resolves it (the offset in force at the wall time read
/// as UTC; if the instant so found lies outside that offset's period, the offset at that
/// instant instead). `None` when the result does not fit in i64 nanoseconds.
#[allow(clippy::too_many_arguments)]
pub fn go_date(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    zone: &TimeZone,
) -> Option<i64> {
    let m0 = month.checked_sub(1)?;
    let year = year.checked_add(m0.div_euclid(12))?;
    let month = m0.rem_euclid(12) + 1;
    let days = days_from_civil(year, month, day)?;
    let wall_s = days
        .checked_mul(86_400)?
        .checked_add(hour.checked_mul(3600)?)?
        .checked_add(minute.checked_mul(60)?)?
        .checked_add(second)?;
    let offset_at = |unix_s: i64| -> Option<i64> {
        let ts = Timestamp::from_second(unix_s).ok()?;
        Some(i64::from(zone.to_offset(ts).seconds()))
    };
    let guess = offset_at(wall_s)?;
    let mut unix_s = wall_s.checked_sub(guess)?;
    let actual = offset_at(unix_s)?;
    if actual != guess {
        unix_s = wall_s.checked_sub(actual)?;
    }
    unix_s.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Go's `t.AddDate(-years, -months, -days).Add(-hours * time.Hour)` for the newest snapshot
/// `t` in `zone`: the `--keep-within*` cut-off. `None` when it falls outside the i64 range
/// (every snapshot is then after it).
pub fn go_back(
    t: Moment,
    zone: &TimeZone,
    years: i64,
    months: i64,
    days: i64,
    hours: i64,
) -> Option<i64> {
    let w = wall(t);
    let nanos = t.unix_ns.rem_euclid(1_000_000_000);
    let date = go_date(
        w.year.checked_sub(years)?,
        w.month.checked_sub(months)?,
        w.day.checked_sub(days)?,
        w.hour,
        w.minute,
        w.second,
        nanos,
        zone,
    )?;
    date.checked_sub(hours.checked_mul(3_600_000_000_000)?)
}

/// Parses a snapshot time as `backup --time` takes it: `YYYY-MM-DD HH:MM:SS` in the machine's
/// zone `local` (restic's `time.ParseInLocation(..., time.Local)`, including how Go resolves
/// a wall time that a daylight-saving change skips or repeats), or with an explicit
/// `±HH:MM` offset appended (a cista extension; restic takes local time only).
pub fn parse_time(s: &str, local: &TimeZone) -> Result<Moment, String> {
    let usage = || {
        format!(
            "invalid time {s:?}: use \"YYYY-MM-DD HH:MM:SS\" with an optional ±HH:MM offset, e.g. \"2026-12-01 21:30:00+01:00\""
        )
    };
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b' ') && sep(13, b':') && sep(16, b':')) {
        return Err(usage());
    }
    let fields = (|| {
        Some((
            num(0, 4)?,
            num(5, 2)?,
            num(8, 2)?,
            num(11, 2)?,
            num(14, 2)?,
            num(17, 2)?,
        ))
    })();
    let Some((year, month, day, hour, minute, second)) = fields else {
        return Err(usage());
    };
    // Validates the calendar date and clock (no 30 February, no 24:00), as Go's parser does.
    let narrow = |v: i64| i8::try_from(v).map_err(|_| usage());
    jiff::civil::DateTime::new(
        i16::try_from(year).map_err(|_| usage())?,
        narrow(month)?,
        narrow(day)?,
        narrow(hour)?,
        narrow(minute)?,
        narrow(second)?,
        0,
    )
    .map_err(|e| format!("invalid time {s:?}: {e}"))?;
    let offset_s = match &b[19..] {
        [] => None,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(20, 2).ok_or_else(usage)?, num(23, 2).ok_or_else(usage)?);
            if h > 23 || m > 59 {
                return Err(format!("invalid time {s:?}: offset out of range"));
            }
            let secs = h * 3600 + m * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return Err(usage()),
    };
    let zone = match offset_s {
        Some(o) => fixed(i32::try_from(o).map_err(|_| usage())?),
        None => local.clone(),
    };
    let unix_ns = go_date(year, month, day, hour, minute, second, 0, &zone)
        .ok_or_else(|| format!("invalid time {s:?}: outside the years 1678 to 2261"))?;
    let offset_s = match offset_s {
        Some(o) => i32::try_from(o).map_err(|_| usage())?,
        None => zone.to_offset(timestamp(unix_ns)).seconds(),
    };
    Ok(Moment { unix_ns, offset_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central European time with its EU daylight-saving rule, independent of the machine's
    /// time zone database.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn ns(s: &str) -> i64 {
        let ts: Timestamp = s.parse().unwrap();
        i64::try_from(ts.as_nanosecond()).unwrap()
    }

    fn at(s: &str, offset_h: i32) -> Moment {
        Moment {
            unix_ns: ns(s),
            offset_s: offset_h * 3600,
        }
    }

    #[test]
    fn wall_clock_is_read_at_the_recorded_offset() {
        let w = wall(at("2026-01-01T02:30:00Z", -5));
        assert_eq!((w.year, w.month, w.day, w.hour), (2025, 12, 31, 21));
        let w = wall(at("2025-12-31T23:30:00Z", 9));
        assert_eq!((w.year, w.month, w.day, w.hour), (2026, 1, 1, 8));
    }

    /// ISO weeks: 2020 has 53 weeks; 2021-01-03 (a Sunday) still belongs to 2020-W53; the
    /// Monday 2024-12-30 opens 2025-W01.
    #[test]
    fn iso_weeks_at_year_edges() {
        let w = wall(at("2021-01-03T12:00:00Z", 0));
        assert_eq!((w.iso_year, w.iso_week), (2020, 53));
        let w = wall(at("2021-01-04T00:00:00Z", 0));
        assert_eq!((w.iso_year, w.iso_week), (2021, 1));
        let w = wall(at("2024-12-30T00:00:00Z", 0));
        assert_eq!((w.iso_year, w.iso_week), (2025, 1));
        let w = wall(at("2015-12-31T12:00:00Z", 0));
        assert_eq!((w.iso_year, w.iso_week), (2015, 53));
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        // Day 30 of February 2024 (a leap year) is 1 March.
        assert_eq!(days_from_civil(2024, 2, 30), days_from_civil(2024, 3, 1));
        assert_eq!(days_from_civil(i64::MAX, 1, 1), None);
    }

    /// `AddDate` normalises like Go: 31 March minus one month is "31 February", i.e. 3 March
    /// (2 March in a leap year); 29 February 2024 minus one year is 1 March 2023.
    #[test]
    fn add_date_normalises_month_ends_and_leap_days() {
        let utc = TimeZone::UTC;
        let m = at("2025-03-31T10:00:00Z", 0);
        assert_eq!(
            go_back(m, &utc, 0, 1, 0, 0),
            Some(ns("2025-03-03T10:00:00Z"))
        );
        let m = at("2024-03-31T10:00:00Z", 0);
        assert_eq!(
            go_back(m, &utc, 0, 1, 0, 0),
            Some(ns("2024-03-02T10:00:00Z"))
        );
        let m = at("2024-02-29T10:00:00Z", 0);
        assert_eq!(
            go_back(m, &utc, 1, 0, 0, 0),
            Some(ns("2023-03-01T10:00:00Z"))
        );
        let m = at("2026-01-15T10:00:00Z", 0);
        assert_eq!(
            go_back(m, &utc, 0, 13, 0, 0),
            Some(ns("2024-12-15T10:00:00Z"))
        );
        assert_eq!(
            go_back(m, &utc, 0, 0, 0, 25),
            Some(ns("2026-01-14T09:00:00Z"))
        );
        assert_eq!(go_back(m, &utc, i64::MAX, 0, 0, 0), None);
        assert_eq!(go_back(m, &utc, 0, 0, 0, i64::MAX), None);
    }

    /// One month back from summer time lands in winter time: in the local zone Go keeps the
    /// wall clock (so the cut-off moves by an hour in UTC); in a fixed offset it does not.
    #[test]
    fn add_date_across_daylight_saving_keeps_the_local_wall_clock() {
        let latest = at("2026-04-01T10:00:00Z", 2); // 12:00 CEST
        let local = go_zone(latest, &berlin());
        assert_eq!(
            go_back(latest, &local, 0, 1, 0, 0),
            Some(ns("2026-03-01T11:00:00Z"))
        );
        let fixed = go_zone(latest, &TimeZone::UTC);
        assert_eq!(
            go_back(latest, &fixed, 0, 1, 0, 0),
            Some(ns("2026-03-01T10:00:00Z"))
        );
    }

    /// Wall times a change skips or repeats resolve as Go's `time.Date` does.
    #[test]
    fn go_date_in_gaps_and_folds() {
        let z = berlin();
        // 2026-03-29 02:30 does not exist in Berlin: Go gives 03:30 CEST (01:30 UTC).
        assert_eq!(
            go_date(2026, 3, 29, 2, 30, 0, 0, &z),
            Some(ns("2026-03-29T01:30:00Z"))
        );
        // 2026-10-25 02:30 happens twice: Go (east of UTC) gives the second, 02:30 CET.
        assert_eq!(
            go_date(2026, 10, 25, 2, 30, 0, 0, &z),
            Some(ns("2026-10-25T01:30:00Z"))
        );
        // West of UTC the same rule gives the first: 01:30 EDT in New York.
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(
            go_date(2026, 11, 1, 1, 30, 0, 0, &ny),
            Some(ns("2026-11-01T05:30:00Z"))
        );
        // An ordinary time.
        assert_eq!(
            go_date(2026, 7, 1, 12, 0, 0, 5, &z),
            Some(ns("2026-07-01T10:00:00Z") + 5)
        );
    }

    #[test]
    fn parse_time_local_and_with_offset() {
        let z = berlin();
        let m = parse_time("2026-07-01 12:00:00", &z).unwrap();
        assert_eq!(
            m,
            Moment {
                unix_ns: ns("2026-07-01T10:00:00Z"),
                offset_s: 7200
            }
        );
        let m = parse_time("2026-01-01 12:00:00", &z).unwrap();
        assert_eq!(
            m,
            Moment {
                unix_ns: ns("2026-01-01T11:00:00Z"),
                offset_s: 3600
            }
        );
        let m = parse_time("2026-01-01 12:00:00-05:30", &z).unwrap();
        assert_eq!(
            m,
            Moment {
                unix_ns: ns("2026-01-01T17:30:00Z"),
                offset_s: -19_800
            }
        );
        let m = parse_time("2024-02-29 00:00:00+00:00", &z).unwrap();
        assert_eq!(m.unix_ns, ns("2024-02-29T00:00:00Z"));
        // A skipped local time resolves as Go's ParseInLocation: 02:30 -> 03:30 CEST.
        let m = parse_time("2026-03-29 02:30:00", &z).unwrap();
        assert_eq!(
            m,
            Moment {
                unix_ns: ns("2026-03-29T01:30:00Z"),
                offset_s: 7200
            }
        );
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T12:00:00",
            "2026-02-30 12:00:00",
            "2026-01-01 24:00:00",
            "2026-01-01 12:00:00Z",
            "2026-01-01 12:00:00+0100",
            "2026-01-01 12:00:00+24:00",
            "2026-1-01 12:00:00",
            "+026-01-01 12:00:00",
            "1500-01-01 00:00:00",
            "2026-01-01 12:00:00 ",
            "２０２６-01-01 12:00:00",
        ] {
            let e = parse_time(bad, &z).unwrap_err();
            assert!(e.starts_with("invalid time"), "{bad}: {e}");
        }
    }

    #[test]
    fn go_zone_uses_local_only_when_the_offset_matches() {
        let z = berlin();
        let summer = at("2026-07-01T10:00:00Z", 2);
        assert_eq!(go_zone(summer, &z), z);
        let foreign = at("2026-07-01T10:00:00Z", -4);
        assert_eq!(go_zone(foreign, &z), fixed(-4 * 3600));
        // An offset jiff cannot hold is read as UTC, not an error.
        let wild = Moment {
            unix_ns: 0,
            offset_s: i32::MAX,
        };
        assert_eq!(wall(wild).year, 1970);
    }
}
