//! Freeze windows: whether now lies inside one, and when that window ends.
//!
//! An absolute window `{from, to}` is the half-open interval [from, to) of instants.
//!
//! A weekly window is read on the wall clock of its time zone (`tz`, UTC by default):
//! "fri 16:00 Europe/Paris" is 16:00 in Paris in summer and in winter alike. Now is
//! converted to that zone and its second of the week (Monday 00:00:00 = 0) compared with
//! the window's bounds, half-open and modulo the week, so `fri 16:00 → mon 08:00` wraps the
//! week end. A window whose bounds are equal never blocks (load-time validation refuses it).
//!
//! The end of a weekly window is its `to` wall-clock time at its next occurrence after
//! now, as an instant: when that local time is skipped by a DST gap, the first instant
//! after the gap; when it occurs twice (the clock is turned back), the earliest occurrence
//! after now. Because the comparison is on the wall clock, an hour repeated by the clock
//! going back is inside the window twice when the window covers it.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, NaiveTime, TimeZone as _};
use chrono::{TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::project::config::{FreezeWindow, WeeklyWindow};
use crate::project::spanned::Spanned;

const SECONDS_PER_WEEK: i64 = 7 * 24 * 60 * 60;

/// The window that blocks promotion now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Its position in the gate's list.
    pub index: usize,
    /// One sentence for the table and the evidence: the window, its reason and its end.
    pub description: String,
    /// When the window ends: the first instant after now at which it no longer blocks.
    pub ends_at: DateTime<Utc>,
}

/// The first window that contains `now`, and a sentence describing it for the table and
/// the evidence, e.g. "weekly freeze fri 16:00 → mon 08:00 (Europe/Paris): release freeze
/// for the weekend; ends mon 2026-11-30 08:00 CET". The end is written in the window's time
/// zone (weekly) or offset (absolute), so the on-call knows when to retry.
pub fn blocking(windows: &[Spanned<FreezeWindow>], now: DateTime<Utc>) -> Option<Blocking> {
    windows.iter().enumerate().find_map(|(index, window)| {
        let (description, ends_at) = containing(&window.value, now)?;
        Some(Blocking {
            index,
            description,
            ends_at,
        })
    })
}

/// The description and end of `window` if it contains `now`. A window that is both weekly
/// and absolute is refused at load time; should one get here, either part blocks.
fn containing(window: &FreezeWindow, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
    let reason = window
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    if let Some(weekly) = &window.weekly {
        let tz = window.tz.map_or(Tz::UTC, |tz| tz.0);
        if let Some(ends_at) = weekly_end(weekly, tz, now) {
            let description = format!(
                "weekly freeze {} → {} ({}){reason}; ends {}",
                weekly.from,
                weekly.to,
                tz.name(),
                zoned(&ends_at.with_timezone(&tz)),
            );
            return Some((description, ends_at));
        }
    }
    if let (Some(from), Some(to)) = (window.from, window.to) {
        let (start, end) = (from.0.with_timezone(&Utc), to.0.with_timezone(&Utc));
        if start <= now && now < end {
            let description = format!(
                "freeze {} → {}{reason}; ends {}",
                offset(&from.0, false),
                offset(&to.0, false),
                offset(&to.0, true),
            );
            return Some((description, end));
        }
    }
    None
}

/// When the weekly window ends, if it contains `now`.
fn weekly_end(weekly: &WeeklyWindow, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from = i64::from(weekly.from.minute_of_week()) * 60;
    let to = i64::from(weekly.to.minute_of_week()) * 60;
    let length = (to - from).rem_euclid(SECONDS_PER_WEEK);
    if length == 0 {
        return None;
    }
    let local = now.with_timezone(&tz).naive_local();
    let second_of_day = local.num_seconds_from_midnight();
    let second_of_week =
        i64::from(local.weekday().num_days_from_monday()) * 86_400 + i64::from(second_of_day);
    let elapsed = (second_of_week - from).rem_euclid(SECONDS_PER_WEEK);
    if elapsed >= length {
        return None;
    }
    // `to` on the wall clock, at its next occurrence: from the start of now's second, the
    // seconds left until `to`. `and_time` drops now's fraction (and any leap second).
    let whole_second = NaiveTime::from_num_seconds_from_midnight_opt(second_of_day, 0)?;
    let end = local
        .date()
        .and_time(whole_second)
        .checked_add_signed(TimeDelta::seconds(length - elapsed));
    Some(end.map_or(DateTime::<Utc>::MAX_UTC, |end| {
        first_instant_after(tz, end, now)
    }))
}

