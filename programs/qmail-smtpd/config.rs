//! qmail-smtpd's configuration: the environment and the control files (doc/qmail-smtpd.8), both
//! read once when the connection starts.
//!
//! Absent is data, unreadable is temporary: a control file that exists but cannot be read
//! ends the session with `421 unable to read controls (#4.3.0)`.

use qmail::control::{Cache, Control, ControlError, DomainSet};
use std::collections::HashSet;
use std::env;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `timeoutsmtpd` when the file is absent (doc/DECISIONS.md, 16: the man page's 1200 s).
pub const DEFAULT_TIMEOUT: u64 = 1200;
/// The read timeout in greeting-refusal mode (550GREETING / 421GREETING).
pub const GREETING_REFUSAL_TIMEOUT: u64 = 20;

/// SENDERCHECK's mode for senders whose domain is not local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderCheck {
    /// any value: accept
    Plain,
    /// `LOOSE`: the domain must be in rcpthosts or locals
    Loose,
    /// `STRICT`: refuse
    Strict,
}

/// `SMTPAUTH`'s value: when AUTH may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpAuth {
    /// any other value, empty too: only inside TLS when a certificate is configured (STARTTLS
    /// can be had), else in plaintext as well
    Default,
    /// `TLSREQUIRED` (any case): only inside TLS
    TlsRequired,
    /// `PLAINTEXT` (any case): with or without TLS, the administrator's explicit choice
    Plaintext,
}

/// The environment, as a TCP server and the administrator's rules set it.
#[derive(Debug, Clone)]
pub struct Env {
    pub remote_ip: String,
    pub remote_host: String,
    pub remote_info: Option<String>,
    pub local_host: String,
    pub local_ip: Option<IpAddr>,
    /// `RELAYCLIENT`: set (even empty) means the client may relay; the value is appended to
    /// every recipient
    pub relayclient: Option<Vec<u8>>,
    pub databytes: Option<u64>,
    pub loglevel: u8,
    pub greeting550: Option<String>,
    pub greeting421: Option<String>,
    pub blockrelayprobe: bool,
    pub nobounce: bool,
    pub nolocal: bool,
    pub rbl: bool,
    pub rblonlyheader: bool,
    pub rejectexec: bool,
    pub returnmxcheck: bool,
    pub sanitycheck: bool,
    pub smtp550disconnect: bool,
    /// SMTPS: implicit TLS, the handshake before the greeting (port 465)
    pub smtps: bool,
    pub sendercheck: Option<SenderCheck>,
    pub maxrcptcount: u64,
    pub tarpitcount: u64,
    pub tarpitdelay: u64,
    pub authrequired: bool,
    pub authorized: bool,
    pub rcptcheck: bool,
    /// `LDAPSOFTOK`: a verifier's temporary failure (or its absence) accepts the address
    pub ldapsoftok: bool,
    /// `BADRCPTDELAY`: seconds to wait before refusing an unknown recipient (RCPTCHECK)
    pub badrcptdelay: u64,
    /// `SMTPAUTH`: offer AUTH
    pub smtpauth: Option<SmtpAuth>,
    pub authprepend: Option<String>,
}

fn var(name: &str) -> Option<String> {
    env::var_os(name).map(|v| String::from_utf8_lossy(&v.into_vec()).into_owned())
}

fn flag(name: &str) -> bool {
    env::var_os(name).is_some()
}

