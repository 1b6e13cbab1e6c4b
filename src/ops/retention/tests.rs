//! Table tests of the policy over calendar edges. Each case lists snapshots (UTC instant,
//! recorded offset, tags), a policy and the expected reasons per snapshot newest first
//! (`-` for removed); the expectations follow restic's `ApplyPolicy` rule by rule.

use super::*;
use jiff::Timestamp;

const NOW: &str = "2030-01-01T00:00:00Z";

fn ns(s: &str) -> i64 {
    let ts: Timestamp = s.parse().unwrap();
    i64::try_from(ts.as_nanosecond()).unwrap()
}

struct Snap {
    at: &'static str,
    offset_h: i32,
    tags: Vec<String>,
}

fn s(at: &'static str, offset_h: i32) -> Snap {
    Snap {
        at,
        offset_h,
        tags: Vec::new(),
    }
}

fn tagged(at: &'static str, tags: &[&str]) -> Snap {
    Snap {
        at,
        offset_h: 0,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

/// Runs the policy and renders each verdict, newest first, as `at: reasons` or `at: -`.
fn run_in(snaps: &[Snap], p: &Policy, local: &TimeZone) -> Vec<String> {
    let list: Vec<Candidate<'_>> = snaps
        .iter()
        .map(|x| Candidate {
            time: Moment {
                unix_ns: ns(x.at),
                offset_s: x.offset_h * 3600,
            },
            tags: &x.tags,
        })
        .collect();
    apply(&list, p, ns(NOW), local)
        .into_iter()
        .map(|v| {
            let at = snaps[v.index].at;
            match v.kept {
                Some(r) => format!("{at}: {}", r.join("; ")),
                None => format!("{at}: -"),
            }
        })
        .collect()
}

fn run(snaps: &[Snap], p: &Policy) -> Vec<String> {
    run_in(snaps, p, &TimeZone::UTC)
}

fn dur(s: &str) -> Duration {
    Duration::parse(s).unwrap()
}

#[test]
fn keep_last_counts_snapshots_newest_first() {
    let snaps = [
        s("2026-01-01T00:00:00Z", 0),
        s("2026-01-03T00:00:00Z", 0),
        s("2026-01-02T00:00:00Z", 0),
        s("2026-01-04T00:00:00Z", 0),
    ];
    let p = Policy {
        last: Count::Limit(2),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2026-01-04T00:00:00Z: last snapshot",
            "2026-01-03T00:00:00Z: last snapshot",
            "2026-01-02T00:00:00Z: -",
            "2026-01-01T00:00:00Z: -",
        ]
    );
}

/// The newest snapshot of each day is kept; the oldest snapshot of the group is kept too
/// while counts are left, marked "oldest" when its day was already kept.
#[test]
fn daily_keeps_newest_of_each_day_and_the_oldest_while_counts_last() {
    let snaps = [
        s("2026-01-01T08:00:00Z", 0),
        s("2026-01-01T12:00:00Z", 0),
        s("2026-01-02T10:00:00Z", 0),
        s("2026-01-03T10:00:00Z", 0),
    ];
    let five = Policy {
        daily: Count::Limit(5),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &five),
        [
            "2026-01-03T10:00:00Z: daily snapshot",
            "2026-01-02T10:00:00Z: daily snapshot",
            "2026-01-01T12:00:00Z: daily snapshot",
            "2026-01-01T08:00:00Z: oldest daily snapshot",
        ]
    );
    let three = Policy {
        daily: Count::Limit(3),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &three)[3],
        "2026-01-01T08:00:00Z: -",
        "no counts left for the oldest"
    );
    let unlimited = Policy {
        daily: Count::Unlimited,
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &unlimited)[3],
        "2026-01-01T08:00:00Z: oldest daily snapshot"
    );
}

/// ISO weeks: 2020 has 53; Sunday 2021-01-03 is in 2020-W53 with Monday 2020-12-28; Monday
/// 2021-01-04 opens 2021-W01.
#[test]
fn weekly_uses_iso_weeks_across_the_year_end() {
    let snaps = [
        s("2020-12-21T12:00:00Z", 0),
        s("2020-12-28T12:00:00Z", 0),
        s("2021-01-03T12:00:00Z", 0),
        s("2021-01-04T12:00:00Z", 0),
    ];
    let p = Policy {
        weekly: Count::Limit(2),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2021-01-04T12:00:00Z: weekly snapshot",
            "2021-01-03T12:00:00Z: weekly snapshot",
            "2020-12-28T12:00:00Z: -",
            "2020-12-21T12:00:00Z: -",
        ]
    );
    // The year bucket is the calendar year, not the ISO year.
    let y = Policy {
        yearly: Count::Limit(3),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &y),
        [
            "2021-01-04T12:00:00Z: yearly snapshot",
            "2021-01-03T12:00:00Z: -",
            "2020-12-28T12:00:00Z: yearly snapshot",
            "2020-12-21T12:00:00Z: oldest yearly snapshot",
        ]
    );
}

