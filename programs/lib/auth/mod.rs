//! auth: the login core of auth_smtp, auth_pop and auth_imap (doc/auth_smtp.8, doc/auth_pop.8,
//! doc/auth_imap.8; doc/INTERNALS.md, "Logins").
//!
//! [`authenticate`] decides one login: who is it, is the password right, may the account log
//! in to this [`Service`], and (for POP3 and IMAP) which mailbox it opens. The backends, in
//! order:
//!
//! 1. the directory, when `control/ldapserver` is set: one entry with `(uid=<login>)` inside
//!    the objectClass guard under `ldapbasedn` ([`crate::ldap::uid_filter`], RFC 4515
//!    escaping); none is "no such user", more than one a temporary failure. The password is
//!    checked by [`crate::passwd::check`] against `userPassword`, or by a bind as the entry
//!    with `ldaprebind` 1, for a scheme checked only by the server, and when the entry shows
//!    no `userPassword`. A wrong password is final. Then `accountStatus`: `noaccess`,
//!    `disabled`, `deleted` and unknown words refuse every login, `nopop` POP3 and IMAP
//!    (doc/DECISIONS.md, 12 and 13). The entry is decoded by delivery's decoder
//!    ([`crate::ldap::decode`]) and its mailbox resolved by delivery's rules
//!    ([`crate::ldap::Account::store`]): uid and gid in 100..65535, a home or a store;
//! 2. only when there is no directory, or it has no such user and `ldaplocaldelivery` is 1:
//!    `users/passwd` ([`file`](mod@file), doc/DECISIONS.md, 28), whose users have the mailbox delivery
//!    finds for them ([`crate::recipient::Lookup`]: `users/cdb`, then passwd);
//! 3. then, for POP3 and IMAP only, the system's passwd and shadow ([`system`]).
//!
//! An empty password fails before any lookup (doc/DECISIONS.md, 8). An outage, a timeout, an
//! unreadable file is a temporary failure, never "wrong password" (doc/DECISIONS.md, 2).
//!
//! The wire formats of the programs are beside it: [`smtp`] (qmail-smtpd and auth_smtp),
//! [`checkpassword`] (qmail-popup and auth_pop: fd 3 and the exit codes), [`courier`]
//! (auth_imap's fd 3).

pub mod checkpassword;
pub mod courier;
pub mod file;
pub mod smtp;
pub mod split;
pub mod start;
pub mod system;

use crate::control::Control;
use crate::ldap::{self, AccountStatus, Config, Directory, Store};
use crate::recipient::{Lookup, Source};
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The longest login taken; a longer one is no such user.
pub const LOGIN_MAX: usize = 256;

/// How long a refused POP3 or IMAP login waits before its answer, so that guessing is slow:
/// 2 seconds. The tests' build can shorten it with the variable `test_var` (milliseconds).
pub fn refused_login_delay(test_var: &str) -> std::time::Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var(test_var).ok().and_then(|v| v.parse().ok()) {
        return std::time::Duration::from_millis(ms);
    }
    let _ = test_var;
    std::time::Duration::from_secs(2)
}

/// Who asks: SMTP AUTH checks the account and the password only ("fast"); POP3 and IMAP also
/// resolve the mailbox, and may fall back to the system's passwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Pop,
    Imap,
}

impl Service {
    /// POP3 and IMAP: the mailbox is resolved.
    pub fn full(self) -> bool {
        self != Service::Smtp
    }

    /// Whether `status` lets the account log in to this service.
    fn allows(self, status: &AccountStatus) -> bool {
        match self {
            Service::Smtp => status.smtp_auth(),
            Service::Pop | Service::Imap => status.mailbox_login(),
        }
    }
}

/// A login name and its password. The password is wiped when dropped.
pub struct Credentials {
    pub login: Vec<u8>,
    pub password: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, password hidden)", String::from_utf8_lossy(&self.login))
    }
}

/// Which backend knew the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Directory,
    /// `users/passwd`.
    File,
    /// The system's passwd and shadow.
    System,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The account's name: the entry's `uid` (checked as delivery checks it) or, without one,
    /// the login as typed; the `users/passwd` or passwd name.
    pub name: String,
    pub backend: Backend,
    /// The mailbox, for POP3 and IMAP ([`Service::full`]).
    pub mailbox: Option<Mailbox>,
}

