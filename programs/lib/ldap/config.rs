//! ldap::Config: the LDAP configuration of one installation, read from the `ldap*` control
//! files (doc/qmail-ldap.7, CONTROL FILES); an absent `ldapserver` means LDAP is not
//! configured.

use super::error::Error;
use super::values::DotMode;
use crate::control::Control;
use std::time::Duration;

/// Connect and bind timeout per server (upstream has none; doc/DECISIONS.md, 3).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Search time limit without `ldaptimeout`.
pub const DEFAULT_TIMEOUT: u64 = 30;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(server_url("ldap.example.org"), "ldap://ldap.example.org:389/");
        assert_eq!(server_url("127.0.0.1:3890"), "ldap://127.0.0.1:3890/");
        assert_eq!(server_url("::1"), "ldap://[::1]:389/");
        assert_eq!(server_url("[::1]:3890"), "ldap://[::1]:3890/");
        assert_eq!(server_url("ldap://h:1/"), "ldap://h:1/");
    }
}
