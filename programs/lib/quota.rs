//! quota: Maildir++ quotas (doc/qmail-local.8, MAILDIRQUOTA), as qmail-local enforces them.
//!
//! `MAILDIRQUOTA` (`<bytes>S,<count>C`, either part optional, 0 = unlimited) is parsed into a
//! [`Quota`]. The usage of a Maildir lives in `maildirsize` at the top of the Maildir: line 1
//! is the quota definition, every further line a `<bytes> <count>` delta (negative for
//! removals); usage is the sum. The file is recalculated (by scanning `new/` and `cur/` of the
//! Maildir and of every `.Folder` except `.Trash`) when it is missing, at least 5120 bytes,
//! unreadable as a whole (a torn last line, a bad number, an overflow), its definition differs
//! from `MAILDIRQUOTA`, or a message would not fit and the file has more than two lines or is
//! older than 15 minutes. Counters are 64-bit and summed with checked arithmetic; a sum that
//! overflows is corruption, not a panic. Reading is bounded: nothing past 5120 bytes is read.
//!
//! [`check`] says whether one more message fits and whether usage after it reaches the
//! warning level (70%); [`add`] appends the `<size> 1` line of a delivery. The mbox variant
//! ([`check_mbox`]) compares the file size with the byte quota only.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Usage (after the new message) at or above this percentage of either limit runs the quota
/// warning (upstream's `QUOTA_WARNING_LEVEL`, doc/DECISIONS.md, 17).
pub const WARN_PERCENT: u64 = 70;
/// A `maildirsize` this big or bigger is recalculated.
pub const RECALC_SIZE: u64 = 5120;
/// An over-quota answer from a `maildirsize` older than this is checked by recalculating.
pub const RECALC_AGE: Duration = Duration::from_secs(900);
/// The longest `MAILDIRQUOTA` accepted.
pub const MAX_SPEC: usize = 64;

/// A Maildir++ quota: limits in bytes and messages, 0 meaning unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub bytes: u64,
    pub count: u64,
    /// The definition as given, compared with line 1 of `maildirsize`.
    text: Vec<u8>,
}

/// Why a quota cannot be used.
#[derive(Debug)]
pub enum QuotaError {
    /// `MAILDIRQUOTA` is not `<n>S`, `<n>C` or both, comma-separated.
    BadSpec,
    /// Scanning the Maildir failed.
    Scan(PathBuf, io::Error),
    /// Appending to `maildirsize` failed.
    Update(io::Error),
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::BadSpec => f.write_str("invalid MAILDIRQUOTA"),
            QuotaError::Scan(p, e) => write!(f, "unable to scan {}: {e}", p.display()),
            QuotaError::Update(e) => write!(f, "unable to update maildirsize: {e}"),
        }
    }
}

impl std::error::Error for QuotaError {}

impl Quota {
    /// Parse `MAILDIRQUOTA`: comma-separated parts `<digits>S` and `<digits>C`, each at most
    /// once. `None` for an empty value or one that sets no limit (all parts 0).
    pub fn parse(spec: &[u8]) -> Result<Option<Quota>, QuotaError> {
        if spec.is_empty() {
            return Ok(None);
        }
        if spec.len() > MAX_SPEC {
            return Err(QuotaError::BadSpec);
        }
        let (mut bytes, mut count) = (None, None);
        for part in spec.split(|&b| b == b',') {
            let Some((&unit, digits)) = part.split_last() else {
                return Err(QuotaError::BadSpec);
            };
            let n = number(digits).ok_or(QuotaError::BadSpec)?;
            let slot = match unit {
                b'S' => &mut bytes,
                b'C' => &mut count,
                _ => return Err(QuotaError::BadSpec),
            };
            if slot.replace(n).is_some() {
                return Err(QuotaError::BadSpec);
            }
        }
        let q = Quota { bytes: bytes.unwrap_or(0), count: count.unwrap_or(0), text: spec.to_vec() };
        Ok((q.bytes != 0 || q.count != 0).then_some(q))
    }

    /// Would `usage` plus one message of `size` bytes exceed a limit?
    pub fn exceeded(&self, usage: Usage, size: u64) -> bool {
        let after = usage.plus(size);
        (self.bytes != 0 && after.0 > i128::from(self.bytes))
            || (self.count != 0 && after.1 > i128::from(self.count))
    }

    /// Usage after one message of `size` bytes, in percent of the fuller dimension.
    pub fn percent(&self, usage: Usage, size: u64) -> u64 {
        let after = usage.plus(size);
        let pct = |used: i128, limit: u64| {
            if limit == 0 {
                0
            } else {
                (used.max(0) * 100 / i128::from(limit)).min(i128::from(u64::MAX)) as u64
            }
        };
        pct(after.0, self.bytes).max(pct(after.1, self.count))
    }
}

