//! imap::folders: a user's mailboxes as Maildir++ folders (RFC 3501 5.1, 6.3; RFC 2342
//! NAMESPACE; RFC 3348 CHILDREN; RFC 6154 SPECIAL-USE), in Courier's layout.
//!
//! Every mailbox name is `INBOX` or under `INBOX.`; the hierarchy delimiter is `.` and
//! NAMESPACE answers `(("INBOX." ".")) NIL NIL` ([`NAMESPACE`]).
//!
//! | IMAP name | directory |
//! |---|---|
//! | `INBOX` | the Maildir itself (`cur/ new/ tmp/`) |
//! | `INBOX.a.b` | `<Maildir>/.a.b/`, with `cur/ new/ tmp/` and an empty `maildirfolder` file |
//!
//! This is the layout Courier, Dovecot (`LAYOUT=maildir++`) and maildirmake++ write, so a
//! Maildir moves between them and this server unchanged. Maildir++ has no real parents:
//! `.a.b` may exist without `.a`; LIST shows such a missing parent as `\Noselect`.
//!
//! Names (RFC 3501 5.1): the first component is `INBOX` in any case (`inbox.Sent` is
//! `INBOX.Sent`); the rest are case-sensitive. A name travels in modified UTF-7 (RFC 3501
//! 5.1.3, [`decode_mutf7`] / [`encode_mutf7`]) and is stored on disk in that same form
//! (`Entwürfe` is `Entw&APw-rfe`, `&` is `&-`). [`Store::resolve`] refuses, with
//! [`FolderError::Invalid`]:
//!
//! - names not under `INBOX` (Courier answers NO to them too);
//! - an empty component (`INBOX..a`, a trailing `.`, `.`, `../x`);
//! - `/` anywhere, bytes outside printable ASCII, and components that are not modified UTF-7
//!   in the one form an encoder writes: decoding and encoding again must give the same bytes,
//!   so `&AGE-` (an encoded `a`), `&Jjo` (no closing `-`), non-zero padding bits and unpaired
//!   surrogates are all refused. Control characters are refused even when encoded;
//! - names whose directory name would be over [`MAX_DIR_NAME`] bytes (the usual file name
//!   limit).
//!
//! A component therefore never holds `.`, `/` or NUL, and no name reaches outside the Maildir.
//!
//! Decisions:
//!
//! - CREATE (RFC 3501 6.3.3) accepts one trailing delimiter. The folder is built complete
//!   under a hidden name (`..qmail-new-<unique>`: `cur/ new/ tmp/`, `maildirfolder` and a
//!   `dovecot-uidlist`) and renamed into place, so no other session sees half a folder, and
//!   of two racing CREATEs one gets [`FolderError::Exists`]. It does not create parents.
//!   A directory already there without `cur/` or `new/` is completed in place.
//! - UIDVALIDITY (RFC 3501 2.3.1.1): a name deleted and created again, or freed by RENAME and
//!   created again, must not come back with a UIDVALIDITY it had before. CREATE takes the next
//!   value from the Maildir-wide counter in the root's `dovecot-uidvalidity` (the largest
//!   value given out, which INBOX's own list also raises: see [`super::uidlist`]), under the
//!   root's `dovecot-uidlist.lock`, as `max(now, counter + 1)`, and writes the new folder's
//!   list with it. Every folder created here thus has a value no folder created here had
//!   before, and keeps it through RENAME. (A folder another tool made gets its value at its
//!   first SELECT, from the clock alone: it may equal one given out in the same second.)
//! - DELETE (RFC 3501 6.3.4) refuses INBOX ([`FolderError::Inbox`]). The folder directory is
//!   first renamed to a hidden `..qmail-trash-<unique>` (it disappears at once and whole),
//!   then removed; a failure of that removal is not the client's (the folder is gone) and is
//!   swept by a later DELETE once an hour old. Children stay (RFC 3501 allows it) and the
//!   parent then lists as `\Noselect`. Subscriptions are left alone (RFC 3501 6.3.6).
//! - RENAME (RFC 3501 6.3.5) renames the folder's directory (its `dovecot-uidlist*` files go
//!   with it) and every child's (`.a` and `.a.*` to `.x` and `.x.*`); a missing parent with
//!   children may be renamed. If the target or any child's target exists:
//!   [`FolderError::Exists`], and nothing is moved. A name may not be renamed under itself.
//!   The renames are one by one, so a crash in between leaves some children under the old
//!   name.
//!   Subscriptions are not carried (RFC 3501 leaves them to the client).
//! - RENAME INBOX creates the target and moves INBOX's messages (the files of `new/` and
//!   `cur/`, to the same directories) into it; INBOX stays, empty, its children untouched.
//! - LIST (RFC 3501 6.3.8): the reference and the pattern are joined; `*` matches anything,
//!   `%` anything but `.`; a leading `INBOX` in the joined pattern matches in any case. The
//!   names seen are INBOX, every folder (a directory with `cur/` and `new/`; one without
//!   them is not a folder) and every missing parent of one (`\Noselect`). Each gets
//!   `\HasChildren` or `\HasNoChildren`; selectable ones named `INBOX.Sent`, `INBOX.Drafts`,
//!   `INBOX.Trash`, `INBOX.Junk`, `INBOX.Spam` and `INBOX.Archive` get `\Sent`, `\Drafts`,
//!   `\Trash`, `\Junk`, `\Junk` and `\Archive`. `LIST "" ""` gives one entry, `\Noselect` with the empty name, which
//!   [`write_listed`] writes as `* LIST (\Noselect) "." ""`. Results are sorted by name.
//! - Matching is a set-of-states walk over the pattern (no backtracking): time is the name's
//!   length times the pattern's, and the joined pattern is at most [`MAX_PATTERN`] bytes.
//! - Directory entries that are not folders are ignored: no leading `.`, `.` and `..`,
//!   names that are not valid folder names (which covers the hidden `..qmail-*` names and
//!   other tools' UTF-8 names), and entries that are not directories. A symbolic link to a
//!   folder is a folder (an administrator's shared folder); DELETE removes the link only.
//! - Subscriptions (RFC 3501 6.3.6, 6.3.9): Courier's `courierimapsubscribed` in the Maildir,
//!   one full name per line. At most [`MAX_SUBSCRIPTIONS_FILE`] bytes and
//!   [`MAX_SUBSCRIPTIONS`] names are read; lines that are not valid names are skipped (and
//!   dropped at the next rewrite); names are kept in their canonical form. SUBSCRIBE does not
//!   ask that the folder exist (clients subscribe before they create). Changes are made under
//!   an `flock` on the Maildir directory and written atomically (temp file, fsync, rename).
//!   UNSUBSCRIBE of a name not subscribed is not an error.
//! - LSUB lists subscribed names matching the pattern with no attributes, and, for the `%`
//!   rule of RFC 3501 6.3.9, an unsubscribed parent matching the pattern where a subscribed
//!   child does not, flagged `\Noselect`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::uidlist::{self, Rewrite, UidList, UidListError};
use crate::file::{fsync_dir, is_missing, replace_with};

