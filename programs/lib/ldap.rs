//! ldap: the directory side of qmail-LDAP (doc/qmail-ldap.7), the only module that names
//! the `ldap3` crate.
//!
//! - [`Config`] is read from the `ldap*` control files (doc/qmail-ldap.7, CONTROL FILES); an absent
//!   `ldapserver` means LDAP is not configured (`Ok(None)`).
//! - [`Directory`] holds one connection, opened on first use and reused while it stays up:
//!   servers tried in `ldapserver` order, each with a connect-and-bind timeout
//!   ([`CONNECT_TIMEOUT`]); searches limited by `ldaptimeout` both on the server and here.
//! - [`Directory::lookup`] runs the candidate sequence of doc/qmail-ldap.7, LOOKUP ([`candidates`])
//!   with filters built by [`address_filter`] (values escaped per RFC 4515 by [`escape`]) and
//!   returns a typed [`Account`], `Ok(None)` when nothing matched, or an [`Error`] that says
//!   whether it is temporary ([`Error::is_temporary`]). An outage is never "nothing found": LDAP
//!   down, bind failure, timeout, referral and a missing base DN are all temporary
//!   (doc/DECISIONS.md, 2).
//! - Attribute values are decoded strictly (doc/qmail-ldap.7, ATTRIBUTES and FAILURES): a bad value
//!   is permanent, never guessed.
//!
//! ldap3's sync connection runs a tokio runtime inside: a process that has opened a
//! [`Directory`] may `exec`, but must not `fork` and carry on.