/// The first instant after `now` showing `local` on the clocks of `tz` (or, when DST skips
/// it, the first instant after the gap). Looks a few weeks ahead should `local` (absurdly)
/// not occur after `now`.
fn first_instant_after(tz: Tz, local: NaiveDateTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut local = local;
    for _ in 0..3 {
        let found = match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => [a, b]
                .into_iter()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t > now)
                .min(),
            LocalResult::None => gap_end(tz, local),
        };
        if let Some(t) = found.filter(|t| *t > now) {
            return t;
        }
        match local.checked_add_signed(TimeDelta::seconds(SECONDS_PER_WEEK)) {
            Some(next) => local = next,
            None => break,
        }
    }
    DateTime::<Utc>::MAX_UTC
}

/// The instant at which the clocks of `tz` jump over `local` (which does not exist there):
/// the first instant whose wall-clock time is at or after `local`. UTC offsets stay within
/// a day, so the instant lies within a day of `local` read as UTC.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let wall = |seconds: i64| {
        DateTime::from_timestamp(seconds, 0).map(|t| t.with_timezone(&tz).naive_local())
    };
    let center = local.and_utc().timestamp();
    let (mut before, mut after) = (center - 86_400, center + 86_400);
    if wall(before)? >= local || wall(after)? < local {
        return None;
    }
    // Invariant: wall(before) < local <= wall(after).
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if wall(middle)? >= local {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::from_timestamp(after, 0)
}

/// `mon 2026-11-30 08:00 CET` (seconds shown only when not zero).
fn zoned(t: &DateTime<Tz>) -> String {
    format!("{} {}", clock(t, true), t.format("%Z"))
}

/// `2026-12-27 00:00 +01:00` (or `… UTC`), optionally with the weekday first.
fn offset(t: &DateTime<chrono::FixedOffset>, weekday: bool) -> String {
    let zone = if t.offset().local_minus_utc() == 0 {
        "UTC".to_owned()
    } else {
        t.format("%:z").to_string()
    };
    format!("{} {zone}", clock(t, weekday))
}

