//! qmail-smtpd's envelope commands: MAIL and RCPT with the checks of doc/qmail-smtpd.8
//! ("Checks") in their order, and what those checks keep for the whole session (the RBL
//! result, the resolver, the local addresses, the qmail-verify client).
//!
//! Recipients per message are bounded by [`MAX_RECIPIENTS`]. The checks that need no state
//! are in checks.rs, the verifier's protocol in verify.rs.

use crate::checks::{self, LocalIps};
use crate::config::{Config, Env, SenderCheck};
use crate::conn::{Conn, Flow};
use crate::io;
use crate::transaction::Transaction;
use crate::verify::{self, Reply};
use qmail::address::Address;
use qmail::dns;
use qmail::smtp::{self, PathError};
use std::cell::OnceCell;
use std::net::IpAddr;
use std::time::Duration;

/// The most recipients of one message; past it RCPT answers 452 (RFC 5321 section 4.5.3.1.10: the
/// client sends the rest in another transaction).
pub const MAX_RECIPIENTS: usize = 10_000;

/// What the checks of MAIL and RCPT keep between commands, for the whole session.
pub struct Gate {
    /// X-RBL header lines for every message of this session (looked up once)
    rbl_headers: Vec<String>,
    rbl_done: bool,
    rbl_reject: Option<String>,
    /// the resolver for RBL and RETURNMXCHECK, made at the first lookup (`None`: none to ask)
    dns: OnceCell<Option<dns::Resolver>>,
    local_ips: LocalIps,
    /// qmail-verify, reached at the first check that needs it
    verifier: verify::Client,
}

impl Gate {
    pub fn new(cfg: &Config, env: &Env) -> Self {
        Gate {
            rbl_headers: Vec::new(),
            rbl_done: false,
            rbl_reject: None,
            dns: OnceCell::new(),
            local_ips: LocalIps::new(env.local_ip),
            verifier: verify::Client::new(&cfg.home, cfg.verifysocket.as_deref()),
        }
    }

    /// MAIL: the sender's checks; taken, it starts the transaction.
    pub fn mail(
        &mut self,
        conn: &mut Conn,
        cfg: &Config,
        env: &Env,
        txn: &mut Transaction,
        arg: &[u8],
    ) -> Flow {
        Command { conn, cfg, env, txn, gate: self }.mail(arg)
    }

    /// RCPT: the recipient's checks; taken, it joins the transaction.
    pub fn rcpt(
        &mut self,
        conn: &mut Conn,
        cfg: &Config,
        env: &Env,
        txn: &mut Transaction,
        arg: &[u8],
    ) -> Flow {
        Command { conn, cfg, env, txn, gate: self }.rcpt(arg)
    }

    /// The X-RBL lines of the RBL lists that only add a header, for every message.
    pub fn rbl_headers(&self) -> &[String] {
        &self.rbl_headers
    }

    /// At DATA: the verifier's co-process goes (verify.rs).
    pub fn close_coprocess(&mut self) {
        self.verifier.close_coprocess();
    }
}

/// One MAIL or RCPT command and what it reads and changes.
struct Command<'s, 'a> {
    conn: &'s mut Conn<'a>,
    cfg: &'s Config,
    env: &'s Env,
    txn: &'s mut Transaction,
    gate: &'s mut Gate,
}