use crate::control::{Control, ControlError};
use crate::exit::{LdapExit, Qlx};
use ldap3::{LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Connect and bind timeout per server (upstream has none; doc/DECISIONS.md, 3).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Search time limit without `ldaptimeout`.
pub const DEFAULT_TIMEOUT: u64 = 30;
/// The local part of catch-all entries (`LDAP_CATCH_ALL`).
pub const CATCH_ALL: &str = "catchall";
/// How many leading dash components the catch-all probing keeps (`DASH_EXT_LEVELS`).
pub const DASH_EXT_LEVELS: usize = 4;
/// Accepted range of `qmailUID` and `qmailGID` (`UID_MIN..=UID_MAX`).
pub const ID_MIN: u32 = 100;
pub const ID_MAX: u32 = 65535;
/// The qmail user-extension delimiter.
pub const BREAK: char = '-';

/// What a delivery lookup asks for (doc/qmail-ldap.7, LOOKUP).
pub const ACCOUNT_ATTRS: &[&str] = &[
    "uid",
    "mail",
    "qmailUID",
    "qmailGID",
    "accountStatus",
    "mailHost",
    "mailMessageStore",
    "homeDirectory",
    "mailQuotaSize",
    "mailQuotaCount",
    "mailForwardingAddress",
    "deliveryProgramPath",
    "deliveryMode",
    "mailReplyText",
    "qmailDotMode",
    "mailSizeMax",
    "objectClass",
];

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a lookup did not give an answer. Each variant knows its class.
#[derive(Debug)]
pub enum Error {
    /// A control file could not be read (temporary).
    Control(ControlError),
    /// A control file holds a value that cannot be used (temporary: an admin fixes it).
    Config(String),
    /// No server could be reached (temporary, qmail-lspawn 155).
    Unreachable(String),
    /// The bind was refused (temporary, 153).
    Credentials(String),
    /// The search or the bind ran out of time, or the server was busy (temporary, 154).
    Timeout,
    /// The server sent a referral instead of an answer (temporary, 152).
    Referral(Vec<String>),
    /// The search base does not exist (`noSuchObject`; temporary, 152).
    NoSuchBase(String),
    /// Any other LDAP failure (temporary, 152).
    Failure(String),
    /// More than one entry carries the address (156). Permanent at delivery, temporary at
    /// SMTP time (doc/DECISIONS.md, 10): [`Error::is_temporary`] says permanent, qmail-verify maps
    /// it.
    Ambiguous { address: String, dns: Vec<String> },
    /// A single-valued attribute holds several values (permanent, 156).
    TooMany { dn: String, attr: &'static str },
    /// A mandatory attribute is missing (permanent, 157).
    Missing { dn: String, attr: &'static str },
    /// An attribute value is not acceptable (permanent, 158).
    BadValue { dn: String, attr: &'static str, why: &'static str },
}

impl Error {
    /// Temporary: the message stays queued (Z, 4xx, exit 111).
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            Error::Ambiguous { .. }
                | Error::TooMany { .. }
                | Error::Missing { .. }
                | Error::BadValue { .. }
        )
    }

    /// qmail-getpw's exit code for this failure, which qmail-lspawn reads (doc/qmail-getpw.8): a
    /// row of [`LdapExit`], or [`Qlx::Sys`] for an unusable control file.
    pub fn lspawn_code(&self) -> i32 {
        match self {
            Error::Control(_) | Error::Config(_) => Qlx::Sys.into(),
            Error::Credentials(_) => LdapExit::Credentials.into(),
            Error::Timeout => LdapExit::Timeout.into(),
            Error::Unreachable(_) => LdapExit::Unreachable.into(),
            Error::Referral(_) | Error::NoSuchBase(_) | Error::Failure(_) => {
                LdapExit::Failure.into()
            }
            Error::Ambiguous { .. } | Error::TooMany { .. } => LdapExit::Ambiguous.into(),
            Error::Missing { .. } => LdapExit::Missing.into(),
            Error::BadValue { .. } => LdapExit::BadValue.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Control(e) => write!(f, "{e} (#4.3.0)"),
            Error::Config(e) => write!(f, "{e} (#4.3.0)"),
            Error::Unreachable(e) => write!(f, "Unable to contact LDAP server: {e} (#4.4.3)"),
            Error::Credentials(e) => {
                write!(f, "Unable to login into LDAP server, bad credentials: {e} (#4.4.3)")
            }
            Error::Timeout => {
                f.write_str("Timeout while performing search on LDAP server. (#4.4.3)")
            }
            Error::Referral(refs) => write!(
                f,
                "Temporary failure in LDAP lookup: referral to {} (#4.4.3)",
                refs.join(" ")
            ),
            Error::NoSuchBase(base) => {
                write!(f, "Temporary failure in LDAP lookup: no such base DN \"{base}\" (#4.4.3)")
            }
            Error::Failure(e) => write!(f, "Temporary failure in LDAP lookup: {e} (#4.4.3)"),
            Error::Ambiguous { address, dns } => write!(
                f,
                "Too many results returned but needs to be unique: {address} is in {} (#5.3.5)",
                dns.join(" and ")
            ),
            Error::TooMany { dn, attr } => {
                write!(f, "LDAP attribute {attr} has several values in {dn} (#5.3.5)")
            }
            Error::Missing { dn, attr } => {
                write!(f, "LDAP attribute {attr} is not given but mandatory in {dn} (#5.3.5)")
            }
            Error::BadValue { dn, attr, why } => {
                write!(f, "Illegal value in LDAP attribute {attr} of {dn}: {why} (#5.3.5)")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<ControlError> for Error {
    fn from(e: ControlError) -> Self {
        Error::Control(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The LDAP configuration of one installation (doc/qmail-ldap.7, CONTROL FILES).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `ldap://host:port/` URLs, tried in order.
    pub servers: Vec<String>,
    pub base: String,
    pub login: String,
    pub password: String,
    /// `ldapobjectclass`: inserted into every filter verbatim (an admin's filter syntax).
    pub objectclass: Option<String>,
    pub search_timeout: Duration,
    pub connect_timeout: Duration,
    /// `ldapuid` / `ldapgid`: ids for entries without their own (0 = none).
    pub default_uid: Option<u32>,
    pub default_gid: Option<u32>,
    /// `ldapmessagestore`, with a trailing `/`.
    pub message_store: Option<String>,
    pub local_delivery: bool,
    pub default_dot_mode: DotMode,
    pub default_quota_size: u64,
    pub default_quota_count: u64,
    pub rebind: bool,
    /// `aliasdomains`: lowercase alias domain → real domain.
    pub alias_domains: Vec<(String, String)>,
    /// Probe `prefix-catchall@` forms (doc/DECISIONS.md, 9: on).
    pub dash_ext: bool,
}

impl Config {
    /// Reads the control files; `Ok(None)` when `ldapserver` is absent or empty.
    pub fn read(ctl: &Control) -> Result<Option<Config>, Error> {
        let Some(lines) = ctl.list("ldapserver")? else {
            return Ok(None);
        };
        let servers: Vec<String> = lines.iter().map(|l| server_url(l)).collect();
        if servers.is_empty() {
            return Ok(None);
        }
        let id = |name: &str| -> Result<Option<u32>, Error> {
            match ctl.int(name)? {
                None | Some(0) => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| Error::Config(format!("control/{name}: id out of range"))),
            }
        };
        let dot = ctl.line_or("ldapdefaultdotmode", "ldaponly")?;
        let default_dot_mode = DotMode::parse(&dot).ok_or_else(|| {
            Error::Config(format!("control/ldapdefaultdotmode: unknown mode {dot}"))
        })?;
        let message_store = ctl.line("ldapmessagestore")?.filter(|p| p.len() > 1).map(|mut p| {
            if !p.ends_with('/') {
                p.push('/');
            }
            p
        });
        let alias_domains = ctl
            .map("aliasdomains")?
            .unwrap_or_default()
            .into_iter()
            .map(|(a, r)| (a.trim().to_ascii_lowercase(), r.trim().to_ascii_lowercase()))
            .collect();
        Ok(Some(Config {
            servers,
            base: ctl.line("ldapbasedn")?.unwrap_or_default(),
            login: ctl.line("ldaplogin")?.unwrap_or_default(),
            password: ctl.line("ldappassword")?.unwrap_or_default(),
            objectclass: ctl.line("ldapobjectclass")?,
            search_timeout: Duration::from_secs(
                ctl.int("ldaptimeout")?.filter(|&t| t > 0).unwrap_or(DEFAULT_TIMEOUT),
            ),
            connect_timeout: CONNECT_TIMEOUT,
            default_uid: id("ldapuid")?,
            default_gid: id("ldapgid")?,
            message_store,
            local_delivery: ctl.int_or("ldaplocaldelivery", 1)? != 0,
            default_dot_mode,
            default_quota_size: ctl.int_or("defaultquotasize", 0)?,
            default_quota_count: ctl.int_or("defaultquotacount", 0)?,
            rebind: ctl.int_or("ldaprebind", 0)? != 0,
            alias_domains,
            dash_ext: true,
        }))
    }

    /// A configuration for one list of servers with every other setting at its default.
    pub fn new(servers: &[&str], base: &str) -> Config {
        Config {
            servers: servers.iter().map(|s| server_url(s)).collect(),
            base: base.to_string(),
            login: String::new(),
            password: String::new(),
            objectclass: None,
            search_timeout: Duration::from_secs(DEFAULT_TIMEOUT),
            connect_timeout: CONNECT_TIMEOUT,
            default_uid: None,
            default_gid: None,
            message_store: None,
            local_delivery: true,
            default_dot_mode: DotMode::LdapOnly,
            default_quota_size: 0,
            default_quota_count: 0,
            rebind: false,
            alias_domains: Vec::new(),
            dash_ext: true,
        }
    }
}

/// An `ldapserver` line as a URL: `host`, `host:port`, `[v6]:port`, a bare IPv6 address, or
/// already an `ldap://` URL.
fn server_url(line: &str) -> String {
    let line = line.trim();
    if line.contains("://") {
        return line.to_string();
    }
    let hostport = if line.starts_with('[') {
        if line.contains("]:") {
            line.to_string()
        } else {
            format!("{line}:389")
        }
    } else {
        match line.matches(':').count() {
            0 => format!("{line}:389"),
            1 => line.to_string(),
            _ => format!("[{line}]:389"),
        }
    };
    format!("ldap://{hostport}/")
}

// ---------------------------------------------------------------------------------------------
// Filters and candidates

/// RFC 4515 escaping of an assertion value: `*`, `(`, `)`, `\`, NUL, and every byte that is
/// not printable ASCII become `\xx`, so no input can change the filter's structure.
pub fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        match b {
            b'*' | b'(' | b')' | b'\\' => out.push_str(&format!("\\{b:02x}")),
            0x21..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:02x}")),
        }
    }
    out
}

/// The filter for one candidate address (doc/qmail-ldap.7, LOOKUP), already folded and escaped.
pub fn address_filter(address: &[u8], objectclass: Option<&str>) -> String {
    let v = escape(&address.to_ascii_lowercase());
    let core = format!("(|(mail={v})(mailAlternateAddress={v}))");
    match objectclass {
        Some(oc) => format!("(&(objectClass={oc}){core})"),
        None => core,
    }
}

/// One probe of the candidate sequence: the local part to search for, and the dash and ext
/// qmail-local gets when it matches (doc/qmail-ldap.7, LOOKUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub local: Vec<u8>,
    pub dash: &'static str,
    pub ext: Vec<u8>,
}

/// The candidate sequence of doc/qmail-ldap.7 (LOOKUP) for a local part: itself, then (with
/// `dash_ext`) `prefix-catchall` for each prefix ending before one of the first [`DASH_EXT_LEVELS`]
/// dashes, longest first, then `catchall`.
pub fn candidates(local: &[u8], dash_ext: bool) -> Vec<Candidate> {
    let mut out = vec![Candidate { local: local.to_vec(), dash: "", ext: Vec::new() }];
    if dash_ext {
        let dashes: Vec<usize> = local
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == BREAK as u8)
            .map(|(i, _)| i)
            .take(DASH_EXT_LEVELS)
            .collect();
        for &pos in dashes.iter().rev() {
            if pos == 0 {
                continue;
            }
            let mut probe = local[..=pos].to_vec();
            probe.extend_from_slice(CATCH_ALL.as_bytes());
            out.push(Candidate { local: probe, dash: "-", ext: local[pos + 1..].to_vec() });
        }
    }
    out.push(Candidate { local: CATCH_ALL.as_bytes().to_vec(), dash: "-", ext: local.to_vec() });
    // A local part that is itself a catch-all form is probed once.
    let mut seen = Vec::new();
    out.retain(|c| {
        let key = c.local.to_ascii_lowercase();
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// The account

/// `accountStatus` (doc/DECISIONS.md, 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// `active` or absent.
    Active,
    /// Mail is delivered; POP/IMAP/SMTP-AUTH logins are refused.
    NoAccess,
    /// The old `nopop`: active, but no POP/IMAP login.
    NoPop,
    /// Bounces ("administratively disabled", #5.2.1) and is refused at RCPT.
    Disabled,
    /// Bounces as an unknown user (#5.1.1).
    Deleted,
    /// An unknown word, kept for the log; treated as [`AccountStatus::NoAccess`].
    Unknown(String),
}

impl AccountStatus {
    pub fn parse(value: &str) -> AccountStatus {
        match value.to_ascii_lowercase().as_str() {
            "active" => AccountStatus::Active,
            "noaccess" => AccountStatus::NoAccess,
            "nopop" => AccountStatus::NoPop,
            "disabled" => AccountStatus::Disabled,
            "deleted" => AccountStatus::Deleted,
            _ => AccountStatus::Unknown(value.to_string()),
        }
    }

    /// Mail to the account is delivered (and accepted at RCPT).
    pub fn deliverable(&self) -> bool {
        !matches!(self, AccountStatus::Disabled | AccountStatus::Deleted)
    }

    /// POP3 and IMAP logins are allowed.
    pub fn mailbox_login(&self) -> bool {
        matches!(self, AccountStatus::Active)
    }

    /// SMTP AUTH is allowed.
    pub fn smtp_auth(&self) -> bool {
        matches!(self, AccountStatus::Active | AccountStatus::NoPop)
    }
}

/// `qmailDotMode` (doc/qmail-local.8, QMAILDOTMODE; doc/DECISIONS.md, 11): case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotMode {
    LdapOnly,
    LdapWithProg,
    DotOnly,
    Both,
    /// No .qmail files at all, LDAP instructions only.
    None,
}

impl DotMode {
    pub fn parse(value: &str) -> Option<DotMode> {
        match value.to_ascii_lowercase().as_str() {
            "ldaponly" => Some(DotMode::LdapOnly),
            "ldapwithprog" => Some(DotMode::LdapWithProg),
            "dotonly" => Some(DotMode::DotOnly),
            "both" => Some(DotMode::Both),
            "none" => Some(DotMode::None),
            _ => None,
        }
    }

    /// The word in `QMAILDOTMODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            DotMode::LdapOnly => "ldaponly",
            DotMode::LdapWithProg => "ldapwithprog",
            DotMode::DotOnly => "dotonly",
            DotMode::Both => "both",
            DotMode::None => "none",
        }
    }
}