/// Leading decimal digits of a variable (saturating); `None` when unset or without digits.
fn number(name: &str) -> Option<u64> {
    let v = var(name)?;
    let digits: Vec<u8> = v.trim_start().bytes().take_while(u8::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

impl Env {
    pub fn read() -> Env {
        let local_ip = var("TCPLOCALIP").and_then(|ip| ip.parse().ok());
        let local_host = var("TCPLOCALHOST")
            .or_else(|| var("TCPLOCALIP"))
            .unwrap_or_else(|| "unknown".to_string());
        Env {
            remote_ip: var("TCPREMOTEIP").unwrap_or_else(|| "unknown".to_string()),
            remote_host: var("TCPREMOTEHOST").unwrap_or_else(|| "unknown".to_string()),
            remote_info: var("TCPREMOTEINFO"),
            local_host,
            local_ip,
            relayclient: env::var_os("RELAYCLIENT").map(|v| v.into_vec()),
            databytes: number("DATABYTES"),
            loglevel: number("LOGLEVEL").unwrap_or(0).min(4) as u8,
            greeting550: var("550GREETING"),
            greeting421: var("421GREETING"),
            blockrelayprobe: flag("BLOCKRELAYPROBE"),
            nobounce: flag("NOBOUNCE"),
            nolocal: flag("NOLOCAL"),
            rbl: flag("RBL"),
            rblonlyheader: flag("RBLONLYHEADER"),
            rejectexec: flag("REJECTEXEC"),
            returnmxcheck: flag("RETURNMXCHECK"),
            sanitycheck: flag("SANITYCHECK"),
            smtp550disconnect: flag("SMTP550DISCONNECT"),
            smtps: flag("SMTPS"),
            sendercheck: var("SENDERCHECK").map(|v| {
                if v.eq_ignore_ascii_case("strict") {
                    SenderCheck::Strict
                } else if v.eq_ignore_ascii_case("loose") {
                    SenderCheck::Loose
                } else {
                    SenderCheck::Plain
                }
            }),
            maxrcptcount: number("MAXRCPTCOUNT").unwrap_or(0),
            tarpitcount: number("TARPITCOUNT").unwrap_or(0),
            tarpitdelay: number("TARPITDELAY").unwrap_or(5),
            authrequired: flag("AUTHREQUIRED"),
            authorized: flag("AUTHORIZED"),
            rcptcheck: flag("RCPTCHECK"),
            ldapsoftok: flag("LDAPSOFTOK"),
            badrcptdelay: number("BADRCPTDELAY").unwrap_or(0),
            smtpauth: var("SMTPAUTH").map(|v| {
                if v.eq_ignore_ascii_case("tlsrequired") {
                    SmtpAuth::TlsRequired
                } else if v.eq_ignore_ascii_case("plaintext") {
                    SmtpAuth::Plaintext
                } else {
                    SmtpAuth::Default
                }
            }),
            authprepend: var("AUTHPREPEND"),
        }
    }
}

/// A list of addresses matched as qmail-LDAP does: the whole address, `@domain` or `user@`,
/// case-insensitively.
#[derive(Debug, Default)]
pub struct AddrList(HashSet<Vec<u8>>);

impl AddrList {
    fn load(c: &Control, name: &str) -> Result<AddrList, ControlError> {
        let lines = c.list(name)?.unwrap_or_default();
        Ok(AddrList(lines.into_iter().map(|l| l.to_ascii_lowercase().into_bytes()).collect()))
    }

    fn has(&self, key: &[u8]) -> bool {
        self.0.contains(key)
    }

    /// Exact, `@domain` or `user@` match.
    pub fn matches(&self, addr: &[u8]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let addr = addr.to_ascii_lowercase();
        if self.has(&addr) {
            return true;
        }
        match qmail::address::split(&addr) {
            // `@domain` and `local@`
            (local, Some(_)) => self.has(&addr[local.len()..]) || self.has(&addr[..=local.len()]),
            (_, None) => false,
        }
    }

    /// [`AddrList::matches`], plus `catchall@domain` and the dash catch-alls
    /// `a-b-catchall@domain`, `a-catchall@domain` for `a-b-c@domain` (goodmailaddr).
    pub fn matches_catchall(&self, addr: &[u8]) -> bool {
        if self.matches(addr) {
            return true;
        }
        let addr = addr.to_ascii_lowercase();
        let (local, Some(_)) = qmail::address::split(&addr) else { return false };
        let domain = &addr[local.len()..]; // with its `@`
        let catchall = |prefix: &[u8]| {
            let mut key = prefix.to_vec();
            key.extend_from_slice(b"catchall");
            key.extend_from_slice(domain);
            self.has(&key)
        };
        if catchall(b"") {
            return true;
        }
        // DASH_EXT: up to four dash levels
        local
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'-')
            .map(|(i, _)| i)
            .take(4)
            .any(|i| catchall(&local[..=i]))
    }
}

/// One line of `rbllist`: `basedomain action matchon message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rbl {
    pub base: String,
    /// `addheader` (true) or `reject`
    pub header_only: bool,
    /// `any`, or the A record that counts as listed
    pub matchon: Option<IpAddr>,
    pub message: String,
}