/// Month ends and a leap day: 29 February and 1 March are different days and months.
#[test]
fn monthly_and_daily_at_month_ends_and_leap_days() {
    let snaps = [
        s("2023-12-15T00:00:00Z", 0),
        s("2024-01-31T23:59:59Z", 0),
        s("2024-02-01T00:00:00Z", 0),
        s("2024-02-29T23:00:00Z", 0),
        s("2024-03-01T01:00:00Z", 0),
    ];
    let p = Policy {
        monthly: Count::Limit(3),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2024-03-01T01:00:00Z: monthly snapshot",
            "2024-02-29T23:00:00Z: monthly snapshot",
            "2024-02-01T00:00:00Z: -",
            "2024-01-31T23:59:59Z: monthly snapshot",
            "2023-12-15T00:00:00Z: -",
        ]
    );
    let d = Policy {
        daily: Count::Limit(4),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &d),
        [
            "2024-03-01T01:00:00Z: daily snapshot",
            "2024-02-29T23:00:00Z: daily snapshot",
            "2024-02-01T00:00:00Z: daily snapshot",
            "2024-01-31T23:59:59Z: daily snapshot",
            "2023-12-15T00:00:00Z: -",
        ]
    );
}

/// Buckets come from each snapshot's own recorded offset: the same instants fall in
/// different days for a host in Tokyo and one in New York.
#[test]
fn buckets_use_each_snapshots_own_offset() {
    let utc = [
        s("2026-03-01T10:00:00Z", 0),
        s("2026-03-01T20:00:00Z", 0),
        s("2026-03-02T02:00:00Z", 0),
    ];
    let p = Policy {
        daily: Count::Limit(9),
        ..Policy::default()
    };
    // UTC: 1 March twice, then 2 March.
    assert_eq!(
        run(&utc, &p),
        [
            "2026-03-02T02:00:00Z: daily snapshot",
            "2026-03-01T20:00:00Z: daily snapshot",
            "2026-03-01T10:00:00Z: oldest daily snapshot",
        ]
    );
    // Tokyo (+9): 1 March 19:00, 2 March 05:00, 2 March 11:00.
    let tokyo = [
        s("2026-03-01T10:00:00Z", 9),
        s("2026-03-01T20:00:00Z", 9),
        s("2026-03-02T02:00:00Z", 9),
        s("2026-02-20T00:00:00Z", 9),
    ];
    assert_eq!(
        run(&tokyo, &p),
        [
            "2026-03-02T02:00:00Z: daily snapshot",
            "2026-03-01T20:00:00Z: -",
            "2026-03-01T10:00:00Z: daily snapshot",
            "2026-02-20T00:00:00Z: daily snapshot",
        ]
    );
    // New York (-5): 1 March 05:00, 1 March 15:00, 1 March 21:00: one day.
    let ny = [
        s("2026-03-01T10:00:00Z", -5),
        s("2026-03-01T20:00:00Z", -5),
        s("2026-03-02T02:00:00Z", -5),
        s("2026-02-20T00:00:00Z", -5),
    ];
    assert_eq!(
        run(&ny, &p),
        [
            "2026-03-02T02:00:00Z: daily snapshot",
            "2026-03-01T20:00:00Z: -",
            "2026-03-01T10:00:00Z: -",
            "2026-02-20T00:00:00Z: daily snapshot",
        ]
    );
}

/// When clocks go back, 02:30 CEST and 02:30 CET are one wall-clock hour: hourly keeps only
/// the later of the two (as restic, which buckets by wall clock).
#[test]
fn hourly_across_the_autumn_change_merges_the_repeated_hour() {
    let snaps = [
        s("2026-10-24T12:00:00Z", 2),
        s("2026-10-25T00:30:00Z", 2),
        s("2026-10-25T01:30:00Z", 1),
        s("2026-10-25T02:30:00Z", 1),
    ];
    let p = Policy {
        hourly: Count::Limit(9),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2026-10-25T02:30:00Z: hourly snapshot",
            "2026-10-25T01:30:00Z: hourly snapshot",
            "2026-10-25T00:30:00Z: -",
            "2026-10-24T12:00:00Z: hourly snapshot",
        ]
    );
}