/// `deliveryMode` values (doc/qmail-local.8, QMAILMODE): switches, lowercased; unknown words kept
/// for a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryMode {
    pub nolocal: bool,
    pub noforward: bool,
    pub noprogram: bool,
    pub reply: bool,
    /// Every value, lowercased, in directory order (for `QMAILMODE`).
    pub words: Vec<String>,
    /// Values that mean nothing (logged as "undefined mail delivery mode").
    pub unknown: Vec<String>,
}

impl DeliveryMode {
    pub fn parse<S: AsRef<str>>(values: &[S]) -> DeliveryMode {
        let mut m = DeliveryMode::default();
        for v in values {
            let w = v.as_ref().trim().to_ascii_lowercase();
            match w.as_str() {
                "nolocal" | "nombox" => m.nolocal = true,
                "noforward" => m.noforward = true,
                "noprogram" => m.noprogram = true,
                "reply" => m.reply = true,
                "local" | "forward" | "program" | "noreply" => {}
                _ => m.unknown.push(w.clone()),
            }
            m.words.push(w);
        }
        m
    }

    /// `QMAILMODE`: the words joined by `:`, or `None` when the attribute was absent.
    pub fn env(&self) -> Option<String> {
        (!self.words.is_empty()).then(|| self.words.join(":"))
    }
}

