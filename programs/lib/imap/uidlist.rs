//! uidlist: the UIDs of one Maildir++ folder (RFC 3501 2.3.1.1, RFC 9051 2.3.1.1), kept in
//! the folder's `dovecot-uidlist` in Dovecot's version 3 format, so a folder can move
//! between this server and Dovecot without a UIDVALIDITY change.
//!
//! The file: a header `3 V<uidvalidity> N<nextuid>` (more fields allowed, in any order; they
//! are kept), then one line per message, `<uid> [fields] :<base name>`, UIDs strictly
//! increasing. The base name is the file name up to its first `:`, so a message keeps its UID
//! when its flags change (`:2,` to `:2,S`) and when it moves from `new/` to `cur/`.
//!
//! [`UidList::open`] takes the folder's lock, reads the list, scans `new/` and `cur/`, gives
//! each base name not listed yet the next UID (in delivery order: the leading number of the
//! name, then the name; names without one last), appends those lines (append only, fsync)
//! and returns the messages present in UID order. [`UidList::compact`] rewrites the list
//! with only the messages present (temp file, fsync, rename). The lock is held until the
//! [`UidList`] is dropped.
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
//!   not a list is never a reason to panic or to fail the SELECT.
//! - Expunged messages: a listed base name no longer in `new/` or `cur/` is left out of the
//!   result, and its UID is appended to `dovecot-uidlist.expunged` (fsynced). Its line stays
//!   in the list until [`UidList::compact`], which also empties that record. A listed UID in
//!   the record is never handed out again: when its base name reappears (a restore from a
//!   backup, another program moving the file back) the message gets a new UID, as a new
//!   message must (RFC 3501 2.3.1.1: UIDs are never reused). A record that cannot be read is
//!   a lost list.
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
use std::time::{Duration, Instant};

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
    /// header fields other than the version, `V` and `N`, in their order
    extra: Vec<String>,
    messages: Vec<Message>,
    _lock: Flock<File>,
}

impl UidList {
    /// Lock `folder`, bring its list up to date with `new/` and `cur/` and return it; `now`
    /// (seconds since the epoch) is the UIDVALIDITY of a new list.
    pub fn open(folder: &Path, now: u64) -> Result<UidList, UidListError> {
        UidList::open_within(folder, now, LOCK_WAIT)
    }