impl Command<'_, '_> {
    fn mail(&mut self, arg: &[u8]) -> Flow {
        let Ok(path) = self.parse(arg, b"from:") else {
            return self.conn.say(555, "syntax error (#5.5.4)");
        };
        // the null sender, `<>` or `#@[]`
        let null = path.addr.is_empty() || path.addr == b"#@[]";
        let Ok(sender) = Address::new(path.addr.clone()) else {
            return self.conn.say(555, "syntax error (#5.5.4)");
        };
        self.txn.reset();
        if self.env.authrequired && !self.env.authorized && self.txn.auth_user().is_none() {
            return self.conn.refuse(530, "authentication required (#5.7.0)");
        }
        if self.cfg.databytes > 0 {
            if let Some(size) = smtp::size_param(&path.params) {
                if size > self.cfg.databytes {
                    return self.conn.refuse(
                        552,
                        "sorry, that message size exceeds my databytes limit (#5.3.4)",
                    );
                }
            }
        }
        let addr = path.addr.as_slice();
        let good = self.cfg.goodmailfrom.matches(addr);
        if !good {
            if self.cfg.badmailfrom.matches(addr) {
                return self
                    .conn
                    .refuse(553, "sorry, your envelope sender is in my badmailfrom list (#5.7.1)");
            }
            if self.env.remote_host == "unknown" && self.cfg.badmailfrom_unknown.matches(addr) {
                let text = format!(
                    "sorry, your envelope sender is not accepted from your host {} without reverse DNS (#5.7.1)",
                    self.env.remote_ip
                );
                return self.conn.refuse(553, &text);
            }
        }
        if null && self.env.nobounce {
            return self.conn.refuse(554, "sorry, I don't accept bounce messages (#5.7.1)");
        }
        if !good && !null && self.env.sanitycheck && !checks::sane_sender(addr) {
            return self.conn.refuse(554, "sorry, invalid envelope sender address (#5.1.7)");
        }
        if self.txn.relay().is_none() && !null && self.cfg.relaymailfrom.matches(addr) {
            self.txn.relay_once();
        }
        if !good && self.env.rbl && self.txn.relay().is_none() {
            self.rbl_lookup();
            if let Some(text) = self.gate.rbl_reject.clone() {
                return self.conn.refuse(553, &text);
            }
        }
        if !good && !null && self.env.returnmxcheck {
            if let Some(flow) = self.return_mx_check(addr) {
                return flow;
            }
        }
        if !good && !null && !self.cfg.goodmailaddr.matches_catchall(addr) {
            if let Some(mode) = self.env.sendercheck {
                match self.sender_check(addr, mode) {
                    Ok(None) => {}
                    Ok(Some(flow)) => return flow,
                    Err(e) => return self.conn.control_failure(e),
                }
            }
        }
        self.conn.log().at(2, format_args!("mail from <{}>", String::from_utf8_lossy(addr)));
        self.txn.set_sender(sender);
        self.conn.reply_as(250, "2.1.0", "ok");
        Flow::Continue
    }

    fn rcpt(&mut self, arg: &[u8]) -> Flow {
        if self.txn.sender().is_none() {
            return self.conn.say(503, "MAIL first (#5.5.1)");
        }
        let Ok(path) = self.parse(arg, b"to:") else {
            return self.conn.say(555, "syntax error (#5.5.4)");
        };
        if path.addr.is_empty() {
            return self.conn.say(555, "syntax error (#5.5.4)");
        }
        let addr = path.addr.as_slice();
        let (local, _) = qmail::address::split(addr);
        if self.env.blockrelayprobe && local.iter().any(|b| matches!(b, b'@' | b'%' | b'!')) {
            let text = format!("sorry, we don't relay for [{}] (#5.7.1)", self.env.remote_ip);
            return self.conn.refuse(553, &text);
        }
        if self.txn.relay().is_none() && path.ambiguous() {
            let text = format!(
                "sorry, we don't relay for [{}]: no source routes, quotes, %, ! or double @ (#5.7.1)",
                self.env.remote_ip
            );
            return self.conn.refuse(553, &text);
        }
        if self.cfg.badrcptto.matches(addr) {
            return self
                .conn
                .refuse(553, "sorry, your envelope recipient is in my badrcptto list (#5.7.1)");
        }
        if self.txn.relay().is_none() {
            match checks::rcpt_allowed(self.cfg, self.env, addr) {
                Ok(true) => {}
                Ok(false) => {
                    let text = format!(
                        "sorry, that domain isn't in my list of allowed rcpthosts, relaying denied from your location [{}] (#5.7.1)",
                        self.env.remote_ip
                    );
                    return self.conn.refuse(553, &text);
                }
                Err(e) => return self.conn.control_failure(e),
            }
        }
        let count = self.txn.rcpts().len() as u64 + 1;
        if self.env.maxrcptcount > 0 && count > self.env.maxrcptcount {
            return self.conn.refuse(553, "sorry, too many recipients (#5.7.1)");
        }
        if self.txn.rcpts().len() >= MAX_RECIPIENTS {
            return self
                .conn
                .say(452, "too many recipients, send the rest in another message (#4.5.3)");
        }
        let null = self.txn.sender().is_some_and(|s| s.is_null() || s.is_double_bounce());
        if null && !self.txn.rcpts().is_empty() {
            return self.conn.refuse(
                550,
                "sorry, bounce messages should have a single envelope recipient (#5.7.1)",
            );
        }
        if self.env.rcptcheck && !self.cfg.goodmailaddr.matches_catchall(addr) {
            match checks::domain_is_local(self.cfg, addr) {
                Ok(true) => {
                    if let Some(flow) = self.rcpt_check(addr) {
                        return flow;
                    }
                }
                Ok(false) => {}
                Err(e) => return self.conn.control_failure(e),
            }
        }
        let mut full = path.addr.clone();
        if let Some(suffix) = self.txn.relay() {
            full.extend_from_slice(suffix);
        }
        let Ok(rcpt) = Address::new(full) else {
            return self.conn.say(555, "syntax error (#5.5.4)");
        };
        self.conn.log().at(2, format_args!("rcpt to <{rcpt}>"));
        self.txn.add_rcpt(rcpt);
        if self.env.tarpitcount > 0 && count >= self.env.tarpitcount {
            std::thread::sleep(Duration::from_secs(self.env.tarpitdelay));
        }
        self.conn.reply_as(250, "2.1.5", "ok");
        Flow::Continue
    }