/// Parse `rbllist`; an unparsable line is a configuration error (`421`).
pub fn parse_rbllist(lines: &[String]) -> Result<Vec<Rbl>, String> {
    lines
        .iter()
        .map(|line| {
            let mut words = line.split_whitespace();
            let bad = || format!("unparsable rbllist line: {line}");
            let base = words.next().ok_or_else(bad)?.trim_matches('.').to_string();
            let action = words.next().ok_or_else(bad)?;
            let header_only = if action.eq_ignore_ascii_case("addheader") {
                true
            } else if action.eq_ignore_ascii_case("reject") {
                false
            } else {
                return Err(bad());
            };
            let matchon = words.next().ok_or_else(bad)?;
            let matchon = if matchon.eq_ignore_ascii_case("any") {
                None
            } else {
                Some(matchon.parse().map_err(|_| bad())?)
            };
            let message = words.collect::<Vec<_>>().join(" ");
            let message = if message.is_empty() { "listed".to_string() } else { message };
            if base.is_empty() {
                return Err(bad());
            }
            Ok(Rbl { base, header_only, matchon, message })
        })
        .collect()
}

/// The control files, read once per connection.
pub struct Config {
    /// the installation root the control files were read under; qmail-queue and qmail-verify
    /// are run from it
    pub home: PathBuf,
    pub me: String,
    pub greeting: String,
    pub localiphost: String,
    /// 0 = unlimited
    pub databytes: u64,
    pub timeout: u64,
    pub locals: DomainSet,
    /// `rcpthosts.cdb` (which then replaces `morercpthosts.cdb` too), else `rcpthosts`
    pub rcpthosts: Option<DomainSet>,
    pub morercpthosts: Option<DomainSet>,
    pub badmailfrom: AddrList,
    pub badmailfrom_unknown: AddrList,
    pub badrcptto: AddrList,
    pub goodmailaddr: AddrList,
    pub goodmailfrom: AddrList,
    pub relaymailfrom: AddrList,
    /// parsed only with RBL set
    pub rbl: Vec<Rbl>,
    /// read only with REJECTEXEC set
    pub signatures: Vec<Vec<u8>>,
    /// `verifysocket`: the qmail-verify service's Unix socket (RCPTCHECK, SENDERCHECK)
    pub verifysocket: Option<String>,
    /// The PEM file with the certificate chain and key for STARTTLS: `SSLCERT` when set, else
    /// `control/smtpcert` when it exists; read at each STARTTLS (doc/qmail-smtpd.8, STARTTLS)
    pub tls_cert: Option<PathBuf>,
}

impl Config {
    /// The TLS server configuration for the certificate file `cert` and the cipher suites of
    /// `control/tlsciphers`, both read now: at each STARTTLS, or when an SMTPS session starts
    /// (doc/qmail-smtpd.8, STARTTLS). The error names the file and never holds key material.
    pub fn tls(&self, cert: &Path) -> Result<Arc<rustls::ServerConfig>, qmail::tls::TlsError> {
        qmail::tls::installation_config(&self.home, cert)
    }

