//! When a job runs: a systemd timer from a policy's `every`.
//!
//! Intervals systemd's calendar can say exactly get an `OnCalendar=` (with
//! `Persistent=true`, a run missed while the host was off happens at boot): minutes that
//! divide an hour (`*:07/15`), hours that divide a day (`02/6:41`), a day (`03:41`), a
//! week (`Sun 03:41`). Each policy is offset by a hash of its name, so a site's hourly
//! jobs do not all hit MinIO at minute 0, and the offset is the same on every build.
//! Daily and weekly runs fall between 01:00 and 05:59, away from the working day. Any
//! other interval (`90m`, `2d`) is a monotonic timer: `OnBootSec=` + `OnUnitActiveSec=`.

use sha2::{Digest, Sha256};

/// A timer's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `OnCalendar=` (a `systemd-analyze calendar` expression).
    Calendar(String),
    /// `OnUnitActiveSec=`, in seconds.
    Every(u64),
}

/// A stable number from a name, for offsets.
fn spread(name: &str) -> u64 {
    let d = Sha256::digest(name.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The schedule of a job that runs every `secs` seconds, offset by `name`.
pub fn schedule(secs: u64, name: &str) -> Schedule {
    let s = spread(name);
    let minute = s % 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    if (60..HOUR).contains(&secs) && secs.is_multiple_of(60) && HOUR.is_multiple_of(secs) {
        let m = secs / 60;
        return Schedule::Calendar(format!("*:{:02}/{m}", minute % m));
    }
    if (HOUR..DAY).contains(&secs) && secs.is_multiple_of(HOUR) && DAY.is_multiple_of(secs) {
        let h = secs / HOUR;
        return Schedule::Calendar(if h == 1 {
            format!("*:{minute:02}")
        } else {
            format!("{:02}/{h}:{minute:02}", (s / 60) % h)
        });
    }
    let night = 1 + (s / 60) % 5;
    if secs == DAY {
        return Schedule::Calendar(format!("{night:02}:{minute:02}"));
    }
    if secs == 7 * DAY {
        let day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][((s / 3600) % 7) as usize];
        return Schedule::Calendar(format!("{day} {night:02}:{minute:02}"));
    }
    Schedule::Every(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_a_calendar_can_say_are_calendars() {
        assert!(matches!(schedule(900, "a"), Schedule::Calendar(c) if c.starts_with("*:") && c.ends_with("/15")));
        assert!(matches!(schedule(3600, "a"), Schedule::Calendar(c) if c.starts_with("*:") && !c.contains('/')));
        assert!(matches!(schedule(6 * 3600, "a"), Schedule::Calendar(c) if c.contains("/6:")));
        assert!(matches!(schedule(86400, "a"), Schedule::Calendar(c) if c.len() == 5));
        assert!(matches!(schedule(7 * 86400, "a"), Schedule::Calendar(c) if c.len() == 9));
        assert_eq!(schedule(5400, "a"), Schedule::Every(5400));
        assert_eq!(schedule(2 * 86400, "a"), Schedule::Every(2 * 86400));
        assert_eq!(schedule(45, "a"), Schedule::Every(45));
    }

    #[test]
    fn offsets_are_stable_and_differ_between_names() {
        assert_eq!(schedule(3600, "redis-rdb"), schedule(3600, "redis-rdb"));
        let all: std::collections::BTreeSet<_> =
            ["a", "b", "c", "d", "e", "f"].iter().map(|n| format!("{:?}", schedule(3600, n))).collect();
        assert!(all.len() > 1, "six names, one minute: {all:?}");
    }
}