/// The directory entry a recipient address resolved to, decoded and checked (doc/qmail-ldap.7,
/// ATTRIBUTES). Defaults from the configuration are applied (uid/gid, quota, dot mode).
///
/// This is the directory's view of the entry (status, size limit, cluster host, ...), not what
/// qmail-lspawn is told: [`crate::recipient`] checks it and turns it into the record
/// [`crate::account::Account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub dn: String,
    /// The `uid` attribute: the user name handed to qmail-local (checked per doc/qmail-ldap.7).
    pub user: Option<String>,
    /// `qmailUID` (range-checked) or `ldapuid`.
    pub uid: Option<u32>,
    /// `qmailGID` (range-checked) or `ldapgid`.
    pub gid: Option<u32>,
    /// `homeDirectory`: absolute, path-checked.
    pub home: Option<String>,
    /// `mailMessageStore`: path-checked.
    pub store: Option<String>,
    /// dash and ext for qmail-local, from the candidate that matched (doc/qmail-ldap.7, LOOKUP).
    pub dash: &'static str,
    pub ext: Vec<u8>,
    pub status: AccountStatus,
    pub mode: DeliveryMode,
    pub forwards: Vec<String>,
    /// `deliveryProgramPath`, each free of shell metacharacters (`RESTRICT_PROG`).
    pub programs: Vec<String>,
    pub reply_text: Option<String>,
    /// Effective quota: the entry's value, else the default; 0 = unlimited.
    pub quota_size: u64,
    pub quota_count: u64,
    /// `mailSizeMax`; `None` for no limit (absent or 0).
    pub size_max: Option<u64>,
    pub dot_mode: DotMode,
    pub mail_host: Option<String>,
    /// The entry is a `qmailGroup` (a mailing list).
    pub group: bool,
}

/// Where mail for an account goes (doc/qmail-getpw.8, "The directory").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A mailbox: `$HOME`, and the default delivery when the entry names one (else the
    /// caller's, e.g. `./Maildir/`).
    Mailbox { home: String, aliasempty: Option<String> },
    /// Neither home nor store: forwards only, delivered as the alias user.
    ForwardOnly,
}

impl Account {
    /// Resolves the mail store (doc/qmail-getpw.8); `message_store` is `ldapmessagestore`.
    pub fn store(&self, message_store: Option<&str>) -> Result<Store, Error> {
        let bad = |why| Error::BadValue { dn: self.dn.clone(), attr: "mailMessageStore", why };
        match (&self.home, &self.store) {
            (Some(h), m) => Ok(Store::Mailbox { home: h.clone(), aliasempty: m.clone() }),
            (None, Some(m)) if m.starts_with('/') => {
                Ok(Store::Mailbox { home: m.clone(), aliasempty: None })
            }
            (None, Some(m)) => match message_store {
                Some(p) => Ok(Store::Mailbox { home: format!("{p}{m}"), aliasempty: None }),
                None => Err(bad("relative path without control/ldapmessagestore")),
            },
            (None, None) if self.forwards.is_empty() => {
                Err(Error::Missing { dn: self.dn.clone(), attr: "mailForwardingAddress" })
            }
            (None, None) => Ok(Store::ForwardOnly),
        }
    }

    /// `MAILDIRQUOTA`: `NNNS,NNNC` with zero components left out; `None` when unlimited.
    pub fn maildir_quota(&self) -> Option<String> {
        match (self.quota_size, self.quota_count) {
            (0, 0) => None,
            (s, 0) => Some(format!("{s}S")),
            (0, c) => Some(format!("{c}C")),
            (s, c) => Some(format!("{s}S,{c}C")),
        }
    }
}

/// One entry's attributes: lowercase names, UTF-8 values; non-UTF-8 values kept apart.
struct Attrs<'a> {
    dn: &'a str,
    text: HashMap<String, &'a Vec<String>>,
    binary: Vec<String>,
}

