//! date822: dates in UTC as qmail writes them, kept by hand: `httpdate` writes only
//! `Sun, 06 Nov 1994 08:49:37 GMT`, and `time` would add six crates for twenty lines of
//! calendar arithmetic and refuses years beyond 9999, which a file's mtime can reach.
//!
//! The forms: `22 Nov 2026 00:31:12 -0000` (day not zero-padded) for Received lines and Date
//! headers, and the `YYYYMMDDhhmmss` stamp of Message-IDs. No time-zone database: qmail
//! writes UTC with `-0000`.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// Seconds since the epoch (negative allowed) to calendar fields, proleptic Gregorian.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        // civil-from-days (H. Hinnant's algorithm)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Seconds since the epoch: the inverse of [`Utc::from_unix`] for valid fields.
    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    pub fn now() -> Self {
        Self::from_unix(unix_now())
    }

    /// `22 Nov 2026 00:31:12 -0000`
    pub fn rfc822(&self) -> String {
        format!(
            "{} {} {} {:02}:{:02}:{:02} -0000",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `20261122003112`
    pub fn stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `Thu Nov 22 00:31:12 2026` for `secs` since the epoch: C's asctime, as mbox `From ` lines
/// carry it (qmail-local, qmail-quotawarn).
pub fn asctime(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let t = Utc::from_unix(secs);
    // 1 Jan 1970 was a Thursday
    let wday = (secs.div_euclid(86400) + 4).rem_euclid(7) as usize;
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}",
        DAYS[wday],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// Days since 1 Jan 1970 of a proleptic Gregorian date (negative before it): the inverse of
/// the calendar half of [`Utc::from_unix`] (H. Hinnant's days-from-civil). The fields are not
/// checked: `month` must be 1 to 12 and `day` 1 to 31; 31 Feb is read as 3 Mar (or 2 Mar).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch now (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let rows: &[(i64, &str, &str)] = &[
            (0, "1 Jan 1970 00:00:00 -0000", "19700101000000"),
            (951_782_400, "29 Feb 2000 00:00:00 -0000", "20000229000000"),
            (1_795_307_472, "22 Nov 2026 00:31:12 -0000", "20261122003112"),
            (4_102_444_799, "31 Dec 2099 23:59:59 -0000", "20991231235959"),
            (-1, "31 Dec 1969 23:59:59 -0000", "19691231235959"),
        ];
        for &(secs, text, stamp) in rows {
            let t = Utc::from_unix(secs);
            assert_eq!(t.rfc822(), text, "{secs}");
            assert_eq!(t.stamp(), stamp, "{secs}");
        }
        assert_eq!(asctime(0), "Thu Jan 01 00:00:00 1970");
        assert_eq!(asctime(1_795_307_472), "Sun Nov 22 00:31:12 2026");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(-1), "Wed Dec 31 23:59:59 1969");
    }

    #[test]
    fn days_from_civil_inverts_from_unix() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28), 1);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        // every day over several 400-year cycles, either side of the epoch
        for days in (-800_000i64..800_000).step_by(97) {
            let t = Utc::from_unix(days * 86400 + 3723);
            assert_eq!(days_from_civil(t.year, t.month, t.day), days, "{t:?}");
            assert_eq!(t.to_unix(), days * 86400 + 3723);
        }
    }
}