/// Strict decimal: 1–20 digits, no sign, no overflow.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A signed decimal of at most 20 digits.
fn signed(field: &[u8]) -> Option<i64> {
    match field.split_first() {
        Some((b'-', rest)) => number(rest).and_then(|n| i64::try_from(n).ok()).map(|n| -n),
        _ => number(field).and_then(|n| i64::try_from(n).ok()),
    }
}

/// Bytes and messages in use (sums of deltas; may be transiently negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub count: i64,
}

impl Usage {
    fn plus(self, size: u64) -> (i128, i128) {
        (i128::from(self.bytes) + i128::from(size), i128::from(self.count) + 1)
    }
}

/// A `maildirsize` file that parsed: its definition line, usage and number of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeFile {
    pub definition: Vec<u8>,
    pub usage: Usage,
    pub lines: usize,
}

/// Parse the text of `maildirsize`. `None` when it must be recalculated: empty, a line
/// without its newline (a torn append), a line that is not two signed numbers, a sum that
/// overflows 64 bits.
pub fn parse_sizefile(data: &[u8]) -> Option<SizeFile> {
    let body = data.strip_suffix(b"\n")?;
    let mut lines = body.split(|&b| b == b'\n');
    let definition = lines.next()?.to_vec();
    let mut usage = Usage::default();
    let mut n = 1;
    for line in lines {
        let mut fields = line.split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty());
        let (Some(b), Some(c), None) = (fields.next(), fields.next(), fields.next()) else {
            return None;
        };
        usage.bytes = usage.bytes.checked_add(signed(b)?)?;
        usage.count = usage.count.checked_add(signed(c)?)?;
        n += 1;
    }
    Some(SizeFile { definition, usage, lines: n })
}

/// The top of the Maildir holding `maildir`: a folder (with a `maildirfolder` file) belongs
/// to the Maildir up to two levels above it.
pub fn root(maildir: &Path) -> PathBuf {
    let mut dir = maildir.to_path_buf();
    for _ in 0..2 {
        if !dir.join("maildirfolder").exists() {
            break;
        }
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => break,
        }
    }
    dir
}

/// The answer of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The message does not fit.
    pub over: bool,
    /// Usage after the message reaches [`WARN_PERCENT`].
    pub warn: bool,
    pub usage: Usage,
}

/// Does a message of `size` bytes fit into the Maildir whose top is `root`?
pub fn check(root: &Path, quota: &Quota, size: u64) -> Result<Check, QuotaError> {
    let path = root.join("maildirsize");
    let mut usage = match read_sizefile(&path) {
        Some((f, age)) if f.definition == quota.text => {
            let stale = f.lines > 2 || age >= RECALC_AGE;
            if quota.exceeded(f.usage, size) && stale {
                recalculate(root, quota)?
            } else {
                f.usage
            }
        }
        _ => recalculate(root, quota)?,
    };
    if usage.bytes < 0 || usage.count < 0 {
        // more removed than ever counted: the deltas are wrong
        usage = recalculate(root, quota)?;
    }
    Ok(Check {
        over: quota.exceeded(usage, size),
        warn: quota.percent(usage, size) >= WARN_PERCENT,
        usage,
    })
}

/// Read `maildirsize` if it is usable as it stands: present, under [`RECALC_SIZE`], whole.
fn read_sizefile(path: &Path) -> Option<(SizeFile, Duration)> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() >= RECALC_SIZE {
        return None;
    }
    let mut data = Vec::new();
    file.take(RECALC_SIZE).read_to_end(&mut data).ok()?;
    if data.len() as u64 >= RECALC_SIZE {
        return None;
    }
    let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
    Some((parse_sizefile(&data)?, age.unwrap_or(Duration::ZERO)))
}

