//! control: qmail's control files under `QMAILHOME/control` (doc/qmail-control.5).
//!
//! - Absent is data, unreadable is temporary: every read returns `Result<Option<_>>`; a
//!   missing file (ENOENT) is `Ok(None)` and the caller's default applies; any other failure is
//!   a [`ControlError`], which callers treat as a temporary failure (`#4.3.0`, exit 111).
//! - Single-value files: the first line, trailing blanks, CR and LF removed; an empty value
//!   counts as absent.
//! - Integer files: leading decimal digits; no digits counts as absent; too big is an error.
//! - List files: one entry per line, trailing blanks removed, empty and `#` lines skipped.
//! - `key:value` maps: split at the first `:`; lines without `:` ignored.
//! - `locals` and `rcpthosts` have cdb variants (`locals.cdb`, `rcpthosts.cdb`) that replace
//!   the text file entirely when present.
//!
//! Files are bounded ([`MAX_FILE`]); [`KNOWN`] lists every control file the project reads.
//!
//! A long-lived process that must see every change as a process per connection would (the
//! qmail-smtpd worker) reads through a [`Cache`]: a file is read again only when it or the
//! control directory changed since it was read (doc/qmail-smtpd.8, CONTROL FILES).

use crate::cdb::{self, CdbError};
use crate::file::Stamp;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The largest control file read into memory; bigger lists belong in a cdb.
pub const MAX_FILE: u64 = 64 << 20;

/// A control file that exists but cannot be used: a temporary failure.
#[derive(Debug)]
pub struct ControlError {
    pub name: String,
    pub kind: ControlErrorKind,
}

#[derive(Debug)]
pub enum ControlErrorKind {
    Io(io::Error),
    TooBig,
    Corrupt,
    BadNumber,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ControlErrorKind::Io(e) => write!(f, "unable to read control/{}: {e}", self.name),
            ControlErrorKind::TooBig => write!(f, "control/{} is too big", self.name),
            ControlErrorKind::Corrupt => write!(f, "control/{} is a corrupt cdb", self.name),
            ControlErrorKind::BadNumber => write!(f, "control/{}: number out of range", self.name),
        }
    }
}

impl std::error::Error for ControlError {}

pub type Result<T> = std::result::Result<T, ControlError>;

/// The control directory of one installation root.
#[derive(Debug, Clone)]
pub struct Control {
    dir: PathBuf,
    cache: Option<Cache>,
}

/// What a process kept of the control files it read: their contents, and which were missing.
/// Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Cache(Arc<Mutex<Kept>>);

/// The largest file a [`Cache`] keeps, and the most bytes it keeps in all: a bigger file is
/// read each time, as without a cache.
const CACHE_FILE_MAX: usize = 1 << 20;
const CACHE_MAX: usize = 4 << 20;

#[derive(Debug, Default)]
struct Kept {
    /// the control directory the entries are from, and what it looked like when checked
    dir: Option<(PathBuf, Stamp)>,
    files: HashMap<String, Entry>,
    bytes: usize,
}

#[derive(Debug)]
enum Entry {
    /// no such name in the directory: valid while the directory is unchanged
    Missing,
    /// the contents, and the file as it was before they were read
    Read(Stamp, Arc<[u8]>),
}

impl Cache {
    /// Drop what changed in `dir` since it was kept: everything when the directory itself
    /// changed (a file made, removed or renamed; another directory), else each file whose
    /// inode, size, modification or change time differs. One `stat` for the directory and
    /// one per file kept. What the directory looks like is noted now, before anything of
    /// this session is read, so that a change made while it reads shows at the next check.
    fn check(&self, dir: &Path) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::fs::metadata(dir).ok().map(|m| Stamp::of(&m));
        let same = matches!((&kept.dir, now), (Some((d, s)), Some(n)) if d == dir && *s == n);
        if !same {
            *kept = Kept { dir: now.map(|n| (dir.to_path_buf(), n)), ..Kept::default() };
            return;
        }
        let mut bytes = kept.bytes;
        kept.files.retain(|name, entry| match entry {
            Entry::Missing => true,
            Entry::Read(stamp, data) => {
                let same = std::fs::metadata(dir.join(name)).is_ok_and(|m| Stamp::of(&m) == *stamp);
                if !same {
                    bytes -= data.len();
                }
                same
            }
        });
        kept.bytes = bytes;
    }

    /// What is kept for `name` in `dir`: `Some(None)` missing, `Some(Some(data))` read.
    fn get(&self, dir: &Path, name: &str) -> Option<Option<Arc<[u8]>>> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(&kept.dir, Some((d, _)) if d == dir) {
            return None;
        }
        match kept.files.get(name)? {
            Entry::Missing => Some(None),
            Entry::Read(_, data) => Some(Some(data.clone())),
        }
    }

    /// Keep what was found for `name` in `dir`: `Some((stamp, data))` read, `None` missing.
    fn put(&self, dir: &Path, name: &str, found: Option<(Stamp, &[u8])>) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(&kept.dir, Some((d, _)) if d == dir) {
            // not the directory checked at the session's start
            return;
        }
        let entry = match found {
            None => Entry::Missing,
            Some((_, data))
                if data.len() > CACHE_FILE_MAX || kept.bytes + data.len() > CACHE_MAX =>
            {
                return
            }
            Some((stamp, data)) => {
                kept.bytes += data.len();
                Entry::Read(stamp, Arc::from(data))
            }
        };
        if let Some(Entry::Read(_, old)) = kept.files.insert(name.to_string(), entry) {
            kept.bytes -= old.len();
        }
    }
}

