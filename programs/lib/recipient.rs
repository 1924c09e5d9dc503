//! recipient: who a local recipient is delivered to — the lookup of qmail-getpw (doc/qmail-getpw.8,
//! doc/qmail-ldap.7), shared by delivery (qmail-getpw, run for
//! qmail-lspawn) and verification ([`crate::verify`], for qmail-verify and smmapd), so that
//! both always reach the same answer for the same address.
//!
//! With a `domain` and `control/ldapserver` present, `local@domain` is first looked up in the
//! directory ([`crate::ldap`]). A hit is checked in the order of doc/qmail-getpw.8: `accountStatus`
//! (`disabled` 159, `deleted` 160; `active`, `noaccess` and unknown words deliver,
//! doc/DECISIONS.md, 12), `mailSizeMax` (a larger message: 150), `mailHost` (with `ldapcluster` 1,
//! a host other than `me` or a line of `ldapclusterhosts`: 162, temporary), the mail store (neither
//! `homeDirectory` nor `mailMessageStore`: a forward-only account delivered as the alias user),
//! the user name (`uid`) and the ids (`qmailUID`/`qmailGID`, else `ldapuid`/`ldapgid`; 0 or
//! outside 100..65535: 113, temporary), then the environment for qmail-local. Nothing found:
//! with `ldaplocaldelivery` 1 (the default) the classic lookup below on `local` alone; with 0
//! the alias user straight away. A directory failure is never "nothing found": 152–155
//! (temporary) or 156–158 (permanent).
//!
//! The classic lookup, in this order:
//!
//! 1. `QMAILHOME/users/cdb` (made by qmail-newu from `users/assign`): an exact or wildcard
//!    assignment, its fields as they are;
//! 2. the passwd database: the longest candidate that is all of `local` or the part before a
//!    `-`, under 32 bytes, lowercased, naming an account with uid ≠ 0 whose home exists and
//!    belongs to it; dash `-` and ext = the rest (both empty when all of `local` matched);
//! 3. the alias user (`alias` in passwd; with no such account, the owner of `QMAILHOME/alias`,
//!    with that directory as home), dash `-`, ext = all of `local`.
//!
//! Failures carry qmail-getpw's exit code ([`crate::exit::getpw_code`] classifies it): 111
//! `users/cdb` unreadable or corrupt; 113 refused uid or gid; 115 temporary error looking at a
//! home directory; 116 no alias user; 118 passwd temporarily unavailable or an unreadable LDAP
//! control file; 150 message larger than `mailSizeMax`; 152–155 LDAP failure, bad credentials,
//! timeout, server unreachable; 156–158 ambiguous entry, missing or illegal attribute; 159
//! account disabled; 160 account deleted; 162 mailbox on another cluster host.

use crate::account::{Account, EnvName};
use crate::cdb;
use crate::control::Control;
use crate::exit::{self, LdapExit, Qlx};
use crate::ldap::{self, AccountStatus, Config, Directory, Store};
use crate::{auto, users};
use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// User names are shorter than this (upstream's GETPW_USERLEN).
const USERLEN: usize = 32;

/// Which step of the lookup found the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A directory entry (including a forward-only one, delivered as the alias user).
    Directory,
    /// `users/cdb`.
    Assigned,
    /// The passwd database.
    Passwd,
    /// The alias user: nothing else matched.
    Alias,
}

/// Who the recipient is delivered to: the record qmail-getpw sends qmail-lspawn, and which
/// step of the lookup found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub account: Account,
    pub source: Source,
}

/// A failure: qmail-getpw's exit code, a line for the log, and whether that line is also the
/// report text (directory answers: qmail-lspawn shows it instead of its fixed text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub why: String,
    pub report: bool,
}

impl Failure {
    pub fn log(code: impl Into<i32>, why: impl Into<String>) -> Self {
        Failure { code: code.into(), why: why.into(), report: false }
    }

    pub fn report(code: impl Into<i32>, why: impl Into<String>) -> Self {
        Failure { code: code.into(), why: why.into(), report: true }
    }

    /// The report line qmail-getpw prints (one line), or nothing when the fixed text of the
    /// exit table is to be used.
    pub fn line(&self) -> Vec<u8> {
        if !self.report {
            return Vec::new();
        }
        format!("{}\n", self.why.replace(['\n', '\0'], " ")).into_bytes()
    }
}

