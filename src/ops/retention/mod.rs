//! The retention policy of `forget`: which snapshots of one group to keep, and why. A pure
//! function of the snapshots' times, offsets and tags, the policy, the current time and the
//! machine's local zone; it makes restic's decisions (restic's `ApplyPolicy` in
//! internal/data/snapshot_policy.go, as of restic 0.18) and gives restic's reason strings,
//! so `forget --json` output can be compared with restic's line by line.
//!
//! The rules, in restic's order, for each snapshot from the newest to the oldest:
//! - `--keep-tag`: a snapshot having every tag of one of the lists is kept (not counted);
//! - `--keep-within D`: kept if strictly after (newest snapshot - D), the newest snapshot
//!   being the newest that is not in the future;
//! - `--keep-last/hourly/daily/weekly/monthly/yearly N`: each keeps the first snapshot of
//!   every new bucket (hour, day, ISO week, month, year of the snapshot's wall clock at its
//!   own recorded offset) while it has counts left (`unlimited`: always), and the oldest
//!   snapshot of the group if counts are still left then;
//! - `--keep-within-hourly/... D`: the same buckets, uncounted, for snapshots within D.
//!
//! Grouping, filters and the safety refusals are `ops::forget`'s; this module never sees ids.

pub mod calendar;

use std::fmt;

use jiff::tz::TimeZone;

use crate::error::{Error, Result};
pub use calendar::Moment;

/// How many buckets a `--keep-*` count keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Keep the newest N buckets (0: the rule is off).
    Limit(u32),
    /// Keep every bucket (restic's `unlimited`, which restic stores as -1).
    Unlimited,
}

impl Default for Count {
    fn default() -> Self {
        Self::Limit(0)
    }
}

impl Count {
    /// Parses `N` or `unlimited` (restic's `ForgetPolicyCount`).
    pub fn parse(s: &str) -> Result<Self> {
        if s == "unlimited" {
            return Ok(Self::Unlimited);
        }
        match s.parse::<i64>() {
            Ok(n) if n < 0 => Err(Error::InvalidInput(format!(
                "{s}: negative values are not allowed, use 'unlimited' instead"
            ))),
            Ok(n) => u32::try_from(n).map(Self::Limit).map_err(|_| {
                Error::InvalidInput(format!("{s}: too large; use 'unlimited' to keep all"))
            }),
            Err(_) => Err(Error::InvalidInput(format!(
                "{s:?} is not a count: give a number or 'unlimited'"
            ))),
        }
    }

    fn active(self) -> bool {
        self != Self::Limit(0)
    }
}

/// restic's `Duration`: whole years, months, days and hours, applied to the calendar (a month
/// back from 31 March is 3 March, as Go's `AddDate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Duration {
    /// Parses restic's syntax: numbers each followed by `y`, `m`, `d` or `h`, e.g.
    /// `1y2m3d4h`; a unit given twice takes the last value, as in restic. Negative numbers are
    /// refused (restic refuses them after parsing).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| Error::InvalidInput(format!("invalid duration {s:?}: {why}"));
        let mut d = Self::default();
        let mut rest = s.trim();
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(bad(
                    "durations containing negative values are not allowed".into()
                ));
            }
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("no number found (use e.g. 1y2m3d4h)".into()));
            }
            let (num, tail) = rest.split_at(digits);
            let n: u32 = num
                .parse()
                .map_err(|_| bad(format!("{num} is too large")))?;
            let mut chars = tail.chars();
            match chars.next() {
                Some('y') => d.years = n,
                Some('m') => d.months = n,
                Some('d') => d.days = n,
                Some('h') => d.hours = n,
                Some(c) => return Err(bad(format!("invalid unit {c:?} found after number {n}"))),
                None => return Err(bad(format!("no unit found after number {n}"))),
            }
            rest = chars.as_str();
        }
        Ok(d)
    }

    /// All parts zero: the rule is off.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The cut-off below the newest snapshot `latest`, in the zone Go would give it.
    fn cutoff(&self, latest: Option<Moment>, local: &TimeZone) -> Option<i64> {
        let latest = latest?;
        let zone = calendar::go_zone(latest, local);
        calendar::go_back(
            latest,
            &zone,
            self.years.into(),
            self.months.into(),
            self.days.into(),
            self.hours.into(),
        )
    }
}

