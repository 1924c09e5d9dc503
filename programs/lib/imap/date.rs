//! imap::date: the dates IMAP reads and writes, and the dates of Date: headers.
//!
//! - [`parse_search_date`]: SEARCH's `date` (RFC 3501 section 9): `d-Mon-yyyy` or
//!   `dd-Mon-yyyy`, the month name in any case, to a [`Day`]. The caller strips the quotes
//!   (a quoted string arrives unquoted from the parser).
//! - [`parse_date_time`]: APPEND's `date-time` (RFC 3501 section 9):
//!   `dd-Mon-yyyy hh:mm:ss +zzzz`, the day zero- or space-padded (one digit alone is taken
//!   too), to seconds since the epoch. Without its quotes, as above.
//! - [`write_date_time`]: the same form for FETCH INTERNALDATE, always in `+0000`, the day
//!   zero-padded (Python's imaplib reads both paddings).
//! - [`parse_rfc5322`]: a Date: header's value (RFC 5322 section 3.3, with the obsolete syntax
//!   of section 4.3) to seconds since the epoch and the zone's offset, so that SEARCH's
//!   SENTBEFORE, SENTON and SENTSINCE can take the day in the sender's own zone.
//!
//! Decisions, for [`parse_rfc5322`] (the header is whatever the sender wrote; being tolerant
//! finds more messages, being wrong finds wrong ones):
//!
//! - Comments are removed (nested, `\` quoting honoured); commas separate like spaces.
//! - The day of the week is optional and never checked against the date.
//! - The date's parts are told apart by their form, not their place, so RFC 5322's
//!   `1 Jan 2024 10:00 +0100` and asctime's `Mon Jan  1 10:00:00 2024` both read: a month
//!   name (three letters or in full, any case), a number of one or two digits (the day, then
//!   the year if the day is set), of three or four digits (the year), `hh:mm[:ss]`, a zone.
//! - Two-digit years are 2000 to 2049 for 00 to 49 and 1950 to 1999 for 50 to 99; three-digit
//!   years add 1900 (RFC 5322 4.3).
//! - Zones: `+hhmm` / `-hhmm`; `UT`, `UTC`, `GMT` and the US names (`EST` -0500, `EDT` -0400,
//!   `CST`, `CDT`, `MST`, `MDT`, `PST`, `PDT`); any other word of one to five letters that
//!   is not a weekday (military letters such as `Z`, `CET`, ...) and a missing zone are read
//!   as +0000, as RFC 5322 4.3 says of the military ones. A second of 60 (a leap second) is read as 59.
//! - The value is refused when it is over [`MAX_DATE`] bytes, has a field out of range
//!   (31 Feb, 24:00, minute 60) or an unknown word, or lacks the day, month, year or time.
//!
//! No time-zone database and no crate: calendar arithmetic is [`crate::date822`]'s.

use crate::date822::{days_from_civil, Utc};

/// The longest Date: header value [`parse_rfc5322`] reads, in bytes.
pub const MAX_DATE: usize = 1000;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A calendar day: days since 1 Jan 1970 (negative before it). Days compare in calendar order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

impl Day {
    /// The day `year-month-day` in the proleptic Gregorian calendar, if it exists.
    pub fn from_civil(year: i64, month: u32, day: u32) -> Option<Day> {
        (1..=days_in_month(year, month)?)
            .contains(&day)
            .then(|| Day(days_from_civil(year, month, day)))
    }

    /// The day (in UTC) of `secs` seconds since the epoch.
    pub fn of_unix(secs: i64) -> Day {
        Day(secs.div_euclid(86400))
    }

    /// Days since 1 Jan 1970.
    pub fn days(self) -> i64 {
        self.0
    }
}

/// SEARCH's `date`: `1-Feb-2024` or `01-Feb-2024` (month in any case, four-digit year).
pub fn parse_search_date(text: &[u8]) -> Option<Day> {
    let mut parts = text.split(|&b| b == b'-');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !(1..=2).contains(&day.len()) || year.len() != 4 {
        return None;
    }
    Day::from_civil(i64::from(digits(year)?), month_of(month)?, digits(day)?)
}