fn clock<Z: chrono::TimeZone>(t: &DateTime<Z>, weekday: bool) -> String
where
    Z::Offset: std::fmt::Display,
{
    let time = if t.second() == 0 {
        t.format("%Y-%m-%d %H:%M")
    } else {
        t.format("%Y-%m-%d %H:%M:%S")
    };
    if weekday {
        format!("{} {time}", t.weekday().to_string().to_lowercase())
    } else {
        time.to_string()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use proptest::prelude::*;

    use super::*;
    use crate::project::time::{TimeZone, Timestamp, WeeklyTime};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn absolute(from: &str, to: &str, reason: Option<&str>) -> Spanned<FreezeWindow> {
        Spanned::unspanned(FreezeWindow {
            from: Some(Timestamp(DateTime::parse_from_rfc3339(from).unwrap())),
            to: Some(Timestamp(DateTime::parse_from_rfc3339(to).unwrap())),
            weekly: None,
            tz: None,
            reason: reason.map(str::to_owned),
        })
    }

    fn weekly(from: &str, to: &str, tz: Option<Tz>, reason: Option<&str>) -> Spanned<FreezeWindow> {
        Spanned::unspanned(FreezeWindow {
            from: None,
            to: None,
            weekly: Some(WeeklyWindow {
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
            }),
            tz: tz.map(TimeZone),
            reason: reason.map(str::to_owned),
        })
    }

    /// The end of the blocking window at `now`, or None.
    fn ends(windows: &[Spanned<FreezeWindow>], now: &str) -> Option<DateTime<Utc>> {
        blocking(windows, at(now)).map(|b| b.ends_at)
    }

    #[test]
    fn absolute_start_is_inclusive_and_end_exclusive() {
        let windows = [absolute(
            "2026-12-24T00:00:00+01:00",
            "2026-12-27T00:00:00+01:00",
            Some("holidays"),
        )];
        let start = at("2026-12-23T23:00:00Z");
        let end = at("2026-12-26T23:00:00Z");
        assert_eq!(blocking(&windows, start - TimeDelta::nanoseconds(1)), None);
        let found = blocking(&windows, start).unwrap();
        assert_eq!(
            found,
            Blocking {
                index: 0,
                description: "freeze 2026-12-24 00:00 +01:00 → 2026-12-27 00:00 +01:00: \
                              holidays; ends sun 2026-12-27 00:00 +01:00"
                    .into(),
                ends_at: end,
            }
        );
        assert!(blocking(&windows, end - TimeDelta::nanoseconds(1)).is_some());
        assert_eq!(blocking(&windows, end), None);
    }

    #[test]
    fn absolute_in_utc_without_reason_and_the_first_match_wins() {
        let windows = [
            absolute("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None),
            absolute("2026-06-01T00:00:00Z", "2026-06-03T12:30:15Z", None),
            weekly("mon 00:00", "sun 23:59", None, Some("always")),
        ];
        let found = blocking(&windows, at("2026-06-02T00:00:00Z")).unwrap();
        assert_eq!(found.index, 1);
        assert_eq!(
            found.description,
            "freeze 2026-06-01 00:00 UTC → 2026-06-03 12:30:15 UTC; ends wed 2026-06-03 12:30:15 UTC"
        );
        assert_eq!(
            blocking(&windows, at("2026-06-03T12:30:15Z"))
                .unwrap()
                .index,
            2
        );
    }

    #[test]
    fn odd_windows_never_block() {
        let backwards = absolute("2026-12-27T00:00:00Z", "2026-12-24T00:00:00Z", None);
        let empty = weekly("fri 16:00", "fri 16:00", None, None);
        let half = Spanned::unspanned(FreezeWindow {
            to: None,
            ..absolute("2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z", None).value
        });
        let nothing = Spanned::unspanned(FreezeWindow {
            from: None,
            to: None,
            weekly: None,
            tz: None,
            reason: None,
        });
        for now in ["2026-12-25T00:00:00Z", "2026-12-25T16:00:00Z"] {
            let windows = [
                backwards.clone(),
                empty.clone(),
                half.clone(),
                nothing.clone(),
            ];
            assert_eq!(blocking(&windows, at(now)), None);
        }
        assert_eq!(blocking(&[], at("2026-12-25T00:00:00Z")), None);
    }

    #[test]
    fn weekly_within_one_day() {
        // 2026-07-01 is a Wednesday.
        let windows = [weekly(
            "wed 12:00",
            "wed 14:00",
            None,
            Some("deploy review"),
        )];
        assert_eq!(ends(&windows, "2026-07-01T11:59:59.999Z"), None);
        let found = blocking(&windows, at("2026-07-01T12:00:00Z")).unwrap();
        assert_eq!(found.ends_at, at("2026-07-01T14:00:00Z"));
        assert_eq!(
            found.description,
            "weekly freeze wed 12:00 → wed 14:00 (UTC): deploy review; ends wed 2026-07-01 14:00 UTC"
        );
        assert_eq!(
            ends(&windows, "2026-07-01T13:59:59Z"),
            Some(at("2026-07-01T14:00:00Z"))
        );
        assert_eq!(ends(&windows, "2026-07-01T14:00:00Z"), None);
        assert_eq!(ends(&windows, "2026-07-02T13:00:00Z"), None);
        assert_eq!(
            ends(&windows, "2026-07-08T13:00:00Z"),
            Some(at("2026-07-08T14:00:00Z"))
        );
    }

    #[test]
    fn weekly_wraps_the_week_end() {
        let windows = [weekly("fri 16:00", "mon 08:00", None, None)];
        let monday = Some(at("2026-07-06T08:00:00Z"));
        assert_eq!(ends(&windows, "2026-07-02T17:00:00Z"), None); // thursday
        assert_eq!(ends(&windows, "2026-07-03T15:59:59Z"), None);
        assert_eq!(ends(&windows, "2026-07-03T16:00:00Z"), monday);
        assert_eq!(ends(&windows, "2026-07-04T12:00:00Z"), monday);
        assert_eq!(ends(&windows, "2026-07-05T23:59:59Z"), monday);
        assert_eq!(ends(&windows, "2026-07-06T00:00:00Z"), monday);
        assert_eq!(ends(&windows, "2026-07-06T07:59:59Z"), monday);
        assert_eq!(ends(&windows, "2026-07-06T08:00:00Z"), None);
    }

    #[test]
    fn weekly_in_paris_follows_summer_and_winter_time() {
        let windows = [weekly(
            "fri 16:00",
            "mon 08:00",
            Some(chrono_tz::Europe::Paris),
            Some("release freeze for the weekend"),
        )];
        // Summer (CEST, UTC+2): 16:00 in Paris is 14:00Z.
        assert_eq!(ends(&windows, "2026-07-03T13:59:59Z"), None);
        let summer = blocking(&windows, at("2026-07-03T14:30:00Z")).unwrap();
        assert_eq!(summer.ends_at, at("2026-07-06T06:00:00Z"));
        assert_eq!(
            summer.description,
            "weekly freeze fri 16:00 → mon 08:00 (Europe/Paris): release freeze for the \
             weekend; ends mon 2026-07-06 08:00 CEST"
        );
        assert_eq!(ends(&windows, "2026-07-03T15:30:00Z"), Some(summer.ends_at));
        // Winter (CET, UTC+1): 16:00 in Paris is 15:00Z.
        assert_eq!(ends(&windows, "2026-12-04T14:30:00Z"), None);
        let winter = blocking(&windows, at("2026-12-04T15:30:00Z")).unwrap();
        assert_eq!(winter.ends_at, at("2026-12-07T07:00:00Z"));
        assert_eq!(
            winter.description,
            "weekly freeze fri 16:00 → mon 08:00 (Europe/Paris): release freeze for the \
             weekend; ends mon 2026-12-07 08:00 CET"
        );
        assert_eq!(ends(&windows, "2026-12-07T06:59:59Z"), Some(winter.ends_at));
        assert_eq!(ends(&windows, "2026-12-07T07:00:00Z"), None);
    }

    #[test]
    fn weekly_in_new_york() {
        let windows = [weekly(
            "fri 17:00",
            "mon 09:00",
            Some(chrono_tz::America::New_York),
            None,
        )];
        // Summer (EDT, UTC-4).
        assert_eq!(ends(&windows, "2026-07-03T20:59:59Z"), None);
        let summer = blocking(&windows, at("2026-07-03T21:00:00Z")).unwrap();
        assert_eq!(summer.ends_at, at("2026-07-06T13:00:00Z"));
        assert!(
            summer
                .description
                .ends_with("ends mon 2026-07-06 09:00 EDT"),
            "{}",
            summer.description
        );
        // Winter (EST, UTC-5); Friday 21:30Z is still 16:30 in New York.
        assert_eq!(ends(&windows, "2026-12-04T21:30:00Z"), None);
        assert_eq!(
            ends(&windows, "2026-12-04T22:00:00Z"),
            Some(at("2026-12-07T14:00:00Z"))
        );
        // Monday 01:00Z is Sunday evening in New York.
        assert_eq!(
            ends(&windows, "2026-12-07T01:00:00Z"),
            Some(at("2026-12-07T14:00:00Z"))
        );
    }

    #[test]
    fn ends_at_across_dst_changes() {
        let paris = Some(chrono_tz::Europe::Paris);
        let windows = [weekly("fri 16:00", "mon 08:00", paris, None)];
        // Clocks go forward on Sunday 2027-03-28: starts in CET, ends in CEST.
        let spring = blocking(&windows, at("2027-03-26T15:00:00Z")).unwrap();
        assert_eq!(spring.ends_at, at("2027-03-29T06:00:00Z"));
        assert!(
            spring
                .description
                .ends_with("ends mon 2027-03-29 08:00 CEST")
        );
        assert_eq!(ends(&windows, "2027-03-26T14:59:59Z"), None);
        // Clocks go back on Sunday 2026-10-25: starts in CEST, ends in CET.
        let autumn = blocking(&windows, at("2026-10-23T14:00:00Z")).unwrap();
        assert_eq!(autumn.ends_at, at("2026-10-26T07:00:00Z"));
        assert!(
            autumn
                .description
                .ends_with("ends mon 2026-10-26 08:00 CET")
        );
        assert_eq!(ends(&windows, "2026-10-23T13:59:59Z"), None);
    }

    #[test]
    fn end_skipped_by_the_clocks_going_forward() {
        // Sunday 2027-03-28 02:30 does not exist in Paris: 02:00 CET becomes 03:00 CEST
        // (01:00Z); the window ends right after the gap.
        let windows = [weekly(
            "sat 12:00",
            "sun 02:30",
            Some(chrono_tz::Europe::Paris),
            None,
        )];
        let found = blocking(&windows, at("2027-03-27T12:00:00Z")).unwrap();
        assert_eq!(found.ends_at, at("2027-03-28T01:00:00Z"));
        assert!(
            found
                .description
                .ends_with("ends sun 2027-03-28 03:00 CEST"),
            "{}",
            found.description
        );
        assert!(blocking(&windows, at("2027-03-28T00:59:59Z")).is_some());
        assert_eq!(blocking(&windows, found.ends_at), None);
        // A start in the gap: from 03:00 CEST on, the wall clock is past 02:30.
        let windows = [weekly(
            "sun 02:30",
            "sun 05:00",
            Some(chrono_tz::Europe::Paris),
            None,
        )];
        assert_eq!(ends(&windows, "2027-03-28T00:59:59Z"), None);
        assert_eq!(
            ends(&windows, "2027-03-28T01:00:00Z"),
            Some(at("2027-03-28T03:00:00Z"))
        );
    }

    #[test]
    fn end_repeated_by_the_clocks_going_back() {
        // Sunday 2026-10-25 02:30 happens twice in Paris: 00:30Z (CEST) and 01:30Z (CET).
        let windows = [weekly(
            "sat 12:00",
            "sun 02:30",
            Some(chrono_tz::Europe::Paris),
            None,
        )];
        let first = blocking(&windows, at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first.ends_at, at("2026-10-25T00:30:00Z"));
        assert!(
            first
                .description
                .ends_with("ends sun 2026-10-25 02:30 CEST")
        );
        assert_eq!(blocking(&windows, first.ends_at), None);
        // Wall-clock semantics: at 02:10 CET (01:10Z) the clock reads inside the window again,
        // until 02:30 CET.
        let again = blocking(&windows, at("2026-10-25T01:10:00Z")).unwrap();
        assert_eq!(again.ends_at, at("2026-10-25T01:30:00Z"));
        assert_eq!(blocking(&windows, again.ends_at), None);
    }

    fn weekly_time(minute_of_week: u32) -> WeeklyTime {
        let day = Weekday::try_from(u8::try_from(minute_of_week / 1440).unwrap()).unwrap();
        let minute = minute_of_week % 1440;
        WeeklyTime {
            day,
            time: NaiveTime::from_hms_opt(minute / 60, minute % 60, 0).unwrap(),
        }
    }

    fn weekly_minutes(from: u32, to: u32, tz: Option<Tz>) -> Spanned<FreezeWindow> {
        Spanned::unspanned(FreezeWindow {
            from: None,
            to: None,
            weekly: Some(WeeklyWindow {
                from: weekly_time(from),
                to: weekly_time(to),
            }),
            tz: tz.map(TimeZone),
            reason: None,
        })
    }

    /// Inside iff now's minute of the week, on `tz`'s wall clock, lies in [from, to) modulo
    /// the week.
    fn reference(from: u32, to: u32, tz: Tz, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&tz);
        let minute =
            local.weekday().num_days_from_monday() * 1440 + local.hour() * 60 + local.minute();
        if from < to {
            from <= minute && minute < to
        } else {
            minute >= from || minute < to
        }
    }

    const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000-01-01 to 2060-01-01, with a fraction of a second.
        (946_684_800_i64..2_840_140_800, 0_u32..1_000_000_000)
            .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).unwrap())
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            Tz::UTC,
            chrono_tz::Europe::Paris,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe, // DST of 30 minutes
            chrono_tz::Asia::Kolkata,
        ])
    }

    proptest! {
        #[test]
        fn weekly_in_utc_agrees_with_the_reference(
            from in 0..MINUTES_PER_WEEK,
            length in 1..MINUTES_PER_WEEK,
            now in instant(),
        ) {
            let to = (from + length) % MINUTES_PER_WEEK;
            let windows = [weekly_minutes(from, to, None)];
            let found = blocking(&windows, now);
            prop_assert_eq!(found.is_some(), reference(from, to, Tz::UTC, now));
            if let Some(found) = found {
                prop_assert!(found.ends_at > now);
                prop_assert!(found.ends_at - now <= TimeDelta::minutes(i64::from(length)));
                prop_assert_eq!(blocking(&windows, found.ends_at), None);
                prop_assert!(blocking(&windows, found.ends_at - TimeDelta::seconds(1)).is_some());
            }
        }

        #[test]
        fn weekly_in_zones_with_dst(
            from in 0..MINUTES_PER_WEEK,
            // Leave at least two hours outside, so a DST gap cannot end inside the next
            // occurrence of the window.
            length in 1..MINUTES_PER_WEEK - 120,
            now in instant(),
            tz in zone(),
        ) {
            let to = (from + length) % MINUTES_PER_WEEK;
            let windows = [weekly_minutes(from, to, Some(tz))];
            let found = blocking(&windows, now);
            prop_assert_eq!(found.is_some(), reference(from, to, tz, now));
            if let Some(found) = found {
                prop_assert!(found.ends_at > now);
                prop_assert!(found.ends_at - now <= TimeDelta::minutes(i64::from(length) + 60));
                prop_assert_eq!(blocking(&windows, found.ends_at), None);
            }
        }
    }
}