impl Control {
    /// The control directory under `home`.
    pub fn new(home: &Path) -> Self {
        Control { dir: home.join("control"), cache: None }
    }

    /// The control directory under `home`, read through `cache`: what changed since the
    /// cache kept it is dropped now, and read again when asked for.
    pub fn cached(home: &Path, cache: &Cache) -> Self {
        let control = Control { dir: home.join("control"), cache: Some(cache.clone()) };
        cache.check(&control.dir);
        control
    }

    /// The control directory of this process's installation root ([`crate::auto::home`]).
    pub fn here() -> Self {
        Self::new(&crate::auto::home())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn err(name: &str, kind: ControlErrorKind) -> ControlError {
        ControlError { name: name.to_string(), kind }
    }

    /// The raw bytes of a file, bounded by [`MAX_FILE`].
    pub fn raw(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if let Some(kept) = self.cache.as_ref().and_then(|c| c.get(&self.dir, name)) {
            return Ok(kept.map(|data| data.to_vec()));
        }
        let file = match std::fs::File::open(self.path(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.missing(name);
                return Ok(None);
            }
            Err(e) => return Err(Self::err(name, ControlErrorKind::Io(e))),
        };
        // what the file is before it is read: a change while reading shows at the next check
        let stamp = match &self.cache {
            Some(_) => file.metadata().ok().map(|m| Stamp::of(&m)),
            None => None,
        };
        let mut data = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| Self::err(name, ControlErrorKind::Io(e)))?;
        if data.len() as u64 > MAX_FILE {
            return Err(Self::err(name, ControlErrorKind::TooBig));
        }
        if let (Some(cache), Some(stamp)) = (&self.cache, stamp) {
            cache.put(&self.dir, name, Some((stamp, &data)));
        }
        Ok(Some(data))
    }

    /// Whether `name` exists (any kind of file); through the cache, a name known to be
    /// missing costs nothing.
    pub fn exists(&self, name: &str) -> bool {
        if let Some(None) = self.cache.as_ref().and_then(|c| c.get(&self.dir, name)) {
            return false;
        }
        let there = self.path(name).exists();
        if !there {
            self.missing(name);
        }
        there
    }