/// Where a POP3 or IMAP login's mail is and what it runs as (doc/auth_pop.8, ENVIRONMENT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Never 0; for a directory entry in 100..65535.
    pub uid: u32,
    pub gid: u32,
    /// `HOME`, absolute.
    pub home: PathBuf,
    pub maildir: Maildir,
    /// `MAILDIRQUOTA` (`NNNS,NNNC`), when limited.
    pub quota: Option<String>,
    /// `DATASIZE` (`mailSizeMax`), when limited.
    pub size_max: Option<u64>,
}

/// `MAILDIR` for the sub-program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maildir {
    /// The entry's `mailMessageStore` (with a `homeDirectory` beside it).
    Store(String),
    /// The first maildir line of `$HOME/.qmail`, read as the user once in the home
    /// ([`system::dot_qmail_maildir`]).
    DotQmail,
    /// None: `MAILDIR` is removed from the environment.
    Unset,
}

/// Why a login failed, each kind with its answer (doc/auth_smtp.8 and doc/auth_pop.8, EXIT
/// CODES). The texts are for the log: they may name entries and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No backend knows the login (auth_imap hands it to the next module).
    NoSuchUser,
    /// The password is wrong or empty.
    BadPassword,
    /// `accountStatus` refuses this service.
    Disabled(String),
    /// The account's record cannot be used: a missing or bad attribute, uid 0 or an id out
    /// of range, a forward-only entry, a damaged stored password.
    BadRecord(String),
    /// The directory cannot be reached or did not answer in time.
    Unreachable(String),
    /// A control file or `users/passwd` is unreadable or holds something unusable.
    Config(String),
    /// Any other temporary failure: an unreadable file, several entries, a directory error.
    Temporary(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoSuchUser => f.write_str("no such user"),
            Failure::BadPassword => f.write_str("wrong password"),
            Failure::Disabled(why) => write!(f, "account disabled: {why}"),
            Failure::BadRecord(why) => write!(f, "user record incorrect: {why}"),
            Failure::Unreachable(why) => write!(f, "directory unreachable: {why}"),
            Failure::Config(why) => write!(f, "configuration error: {why}"),
            Failure::Temporary(why) => write!(f, "temporary failure: {why}"),
        }
    }
}

/// Decide one login for `service` under the installation root `home` (see the module's
/// header for the order), all in this process. auth_pop and auth_imap, which run as root,
/// use [`split::authenticate`] instead: the same steps, the first two in an unprivileged
/// child.
pub fn authenticate(home: &Path, service: Service, creds: &Credentials) -> Result<Login, Failure> {
    match unprivileged(home, service, creds)? {
        Lookup1::Found(login) => Ok(login),
        Lookup1::NotFound { system: true } => system_step(service, creds),
        Lookup1::NotFound { system: false } => Err(Failure::NoSuchUser),
    }
}

/// What the unprivileged steps (the directory, `users/passwd`) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup1 {
    Found(Login),
    /// Neither knows the login; `system`: the system's passwd may be asked (there is no
    /// directory, or `ldaplocaldelivery` is 1).
    NotFound {
        system: bool,
    },
}

/// Steps 1 and 2 of [`authenticate`]: what needs no privileges.
pub fn unprivileged(
    home: &Path,
    service: Service,
    creds: &Credentials,
) -> Result<Lookup1, Failure> {
    if creds.password.is_empty() {
        return Err(Failure::BadPassword);
    }
    if creds.login.is_empty() || creds.login.len() > LOGIN_MAX {
        return Err(Failure::NoSuchUser);
    }
    let ctl = Control::new(home);
    let cfg = Config::read(&ctl).map_err(ldap_failure)?;
    if let Some(cfg) = cfg {
        let local = cfg.local_delivery;
        if let Some(login) = directory(cfg, service, creds)? {
            return Ok(Lookup1::Found(login));
        }
        if !local {
            return Ok(Lookup1::NotFound { system: false });
        }
    }
    if let Some(login) = password_file(home, service, creds)? {
        return Ok(Lookup1::Found(login));
    }
    Ok(Lookup1::NotFound { system: true })
}