/// APPEND's `date-time`: `17-Jul-1996 02:44:25 -0700` (the day may be ` 7` or `7`), to seconds
/// since the epoch.
pub fn parse_date_time(text: &[u8]) -> Option<i64> {
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let (date, rest) = split_at_byte(text, b' ')?;
    let (time, zone) = split_at_byte(rest, b' ')?;
    let day = parse_search_date(date)?;
    let (hour, minute, second) = match time {
        [h1, h2, b':', m1, m2, b':', s1, s2] => {
            (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?, digits(&[*s1, *s2])?)
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = numeric_zone(zone)?;
    let local = day.days() * 86400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second.min(59));
    Some(local - i64::from(offset) * 60)
}

/// `"17-Jul-1996 09:44:25 +0000"`, with its quotes, for `secs` since the epoch (clamped to the
/// years 0 to 9999 that four digits can write).
pub fn write_date_time(secs: i64, out: &mut Vec<u8>) {
    const FIRST: i64 = -62_167_219_200; // 1 Jan 0000 00:00:00
    const LAST: i64 = 253_402_300_799; // 31 Dec 9999 23:59:59
    let t = Utc::from_unix(secs.clamp(FIRST, LAST));
    let month = String::from_utf8_lossy(MONTHS[(t.month - 1) as usize]);
    let text = format!(
        "\"{:02}-{month}-{:04} {:02}:{:02}:{:02} +0000\"",
        t.day, t.year, t.hour, t.minute, t.second
    );
    out.extend_from_slice(text.as_bytes());
}

/// A Date: header's value (see the [module docs](self)) to seconds since the epoch and the
/// zone's offset from UTC in minutes (east positive).
pub fn parse_rfc5322(value: &[u8]) -> Option<(i64, i32)> {
    if value.len() > MAX_DATE {
        return None;
    }
    let text = without_comments(value)?;
    let (mut day, mut month, mut year, mut time, mut zone) = (None, None, None, None, None);
    for word in text.split(|&b| b == b' ' || b == b'\t' || b == b',').filter(|w| !w.is_empty()) {
        match word[0] {
            b'0'..=b'9' if word.contains(&b':') => set_once(&mut time, clock(word)?)?,
            b'0'..=b'9' => {
                let n = digits(word)?;
                match word.len() {
                    1 | 2 if day.is_none() => day = Some(n),
                    1 | 2 => set_once(&mut year, if n < 50 { n + 2000 } else { n + 1900 })?,
                    3 => set_once(&mut year, n + 1900)?,
                    4 => set_once(&mut year, n)?,
                    _ => return None,
                }
            }
            b'+' | b'-' => set_once(&mut zone, numeric_zone(word)?)?,
            _ if word.iter().all(u8::is_ascii_alphabetic) => {
                if let Some(m) = month_name(word) {
                    set_once(&mut month, m)?;
                } else if let Some(offset) = named_zone(word) {
                    set_once(&mut zone, offset)?;
                } else if !is_weekday(word) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    let date = Day::from_civil(i64::from(year?), month?, day?)?;
    let (hour, minute, second) = time?;
    let offset = zone.unwrap_or(0);
    let local =
        date.days() * 86400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some((local - i64::from(offset) * 60, offset))
}

/// Days in `month` of `year`; `None` for a month out of 1 to 12.
fn days_in_month(year: i64, month: u32) -> Option<u32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

/// Up to four ASCII digits as a number (no sign, not empty).
fn digits(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// A three-letter month name, any case, to 1 to 12.
fn month_of(name: &[u8]) -> Option<u32> {
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    Some(i as u32 + 1)
}

/// A month name as Date: headers write it: three letters, or the full English name.
fn month_name(word: &[u8]) -> Option<u32> {
    const FULL: [&[u8]; 12] = [
        b"January",
        b"February",
        b"March",
        b"April",
        b"May",
        b"June",
        b"July",
        b"August",
        b"September",
        b"October",
        b"November",
        b"December",
    ];
    month_of(word).or_else(|| {
        let i = FULL.iter().position(|m| m.eq_ignore_ascii_case(word))?;
        Some(i as u32 + 1)
    })
}

fn is_weekday(word: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const FULL: [&[u8]; 7] =
        [b"Monday", b"Tuesday", b"Wednesday", b"Thursday", b"Friday", b"Saturday", b"Sunday"];
    DAYS.iter().chain(FULL.iter()).any(|d| d.eq_ignore_ascii_case(word))
}

/// `+hhmm` or `-hhmm` to minutes east of UTC (minutes 00 to 59).
fn numeric_zone(word: &[u8]) -> Option<i32> {
    let (sign, rest) = match word.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    if rest.len() != 4 {
        return None;
    }
    let (hours, minutes) = (digits(&rest[..2])?, digits(&rest[2..])?);
    if minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes) as i32)
}

/// An alphabetic zone to minutes east of UTC: the RFC 5322 4.3 names; any other single
/// letter (military) or name of two to five letters is read as +0000 (see the module docs).
fn named_zone(word: &[u8]) -> Option<i32> {
    const NAMES: [(&[u8], i32); 11] = [
        (b"UT", 0),
        (b"UTC", 0),
        (b"GMT", 0),
        (b"EST", -300),
        (b"EDT", -240),
        (b"CST", -360),
        (b"CDT", -300),
        (b"MST", -420),
        (b"MDT", -360),
        (b"PST", -480),
        (b"PDT", -420),
    ];
    if let Some(&(_, offset)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(word)) {
        return Some(offset);
    }
    (word.len() <= 5 && !is_weekday(word)).then_some(0)
}

/// `hh:mm` or `hh:mm:ss` (one-digit hours taken), in range; a leap second reads as 59.
fn clock(word: &[u8]) -> Option<(u32, u32, u32)> {
    let mut parts = word.split(|&b| b == b':');
    let hour = parts.next().filter(|p| p.len() <= 2).and_then(digits)?;
    let minute = parts.next().filter(|p| p.len() == 2).and_then(digits)?;
    let second = match parts.next() {
        Some(p) if p.len() == 2 => digits(p)?,
        Some(_) => return None,
        None => 0,
    };
    if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((hour, minute, second.min(59)))
}

/// `slot` set to `value`, or `None` if it was set already (two years, two zones...).
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// The text before and after the first `sep`.
fn split_at_byte(text: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = text.iter().position(|&b| b == sep)?;
    Some((&text[..i], &text[i + 1..]))
}

/// `value` with its comments (nested parentheses; `\` quotes the next byte) replaced by a
/// space; `None` when a comment is not closed or a `)` has no `(`.
fn without_comments(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    for &b in value {
        if depth > 0 {
            match b {
                _ if quoted => quoted = false,
                b'\\' => quoted = true,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(b' ');
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'(' => depth = 1,
                b')' => return None,
                b'\r' | b'\n' => out.push(b' '),
                _ => out.push(b),
            }
        }
    }
    (depth == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i64, m: u32, d: u32) -> Day {
        Day::from_civil(y, m, d).unwrap()
    }

    #[test]
    fn search_dates() {
        assert_eq!(parse_search_date(b"1-Jan-1970"), Some(Day(0)));
        assert_eq!(parse_search_date(b"01-jan-1970"), Some(Day(0)));
        assert_eq!(parse_search_date(b"31-DEC-1969"), Some(Day(-1)));
        assert_eq!(parse_search_date(b"29-Feb-2000"), Some(day(2000, 2, 29)));
        assert_eq!(parse_search_date(b"29-Feb-2024"), Some(day(2024, 2, 29)));
        assert_eq!(parse_search_date(b"1-Mar-2024").unwrap().days(), day(2024, 2, 29).days() + 1);
        for bad in [
            &b"29-Feb-1900"[..], // 1900 is not a leap year
            b"29-Feb-2023",
            b"30-Feb-2000",
            b"31-Apr-2024",
            b"0-Jan-2024",
            b"32-Jan-2024",
            b"001-Jan-2024",
            b"1-Jan-24",
            b"1-Jan-02024",
            b"1-January-2024",
            b"1-Jnu-2024",
            b"1 Jan 2024",
            b"1-Jan-2024-",
            b"-1-Jan-2024",
            b"1-Jan--2024",
            b"+1-Jan-2024",
            b"",
            b"--",
            b"\xff-Jan-2024",
        ] {
            assert_eq!(parse_search_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn date_times() {
        assert_eq!(parse_date_time(b"01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_date_time(b" 1-Jan-1970 01:00:00 +0100"), Some(0));
        assert_eq!(parse_date_time(b"1-Jan-1970 00:00:00 -0130"), Some(5400));
        assert_eq!(parse_date_time(b"17-Jul-1996 02:44:25 -0700"), Some(837_596_665));
        assert_eq!(parse_date_time(b"29-Feb-2024 23:59:60 +0000"), Some(1_709_251_199));
        for bad in [
            &b"17-Jul-1996 02:44:25"[..],
            b"17-Jul-1996 02:44 -0700",
            b"17-Jul-1996 24:00:00 -0700",
            b"17-Jul-1996 02:60:00 -0700",
            b"17-Jul-1996 02:44:25 -07000",
            b"17-Jul-1996 02:44:25 0700",
            b"17-Jul-1996 02:44:25 +0760",
            b"17-Jul-1996  02:44:25 +0000",
            b"17-Jul-1996 02:44:25 +0000 ",
            b"30-Feb-1996 02:44:25 +0000",
            b"\"17-Jul-1996 02:44:25 -0700\"",
            b"",
        ] {
            assert_eq!(parse_date_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn written_date_times_read_back() {
        for secs in [0, 837_596_665, 1_709_251_199, -1, 4_102_444_799] {
            let mut out = Vec::new();
            write_date_time(secs, &mut out);
            assert_eq!(out.first(), Some(&b'"'));
            assert_eq!(parse_date_time(&out[1..out.len() - 1]), Some(secs));
        }
        let mut out = Vec::new();
        write_date_time(837_596_665, &mut out);
        assert_eq!(out, b"\"17-Jul-1996 09:44:25 +0000\"");
        out.clear();
        write_date_time(i64::MAX, &mut out);
        assert_eq!(out, b"\"31-Dec-9999 23:59:59 +0000\"");
        out.clear();
        write_date_time(i64::MIN, &mut out);
        assert_eq!(out, b"\"01-Jan-0000 00:00:00 +0000\"");
    }

    #[test]
    fn header_dates() {
        let rows: &[(&str, i64, i32)] = &[
            ("Thu, 1 Jan 1970 00:00:00 +0000", 0, 0),
            ("1 Jan 1970 01:00:00 +0100", 0, 60),
            ("Wed, 31 Dec 1969 19:00:00 -0500", 0, -300),
            ("Wed, 31 Dec 1969 19:00:00 EST", 0, -300),
            ("Wed, 31 Dec 1969 20:00:00 EDT", 0, -240),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0, 0),
            ("Thu, 01 Jan 1970 00:00 UT", 0, 0),
            ("Thu, 01 Jan 70 00:00:00 Z", 0, 0),
            ("Thu,1 Jan 1970 00:00:00 +0000 (UTC)", 0, 0),
            ("(comment (nested \\) ) here) 1 (x) Jan 1970 00:00:00 -0000", 0, 0),
            ("Thu, 1 Jan 1970 00:00:00", 0, 0),
            ("Thursday, 1 January 1970 00:00:00 +0000", 0, 0),
            ("Thu Jan  1 00:00:00 1970", 0, 0),
            ("Thu Jan  1 00:00:00 CET 1970", 0, 0),
            ("1 Jan 1970\r\n 00:00:00 +0000", 0, 0),
            ("Tue, 17 Jul 1996 02:44:25 -0700", 837_596_665, -420),
            ("17 Jul 96 09:44:25 +0000", 837_596_665, 0),
            ("17 Jul 096 09:44:25 +0000", 837_596_665, 0),
            ("1 Jan 00 00:00:00 +0000", 946_684_800, 0),
            ("Thu, 29 Feb 2024 23:59:60 +0000", 1_709_251_199, 0),
            ("29 Feb 2024 1:00:00 +1400", 1_709_118_000, 840),
        ];
        for &(text, epoch, offset) in rows {
            assert_eq!(parse_rfc5322(text.as_bytes()), Some((epoch, offset)), "{text}");
        }
        for bad in [
            "",
            "Thu, 1 Jan 1970",
            "1 Jan 00:00:00 +0000",
            "Jan 1970 00:00:00 +0000",
            "29 Feb 2023 00:00:00 +0000",
            "1 Jan 1970 24:00:00 +0000",
            "1 Jan 1970 00:60:00 +0000",
            "1 Jan 1970 00:00:00:00 +0000",
            "1 Jan 1970 00:0:00 +0000",
            "1 Jan 1970 00:00:00 +0000 +0000",
            "1 Jan 1970 1971 00:00:00",
            "1 Jan Feb 1970 00:00:00",
            "1 Jan 19700 00:00:00",
            "1 Jan 1970 00:00:00 +00000",
            "1 Jan 1970 00:00:00 +0060",
            "1 Jan 1970 00:00:00 (unclosed",
            "1 Jan 1970 00:00:00 )",
            "1 Jan 1970 00:00:00 Yesterday",
            "1 Jan 1970 00:00:00 +0000 \u{e9}",
            "1970-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc5322(bad.as_bytes()), None, "{bad}");
        }
        let long = format!("1 Jan 1970 00:00:00 +0000 ({})", "x".repeat(MAX_DATE));
        assert_eq!(parse_rfc5322(long.as_bytes()), None);
    }
}