    /// Keep in the cache that `name` was not found, unless something is there after all (a
    /// dangling symbolic link, which may come to point at a file without the directory
    /// changing).
    fn missing(&self, name: &str) {
        if let Some(cache) = &self.cache {
            if std::fs::symlink_metadata(self.path(name))
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                cache.put(&self.dir, name, None);
            }
        }
    }

    /// A cdb that is known to be missing (`Some(None)`), else the result of opening it.
    fn open_cdb(&self, name: &str) -> std::result::Result<Option<cdb::Reader>, CdbError> {
        if let Some(None) = self.cache.as_ref().and_then(|c| c.get(&self.dir, name)) {
            return Ok(None);
        }
        let opened = cdb::Reader::open(&self.path(name));
        if let Ok(None) = opened {
            self.missing(name);
        }
        opened
    }

    /// A single-value file: its first line without trailing blanks; empty counts as absent.
    pub fn line(&self, name: &str) -> Result<Option<String>> {
        Ok(self.raw(name)?.and_then(|data| first_line(&data)))
    }

    /// A single-value file, or `default`.
    pub fn line_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.line(name)?.unwrap_or_else(|| default.to_string()))
    }

    /// `me`, this host's name.
    pub fn me(&self) -> Result<Option<String>> {
        self.line("me")
    }

    /// A single-value file that defaults to `me`, and to `literal` when `me` is absent too
    /// (`bouncehost`, `envnoathost`, `defaultdomain`, ...).
    pub fn line_or_me(&self, name: &str, literal: &str) -> Result<String> {
        match self.line(name)? {
            Some(v) => Ok(v),
            None => Ok(self.me()?.unwrap_or_else(|| literal.to_string())),
        }
    }

    /// An integer file: leading decimal digits; no digits or absent gives `None`.
    pub fn int(&self, name: &str) -> Result<Option<u64>> {
        match self.raw(name)? {
            None => Ok(None),
            Some(data) => {
                parse_int(&data).map_err(|()| Self::err(name, ControlErrorKind::BadNumber))
            }
        }
    }

    /// An integer file, or `default`.
    pub fn int_or(&self, name: &str, default: u64) -> Result<u64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A list file.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>> {
        Ok(self.raw(name)?.map(|data| parse_list(&data)))
    }

    /// A `key:value` map file, in file order.
    pub fn map(&self, name: &str) -> Result<Option<Vec<(String, String)>>> {
        Ok(self.list(name)?.map(|lines| {
            lines
                .into_iter()
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect()
        }))
    }

    /// A set of domains or addresses with a cdb variant: `NAME.cdb` when it exists (it then
    /// replaces the text file entirely), else the list file `NAME`; `None` when neither exists.
    pub fn set(&self, name: &str) -> Result<Option<DomainSet>> {
        let cdb_name = format!("{name}.cdb");
        match self.open_cdb(&cdb_name) {
            Ok(Some(r)) => return Ok(Some(DomainSet::Cdb(r, cdb_name))),
            Ok(None) => {}
            Err(CdbError::Corrupt) => return Err(Self::err(&cdb_name, ControlErrorKind::Corrupt)),
            Err(CdbError::Io(e)) => return Err(Self::err(&cdb_name, ControlErrorKind::Io(e))),
        }
        Ok(self.list(name)?.map(|lines| {
            DomainSet::Text(lines.into_iter().map(|l| l.to_ascii_lowercase()).collect())
        }))
    }

    /// A cdb-only file such as `morercpthosts.cdb`.
    pub fn cdb(&self, name: &str) -> Result<Option<DomainSet>> {
        match self.open_cdb(name) {
            Ok(r) => Ok(r.map(|r| DomainSet::Cdb(r, name.to_string()))),
            Err(CdbError::Corrupt) => Err(Self::err(name, ControlErrorKind::Corrupt)),
            Err(CdbError::Io(e)) => Err(Self::err(name, ControlErrorKind::Io(e))),
        }
    }

    /// `locals` (`locals.cdb` when present), defaulting to `me`.
    pub fn locals(&self) -> Result<DomainSet> {
        match self.set("locals")? {
            Some(set) => Ok(set),
            None => Ok(DomainSet::Text(
                self.me()?.map(|m| m.to_ascii_lowercase()).into_iter().collect(),
            )),
        }
    }
}

/// A set of lowercase keys from a list file or a cdb.
pub enum DomainSet {
    Text(HashSet<String>),
    /// The reader and the file name (for error texts).
    Cdb(cdb::Reader, String),
}

impl DomainSet {
    /// Case-insensitive membership.
    pub fn contains(&self, key: &str) -> Result<bool> {
        let key = key.to_ascii_lowercase();
        match self {
            DomainSet::Text(set) => Ok(set.contains(&key)),
            DomainSet::Cdb(r, name) => r.contains(key.as_bytes()).map_err(|e| match e {
                CdbError::Corrupt => Control::err(name, ControlErrorKind::Corrupt),
                CdbError::Io(e) => Control::err(name, ControlErrorKind::Io(e)),
            }),
        }
    }
}

fn trim_end(line: &[u8]) -> &[u8] {
    let end =
        line.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).map_or(0, |i| i + 1);
    &line[..end]
}

fn first_line(data: &[u8]) -> Option<String> {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = trim_end(line);
    (!line.is_empty()).then(|| String::from_utf8_lossy(line).into_owned())
}