/// `--keep-within` is measured from the newest snapshot, not from now, and is strict: a
/// snapshot exactly at the cut-off is not within.
#[test]
fn within_is_relative_to_the_newest_and_strict() {
    let snaps = [
        s("2020-05-01T00:00:00Z", 0),
        s("2020-05-09T00:00:00Z", 0),
        s("2020-05-09T00:00:01Z", 0),
        s("2020-05-10T00:00:00Z", 0),
    ];
    let p = Policy {
        within: dur("1d"),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2020-05-10T00:00:00Z: within 1d",
            "2020-05-09T00:00:01Z: within 1d",
            "2020-05-09T00:00:00Z: -",
            "2020-05-01T00:00:00Z: -",
        ]
    );
}

/// A snapshot dated in the future is not "the newest" the cut-offs start from, but is kept
/// as being within.
#[test]
fn within_ignores_future_snapshots_as_reference() {
    let snaps = [
        s("2026-01-01T00:00:00Z", 0),
        s("2026-01-05T00:00:00Z", 0),
        s("2031-01-01T00:00:00Z", 0),
    ];
    let p = Policy {
        within: dur("2d"),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2031-01-01T00:00:00Z: within 2d",
            "2026-01-05T00:00:00Z: within 2d",
            "2026-01-01T00:00:00Z: -",
        ]
    );
    // Only future snapshots: no reference, so everything is within.
    let future = [s("2031-01-01T00:00:00Z", 0), s("2032-01-01T00:00:00Z", 0)];
    assert!(run(&future, &p).iter().all(|r| r.ends_with("within 2d")));
}

/// A month back from 31 March is 3 March (Go's `AddDate` normalisation).
#[test]
fn within_month_from_a_month_end() {
    let snaps = [
        s("2025-03-02T12:00:00Z", 0),
        s("2025-03-03T11:59:59Z", 0),
        s("2025-03-03T12:00:01Z", 0),
        s("2025-03-31T12:00:00Z", 0),
    ];
    let p = Policy {
        within: dur("1m"),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2025-03-31T12:00:00Z: within 1m",
            "2025-03-03T12:00:01Z: within 1m",
            "2025-03-03T11:59:59Z: -",
            "2025-03-02T12:00:00Z: -",
        ]
    );
}

/// A cut-off across the spring change: in the machine's zone (the newest snapshot's offset
/// is the local one) the wall clock is kept, so one month before 1 April 12:00 CEST is
/// 1 March 12:00 CET = 11:00 UTC; read in a fixed offset it would be 10:00 UTC.
#[test]
fn within_across_daylight_saving_uses_the_local_zone() {
    let snaps = [s("2026-03-01T10:30:00Z", 1), s("2026-04-01T10:00:00Z", 2)];
    let p = Policy {
        within: dur("1m"),
        ..Policy::default()
    };
    assert_eq!(
        run_in(&snaps, &p, &berlin()),
        ["2026-04-01T10:00:00Z: within 1m", "2026-03-01T10:30:00Z: -",]
    );
    assert_eq!(
        run_in(&snaps, &p, &TimeZone::UTC),
        [
            "2026-04-01T10:00:00Z: within 1m",
            "2026-03-01T10:30:00Z: within 1m",
        ]
    );
}

#[test]
fn within_buckets_keep_one_per_bucket_inside_the_window() {
    let snaps = [
        s("2026-01-01T10:00:00Z", 0),
        s("2026-01-09T10:00:00Z", 0),
        s("2026-01-09T18:00:00Z", 0),
        s("2026-01-10T09:00:00Z", 0),
        s("2026-01-10T10:00:00Z", 0),
    ];
    let p = Policy {
        within_daily: dur("2d"),
        within_hourly: dur("3h"),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2026-01-10T10:00:00Z: hourly within 3h; daily within 2d",
            "2026-01-10T09:00:00Z: hourly within 3h",
            "2026-01-09T18:00:00Z: daily within 2d",
            "2026-01-09T10:00:00Z: -",
            "2026-01-01T10:00:00Z: -",
        ]
    );
    // The oldest snapshot, inside the window and in a kept day, is kept as "oldest".
    let p = Policy {
        within_daily: dur("1m"),
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps[1..], &p),
        [
            "2026-01-10T10:00:00Z: daily within 1m",
            "2026-01-10T09:00:00Z: -",
            "2026-01-09T18:00:00Z: daily within 1m",
            "2026-01-09T10:00:00Z: oldest daily within 1m",
        ]
    );
}