/// The hierarchy delimiter.
pub const DELIMITER: u8 = b'.';
/// The whole NAMESPACE answer's data (RFC 2342): personal `INBOX.`, no others.
pub const NAMESPACE: &str = "((\"INBOX.\" \".\")) NIL NIL";
/// The longest directory name of a folder (`.` and the name after `INBOX.`).
pub const MAX_DIR_NAME: usize = 255;
/// The longest LIST or LSUB pattern, reference and pattern joined.
pub const MAX_PATTERN: usize = 1024;
/// The subscription file, in the Maildir.
pub const SUBSCRIPTIONS: &str = "courierimapsubscribed";
/// The most of the subscription file read.
pub const MAX_SUBSCRIPTIONS_FILE: u64 = 1024 * 1024;
/// The most subscribed names kept.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;
/// The marker file of a Maildir++ folder.
pub const MARKER: &str = "maildirfolder";

/// The temporary file of a subscription rewrite.
const SUBSCRIPTIONS_TEMP: &str = "courierimapsubscribed.tmp";
/// The temporary file of a UIDVALIDITY counter update.
const VALIDITY_TEMP: &str = "dovecot-uidvalidity.tmp";
/// Hidden working names in the Maildir: a folder being created, a folder being deleted.
const NEW_PREFIX: &str = "..qmail-new-";
const TRASH_PREFIX: &str = "..qmail-trash-";
/// A hidden directory older than this is a leftover.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);
/// How long a lock is waited for.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The special-use attributes (RFC 6154) of well-known names.
const SPECIAL_USE: [(&str, &str); 6] = [
    ("INBOX.Archive", "\\Archive"),
    ("INBOX.Drafts", "\\Drafts"),
    ("INBOX.Junk", "\\Junk"),
    ("INBOX.Sent", "\\Sent"),
    ("INBOX.Spam", "\\Junk"),
    ("INBOX.Trash", "\\Trash"),
];

/// Why a folder operation failed. All but [`FolderError::Io`] are the client's; that one is
/// temporary.
#[derive(Debug)]
pub enum FolderError {
    /// Not a valid mailbox name (or pattern): why.
    Invalid(&'static str),
    /// No such mailbox.
    NotFound,
    /// The mailbox (or, for RENAME, a target child) already exists.
    Exists,
    /// Not done to INBOX: why.
    Inbox(&'static str),
    /// A file or directory could not be read, written or renamed.
    Io(PathBuf, io::Error),
}

impl FolderError {
    /// The response code of the `NO` (RFC 5530).
    pub fn code(&self) -> &'static str {
        match self {
            FolderError::Invalid(_) | FolderError::Inbox(_) => "CANNOT",
            FolderError::NotFound => "NONEXISTENT",
            FolderError::Exists => "ALREADYEXISTS",
            FolderError::Io(..) => "UNAVAILABLE",
        }
    }
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::Invalid(why) | FolderError::Inbox(why) => f.write_str(why),
            FolderError::NotFound => f.write_str("no such mailbox"),
            FolderError::Exists => f.write_str("mailbox already exists"),
            FolderError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for FolderError {}

/// A valid mailbox name and its directory; it may or may not exist ([`Store::exists`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// the canonical name: `INBOX` upper-case, modified UTF-7
    pub name: String,
    pub dir: PathBuf,
    pub inbox: bool,
}

/// One LIST or LSUB answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub attributes: Vec<&'static str>,
}

