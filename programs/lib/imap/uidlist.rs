//! uidlist: the UIDs of one Maildir++ folder (RFC 3501 2.3.1.1, RFC 9051 2.3.1.1), kept in
//! the folder's `dovecot-uidlist` in Dovecot's version 3 format, so a folder can move
//! between this server and Dovecot without a UIDVALIDITY change.
//!
//! The file: a header `3 V<uidvalidity> N<nextuid>` (more fields allowed, in any order; they
//! are kept), then one line per message, `<uid> [fields] :<file name>`, UIDs strictly
//! increasing. A message is known by its base name, the file name up to its first `:`, so it
//! keeps its UID when its flags change (`:2,` to `:2,S`) and when it moves from `new/` to
//! `cur/`. The name on the line is the last full name known (`1700000000.M1P2.host:2,FS`),
//! and the field `Lnew` or `Lcur` says in which directory it was; lists written before
//! there were such fields hold base names only, and read the same.
//!
//! [`UidList::open`] takes the folder's lock, reads the list, and finds what `new/` and
//! `cur/` hold: from the list itself when it is known to be current (below), else by
//! scanning both. It gives each base name not listed yet the next UID (in delivery order:
//! the leading number of the name, then the name; names without one last), appends those
//! lines (append only, fsync) and returns the messages present in UID order.
//! [`UidList::compact`] rewrites the list with only the messages present (temp file, fsync,
//! rename). The lock is held until the [`UidList`] is dropped.
//!
//! Skipping the scan (as Dovecot does, which trusts its names while the directories are
//! unchanged): reading a directory of 10,000 names costs more than the rest of a SELECT.
//!
//! - A message file is only ever added, renamed or removed, and each of those changes the
//!   modification time of its directory. The header field `M<new>,<cur>` records the
//!   modification times of `new/` and `cur/` (nanoseconds since the epoch) at which the
//!   names of the list were all current. When both times are still exactly those, the list
//!   is current: open trusts it, with no scan and no write. Any other time, earlier or
//!   later, means a scan.
//! - The times are taken (`stat`) before the scan, so a change during the scan shows at the
//!   next open. They are recorded only when both are older than the start of the scan by
//!   [`MARGIN`]: a change within the same tick of the file system's clock (a second or two
//!   on some file systems; the kernel's coarse clock on others) as the last recorded one
//!   would leave the time as it was. Until then every open scans: Dovecot's "dirty" rule.
//! - The stamp is in the header, not the list's own modification time, since appends (a
//!   read-only open's new UIDs, Dovecot's) change that time without making the names
//!   current. Dovecot keeps header and line fields it does not know.
//! - After a scan, an open with [`Rewrite::Allowed`] whose directories are older than the
//!   margin rewrites the list (as [`UidList::compact`]) when a name, a location or the stamp
//!   differs, so the next open can trust it. [`Rewrite::Never`] (a read-only session, a
//!   STATUS) only appends, as before.
//! - Trust is also refused when a line has no location, when a base name is listed twice,
//!   or when the expunge record is not empty: a rewrite leaves none of those.
//! - Not covered: a directory whose time is set back to exactly the recorded value (a
//!   restore with `rsync -t` of the directories but not of the list), and file servers
//!   whose clock is off from ours by more than the margin.
//!
//! Decisions:
//!
//! - Lock: an exclusive `flock` on `dovecot-uidlist.lock` in the folder, waited for at most
//!   [`LOCK_WAIT`], then [`UidListError::Locked`]. Dovecot itself uses that name as a dot
//!   lock; the two servers must not write one folder at the same time.
//! - A lost list (absent, unreadable as a list, truncated, over [`MAX_FILE`] or with a line
//!   over [`MAX_LINE`], UIDs not increasing) is rebuilt: UIDs from 1 and a UIDVALIDITY of
//!   `max(now, old + 1)`, where `old` is the largest value ever given out here, remembered in
//!   `dovecot-uidvalidity` (hex, as Dovecot writes it). UIDVALIDITY only ever grows, so a
//!   client never pairs an old UID with a new message (RFC 3501 2.3.1.1). A file that is
//!   not a list is never a reason to panic or to fail the SELECT. A stamp or a location
//!   field that cannot be read is not a lost list: it only means a scan.
//! - Expunged messages: a listed base name no longer in `new/` or `cur/` is left out of the
//!   result, and its UID is appended to `dovecot-uidlist.expunged` (fsynced). Its line stays
//!   in the list until [`UidList::compact`] (or a rewrite), which also empties that record.
//!   A listed UID in the record is never handed out again: when its base name reappears (a
//!   restore from a backup, another program moving the file back) the message gets a new
//!   UID, as a new message must (RFC 3501 2.3.1.1: UIDs are never reused). A record that
//!   cannot be read is a lost list.
//! - Header `N` is not updated by an append; the next UID is the larger of `N` and the last
//!   listed UID plus one (as Dovecot reads it). [`UidList::compact`] writes the true value,
//!   so an expunged highest UID is not given out again.
//! - Names that are dot files, not UTF-8, or hold a line end are not messages here; a base
//!   name found in both `new/` and `cur/` counts once (the `cur/` one).
//! - UIDs and UIDVALIDITY are 32-bit; running out is [`UidListError::Exhausted`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::file::{is_missing, replace_with};
use crate::pop3::leading_number;

/// The list, in the folder.
pub const LIST: &str = "dovecot-uidlist";
/// The lock file, in the folder.
pub const LOCK: &str = "dovecot-uidlist.lock";
/// The largest UIDVALIDITY given out, in the folder.
pub const VALIDITY: &str = "dovecot-uidvalidity";
/// UIDs of listed messages found gone since the last compaction, in the folder.
pub const EXPUNGED: &str = "dovecot-uidlist.expunged";
/// The temporary file of a rewrite, in the folder.
const TEMP: &str = "dovecot-uidlist.tmp";