/// Step 3 of [`authenticate`]: the system's passwd and shadow, for POP3 and IMAP (reading
/// shadow needs root).
pub fn system_step(service: Service, creds: &Credentials) -> Result<Login, Failure> {
    if service.full() {
        if let Some(login) = system::login(creds)? {
            return Ok(login);
        }
    }
    Err(Failure::NoSuchUser)
}

/// What a POP3 or IMAP login reads besides delivery's attributes.
const PASSWORD_ATTR: &str = "userPassword";
/// What an SMTP login reads.
const SMTP_ATTRS: &[&str] = &["uid", "accountStatus", "objectClass", PASSWORD_ATTR];

/// Step 1: the directory. `Ok(None)`: no entry has the login.
fn directory(cfg: Config, service: Service, creds: &Credentials) -> Result<Option<Login>, Failure> {
    let filter = ldap::uid_filter(&creds.login, cfg.objectclass.as_deref());
    let mut attrs: Vec<&str> = if service.full() {
        ldap::ACCOUNT_ATTRS.iter().copied().chain([PASSWORD_ATTR]).collect()
    } else {
        SMTP_ATTRS.to_vec()
    };
    if cfg.rebind {
        attrs.retain(|&a| a != PASSWORD_ATTR);
    }
    let mut dir = Directory::new(cfg);
    let mut entries = dir.search(&filter, &attrs).map_err(ldap_failure)?;
    let entry = match entries.len() {
        0 => return Ok(None),
        1 => entries.remove(0),
        _ => {
            let dns: Vec<String> = entries.into_iter().map(|e| e.dn).collect();
            return Err(Failure::Temporary(format!(
                "{} entries have the login: {}",
                dns.len(),
                dns.join(" and ")
            )));
        }
    };
    if !directory_password(&dir, &entry, &creds.password)? {
        return Err(Failure::BadPassword);
    }
    let plain = ldap::Candidate { local: creds.login.clone(), dash: "", ext: Vec::new() };
    let acct = ldap::decode(&entry, &plain, dir.config()).map_err(ldap_failure)?;
    if !service.allows(&acct.status) {
        return Err(Failure::Disabled(format!("accountStatus {:?} of {}", acct.status, acct.dn)));
    }
    let name = match &acct.user {
        Some(user) => user.clone(),
        None => String::from_utf8_lossy(&creds.login).into_owned(),
    };
    let mailbox = if service.full() {
        Some(directory_mailbox(&acct, dir.config().message_store.as_deref())?)
    } else {
        None
    };
    Ok(Some(Login { name, backend: Backend::Directory, mailbox }))
}

/// The password check of a directory entry: locally when the scheme allows, else (a scheme
/// only the server knows, no `userPassword` to see, `ldaprebind`) by a bind as the entry.
fn directory_password(dir: &Directory, entry: &ldap::Entry, given: &[u8]) -> Result<bool, Failure> {
    let stored = stored_password(entry);
    if let Some(stored) = stored.as_deref() {
        match crate::passwd::check(stored, given) {
            Ok(ok) => return Ok(ok),
            Err(crate::passwd::Error::Malformed(why)) => {
                return Err(Failure::BadRecord(format!("userPassword of {}: {why}", entry.dn)))
            }
            Err(_) => {}
        }
    }
    // the server checks it; an LDAP password is a UTF-8 string here
    let Ok(given) = std::str::from_utf8(given) else { return Ok(false) };
    dir.bind_check(&entry.dn, given).map_err(ldap_failure)
}

/// The entry's first `userPassword` value, text or binary, wiped when dropped.
fn stored_password(entry: &ldap::Entry) -> Option<Zeroizing<Vec<u8>>> {
    let is_pw = |k: &String| k.eq_ignore_ascii_case(PASSWORD_ATTR);
    let text = entry.attrs.iter().find(|(k, _)| is_pw(k)).and_then(|(_, v)| v.first());
    let binary = entry.bin_attrs.iter().find(|(k, _)| is_pw(k)).and_then(|(_, v)| v.first());
    text.map(|t| t.as_bytes().to_vec()).or_else(|| binary.cloned()).map(Zeroizing::new)
}