#[test]
fn keep_tag_lists_need_every_tag_and_empty_matches_untagged() {
    let snaps = [
        tagged("2026-01-01T00:00:00Z", &["a"]),
        tagged("2026-01-02T00:00:00Z", &["a", "b"]),
        tagged("2026-01-03T00:00:00Z", &[]),
        tagged("2026-01-04T00:00:00Z", &["c"]),
    ];
    let p = Policy {
        tags: vec![
            TagList::parse("a, b"),
            TagList::parse(""),
            TagList::parse("a"),
        ],
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2026-01-04T00:00:00Z: -",
            "2026-01-03T00:00:00Z: has tags []",
            "2026-01-02T00:00:00Z: has tags [a, b]; has tags [a]",
            "2026-01-01T00:00:00Z: has tags [a]",
        ]
    );
}

/// Reasons appear in restic's order: tags, within, the counted rules, the within buckets.
#[test]
fn reasons_in_restics_order() {
    let snaps = [
        s("2025-06-01T00:00:00Z", 0),
        tagged("2026-01-04T00:00:00Z", &["x"]),
    ];
    let p = Policy {
        last: Count::Limit(1),
        daily: Count::Limit(1),
        yearly: Count::Limit(5),
        within: dur("1d"),
        within_weekly: dur("1d"),
        tags: vec![TagList::parse("x")],
        ..Policy::default()
    };
    assert_eq!(
        run(&snaps, &p),
        [
            "2026-01-04T00:00:00Z: has tags [x]; within 1d; last snapshot; daily snapshot; yearly snapshot; weekly within 1d",
            "2025-06-01T00:00:00Z: yearly snapshot",
        ]
    );
}

/// Equal times keep the caller's order (restic sorts stably): the first listed counts as
/// the newer one.
#[test]
fn equal_timestamps_keep_the_callers_order() {
    let snaps = [
        tagged("2026-01-01T00:00:00Z", &["first"]),
        tagged("2026-01-01T00:00:00Z", &["second"]),
        tagged("2025-01-01T00:00:00Z", &[]),
    ];
    let p = Policy {
        daily: Count::Limit(1),
        ..Policy::default()
    };
    let list: Vec<Candidate<'_>> = snaps
        .iter()
        .map(|x| Candidate {
            time: Moment {
                unix_ns: ns(x.at),
                offset_s: 0,
            },
            tags: &x.tags,
        })
        .collect();
    let v = apply(&list, &p, ns(NOW), &TimeZone::UTC);
    assert_eq!(v[0].index, 0);
    assert!(v[0].kept.is_some());
    assert_eq!(v[1].index, 1);
    assert!(v[1].kept.is_none());
}

#[test]
fn an_empty_group_and_an_empty_policy() {
    assert!(apply(&[], &Policy::default(), 0, &TimeZone::UTC).is_empty());
    let snaps = [s("2026-01-01T00:00:00Z", 0)];
    assert_eq!(run(&snaps, &Policy::default()), ["2026-01-01T00:00:00Z: -"]);
    assert!(Policy::default().is_empty());
    let zero = Policy {
        last: Count::Limit(0),
        within: Duration::default(),
        ..Policy::default()
    };
    assert!(zero.is_empty());
    assert!(
        !Policy {
            tags: vec![TagList::parse("")],
            ..Policy::default()
        }
        .is_empty()
    );
}

#[test]
fn durations_parse_and_print_as_restic() {
    let d = dur("1y2m3d4h");
    assert_eq!((d.years, d.months, d.days, d.hours), (1, 2, 3, 4));
    assert_eq!(d.to_string(), "1y2m3d4h");
    assert_eq!(dur("2d").to_string(), "2d");
    assert_eq!(dur(" 5h1y ").to_string(), "1y5h");
    assert_eq!(dur("1d2d").days, 2, "the last value of a unit wins");
    assert!(dur("").is_zero());
    assert!(dur("0d").is_zero());
    for bad in ["1", "d", "1w", "-1d", "1d-2h", "99999999999d", "1.5d"] {
        let e = Duration::parse(bad).unwrap_err().to_string();
        assert!(e.contains("invalid duration"), "{bad}: {e}");
    }
}