/// The lookup, with the directory connection kept between lookups of a long-lived process
/// while the configuration stays the same, and `users/cdb` kept open while it is unchanged.
pub struct Lookup {
    home: PathBuf,
    cache: Option<Directory>,
    users: cdb::Kept,
    /// The directory configuration and when it was read, kept for `ttl`.
    config: Option<(Option<Config>, Instant)>,
    ttl: Duration,
}

impl Lookup {
    /// A lookup that reads the directory's control files for every address (delivery: a
    /// changed control file counts from the next delivery on).
    pub fn new(home: &Path) -> Self {
        Lookup::with_ttl(home, Duration::ZERO)
    }

    /// A lookup that keeps the directory's control files for `ttl` (the verifiers: a busy
    /// service does not read twenty files per address; a change counts within `ttl`).
    pub fn with_ttl(home: &Path, ttl: Duration) -> Self {
        Lookup {
            home: home.to_path_buf(),
            cache: None,
            users: cdb::Kept::default(),
            config: None,
            ttl,
        }
    }

    /// The directory configuration: read again once older than the ttl.
    fn config(&mut self) -> Result<Option<Config>, Failure> {
        if let Some((cfg, at)) = &self.config {
            if !self.ttl.is_zero() && at.elapsed() < self.ttl {
                return Ok(cfg.clone());
            }
        }
        let cfg = Config::read(&Control::new(&self.home)).map_err(ldap_failure)?;
        if !self.ttl.is_zero() {
            self.config = Some((cfg.clone(), Instant::now()));
        }
        Ok(cfg)
    }

    /// Find who `local` (at `domain`, when given) is delivered to; `size` is the message size
    /// for `mailSizeMax`, when known.
    pub fn find(
        &mut self,
        local: &[u8],
        domain: Option<&[u8]>,
        size: Option<u64>,
    ) -> Result<Found, Failure> {
        let cfg = if domain.is_some() { self.config()? } else { None };
        lookup(&self.home, local, domain, size, cfg, &mut self.cache, &mut self.users)
    }
}

/// The directory first when configured and a domain is given, then the classic lookup.
fn lookup(
    home: &Path,
    local: &[u8],
    domain: Option<&[u8]>,
    size: Option<u64>,
    cfg: Option<Config>,
    cache: &mut Option<Directory>,
    users: &mut cdb::Kept,
) -> Result<Found, Failure> {
    if let Some(domain) = domain {
        let ctl = Control::new(home);
        if let Some(cfg) = cfg {
            let local_delivery = cfg.local_delivery;
            if let Some(found) = directory(home, &ctl, cfg, local, domain, size, cache)? {
                return Ok(found);
            }
            if !local_delivery {
                return alias(home, local);
            }
        }
    }
    find(home, local, users)
}

/// The classic lookup: users/cdb, passwd, the alias user.
fn find(home: &Path, local: &[u8], users: &mut cdb::Kept) -> Result<Found, Failure> {
    if let Some(found) = assigned(home, local, users)? {
        return Ok(found);
    }
    if let Some(found) = system_user(local)? {
        return Ok(found);
    }
    alias(home, local)
}

/// A directory failure as an exit code: refused ids are temporary (an administrator fixes the
/// entry; the message waits), everything else as [`ldap::Error::lspawn_code`] says.
fn ldap_failure(e: ldap::Error) -> Failure {
    match e {
        ldap::Error::BadValue { attr: "qmailUID" | "qmailGID", .. } => Failure::report(
            Qlx::Root,
            format!("Refusing to deliver: {e}").replace("#5.3.5", "#4.3.0"),
        ),
        e => Failure::report(e.lspawn_code(), e.to_string()),
    }
}

