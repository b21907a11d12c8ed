//! Today in the IVR's time zone: local midnight as UTC ms, and when the next day begins.

use crate::engine::time::Millis;
use chrono::{Days, NaiveDate, TimeZone};
use chrono_tz::Tz;

#[derive(Clone, Debug)]
pub struct DayClock {
    tz: Tz,
    start: Millis,
    next: Millis,
}

/// The UTC instant of local midnight starting `date` (the first instant of the day when a
/// DST change skips midnight).
fn midnight(tz: Tz, date: NaiveDate) -> Millis {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let at = tz
        .from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            // Midnight does not exist that day: the day starts at 01:00.
            let one = date.and_hms_opt(1, 0, 0)?;
            tz.from_local_datetime(&one).earliest()
        })
        .map(|d| d.timestamp_millis())
        .unwrap_or(0);
    Millis(u64::try_from(at).unwrap_or(0))
}

fn local_date(tz: Tz, now: Millis) -> NaiveDate {
    let ms = i64::try_from(now.as_u64()).unwrap_or(i64::MAX);
    tz.timestamp_millis_opt(ms)
        .single()
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

impl DayClock {
    pub fn new(tz: Tz, now: Millis) -> DayClock {
        let mut d = DayClock {
            tz,
            start: Millis(0),
            next: Millis(0),
        };
        d.set(now);
        d
    }

    fn set(&mut self, now: Millis) {
        let date = local_date(self.tz, now);
        self.start = midnight(self.tz, date);
        self.next = midnight(self.tz, date.checked_add_days(Days::new(1)).unwrap_or(date));
    }

    pub fn start(&self) -> Millis {
        self.start
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// True when `now` is in a new day (then `start` moved).
    pub fn roll(&mut self, now: Millis) -> bool {
        if now < self.next {
            return false;
        }
        self.set(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_midnight_is_16_00_utc_the_day_before() {
        // 2025-12-05 03:00 UTC = 11:00 in Shanghai; the day began 2025-12-04 16:00 UTC.
        let now = Millis(1_764_903_600_000);
        let mut d = DayClock::new(chrono_tz::Asia::Shanghai, now);
        assert_eq!(d.start(), Millis(1_764_864_000_000));
        assert!(!d.roll(Millis(1_764_950_399_999)));
        assert!(d.roll(Millis(1_764_950_400_000)));
        assert_eq!(d.start(), Millis(1_764_950_400_000));
    }
}