/// The longest line of a list accepted, without its LF.
pub const MAX_LINE: usize = 4096;
/// The largest list (or expunge record) accepted: about a million messages.
pub const MAX_FILE: u64 = 128 * 1024 * 1024;
/// How long [`UidList::open`] waits for the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How much older than a scan the directories must be for the list to record their times
/// ([module docs](self)).
pub const MARGIN: Duration = Duration::from_secs(2);

/// Whether [`UidList::open`] may rewrite the whole list to record the names it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// a read-write session: rewrite when the names differ and the directories are settled
    Allowed,
    /// a read-only session or a STATUS: append new UIDs only
    Never,
}

/// The modification times of `new/` and `cur/`, nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    new: u64,
    cur: u64,
}

impl Stamp {
    /// The times of `folder`'s directories now; `None` when one is before the epoch or
    /// beyond 2554.
    fn of(folder: &Path) -> Result<Option<Stamp>, UidListError> {
        let time = |sub: &str| {
            let dir = folder.join(sub);
            let modified = fs::metadata(&dir)
                .and_then(|m| m.modified())
                .map_err(|e| UidListError::Io(dir, e))?;
            let nanos = modified.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos());
            Ok(nanos.and_then(|n| u64::try_from(n).ok()))
        };
        Ok(time("new")?.zip(time("cur")?).map(|(new, cur)| Stamp { new, cur }))
    }

    /// Whether both times are at least [`MARGIN`] before `start`.
    fn settled_at(self, start: SystemTime) -> bool {
        let Ok(start) = start.duration_since(UNIX_EPOCH) else { return false };
        let newest = Duration::from_nanos(self.new.max(self.cur));
        start.checked_sub(newest).is_some_and(|age| age >= MARGIN)
    }

    /// The header field: `M<new>,<cur>`.
    fn field(self) -> String {
        format!("M{},{}", self.new, self.cur)
    }

    /// The value of a header field `M...`; `None` when it is not one.
    fn parse(value: &str) -> Option<Stamp> {
        let (new, cur) = value.split_once(',')?;
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty();
        if !digits(new) || !digits(cur) {
            return None;
        }
        Some(Stamp { new: new.parse().ok()?, cur: cur.parse().ok()? })
    }
}

/// Why a folder's UIDs could not be had; all are temporary (`NO` to the SELECT).
#[derive(Debug)]
pub enum UidListError {
    /// Another process held the lock for longer than the wait.
    Locked(PathBuf),
    /// A file could not be read or written, or a directory not scanned.
    Io(PathBuf, io::Error),
    /// No 32-bit UID or UIDVALIDITY is left.
    Exhausted,
}

impl fmt::Display for UidListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UidListError::Locked(p) => write!(f, "{} is locked", p.display()),
            UidListError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            UidListError::Exhausted => f.write_str("no UID or UIDVALIDITY left"),
        }
    }
}

impl std::error::Error for UidListError {}

/// One message present in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    /// `new/NAME` or `cur/NAME`, relative to the folder
    pub path: String,
    /// the line's fields between UID and name (Dovecot's extensions), kept on compaction
    fields: String,
}

impl Message {
    /// The base name: the file name up to its first `:`.
    pub fn base(&self) -> &str {
        base_of(&self.path[4..])
    }

    /// Its line in the list: `<uid> [fields] L<dir> :<name>`.
    fn line(&self) -> String {
        let sep = if self.fields.is_empty() { "" } else { " " };
        let (dir, name) = (&self.path[..3], &self.path[4..]);
        format!("{}{sep}{} L{dir} :{name}\n", self.uid, self.fields)
    }
}

/// A file name up to its first `:`.
fn base_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// A folder's UIDs, with its lock held ([module docs](self)).
#[derive(Debug)]
pub struct UidList {
    folder: PathBuf,
    uidvalidity: u32,
    uidnext: u32,
    /// header fields other than the version, `V`, `N` and `M`, in their order
    extra: Vec<String>,
    messages: Vec<Message>,
    /// the directories' times at which `messages` were current, when settled
    stamp: Option<Stamp>,
    /// whether the names came from the list, without a scan
    trusted: bool,
    _lock: Flock<File>,
}

impl UidList {
    /// Lock `folder`, bring its list up to date with `new/` and `cur/` and return it; `now`
    /// (seconds since the epoch) is the UIDVALIDITY of a new list; `rewrite` says whether
    /// the list may be rewritten to record the names found.
    pub fn open(folder: &Path, now: u64, rewrite: Rewrite) -> Result<UidList, UidListError> {
        UidList::open_within(folder, now, rewrite, LOCK_WAIT)
    }