impl<'a> Attrs<'a> {
    fn new(entry: &'a SearchEntry) -> Self {
        Attrs {
            dn: &entry.dn,
            text: entry.attrs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
            binary: entry.bin_attrs.keys().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }

    fn multi(&self, attr: &'static str) -> Result<&'a [String], Error> {
        let key = attr.to_ascii_lowercase();
        if self.binary.contains(&key) {
            return Err(self.bad(attr, "not UTF-8"));
        }
        Ok(self.text.get(&key).map(|v| v.as_slice()).unwrap_or(&[]))
    }

    fn single(&self, attr: &'static str) -> Result<Option<&'a str>, Error> {
        match self.multi(attr)? {
            [] => Ok(None),
            [v] => Ok(Some(v.as_str())),
            _ => Err(Error::TooMany { dn: self.dn.to_string(), attr }),
        }
    }

    fn int(&self, attr: &'static str) -> Result<Option<u64>, Error> {
        self.single(attr)?.map(|v| decode_int(v).map_err(|why| self.bad(attr, why))).transpose()
    }

    fn id(&self, attr: &'static str) -> Result<Option<u32>, Error> {
        self.single(attr)?.map(|v| decode_id(v).map_err(|why| self.bad(attr, why))).transpose()
    }

    fn bad(&self, attr: &'static str, why: &'static str) -> Error {
        Error::BadValue { dn: self.dn.to_string(), attr, why }
    }
}

/// Decodes an entry found for `candidate` (doc/qmail-ldap.7, ATTRIBUTES); `cfg` supplies the
/// defaults.
pub fn decode(entry: &SearchEntry, candidate: &Candidate, cfg: &Config) -> Result<Account, Error> {
    let a = Attrs::new(entry);
    let user = a.single("uid")?.map(|u| check_user(u).map(|()| u.to_string()));
    let user = user.transpose().map_err(|why| a.bad("uid", why))?;
    let home = match a.single("homeDirectory")? {
        None => None,
        Some(h) if !h.starts_with('/') => return Err(a.bad("homeDirectory", "not absolute")),
        Some(h) => {
            Some(check_path(h).map(|()| h.to_string()).map_err(|w| a.bad("homeDirectory", w))?)
        }
    };
    let store = a
        .single("mailMessageStore")?
        .map(|m| check_path(m).map(|()| m.to_string()))
        .transpose()
        .map_err(|why| a.bad("mailMessageStore", why))?;
    let programs = a.multi("deliveryProgramPath")?.to_vec();
    for p in &programs {
        check_program(p).map_err(|why| a.bad("deliveryProgramPath", why))?;
    }
    let dot_mode = match a.single("qmailDotMode")? {
        None => cfg.default_dot_mode,
        Some(v) => DotMode::parse(v).ok_or_else(|| a.bad("qmailDotMode", "unknown mode"))?,
    };
    let group =
        a.multi("objectClass")?.iter().any(|oc| oc.to_ascii_lowercase().starts_with("qmailgroup"));
    Ok(Account {
        dn: entry.dn.clone(),
        user,
        uid: a.id("qmailUID")?.or(cfg.default_uid),
        gid: a.id("qmailGID")?.or(cfg.default_gid),
        home,
        store,
        dash: candidate.dash,
        ext: candidate.ext.clone(),
        status: a.single("accountStatus")?.map_or(AccountStatus::Active, AccountStatus::parse),
        mode: DeliveryMode::parse(a.multi("deliveryMode")?),
        forwards: a.multi("mailForwardingAddress")?.to_vec(),
        programs,
        reply_text: a.single("mailReplyText")?.map(str::to_string),
        quota_size: a.int("mailQuotaSize")?.unwrap_or(cfg.default_quota_size),
        quota_count: a.int("mailQuotaCount")?.unwrap_or(cfg.default_quota_count),
        size_max: a.int("mailSizeMax")?.filter(|&n| n > 0),
        dot_mode,
        mail_host: a.single("mailHost")?.map(str::to_string),
        group,
    })
}

/// An unsigned decimal integer, digits only (no sign, no blanks, no trailing junk).
pub fn decode_int(value: &str) -> Result<u64, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number");
    }
    value.parse().map_err(|_| "number too big")
}

/// A uid or gid in `ID_MIN..=ID_MAX`.
pub fn decode_id(value: &str) -> Result<u32, &'static str> {
    let n = decode_int(value)?;
    u32::try_from(n).ok().filter(|n| (ID_MIN..=ID_MAX).contains(n)).ok_or("id out of range")
}

/// A Boolean: `TRUE`/`1` or `FALSE`/`0`, any case.
pub fn decode_bool(value: &str) -> Result<bool, &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("not a Boolean"),
    }
}

/// A user name: letters, digits, `@ _ . # -`, not starting with `-`.
pub fn check_user(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.starts_with('-') {
        return Err("bad user name");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-".contains(&b)) {
        return Err("bad character in user name");
    }
    Ok(())
}

/// A path: letters, digits, `@ _ . # - / : =`, not starting with `-`, no `..` component
/// followed by `/`.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('-') {
        return Err("bad path");
    }
    if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-/:=".contains(&b)) {
        return Err("bad character in path");
    }
    if path.starts_with("../") || path.contains("/../") {
        return Err("path climbs with ..");
    }
    Ok(())
}