/// Look `local@domain` up in the directory and turn a hit into the answer (doc/qmail-getpw.8).
/// `Ok(None)`: no entry has the address.
fn directory(
    home: &Path,
    ctl: &Control,
    cfg: Config,
    local: &[u8],
    domain: &[u8],
    size: Option<u64>,
    cache: &mut Option<Directory>,
) -> Result<Option<Found>, Failure> {
    let message_store = cfg.message_store.clone();
    let address = [local, b"@", domain].concat();
    // a serving process keeps its connection while the configuration stays the same
    let same = cache.as_ref().is_some_and(|d| d.config() == &cfg);
    if !same {
        *cache = Some(Directory::new(cfg));
    }
    let Some(dir) = cache.as_mut() else { return Ok(None) };
    let Some(acct) = dir.lookup(&address).map_err(ldap_failure)? else {
        return Ok(None);
    };
    // 1. status (doc/DECISIONS.md, 12)
    match &acct.status {
        AccountStatus::Disabled => {
            return Err(Failure::report(
                LdapExit::Disabled,
                "Mailaddress is administratively disabled. (#5.2.1)",
            ))
        }
        AccountStatus::Deleted => {
            return Err(Failure::report(
                LdapExit::Deleted,
                "Sorry, no mailbox here by that name. (#5.1.1)",
            ))
        }
        AccountStatus::Unknown(word) => {
            eprintln!("qmail-getpw: unknown accountStatus {word:?} in {}: delivering", acct.dn)
        }
        _ => {}
    }
    // 2. size
    if let (Some(max), Some(size)) = (acct.size_max, size) {
        if size > max {
            return Err(Failure::report(
                LdapExit::TooBig,
                "The message exceeds the maximum size the user accepts. (#5.2.3)",
            ));
        }
    }
    // 3. cluster: not forwarded yet, so another host's mailbox waits in the queue
    if let Some(host) = &acct.mail_host {
        if !ours(ctl, host)? {
            return Err(Failure::report(
                LdapExit::ClusterTemp,
                format!(
                    "The mailbox of {} is on cluster host {host}; forwarding to it is not \
                     available. (#4.4.4)",
                    String::from_utf8_lossy(&address)
                ),
            ));
        }
    }
    // 4. the store
    let store = acct.store(message_store.as_deref()).map_err(ldap_failure)?;
    let (home_dir, aliasempty) = match store {
        Store::ForwardOnly => {
            let mut found = alias(home, local)?;
            found.account.env = vec![
                (EnvName::Forwards, join(&acct.forwards).into_bytes()),
                (EnvName::DotMode, b"ldaponly".to_vec()),
                (EnvName::Mode, b"forwardonly".to_vec()),
            ];
            found.source = Source::Directory;
            return Ok(Some(found));
        }
        Store::Mailbox { home, aliasempty } => (home, aliasempty),
    };
    if !home_dir.starts_with('/') {
        return Err(Failure::report(
            LdapExit::BadValue,
            format!("The mail store {home_dir} of {} is not an absolute path. (#5.3.5)", acct.dn),
        ));
    }
    // 5. user and ids
    let missing = |attr| ldap_failure(ldap::Error::Missing { dn: acct.dn.clone(), attr });
    let user = acct.user.clone().ok_or_else(|| missing("uid"))?;
    let uid = acct.uid.ok_or_else(|| missing("qmailUID"))?;
    let gid = acct.gid.ok_or_else(|| missing("qmailGID"))?;
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if !(ldap::ID_MIN..=ldap::ID_MAX).contains(&id) {
            return Err(Failure::report(
                Qlx::Root,
                format!(
                    "Refusing to deliver to {}: {what} {id} is outside {}..{}. (#4.3.0)",
                    acct.dn,
                    ldap::ID_MIN,
                    ldap::ID_MAX
                ),
            ));
        }
    }
    // 6., dash and ext, come with the account
    let account = Account {
        dash: acct.dash.as_bytes().to_vec(),
        ext: acct.ext.clone(),
        env: environment(&acct),
        aliasempty: aliasempty.map(String::into_bytes),
        ..Account::plain(user.into_bytes(), uid, gid, home_dir.into_bytes())
    };
    Ok(Some(Found { account, source: Source::Directory }))
}

/// Steps 7 and 8: qmail-local's environment from a directory entry. [`ldap::Account`] is the
/// directory's view of the entry; this and the checks of [`directory`] turn it into the
/// record.
fn environment(acct: &ldap::Account) -> Vec<(EnvName, Vec<u8>)> {
    let mut env = Vec::new();
    if acct.group {
        env.push((EnvName::Group, acct.dn.clone().into_bytes()));
    }
    if let Some(q) = acct.maildir_quota() {
        env.push((EnvName::MaildirQuota, q.into_bytes()));
    }
    if !acct.forwards.is_empty() {
        env.push((EnvName::Forwards, join(&acct.forwards).into_bytes()));
    }
    if !acct.programs.is_empty() {
        env.push((EnvName::DeliveryProgram, join(&acct.programs).into_bytes()));
    }
    if let Some(mode) = acct.mode.env() {
        if let Some(text) = &acct.reply_text {
            env.push((EnvName::ReplyText, text.clone().into_bytes()));
        }
        env.push((EnvName::Mode, mode.into_bytes()));
    }
    for word in &acct.mode.unknown {
        eprintln!("qmail-getpw: undefined mail delivery mode {word:?} in {}", acct.dn);
    }
    env.push((EnvName::DotMode, acct.dot_mode.as_str().as_bytes().to_vec()));
    env
}

