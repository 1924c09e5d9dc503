//! ldap::lookup: the recipient lookup of delivery (doc/qmail-ldap.7, LOOKUP) and the typed
//! entry it returns: [`Directory::lookup`] tries the candidate addresses in order and decodes
//! the one entry found into an [`Account`] (doc/qmail-ldap.7, ATTRIBUTES), defaults from the
//! configuration applied; [`Account::store`] says where its mail goes.

use super::config::Config;
use super::connection::{Directory, Entry};
use super::error::Error;
use super::filter::{address_filter, candidates, Candidate};
use super::values::{
    check_path, check_program, check_user, decode_id, decode_int, AccountStatus, DeliveryMode,
    DotMode,
};
use std::collections::HashMap;

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

impl Directory {
    /// Looks a recipient address up (doc/qmail-ldap.7, LOOKUP). `Ok(None)`: no entry has it (the
    /// caller falls back to users/cdb and passwd when `ldaplocaldelivery` allows). An address
    /// without `@` is never searched.
    pub fn lookup(&mut self, address: &[u8]) -> Result<Option<Account>, Error> {
        let (local, Some(domain)) = crate::address::split(address) else {
            return Ok(None);
        };
        let domain = domain.to_ascii_lowercase();
        let domain = self
            .config()
            .alias_domains
            .iter()
            .find(|(alias, _)| alias.as_bytes() == domain.as_slice())
            .map_or(domain.clone(), |(_, real)| real.as_bytes().to_vec());
        for cand in candidates(local, self.config().dash_ext) {
            let mut probe = cand.local.clone();
            probe.push(b'@');
            probe.extend_from_slice(&domain);
            let filter = address_filter(&probe, self.config().objectclass.as_deref());
            let mut entries = self.search(&filter, ACCOUNT_ATTRS)?;
            match entries.len() {
                0 => continue,
                1 => {
                    let entry = entries.remove(0);
                    return decode(&entry, &cand, self.config()).map(Some);
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
    fn new(entry: &'a Entry) -> Self {
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
pub fn decode(entry: &Entry, candidate: &Candidate, cfg: &Config) -> Result<Account, Error> {
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