    /// Read every control file under `home`, through `cache` (a worker's: only what changed
    /// since its last session is read again). The error is the text for the log.
    pub fn load(home: &Path, env: &Env, cache: &Cache) -> Result<Config, String> {
        let c = &Control::cached(home, cache);
        let e = |e: ControlError| e.to_string();
        let me = c.me().map_err(e)?.ok_or("control/me is missing")?;
        let rcpthosts_cdb = c.exists("rcpthosts.cdb");
        let rcpthosts = c.set("rcpthosts").map_err(e)?;
        let morercpthosts =
            if rcpthosts_cdb { None } else { c.cdb("morercpthosts.cdb").map_err(e)? };
        let databytes = match env.databytes {
            Some(n) => n,
            None => c.int_or("databytes", 0).map_err(e)?,
        };
        let timeout = match c.int("timeoutsmtpd").map_err(e)? {
            Some(0) | None => DEFAULT_TIMEOUT,
            Some(n) => n,
        };
        let rbl = if env.rbl {
            parse_rbllist(&c.list("rbllist").map_err(e)?.unwrap_or_default())?
        } else {
            Vec::new()
        };
        let signatures = if env.rejectexec {
            c.list("signatures")
                .map_err(e)?
                .unwrap_or_default()
                .into_iter()
                .map(String::into_bytes)
                .collect()
        } else {
            Vec::new()
        };
        let tls_cert = match std::env::var_os("SSLCERT") {
            Some(p) if !p.is_empty() => Some(home.join(p)),
            _ => c.exists("smtpcert").then(|| c.path("smtpcert")),
        };
        Ok(Config {
            tls_cert,
            home: home.to_path_buf(),
            greeting: c.line("smtpgreeting").map_err(e)?.unwrap_or_default(),
            localiphost: c.line("localiphost").map_err(e)?.unwrap_or_else(|| me.clone()),
            me,
            databytes,
            timeout,
            locals: c.locals().map_err(e)?,
            rcpthosts,
            morercpthosts,
            badmailfrom: AddrList::load(c, "badmailfrom").map_err(e)?,
            badmailfrom_unknown: AddrList::load(c, "badmailfrom-unknown").map_err(e)?,
            badrcptto: AddrList::load(c, "badrcptto").map_err(e)?,
            goodmailaddr: AddrList::load(c, "goodmailaddr").map_err(e)?,
            goodmailfrom: AddrList::load(c, "goodmailfrom").map_err(e)?,
            relaymailfrom: AddrList::load(c, "relaymailfrom").map_err(e)?,
            rbl,
            signatures,
            verifysocket: c.line("verifysocket").map_err(e)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> AddrList {
        AddrList(items.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn address_lists() {
        let l = list(&["bad@x.org", "@spam.example", "joe@"]);
        let rows: &[(&str, bool)] = &[
            ("bad@x.org", true),
            ("BAD@X.ORG", true),
            ("good@x.org", false),
            ("any@spam.example", true),
            ("any@SPAM.example", true),
            ("joe@anywhere.net", true),
            ("joe", false),
            ("", false),
        ];
        for &(addr, want) in rows {
            assert_eq!(l.matches(addr.as_bytes()), want, "{addr}");
        }
        let g = list(&["catchall@a.org", "list-catchall@b.org"]);
        assert!(g.matches_catchall(b"x@a.org"));
        assert!(g.matches_catchall(b"list-x-y@b.org"));
        assert!(!g.matches_catchall(b"lists@b.org"));
        assert!(!g.matches_catchall(b"x@c.org"));
    }

    #[test]
    fn rbllist() {
        let lines: Vec<String> = [
            "zen.example reject 127.0.0.2 listed at zen",
            "bl.example addheader any",
            "rbl.example. REJECT any spam source",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = parse_rbllist(&lines).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].base, "zen.example");
        assert!(!got[0].header_only);
        assert_eq!(got[0].matchon, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(got[0].message, "listed at zen");
        assert!(got[1].header_only);
        assert_eq!((got[1].matchon, got[1].message.as_str()), (None, "listed"));
        assert_eq!(got[2].base, "rbl.example");
        for bad in ["zen.example", "zen.example reject", "x frob any", "x reject 1.2.3"] {
            assert!(parse_rbllist(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