    fn parse(&mut self, arg: &[u8], keyword: &[u8]) -> Result<smtp::Path, ()> {
        let mut path = match smtp::parse_path(arg, keyword) {
            Ok(path) => path,
            Err(PathError::Syntax | PathError::TooLong) => return Err(()),
        };
        let ips = &mut self.gate.local_ips;
        path.replace_local_ip(self.cfg.localiphost.as_bytes(), |ip| ips.contains(ip))
            .map_err(|_| ())?;
        Ok(path)
    }

    /// RETURNMXCHECK: the sender's domain must have an MX, A or AAAA record.
    fn return_mx_check(&mut self, addr: &[u8]) -> Option<Flow> {
        let domain = String::from_utf8_lossy(qmail::address::split(addr).1?).into_owned();
        if smtp::bracket_ip(domain.as_bytes()).is_some() {
            return None;
        }
        let exists = match resolver(&self.gate.dns) {
            Some(dns) => dns.mail_domain_exists(&domain),
            None => Err(dns::DnsError::Soft("no resolver".into())),
        };
        match exists {
            Ok(true) => None,
            Err(dns::DnsError::Soft(_)) => {
                self.conn.reply(
                    421,
                    "unable to verify your envelope sender domain, try again later (#4.3.0)",
                );
                Some(Flow::Continue)
            }
            Ok(false) | Err(dns::DnsError::Hard) => {
                Some(self.conn.refuse(
                    554,
                    "sorry, your envelope sender domain has no MX or A record (#5.1.8)",
                ))
            }
        }
    }

    /// SENDERCHECK: local senders through qmail-verify (a mailbox over quota still exists);
    /// others by mode.
    fn sender_check(
        &mut self,
        addr: &[u8],
        mode: SenderCheck,
    ) -> Result<Option<Flow>, qmail::control::ControlError> {
        if checks::domain_is_local(self.cfg, addr)? {
            return Ok(match self.gate.verifier.ask(addr) {
                Reply::Deliverable => None,
                Reply::Refused(text) if carries(&text, "5.2.2") => None,
                Reply::Refused(text) => Some(self.conn.refuse(554, &text)),
                Reply::Temporary(text) if carries(&text, "4.2.2") => None,
                reply => self.verify_trouble(reply),
            });
        }
        let domain = qmail::address::split(addr).1.unwrap_or_default();
        let refused = match mode {
            SenderCheck::Plain => false,
            SenderCheck::Loose => !checks::domain_is_ours(self.cfg, domain)?,
            SenderCheck::Strict => true,
        };
        Ok(refused.then(|| {
            self.conn.refuse(554, "sorry, your envelope sender is not allowed here (#5.7.1)")
        }))
    }

