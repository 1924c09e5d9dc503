//! qmail-smtpd's dialogue: the greeting (and its refusal), HELO/EHLO, MAIL and RCPT with the
//! checks of doc/qmail-smtpd.8 ("Checks") in their order, RSET, NOOP, VRFY, HELP, QUIT; DATA is in
//! data.rs.
//!
//! Replies to MAIL, RCPT and RSET are held for PIPELINING; every other reply is flushed at
//! once. Recipients per message are bounded by [`MAX_RECIPIENTS`].

use crate::checks::{self, LocalIps, Verify};
use crate::config::{Config, Env, SenderCheck, GREETING_REFUSAL_TIMEOUT};
use crate::data;
use crate::io::{Io, IoError};
use crate::log::Log;
use crate::verify::{self, Reply};
use qmail::address::Address;
use qmail::control::Control;
use qmail::dns;
use qmail::smtp::{self, CommandReader, Input, PathError, Verb};
use std::cell::OnceCell;
use std::net::IpAddr;
use std::time::Duration;

/// The most recipients of one message; past it RCPT answers 452 (RFC 5321 section 4.5.3.1.10: the
/// client sends the rest in another transaction).
pub const MAX_RECIPIENTS: usize = 10_000;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// the client said QUIT
    Quit,
    /// the client closed the connection
    Closed,
    /// the server ended it (after a final reply, if it could send one)
    Dropped,
}

/// What a command handler wants next.
pub enum Flow {
    Continue,
    End(End),
}

/// The state of one SMTP session.
pub struct Session<'a> {
    pub io: &'a mut Io,
    pub cfg: Config,
    pub env: Env,
    pub log: Log,
    pub home: std::path::PathBuf,
    pub reader: CommandReader,
    pub helo: Option<Vec<u8>>,
    /// the sender of the current transaction (MAIL seen)
    pub sender: Option<Address>,
    pub rcpts: Vec<Address>,
    /// RELAYCLIENT as it applies now (relaymailfrom may switch it on for one transaction)
    pub relay: Option<Vec<u8>>,
    /// what RSET restores `relay` to
    initial_relay: Option<Vec<u8>>,
    /// X-RBL header lines for every message of this session (looked up once)
    pub rbl_headers: Vec<String>,
    rbl_done: bool,
    rbl_reject: Option<String>,
    /// the resolver for RBL and RETURNMXCHECK, made at the first lookup (`None`: none to ask)
    dns: OnceCell<Option<dns::Resolver>>,
    local_ips: LocalIps,
    noted_seams: bool,
    /// qmail-verify, reached at the first check that needs it
    pub verifier: verify::Client,
}

/// Run a whole session on `io`.
pub fn run(io: &mut Io) -> End {
    let env = Env::read();
    let log = Log::new(env.loglevel);
    let home = qmail::auto::home();
    if std::env::set_current_dir(&home).is_err() {
        log.at(1, format_args!("fatal: unable to chdir to {}", home.display()));
        io.reply(421, "unable to chdir to qmail home (#4.3.0)");
        return End::Dropped;
    }
    let cfg = match Config::load(&Control::new(&home), &env) {
        Ok(cfg) => cfg,
        Err(e) => {
            log.at(1, format_args!("fatal: {e}"));
            io.reply(421, "unable to read controls (#4.3.0)");
            return End::Dropped;
        }
    };
    io.set_timeout(Duration::from_secs(cfg.timeout));
    log.at(
        2,
        format_args!(
            "connection from {} ({}) to {}",
            env.remote_ip, env.remote_host, env.local_host
        ),
    );
    let mut relay = env.relayclient.clone();
    if relay.is_none() && std::env::var_os("NOPBS").is_none() {
        if let Verify::Accept = checks::pbs_relay(&env.remote_ip) {
            relay = Some(Vec::new());
        }
    }
    let local_ips = LocalIps::new(env.local_ip);
    let verifier = verify::Client::new(&home, cfg.verifysocket.as_deref());
    let mut s = Session {
        io,
        cfg,
        env,
        log,
        home,
        reader: CommandReader::new(),
        helo: None,
        sender: None,
        rcpts: Vec::new(),
        relay: relay.clone(),
        initial_relay: relay,
        rbl_headers: Vec::new(),
        rbl_done: false,
        rbl_reject: None,
        dns: OnceCell::new(),
        local_ips,
        noted_seams: false,
        verifier,
    };
    if s.env.greeting550.is_some() || s.env.greeting421.is_some() {
        return s.refuse_greeting();
    }
    let greeting = s.with_greeting("ESMTP");
    s.io.line(format_args!("220 {greeting}"));
    s.chat()
}