/// restic's `Duration.String`: the non-zero parts, e.g. `1y2m`.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// A `--keep-tag` list: a snapshot matches when it has all of these tags. The list `[""]`
/// matches snapshots without tags (restic's `HasTags`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// `a,b` as restic splits it: at commas, each part trimmed, empty parts kept.
    pub fn parse(s: &str) -> Self {
        Self(s.split(',').map(|t| t.trim().to_owned()).collect())
    }

    /// Whether a snapshot with `tags` has this list (restic's `HasTags`, including its
    /// early `true` for an empty tag on an untagged snapshot).
    pub fn matches(&self, tags: &[String]) -> bool {
        for t in &self.0 {
            if t.is_empty() && tags.is_empty() {
                return true;
            }
            if !tags.contains(t) {
                return false;
            }
        }
        true
    }
}

/// restic's `TagList.String`: `[a, b]`.
impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

/// What to keep (restic's `ExpirePolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub last: Count,
    pub hourly: Count,
    pub daily: Count,
    pub weekly: Count,
    pub monthly: Count,
    pub yearly: Count,
    pub within: Duration,
    pub within_hourly: Duration,
    pub within_daily: Duration,
    pub within_weekly: Duration,
    pub within_monthly: Duration,
    pub within_yearly: Duration,
    pub tags: Vec<TagList>,
}

impl Policy {
    /// No rule given: restic's `Empty` (a `--keep-*` of 0 counts as not given).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && [
                self.last,
                self.hourly,
                self.daily,
                self.weekly,
                self.monthly,
                self.yearly,
            ]
            .iter()
            .all(|c| !c.active())
            && [
                self.within,
                self.within_hourly,
                self.within_daily,
                self.within_weekly,
                self.within_monthly,
                self.within_yearly,
            ]
            .iter()
            .all(Duration::is_zero)
    }
}

/// restic's `ExpirePolicy.String`, printed as "Applying Policy: ...".
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keeps = Vec::new();
        for (c, what) in [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            match c {
                Count::Limit(n) if n > 0 => keeps.push(format!("{n} {what}")),
                Count::Unlimited => keeps.push(format!("all {what}")),
                _ => {}
            }
        }
        let mut s = String::new();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        let keepw: Vec<String> = [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ]
        .iter()
        .filter(|(d, _)| !d.is_zero())
        .map(|(d, what)| format!("{what} snapshots within {d}"))
        .collect();
        if !keepw.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&keepw.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(ToString::to_string).collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if !self.within.is_zero() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        if s.is_empty() {
            f.write_str("remove")
        } else {
            write!(f, "keep {s}")
        }
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub time: Moment,
    pub tags: &'a [String],
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Position in the caller's list.
    pub index: usize,
    /// Why it is kept (restic's `matches`); `None`: removed.
    pub kept: Option<Vec<String>>,
}

/// The bucket a wall clock falls in, for the hourly..yearly rules.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    /// restic's `ymdh`, `ymd`, `yw`, `ym`, `y` values.
    fn of(self, w: &calendar::Wall) -> i64 {
        match self {
            Self::Hour => w.year * 1_000_000 + w.month * 10_000 + w.day * 100 + w.hour,
            Self::Day => w.year * 10_000 + w.month * 100 + w.day,
            Self::Week => w.iso_year * 100 + w.iso_week,
            Self::Month => w.year * 100 + w.month,
            Self::Year => w.year,
        }
    }
}

/// A counted rule's state: its counts left and the bucket it last kept.
struct Counted {
    left: Count,
    /// `None` for `--keep-last`, whose every snapshot is a bucket of its own.
    bucket: Option<Bucket>,
    last: Option<i64>,
    reason: &'static str,
}

/// A `--keep-within-*` rule's state.
struct WithinRule {
    cutoff: Option<Option<i64>>,
    bucket: Bucket,
    last: Option<i64>,
    reason: String,
}