/// The mailbox of a directory entry, by delivery's rules (doc/qmail-getpw.8).
fn directory_mailbox(
    acct: &ldap::Account,
    message_store: Option<&str>,
) -> Result<Mailbox, Failure> {
    let bad = |why: String| Failure::BadRecord(format!("{why} in {}", acct.dn));
    let (home, maildir) = match acct.store(message_store).map_err(ldap_failure)? {
        Store::ForwardOnly => return Err(bad("neither homeDirectory nor mailMessageStore".into())),
        Store::Mailbox { home, aliasempty } => (home, aliasempty),
    };
    if !home.starts_with('/') {
        return Err(bad(format!("mail store {home} not absolute")));
    }
    let uid = acct.uid.ok_or_else(|| bad("no qmailUID".into()))?;
    let gid = acct.gid.ok_or_else(|| bad("no qmailGID".into()))?;
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if !(ldap::ID_MIN..=ldap::ID_MAX).contains(&id) {
            return Err(bad(format!("{what} {id} outside {}..{}", ldap::ID_MIN, ldap::ID_MAX)));
        }
    }
    Ok(Mailbox {
        uid,
        gid,
        home: PathBuf::from(home),
        maildir: maildir.map_or(Maildir::Unset, Maildir::Store),
        quota: acct.maildir_quota(),
        size_max: acct.size_max,
    })
}

/// Step 2: `users/passwd`. `Ok(None)`: the file or the login is not there.
fn password_file(
    home: &Path,
    service: Service,
    creds: &Credentials,
) -> Result<Option<Login>, Failure> {
    let Some(stored) = file::find(home, &creds.login)? else {
        return Ok(None);
    };
    let ok = crate::passwd::check(&stored, &creds.password).map_err(|e| {
        Failure::BadRecord(format!("{} entry of {}: {e}", file::PASSWD, lossy(&creds.login)))
    })?;
    if !ok {
        return Err(Failure::BadPassword);
    }
    // file::find only finds names that pass the user-name check
    let name = lossy(&creds.login);
    let mailbox = if service.full() { Some(local_mailbox(home, &name)?) } else { None };
    Ok(Some(Login { name, backend: Backend::File, mailbox }))
}

/// The mailbox of a `users/passwd` login: the account delivery finds for the name as a local
/// part (`users/cdb`, then passwd), with `MAILDIR` from its `.qmail`.
fn local_mailbox(home: &Path, name: &str) -> Result<Mailbox, Failure> {
    let found = Lookup::new(home).find(name.as_bytes(), None, None).map_err(|f| {
        let why = format!("looking up {name} as delivery does: exit {}: {}", f.code, f.why);
        if crate::exit::getpw_code(f.code).is_err_and(|o| o.letter() == b'D') {
            Failure::BadRecord(why)
        } else {
            Failure::Temporary(why)
        }
    })?;
    if found.source == Source::Alias {
        return Err(Failure::BadRecord(format!("{name} has no mailbox (users/cdb, passwd)")));
    }
    let a = found.account;
    if a.uid == 0 {
        return Err(Failure::BadRecord(format!("{name} would run as uid 0")));
    }
    let home = PathBuf::from(OsString::from_vec(a.home));
    Ok(Mailbox {
        uid: a.uid,
        gid: a.gid,
        home,
        maildir: Maildir::DotQmail,
        quota: None,
        size_max: None,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory failure as a login failure: unreachable and timed out apart (POP3's exit 2),
/// bad values as a bad record, the rest temporary.
fn ldap_failure(e: ldap::Error) -> Failure {
    let why = e.to_string();
    match e {
        ldap::Error::Unreachable(_) | ldap::Error::Timeout => Failure::Unreachable(why),
        ldap::Error::Control(_) | ldap::Error::Config(_) => Failure::Config(why),
        ldap::Error::TooMany { .. }
        | ldap::Error::Missing { .. }
        | ldap::Error::BadValue { .. } => Failure::BadRecord(why),
        _ => Failure::Temporary(why),
    }
}
