//! ldap::connection: the [`Directory`], one connection opened on first use and reused while it
//! stays up. Servers are tried in `ldapserver` order, each with a connect-and-bind timeout
//! ([`Config::connect_timeout`]); searches are limited by `ldaptimeout` both on the server and
//! here. An outage is an [`Error`], never "nothing found" (doc/DECISIONS.md, 2).
//!
//! ldap3's sync connection runs a tokio runtime inside: a process that has opened a
//! [`Directory`] may `exec`, but must not `fork` and carry on.

use super::config::Config;
use super::error::Error;
use ldap3::{LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};

/// A directory entry as searches return it (DN, text and binary attributes), for programs
/// that print entries; they never name `ldap3` themselves.
pub type Entry = SearchEntry;

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

    /// A subtree search under `ldapbasedn`, retried once on a fresh connection when a reused
    /// one turns out to be gone.
    pub fn search(&mut self, filter: &str, attrs: &[&str]) -> Result<Vec<Entry>, Error> {
        let reused = self.conn.is_some();
        match self.search_once(filter, attrs) {
            Err(Error::Failure(_) | Error::Unreachable(_)) if reused => {
                self.conn = None;
                self.search_once(filter, attrs)
            }
            r => r,
        }
    }

    fn search_once(&mut self, filter: &str, attrs: &[&str]) -> Result<Vec<Entry>, Error> {
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
            Err(e) => return Err(self.failed(e)),
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
    pub(super) fn connection(&mut self) -> Result<&mut LdapConn, Error> {
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

    /// Drops the connection after an operation failed on it (the next operation opens a
    /// fresh one) and classes the failure: a time-out, or any other failure.
    pub(super) fn failed(&mut self, e: LdapError) -> Error {
        self.conn = None;
        match e {
            LdapError::Timeout { .. } => Error::Timeout,
            e => Error::Failure(e.to_string()),
        }
    }
}

/// Connects to one server and binds as `cfg` says, both within the connect timeout.
pub(super) fn connect(url: &str, cfg: &Config) -> Result<LdapConn, Error> {
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