impl Session<'_> {
    /// `ME WORDS[ GREETING]`.
    fn with_greeting(&self, words: &str) -> String {
        let mut g = self.cfg.me.clone();
        if !words.is_empty() {
            g.push(' ');
            g.push_str(words);
        }
        if !self.cfg.greeting.is_empty() {
            g.push(' ');
            g.push_str(&self.cfg.greeting);
        }
        g.trim_end().to_string()
    }

    /// The next command; `Err` ends the session (after the timeout reply, if it was one).
    fn next(&mut self) -> Result<Input, End> {
        loop {
            let (n, got) = self.reader.push(self.io.data());
            self.io.consume(n);
            if let Some(input) = got {
                return Ok(input);
            }
            self.fill()?;
        }
    }

    /// Read more client bytes; a timeout answers 451 and ends the session.
    pub fn fill(&mut self) -> Result<(), End> {
        match self.io.fill() {
            Ok(()) => Ok(()),
            Err(IoError::Timeout) => {
                self.log.at(3, format_args!("timeout from {}", self.env.remote_ip));
                self.io.reply(451, "timeout (#4.4.2)");
                Err(End::Dropped)
            }
            Err(IoError::Eof) => Err(End::Closed),
            Err(IoError::Broken) => Err(End::Dropped),
        }
    }

    fn chat(&mut self) -> End {
        loop {
            let input = match self.next() {
                Ok(input) => input,
                Err(end) => return end,
            };
            let cmd = match input {
                Input::TooLong => {
                    self.io.reply(500, "line too long (#5.5.2)");
                    let _ = self.io.flush();
                    continue;
                }
                Input::Command(cmd) => cmd,
            };
            let flow = match cmd.verb {
                Verb::Helo => self.helo(cmd.arg, false),
                Verb::Ehlo => self.helo(cmd.arg, true),
                Verb::Mail => self.mail(&cmd.arg),
                Verb::Rcpt => self.rcpt(&cmd.arg),
                Verb::Data => data::data(self),
                Verb::Rset => {
                    self.reset();
                    self.io.reply(250, "flushed");
                    Flow::Continue
                }
                Verb::Noop => self.say(250, "ok"),
                Verb::Vrfy => self.say(252, "send some mail, i'll try my best"),
                Verb::Help => self.say(214, "qmail-ldap-rs: this is an SMTP server"),
                Verb::Quit => {
                    let bye = format!("{} Goodbye.", self.cfg.me);
                    self.io.reply(221, &bye);
                    Flow::End(End::Quit)
                }
                Verb::Auth => self.auth(),
                Verb::Starttls => self.say(502, "STARTTLS not available (#5.5.1)"),
                Verb::Unknown => self.say(502, "unimplemented (#5.5.1)"),
            };
            match flow {
                Flow::Continue => {
                    if !matches!(cmd.verb, Verb::Mail | Verb::Rcpt | Verb::Rset)
                        && self.io.flush().is_err()
                    {
                        return End::Dropped;
                    }
                }
                Flow::End(end) => return end,
            }
        }
    }

    fn say(&mut self, code: u16, text: &str) -> Flow {
        self.io.reply(code, text);
        Flow::Continue
    }

    /// A policy rejection: the reply, then with SMTP550DISCONNECT the end of the session.
    fn refuse(&mut self, code: u16, text: &str) -> Flow {
        self.log.at(3, format_args!("{code} {text} ({})", self.env.remote_ip));
        self.io.reply(code, text);
        if self.env.smtp550disconnect && code >= 500 {
            return Flow::End(End::Dropped);
        }
        Flow::Continue
    }

    /// End the transaction; relaying goes back to RELAYCLIENT's initial value.
    pub fn reset(&mut self) {
        self.sender = None;
        self.rcpts = Vec::new();
        self.relay = self.initial_relay.clone();
    }

    /// 550GREETING / 421GREETING (doc/qmail-smtpd.8, "Greeting refusal"): refuse at the greeting;
    /// only QUIT works.
    fn refuse_greeting(&mut self) -> End {
        let (code, text) = match (&self.env.greeting550, &self.env.greeting421) {
            (Some(t), _) => (554, non_empty(t, "administratively denied (#5.7.1)")),
            (None, Some(t)) => (421, non_empty(t, "temporarily not available (#4.3.2)")),
            (None, None) => return End::Dropped,
        };
        self.log.at(2, format_args!("greeting refused: {code} {text}"));
        self.io.line(format_args!("{code} {} {text}", self.cfg.me));
        if self.env.smtp550disconnect {
            return End::Dropped;
        }
        self.io.set_timeout(Duration::from_secs(GREETING_REFUSAL_TIMEOUT));
        loop {
            let cmd = match self.next() {
                Ok(Input::Command(cmd)) => cmd,
                Ok(Input::TooLong) => {
                    self.io.reply(500, "line too long (#5.5.2)");
                    continue;
                }
                Err(end) => return end,
            };
            match cmd.verb {
                Verb::Quit => {
                    let bye = format!("{} Goodbye.", self.cfg.me);
                    self.io.reply(221, &bye);
                    return End::Quit;
                }
                Verb::Helo | Verb::Ehlo if code == 421 => {
                    self.io.reply(421, &text);
                }
                _ => self.io.reply(503, "bad sequence of commands (#5.5.1)"),
            }
            if self.io.flush().is_err() {
                return End::Dropped;
            }
        }
    }

    fn helo(&mut self, arg: Vec<u8>, extended: bool) -> Flow {
        self.reset();
        let first = self.with_greeting("");
        if extended {
            self.io.line(format_args!("250-{first}"));
            self.io.line("250-PIPELINING");
            if self.cfg.databytes > 0 {
                self.io.line(format_args!("250-SIZE {}", self.cfg.databytes));
            }
            self.io.line("250-ENHANCEDSTATUSCODES");
            self.io.line("250 8BITMIME");
        } else {
            self.io.line(format_args!("250 {first}"));
        }
        self.helo = Some(arg);
        Flow::Continue
    }

    /// AUTH: the seam. Until SMTP AUTH is built, it is "not enabled" (502).
    fn auth(&mut self) -> Flow {
        if self.env.smtpauth {
            self.note_seam("SMTPAUTH");
        }
        self.say(502, "AUTH not available (#5.5.1)")
    }

    fn note_seam(&mut self, name: &str) {
        if !self.noted_seams {
            self.noted_seams = true;
            self.log.at(3, format_args!("{name} is set but not available in this build: ignored"));
        }
    }

    fn parse(&mut self, arg: &[u8], keyword: &[u8]) -> Result<smtp::Path, ()> {
        let mut path = match smtp::parse_path(arg, keyword) {
            Ok(path) => path,
            Err(PathError::Syntax | PathError::TooLong) => return Err(()),
        };
        let liphost = self.cfg.localiphost.clone();
        let ips = &mut self.local_ips;
        path.replace_local_ip(liphost.as_bytes(), |ip| ips.contains(ip)).map_err(|_| ())?;
        Ok(path)
    }

    fn control_failure(&mut self, e: qmail::control::ControlError) -> Flow {
        self.log.at(1, format_args!("fatal: {e}"));
        self.io.reply(421, "unable to read controls (#4.3.0)");
        Flow::End(End::Dropped)
    }

    fn mail(&mut self, arg: &[u8]) -> Flow {
        let Ok(path) = self.parse(arg, b"from:") else {
            return self.say(555, "syntax error (#5.5.4)");
        };
        // the null sender, `<>` or `#@[]`
        let null = path.addr.is_empty() || path.addr == b"#@[]";
        let Ok(sender) = Address::new(path.addr.clone()) else {
            return self.say(555, "syntax error (#5.5.4)");
        };
        self.reset();
        if self.env.authrequired && !self.env.authorized && checks::auth_user().is_none() {
            return self.refuse(530, "authentication required (#5.7.0)");
        }
        if self.cfg.databytes > 0 {
            if let Some(size) = smtp::size_param(&path.params) {
                if size > self.cfg.databytes {
                    return self.refuse(
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
                    .refuse(553, "sorry, your envelope sender is in my badmailfrom list (#5.7.1)");
            }
            if self.env.remote_host == "unknown" && self.cfg.badmailfrom_unknown.matches(addr) {
                let text = format!(
                    "sorry, your envelope sender is not accepted from your host {} without reverse DNS (#5.7.1)",
                    self.env.remote_ip
                );
                return self.refuse(553, &text);
            }
        }
        if null && self.env.nobounce {
            return self.refuse(554, "sorry, I don't accept bounce messages (#5.7.1)");
        }
        if !good && !null && self.env.sanitycheck && !checks::sane_sender(addr) {
            return self.refuse(554, "sorry, invalid envelope sender address (#5.1.7)");
        }
        if self.relay.is_none() && !null && self.cfg.relaymailfrom.matches(addr) {
            self.relay = Some(Vec::new());
        }
        if !good && self.env.rbl && self.relay.is_none() {
            self.rbl_lookup();
            if let Some(text) = self.rbl_reject.clone() {
                return self.refuse(553, &text);
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
                    Err(e) => return self.control_failure(e),
                }
            }
        }
        self.log.at(2, format_args!("mail from <{}>", String::from_utf8_lossy(addr)));
        self.sender = Some(sender);
        self.io.reply_as(250, "2.1.0", "ok");
        Flow::Continue
    }

    /// RETURNMXCHECK: the sender's domain must have an MX, A or AAAA record.
    fn return_mx_check(&mut self, addr: &[u8]) -> Option<Flow> {
        let domain = String::from_utf8_lossy(qmail::address::split(addr).1?).into_owned();
        if smtp::bracket_ip(domain.as_bytes()).is_some() {
            return None;
        }
        let exists = match resolver(&self.dns) {
            Some(dns) => dns.mail_domain_exists(&domain),
            None => Err(dns::DnsError::Soft("no resolver".into())),
        };
        match exists {
            Ok(true) => None,
            Err(dns::DnsError::Soft(_)) => {
                self.io.reply(
                    421,
                    "unable to verify your envelope sender domain, try again later (#4.3.0)",
                );
                Some(Flow::Continue)
            }
            Ok(false) | Err(dns::DnsError::Hard) => {
                Some(self.refuse(
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
        if checks::domain_is_local(&self.cfg, addr)? {
            return Ok(match self.verifier.ask(addr) {
                Reply::Deliverable => None,
                Reply::Refused(text) if carries(&text, "5.2.2") => None,
                Reply::Refused(text) => Some(self.refuse(554, &text)),
                Reply::Temporary(text) if carries(&text, "4.2.2") => None,
                reply => self.verify_trouble(reply),
            });
        }
        let domain = qmail::address::split(addr).1.unwrap_or_default();
        let refused = match mode {
            SenderCheck::Plain => false,
            SenderCheck::Loose => !checks::domain_is_ours(&self.cfg, domain)?,
            SenderCheck::Strict => true,
        };
        Ok(refused
            .then(|| self.refuse(554, "sorry, your envelope sender is not allowed here (#5.7.1)")))
    }

    /// RCPTCHECK for a recipient in a `locals` domain: `D` refuses it (550, or 552 over quota,
    /// after BADRCPTDELAY), `Z` defers it (451, or 452 over quota); `None` takes it.
    fn rcpt_check(&mut self, addr: &[u8]) -> Option<Flow> {
        match self.verifier.ask(addr) {
            Reply::Deliverable => None,
            Reply::Refused(text) => {
                let code = if carries(&text, "5.2.2") { 552 } else { 550 };
                if self.env.badrcptdelay > 0 {
                    let _ = self.io.flush();
                    std::thread::sleep(Duration::from_secs(self.env.badrcptdelay));
                }
                Some(self.refuse(code, &text))
            }
            Reply::Temporary(text) if carries(&text, "4.2.2") => {
                self.log.at(3, format_args!("452 {text} ({})", self.env.remote_ip));
                Some(self.say(452, &text))
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
                self.log.at(3, format_args!("qmail-verify unavailable: {why}"));
                "unable to verify the address now, try again later (#4.3.0)".to_string()
            }
            Reply::Deliverable | Reply::Refused(_) => return None,
        };
        if self.env.ldapsoftok {
            self.log.at(3, format_args!("LDAPSOFTOK: taken unverified: {text}"));
            return None;
        }
        self.log.at(3, format_args!("451 {text} ({})", self.env.remote_ip));
        Some(self.say(451, &text))
    }

    /// The RBL lookups, once per session: X-RBL headers and the first rejecting list.
    fn rbl_lookup(&mut self) {
        if std::mem::replace(&mut self.rbl_done, true) {
            return;
        }
        let Ok(ip) = self.env.remote_ip.parse::<IpAddr>() else { return };
        let Some(dns) = resolver(&self.dns) else { return };
        for rbl in &self.cfg.rbl {
            // not listed, or the lookup failed: both are ignored
            let answers = match dns.ipv4(&dns::dnsbl_name(ip, &rbl.base)) {
                Ok(answers) if !answers.is_empty() => answers,
                _ => continue,
            };
            if rbl.matchon.is_some_and(|m| !answers.contains(&m)) {
                continue;
            }
            self.log.at(2, format_args!("{ip} is listed in {}", rbl.base));
            if rbl.header_only || self.env.rblonlyheader {
                let header = match rbl.matchon {
                    Some(m) => format!(
                        "X-RBL: ({}) matches with {m} and tells us {}",
                        rbl.base, rbl.message
                    ),
                    None => format!("X-RBL: ({}) tells us {}", rbl.base, rbl.message),
                };
                self.rbl_headers.push(header);
            } else if self.rbl_reject.is_none() {
                self.rbl_reject = Some(format!(
                    "sorry, your mailserver [{ip}] is rejected by {}: {} (#5.7.1)",
                    rbl.base, rbl.message
                ));
            }
        }
    }

    fn rcpt(&mut self, arg: &[u8]) -> Flow {
        if self.sender.is_none() {
            return self.say(503, "MAIL first (#5.5.1)");
        }
        let Ok(path) = self.parse(arg, b"to:") else {
            return self.say(555, "syntax error (#5.5.4)");
        };
        if path.addr.is_empty() {
            return self.say(555, "syntax error (#5.5.4)");
        }
        let addr = path.addr.as_slice();
        let (local, _) = qmail::address::split(addr);
        if self.env.blockrelayprobe && local.iter().any(|b| matches!(b, b'@' | b'%' | b'!')) {
            let text = format!("sorry, we don't relay for [{}] (#5.7.1)", self.env.remote_ip);
            return self.refuse(553, &text);
        }
        if self.relay.is_none() && path.ambiguous() {
            let text = format!(
                "sorry, we don't relay for [{}]: no source routes, quotes, %, ! or double @ (#5.7.1)",
                self.env.remote_ip
            );
            return self.refuse(553, &text);
        }
        if self.cfg.badrcptto.matches(addr) {
            return self
                .refuse(553, "sorry, your envelope recipient is in my badrcptto list (#5.7.1)");
        }
        if self.relay.is_none() {
            match checks::rcpt_allowed(&self.cfg, &self.env, addr) {
                Ok(true) => {}
                Ok(false) => {
                    let text = format!(
                        "sorry, that domain isn't in my list of allowed rcpthosts, relaying denied from your location [{}] (#5.7.1)",
                        self.env.remote_ip
                    );
                    return self.refuse(553, &text);
                }
                Err(e) => return self.control_failure(e),
            }
        }
        let count = self.rcpts.len() as u64 + 1;
        if self.env.maxrcptcount > 0 && count > self.env.maxrcptcount {
            return self.refuse(553, "sorry, too many recipients (#5.7.1)");
        }
        if self.rcpts.len() >= MAX_RECIPIENTS {
            return self.say(452, "too many recipients, send the rest in another message (#4.5.3)");
        }
        let null = self.sender.as_ref().is_some_and(|s| s.is_null() || s.is_double_bounce());
        if null && !self.rcpts.is_empty() {
            return self.refuse(
                550,
                "sorry, bounce messages should have a single envelope recipient (#5.7.1)",
            );
        }
        if self.env.rcptcheck && !self.cfg.goodmailaddr.matches_catchall(addr) {
            match checks::domain_is_local(&self.cfg, addr) {
                Ok(true) => {
                    if let Some(flow) = self.rcpt_check(addr) {
                        return flow;
                    }
                }
                Ok(false) => {}
                Err(e) => return self.control_failure(e),
            }
        }
        let mut full = path.addr.clone();
        if let Some(suffix) = &self.relay {
            full.extend_from_slice(suffix);
        }
        let Ok(rcpt) = Address::new(full) else {
            return self.say(555, "syntax error (#5.5.4)");
        };
        self.log.at(2, format_args!("rcpt to <{rcpt}>"));
        self.rcpts.push(rcpt);
        if self.env.tarpitcount > 0 && count >= self.env.tarpitcount {
            std::thread::sleep(Duration::from_secs(self.env.tarpitdelay));
        }
        self.io.reply_as(250, "2.1.5", "ok");
        Flow::Continue
    }
}

/// Whether a verifier's text carries the enhanced status code `code` (`(#X.Y.Z)`).
fn carries(text: &str, code: &str) -> bool {
    crate::io::enhanced(500, text).is_some_and(|c| c == code)
}

fn non_empty(text: &str, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text.to_string()
    }
}

/// The resolver of RBL and RETURNMXCHECK (DNSCACHEIP, doc/qmail-smtpd.8), made at the first
/// lookup; `None` when there is none to ask.
fn resolver(cell: &OnceCell<Option<dns::Resolver>>) -> Option<&dns::Resolver> {
    cell.get_or_init(|| dns::Config::dnscache().and_then(|c| dns::Resolver::new(&c).ok())).as_ref()
}