    /// [`UidList::open`], waiting at most `wait` for the lock.
    pub fn open_within(
        folder: &Path,
        now: u64,
        rewrite: Rewrite,
        wait: Duration,
    ) -> Result<UidList, UidListError> {
        let lock = lock(&folder.join(LOCK), wait)?;
        let at = |name: &str| folder.join(name);
        let old = read_validity(&at(VALIDITY))?;
        let listed = read_bounded(&at(LIST))?.map(|data| parse_list(&data));
        let expunged = match read_bounded(&at(EXPUNGED))? {
            None => Some(HashSet::new()),
            Some(data) => parse_expunged(&data),
        };
        // the times before the scan: a change during it shows as a later time
        let start = SystemTime::now();
        let stamp = Stamp::of(folder)?;
        let settled = stamp.filter(|s| s.settled_at(start));
        let mut list = match (listed, expunged) {
            (Some(Ok(parsed)), Some(expunged)) if parsed.current(stamp, &expunged) => {
                UidList::trust(folder, parsed, lock)
            }
            (Some(Ok(parsed)), Some(expunged)) => {
                let found = scan(folder)?;
                let rewrite = (rewrite == Rewrite::Allowed).then_some(settled).flatten();
                UidList::merge(folder, parsed, &expunged, found, rewrite, lock)?
            }
            (listed, _) => {
                let header = match listed {
                    Some(Ok(list)) => Some(list.uidvalidity),
                    Some(Err(header)) => header,
                    None => None,
                };
                let old = old.max(header).unwrap_or(0);
                let found = scan(folder)?;
                UidList::rebuild(folder, now, old, found, settled, lock)?
            }
        };
        if old < Some(list.uidvalidity) {
            let v = list.uidvalidity;
            write_file(&at(VALIDITY), format!("{v:08x}").as_bytes())?;
        }
        list.messages.sort_by_key(|m| m.uid);
        Ok(list)
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// The UID the next new message will get.
    pub fn uidnext(&self) -> u32 {
        self.uidnext
    }

    /// The messages present, in UID order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Whether the names came from the list alone, the directories unchanged since it was
    /// written (no scan).
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Rewrite the list with only the messages present, and empty the expunge record.
    pub fn compact(&mut self) -> Result<(), UidListError> {
        let text = self.text();
        write_file(&self.folder.join(LIST), text.as_bytes())?;
        remove(&self.folder.join(EXPUNGED))
    }

    /// The list `parsed`, known current: its names are the messages.
    fn trust(folder: &Path, parsed: Parsed, lock: Flock<File>) -> UidList {
        let messages = parsed
            .entries
            .into_iter()
            .filter_map(|e| Some(Message { uid: e.uid, path: e.path?, fields: e.fields }))
            .collect();
        UidList {
            folder: folder.to_path_buf(),
            uidvalidity: parsed.uidvalidity,
            uidnext: parsed.uidnext,
            extra: parsed.extra,
            messages,
            stamp: parsed.stamp,
            trusted: true,
            _lock: lock,
        }
    }

    /// The list `parsed` brought up to date with the files `found`: the listed ones gone
    /// are recorded as expunged, the new ones get UIDs and are appended. With `rewrite` (the
    /// settled times of the directories before the scan), a list whose names, locations or
    /// stamp differ from what was found is rewritten instead, with that stamp.
    fn merge(
        folder: &Path,
        parsed: Parsed,
        expunged: &HashSet<u32>,
        found: Vec<String>,
        rewrite: Option<Stamp>,
        lock: Flock<File>,
    ) -> Result<UidList, UidListError> {
        let mut differs = !expunged.is_empty() || parsed.stamp != rewrite;
        let mut gone = Vec::new();
        let mut listed: HashMap<String, Entry> = HashMap::with_capacity(parsed.entries.len());
        for entry in parsed.entries {
            if expunged.contains(&entry.uid) {
                continue;
            }
            // a base listed twice: the later line wins, the earlier one counts as gone
            if let Some(earlier) = listed.insert(entry.base.clone(), entry) {
                gone.push(earlier.uid);
            }
        }
        let mut list = UidList {
            folder: folder.to_path_buf(),
            uidvalidity: parsed.uidvalidity,
            uidnext: parsed.uidnext,
            extra: parsed.extra,
            messages: Vec::with_capacity(found.len()),
            stamp: rewrite,
            trusted: false,
            _lock: lock,
        };
        let mut new = Vec::new();
        for path in found {
            match listed.remove(base_of(&path[4..])) {
                Some(entry) => {
                    differs |= entry.path.as_deref() != Some(&path[..]);
                    list.messages.push(Message { uid: entry.uid, path, fields: entry.fields });
                }
                None => new.push(path),
            }
        }
        gone.extend(listed.into_values().map(|entry| entry.uid));
        differs |= !gone.is_empty() || !new.is_empty();
        let start = list.messages.len();
        for path in new {
            let uid = list.take_uid()?;
            list.messages.push(Message { uid, path, fields: String::new() });
        }
        if rewrite.is_some() && differs {
            // the rewrite holds the new lines and drops the gone ones: no appends
            list.compact()?;
            return Ok(list);
        }
        list.stamp = None;
        if !gone.is_empty() {
            gone.sort_unstable();
            let text: String = gone.iter().map(|uid| format!("{uid}\n")).collect();
            append(&folder.join(EXPUNGED), text.as_bytes())?;
        }
        let text: String = list.messages[start..].iter().map(Message::line).collect();
        if !text.is_empty() {
            append(&folder.join(LIST), text.as_bytes())?;
        }
        Ok(list)
    }

    /// A new list for the files found: UIDVALIDITY `max(now, old + 1)`, UIDs from 1.
    fn rebuild(
        folder: &Path,
        now: u64,
        old: u32,
        found: Vec<String>,
        stamp: Option<Stamp>,
        lock: Flock<File>,
    ) -> Result<UidList, UidListError> {
        let next = old.checked_add(1).ok_or(UidListError::Exhausted)?;
        let now = u32::try_from(now).map_err(|_| UidListError::Exhausted)?;
        let mut list = UidList {
            folder: folder.to_path_buf(),
            uidvalidity: now.max(next),
            uidnext: 1,
            extra: Vec::new(),
            messages: Vec::new(),
            stamp,
            trusted: false,
            _lock: lock,
        };
        // the old record names old UIDs: it must go before any new UID is written
        remove(&folder.join(EXPUNGED))?;
        for path in found {
            let uid = list.take_uid()?;
            list.messages.push(Message { uid, path, fields: String::new() });
        }
        list.compact()?;
        Ok(list)
    }

    fn take_uid(&mut self) -> Result<u32, UidListError> {
        let uid = self.uidnext;
        self.uidnext = uid.checked_add(1).ok_or(UidListError::Exhausted)?;
        Ok(uid)
    }

    /// The whole list as [`UidList::compact`] writes it.
    fn text(&self) -> String {
        let mut text = format!("3 V{} N{}", self.uidvalidity, self.uidnext);
        for field in &self.extra {
            text.push(' ');
            text.push_str(field);
        }
        if let Some(stamp) = self.stamp {
            text.push(' ');
            text.push_str(&stamp.field());
        }
        text.push('\n');
        for m in &self.messages {
            text.push_str(&m.line());
        }
        text
    }
}

/// Take the exclusive lock on `path`, trying for at most `wait`.
/// Take the exclusive flock on `path` (made if missing), waiting at most `wait` (also for
/// imap::folders, which counts UIDVALIDITY under the INBOX's lock).
pub(crate) fn lock(path: &Path, wait: Duration) -> Result<Flock<File>, UidListError> {
    let io = |e: io::Error| UidListError::Io(path.to_path_buf(), e);
    let start = Instant::now();
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((_, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(UidListError::Locked(path.to_path_buf())),
            Err((_, e)) => return Err(io(e.into())),
        }
    }
}

/// The names in `new/` and `cur/` that are messages, as `new/NAME` or `cur/NAME`, in
/// delivery order, one per base name.
fn scan(folder: &Path) -> Result<Vec<String>, UidListError> {
    let mut found: Vec<(u64, String, &str, String)> = Vec::new();
    for sub in ["cur", "new"] {
        let dir = folder.join(sub);
        let io = |e: io::Error| UidListError::Io(dir.clone(), e);
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.starts_with('.') || name.contains(['\n', '\r']) {
                continue;
            }
            if entry.file_type().map_err(io)?.is_dir() {
                continue;
            }
            let time = match leading_number(name.as_bytes()) {
                Some((Some(t), _)) => t,
                _ => u64::MAX,
            };
            let base = base_of(&name).to_string();
            found.push((time, base, sub, name));
        }
    }
    found.sort();
    found.dedup_by(|later, earlier| later.1 == earlier.1);
    Ok(found.into_iter().map(|(_, _, sub, name)| format!("{sub}/{name}")).collect())
}