/// Count the Maildir's messages and rewrite `maildirsize` (unless a directory changed while
/// it was scanned: then the count is used but not written, and the next delivery tries
/// again).
pub fn recalculate(root: &Path, quota: &Quota) -> Result<Usage, QuotaError> {
    let trash = std::env::var_os("QUOTATRASH").is_some_and(|v| !v.is_empty() && v != "0");
    let mut dirs = vec![root.join("new"), root.join("cur")];
    let top = fs::read_dir(root).map_err(|e| QuotaError::Scan(root.to_path_buf(), e))?;
    for entry in top.flatten() {
        let name = entry.file_name();
        let name = name.as_bytes();
        if name.len() < 2 || name[0] != b'.' || name == b".." || (name == b".Trash" && !trash) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path().join("new"));
            dirs.push(entry.path().join("cur"));
        }
    }
    let mut usage = Usage::default();
    let mut stamps = Vec::new();
    for dir in &dirs {
        let before = fs::metadata(dir).and_then(|m| m.modified()).ok();
        let list = match fs::read_dir(dir) {
            Ok(l) => l,
            // a folder without cur/ (or a vanished one) holds nothing
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(QuotaError::Scan(dir.clone(), e)),
        };
        for entry in list.flatten() {
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.first() == Some(&b'.') || is_trashed(name) {
                continue;
            }
            let size = match size_from_name(name) {
                Some(s) => s,
                None => match entry.metadata() {
                    Ok(m) if m.is_file() => m.len(),
                    _ => continue,
                },
            };
            usage.bytes = usage.bytes.saturating_add(i64::try_from(size).unwrap_or(i64::MAX));
            usage.count = usage.count.saturating_add(1);
        }
        stamps.push((dir, before));
    }
    let changed = stamps
        .iter()
        .any(|(dir, before)| fs::metadata(dir).and_then(|m| m.modified()).ok() != *before);
    if !changed {
        let text =
            [&quota.text[..], b"\n", format!("{} {}\n", usage.bytes, usage.count).as_bytes()]
                .concat();
        let tmp = root.join("tmp").join(format!(
            "maildirsize.{}.{}",
            std::process::id(),
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()
        ));
        // a failed write only means the next delivery recalculates again; durable although
        // reconstructible, being rare (doc/INTERNALS.md, "fsyncs per message")
        let _ = crate::file::replace_with(&root.join("maildirsize"), &tmp, 0o600, |mut f| {
            f.write_all(&text)
        });
    }
    Ok(usage)
}

/// `,S=<digits>` in a file name (up to the next `,` or `:`).
pub fn size_from_name(name: &[u8]) -> Option<u64> {
    let base = name.split(|&b| b == b':').next()?;
    let at = base.windows(3).position(|w| w == b",S=")?;
    let rest = &base[at + 3..];
    let digits = rest.split(|&b| b == b',').next()?;
    number(digits)
}

/// A message flagged for deletion (`T` among the `:2,` flags) no longer counts.
fn is_trashed(name: &[u8]) -> bool {
    match name.windows(3).rposition(|w| w == b":2,") {
        Some(i) => name[i + 3..].contains(&b'T'),
        None => false,
    }
}

/// Append one delivery of `size` bytes to `maildirsize` (if it exists: without it the next
/// check recalculates), in a single write, not fsynced: a line lost in a crash only
/// undercounts the Maildir until the next recalculation, and never refuses or loses mail
/// (doc/INTERNALS.md, "fsyncs per message").
pub fn add(root: &Path, size: u64, count: i64) -> Result<(), QuotaError> {
    append(root, &format!("{size} {count}\n"), false)
}

/// Append the removal of `count` messages of `bytes` bytes in all to `maildirsize`
/// (qmail-pop3d's deletions: one `-<bytes> -<count>` line), if it exists. fsynced: a lost
/// line would overcount, and a young file that overcounts can refuse a delivery as over quota
/// before a recalculation corrects it (doc/INTERNALS.md, "fsyncs per message").
pub fn remove(root: &Path, bytes: u64, count: u64) -> Result<(), QuotaError> {
    append(root, &format!("-{bytes} -{count}\n"), true)
}

/// Append `line` to `maildirsize` in a single write, fsynced if `durable`; nothing if there is
/// no such file.
fn append(root: &Path, line: &str, durable: bool) -> Result<(), QuotaError> {
    let mut f = match OpenOptions::new().append(true).open(root.join("maildirsize")) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(QuotaError::Update(e)),
    };
    f.write_all(line.as_bytes()).map_err(QuotaError::Update)?;
    if durable {
        f.sync_all().map_err(QuotaError::Update)?;
    }
    Ok(())
}