/// Applies `policy` to one group. `now_ns` and `local` stand for restic's `time.Now()` (a
/// snapshot in the future is never "the newest") and `time.Local` (the zone of the
/// `--keep-within*` arithmetic). Returns a verdict per snapshot, newest first; snapshots with
/// equal times keep the caller's order (restic's stable sort).
pub fn apply(
    list: &[Candidate<'_>],
    policy: &Policy,
    now_ns: i64,
    local: &TimeZone,
) -> Vec<Verdict> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|&a, &b| list[b].time.unix_ns.cmp(&list[a].time.unix_ns));
    let latest = order
        .iter()
        .map(|&i| list[i].time)
        .find(|m| m.unix_ns < now_ns);
    let mut counted = [
        (policy.last, None, "last snapshot"),
        (policy.hourly, Some(Bucket::Hour), "hourly snapshot"),
        (policy.daily, Some(Bucket::Day), "daily snapshot"),
        (policy.weekly, Some(Bucket::Week), "weekly snapshot"),
        (policy.monthly, Some(Bucket::Month), "monthly snapshot"),
        (policy.yearly, Some(Bucket::Year), "yearly snapshot"),
    ]
    .map(|(left, bucket, reason)| Counted {
        left,
        bucket,
        last: None,
        reason,
    });
    let mut within: Vec<WithinRule> = [
        (policy.within_hourly, Bucket::Hour, "hourly within"),
        (policy.within_daily, Bucket::Day, "daily within"),
        (policy.within_weekly, Bucket::Week, "weekly within"),
        (policy.within_monthly, Bucket::Month, "monthly within"),
        (policy.within_yearly, Bucket::Year, "yearly within"),
    ]
    .into_iter()
    .map(|(d, bucket, reason)| WithinRule {
        cutoff: (!d.is_zero()).then(|| d.cutoff(latest, local)),
        bucket,
        last: None,
        reason: format!("{reason} {d}"),
    })
    .collect();
    let within_all = (!policy.within.is_zero()).then(|| policy.within.cutoff(latest, local));
    // A cut-off of `None` lies before every representable time (no snapshot in the past, or
    // an enormous duration): everything is within it.
    let after = |t: i64, cutoff: Option<i64>| cutoff.is_none_or(|c| t > c);

    let n = order.len();
    let mut out = Vec::with_capacity(n);
    for (nr, &i) in order.iter().enumerate() {
        let cur = &list[i];
        let oldest = nr + 1 == n;
        let wall = calendar::wall(cur.time);
        let mut reasons = Vec::new();
        for l in &policy.tags {
            if l.matches(cur.tags) {
                reasons.push(format!("has tags {l}"));
            }
        }
        if let Some(cutoff) = within_all
            && after(cur.time.unix_ns, cutoff)
        {
            reasons.push(format!("within {}", policy.within));
        }
        for b in &mut counted {
            if !b.left.active() {
                continue;
            }
            // `--keep-last` puts every snapshot in a bucket of its own (restic's `always`).
            let val = b.bucket.map_or(nr as i64, |k| k.of(&wall));
            let same = b.last == Some(val);
            if !same || oldest {
                b.last = Some(val);
                if let Count::Limit(c) = &mut b.left {
                    *c -= 1;
                }
                reasons.push(if same {
                    format!("oldest {}", b.reason)
                } else {
                    b.reason.to_owned()
                });
            }
        }
        for w in &mut within {
            let Some(cutoff) = w.cutoff else { continue };
            if !after(cur.time.unix_ns, cutoff) {
                continue;
            }
            let val = w.bucket.of(&wall);
            let same = w.last == Some(val);
            if !same || oldest {
                w.last = Some(val);
                reasons.push(if same {
                    format!("oldest {}", w.reason)
                } else {
                    w.reason.clone()
                });
            }
        }
        out.push(Verdict {
            index: i,
            kept: (!reasons.is_empty()).then_some(reasons),
        });
    }
    out
}

#[cfg(test)]
mod tests;