/// A user's Maildir as a set of mailboxes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Check `name` and map it to its directory; the disk is not looked at.
    pub fn resolve(&self, name: &[u8]) -> Result<Folder, FolderError> {
        let rest = split_inbox(name)?;
        let Some(rest) = rest else {
            return Ok(Folder { name: "INBOX".into(), dir: self.root.clone(), inbox: true });
        };
        let dir = dir_name(rest)?;
        Ok(Folder { name: format!("INBOX{dir}"), dir: self.root.join(&dir), inbox: false })
    }

    /// Whether `f` is a selectable folder: it has `cur/` and `new/`.
    pub fn exists(&self, f: &Folder) -> bool {
        is_dir(&f.dir.join("cur")) && is_dir(&f.dir.join("new"))
    }

    /// CREATE: a new, empty folder (one trailing delimiter allowed; no parents made).
    pub fn create(&self, name: &[u8]) -> Result<Folder, FolderError> {
        let name = match name.strip_suffix(b".") {
            Some(stripped) if !stripped.is_empty() => stripped,
            _ => name,
        };
        let folder = self.resolve(name)?;
        if folder.inbox {
            return Err(FolderError::Exists);
        }
        self.make(&folder)?;
        Ok(folder)
    }

    /// DELETE: remove a folder; its children stay.
    pub fn delete(&self, name: &[u8]) -> Result<(), FolderError> {
        let folder = self.resolve(name)?;
        if folder.inbox {
            return Err(FolderError::Inbox("INBOX cannot be deleted"));
        }
        let trash = self.hidden(TRASH_PREFIX);
        match fs::rename(&folder.dir, &trash) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => return Err(FolderError::NotFound),
            Err(e) => return Err(FolderError::Io(folder.dir, e)),
        }
        self.sync_root()?;
        // the folder is gone for every reader; what cannot be removed now is swept later
        let _ = remove_tree(&trash);
        self.sweep();
        Ok(())
    }

    /// RENAME: `from` and its children become `to` and its children; RENAME INBOX moves
    /// INBOX's messages into a new folder.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<(), FolderError> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        if dst.inbox || dst.name == src.name {
            return Err(FolderError::Exists);
        }
        if src.inbox {
            return self.rename_inbox(&dst);
        }
        if dst.name.starts_with(&format!("{}.", src.name)) {
            return Err(FolderError::Invalid("a mailbox cannot be renamed under itself"));
        }
        let old = dir_part(&src.name);
        let new = dir_part(&dst.name);
        let mut moves = Vec::new();
        for entry in self.entries()? {
            let Some(tail) = entry.strip_prefix(old.as_bytes()) else { continue };
            if !(tail.is_empty() || tail[0] == DELIMITER) {
                continue;
            }
            let target = [new.as_bytes(), tail].concat();
            if target.len() > MAX_DIR_NAME {
                return Err(FolderError::Invalid("mailbox name too long"));
            }
            let (from, to) = (self.root.join(os(&entry)), self.root.join(os(&target)));
            if is_dir(&from) {
                moves.push((from, to));
            }
        }
        if moves.is_empty() {
            return Err(FolderError::NotFound);
        }
        for (_, to) in &moves {
            if fs::symlink_metadata(to).is_ok() {
                return Err(FolderError::Exists);
            }
        }
        moves.sort();
        for (from, to) in moves {
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                    return Err(FolderError::Exists);
                }
                Err(e) => return Err(FolderError::Io(from, e)),
            }
        }
        self.sync_root()
    }

    /// LIST: the names matching `reference` and `pattern` ([module docs](self)).
    pub fn list(&self, reference: &[u8], pattern: &[u8]) -> Result<Vec<Listed>, FolderError> {
        if pattern.is_empty() {
            return Ok(vec![Listed { name: String::new(), attributes: vec!["\\Noselect"] }]);
        }
        let pattern = Pattern::new(reference, pattern)?;
        let tree = self.tree()?;
        let mut out = Vec::new();
        for (name, &selectable) in &tree {
            if !pattern.matches(name.as_bytes()) {
                continue;
            }
            let mut attributes = Vec::new();
            if !selectable {
                attributes.push("\\Noselect");
            }
            attributes.push(if has_children(&tree, name) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if selectable {
                if let Some((_, a)) = SPECIAL_USE.iter().find(|(n, _)| n == name) {
                    attributes.push(a);
                }
            }
            out.push(Listed { name: name.clone(), attributes });
        }
        Ok(out)
    }

    /// LSUB: the subscribed names matching `reference` and `pattern`, with RFC 3501's `%`
    /// rule for an unsubscribed parent.
    pub fn lsub(&self, reference: &[u8], pattern: &[u8]) -> Result<Vec<Listed>, FolderError> {
        if pattern.is_empty() {
            return Ok(vec![Listed { name: String::new(), attributes: vec!["\\Noselect"] }]);
        }
        let pattern = Pattern::new(reference, pattern)?;
        let subscribed = self.subscriptions()?;
        let set: BTreeSet<&str> = subscribed.iter().map(String::as_str).collect();
        let mut found: BTreeMap<String, bool> = BTreeMap::new();
        for name in &subscribed {
            if pattern.matches(name.as_bytes()) {
                found.insert(name.clone(), true);
                continue;
            }
            for parent in parents(name) {
                if !set.contains(parent) && pattern.matches(parent.as_bytes()) {
                    found.entry(parent.to_string()).or_insert(false);
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|(name, subscribed)| Listed {
                name,
                attributes: if subscribed { vec![] } else { vec!["\\Noselect"] },
            })
            .collect())
    }

    /// SUBSCRIBE: add `name` to the subscriptions (the folder need not exist).
    pub fn subscribe(&self, name: &[u8]) -> Result<(), FolderError> {
        let folder = self.resolve(name)?;
        let _lock = self.lock_root()?;
        let mut names = self.subscriptions()?;
        if names.contains(&folder.name) {
            return Ok(());
        }
        if names.len() >= MAX_SUBSCRIPTIONS {
            return Err(FolderError::Invalid("too many subscriptions"));
        }
        names.push(folder.name);
        self.write_subscriptions(&names)
    }

    /// UNSUBSCRIBE: remove `name` from the subscriptions (absent is fine).
    pub fn unsubscribe(&self, name: &[u8]) -> Result<(), FolderError> {
        let folder = self.resolve(name)?;
        let _lock = self.lock_root()?;
        let mut names = self.subscriptions()?;
        let before = names.len();
        names.retain(|n| *n != folder.name);
        if names.len() == before {
            return Ok(());
        }
        self.write_subscriptions(&names)
    }

    /// Every selectable folder, INBOX first, then by name.
    pub fn folders(&self) -> Result<Vec<Folder>, FolderError> {
        let mut out = vec![self.resolve(b"INBOX")?];
        for (name, selectable) in self.tree()? {
            if selectable && name != "INBOX" {
                out.push(self.resolve(name.as_bytes())?);
            }
        }
        Ok(out)
    }

    /// The subscribed names, canonical, in file order, without duplicates or garbage.
    pub fn subscriptions(&self) -> Result<Vec<String>, FolderError> {
        let path = self.root.join(SUBSCRIPTIONS);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(FolderError::Io(path, e)),
        };
        let mut data = Vec::new();
        file.take(MAX_SUBSCRIPTIONS_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| FolderError::Io(path.clone(), e))?;
        if data.len() as u64 > MAX_SUBSCRIPTIONS_FILE {
            // over the bound: the last, cut line is not a name
            let end = data.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            data.truncate(end);
        }
        let mut seen = BTreeSet::new();
        let mut names = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Ok(folder) = self.resolve(line) else { continue };
            if seen.insert(folder.name.clone()) {
                names.push(folder.name);
                if names.len() == MAX_SUBSCRIPTIONS {
                    break;
                }
            }
        }
        Ok(names)
    }

    fn write_subscriptions(&self, names: &[String]) -> Result<(), FolderError> {
        let path = self.root.join(SUBSCRIPTIONS);
        let mut data = String::new();
        for name in names {
            data.push_str(name);
            data.push('\n');
        }
        replace_with(&path, &self.root.join(SUBSCRIPTIONS_TEMP), 0o600, |mut f| {
            f.write_all(data.as_bytes())
        })
        .map_err(|e| FolderError::Io(path, e))
    }

    /// Build `folder` under a hidden name and rename it into place.
    fn make(&self, folder: &Folder) -> Result<(), FolderError> {
        let tmp = self.hidden(NEW_PREFIX);
        let built = self.build(&tmp);
        let placed = built.and_then(|()| match fs::rename(&tmp, &folder.dir) {
            Ok(()) => self.sync_root().map(|()| true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => Ok(false),
            Err(e) => Err(FolderError::Io(folder.dir.clone(), e)),
        });
        let placed = match placed {
            Ok(placed) => placed,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
        };
        if placed {
            return Ok(());
        }
        let _ = remove_tree(&tmp);
        if self.exists(folder) {
            return Err(FolderError::Exists);
        }
        // a directory without cur/ or new/: complete it where it is
        let io = |e| FolderError::Io(folder.dir.clone(), e);
        crate::maildir::make(&folder.dir).map_err(io)?;
        marker(&folder.dir).map_err(io)
    }

    /// A complete empty folder at `dir`, its UID list started with a new UIDVALIDITY.
    fn build(&self, dir: &Path) -> Result<(), FolderError> {
        let io = |e| FolderError::Io(dir.to_path_buf(), e);
        fs::DirBuilder::new().mode(0o700).create(dir).map_err(io)?;
        crate::maildir::make(dir).map_err(io)?;
        marker(dir).map_err(io)?;
        let validity = self.next_validity()?;
        UidList::open(dir, u64::from(validity), Rewrite::Allowed).map_err(from_uidlist)?;
        Ok(())
    }

    /// The next UIDVALIDITY of a new folder: `max(now, counter + 1)`, recorded as the counter.
    fn next_validity(&self) -> Result<u32, FolderError> {
        let lock_path = self.root.join(uidlist::LOCK);
        let _lock = uidlist::lock(&lock_path, uidlist::LOCK_WAIT).map_err(|e| match e {
            uidlist::UidListError::Io(p, e) => FolderError::Io(p, e),
            other => FolderError::Io(lock_path.clone(), io::Error::other(other.to_string())),
        })?;
        let path = self.root.join(uidlist::VALIDITY);
        let old = match fs::read(&path) {
            Ok(data) => parse_validity(&data),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(FolderError::Io(path, e)),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let next = match old {
            None => Some(now.max(1)),
            Some(old) => old.checked_add(1).map(|n| n.max(now)),
        };
        let Some(next) = next else {
            return Err(FolderError::Io(path, io::Error::other("no UIDVALIDITY left")));
        };
        replace_with(&path, &self.root.join(VALIDITY_TEMP), 0o600, |mut f| {
            f.write_all(format!("{next:08x}").as_bytes())
        })
        .map_err(|e| FolderError::Io(path, e))?;
        Ok(next)
    }

    /// RENAME INBOX `dst`: a new folder holding INBOX's messages.
    fn rename_inbox(&self, dst: &Folder) -> Result<(), FolderError> {
        self.make(dst)?;
        for sub in ["new", "cur"] {
            let from = self.root.join(sub);
            let to = dst.dir.join(sub);
            let list = fs::read_dir(&from).map_err(|e| FolderError::Io(from.clone(), e))?;
            for entry in list {
                let entry = entry.map_err(|e| FolderError::Io(from.clone(), e))?;
                let name = entry.file_name();
                if name.as_bytes().first() == Some(&b'.') {
                    continue;
                }
                match fs::rename(entry.path(), to.join(&name)) {
                    Ok(()) => {}
                    // expunged (or moved) by another session meanwhile
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(FolderError::Io(entry.path(), e)),
                }
            }
            fsync_dir(&to).map_err(|e| FolderError::Io(to.clone(), e))?;
            fsync_dir(&from).map_err(|e| FolderError::Io(from.clone(), e))?;
        }
        Ok(())
    }

    /// Every name seen by LIST: INBOX and the folders (selectable: `true`) and their missing
    /// parents (`false`).
    fn tree(&self) -> Result<BTreeMap<String, bool>, FolderError> {
        let mut tree = BTreeMap::new();
        tree.insert("INBOX".to_string(), true);
        for entry in self.entries()? {
            let Ok(dir) = std::str::from_utf8(&entry) else { continue };
            if dir_name(&entry[1..]).is_err() || !self.exists(&self.folder_at(dir)) {
                continue;
            }
            tree.insert(format!("INBOX{dir}"), true);
        }
        let names: Vec<String> = tree.keys().cloned().collect();
        for name in &names {
            for parent in parents(name) {
                tree.entry(parent.to_string()).or_insert(false);
            }
        }
        Ok(tree)
    }

    /// A folder from its directory name (`.a.b`), already checked.
    fn folder_at(&self, dir: &str) -> Folder {
        Folder { name: format!("INBOX{dir}"), dir: self.root.join(dir), inbox: false }
    }

    /// The names in the Maildir that start with one `.` and are not `.` or `..` themselves.
    fn entries(&self) -> Result<Vec<Vec<u8>>, FolderError> {
        let io = |e| FolderError::Io(self.root.clone(), e);
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.as_bytes();
            if name.len() >= 2 && name[0] == b'.' && name[1] != b'.' {
                out.push(name.to_vec());
            }
        }
        Ok(out)
    }

    /// A new hidden name in the Maildir.
    fn hidden(&self, prefix: &str) -> PathBuf {
        self.root.join(format!("{prefix}{}", crate::maildir::unique_name()))
    }

    /// Remove hidden working directories left over from crashes or failed removals.
    fn sweep(&self) {
        let Ok(list) = fs::read_dir(&self.root) else { return };
        for entry in list.flatten() {
            let name = entry.file_name();
            let name = name.as_bytes();
            if !(name.starts_with(TRASH_PREFIX.as_bytes())
                || name.starts_with(NEW_PREFIX.as_bytes()))
            {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LEFTOVER_AGE);
            if old {
                let _ = remove_tree(&entry.path());
            }
        }
    }

    fn sync_root(&self) -> Result<(), FolderError> {
        fsync_dir(&self.root).map_err(|e| FolderError::Io(self.root.clone(), e))
    }

    /// The lock of the subscription file: an `flock` on the Maildir directory.
    fn lock_root(&self) -> Result<Flock<File>, FolderError> {
        let file = File::open(&self.root).map_err(|e| FolderError::Io(self.root.clone(), e))?;
        lock(file, &self.root)
    }
}