/// A program line: the path characters plus blanks, LF, `" ' + ,`, and no shell
/// metacharacter (`RESTRICT_PROG`).
pub fn check_program(prog: &str) -> Result<(), &'static str> {
    if prog.is_empty() || prog.starts_with('-') {
        return Err("bad program");
    }
    if !prog.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-/:= \t\n\"'+,".contains(&b)) {
        return Err("shell metacharacter or bad character in program");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The directory

/// A connection to the directory, opened on first use.
pub struct Directory {
    cfg: Config,
    conn: Option<LdapConn>,
}

impl Directory {
    pub fn new(cfg: Config) -> Self {
        Directory { cfg, conn: None }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Looks a recipient address up (doc/qmail-ldap.7, LOOKUP). `Ok(None)`: no entry has it (the
    /// caller falls back to users/cdb and passwd when `ldaplocaldelivery` allows). An address
    /// without `@` is never searched.
    pub fn lookup(&mut self, address: &[u8]) -> Result<Option<Account>, Error> {
        let (local, Some(domain)) = crate::address::split(address) else {
            return Ok(None);
        };
        let domain = domain.to_ascii_lowercase();
        let domain = self
            .cfg
            .alias_domains
            .iter()
            .find(|(alias, _)| alias.as_bytes() == domain.as_slice())
            .map_or(domain.clone(), |(_, real)| real.as_bytes().to_vec());
        for cand in candidates(local, self.cfg.dash_ext) {
            let mut probe = cand.local.clone();
            probe.push(b'@');
            probe.extend_from_slice(&domain);
            let filter = address_filter(&probe, self.cfg.objectclass.as_deref());
            let mut entries = self.search(&filter, ACCOUNT_ATTRS)?;
            match entries.len() {
                0 => continue,
                1 => {
                    let entry = entries.remove(0);
                    return decode(&entry, &cand, &self.cfg).map(Some);
                }
                _ => {
                    return Err(Error::Ambiguous {
                        address: String::from_utf8_lossy(&probe).into_owned(),
                        dns: entries.into_iter().map(|e| e.dn).collect(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// A subtree search under `ldapbasedn`, retried once on a fresh connection when a reused
    /// one turns out to be gone.
    pub fn search(&mut self, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, Error> {
        let reused = self.conn.is_some();
        match self.search_once(filter, attrs) {
            Err(Error::Failure(_) | Error::Unreachable(_)) if reused => {
                self.conn = None;
                self.search_once(filter, attrs)
            }
            r => r,
        }
    }

    fn search_once(&mut self, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, Error> {
        let timeout = self.cfg.search_timeout;
        let base = self.cfg.base.clone();
        let conn = self.connection()?;
        let limit = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let result = conn
            .with_search_options(SearchOptions::new().timelimit(limit))
            .with_timeout(timeout)
            .search(&base, Scope::Subtree, filter, attrs);
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(op_error(e));
            }
        };
        let (entries, res) = (result.0, result.1);
        match res.rc {
            0 => {}
            3 | 51 => return Err(Error::Timeout),
            10 => return Err(Error::Referral(res.refs)),
            32 => return Err(Error::NoSuchBase(base)),
            rc => return Err(Error::Failure(format!("search: result code {rc} {}", res.text))),
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.is_ref() || e.is_intermediate() {
                return Err(Error::Referral(vec!["(continuation reference)".to_string()]));
            }
            out.push(SearchEntry::construct(e));
        }
        // An entry matching both `mail` and `mailAlternateAddress` is returned once, but be
        // sure: count distinct DNs.
        out.dedup_by(|a, b| a.dn == b.dn);
        Ok(out)
    }

    /// The open connection, or a new one: each server in order, connect and bind within
    /// the connect timeout; the last failure is reported when none works.
    fn connection(&mut self) -> Result<&mut LdapConn, Error> {
        if self.conn.as_mut().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut last = Error::Unreachable("no server in control/ldapserver".to_string());
            for url in &self.cfg.servers {
                match connect(url, &self.cfg) {
                    Ok(c) => {
                        self.conn = Some(c);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if self.conn.is_none() {
                return Err(last);
            }
        }
        self.conn.as_mut().ok_or_else(|| Error::Unreachable("no connection".to_string()))
    }
}

fn connect(url: &str, cfg: &Config) -> Result<LdapConn, Error> {
    let settings = LdapConnSettings::new().set_conn_timeout(cfg.connect_timeout);
    let mut conn = LdapConn::with_settings(settings, url).map_err(|e| match e {
        LdapError::Timeout { .. } => Error::Unreachable(format!("{url}: connect timed out")),
        e => Error::Unreachable(format!("{url}: {e}")),
    })?;
    let res = conn
        .with_timeout(cfg.connect_timeout)
        .simple_bind(&cfg.login, &cfg.password)
        .map_err(|e| match e {
            LdapError::Timeout { .. } => Error::Unreachable(format!("{url}: bind timed out")),
            e => Error::Unreachable(format!("{url}: bind: {e}")),
        })?;
    match res.rc {
        0 => Ok(conn),
        49 => Err(Error::Credentials(format!("{url}: {}", cfg.login))),
        rc => Err(Error::Unreachable(format!("{url}: bind: result code {rc} {}", res.text))),
    }
}

fn op_error(e: LdapError) -> Error {
    match e {
        LdapError::Timeout { .. } => Error::Timeout,
        e => Error::Failure(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let rows: &[(&[u8], &str)] = &[
            (b"joe", "joe"),
            (b"*", "\\2a"),
            (b"(", "\\28"),
            (b")", "\\29"),
            (b"\\", "\\5c"),
            (b"\0", "\\00"),
            (b"a*)(uid=*", "a\\2a\\29\\28uid=\\2a"),
            (b"*)(|(mail=*", "\\2a\\29\\28|\\28mail=\\2a"),
            (b"\\2a", "\\5c2a"),
            (b"a b", "a\\20b"),
            (b"\xc3\xa9", "\\c3\\a9"),
            (b"\xff\n\r", "\\ff\\0a\\0d"),
            (b"", ""),
        ];
        for (input, want) in rows {
            assert_eq!(escape(input), *want, "escape({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn filters_parse_and_keep_their_structure() {
        let hostile: &[&[u8]] =
            &[b"*@example.org", b"a)(mail=*@x", b"\\@x", b"\0@x", b"((((@x", b"x\xff@y"];
        for h in hostile {
            let f = address_filter(h, None);
            // Exactly the two assertion parentheses pairs plus the OR.
            assert_eq!(f.matches('(').count(), 3, "{f}");
            assert_eq!(f.matches(')').count(), 3, "{f}");
            assert!(!f.contains('*'), "{f}");
        }
        assert_eq!(
            address_filter(b"Joe@Example.ORG", Some("qmailUser")),
            "(&(objectClass=qmailUser)(|(mail=joe@example.org)(mailAlternateAddress=joe@example.org)))"
        );
    }

    fn locals(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| String::from_utf8_lossy(&c.local).into_owned()).collect()
    }

    #[test]
    fn candidate_table() {
        let rows: &[(&str, &[&str])] = &[
            ("joe", &["joe", "catchall"]),
            ("a-b", &["a-b", "a-catchall", "catchall"]),
            (
                "a-b-c-d-e-f",
                &[
                    "a-b-c-d-e-f",
                    "a-b-c-d-catchall",
                    "a-b-c-catchall",
                    "a-b-catchall",
                    "a-catchall",
                    "catchall",
                ],
            ),
            ("-a", &["-a", "catchall"]),
            ("a-", &["a-", "a-catchall", "catchall"]),
            ("catchall", &["catchall"]),
            ("", &["", "catchall"]),
        ];
        for (local, want) in rows {
            assert_eq!(locals(&candidates(local.as_bytes(), true)), *want, "{local}");
        }
        assert_eq!(locals(&candidates(b"a-b-c", false)), ["a-b-c", "catchall"]);
        let c = candidates(b"list-confirm-1f2e", true);
        assert_eq!((c[1].dash, c[1].ext.as_slice()), ("-", &b"1f2e"[..]));
        assert_eq!((c[2].dash, c[2].ext.as_slice()), ("-", &b"confirm-1f2e"[..]));
        assert_eq!((c[3].dash, c[3].ext.as_slice()), ("-", &b"list-confirm-1f2e"[..]));
        assert_eq!((c[0].dash, c[0].ext.as_slice()), ("", &b""[..]));
    }

    #[test]
    fn integers() {
        for ok in [("0", 0), ("100", 100), ("18446744073709551615", u64::MAX)] {
            assert_eq!(decode_int(ok.0), Ok(ok.1));
        }
        for bad in ["", " 1", "1 ", "+1", "-1", "1x", "0x10", "1e3", "18446744073709551616", "١"] {
            assert!(decode_int(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_id("100"), Ok(100));
        assert_eq!(decode_id("65535"), Ok(65535));
        for bad in ["99", "0", "65536", "4294967396", "abc"] {
            assert!(decode_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans_and_words() {
        assert_eq!(decode_bool("TRUE"), Ok(true));
        assert_eq!(decode_bool("1"), Ok(true));
        assert_eq!(decode_bool("false"), Ok(false));
        assert!(decode_bool("yes").is_err());
        assert_eq!(AccountStatus::parse("Disabled"), AccountStatus::Disabled);
        assert_eq!(AccountStatus::parse("nopop"), AccountStatus::NoPop);
        assert!(AccountStatus::parse("NOACCESS").deliverable());
        assert!(!AccountStatus::parse("NOACCESS").mailbox_login());
        assert!(!AccountStatus::parse("deleted").deliverable());
        let odd = AccountStatus::parse("frozen");
        assert_eq!(odd, AccountStatus::Unknown("frozen".into()));
        assert!(odd.deliverable() && !odd.mailbox_login() && !odd.smtp_auth());
        assert_eq!(DotMode::parse("LdapWithProg"), Some(DotMode::LdapWithProg));
        assert_eq!(DotMode::parse("NONE"), Some(DotMode::None));
        assert_eq!(DotMode::parse("ldap only"), None);
        let m = DeliveryMode::parse(&["NoLocal", "reply", "bogus"]);
        assert!(m.nolocal && m.reply && !m.noforward);
        assert_eq!(m.unknown, ["bogus"]);
        assert_eq!(m.env().as_deref(), Some("nolocal:reply:bogus"));
        assert_eq!(DeliveryMode::parse::<&str>(&[]).env(), None);
    }

    #[test]
    fn sanity_checks() {
        assert!(check_user("joe.user@x").is_ok());
        for bad in ["", "-joe", "jo e", "joe/x", "jöe", "joe\0"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("/home/vmail/joe/Maildir/").is_ok());
        assert!(check_path("./Maildir/").is_ok());
        assert!(check_path("a..b/c").is_ok());
        for bad in ["", "-x", "../x", "/a/../b", "/a b", "/a;b", "/a\nb", "/é"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_program("/usr/bin/procmail -d joe").is_ok());
        for bad in ["/bin/rm -rf ~", "a|b", "a;b", "$(x)", "`x`", "a>b", "a&b", "a*"] {
            assert!(check_program(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_urls() {
        assert_eq!(server_url("ldap.example.org"), "ldap://ldap.example.org:389/");
        assert_eq!(server_url("127.0.0.1:3890"), "ldap://127.0.0.1:3890/");
        assert_eq!(server_url("::1"), "ldap://[::1]:389/");
        assert_eq!(server_url("[::1]:3890"), "ldap://[::1]:3890/");
        assert_eq!(server_url("ldap://h:1/"), "ldap://h:1/");
    }

    #[test]
    fn classes() {
        assert!(Error::Timeout.is_temporary());
        assert!(Error::NoSuchBase("dc=x".into()).is_temporary());
        assert!(Error::Referral(vec![]).is_temporary());
        assert!(Error::Credentials("x".into()).is_temporary());
        let amb =
            Error::Ambiguous { address: "a@b".into(), dns: vec!["uid=1".into(), "uid=2".into()] };
        assert!(!amb.is_temporary());
        assert!(amb.to_string().contains("uid=1 and uid=2"));
        assert_eq!(amb.lspawn_code(), 156);
    }
}

// ---------------------------------------------------------------------------------------------
// Administration: DN escaping, write operations, password check by bind (qmailctl user,
// qmailctl ldap-init, qmail-ldaplookup -p)

/// RFC 4514 escaping of an attribute value inside a DN: `, + " \ < > ;` and `=` anywhere, a
/// leading `#` or blank, a trailing blank and NUL become `\xx` (hex), as do control
/// characters, so no value can add an RDN or change the DN's structure.
pub fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ')
            || c.is_control();
        if special {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One change of [`Directory::modify`]: attribute name and its new values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set the attribute to exactly these values (none: remove it).
    Replace(String, Vec<String>),
    /// Add these values.
    Add(String, Vec<String>),
    /// Remove these values (none: the whole attribute).
    Delete(String, Vec<String>),
}

impl Directory {
    /// Adds an entry; attributes with no values are left out.
    pub fn add(&mut self, dn: &str, attrs: &[(&str, Vec<String>)]) -> Result<(), Error> {
        let attrs: Vec<(String, std::collections::HashSet<String>)> = attrs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(a, v)| (a.to_string(), v.iter().cloned().collect()))
            .collect();
        let timeout = self.cfg.search_timeout;
        let res = self.connection()?.with_timeout(timeout).add(dn, attrs);
        self.write_result("add", dn, res)
    }

    /// Applies `changes` to one entry in one operation.
    pub fn modify(&mut self, dn: &str, changes: &[Change]) -> Result<(), Error> {
        use std::collections::HashSet;
        let set = |v: &[String]| v.iter().cloned().collect::<HashSet<String>>();
        let mods: Vec<ldap3::Mod<String>> = changes
            .iter()
            .map(|c| match c {
                Change::Replace(a, v) => ldap3::Mod::Replace(a.clone(), set(v)),
                Change::Add(a, v) => ldap3::Mod::Add(a.clone(), set(v)),
                Change::Delete(a, v) => ldap3::Mod::Delete(a.clone(), set(v)),
            })
            .collect();
        let timeout = self.cfg.search_timeout;
        let res = self.connection()?.with_timeout(timeout).modify(dn, mods);
        self.write_result("modify", dn, res)
    }

    /// Deletes one (leaf) entry.
    pub fn delete(&mut self, dn: &str) -> Result<(), Error> {
        let timeout = self.cfg.search_timeout;
        let res = self.connection()?.with_timeout(timeout).delete(dn);
        self.write_result("delete", dn, res)
    }

    /// Whether `password` binds as `dn`, on a fresh connection of its own (the directory
    /// checks the password, any scheme it knows). `Ok(false)`: invalid credentials; an empty
    /// password is refused without asking (an LDAP empty password is an anonymous bind).
    pub fn bind_check(&self, dn: &str, password: &str) -> Result<bool, Error> {
        if password.is_empty() {
            return Ok(false);
        }
        let mut cfg = self.cfg.clone();
        cfg.login = dn.to_string();
        cfg.password = password.to_string();
        let mut last = Error::Unreachable("no server in control/ldapserver".to_string());
        for url in &cfg.servers {
            match connect(url, &cfg) {
                Ok(mut c) => {
                    let _ = c.unbind();
                    return Ok(true);
                }
                Err(Error::Credentials(_)) => return Ok(false),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether the entry `dn` exists (a base search; `noSuchObject` is `Ok(false)`).
    pub fn exists(&mut self, dn: &str) -> Result<bool, Error> {
        let timeout = self.cfg.search_timeout;
        let res = self.connection()?.with_timeout(timeout).search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        );
        let res = match res {
            Ok(r) => r.1,
            Err(e) => {
                self.conn = None;
                return Err(op_error(e));
            }
        };
        match res.rc {
            0 => Ok(true),
            32 => Ok(false),
            3 | 51 => Err(Error::Timeout),
            10 => Err(Error::Referral(res.refs)),
            rc => Err(Error::Failure(format!("search: result code {rc} {}", res.text))),
        }
    }

    fn write_result(
        &mut self,
        op: &str,
        dn: &str,
        res: ldap3::result::Result<ldap3::LdapResult>,
    ) -> Result<(), Error> {
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(op_error(e));
            }
        };
        match res.rc {
            0 => Ok(()),
            3 | 51 => Err(Error::Timeout),
            10 => Err(Error::Referral(res.refs)),
            rc => {
                let what = match rc {
                    16 => "no such attribute or value",
                    19 | 21 => "a value is not allowed",
                    20 => "the value is already there",
                    32 => "no such entry",
                    34 => "invalid DN",
                    50 => "insufficient access rights",
                    64 | 65 | 67 => "the schema does not allow it",
                    66 => "the entry has children",
                    68 => "the entry already exists",
                    _ => "refused",
                };
                let text =
                    if res.text.is_empty() { String::new() } else { format!(": {}", res.text) };
                Err(Error::Failure(format!("{op} {dn}: {what} (result code {rc}){text}")))
            }
        }
    }
}

/// The LDAP result code inside a write failure of [`Directory::add`], [`Directory::modify`]
/// or [`Directory::delete`], for callers that act on one (68: already exists, 32: no such
/// entry).
pub fn result_code(e: &Error) -> Option<u32> {
    let Error::Failure(text) = e else { return None };
    let start = text.rfind("(result code ")? + "(result code ".len();
    text[start..].split(')').next()?.parse().ok()
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    #[test]
    fn dn_escaping() {
        let rows = [
            ("joe", "joe"),
            ("a,b", "a\\2cb"),
            ("a+b=c", "a\\2bb\\3dc"),
            ("\"x\"", "\\22x\\22"),
            ("back\\slash", "back\\5cslash"),
            ("<a>;", "\\3ca\\3e\\3b"),
            ("#lead", "\\23lead"),
            ("in#side", "in#side"),
            (" sp ", "\\20sp\\20"),
            ("nul\0", "nul\\00"),
            ("x,ou=evil,dc=example", "x\\2cou\\3devil\\2cdc\\3dexample"),
            ("é", "é"),
        ];
        for (input, want) in rows {
            assert_eq!(escape_dn(input), want, "{input:?}");
        }
    }

    #[test]
    fn result_codes() {
        let e = Error::Failure("add uid=x: the entry already exists (result code 68): x".into());
        assert_eq!(result_code(&e), Some(68));
        assert_eq!(result_code(&Error::Timeout), None);
    }
}

/// A directory entry as searches return it (DN, text and binary attributes), for programs
/// that print entries; they never name `ldap3` themselves.
pub type Entry = SearchEntry;