/// Whether `host` (a mailHost value) is this host: always with `ldapcluster` 0, else when it
/// is `me` or a line of `ldapclusterhosts` (case-insensitive, no DNS). Delivery and
/// qmail-ldaplookup's account both ask this.
pub fn ours(ctl: &Control, host: &str) -> Result<bool, Failure> {
    let read = |e: crate::control::ControlError| Failure::report(Qlx::Sys, format!("{e} (#4.3.0)"));
    if ctl.int_or("ldapcluster", 0).map_err(read)? == 0 {
        return Ok(true);
    }
    let me = ctl.me().map_err(read)?.unwrap_or_default();
    let others = ctl.list("ldapclusterhosts").map_err(read)?.unwrap_or_default();
    Ok(std::iter::once(me.as_str())
        .chain(others.iter().map(String::as_str))
        .any(|h| h.trim().eq_ignore_ascii_case(host.trim())))
}

/// Values joined by `:`, a literal `:` written `\:` (qmail-local's `split_escaped`).
fn join(values: &[String]) -> String {
    values.iter().map(|v| v.replace(':', "\\:")).collect::<Vec<_>>().join(":")
}

/// Step 1: `users/cdb`. Absent is no assignment; unreadable or corrupt is exit 111.
fn assigned(home: &Path, local: &[u8], kept: &mut cdb::Kept) -> Result<Option<Found>, Failure> {
    let cdb = |e: &dyn std::fmt::Display| Failure::log(exit::TEMP, format!("{e}"));
    let Some(reader) = kept
        .get(&home.join(users::CDB))
        .map_err(|e| cdb(&format!("unable to read {}: {e}", users::CDB)))?
    else {
        return Ok(None);
    };
    // users/assign is UTF-8 (qmail-newu refuses anything else), so a local part that is not
    // has no exact entry; it skips the wildcards too rather than match a mangled copy
    let Ok(local) = std::str::from_utf8(local) else { return Ok(None) };
    let Some(a) = users::lookup(reader, local).map_err(|e| cdb(&e))? else { return Ok(None) };
    Ok(Some(Found { account: a.into(), source: Source::Assigned }))
}

/// Step 2: the passwd database, longest candidate first.
fn system_user(local: &[u8]) -> Result<Option<Found>, Failure> {
    for (name, rest) in candidates(local) {
        let Ok(name) = std::str::from_utf8(&name) else { continue };
        let Some(pw) = passwd(name)? else { continue };
        if pw.uid.is_root() || !owns_home(pw.uid.as_raw(), &pw.dir)? {
            continue;
        }
        let (dash, ext) = match rest {
            Some(rest) => (b"-".to_vec(), rest.to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        let account = Account {
            dash,
            ext,
            ..Account::plain(
                pw.name.into_bytes(),
                pw.uid.as_raw(),
                pw.gid.as_raw(),
                pw.dir.into_os_string().into_vec(),
            )
        };
        return Ok(Some(Found { account, source: Source::Passwd }));
    }
    Ok(None)
}

/// The user name candidates of `local`, longest first: all of it (rest `None`), then each part
/// before a `-` (rest: what follows that `-`); non-empty, under [`USERLEN`] bytes,
/// lowercased.
fn candidates(local: &[u8]) -> Vec<(Vec<u8>, Option<&[u8]>)> {
    let whole = std::iter::once((local, None));
    let cuts = (0..local.len())
        .rev()
        .filter(|&i| local[i] == b'-')
        .map(|i| (&local[..i], Some(&local[i + 1..])));
    whole
        .chain(cuts)
        .filter(|(name, _)| !name.is_empty() && name.len() < USERLEN)
        .map(|(name, rest)| (name.to_ascii_lowercase(), rest))
        .collect()
}

/// The passwd entry of `name`; a lookup error is temporary (118).
fn passwd(name: &str) -> Result<Option<nix::unistd::User>, Failure> {
    nix::unistd::User::from_name(name)
        .map_err(|e| Failure::log(Qlx::Sys, format!("unable to look up {name} in passwd: {e}")))
}

/// Whether `dir` exists and belongs to `uid`. A missing or inaccessible directory is a no; a
/// temporary error (NFS, I/O) is exit 115.
fn owns_home(uid: u32, dir: &Path) -> Result<bool, Failure> {
    match std::fs::metadata(dir) {
        Ok(meta) => Ok(meta.uid() == uid),
        Err(e) if permanent(&e) => Ok(false),
        Err(e) => Err(Failure::log(Qlx::Nfs, format!("unable to stat {}: {e}", dir.display()))),
    }
}

/// The stat errors that mean "no such home" rather than "try again".
fn permanent(e: &io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOTDIR | libc::EACCES | libc::ELOOP | libc::ENAMETOOLONG)
        )
}