/// Write one LIST or LSUB answer: `* LIST (\HasNoChildren) "." INBOX.Sent`.
pub fn write_listed(kind: &str, l: &Listed, out: &mut Vec<u8>) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b" (");
    out.extend_from_slice(l.attributes.join(" ").as_bytes());
    out.extend_from_slice(b") \".\" ");
    super::write::astring(l.name.as_bytes(), out);
    out.extend_from_slice(b"\r\n");
}

/// The modified base64 of RFC 3501 5.1.3: `,` for `/`, no padding, no stray bits.
const MBASE64: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// `text` in modified UTF-7 (RFC 3501 5.1.3): printable ASCII stands for itself, `&` is
/// `&-`, runs of anything else are UTF-16BE in modified base64 between `&` and `-`.
pub fn encode_mutf7(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut run: Vec<u16> = Vec::new();
    for c in text.chars() {
        if (' '..='~').contains(&c) {
            flush_run(&mut run, &mut out);
            if c == '&' {
                out.extend_from_slice(b"&-");
            } else {
                out.push(c as u8);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<u16>, out: &mut Vec<u8>) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push(b'&');
    out.extend_from_slice(MBASE64.encode(bytes).as_bytes());
    out.push(b'-');
    run.clear();
}

/// The text of modified UTF-7 `bytes`, `None` unless they are exactly what
/// [`encode_mutf7`] writes for it.
pub fn decode_mutf7(bytes: &[u8]) -> Option<String> {
    let text = decode_loose(bytes)?;
    (encode_mutf7(&text) == bytes).then_some(text)
}

/// Decode without the canonical-form check.
fn decode_loose(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return None;
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let len = bytes[i + 1..].iter().position(|&b| b == b'-')?;
        let run = &bytes[i + 1..i + 1 + len];
        if run.is_empty() {
            out.push('&');
        } else {
            let data = MBASE64.decode(run).ok()?;
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            for c in char::decode_utf16(units) {
                out.push(c.ok()?);
            }
        }
        i += len + 2;
    }
    Some(out)
}

/// The part of `name` after `INBOX`: `None` for INBOX itself, else what follows `INBOX.`.
fn split_inbox(name: &[u8]) -> Result<Option<&[u8]>, FolderError> {
    let (head, rest) = match name.iter().position(|&b| b == DELIMITER) {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    if !head.eq_ignore_ascii_case(b"INBOX") {
        return Err(FolderError::Invalid("mailbox names are INBOX and under INBOX."));
    }
    Ok(rest)
}

/// The directory name (`.a.b`) of the components `a.b`, each checked.
fn dir_name(rest: &[u8]) -> Result<String, FolderError> {
    if rest.len() + 1 > MAX_DIR_NAME {
        return Err(FolderError::Invalid("mailbox name too long"));
    }
    for part in rest.split(|&b| b == DELIMITER) {
        component(part)?;
    }
    // checked: printable ASCII only
    let rest = std::str::from_utf8(rest).map_err(|_| FolderError::Invalid("bad name"))?;
    Ok(format!(".{rest}"))
}

/// One name component: non-empty canonical modified UTF-7 without `/` or controls.
fn component(part: &[u8]) -> Result<(), FolderError> {
    if part.is_empty() {
        return Err(FolderError::Invalid("empty mailbox name component"));
    }
    if part.contains(&b'/') {
        return Err(FolderError::Invalid("\"/\" in a mailbox name"));
    }
    let text = decode_mutf7(part)
        .ok_or(FolderError::Invalid("mailbox name is not modified UTF-7 (RFC 3501 5.1.3)"))?;
    if text.chars().any(char::is_control) {
        return Err(FolderError::Invalid("control character in a mailbox name"));
    }
    Ok(())
}

/// `INBOX.a.b` → `.a.b`; a canonical name other than INBOX.
fn dir_part(name: &str) -> &str {
    &name["INBOX".len()..]
}

/// The proper parents of `name`, outermost first: `INBOX.a.b` → `INBOX`, `INBOX.a`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[..i])
}

/// Whether some name in `tree` is under `name`: they sort right after it.
fn has_children(tree: &BTreeMap<String, bool>, name: &str) -> bool {
    let prefix = format!("{name}.");
    tree.range(prefix.clone()..).next().is_some_and(|(n, _)| n.starts_with(&prefix))
}

/// A LIST pattern: the reference and the pattern joined, runs of wildcards folded, a
/// leading `INBOX` upper-cased.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new(reference: &[u8], pattern: &[u8]) -> Result<Pattern, FolderError> {
        if reference.len() + pattern.len() > MAX_PATTERN {
            return Err(FolderError::Invalid("pattern too long"));
        }
        let mut joined = [reference, pattern].concat();
        if joined.len() >= 5 && joined[..5].eq_ignore_ascii_case(b"INBOX") {
            joined[..5].copy_from_slice(b"INBOX");
        }
        // a run of wildcards is `*` if it holds one, else `%`
        let mut folded: Vec<u8> = Vec::with_capacity(joined.len());
        for b in joined {
            match (folded.last_mut(), b) {
                (Some(last @ (b'*' | b'%')), b'*' | b'%') => {
                    if b == b'*' {
                        *last = b'*';
                    }
                }
                _ => folded.push(b),
            }
        }
        Ok(Pattern(folded))
    }

    /// Whether `name` matches: a walk over `name` keeping the set of pattern positions
    /// reached (`*` any bytes, `%` any bytes but the delimiter).
    fn matches(&self, name: &[u8]) -> bool {
        let p = &self.0;
        let mut now = vec![false; p.len() + 1];
        let mut next = vec![false; p.len() + 1];
        now[0] = true;
        close(p, &mut now);
        for &c in name {
            next.fill(false);
            let mut any = false;
            for i in 0..p.len() {
                if !now[i] {
                    continue;
                }
                match p[i] {
                    b'*' => next[i] = true,
                    b'%' if c != DELIMITER => next[i] = true,
                    b'%' => {}
                    lit if lit == c => next[i + 1] = true,
                    _ => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            close(p, &mut next);
            std::mem::swap(&mut now, &mut next);
        }
        now[p.len()]
    }
}

/// Add the positions reached by letting wildcards match nothing.
fn close(p: &[u8], states: &mut [bool]) {
    for i in 0..p.len() {
        if states[i] && matches!(p[i], b'*' | b'%') {
            states[i + 1] = true;
        }
    }
}

/// Take the exclusive `flock` on `file`, trying for at most [`LOCK_WAIT`].
fn lock(mut file: File, path: &Path) -> Result<Flock<File>, FolderError> {
    let start = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < LOCK_WAIT => {
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => return Err(FolderError::Io(path.to_path_buf(), e.into())),
        }
    }
}