/// A list as read.
#[derive(Debug)]
struct Parsed {
    uidvalidity: u32,
    uidnext: u32,
    /// header fields other than the version, `V`, `N` and `M`
    extra: Vec<String>,
    /// the header's `M`, when there is exactly one and it reads
    stamp: Option<Stamp>,
    entries: Vec<Entry>,
}

/// A line of a list.
#[derive(Debug)]
struct Entry {
    uid: u32,
    base: String,
    /// the fields other than `L`, as they were
    fields: String,
    /// `new/NAME` or `cur/NAME` when the line says where (`Lnew`, `Lcur`), else `None`
    path: Option<String>,
}

impl Parsed {
    /// Whether the list is known current: its stamp is the directories' times `now`, every
    /// line says where its file is, no base is listed twice, and nothing is recorded as
    /// expunged.
    fn current(&self, now: Option<Stamp>, expunged: &HashSet<u32>) -> bool {
        if self.stamp.is_none() || self.stamp != now || !expunged.is_empty() {
            return false;
        }
        let mut bases = HashSet::with_capacity(self.entries.len());
        self.entries.iter().all(|e| e.path.is_some() && bases.insert(e.base.as_str()))
    }
}

/// Parse a whole list. A list that is not one gives its header's UIDVALIDITY when the header
/// could be read (it must still be exceeded), else `None`.
fn parse_list(data: &[u8]) -> Result<Parsed, Option<u32>> {
    let Some(body) = data.strip_suffix(b"\n") else { return Err(None) };
    let mut lines = body.split(|&b| b == b'\n');
    let header = lines.next().and_then(line_text).ok_or(None)?;
    let (uidvalidity, uidnext, extra, stamp) = parse_header(header).ok_or(None)?;
    let mut entries: Vec<Entry> = Vec::new();
    for line in lines {
        let entry = line_text(line).and_then(parse_entry).ok_or(Some(uidvalidity))?;
        if entries.last().is_some_and(|last| last.uid >= entry.uid) {
            return Err(Some(uidvalidity));
        }
        entries.push(entry);
    }
    let after_last = match entries.last() {
        Some(last) => last.uid.checked_add(1).ok_or(Some(uidvalidity))?,
        None => 1,
    };
    Ok(Parsed { uidvalidity, uidnext: uidnext.max(after_last), extra, stamp, entries })
}

/// A line of the list as text: at most [`MAX_LINE`] bytes of UTF-8 without control bytes.
fn line_text(line: &[u8]) -> Option<&str> {
    if line.len() > MAX_LINE || line.iter().any(u8::is_ascii_control) {
        return None;
    }
    std::str::from_utf8(line).ok()
}

/// `3 V<uidvalidity> N<nextuid> [fields]`: both numbers non-zero, each once; a stamp
/// `M<new>,<cur>` that does not read, or more than one, is no stamp.
fn parse_header(line: &str) -> Option<(u32, u32, Vec<String>, Option<Stamp>)> {
    let mut words = line.split(' ');
    if words.next()? != "3" {
        return None;
    }
    let (mut v, mut n, mut extra, mut stamps) = (None, None, Vec::new(), Vec::new());
    for word in words {
        let slot = match word.as_bytes().first()? {
            b'V' => &mut v,
            b'N' => &mut n,
            b'M' => {
                stamps.push(Stamp::parse(&word[1..]));
                continue;
            }
            _ => {
                extra.push(word.to_string());
                continue;
            }
        };
        if slot.replace(number(&word[1..]).filter(|&x| x > 0)?).is_some() {
            return None;
        }
    }
    let stamp = match stamps[..] {
        [one] => one,
        _ => None,
    };
    Some((v?, n?, extra, stamp))
}

/// `<uid> [fields] :<name>`: the UID, the base name of the name, the fields other than
/// `L`, and where the file is when an `L` field says so.
fn parse_entry(line: &str) -> Option<Entry> {
    let (uid, rest) = line.split_once(' ')?;
    let uid = number(uid).filter(|&u| u > 0)?;
    let (fields, name) = match rest.strip_prefix(':') {
        Some(name) => ("", name),
        None => rest.split_once(" :")?,
    };
    if fields.starts_with(' ') || fields.ends_with(' ') || fields.contains("  ") {
        return None;
    }
    let base = base_of(name);
    if base.is_empty() || base.starts_with('.') || base.contains('/') {
        return None;
    }
    let mut dirs = fields.split(' ').filter(|f| f.starts_with('L'));
    let dir = match (dirs.next(), dirs.next()) {
        (Some("Lnew"), None) => Some("new"),
        (Some("Lcur"), None) => Some("cur"),
        _ => None,
    };
    // a name with a slash after its base is no file name here: no location, a scan
    let path = dir.filter(|_| !name.contains('/')).map(|dir| format!("{dir}/{name}"));
    let fields = if fields.contains('L') {
        fields.split(' ').filter(|f| !f.starts_with('L')).collect::<Vec<_>>().join(" ")
    } else {
        fields.to_string()
    };
    Some(Entry { uid, base: base.to_string(), fields, path })
}