fn parse_list(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == b'\n')
        .map(trim_end)
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// Leading decimal digits (after leading blanks). `Ok(None)` when there are none; `Err` when
/// the value does not fit in 31 bits (upstream: larger than INT_MAX is an error).
fn parse_int(data: &[u8]) -> std::result::Result<Option<u64>, ()> {
    let start = data.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(data.len());
    let digits: &[u8] = {
        let rest = &data[start..];
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        &rest[..n]
    };
    if digits.is_empty() {
        return Ok(None);
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or(())?;
        if value > i32::MAX as u64 {
            return Err(());
        }
    }
    Ok(Some(value))
}

/// How a control file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    Int,
    List,
    Map,
    Raw,
    Cdb,
}

/// A control file the project reads: its name, format, default (as shown to people), whether
/// its value is a secret (never displayed), and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub secret: bool,
    pub meaning: &'static str,
}

const fn k(name: &'static str, kind: Kind, default: &'static str, meaning: &'static str) -> Known {
    Known { name, kind, default, secret: false, meaning }
}

const fn secret(name: &'static str, meaning: &'static str) -> Known {
    Known { name, kind: Kind::Line, default: "empty", secret: true, meaning }
}

/// Every control file qmail-ldap-rs reads, sorted by name. Feeds qmail-showctl and
/// doc/qmail-control.5.
pub const KNOWN: &[Known] = &[
    k("aliasdomains", Kind::Map, "none", "alias:real domain substitution for LDAP lookups"),
    k("automaildirmake", Kind::Int, "0", "1: qmail-local creates a missing Maildir (0700)"),
    k("badmailfrom", Kind::List, "none", "envelope senders (user@dom or @dom) refused at MAIL"),
    k(
        "badmailfrom-unknown",
        Kind::List,
        "none",
        "senders refused when the client has no reverse DNS",
    ),
    k("badrcptto", Kind::List, "none", "recipients (user@dom or @dom) refused at RCPT"),
    k(
        "bigbrother",
        Kind::Map,
        "none",
        "addr:watcher pairs for qmail-queue to copy mail to (not implemented yet: ignored)",
    ),
    k("bouncefrom", Kind::Line, "MAILER-DAEMON", "local part of the bounce sender"),
    k("bouncehost", Kind::Line, "me", "host part of the bounce sender"),
    k(
        "bouncemaxbytes",
        Kind::Int,
        "0 (whole message)",
        "most bytes of the original message in a bounce",
    ),
    k("concurrencylocal", Kind::Int, "100", "simultaneous local deliveries"),
    k("concurrencyremote", Kind::Int, "20", "simultaneous remote deliveries"),
    k("custombouncetext", Kind::Raw, "none", "text inserted into every bounce"),
    k("databytes", Kind::Int, "0 (unlimited)", "largest message qmail-smtpd accepts"),
    k(
        "defaultdelivery",
        Kind::Raw,
        "./Maildir/",
        "default delivery instructions (qmail-start argument)",
    ),
    k("defaultdomain", Kind::Line, "me", "domain qmail-inject appends to host names without a dot"),
    k("defaulthost", Kind::Line, "me", "host qmail-inject appends to addresses without @"),
    k("defaultquotacount", Kind::Int, "0 (unlimited)", "message quota for entries without one"),
    k("defaultquotasize", Kind::Int, "0 (unlimited)", "byte quota for entries without one"),
    k(
        "dirmaker",
        Kind::Line,
        "none (off)",
        "program qmail-local and the auth programs run to create a missing home directory",
    ),
    k("doublebouncehost", Kind::Line, "me", "host part of the double-bounce recipient"),
    k("doublebounceto", Kind::Line, "postmaster", "local part of the double-bounce recipient"),
    k("envnoathost", Kind::Line, "me", "domain added to envelope addresses without @"),
    k("goodmailaddr", Kind::List, "none", "addresses always accepted by RCPTCHECK/SENDERCHECK"),
    k("goodmailfrom", Kind::List, "none", "senders exempt from badmailfrom and sender checks"),
    k("helohost", Kind::Line, "me", "name qmail-remote gives in HELO/EHLO"),
    k("idhost", Kind::Line, "me", "host part of Message-IDs made by qmail-inject"),
    k(
        "imapddebugcommand",
        Kind::Line,
        "none (off)",
        "command imapd -D runs: %s %d %s = program, pid, service",
    ),
    k("ldapbasedn", Kind::Line, "empty", "LDAP search base"),
    k(
        "ldapcluster",
        Kind::Int,
        "0 (mailHost ignored)",
        "1: defer mail for entries whose mailHost is another host (no forwarding yet)",
    ),
    k("ldapclusterhosts", Kind::List, "none", "more names that count as this host (ldapcluster)"),
    k("ldapdefaultdotmode", Kind::Line, "ldaponly", "qmailDotMode for entries without one"),
    k("ldapgid", Kind::Int, "none", "gid for entries without qmailGID"),
    k(
        "ldapgrouplogin",
        Kind::Line,
        "ldaplogin",
        "bind DN for qmail-group (not implemented yet: ignored)",
    ),
    secret("ldapgrouppassword", "bind password for qmail-group (not implemented yet: ignored)"),
    k(
        "ldaplocaldelivery",
        Kind::Int,
        "1",
        "fall back to users/cdb and passwd (logins: users/passwd) when LDAP has nothing",
    ),
    k("ldaplogin", Kind::Line, "empty (anonymous)", "LDAP bind DN"),
    k("ldapmessagestore", Kind::Line, "empty", "prefix for a relative mailMessageStore"),
    k("ldapobjectclass", Kind::Line, "empty", "objectClass every mail entry must have"),
    secret("ldappassword", "LDAP bind password"),
    k(
        "ldaprebind",
        Kind::Int,
        "0",
        "the auth programs and qmail-ldaplookup -p check passwords by binding as the user",
    ),
    k(
        "ldaprestrictprog",
        Kind::Int,
        "1",
        "qmail-local refuses shell metacharacters in deliveryProgramPath (the lookup always does)",
    ),
    k(
        "ldapserver",
        Kind::List,
        "none (required for LDAP)",
        "LDAP servers, host or host:port, tried in order",
    ),
    k("ldaptimeout", Kind::Int, "30", "LDAP search time limit in seconds"),
    k("ldapuid", Kind::Int, "none", "uid for entries without qmailUID"),
    k("localiphost", Kind::Line, "me", "name that replaces [ip] of a local address"),
    k("locals", Kind::List, "me", "domains delivered locally (locals.cdb replaces it)"),
    k("me", Kind::Line, "none (required)", "this host's fully-qualified name"),
    k("morercpthosts", Kind::List, "none", "source of morercpthosts.cdb"),
    k("morercpthosts.cdb", Kind::Cdb, "none", "more domains qmail-smtpd accepts mail for"),
    k("outgoingip", Kind::Line, "0.0.0.0", "source address of outgoing SMTP connections"),
    k("pbscachesize", Kind::Int, "1048576", "bytes of POP-before-SMTP entries pbsdbd keeps"),
    k(
        "pbsenv",
        Kind::List,
        "none",
        "variables pbsadd sends and pbscheck exports: NAME, NAME=NEW or NAME=NEW=PREFIX",
    ),
    k("pbsip", Kind::Line, "0.0.0.0", "address pbsdbd binds"),
    k("pbsport", Kind::Int, "2821", "POP-before-SMTP UDP port (at most 65000)"),
    secret("pbssecret", "POP-before-SMTP shared secret (required by pbsdbd)"),
    k("pbsservers", Kind::List, "none", "pbsdbd addresses pbsadd and pbscheck talk to"),
    k("pbstimeout", Kind::Int, "600", "seconds a POP-before-SMTP entry stays valid"),
    k("percenthack", Kind::List, "none", "domains where user%host@domain is rewritten"),
    k("plusdomain", Kind::Line, "me", "domain qmail-inject appends to names ending in +"),
    k(
        "qmqpcip",
        Kind::Line,
        "0.0.0.0",
        "source address of QMQP connections (not implemented yet: ignored)",
    ),
    k(
        "qmqpservers",
        Kind::List,
        "none",
        "QMQP servers for qmail-qmqpc (not implemented yet: ignored)",
    ),
    k("queuejournal", Kind::Int, "8192", "KiB of the queue service's journal (0: none)"),
    k("queuelifetime", Kind::Int, "604800", "seconds a message may stay in the queue"),
    k("queuepool", Kind::Int, "512", "queue files of each kind kept ready for reuse"),
    k("quotawarning", Kind::Raw, "none (no warnings)", "body of the quota warning"),
    k("rbllist", Kind::List, "none", "RBL zones: basedomain action matchon message"),
    k(
        "rcptcheckquota",
        Kind::Line,
        "perm",
        "qmail-verify's answer for a full mailbox: perm (552) or temp (452)",
    ),
    k("rcpthosts", Kind::List, "none (locals only)", "domains qmail-smtpd accepts mail for"),
    k("relaymailfrom", Kind::List, "none", "envelope senders (user@dom or @dom) allowed to relay"),
    Known {
        name: "remotecert",
        kind: Kind::Raw,
        default: "none (no client certificate)",
        secret: true,
        meaning: "PEM certificate chain and private key qmail-remote offers as TLS client",
    },
    k(
        "remoteport",
        Kind::Int,
        "25",
        "port qmail-remote connects to (not upstream; for tests and relays)",
    ),
    k(
        "resolvconf",
        Kind::Line,
        "/etc/resolv.conf",
        "resolver configuration file for qmail-remote (nameserver may carry :port)",
    ),
    k("signatures", Kind::List, "none", "attachment signatures refused with REJECTEXEC"),
    k(
        "smmapddebugcommand",
        Kind::Line,
        "none (off)",
        "command smmapd -D runs: %s %d %s = program, pid, service",
    ),
    k("smmapdquotaperm", Kind::Int, "0", "smmapd answers over quota PERM instead of TEMP"),
    Known {
        name: "smtpcert",
        kind: Kind::Raw,
        default: "none (STARTTLS not offered)",
        secret: true,
        meaning: "PEM certificate chain and private key for STARTTLS, SMTPS, STLS and POP3S",
    },
    k(
        "smtpclustercookie",
        Kind::Line,
        "none",
        "qmail-remote refuses a server whose greeting ends in it (first 32 bytes)",
    ),
    k("smtpgreeting", Kind::Line, "empty", "text after me and ESMTP in the SMTP greeting"),
    k("smtproutes", Kind::Map, "none", "domain:relay[:port] routes for qmail-remote"),
    k("tcp.smtp", Kind::List, "none", "qmail-tcpsrv rules for qmail-smtpd (tcprules syntax)"),
    k(
        "tcp.smtp.cdb",
        Kind::Cdb,
        "none (every client served, none may relay)",
        "compiled tcp.smtp (qmailctl cdb), used by qmailctl run",
    ),
    k("timeoutconnect", Kind::Int, "60", "seconds qmail-remote waits for a connection"),
    k("timeoutimap", Kind::Int, "1800", "seconds imapd waits for the client (autologout)"),
    k("timeoutpop3", Kind::Int, "1200", "seconds qmail-popup and qmail-pop3d wait for the client"),
    k("timeoutremote", Kind::Int, "1200", "seconds qmail-remote waits for the server"),
    k("timeoutsmmapd", Kind::Int, "360", "seconds smmapd waits for the next request"),
    k("timeoutsmtpd", Kind::Int, "1200", "seconds qmail-smtpd waits for the client"),
    k(
        "tlsciphers",
        Kind::Raw,
        "compat (rustls' defaults)",
        "rustls cipher suites qmail-smtpd allows, by preference",
    ),
    k(
        "tlsdestinations",
        Kind::List,
        "none (opportunistic TLS everywhere)",
        "destination:policy lines: verify (empty or a CA file) or - (no TLS) for qmail-remote",
    ),
    k(
        "tlsdheparams",
        Kind::Line,
        "none",
        "DHE parameters (never read: rustls has no finite-field DHE)",
    ),
    k(
        "tlsremoteciphers",
        Kind::Raw,
        "compat (rustls' defaults)",
        "rustls cipher suites qmail-remote allows, by preference",
    ),
    k(
        "userdeny",
        Kind::Raw,
        "none",
        "address TAB version TAB services [TAB message]: smmapd's deny list",
    ),
    k("userdeny.cdb", Kind::Cdb, "none", "compiled userdeny (qmailctl cdb); replaces it"),
    k(
        "verifysocket",
        Kind::Line,
        "none (co-process)",
        "Unix socket of the qmail-verify service qmail-smtpd asks",
    ),
    k("virtualdomains", Kind::Map, "none", "domain:prefix virtual domain routing"),
];