/// Step 3: the alias user, with dash `-` and ext = all of `local`.
fn alias(home: &Path, local: &[u8]) -> Result<Found, Failure> {
    // the installation's own alias/ and its owner (the alias user in a system installation,
    // the owner in a single-user one); the passwd `alias` entry only when there is none, so
    // an unrelated installation's users never decide where this one's mail goes
    let dir = home.join("alias");
    let (user, uid, gid, dir) = match std::fs::metadata(&dir) {
        Ok(meta) => {
            // name the owner as passwd does; an owner without an entry is still "alias"
            let user = nix::unistd::User::from_uid(meta.uid().into())
                .ok()
                .flatten()
                .map_or_else(|| auto::USER_ALIAS.to_string(), |pw| pw.name);
            (user, meta.uid(), meta.gid(), OsString::from(dir))
        }
        Err(e) if !permanent(&e) => {
            return Err(Failure::log(Qlx::Nfs, format!("unable to stat {}: {e}", dir.display())))
        }
        Err(e) => match passwd(auto::USER_ALIAS)? {
            Some(pw) => (pw.name, pw.uid.as_raw(), pw.gid.as_raw(), pw.dir.into_os_string()),
            None => {
                return Err(Failure::log(
                    Qlx::NoAlias,
                    format!("no alias user and unable to stat {}: {e}", dir.display()),
                ))
            }
        },
    };
    let account = Account {
        dash: b"-".to_vec(),
        ext: local.to_vec(),
        ..Account::plain(user.into_bytes(), uid, gid, dir.into_vec())
    };
    Ok(Found { account, source: Source::Alias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_longest_first() {
        type Row<'a> = (&'a [u8], Vec<(&'a [u8], Option<&'a [u8]>)>);
        let rows: Vec<Row> = vec![
            (b"joe", vec![(b"joe", None)]),
            (
                b"Joe-Foo-Bar",
                vec![
                    (b"joe-foo-bar", None),
                    (b"joe-foo", Some(b"Bar")),
                    (b"joe", Some(b"Foo-Bar")),
                ],
            ),
            (b"-x", vec![(b"-x", None)]),
            (b"x-", vec![(b"x-", None), (b"x", Some(b""))]),
            (b"", vec![]),
            (b"--", vec![(b"--", None), (b"-", Some(b""))]),
        ];
        for (local, want) in rows {
            let got = candidates(local);
            let got: Vec<(&[u8], Option<&[u8]>)> =
                got.iter().map(|(n, r)| (n.as_slice(), *r)).collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(local));
        }
    }

    #[test]
    fn long_names_are_skipped() {
        let long = [vec![b'a'; 40], b"-b".to_vec()].concat();
        assert_eq!(candidates(&long), vec![]);
        let fits = [vec![b'a'; 31], b"-b".to_vec()].concat();
        assert_eq!(candidates(&fits), vec![(vec![b'a'; 31], Some(&b"b"[..]))]);
        // hostile: many dashes stay linear in output size per candidate count
        let dashes = vec![b'-'; 100_000];
        assert_eq!(candidates(&dashes).len(), 31);
    }

    #[test]
    fn joining_escapes_colons() {
        assert_eq!(join(&["a@x".into(), "b:c@y".into()]), "a@x:b\\:c@y");
        assert_eq!(join(&[]), "");
    }
}