/// Decimal digits only, fitting a u32.
fn number(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The expunge record: one UID a line; `None` when it is not one.
fn parse_expunged(data: &[u8]) -> Option<HashSet<u32>> {
    let body = data.strip_suffix(b"\n").or(data.is_empty().then_some(data))?;
    if body.is_empty() {
        return Some(HashSet::new());
    }
    body.split(|&b| b == b'\n')
        .map(|line| line_text(line).and_then(number).filter(|&u| u > 0))
        .collect()
}

/// The largest UIDVALIDITY given out: `dovecot-uidvalidity`, eight hex digits at most
/// (a line end allowed). Absent or not a number: `None`.
fn read_validity(path: &Path) -> Result<Option<u32>, UidListError> {
    let Some(data) = read_bounded(path)? else { return Ok(None) };
    let text = std::str::from_utf8(&data).unwrap_or_default().trim_end_matches('\n');
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(u32::from_str_radix(text, 16).ok())
}

/// The contents of `path`, `None` when it is absent; a file over [`MAX_FILE`] reads as one
/// byte too many, which no parser accepts.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, UidListError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(UidListError::Io(path.to_path_buf(), e)),
    };
    let mut data = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| UidListError::Io(path.to_path_buf(), e))?;
    if data.len() as u64 > MAX_FILE {
        data.truncate(0);
        data.push(0);
    }
    Ok(Some(data))
}

/// Append `bytes` in one write and fsync (and the folder, when the file may be new); on
/// failure cut the file back to where it was, so a half line never stays.
fn append(path: &Path, bytes: &[u8]) -> Result<(), UidListError> {
    let io = |e: io::Error| UidListError::Io(path.to_path_buf(), e);
    let mut file =
        OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut result = file.write_all(bytes).and_then(|()| file.sync_all());
    if result.is_ok() && len == 0 {
        result = crate::file::fsync_dir(crate::file::parent_of(path));
    }
    if result.is_err() {
        let _ = file.set_len(len);
    }
    result.map_err(io)
}

/// Replace `path` durably with `bytes`.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), UidListError> {
    let tmp = crate::file::parent_of(path).join(TEMP);
    replace_with(path, &tmp, 0o600, |mut f| f.write_all(bytes))
        .map_err(|e| UidListError::Io(path.to_path_buf(), e))
}