/// Files reported by qmail-showctl as "No longer used".
pub const OBSOLETE: &[&str] = &[
    "ldapdefaultquota",
    "ldappasswdappend",
    "ldapusername",
    "maxrcptcount",
    "rblonlyheader",
    "tarpitcount",
    "tarpitdelay",
];

/// The entry of [`KNOWN`] for `name`.
pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.binary_search_by(|k| k.name.cmp(name)).ok().map(|i| &KNOWN[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn home(name: &str, files: &[(&str, &[u8])]) -> (Tmp, Control) {
        let home =
            std::env::temp_dir().join(format!("qmail-control-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(home.join("control")).unwrap();
        for (n, data) in files {
            fs::write(home.join("control").join(n), data).unwrap();
        }
        let c = Control::new(&home);
        (Tmp(home), c)
    }

    /// Through a cache, a file is read once and kept while neither it nor the directory
    /// changes; every change a process per connection would see is seen at the next check:
    /// a file written over, made, removed, renamed over, or a dangling link's target made.
    #[test]
    fn a_cache_keeps_files_until_they_or_the_directory_change() {
        let (t, _) = home("cache", &[("me", b"one.example\n"), ("rcpthosts", b"a.example\n")]);
        let dir = t.0.join("control");
        let cache = Cache::default();
        let read = |name: &str| Control::cached(&t.0, &cache).line(name).unwrap();
        assert_eq!(read("me").as_deref(), Some("one.example"));
        assert_eq!(read("databytes"), None);
        assert!(matches!(cache.get(&dir, "me"), Some(Some(_))), "kept");
        assert!(matches!(cache.get(&dir, "databytes"), Some(None)), "kept as missing");
        // written over in place: read again
        fs::write(dir.join("me"), b"two.example.org\n").unwrap();
        assert_eq!(read("me").as_deref(), Some("two.example.org"));
        // made: the directory changed
        fs::write(dir.join("databytes"), b"1000\n").unwrap();
        assert_eq!(Control::cached(&t.0, &cache).int("databytes").unwrap(), Some(1000));
        // renamed over, same size
        fs::write(dir.join("new"), b"b.example\n").unwrap();
        fs::rename(dir.join("new"), dir.join("rcpthosts")).unwrap();
        assert_eq!(read("rcpthosts").as_deref(), Some("b.example"));
        // removed
        fs::remove_file(dir.join("databytes")).unwrap();
        assert_eq!(read("databytes"), None);
        // a dangling link is never kept as missing: its target may come without the
        // directory changing
        std::os::unix::fs::symlink(t.0.join("elsewhere"), dir.join("smtpgreeting")).unwrap();
        assert_eq!(read("smtpgreeting"), None);
        assert!(cache.get(&dir, "smtpgreeting").is_none(), "not kept");
        fs::write(t.0.join("elsewhere"), b"hello\n").unwrap();
        assert_eq!(read("smtpgreeting").as_deref(), Some("hello"));
        // a cdb known to be missing, then made
        let c = Control::cached(&t.0, &cache);
        assert!(!c.exists("rcpthosts.cdb") && c.cdb("rcpthosts.cdb").unwrap().is_none());
        assert!(matches!(cache.get(&dir, "rcpthosts.cdb"), Some(None)));
        let mut w = crate::cdb::Writer::create(&dir.join("rcpthosts.tmp"), 0o644).unwrap();
        w.add(b"c.example", b"").unwrap();
        w.finish(&dir.join("rcpthosts.cdb")).unwrap();
        let c = Control::cached(&t.0, &cache);
        assert!(c.exists("rcpthosts.cdb"));
        assert!(c.set("rcpthosts").unwrap().unwrap().contains("c.example").unwrap());
        // another installation's control directory: nothing kept is used
        let (other, _) = home("cache-other", &[("me", b"other.example\n")]);
        assert_eq!(
            Control::cached(&other.0, &cache).me().unwrap().as_deref(),
            Some("other.example")
        );
        assert_eq!(read("me").as_deref(), Some("two.example.org"));
    }

    /// A file bigger than a cache keeps is read each time, and the cache stays bounded.
    #[test]
    fn a_cache_keeps_no_big_file() {
        let big = vec![b'x'; CACHE_FILE_MAX + 1];
        let (t, _) = home("cache-big", &[("badmailfrom", &big), ("me", b"m.example\n")]);
        let cache = Cache::default();
        let c = Control::cached(&t.0, &cache);
        assert_eq!(c.raw("badmailfrom").unwrap().map(|d| d.len()), Some(big.len()));
        assert!(cache.get(&t.0.join("control"), "badmailfrom").is_none());
        assert_eq!(c.me().unwrap().as_deref(), Some("m.example"));
        assert!(cache.0.lock().unwrap().bytes <= CACHE_MAX);
    }

    #[test]
    fn single_lines() {
        let rows: &[(&[u8], Option<&str>)] = &[
            (b"host.example\n", Some("host.example")),
            (b"host.example", Some("host.example")),
            (b"host.example \t\r\n", Some("host.example")),
            (b"host.example\r\nsecond\n", Some("host.example")),
            (b" lead", Some(" lead")),
            (b"", None),
            (b"\n", None),
            (b"  \r\n", None),
            (b"\xff\xfe\n", Some("\u{fffd}\u{fffd}")),
        ];
        for (i, (data, want)) in rows.iter().enumerate() {
            let (_t, c) = home(&format!("line{i}"), &[("x", data)]);
            assert_eq!(c.line("x").unwrap().as_deref(), *want, "{:?}", data);
        }
    }

    #[test]
    fn integers() {
        let rows: &[(&[u8], Option<u64>)] = &[
            (b"10\n", Some(10)),
            (b"10abc", Some(10)),
            (b"  42 \r\n", Some(42)),
            (b"abc", None),
            (b"", None),
            (b"-5", None),
            (b"2147483647", Some(2_147_483_647)),
        ];
        for (i, (data, want)) in rows.iter().enumerate() {
            let (_t, c) = home(&format!("int{i}"), &[("n", data)]);
            assert_eq!(c.int("n").unwrap(), *want, "{:?}", data);
        }
        for (i, data) in [&b"2147483648"[..], b"99999999999999999999999999"].iter().enumerate() {
            let (_t, c) = home(&format!("bigint{i}"), &[("n", data)]);
            assert!(matches!(
                c.int("n"),
                Err(ControlError { kind: ControlErrorKind::BadNumber, .. })
            ));
        }
        let (_t, c) = home("intdef", &[]);
        assert_eq!(c.int_or("n", 7).unwrap(), 7);
    }

    #[test]
    fn lists_and_maps() {
        let (_t, c) = home(
            "list",
            &[
                ("l", b"a.example\r\n\n# comment\n  \nb.example  \n #not a comment\nlast"),
                ("m", b"a.example:alice\nno colon here\n.b.example:relay:25\r\n"),
            ],
        );
        assert_eq!(
            c.list("l").unwrap().unwrap(),
            vec!["a.example", "b.example", " #not a comment", "last"]
        );
        assert_eq!(
            c.map("m").unwrap().unwrap(),
            vec![
                ("a.example".to_string(), "alice".to_string()),
                (".b.example".to_string(), "relay:25".to_string())
            ]
        );
        assert!(c.list("absent").unwrap().is_none());
    }

    #[test]
    fn me_fallbacks() {
        let (_t, c) = home("me", &[("me", b"mx.example\n")]);
        assert_eq!(c.line_or_me("bouncehost", "bouncehost").unwrap(), "mx.example");
        assert!(c.locals().unwrap().contains("MX.example").unwrap());
        let (_t, c) = home("nome", &[]);
        assert_eq!(c.line_or_me("bouncehost", "bouncehost").unwrap(), "bouncehost");
        assert!(!c.locals().unwrap().contains("x").unwrap());
    }

    #[test]
    fn cdb_variant_replaces_text() {
        let (t, c) = home("cdbvar", &[("locals", b"text.example\n")]);
        let mut w = cdb::Writer::create(&t.0.join("control/locals.tmp"), 0o644).unwrap();
        w.add(b"cdb.example", b"").unwrap();
        w.finish(&t.0.join("control/locals.cdb")).unwrap();
        let set = c.locals().unwrap();
        assert!(set.contains("CDB.example").unwrap());
        assert!(!set.contains("text.example").unwrap());
    }

    #[test]
    fn broken_files_are_temporary_errors() {
        let (t, c) = home("broken", &[("locals.cdb", b""), ("rcpthosts.cdb", &[0u8; 100])]);
        assert!(matches!(c.locals(), Err(ControlError { kind: ControlErrorKind::Corrupt, .. })));
        assert!(c.set("rcpthosts").is_err());
        // a directory where a file should be: unreadable, not absent
        fs::create_dir(t.0.join("control/me")).unwrap();
        assert!(matches!(c.me(), Err(ControlError { kind: ControlErrorKind::Io(_), .. })));
    }

    #[test]
    fn known_is_sorted_and_complete() {
        for w in KNOWN.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for name in ["me", "locals", "rcpthosts", "ldappassword", "pbssecret", "queuelifetime"] {
            assert!(known(name).is_some(), "{name}");
        }
        assert!(known("ldappassword").unwrap().secret);
        assert!(known("pbssecret").unwrap().secret);
        assert!(known("nonesuch").is_none());
    }
}