    /// [`UidList::open`], waiting at most `wait` for the lock.
    pub fn open_within(folder: &Path, now: u64, wait: Duration) -> Result<UidList, UidListError> {
        let lock = lock(&folder.join(LOCK), wait)?;
        let at = |name: &str| folder.join(name);
        let old = read_validity(&at(VALIDITY))?;
        let listed = read_bounded(&at(LIST))?.map(|data| parse_list(&data));
        let expunged = match read_bounded(&at(EXPUNGED))? {
            None => Some(HashSet::new()),
            Some(data) => parse_expunged(&data),
        };
        let found = scan(folder)?;
        let mut list = match (listed, expunged) {
            (Some(Ok(parsed)), Some(expunged)) => {
                UidList::merge(folder, parsed, &expunged, found, lock)?
            }
            (listed, _) => {
                let header = match listed {
                    Some(Ok(list)) => Some(list.uidvalidity),
                    Some(Err(header)) => header,
                    None => None,
                };
                let old = old.max(header).unwrap_or(0);
                UidList::rebuild(folder, now, old, found, lock)?
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

    /// Rewrite the list with only the messages present, and empty the expunge record.
    pub fn compact(&mut self) -> Result<(), UidListError> {
        let text = self.text();
        write_file(&self.folder.join(LIST), text.as_bytes())?;
        remove(&self.folder.join(EXPUNGED))
    }

    /// The list `parsed` brought up to date with the files `found`: the listed ones gone
    /// are recorded as expunged, the new ones get UIDs and are appended.
    fn merge(
        folder: &Path,
        parsed: Parsed,
        expunged: &HashSet<u32>,
        found: Vec<String>,
        lock: Flock<File>,
    ) -> Result<UidList, UidListError> {
        let mut gone = Vec::new();
        let mut listed: HashMap<String, (u32, String)> = HashMap::new();
        for (uid, base, fields) in parsed.entries {
            if expunged.contains(&uid) {
                continue;
            }
            // a base listed twice: the later line wins, the earlier one counts as gone
            if let Some((earlier, _)) = listed.insert(base, (uid, fields)) {
                gone.push(earlier);
            }
        }
        let mut list = UidList {
            folder: folder.to_path_buf(),
            uidvalidity: parsed.uidvalidity,
            uidnext: parsed.uidnext,
            extra: parsed.extra,
            messages: Vec::new(),
            _lock: lock,
        };
        let mut new = Vec::new();
        for path in found {
            match listed.remove(base_of(&path[4..])) {
                Some((uid, fields)) => list.messages.push(Message { uid, path, fields }),
                None => new.push(path),
            }
        }
        gone.extend(listed.into_values().map(|(uid, _)| uid));
        if !gone.is_empty() {
            gone.sort_unstable();
            let text: String = gone.iter().map(|uid| format!("{uid}\n")).collect();
            append(&folder.join(EXPUNGED), text.as_bytes())?;
        }
        let mut text = String::new();
        for path in new {
            let m = Message { uid: list.take_uid()?, path, fields: String::new() };
            text.push_str(&format!("{} :{}\n", m.uid, m.base()));
            list.messages.push(m);
        }
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
        text.push('\n');
        for m in &self.messages {
            let sep = if m.fields.is_empty() { "" } else { " " };
            text.push_str(&format!("{}{sep}{} :{}\n", m.uid, m.fields, m.base()));
        }
        text
    }
}

/// Take the exclusive lock on `path`, trying for at most `wait`.
fn lock(path: &Path, wait: Duration) -> Result<Flock<File>, UidListError> {
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

/// A list as read: entries are (uid, base name, fields).
#[derive(Debug)]
struct Parsed {
    uidvalidity: u32,
    uidnext: u32,
    extra: Vec<String>,
    entries: Vec<(u32, String, String)>,
}

/// Parse a whole list. A list that is not one gives its header's UIDVALIDITY when the header
/// could be read (it must still be exceeded), else `None`.
fn parse_list(data: &[u8]) -> Result<Parsed, Option<u32>> {
    let Some(body) = data.strip_suffix(b"\n") else { return Err(None) };
    let mut lines = body.split(|&b| b == b'\n');
    let header = lines.next().and_then(line_text).ok_or(None)?;
    let (uidvalidity, uidnext, extra) = parse_header(header).ok_or(None)?;
    let mut entries: Vec<(u32, String, String)> = Vec::new();
    for line in lines {
        let entry = line_text(line).and_then(parse_entry).ok_or(Some(uidvalidity))?;
        if entries.last().is_some_and(|last| last.0 >= entry.0) {
            return Err(Some(uidvalidity));
        }
        entries.push(entry);
    }
    let after_last = match entries.last() {
        Some(last) => last.0.checked_add(1).ok_or(Some(uidvalidity))?,
        None => 1,
    };
    Ok(Parsed { uidvalidity, uidnext: uidnext.max(after_last), extra, entries })
}

/// A line of the list as text: at most [`MAX_LINE`] bytes of UTF-8 without control bytes.
fn line_text(line: &[u8]) -> Option<&str> {
    if line.len() > MAX_LINE || line.iter().any(u8::is_ascii_control) {
        return None;
    }
    std::str::from_utf8(line).ok()
}

/// `3 V<uidvalidity> N<nextuid> [fields]`: both numbers non-zero, each once.
fn parse_header(line: &str) -> Option<(u32, u32, Vec<String>)> {
    let mut words = line.split(' ');
    if words.next()? != "3" {
        return None;
    }
    let (mut v, mut n, mut extra) = (None, None, Vec::new());
    for word in words {
        let slot = match word.as_bytes().first()? {
            b'V' => &mut v,
            b'N' => &mut n,
            _ => {
                extra.push(word.to_string());
                continue;
            }
        };
        if slot.replace(number(&word[1..]).filter(|&x| x > 0)?).is_some() {
            return None;
        }
    }
    Some((v?, n?, extra))
}

/// `<uid> [fields] :<name>`: the UID, the base name of the name, and the fields.
fn parse_entry(line: &str) -> Option<(u32, String, String)> {
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
    Some((uid, base.to_string(), fields.to_string()))
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
            UidList::open(&self.0, now).unwrap()
        }

        fn list(&self) -> String {
            fs::read_to_string(self.0.join(LIST)).unwrap()
        }

        fn write_list(&self, data: &[u8]) {
            fs::write(self.0.join(LIST), data).unwrap();
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
            "3 V{NOW} N6\n1 :20.z.host\n2 :100.a.host\n3 :100.c.host\n4 :300.b.host\n5 :nonumber\n"
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
        assert_eq!(f.list(), format!("3 V{NOW} N3\n1 :1.a\n2 :2.b\n3 :0.early\n4 :3.c\n"));
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
        assert!(f.list().contains("\n2 :2.b\n"), "lazy: the line stays");
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
        assert_eq!(f.list(), format!("3 V{NOW} N5\n1 :1.a\n"));
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
        assert_eq!(f.list(), "3 V77 N5001 G0123abcd Xfoo\n4 W120 S118 :1.a\n8 :2.b\n");
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
            let list = UidList::open(&dir, NOW).unwrap();
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
        let err = UidList::open_within(&f.0, NOW, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, UidListError::Locked(_)), "{err}");
    }

    #[test]
    fn not_a_folder_is_an_error() {
        let f = Folder::new("nofolder");
        fs::remove_dir(f.0.join("cur")).unwrap();
        let err = UidList::open(&f.0, NOW).unwrap_err();
        assert!(matches!(err, UidListError::Io(..)), "{err}");
        assert!(matches!(UidList::open(&f.0.join("none"), NOW), Err(UidListError::Io(..))));
    }

    #[test]
    fn running_out_is_exhausted() {
        let f = Folder::new("exhausted");
        f.put("new/1.a");
        f.write_list(format!("3 V{NOW} N{}\n", u32::MAX).as_bytes());
        assert!(matches!(UidList::open(&f.0, NOW), Err(UidListError::Exhausted)));
        fs::write(f.0.join(VALIDITY), b"ffffffff").unwrap();
        fs::remove_file(f.0.join(LIST)).unwrap();
        assert!(matches!(UidList::open(&f.0, NOW), Err(UidListError::Exhausted)));
    }
}