/// Remove `path`; absent is fine.
fn remove(path: &Path) -> Result<(), UidListError> {
    match fs::remove_file(path) {
        Err(e) if !is_missing(&e) => Err(UidListError::Io(path.to_path_buf(), e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};

    /// A Maildir++ folder in a fresh temp dir, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(tag: &str) -> Folder {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!("qmail-uidlist-{tag}-{}-{seq}", std::process::id());
            let folder = Folder(std::env::temp_dir().join(name));
            let _ = fs::remove_dir_all(&folder.0);
            crate::maildir::make(&folder.0).unwrap();
            folder
        }

        fn put(&self, path: &str) {
            fs::write(self.0.join(path), b"x\n").unwrap();
        }

        fn rename(&self, from: &str, to: &str) {
            fs::rename(self.0.join(from), self.0.join(to)).unwrap();
        }

        fn gone(&self, path: &str) {
            fs::remove_file(self.0.join(path)).unwrap();
        }

        fn open(&self, now: u64) -> UidList {
            UidList::open(&self.0, now, Rewrite::Allowed).unwrap()
        }

        fn list(&self) -> String {
            fs::read_to_string(self.0.join(LIST)).unwrap()
        }

        fn write_list(&self, data: &[u8]) {
            fs::write(self.0.join(LIST), data).unwrap();
        }

        fn open_ro(&self) -> UidList {
            UidList::open(&self.0, NOW, Rewrite::Never).unwrap()
        }

        fn mtime(&self, dir: &str) -> SystemTime {
            fs::metadata(self.0.join(dir)).unwrap().modified().unwrap()
        }

        fn set_mtime(&self, dir: &str, time: SystemTime) {
            File::open(self.0.join(dir)).unwrap().set_modified(time).unwrap();
        }

        /// Both directories last changed `secs` ago, well past the margin.
        fn settle(&self, secs: u64) {
            let then = SystemTime::now() - Duration::from_secs(secs);
            self.set_mtime("new", then);
            self.set_mtime("cur", then);
        }

        /// The header's stamp field, if any.
        fn stamp(&self) -> Option<String> {
            let list = self.list();
            let header = list.lines().next().unwrap().to_string();
            header.split(' ').find(|w| w.starts_with('M')).map(str::to_string)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// (uid, path) of every message.
    fn pairs(list: &UidList) -> Vec<(u32, &str)> {
        list.messages().iter().map(|m| (m.uid, m.path.as_str())).collect()
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn fresh_folder_numbers_in_delivery_order() {
        let f = Folder::new("fresh");
        f.put("new/300.b.host");
        f.put("new/20.z.host");
        f.put("cur/100.a.host:2,S");
        f.put("new/.hidden");
        f.put("cur/100.c.host:2,");
        f.put("new/nonumber");
        let list = f.open(NOW);
        assert_eq!(list.uidvalidity(), NOW as u32);
        assert_eq!(list.uidnext(), 6);
        assert_eq!(
            pairs(&list),
            [
                (1, "new/20.z.host"),
                (2, "cur/100.a.host:2,S"),
                (3, "cur/100.c.host:2,"),
                (4, "new/300.b.host"),
                (5, "new/nonumber"),
            ]
        );
        let want = format!(
            "3 V{NOW} N6\n1 Lnew :20.z.host\n2 Lcur :100.a.host:2,S\n3 Lcur :100.c.host:2,\n\
             4 Lnew :300.b.host\n5 Lnew :nonumber\n"
        );
        assert_eq!(f.list(), want);
        assert_eq!(fs::read_to_string(f.0.join(VALIDITY)).unwrap(), format!("{NOW:08x}"));
    }

    #[test]
    fn reopen_keeps_uids_and_new_mail_gets_higher() {
        let f = Folder::new("reopen");
        f.put("new/1.a");
        f.put("new/2.b");
        let first =
            pairs(&f.open(NOW)).iter().map(|&(u, p)| (u, p.to_string())).collect::<Vec<_>>();
        let again = f.open(NOW + 50);
        assert_eq!(again.uidvalidity(), NOW as u32);
        let again_pairs: Vec<(u32, String)> =
            pairs(&again).iter().map(|&(u, p)| (u, p.to_string())).collect();
        assert_eq!(again_pairs, first);
        drop(again);
        // a delivery older by its name than the listed ones still gets a higher UID
        f.put("new/0.early");
        f.put("new/3.c");
        let list = f.open(NOW + 60);
        assert_eq!(
            pairs(&list),
            [(1, "new/1.a"), (2, "new/2.b"), (3, "new/0.early"), (4, "new/3.c")]
        );
        assert_eq!(list.uidnext(), 5);
        // append only: the header is untouched, the new lines follow
        assert_eq!(
            f.list(),
            format!("3 V{NOW} N3\n1 Lnew :1.a\n2 Lnew :2.b\n3 Lnew :0.early\n4 Lnew :3.c\n")
        );
    }

    #[test]
    fn flag_changes_and_moves_keep_the_uid() {
        let f = Folder::new("flags");
        f.put("new/1.a");
        f.put("new/2.b,S=10");
        drop(f.open(NOW));
        f.rename("new/1.a", "cur/1.a:2,");
        f.rename("new/2.b,S=10", "cur/2.b,S=10:2,S");
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,"), (2, "cur/2.b,S=10:2,S")]);
        drop(list);
        f.rename("cur/1.a:2,", "cur/1.a:2,FS");
        assert_eq!(pairs(&f.open(NOW))[0], (1, "cur/1.a:2,FS"));
    }

    #[test]
    fn an_expunged_uid_never_comes_back() {
        let f = Folder::new("expunge");
        for name in ["new/1.a", "new/2.b", "new/3.c"] {
            f.put(name);
        }
        drop(f.open(NOW));
        f.gone("new/2.b");
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "new/1.a"), (3, "new/3.c")]);
        drop(list);
        assert!(f.list().contains("\n2 Lnew :2.b\n"), "lazy: the line stays");
        assert_eq!(fs::read_to_string(f.0.join(EXPUNGED)).unwrap(), "2\n");
        // the same base reappears before compaction: a new UID
        f.put("cur/2.b:2,S");
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "new/1.a"), (3, "new/3.c"), (4, "cur/2.b:2,S")]);
        drop(list);
        // the highest UID goes, then compaction: its UID is not given out again
        f.gone("cur/2.b:2,S");
        f.gone("new/3.c");
        let mut list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "new/1.a")]);
        list.compact().unwrap();
        assert_eq!(f.list(), format!("3 V{NOW} N5\n1 Lnew :1.a\n"));
        assert!(!f.0.join(EXPUNGED).exists());
        drop(list);
        f.put("new/3.c");
        f.put("new/9.d");
        let list = f.open(NOW);
        assert_eq!(list.uidvalidity(), NOW as u32);
        assert_eq!(pairs(&list), [(1, "new/1.a"), (5, "new/3.c"), (6, "new/9.d")]);
    }

    #[test]
    fn compaction_keeps_other_fields() {
        let f = Folder::new("fields");
        f.put("cur/1.a:2,S");
        f.put("cur/2.b:2,");
        f.write_list(b"3 G0123abcd V77 N9 Xfoo\n4 W120 S118 :1.a:2,S\n8 :2.b\n5000 :gone\n");
        let mut list = f.open(NOW);
        assert_eq!((list.uidvalidity(), list.uidnext()), (77, 5001));
        assert_eq!(pairs(&list), [(4, "cur/1.a:2,S"), (8, "cur/2.b:2,")]);
        list.compact().unwrap();
        assert_eq!(
            f.list(),
            "3 V77 N5001 G0123abcd Xfoo\n4 W120 S118 Lcur :1.a:2,S\n8 Lcur :2.b:2,\n"
        );
        assert_eq!(fs::read_to_string(f.0.join(VALIDITY)).unwrap(), "0000004d");
    }

    #[test]
    fn a_base_listed_twice_keeps_the_later_uid() {
        let f = Folder::new("twice");
        f.put("cur/1.a:2,S");
        f.write_list(b"3 V77 N1\n2 :1.a\n5 :1.a:2,\n");
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(5, "cur/1.a:2,S")]);
        assert_eq!(list.uidnext(), 6);
        assert_eq!(fs::read_to_string(f.0.join(EXPUNGED)).unwrap(), "2\n");
    }

    #[test]
    fn a_damaged_list_without_the_sidecar_still_counts_its_header() {
        let f = Folder::new("header");
        f.put("new/1.a");
        let later = NOW as u32 + 500;
        f.write_list(format!("3 V{later} N2\n1 :1.a\nbroken\n").as_bytes());
        let list = f.open(NOW);
        assert_eq!(list.uidvalidity(), later + 1);
        assert_eq!(pairs(&list), [(1, "new/1.a")]);
    }

    /// The list is replaced by `data`; the next open rebuilds with a greater UIDVALIDITY.
    fn rebuilt_after(tag: &str, data: &[u8]) {
        let f = Folder::new(tag);
        f.put("new/1.a");
        f.put("new/2.b");
        let first = f.open(NOW).uidvalidity();
        f.write_list(data);
        // a clock that went back: the old value still wins
        let list = f.open(NOW - 1000);
        assert!(list.uidvalidity() > first, "{tag}: {}", list.uidvalidity());
        assert_eq!(pairs(&list), [(1, "new/1.a"), (2, "new/2.b")], "{tag}");
        drop(list);
        assert!(f.list().starts_with(&format!("3 V{} N3\n", first + 1)), "{tag}");
    }

    #[test]
    fn a_lost_list_is_rebuilt_with_a_greater_uidvalidity() {
        let header = format!("3 V{NOW} N3\n");
        let truncated = format!("{header}1 :1.a\n2 :2");
        rebuilt_after("truncated", truncated.as_bytes());
        rebuilt_after("empty", b"");
        rebuilt_after("garbage", b"\x00\xff\xfe\n");
        rebuilt_after("version1", b"1 1700000000 3\n1 1.a\n");
        let mut long = header.clone().into_bytes();
        long.extend(vec![b'7'; 10 * 1024 * 1024]);
        long.extend_from_slice(b" :1.a\n");
        rebuilt_after("longline", &long);
        rebuilt_after("notnumber", format!("{header}one :1.a\n").as_bytes());
        rebuilt_after("decreasing", format!("{header}2 :1.a\n1 :2.b\n").as_bytes());
        rebuilt_after("repeated", format!("{header}1 :1.a\n1 :2.b\n").as_bytes());
        rebuilt_after("overflow", format!("{header}4294967296 :1.a\n").as_bytes());
        rebuilt_after("zero", format!("{header}0 :1.a\n").as_bytes());
        rebuilt_after("twov", format!("3 V{NOW} V5 N3\n").as_bytes());
        rebuilt_after("noname", format!("{header}1 :\n").as_bytes());
        rebuilt_after("slash", format!("{header}1 :../x\n").as_bytes());
        // a list lost altogether: the remembered value still counts
        let f = Folder::new("absent");
        let first = f.open(NOW).uidvalidity();
        fs::remove_file(f.0.join(LIST)).unwrap();
        assert_eq!(f.open(NOW).uidvalidity(), first + 1);
        // an unreadable expunge record loses the list too
        fs::write(f.0.join(EXPUNGED), b"x\n").unwrap();
        assert_eq!(f.open(NOW).uidvalidity(), first + 2);
        assert!(!f.0.join(EXPUNGED).exists());
    }

    #[test]
    fn a_settled_folder_is_trusted_without_a_scan() {
        let f = Folder::new("trust");
        f.put("cur/1.a:2,S");
        f.put("new/2.b");
        f.settle(100);
        let list = f.open(NOW);
        assert!(!list.trusted());
        drop(list);
        let stamp = Stamp::of(&f.0).unwrap().unwrap();
        let want =
            format!("3 V{NOW} N3 M{},{}\n1 Lcur :1.a:2,S\n2 Lnew :2.b\n", stamp.new, stamp.cur);
        assert_eq!(f.list(), want);
        for rewrite in [Rewrite::Allowed, Rewrite::Never] {
            let list = UidList::open(&f.0, NOW, rewrite).unwrap();
            assert!(list.trusted());
            assert_eq!(pairs(&list), [(1, "cur/1.a:2,S"), (2, "new/2.b")]);
            assert_eq!(list.uidnext(), 3);
        }
        assert_eq!(f.list(), want, "a trusted open writes nothing");
        // no scan: a file slipped in with cur/'s time put back is not seen...
        let cur = f.mtime("cur");
        f.put("cur/3.c:2,");
        f.set_mtime("cur", cur);
        assert_eq!(pairs(&f.open(NOW)).len(), 2);
        // ...until the time differs, as any link, rename or unlink makes it
        f.set_mtime("cur", cur + Duration::from_nanos(1));
        let list = f.open(NOW);
        assert!(!list.trusted());
        assert_eq!(pairs(&list)[2], (3, "cur/3.c:2,"));
    }

    #[test]
    fn a_delivery_within_the_margin_of_the_list_is_found() {
        let f = Folder::new("margin");
        f.put("new/1.a");
        drop(f.open(NOW));
        assert_eq!(f.stamp(), None, "directories changed just now: no stamp");
        // a delivery in the same tick of the clock: new/'s time does not move
        let new = f.mtime("new");
        f.put("new/2.b");
        f.set_mtime("new", new);
        let list = f.open(NOW);
        assert!(!list.trusted());
        assert_eq!(pairs(&list), [(1, "new/1.a"), (2, "new/2.b")]);
        drop(list);
        // changed less than the margin ago is still too recent
        let recent = SystemTime::now() - MARGIN / 2;
        f.set_mtime("new", recent);
        f.set_mtime("cur", recent);
        drop(f.open(NOW));
        assert_eq!(f.stamp(), None);
        assert!(!f.open(NOW).trusted());
        // a time in the future (a clock off, another host's) is never settled
        let ahead = SystemTime::now() + Duration::from_secs(3600);
        f.set_mtime("new", ahead);
        drop(f.open(NOW));
        assert_eq!(f.stamp(), None);
    }

    #[test]
    fn flags_changed_by_another_process_are_seen() {
        let f = Folder::new("otherflags");
        f.put("cur/1.a:2,");
        f.put("cur/2.b:2,S");
        f.settle(100);
        drop(f.open(NOW));
        assert!(f.open(NOW).trusted());
        f.rename("cur/1.a:2,", "cur/1.a:2,FS");
        let before = f.list();
        let list = f.open_ro();
        assert!(!list.trusted());
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,FS"), (2, "cur/2.b:2,S")]);
        drop(list);
        assert_eq!(f.list(), before, "a read-only open does not rewrite");
        // a read-write one rewrites once the directories have settled, then trusts
        f.settle(50);
        drop(f.open(NOW));
        assert!(f.list().contains("\n1 Lcur :1.a:2,FS\n"), "{}", f.list());
        let list = f.open(NOW);
        assert!(list.trusted());
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,FS"), (2, "cur/2.b:2,S")]);
    }

    #[test]
    fn files_gone_under_a_trusted_list_are_expunged() {
        let f = Folder::new("trustgone");
        for name in ["cur/1.a:2,", "cur/2.b:2,", "cur/3.c:2,"] {
            f.put(name);
        }
        f.settle(100);
        drop(f.open(NOW));
        f.gone("cur/3.c:2,");
        // read-only: reported, recorded, the line kept
        let list = f.open_ro();
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,"), (2, "cur/2.b:2,")]);
        drop(list);
        assert_eq!(fs::read_to_string(f.0.join(EXPUNGED)).unwrap(), "3\n");
        // read-write and settled: the rewrite drops the line and the record, keeps N
        f.gone("cur/2.b:2,");
        f.settle(50);
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,")]);
        drop(list);
        assert!(!f.0.join(EXPUNGED).exists());
        assert!(f.list().starts_with(&format!("3 V{NOW} N4 M")), "{}", f.list());
        assert!(f.open(NOW).trusted());
        // the bases come back: new UIDs
        f.put("cur/2.b:2,S");
        f.put("new/3.c");
        let list = f.open(NOW);
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,"), (4, "cur/2.b:2,S"), (5, "new/3.c")]);
    }

    #[test]
    fn an_old_list_of_base_names_keeps_its_uids() {
        let f = Folder::new("oldlist");
        f.put("cur/1.a:2,S");
        f.put("new/2.b");
        let old = b"3 V77 N3 G0123abcd\n1 :1.a\n2 :2.b\n";
        f.write_list(old);
        f.settle(100);
        let list = f.open_ro();
        assert_eq!((list.uidvalidity(), list.uidnext()), (77, 3));
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,S"), (2, "new/2.b")]);
        drop(list);
        assert_eq!(f.list().as_bytes(), old);
        let list = f.open(NOW);
        assert_eq!((list.uidvalidity(), list.uidnext()), (77, 3));
        drop(list);
        assert!(f.list().starts_with("3 V77 N3 G0123abcd M"), "{}", f.list());
        assert!(f.list().ends_with("\n1 Lcur :1.a:2,S\n2 Lnew :2.b\n"), "{}", f.list());
        let list = f.open(NOW);
        assert!(list.trusted());
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,S"), (2, "new/2.b")]);
        drop(list);
        // a stamp that does not read, or a line without a location: a scan, not a lost list
        let stamp = f.stamp().unwrap();
        for list in [
            "3 V77 N3 Mxyz\n1 Lcur :1.a:2,S\n2 Lnew :2.b\n".to_string(),
            format!("3 V77 N3 {stamp}\n1 :1.a:2,S\n2 Lnew :2.b\n"),
            format!("3 V77 N3 {stamp}\n1 Lcur :1.a:2,S\n2 Lnew Lnew :2.b\n"),
            format!("3 V77 N3 {stamp} {stamp}\n1 Lcur :1.a:2,S\n2 Lnew :2.b\n"),
        ] {
            f.write_list(list.as_bytes());
            let opened = f.open_ro();
            assert!(!opened.trusted(), "{list}");
            assert_eq!(opened.uidvalidity(), 77, "{list}");
            assert_eq!(pairs(&opened), [(1, "cur/1.a:2,S"), (2, "new/2.b")], "{list}");
        }
    }

    #[test]
    fn a_directory_set_back_in_time_still_means_a_scan() {
        let f = Folder::new("pasttime");
        f.put("cur/1.a:2,");
        f.settle(100);
        drop(f.open(NOW));
        assert!(f.open(NOW).trusted());
        // a change, then the time set far into the past (a restore, a clock gone back):
        // older than the list and its stamp, but not the stamp
        f.put("cur/2.b:2,");
        f.set_mtime("cur", UNIX_EPOCH + Duration::from_secs(1000));
        let list = f.open(NOW);
        assert!(!list.trusted());
        assert_eq!(pairs(&list), [(1, "cur/1.a:2,"), (2, "cur/2.b:2,")]);
    }

    #[test]
    fn two_opens_serialize_on_the_lock() {
        let f = Folder::new("lock");
        f.put("new/1.a");
        let first = f.open(NOW);
        let released = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let dir = f.0.clone();
        let flag = Arc::clone(&released);
        let waiter = std::thread::spawn(move || {
            tx.send(()).unwrap();
            let list = UidList::open(&dir, NOW, Rewrite::Allowed).unwrap();
            assert!(flag.load(Ordering::SeqCst), "opened while the other held the lock");
            pairs(&list).iter().map(|&(u, p)| (u, p.to_string())).collect::<Vec<_>>()
        });
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        f.put("new/2.b");
        released.store(true, Ordering::SeqCst);
        drop(first);
        let seen = waiter.join().unwrap();
        assert_eq!(seen, [(1, "new/1.a".to_string()), (2, "new/2.b".to_string())]);
        // a lock held too long is a clear error
        let _held = f.open(NOW);
        let err = UidList::open_within(&f.0, NOW, Rewrite::Allowed, Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, UidListError::Locked(_)), "{err}");
    }

    #[test]
    fn not_a_folder_is_an_error() {
        let f = Folder::new("nofolder");
        fs::remove_dir(f.0.join("cur")).unwrap();
        let err = UidList::open(&f.0, NOW, Rewrite::Allowed).unwrap_err();
        assert!(matches!(err, UidListError::Io(..)), "{err}");
        assert!(matches!(
            UidList::open(&f.0.join("none"), NOW, Rewrite::Allowed),
            Err(UidListError::Io(..))
        ));
    }

    #[test]
    fn running_out_is_exhausted() {
        let f = Folder::new("exhausted");
        f.put("new/1.a");
        f.write_list(format!("3 V{NOW} N{}\n", u32::MAX).as_bytes());
        assert!(matches!(UidList::open(&f.0, NOW, Rewrite::Allowed), Err(UidListError::Exhausted)));
        fs::write(f.0.join(VALIDITY), b"ffffffff").unwrap();
        fs::remove_file(f.0.join(LIST)).unwrap();
        assert!(matches!(UidList::open(&f.0, NOW, Rewrite::Allowed), Err(UidListError::Exhausted)));
    }
}
