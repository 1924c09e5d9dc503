//! qmail-smtpd's session: it reads the environment and the control files, greets the client
//! (or refuses it at the greeting), and answers its commands in turn: HELO/EHLO, RSET, NOOP,
//! VRFY, HELP, QUIT and AUTH here, MAIL and RCPT in envelope.rs, DATA in data.rs
//! (doc/qmail-smtpd.8).
//!
//! Replies to MAIL, RCPT and RSET are held for PIPELINING; every other reply is flushed at
//! once.

use crate::auth;
use crate::config::{Config, Env, SmtpAuth, GREETING_REFUSAL_TIMEOUT};
use crate::conn::{Conn, End, Flow};
use crate::data;
use crate::envelope::Gate;
use crate::io::Io;
use crate::log::Log;
use crate::transaction::Transaction;
use qmail::auth::smtp::Answer;
use qmail::control::Cache;
use qmail::smtp::{Input, Verb};
use std::time::Duration;

/// One SMTP session.
struct Session<'a> {
    conn: Conn<'a>,
    cfg: Config,
    env: Env,
    /// what the client called itself at HELO or EHLO
    helo: Option<Vec<u8>>,
    txn: Transaction,
    gate: Gate,
}

/// Run a whole session on `io`, reading the control files through `controls`.
pub fn run(io: &mut Io, controls: &Cache) -> End {
    let env = Env::read();
    let log = Log::new(env.loglevel);
    let home = qmail::auto::home();
    if std::env::set_current_dir(&home).is_err() {
        log.at(1, format_args!("fatal: unable to chdir to {}", home.display()));
        io.reply(421, "unable to chdir to qmail home (#4.3.0)");
        return End::Dropped;
    }
    let cfg = match Config::load(&home, &env, controls) {
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
    // POP-before-SMTP comes as RELAYCLIENT too, set by pbscheck in front (doc/pbscheck.8)
    let relay = env.relayclient.clone();
    if env.smtps {
        // implicit TLS: no plaintext byte is ever sent, so a problem ends the connection
        let Some(path) = cfg.tls_cert.as_deref() else {
            log.at(1, format_args!("fatal: SMTPS without a certificate (control/smtpcert)"));
            return End::Dropped;
        };
        let config = match cfg.tls(path) {
            Ok(config) => config,
            Err(e) => {
                log.at(1, format_args!("fatal: SMTPS: {e}"));
                return End::Dropped;
            }
        };
        if let Err(e) = io.start_tls(config) {
            log.at(2, format_args!("SMTPS handshake failed: {e:?}"));
            return End::Dropped;
        }
    }
    let gate = Gate::new(&cfg, &env);
    let mut s = Session {
        conn: Conn::new(io, log, &env),
        cfg,
        env,
        helo: None,
        txn: Transaction::new(relay),
        gate,
    };
    if s.env.greeting550.is_some() || s.env.greeting421.is_some() {
        return s.refuse_greeting();
    }
    let greeting = s.with_greeting("ESMTP");
    s.conn.line(format_args!("220 {greeting}"));
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

    /// The commands, one after another, until the session ends.
    fn chat(&mut self) -> End {
        loop {
            let input = match self.conn.next() {
                Ok(input) => input,
                Err(end) => return end,
            };
            let cmd = match input {
                Input::TooLong => {
                    self.conn.reply(500, "line too long (#5.5.2)");
                    let _ = self.conn.flush();
                    continue;
                }
                Input::Command(cmd) => cmd,
            };
            let flow = match cmd.verb {
                Verb::Helo => self.helo(cmd.arg, false),
                Verb::Ehlo => self.helo(cmd.arg, true),
                Verb::Mail => {
                    self.gate.mail(&mut self.conn, &self.cfg, &self.env, &mut self.txn, &cmd.arg)
                }
                Verb::Rcpt => {
                    self.gate.rcpt(&mut self.conn, &self.cfg, &self.env, &mut self.txn, &cmd.arg)
                }
                Verb::Data => data::data(
                    &mut self.conn,
                    &self.cfg,
                    &self.env,
                    self.helo.as_deref(),
                    &mut self.txn,
                    &mut self.gate,
                ),
                Verb::Rset => {
                    self.txn.reset();
                    self.conn.reply(250, "flushed");
                    Flow::Continue
                }
                Verb::Noop => self.conn.say(250, "ok"),
                Verb::Vrfy => self.conn.say(252, "send some mail, i'll try my best"),
                Verb::Help => self.conn.say(214, "qmail-ldap-rs: this is an SMTP server"),
                Verb::Quit => {
                    let bye = format!("{} Goodbye.", self.cfg.me);
                    self.conn.reply(221, &bye);
                    Flow::End(End::Quit)
                }
                Verb::Auth => self.auth(&cmd.arg),
                Verb::Starttls => self.starttls(&cmd.arg),
                Verb::Unknown => self.conn.say(502, "unimplemented (#5.5.1)"),
            };
            match flow {
                Flow::Continue => {
                    if !matches!(cmd.verb, Verb::Mail | Verb::Rcpt | Verb::Rset)
                        && self.conn.flush().is_err()
                    {
                        return End::Dropped;
                    }
                }
                Flow::End(end) => return end,
            }
        }
    }

    /// 550GREETING / 421GREETING (doc/qmail-smtpd.8, "Greeting refusal"): refuse at the greeting;
    /// only QUIT works.
    fn refuse_greeting(&mut self) -> End {
        let (code, text) = match (&self.env.greeting550, &self.env.greeting421) {
            (Some(t), _) => (554, non_empty(t, "administratively denied (#5.7.1)")),
            (None, Some(t)) => (421, non_empty(t, "temporarily not available (#4.3.2)")),
            (None, None) => return End::Dropped,
        };
        self.conn.log().at(2, format_args!("greeting refused: {code} {text}"));
        self.conn.line(format_args!("{code} {} {text}", self.cfg.me));
        if self.env.smtp550disconnect {
            return End::Dropped;
        }
        self.conn.set_timeout(Duration::from_secs(GREETING_REFUSAL_TIMEOUT));
        loop {
            let cmd = match self.conn.next() {
                Ok(Input::Command(cmd)) => cmd,
                Ok(Input::TooLong) => {
                    self.conn.reply(500, "line too long (#5.5.2)");
                    continue;
                }
                Err(end) => return end,
            };
            match cmd.verb {
                Verb::Quit => {
                    let bye = format!("{} Goodbye.", self.cfg.me);
                    self.conn.reply(221, &bye);
                    return End::Quit;
                }
                Verb::Helo | Verb::Ehlo if code == 421 => {
                    self.conn.reply(421, &text);
                }
                _ => self.conn.reply(503, "bad sequence of commands (#5.5.1)"),
            }
            if self.conn.flush().is_err() {
                return End::Dropped;
            }
        }
    }

    fn helo(&mut self, arg: Vec<u8>, extended: bool) -> Flow {
        self.txn.reset();
        let first = self.with_greeting("");
        if extended {
            self.conn.line(format_args!("250-{first}"));
            self.conn.line("250-PIPELINING");
            if self.cfg.databytes > 0 {
                self.conn.line(format_args!("250-SIZE {}", self.cfg.databytes));
            }
            if self.cfg.tls_cert.is_some() && self.conn.tls().is_none() {
                self.conn.line("250-STARTTLS");
            }
            if self.auth_allowed() == Ok(true) && self.txn.auth_user().is_none() {
                self.conn.line(format_args!("250-{}", auth::OFFERED));
            }
            self.conn.line("250-ENHANCEDSTATUSCODES");
            self.conn.line("250 8BITMIME");
        } else {
            self.conn.line(format_args!("250 {first}"));
        }
        self.helo = Some(arg);
        Flow::Continue
    }

    /// STARTTLS (RFC 3207): with a certificate and not yet in TLS, `220`, the handshake, and a
    /// fresh start (no HELO, no transaction). A certificate that cannot be used is `454` and a
    /// log line naming the file; a failed handshake ends the session.
    fn starttls(&mut self, arg: &[u8]) -> Flow {
        if !arg.is_empty() {
            return self.conn.say(501, "STARTTLS takes no argument (#5.5.4)");
        }
        if self.conn.tls().is_some() {
            return self.conn.say(503, "already in TLS (#5.5.1)");
        }
        let Some(path) = self.cfg.tls_cert.clone() else {
            return self.conn.say(502, "STARTTLS not available (#5.5.1)");
        };
        let config = match self.cfg.tls(&path) {
            Ok(config) => config,
            Err(e) => {
                self.conn.log().at(1, format_args!("warning: STARTTLS: {e}"));
                return self.conn.say(454, "TLS not available: configuration problem (#4.3.0)");
            }
        };
        self.conn.reply(220, "ready to start TLS");
        if let Err(e) = self.conn.start_tls(config) {
            self.conn.log().at(2, format_args!("STARTTLS handshake failed: {e:?}"));
            return Flow::End(End::Dropped);
        }
        self.helo = None;
        self.txn.reset();
        Flow::Continue
    }

    /// Whether AUTH may be used now: `Err` when SMTPAUTH is not set; `Ok(false)` when it needs
    /// TLS first (doc/qmail-smtpd.8, "SMTP AUTH").
    fn auth_allowed(&self) -> Result<bool, ()> {
        let in_tls = self.conn.tls().is_some();
        match self.env.smtpauth {
            None => Err(()),
            Some(SmtpAuth::Plaintext) => Ok(true),
            Some(SmtpAuth::TlsRequired) => Ok(in_tls),
            Some(SmtpAuth::Default) => Ok(in_tls || self.cfg.tls_cert.is_none()),
        }
    }

    /// AUTH (RFC 4954): LOGIN or PLAIN, checked by bin/auth_smtp. A success lets the client
    /// relay until the session ends; a failure is answered after a second and followed by
    /// four more (doc/qmail-smtpd.8, "SMTP AUTH").
    fn auth(&mut self, arg: &[u8]) -> Flow {
        match self.auth_allowed() {
            Err(()) => return self.conn.say(502, "AUTH not available (#5.5.1)"),
            Ok(false) => {
                return self
                    .conn
                    .say(538, "encryption required for AUTH: STARTTLS first (#5.7.11)");
            }
            Ok(true) => {}
        }
        if self.txn.auth_user().is_some() {
            return self.conn.say(503, "you're already authenticated (#5.5.0)");
        }
        if self.txn.sender().is_some() {
            return self.conn.say(503, "no AUTH during a mail transaction (#5.5.1)");
        }
        let (word, initial) = auth::split_arg(arg);
        let Some(mech) = auth::Mechanism::parse(word) else {
            return self.conn.say(504, "unrecognized authentication type (#5.5.4)");
        };
        let fields = match self.exchange(mech, initial) {
            Ok(Some(fields)) => fields,
            Ok(None) => return self.conn.say(501, "authentication exchange aborted (#5.0.0)"),
            Err(end) => return Flow::End(end),
        };
        let outcome = auth::check(&self.cfg.home, &auth::request(mech, &fields));
        let log = *self.conn.log();
        let ip = self.env.remote_ip.clone();
        match outcome {
            Ok(Answer::Ok(user)) => {
                let user = String::from_utf8_lossy(&user).into_owned();
                log.at(2, format_args!("AUTH {user} from {ip}"));
                self.txn.authenticated(user);
                self.conn.say(235, "nice to meet you")
            }
            Ok(Answer::Failed) => {
                log.at(3, format_args!("AUTH failed from {ip}"));
                self.failed(535, "authentication failure (#5.7.8)")
            }
            Ok(Answer::Disabled) => {
                log.at(3, format_args!("AUTH of a disabled account from {ip}"));
                self.failed(535, "authentication failure: account disabled (#5.7.8)")
            }
            Ok(Answer::Malformed) => self.failed(501, "authentication exchange failed (#5.5.2)"),
            Err(why) => {
                log.at(1, format_args!("warning: AUTH: {why}"));
                self.failed(454, "temporary authentication failure (#4.3.0)")
            }
        }
    }

    /// The client's part of the exchange: the base64 fields for auth_smtp, as sent. `None`
    /// when the client aborted (`*`) or sent a line longer than any credentials.
    fn exchange(
        &mut self,
        mech: auth::Mechanism,
        initial: Option<&[u8]>,
    ) -> Result<Option<Vec<zeroize::Zeroizing<Vec<u8>>>>, End> {
        let mut fields = Vec::new();
        let prompts: &[&str] = match mech {
            auth::Mechanism::Login => &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"],
            auth::Mechanism::Plain => &[""],
        };
        for (i, prompt) in prompts.iter().enumerate() {
            let line = match (i, initial) {
                (0, Some(first)) => first.to_vec(),
                _ => {
                    self.conn.line(format_args!("334 {prompt}"));
                    if self.conn.flush().is_err() {
                        return Err(End::Dropped);
                    }
                    match self.conn.auth_line(auth::LINE_MAX)? {
                        Some(line) => line,
                        None => return Ok(None),
                    }
                }
            };
            let line = zeroize::Zeroizing::new(line);
            if line[..] == b"*"[..] {
                return Ok(None);
            }
            fields.push(line);
        }
        Ok(Some(fields))
    }

    /// A failed AUTH: wait, answer, wait more, so that guessing is slow.
    fn failed(&mut self, code: u16, text: &str) -> Flow {
        let (before, after) = auth::failure_delays();
        std::thread::sleep(before);
        self.conn.reply(code, text);
        if self.conn.flush().is_err() {
            return Flow::End(End::Dropped);
        }
        std::thread::sleep(after);
        Flow::Continue
    }
}

fn non_empty(text: &str, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text.to_string()
    }
}