    /// RCPTCHECK for a recipient in a `locals` domain: `D` refuses it (550, or 552 over quota,
    /// after BADRCPTDELAY), `Z` defers it (451, or 452 over quota); `None` takes it.
    fn rcpt_check(&mut self, addr: &[u8]) -> Option<Flow> {
        match self.gate.verifier.ask(addr) {
            Reply::Deliverable => None,
            Reply::Refused(text) => {
                let code = if carries(&text, "5.2.2") { 552 } else { 550 };
                if self.env.badrcptdelay > 0 {
                    let _ = self.conn.flush();
                    std::thread::sleep(Duration::from_secs(self.env.badrcptdelay));
                }
                Some(self.conn.refuse(code, &text))
            }
            Reply::Temporary(text) if carries(&text, "4.2.2") => {
                self.conn.log().at(3, format_args!("452 {text} ({})", self.env.remote_ip));
                Some(self.conn.say(452, &text))
            }
            reply => self.verify_trouble(reply),
        }
    }

    /// The verifier could not say (`Z`, or no answer at all): 451, never a refusal; with
    /// LDAPSOFTOK the address is taken.
    fn verify_trouble(&mut self, reply: Reply) -> Option<Flow> {
        let text = match reply {
            Reply::Temporary(text) => text,
            Reply::Unavailable(why) => {
                self.conn.log().at(3, format_args!("qmail-verify unavailable: {why}"));
                "unable to verify the address now, try again later (#4.3.0)".to_string()
            }
            Reply::Deliverable | Reply::Refused(_) => return None,
        };
        if self.env.ldapsoftok {
            self.conn.log().at(3, format_args!("LDAPSOFTOK: taken unverified: {text}"));
            return None;
        }
        self.conn.log().at(3, format_args!("451 {text} ({})", self.env.remote_ip));
        Some(self.conn.say(451, &text))
    }

    /// The RBL lookups, once per session: X-RBL headers and the first rejecting list.
    fn rbl_lookup(&mut self) {
        if std::mem::replace(&mut self.gate.rbl_done, true) {
            return;
        }
        let Ok(ip) = self.env.remote_ip.parse::<IpAddr>() else { return };
        let Some(dns) = resolver(&self.gate.dns) else { return };
        for rbl in &self.cfg.rbl {
            // not listed, or the lookup failed: both are ignored
            let answers = match dns.ipv4(&dns::dnsbl_name(ip, &rbl.base)) {
                Ok(answers) if !answers.is_empty() => answers,
                _ => continue,
            };
            if rbl.matchon.is_some_and(|m| !answers.contains(&m)) {
                continue;
            }
            self.conn.log().at(2, format_args!("{ip} is listed in {}", rbl.base));
            if rbl.header_only || self.env.rblonlyheader {
                let header = match rbl.matchon {
                    Some(m) => format!(
                        "X-RBL: ({}) matches with {m} and tells us {}",
                        rbl.base, rbl.message
                    ),
                    None => format!("X-RBL: ({}) tells us {}", rbl.base, rbl.message),
                };
                self.gate.rbl_headers.push(header);
            } else if self.gate.rbl_reject.is_none() {
                self.gate.rbl_reject = Some(format!(
                    "sorry, your mailserver [{ip}] is rejected by {}: {} (#5.7.1)",
                    rbl.base, rbl.message
                ));
            }
        }
    }
}

/// Whether a verifier's text carries the enhanced status code `code` (`(#X.Y.Z)`).
fn carries(text: &str, code: &str) -> bool {
    io::enhanced(500, text).is_some_and(|c| c == code)
}

/// The resolver of RBL and RETURNMXCHECK (DNSCACHEIP, doc/qmail-smtpd.8), made at the first
/// lookup; `None` when there is none to ask.
fn resolver(cell: &OnceCell<Option<dns::Resolver>>) -> Option<&dns::Resolver> {
    cell.get_or_init(|| dns::Config::dnscache().and_then(|c| dns::Resolver::new(&c).ok())).as_ref()
}