/// A UIDVALIDITY counter: up to eight hex digits and a line end.
fn parse_validity(data: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(data).ok()?.trim_end_matches('\n');
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

fn from_uidlist(e: UidListError) -> FolderError {
    match e {
        UidListError::Io(p, e) => FolderError::Io(p, e),
        UidListError::Locked(p) => FolderError::Io(p, io::Error::other("locked")),
        UidListError::Exhausted => {
            FolderError::Io(PathBuf::new(), io::Error::other("no UIDVALIDITY left"))
        }
    }
}

/// The empty `maildirfolder` marker in `dir`.
fn marker(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(MARKER))?;
    Ok(())
}

/// Whether `path` is a directory (symbolic links followed).
fn is_dir(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// Remove a directory tree (a symbolic link: the link only).
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A Maildir in a fresh temp dir, removed on drop.
    struct Tmp(PathBuf);

    impl Tmp {
        fn new(tag: &str) -> (Tmp, Store) {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!("qmail-folders-{tag}-{}-{seq}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&dir);
            crate::maildir::make(&dir).unwrap();
            let store = Store::new(&dir);
            (Tmp(dir), store)
        }

        /// A bare Maildir++ folder made as another tool would (no UID list).
        fn folder(&self, dir: &str) {
            let dir = self.0.join(dir);
            crate::maildir::make(&dir).unwrap();
            fs::write(dir.join(MARKER), b"").unwrap();
        }

        fn put(&self, path: &str) {
            fs::write(self.0.join(path), b"x\n").unwrap();
        }

        fn has(&self, path: &str) -> bool {
            fs::symlink_metadata(self.0.join(path)).is_ok()
        }

        /// The directory entries of the root, sorted, files of a Maildir left out.
        fn dirs(&self) -> Vec<String> {
            let mut out: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with('.'))
                .collect();
            out.sort();
            out
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn invalid(store: &Store, name: &[u8]) {
        match store.resolve(name) {
            Err(FolderError::Invalid(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(name)),
        }
    }

    fn lines(kind: &str, listed: &[Listed]) -> String {
        let mut out = Vec::new();
        for l in listed {
            write_listed(kind, l, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn names_map_to_directories() {
        let store = Store::new("/m");
        let f = store.resolve(b"inbox").unwrap();
        assert_eq!((f.name.as_str(), f.dir.as_path(), f.inbox), ("INBOX", Path::new("/m"), true));
        let f = store.resolve(b"Inbox.Sent").unwrap();
        assert_eq!(
            (f.name.as_str(), f.dir.as_path(), f.inbox),
            ("INBOX.Sent", Path::new("/m/.Sent"), false)
        );
        let f = store.resolve(b"INBOX.a.b").unwrap();
        assert_eq!(f.dir, Path::new("/m/.a.b"));
        assert_eq!(
            store.resolve(b"INBOX.inbox").unwrap().name,
            "INBOX.inbox",
            "only the first is folded"
        );
        assert_eq!(store.resolve(b"INBOX.&-").unwrap().dir, Path::new("/m/.&-"));
        assert_eq!(store.resolve(b"INBOX.Entw&APw-rfe").unwrap().name, "INBOX.Entw&APw-rfe");
        assert_eq!(store.resolve(b"INBOX.a b").unwrap().dir, Path::new("/m/.a b"));
    }

    #[test]
    fn invalid_names() {
        let store = Store::new("/m");
        for name in [
            &b"../x"[..],
            b"INBOX..a",
            b"INBOX.a/b",
            b"INBOX./",
            b".",
            b"",
            b"INBOX.",
            b".INBOX",
            b"INBOX.a.",
            b"INBOX.&Jjo",
            b"INBOX.&AGE-",
            b"INBOX.&-&-x&",
            b"INBOX.&AOk-&AOk-",
            b"INBOX.a\0b",
            b"INBOX.a\nb",
            b"INBOX.\xc3\xa9",
            b"INBOX.&AAo-",
            b"INBOX.&2D0-",
            b"Sent",
            b"INBOXa",
            b"&-",
            b"/etc/passwd",
        ] {
            invalid(&store, name);
        }
        let long = format!("INBOX.{}", "a".repeat(254));
        assert!(store.resolve(long.as_bytes()).is_ok());
        invalid(&store, format!("INBOX.{}", "a".repeat(255)).as_bytes());
    }

    #[test]
    fn modified_utf7() {
        for (text, coded) in [
            ("Entwürfe", &b"Entw&APw-rfe"[..]),
            ("台北", b"&U,BTFw-"),
            ("a&b", b"a&-b"),
            ("&", b"&-"),
            ("~peter/mail/日本語/台北", b"~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
            ("😀", b"&2D3eAA-"),
            ("", b""),
            ("plain", b"plain"),
        ] {
            assert_eq!(encode_mutf7(text), coded, "{text}");
            assert_eq!(decode_mutf7(coded).as_deref(), Some(text), "{text}");
        }
        for bad in [
            &b"&Jjo"[..],
            b"&AGE-",
            b"&",
            b"&U,BTFw",
            b"&U,BTF-",
            b"&AOk-&AOk-",
            b"&ZeVnLIqe",
            b"&2D0-",
            b"\xc3\xa9",
            b"a\tb",
            b"&U/BTFw-",
            b"&AOk=-",
        ] {
            assert_eq!(decode_mutf7(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn create_and_exists() {
        let (tmp, store) = Tmp::new("create");
        let f = store.create(b"INBOX.Sent").unwrap();
        assert!(store.exists(&f));
        for part in ["cur", "new", "tmp", MARKER, uidlist::LIST] {
            assert!(tmp.has(&format!(".Sent/{part}")), "{part}");
        }
        assert!(matches!(store.create(b"INBOX.Sent"), Err(FolderError::Exists)));
        assert!(matches!(store.create(b"inbox"), Err(FolderError::Exists)));
        assert!(matches!(store.create(b"INBOX."), Err(FolderError::Exists)));
        assert!(matches!(store.create(b"Sent"), Err(FolderError::Invalid(_))));
        // trailing delimiter; no parents made
        store.create(b"INBOX.a.b.").unwrap();
        assert_eq!(tmp.dirs(), [".Sent", ".a.b"]);
        // a half folder is completed in place
        fs::create_dir(tmp.0.join(".half")).unwrap();
        tmp.put(".half/dovecot-uidlist");
        let f = store.create(b"INBOX.half").unwrap();
        assert!(store.exists(&f) && tmp.has(".half/maildirfolder"));
        assert!(!tmp.dirs().iter().any(|d| d.starts_with("..")), "no working names left");
    }

    #[test]
    fn created_folders_get_new_uidvalidities() {
        let (tmp, store) = Tmp::new("validity");
        let far = u32::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())
            .unwrap()
            + 1000;
        fs::write(tmp.0.join(uidlist::VALIDITY), format!("{far:08x}")).unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let f = store.create(b"INBOX.x").unwrap();
            seen.push(UidList::open(&f.dir, 0, Rewrite::Allowed).unwrap().uidvalidity());
            store.delete(b"INBOX.x").unwrap();
        }
        assert_eq!(seen, [far + 1, far + 2, far + 3]);
        let counter = fs::read_to_string(tmp.0.join(uidlist::VALIDITY)).unwrap();
        assert_eq!(counter, format!("{:08x}", far + 3));
    }

    #[test]
    fn delete() {
        let (tmp, store) = Tmp::new("delete");
        store.create(b"INBOX.a").unwrap();
        store.create(b"INBOX.a.b").unwrap();
        tmp.put(".a/cur/1:2,S");
        store.subscribe(b"INBOX.a").unwrap();
        assert!(matches!(store.delete(b"INBOX"), Err(FolderError::Inbox(_))));
        assert!(matches!(store.delete(b"inbox"), Err(FolderError::Inbox(_))));
        assert!(matches!(store.delete(b"INBOX.zz"), Err(FolderError::NotFound)));
        store.delete(b"INBOX.a").unwrap();
        assert_eq!(tmp.dirs(), [".a.b"], "children stay, nothing hidden left");
        assert!(matches!(store.delete(b"INBOX.a"), Err(FolderError::NotFound)));
        assert_eq!(store.subscriptions().unwrap(), ["INBOX.a"], "subscriptions untouched");
        let listed = store.list(b"", b"*").unwrap();
        assert_eq!(
            lines("LIST", &listed),
            "* LIST (\\HasChildren) \".\" INBOX\r\n\
             * LIST (\\Noselect \\HasChildren) \".\" INBOX.a\r\n\
             * LIST (\\HasNoChildren) \".\" INBOX.a.b\r\n"
        );
    }

    #[test]
    fn racing_creates_make_one_folder() {
        let (tmp, store) = Tmp::new("race");
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| store.create(b"INBOX.race").is_ok())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|&&ok| ok).count(), 1, "{results:?}");
        assert_eq!(tmp.dirs(), [".race"]);
    }

    #[test]
    fn a_linked_folder_is_listed_and_delete_removes_the_link_only() {
        let (tmp, store) = Tmp::new("link");
        let (shared, _) = Tmp::new("shared");
        crate::maildir::make(&shared.0.join("box")).unwrap();
        std::os::unix::fs::symlink(shared.0.join("box"), tmp.0.join(".shared")).unwrap();
        let names: Vec<String> = store.folders().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["INBOX", "INBOX.shared"]);
        store.delete(b"INBOX.shared").unwrap();
        assert!(tmp.dirs().is_empty());
        assert!(shared.0.join("box/cur").is_dir(), "the target stays");
    }

    #[test]
    fn delete_sweeps_old_leftovers_only() {
        let (tmp, store) = Tmp::new("sweep");
        fs::create_dir_all(tmp.0.join("..qmail-trash-old/cur")).unwrap();
        fs::create_dir_all(tmp.0.join("..qmail-trash-young/cur")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::open(tmp.0.join("..qmail-trash-old")).unwrap().set_modified(old).unwrap();
        store.create(b"INBOX.x").unwrap();
        store.delete(b"INBOX.x").unwrap();
        assert_eq!(tmp.dirs(), ["..qmail-trash-young"]);
        assert_eq!(store.list(b"", b"*").unwrap().len(), 1, "hidden names are not folders");
    }

    #[test]
    fn rename_with_children() {
        let (tmp, store) = Tmp::new("rename");
        store.create(b"INBOX.a").unwrap();
        store.create(b"INBOX.a.b").unwrap();
        store.create(b"INBOX.a.b.c").unwrap();
        store.create(b"INBOX.ab").unwrap();
        tmp.put(".a.b/new/1");
        let uidlist = fs::read(tmp.0.join(".a/dovecot-uidlist")).unwrap();
        store.rename(b"inbox.a", b"INBOX.x").unwrap();
        assert_eq!(tmp.dirs(), [".ab", ".x", ".x.b", ".x.b.c"]);
        assert!(tmp.has(".x.b/new/1"));
        assert_eq!(
            fs::read(tmp.0.join(".x/dovecot-uidlist")).unwrap(),
            uidlist,
            "list moved along"
        );
        assert!(matches!(store.rename(b"INBOX.a", b"INBOX.y"), Err(FolderError::NotFound)));
        assert!(matches!(store.rename(b"INBOX.x", b"INBOX.ab"), Err(FolderError::Exists)));
        assert!(matches!(store.rename(b"INBOX.x", b"INBOX.x"), Err(FolderError::Exists)));
        assert!(matches!(store.rename(b"INBOX.x", b"inbox"), Err(FolderError::Exists)));
        assert!(matches!(store.rename(b"INBOX.x", b"INBOX.x.y"), Err(FolderError::Invalid(_))));
        assert!(matches!(store.rename(b"INBOX.x", b"INBOX..y"), Err(FolderError::Invalid(_))));
        // a target child that exists refuses the whole rename
        store.create(b"INBOX.y.b.c").unwrap();
        assert!(matches!(store.rename(b"INBOX.x", b"INBOX.y"), Err(FolderError::Exists)));
        assert_eq!(tmp.dirs(), [".ab", ".x", ".x.b", ".x.b.c", ".y.b.c"], "nothing moved");
        // a missing parent with children can be renamed
        store.rename(b"INBOX.y", b"INBOX.z").unwrap();
        assert_eq!(tmp.dirs(), [".ab", ".x", ".x.b", ".x.b.c", ".z.b.c"]);
        // a target name over the bound
        let long = format!("INBOX.{}", "q".repeat(252));
        assert!(matches!(store.rename(b"INBOX.x", long.as_bytes()), Err(FolderError::Invalid(_))));
    }

    #[test]
    fn rename_inbox_moves_the_messages() {
        let (tmp, store) = Tmp::new("inbox");
        store.create(b"INBOX.keep").unwrap();
        tmp.put("new/1.new");
        tmp.put("cur/2.cur:2,S");
        tmp.put("tmp/3.tmp");
        store.rename(b"Inbox", b"INBOX.old").unwrap();
        assert!(tmp.has(".old/new/1.new") && tmp.has(".old/cur/2.cur:2,S"));
        assert!(!tmp.has("new/1.new") && !tmp.has("cur/2.cur:2,S"));
        assert!(tmp.has("tmp/3.tmp"), "tmp/ is not messages");
        assert!(store.exists(&store.resolve(b"INBOX").unwrap()));
        assert!(store.exists(&store.resolve(b"INBOX.keep").unwrap()), "children untouched");
        assert!(matches!(store.rename(b"INBOX", b"INBOX.old"), Err(FolderError::Exists)));
    }

    #[test]
    fn list_patterns_and_attributes() {
        let (tmp, store) = Tmp::new("list");
        for dir in
            [".Sent", ".Drafts", ".Trash", ".Spam", ".Archive", ".a.b", ".a.b.c", ".Entw&APw-rfe"]
        {
            tmp.folder(dir);
        }
        // not folders
        fs::create_dir(tmp.0.join(".nocur")).unwrap();
        fs::create_dir(tmp.0.join("plain")).unwrap();
        tmp.put(".file");
        fs::create_dir_all(tmp.0.join(".&AGE-/cur")).unwrap();
        fs::create_dir_all(tmp.0.join(".&AGE-/new")).unwrap();
        fs::create_dir_all(tmp.0.join("..qmail-new-x/cur")).unwrap();
        fs::create_dir_all(tmp.0.join("..qmail-new-x/new")).unwrap();
        let names = |r: &[u8], p: &[u8]| -> Vec<String> {
            store.list(r, p).unwrap().into_iter().map(|l| l.name).collect()
        };
        assert_eq!(
            lines("LIST", &store.list(b"", b"*").unwrap()),
            "* LIST (\\HasChildren) \".\" INBOX\r\n\
             * LIST (\\HasNoChildren \\Archive) \".\" INBOX.Archive\r\n\
             * LIST (\\HasNoChildren \\Drafts) \".\" INBOX.Drafts\r\n\
             * LIST (\\HasNoChildren) \".\" INBOX.Entw&APw-rfe\r\n\
             * LIST (\\HasNoChildren \\Sent) \".\" INBOX.Sent\r\n\
             * LIST (\\HasNoChildren \\Junk) \".\" INBOX.Spam\r\n\
             * LIST (\\HasNoChildren \\Trash) \".\" INBOX.Trash\r\n\
             * LIST (\\Noselect \\HasChildren) \".\" INBOX.a\r\n\
             * LIST (\\HasChildren) \".\" INBOX.a.b\r\n\
             * LIST (\\HasNoChildren) \".\" INBOX.a.b.c\r\n"
        );
        assert_eq!(names(b"", b"%"), ["INBOX"]);
        assert_eq!(names(b"", b"inbox.%").len(), 7);
        assert_eq!(names(b"INBOX.", b"%"), names(b"", b"INBOX.%"));
        assert_eq!(names(b"inbox.a.", b"%"), ["INBOX.a.b"]);
        assert_eq!(names(b"", b"INBOX.a.*"), ["INBOX.a.b", "INBOX.a.b.c"]);
        assert_eq!(names(b"", b"INBOX.%.%"), ["INBOX.a.b"]);
        assert_eq!(names(b"", b"*c"), ["INBOX.a.b.c"]);
        assert_eq!(names(b"", b"INBOX.S%"), ["INBOX.Sent", "INBOX.Spam"]);
        assert_eq!(names(b"", b"INBOX.Sent"), ["INBOX.Sent"]);
        assert_eq!(names(b"", b"INBOX.sent"), Vec::<String>::new());
        assert_eq!(names(b"", b"Sent"), Vec::<String>::new());
        assert_eq!(names(b"", b"INBOX"), ["INBOX"]);
        assert_eq!(
            lines("LIST", &store.list(b"", b"").unwrap()),
            "* LIST (\\Noselect) \".\" \"\"\r\n"
        );
        assert_eq!(
            lines("LIST", &store.list(b"INBOX.", b"").unwrap()),
            "* LIST (\\Noselect) \".\" \"\"\r\n"
        );
        let long = vec![b'*'; MAX_PATTERN + 1];
        assert!(matches!(store.list(b"", &long), Err(FolderError::Invalid(_))));
        // every folder, INBOX first
        let all: Vec<String> = store.folders().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(all.len(), 9);
        assert_eq!(all[0], "INBOX");
        assert!(!all.contains(&"INBOX.a".to_string()));
    }

    #[test]
    fn a_name_with_space_is_quoted() {
        let l = Listed { name: "INBOX.a b".into(), attributes: vec!["\\HasNoChildren"] };
        assert_eq!(lines("LSUB", &[l]), "* LSUB (\\HasNoChildren) \".\" \"INBOX.a b\"\r\n");
    }

    #[test]
    fn pattern_matching() {
        let m = |p: &[u8], n: &[u8]| Pattern::new(b"", p).unwrap().matches(n);
        assert!(m(b"*", b""));
        assert!(m(b"%", b"abc"));
        assert!(!m(b"%", b"a.b"));
        assert!(m(b"*", b"a.b"));
        assert!(m(b"a%c", b"abbc"));
        assert!(!m(b"a%c", b"a.c"));
        assert!(m(b"a*c", b"a.c"));
        assert!(m(b"%*%", b"a.b"));
        assert!(m(b"a.%.c", b"a.b.c"));
        assert!(!m(b"a.%.c", b"a.b.b.c"));
        assert!(m(b"a.*.c", b"a.b.b.c"));
        assert!(m(b"inbox", b"INBOX"));
        assert!(!m(b"abc", b"ab"));
        assert!(!m(b"ab", b"abc"));
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let (tmp, store) = Tmp::new("slow");
        let long = "a".repeat(200);
        for i in 0..20 {
            tmp.folder(&format!(".{long}{i}"));
        }
        let pattern: Vec<u8> =
            b"INBOX.".iter().copied().chain(b"*a%".repeat(300)).chain(*b"b").collect();
        let start = Instant::now();
        assert!(store.list(b"", &pattern).unwrap().is_empty());
        let pattern: Vec<u8> = "a*".repeat(500).into_bytes();
        assert!(store.list(b"", &pattern).unwrap().is_empty());
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }

    #[test]
    fn subscriptions() {
        let (tmp, store) = Tmp::new("subs");
        fs::write(
            tmp.0.join(SUBSCRIPTIONS),
            b"INBOX.Sent\r\n\ngarbage\n../../etc\nINBOX..x\ninbox.Sent\nINBOX.\xff\nINBOX.a.b",
        )
        .unwrap();
        assert_eq!(store.subscriptions().unwrap(), ["INBOX.Sent", "INBOX.a.b"]);
        store.subscribe(b"inbox.Drafts").unwrap();
        store.subscribe(b"INBOX.Drafts").unwrap();
        assert!(matches!(store.subscribe(b"Drafts"), Err(FolderError::Invalid(_))));
        assert_eq!(
            fs::read_to_string(tmp.0.join(SUBSCRIPTIONS)).unwrap(),
            "INBOX.Sent\nINBOX.a.b\nINBOX.Drafts\n"
        );
        store.unsubscribe(b"INBOX.Sent").unwrap();
        store.unsubscribe(b"INBOX.never").unwrap();
        assert_eq!(store.subscriptions().unwrap(), ["INBOX.a.b", "INBOX.Drafts"]);
        assert!(!tmp.has(SUBSCRIPTIONS_TEMP));
    }

    #[test]
    fn subscription_file_is_bounded() {
        let (tmp, store) = Tmp::new("bounded");
        let mut data = String::new();
        let mut i = 0;
        while data.len() as u64 <= MAX_SUBSCRIPTIONS_FILE + 100 {
            data.push_str(&format!("INBOX.f{i}\n"));
            i += 1;
        }
        fs::write(tmp.0.join(SUBSCRIPTIONS), &data).unwrap();
        let names = store.subscriptions().unwrap();
        assert_eq!(names.len(), MAX_SUBSCRIPTIONS);
        assert!(matches!(store.subscribe(b"INBOX.new"), Err(FolderError::Invalid(_))));
    }

    #[test]
    fn lsub_and_the_percent_rule() {
        let (_tmp, store) = Tmp::new("lsub");
        store.subscribe(b"INBOX.a.b").unwrap();
        store.subscribe(b"INBOX.c").unwrap();
        assert_eq!(
            lines("LSUB", &store.lsub(b"", b"*").unwrap()),
            "* LSUB () \".\" INBOX.a.b\r\n* LSUB () \".\" INBOX.c\r\n"
        );
        assert_eq!(
            lines("LSUB", &store.lsub(b"", b"INBOX.%").unwrap()),
            "* LSUB (\\Noselect) \".\" INBOX.a\r\n* LSUB () \".\" INBOX.c\r\n"
        );
        assert_eq!(
            lines("LSUB", &store.lsub(b"", b"%").unwrap()),
            "* LSUB (\\Noselect) \".\" INBOX\r\n"
        );
        store.subscribe(b"INBOX.a").unwrap();
        assert_eq!(
            lines("LSUB", &store.lsub(b"inbox.", b"%").unwrap()),
            "* LSUB () \".\" INBOX.a\r\n* LSUB () \".\" INBOX.c\r\n"
        );
        assert_eq!(
            lines("LSUB", &store.lsub(b"", b"INBOX.a.%").unwrap()),
            "* LSUB () \".\" INBOX.a.b\r\n"
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(FolderError::Exists.code(), "ALREADYEXISTS");
        assert_eq!(FolderError::NotFound.code(), "NONEXISTENT");
        assert_eq!(FolderError::Inbox("x").code(), "CANNOT");
    }
}
