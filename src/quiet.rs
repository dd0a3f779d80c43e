//! Quiet time: when a sink must not buzz anyone (`quiet_hours`,
//! `quiet_days`), in one person's or one channel's zone. Pure arithmetic, no
//! I/O, so the dispatcher, `why` and the tests share one answer.
//!
//! Rules, all on the local wall clock of the zone:
//! - `quiet_hours = { from, to }` is quiet from `from` (inclusive) to `to`
//!   (exclusive), wrapping midnight when `to` is earlier than `from`.
//!   `from == to` is refused ([`QuietError::SameTimes`]): it could mean
//!   "never" or "always", and whole days are what `quiet_days` is for.
//! - `quiet_days` are whole local days (00:00 to 00:00), joining the hours
//!   into one stretch (Fri 19:00 → Mon 07:30 with `["sat", "sun"]`).
//!   All seven days is refused ([`QuietError::AllDays`]): nothing would ever go.
//! - Whether an instant is quiet depends only on the wall clock it shows.
//!   A window edge in the hour skipped in spring (say `to = "02:30"` on a
//!   night that goes 02:00 → 03:00) ends at the jump, the first wall time
//!   past it. A window edge in the hour repeated in autumn applies to both
//!   passes: a window ending at 02:30 ends at the first 02:30 and is quiet
//!   again from the repeated 02:00 to the second 02:30.

use chrono::{
    DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Offset, SubsecRound, TimeZone, Utc,
};
use chrono_tz::Tz;

/// What is wrong with a quiet-time setting (the config names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuietError {
    /// Not `HH:MM` on a 24-hour clock.
    #[error("{0:?} is not a time of day as \"HH:MM\" (00:00 to 23:59)")]
    BadTime(String),
    /// `from` and `to` are the same time.
    #[error(
        "from and to are both {0}: a window must have a length (use quiet_days for whole days)"
    )]
    SameTimes(String),
    /// Not a weekday name.
    #[error("{0:?} is not a day (mon, tue, wed, thu, fri, sat, sun)")]
    UnknownDay(String),
    /// Every day of the week is quiet.
    #[error("all seven days are quiet, so nothing would ever be sent")]
    AllDays,
}

/// A sink's quiet time, zone-free: the same for every recipient, whose
/// own zone is applied with [`QuietWindow::in_zone`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuietWindow {
    /// `(from, to)` of `quiet_hours`.
    hours: Option<(NaiveTime, NaiveTime)>,
    /// Bit `n` set: the weekday `n` days after Monday is quiet.
    days: u8,
}

impl QuietWindow {
    /// The window from the config's strings; `None`s mean "not set".
    pub fn parse(hours: Option<(&str, &str)>, days: &[String]) -> Result<Self, QuietError> {
        let hours = match hours {
            Some((from, to)) => {
                let (from, to) = (parse_time(from)?, parse_time(to)?);
                if from == to {
                    return Err(QuietError::SameTimes(from.format("%H:%M").to_string()));
                }
                Some((from, to))
            }
            None => None,
        };
        let mut mask = 0u8;
        for day in days {
            mask |= 1 << parse_day(day)?;
        }
        if mask == 0x7f {
            return Err(QuietError::AllDays);
        }
        Ok(QuietWindow { hours, days: mask })
    }

    /// True when nothing is ever quiet (no hours, no days).
    pub fn is_empty(&self) -> bool {
        self.hours.is_none() && self.days == 0
    }

    /// The window on the wall clock of `zone`.
    pub fn in_zone(self, zone: Tz) -> QuietTime {
        QuietTime { window: self, zone }
    }

    fn quiet_at_wall(&self, local: NaiveDateTime) -> bool {
        let day = local.weekday().num_days_from_monday();
        if self.days & (1 << day) != 0 {
            return true;
        }
        match self.hours {
            Some((from, to)) if from < to => local.time() >= from && local.time() < to,
            Some((from, to)) => local.time() >= from || local.time() < to,
            None => false,
        }
    }
}

/// A [`QuietWindow`] in one zone: answers for instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietTime {
    window: QuietWindow,
    zone: Tz,
}

/// How far ahead [`QuietTime::quiet_until`] looks: a week and a day covers
/// six quiet days plus one night.
const HORIZON_DAYS: i64 = 8;

impl QuietTime {
    /// The zone the window is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether `t` falls in quiet time.
    pub fn is_quiet(&self, t: DateTime<Utc>) -> bool {
        self.window
            .quiet_at_wall(t.with_timezone(&self.zone).naive_local())
    }

    /// The first instant at or after `t` that is not quiet: `t` itself when
    /// it is not quiet; `None` only if the window never ends (which a
    /// checked config cannot hold).
    pub fn quiet_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.is_quiet(t) {
            return Some(t);
        }
        let end = t + Duration::days(HORIZON_DAYS);
        let mut candidates = self.edges(t, end);
        candidates.extend(transitions(self.zone, t, end));
        candidates.retain(|c| *c > t && *c <= end);
        candidates.sort_unstable();
        candidates.into_iter().find(|c| !self.is_quiet(*c))
    }

    /// Every instant in `[start, end]` whose wall clock shows `to` or
    /// midnight: where quiet time can end between two offset changes.
    fn edges(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut times = vec![NaiveTime::MIN];
        if let Some((_, to)) = self.window.hours {
            times.push(to);
        }
        let first = start.with_timezone(&self.zone).date_naive() - Duration::days(1);
        let last = end.with_timezone(&self.zone).date_naive() + Duration::days(1);
        let mut out = Vec::new();
        for date in first.iter_days().take_while(|d| *d <= last) {
            for time in &times {
                let local = self.zone.from_local_datetime(&date.and_time(*time));
                // A wall time in a spring gap has no instant: the offset
                // change itself is a candidate instead.
                out.extend(local.earliest().map(|x| x.with_timezone(&Utc)));
                out.extend(local.latest().map(|x| x.with_timezone(&Utc)));
            }
        }
        out
    }
}

/// The instants in `(start, end]` where `zone`'s offset changes, to the
/// second: found by looking every hour, then halving the hour that changed.
fn transitions(zone: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let mut at = start.trunc_subsecs(0);
    while at < end {
        let next = at + Duration::hours(1);
        if offset(at) != offset(next) {
            let (mut lo, mut hi) = (at, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(lo) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        at = next;
    }
    out
}

/// `HH:MM`, exactly two digits each, on a 24-hour clock.
fn parse_time(text: &str) -> Result<NaiveTime, QuietError> {
    let bad = || QuietError::BadTime(text.to_string());
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// A day name (`mon` or `monday`, any case) as days after Monday.
fn parse_day(text: &str) -> Result<u32, QuietError> {
    let lower = text.trim().to_lowercase();
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    DAYS.iter()
        .position(|d| {
            lower.len() >= 3 && d.starts_with(&lower) && (lower.len() == 3 || lower == *d)
        })
        .map(|i| i as u32)
        .ok_or_else(|| QuietError::UnknownDay(text.to_string()))
}

#[cfg(test)]
mod tests;