#[test]
fn counts_parse_as_restic() {
    assert_eq!(Count::parse("3").unwrap(), Count::Limit(3));
    assert_eq!(Count::parse("0").unwrap(), Count::Limit(0));
    assert_eq!(Count::parse("unlimited").unwrap(), Count::Unlimited);
    assert!(
        Count::parse("-1")
            .unwrap_err()
            .to_string()
            .contains("unlimited")
    );
    assert!(Count::parse("x").is_err());
    assert!(Count::parse("99999999999").is_err());
}

#[test]
fn policy_prints_as_restic() {
    let p = Policy {
        last: Count::Limit(3),
        daily: Count::Unlimited,
        within_daily: dur("7d"),
        within_monthly: dur("1y"),
        tags: vec![TagList::parse("a,b"), TagList::parse("c")],
        within: dur("2d"),
        ..Policy::default()
    };
    assert_eq!(
        p.to_string(),
        "keep 3 latest, all daily snapshots, daily snapshots within 7d, monthly snapshots within 1y and all snapshots with tags [[a, b] [c]] and all snapshots within 2d of the newest"
    );
    assert_eq!(Policy::default().to_string(), "remove");
}

/// Large inputs do not overflow: an enormous duration puts every snapshot within.
#[test]
fn huge_durations_saturate() {
    let snaps = [s("1700-01-01T00:00:00Z", 0), s("2200-01-01T00:00:00Z", 0)];
    let p = Policy {
        within: Duration {
            years: u32::MAX,
            months: u32::MAX,
            days: u32::MAX,
            hours: u32::MAX,
        },
        ..Policy::default()
    };
    let r = run(&snaps, &p);
    assert!(r.iter().all(|l| !l.ends_with(": -")), "{r:?}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn count() -> impl Strategy<Value = Count> {
        prop_oneof![
            (0u32..4).prop_map(Count::Limit),
            Just(Count::Unlimited),
            Just(Count::Limit(u32::MAX)),
        ]
    }

    fn duration() -> impl Strategy<Value = Duration> {
        (
            0u32..3,
            0u32..14,
            0u32..40,
            prop_oneof![0u32..50, Just(u32::MAX)],
        )
            .prop_map(|(years, months, days, hours)| Duration {
                years,
                months,
                days,
                hours,
            })
    }

    proptest! {
        /// Any times and offsets a repository may hold (all of i64 and i32), any policy:
        /// no panic, one verdict per snapshot, newest first, and `--keep-last N` keeps at
        /// least the newest N.
        #[test]
        fn any_input_gives_one_verdict_each(
            snaps in proptest::collection::vec(
                (any::<i64>(), prop_oneof![any::<i32>(), -50_400i32..50_400], any::<bool>()),
                0..20,
            ),
            last in count(),
            daily in count(),
            weekly in count(),
            within in duration(),
            within_monthly in duration(),
            tag in any::<bool>(),
            now in any::<i64>(),
        ) {
            let tags: Vec<Vec<String>> = snaps
                .iter()
                .map(|(_, _, t)| if *t { vec!["t".to_owned()] } else { vec![] })
                .collect();
            let list: Vec<Candidate<'_>> = snaps
                .iter()
                .zip(&tags)
                .map(|((ns, off, _), t)| Candidate {
                    time: Moment { unix_ns: *ns, offset_s: *off },
                    tags: t,
                })
                .collect();
            let p = Policy {
                last,
                daily,
                weekly,
                within,
                within_monthly,
                tags: if tag { vec![TagList::parse("t")] } else { vec![] },
                ..Policy::default()
            };
            let local = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
            let v = apply(&list, &p, now, &local);
            prop_assert_eq!(v.len(), list.len());
            let mut seen: Vec<usize> = v.iter().map(|x| x.index).collect();
            prop_assert!(v.windows(2).all(|w| list[w[0].index].time.unix_ns >= list[w[1].index].time.unix_ns));
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..list.len()).collect::<Vec<_>>());
            let n = match last {
                Count::Limit(n) => (n as usize).min(list.len()),
                Count::Unlimited => list.len(),
            };
            prop_assert!(v[..n].iter().all(|x| x.kept.is_some()));
        }
    }
}
