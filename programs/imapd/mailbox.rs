//! imapd's selected folder (doc/imapd.8, "Maildir++"; doc/INTERNALS.md, "IMAP"): the
//! session's view of the messages — sequence numbers, UIDs, file names, flags — and how it
//! follows the folder on disk.
//!
//! The view is a list of [`Msg`] in UID order; a message's sequence number is its index + 1.
//! [`Mailbox::sync`] brings it up to date with the folder ([`qmail::imap::uidlist`] gives the
//! UIDs, under the folder's lock, for what `new/` and `cur/` hold) and says what changed, as
//! the untagged responses the client must get: EXPUNGE (each number already counting the
//! ones before), EXISTS, RECENT and FETCH FLAGS. While a FETCH, STORE or SEARCH is answered
//! no EXPUNGE may be sent (RFC 3501 7.4.1): a message gone from the disk then stays in the
//! view, marked `gone`, until the next sync that may report it.
//!
//! A read-write session takes the messages of `new/` into `cur/` (`<name>:2,`); those it
//! moved are `\Recent` for it alone. Flags live in the file name ([`qmail::imap::flags`]):
//! STORE renames the file; a name changed under us by another session is found again by its
//! base name.

use qmail::imap::flags::{Flags, Info};
use qmail::imap::uidlist::{self, Rewrite, UidList, UidListError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One message of the view.
#[derive(Debug, Clone)]
pub struct Msg {
    pub uid: u32,
    /// `new/NAME` or `cur/NAME`, relative to the folder
    pub path: String,
    /// stored flags (`\Recent` not among them)
    pub flags: Flags,
    /// `\Recent` for this session
    pub recent: bool,
    /// removed from the disk; reported at the next sync that may expunge
    pub gone: bool,
    /// RFC822.SIZE, once known
    pub size: Option<u64>,
}

impl Msg {
    /// The flags as the client sees them.
    pub fn flags(&self) -> Flags {
        if self.recent {
            self.flags.union(Flags::RECENT)
        } else {
            self.flags
        }
    }

    /// The file name without its directory.
    pub fn name(&self) -> &str {
        &self.path[4..]
    }

    /// The base name: the file name up to its first `:`.
    pub fn base(&self) -> &str {
        base_of(self.name())
    }
}

/// The file name up to its first `:`.
pub fn base_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// What a sync found, in the order the responses go out.
#[derive(Debug, Default)]
pub struct Changes {
    /// sequence numbers to report as EXPUNGE, each counting the ones before
    pub expunged: Vec<u32>,
    /// sequence numbers whose flags changed
    pub flags: Vec<u32>,
    /// the new EXISTS count, when messages arrived
    pub exists: Option<u32>,
}

/// The selected folder.
#[derive(Debug)]
pub struct Mailbox {
    /// the canonical IMAP name
    pub name: String,
    pub dir: PathBuf,
    pub read_only: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub msgs: Vec<Msg>,
    /// the modification times of `new/` and `cur/` at the last scan, and when it ran
    stamp: Option<(Stamp, SystemTime)>,
    /// the MIME structure of the message fetched last (its UID), for a client that fetches
    /// one large message in partials
    pub structure: Option<(u32, std::sync::Arc<qmail::imap::message::Structure>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    new: SystemTime,
    cur: SystemTime,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Mailbox {
    /// Open `dir` as the folder `name`: its UIDs, the messages of `new/` taken into `cur/`
    /// (read-write), `tmp/` cleaned.
    pub fn open(name: &str, dir: &Path, read_only: bool) -> Result<Mailbox, UidListError> {
        if !read_only {
            qmail::maildir::clean_tmp(dir, SystemTime::now());
        }
        let mut mailbox = Mailbox {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            read_only,
            uidvalidity: 0,
            uidnext: 1,
            msgs: Vec::new(),
            stamp: None,
            structure: None,
        };
        mailbox.sync(true)?;
        Ok(mailbox)
    }

    /// The number of messages (EXISTS).
    pub fn exists(&self) -> u32 {
        self.msgs.len() as u32
    }

    /// How many are `\Recent` for this session.
    pub fn recent(&self) -> u32 {
        self.msgs.iter().filter(|m| m.recent).count() as u32
    }

    /// The sequence number of the first message without `\Seen`.
    pub fn first_unseen(&self) -> Option<u32> {
        self.msgs.iter().position(|m| !m.flags.contains(Flags::SEEN)).map(|i| i as u32 + 1)
    }

    fn stamp(&self) -> Option<Stamp> {
        let t = |sub: &str| fs::metadata(self.dir.join(sub)).and_then(|m| m.modified()).ok();
        Some(Stamp { new: t("new")?, cur: t("cur")? })
    }

    /// Whether the folder may have changed since the last scan: the directories' times
    /// differ, or the scan ran within [`uidlist::MARGIN`] of them (a change in that same
    /// tick of the file system's clock would not show): the rule the list itself follows
    /// to skip its scan.
    fn may_have_changed(&self) -> bool {
        let Some((old, when)) = self.stamp else { return true };
        match self.stamp() {
            Some(now) if now == old => {
                let newest = old.new.max(old.cur);
                when.duration_since(newest).map_or(true, |d| d < uidlist::MARGIN)
            }
            _ => true,
        }
    }

    /// Bring the view up to date with the disk. With `expunge` false, messages gone stay in
    /// the view (marked `gone`) and no sequence number changes.
    pub fn sync(&mut self, expunge: bool) -> Result<Changes, UidListError> {
        let mut changes = Changes::default();
        if !self.may_have_changed() {
            if expunge {
                self.report_gone(&mut changes);
            }
            return Ok(changes);
        }
        let stamp = self.stamp();
        let scanned = SystemTime::now();
        // a read-write session records the names it found, so the next open need not scan
        let rewrite = if self.read_only { Rewrite::Never } else { Rewrite::Allowed };
        let list = UidList::open(&self.dir, now_secs(), rewrite)?;
        self.uidvalidity = list.uidvalidity();
        self.uidnext = list.uidnext();
        // both lists are in UID order: one walk; names are copied only where they changed,
        // and the messages of new/ go to cur/ while the folder is locked (no other session
        // moves the same file at the same time)
        let listed = list.messages();
        let (dir, read_only) = (&self.dir, self.read_only);
        let mut j = 0;
        for (i, m) in self.msgs.iter_mut().enumerate() {
            while j < listed.len() && listed[j].uid < m.uid {
                j += 1;
            }
            if j == listed.len() || listed[j].uid != m.uid {
                m.gone = true;
                continue;
            }
            let path = &listed[j].path;
            j += 1;
            if *path == m.path {
                continue;
            }
            let path = match path.starts_with("new/") && !read_only {
                true => take_new(dir, read_only, path.clone()).0,
                false => path.clone(),
            };
            let flags = Info::of(&path[4..]).flags;
            if flags != m.flags && !m.gone {
                changes.flags.push(i as u32 + 1);
            }
            m.flags = flags;
            m.path = path;
        }
        let last_known = self.msgs.last().map_or(0, |m| m.uid);
        let start = listed.partition_point(|m| m.uid <= last_known);
        let arrived = &listed[start..];
        let mut taken = Vec::with_capacity(arrived.len());
        for m in arrived {
            let (path, recent) = take_new(dir, read_only, m.path.clone());
            let flags = Info::of(&path[4..]).flags;
            taken.push(Msg { uid: m.uid, path, flags, recent, gone: false, size: None });
        }
        drop(list);
        if expunge {
            self.report_gone(&mut changes);
        }
        if !taken.is_empty() {
            self.msgs.extend(taken);
            changes.exists = Some(self.exists());
        }
        self.stamp = stamp.map(|s| (s, scanned));
        Ok(changes)
    }

    /// Remove the messages marked gone from the view, as EXPUNGE numbers.
    fn report_gone(&mut self, changes: &mut Changes) {
        let mut seq = 0u32;
        let mut removed = Vec::new();
        self.msgs.retain(|m| {
            seq += 1;
            if m.gone {
                removed.push(seq);
                false
            } else {
                true
            }
        });
        // each number counts the ones removed before it
        for (k, n) in removed.into_iter().enumerate() {
            changes.expunged.push(n - k as u32);
        }
        // flag changes of messages that have since been expunged no longer apply
        changes.flags.retain(|&n| n <= self.msgs.len() as u32);
    }

    /// Where the message with `base` is now (`cur/...` or `new/...`).
    pub fn locate(&self, base: &str) -> Option<String> {
        locate(&self.dir, base)
    }

    /// Open message `i` (index) for reading; a file renamed under us is found again, a file
    /// gone is `NotFound`.
    pub fn open_msg(&mut self, i: usize) -> io::Result<fs::File> {
        match fs::File::open(self.dir.join(&self.msgs[i].path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let base = self.msgs[i].base().to_string();
                match self.locate(&base) {
                    Some(path) => {
                        let f = fs::File::open(self.dir.join(&path))?;
                        self.msgs[i].path = path;
                        Ok(f)
                    }
                    None => {
                        self.msgs[i].gone = true;
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    /// Give message `i` the stored flags `flags` (renaming its file); false when it is gone.
    pub fn set_flags(&mut self, i: usize, flags: Flags) -> io::Result<bool> {
        let flags = flags.minus(Flags::RECENT);
        for _ in 0..3 {
            let m = &self.msgs[i];
            if m.gone {
                return Ok(false);
            }
            let mut info = Info::of(m.name());
            if info.flags == flags && m.path.starts_with("cur/") {
                self.msgs[i].flags = flags;
                return Ok(true);
            }
            info.flags = flags;
            let target = format!("cur/{}", info.name(m.base()));
            match fs::rename(self.dir.join(&m.path), self.dir.join(&target)) {
                Ok(()) => {
                    let m = &mut self.msgs[i];
                    m.path = target;
                    m.flags = flags;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let base = m.base().to_string();
                    match self.locate(&base) {
                        Some(path) => self.msgs[i].path = path,
                        None => {
                            self.msgs[i].gone = true;
                            return Ok(false);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Remove the files of the messages at `indexes` (ascending) from the disk and the
    /// view; the EXPUNGE numbers to report (each counting the ones before), and the bytes
    /// and messages removed (for `maildirsize`).
    pub fn expunge(&mut self, indexes: &[usize]) -> (Vec<u32>, u64, u64) {
        let mut gone = vec![false; self.msgs.len()];
        let (mut bytes, mut count) = (0u64, 0u64);
        for &i in indexes {
            let m = &self.msgs[i];
            let size = qmail::quota::size_from_name(m.name().as_bytes())
                .or_else(|| fs::metadata(self.dir.join(&m.path)).ok().map(|meta| meta.len()));
            match fs::remove_file(self.dir.join(&m.path)) {
                Ok(()) => {
                    bytes += size.unwrap_or(0);
                    count += 1;
                    gone[i] = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // renamed by another session meanwhile, or expunged by it
                    let base = m.base().to_string();
                    if let Some(path) = self.locate(&base) {
                        if fs::remove_file(self.dir.join(&path)).is_ok() {
                            bytes += size.unwrap_or(0);
                            count += 1;
                        }
                    }
                    gone[i] = true;
                }
                Err(_) => {}
            }
        }
        let mut numbers = Vec::new();
        let mut seq = 0u32;
        let mut k = 0u32;
        let mut idx = 0usize;
        self.msgs.retain(|_| {
            seq += 1;
            let keep = !gone[idx];
            idx += 1;
            if !keep {
                numbers.push(seq - k);
                k += 1;
            }
            keep
        });
        (numbers, bytes, count)
    }

    /// Sequence indexes (0-based) of the messages in `set`, by sequence number or UID.
    pub fn select(&self, set: &qmail::imap::SequenceSet, uid: bool) -> Vec<usize> {
        let n = self.msgs.len();
        if n == 0 {
            return Vec::new();
        }
        if !uid {
            let last = n as u32;
            let mut out: Vec<usize> = Vec::new();
            for r in set.ranges() {
                let (a, b) = (r.first.resolve(last), r.last.resolve(last));
                let (lo, hi) = (a.min(b).max(1), a.max(b).min(last));
                if lo <= hi {
                    out.extend((lo - 1) as usize..hi as usize);
                }
            }
            out.sort_unstable();
            out.dedup();
            return out;
        }
        let last = self.msgs[n - 1].uid;
        let mut out: Vec<usize> = Vec::new();
        for r in set.ranges() {
            let (a, b) = (r.first.resolve(last), r.last.resolve(last));
            let (lo, hi) = (a.min(b), a.max(b));
            let start = self.msgs.partition_point(|m| m.uid < lo);
            let end = self.msgs.partition_point(|m| m.uid <= hi);
            out.extend(start..end);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Move `new/NAME` to `cur/NAME:2,` in a read-write session: `(path, recent)`. Read-only, it
/// stays and is recent; when the file is already gone (another session took it) it is found
/// again in `cur/` and is not recent for us.
fn take_new(dir: &Path, read_only: bool, path: String) -> (String, bool) {
    let Some(name) = path.strip_prefix("new/") else { return (path, false) };
    if read_only {
        return (path, true);
    }
    let target = if name.contains(':') { format!("cur/{name}") } else { format!("cur/{name}:2,") };
    match fs::rename(dir.join(&path), dir.join(&target)) {
        Ok(()) => (target, true),
        Err(_) => (locate(dir, base_of(name)).unwrap_or(path), false),
    }
}

/// Where the message with `base` is now in the folder `dir` (`cur/...` or `new/...`), by
/// reading the directories.
fn locate(dir: &Path, base: &str) -> Option<String> {
    for sub in ["cur", "new"] {
        let Ok(list) = fs::read_dir(dir.join(sub)) else { continue };
        for entry in list.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if base_of(name) == base {
                return Some(format!("{sub}/{name}"));
            }
        }
    }
    None
}