/// The mbox variant: the file's size plus the message against the byte quota (a count-only
/// quota does not limit an mbox).
pub fn check_mbox(path: &Path, quota: &Quota, size: u64) -> Result<Check, QuotaError> {
    let used = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(QuotaError::Scan(path.to_path_buf(), e)),
    };
    let bytes_only = Quota { bytes: quota.bytes, count: 0, text: Vec::new() };
    let usage = Usage { bytes: i64::try_from(used).unwrap_or(i64::MAX), count: 0 };
    Ok(Check {
        over: bytes_only.exceeded(usage, size),
        warn: bytes_only.percent(usage, size) >= WARN_PERCENT,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row<'a, T> = (&'a [u8], Option<T>);

    #[test]
    fn specs() {
        let rows: &[Row<Option<(u64, u64)>>] = &[
            (b"", Some(None)),
            (b"1000S", Some(Some((1000, 0)))),
            (b"10C", Some(Some((0, 10)))),
            (b"1000S,10C", Some(Some((1000, 10)))),
            (b"10C,1000S", Some(Some((1000, 10)))),
            (b"0S", Some(None)),
            (b"0S,0C", Some(None)),
            (b"18446744073709551615S", Some(Some((u64::MAX, 0)))),
            (b"18446744073709551616S", None),
            (b"99999999999999999999999S", None),
            (b"1000", None),
            (b"S", None),
            (b"1000s", None),
            (b"1000S,", None),
            (b",1000S", None),
            (b"1000S,5S", None),
            (b"-5S", None),
            (b"+5S", None),
            (b" 5S", None),
            (b"5X", None),
            (b"5S\n", None),
            (b"1\x00S", None),
            (&[b'1'; 100], None),
        ];
        for (spec, want) in rows {
            let got = Quota::parse(spec).ok().map(|q| q.map(|q| (q.bytes, q.count)));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(spec));
        }
    }

    #[test]
    fn sizefiles() {
        let rows: &[Row<(i64, i64, usize)>] = &[
            (b"100S\n", Some((0, 0, 1))),
            (b"100S\n10 1\n20 1\n", Some((30, 2, 3))),
            (b"100S\n  10    1\n-10 -1\n", Some((0, 0, 3))),
            (b"100S\n10 1\n20 1", None),
            (b"", None),
            (b"\n", Some((0, 0, 1))),
            (b"100S\n10\n", None),
            (b"100S\n10 1 1\n", None),
            (b"100S\nten 1\n", None),
            (b"100S\n--1 1\n", None),
            (b"100S\n9223372036854775807 1\n1 1\n", None),
            (b"100S\n-9223372036854775807 1\n-2 1\n", None),
            (b"100S\n99999999999999999999 1\n", None),
            (b"100S\n\n", None),
            (b"100S\n1\x002 1\n", None),
        ];
        for (data, want) in rows {
            let got = parse_sizefile(data).map(|f| (f.usage.bytes, f.usage.count, f.lines));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn limits() {
        let q = Quota::parse(b"1000S,10C").unwrap().unwrap();
        let u = |bytes, count| Usage { bytes, count };
        assert!(!q.exceeded(u(0, 0), 1000));
        assert!(q.exceeded(u(0, 0), 1001));
        assert!(!q.exceeded(u(0, 9), 1));
        assert!(q.exceeded(u(0, 10), 1));
        assert!(!q.exceeded(u(-50, -3), 1000));
        assert!(q.exceeded(u(i64::MAX, 0), u64::MAX));
        assert_eq!(q.percent(u(600, 0), 100), 70);
        assert_eq!(q.percent(u(0, 6), 0), 70);
        assert_eq!(q.percent(u(-5000, -5), 0), 0);
        assert!(q.percent(u(i64::MAX, 0), u64::MAX) > 100);
        let c = Quota::parse(b"10C").unwrap().unwrap();
        assert!(!c.exceeded(u(i64::MAX, 0), 1 << 40));
    }

    #[test]
    fn names() {
        let rows: &[(&[u8], Option<u64>, bool)] = &[
            (b"123.M1P2.host,S=456", Some(456), false),
            (b"123.M1P2.host,S=456:2,S", Some(456), false),
            (b"123.M1P2.host,S=456,W=470:2,ST", Some(456), true),
            (b"123.M1P2.host:2,T", None, true),
            (b"123.host,S=", None, false),
            (b"123.host,S=12x", None, false),
            (b"123.host,S=99999999999999999999999", None, false),
            (b"123.host:2,S,S=5", None, false),
        ];
        for (name, size, trashed) in rows {
            assert_eq!(size_from_name(name), *size, "{:?}", String::from_utf8_lossy(name));
            assert_eq!(is_trashed(name), *trashed, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn removals_are_appended_and_summed() {
        let dir = std::env::temp_dir().join(format!("qmail-quota-remove-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // without maildirsize nothing is written
        remove(&dir, 10, 1).unwrap();
        assert!(!dir.join("maildirsize").exists());
        fs::write(dir.join("maildirsize"), "1000S,10C\n30 3\n").unwrap();
        add(&dir, 5, 1).unwrap();
        remove(&dir, 17, 2).unwrap();
        let data = fs::read(dir.join("maildirsize")).unwrap();
        assert_eq!(data, b"1000S,10C\n30 3\n5 1\n-17 -2\n");
        let f = parse_sizefile(&data).unwrap();
        assert_eq!(f.usage, Usage { bytes: 18, count: 2 });
        fs::remove_dir_all(&dir).unwrap();
    }
}
