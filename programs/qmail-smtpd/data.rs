//! qmail-smtpd's DATA (doc/qmail-smtpd.8, "DATA"): start qmail-queue, answer 354, write the X-RBL
//! and Received lines, then stream the decoded body into the queue as it arrives (memory: one read
//! buffer), and answer with the queue's verdict.
//!
//! The decoder (`qmail::smtp::DataDecoder`) enforces the bare LF/CR policy, the header line
//! limit, the hop count and databytes. A refused message is read to its end and never
//! committed: the queue program is dropped before it sees an envelope, so it exits 54 and
//! removes what it wrote. A bare LF or CR (or an over-long header line) ends the session at
//! once: nothing after it is read, so no second message can be smuggled in.

use crate::chat::{End, Flow, Session};
use crate::checks::{self, ExecCheck};
use qmail::date822::{unix_now, Utc};
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::queue::Injection;
use qmail::safe::received as safe;
use qmail::smtp::{DataDecoder, DataError, Refusal, Step};
use std::io::Write;

/// Handle DATA.
pub fn data(s: &mut Session) -> Flow {
    let Some(sender) = s.sender.clone() else {
        s.io.reply(503, "MAIL first (#5.5.1)");
        return Flow::Continue;
    };
    if s.rcpts.is_empty() {
        s.io.reply(503, "RCPT first (#5.5.1)");
        return Flow::Continue;
    }
    s.verifier.close_coprocess();
    let mut inj = match Injection::start(&s.home) {
        Ok(inj) => inj,
        Err(v) => {
            s.log.at(3, format_args!("unable to start the queue: {v}"));
            s.io.reply(451, "qqt failure (#4.3.0)");
            return Flow::Continue;
        }
    };
    let qp = inj.pid();
    s.io.reply(354, "go ahead");
    let _ = inj.message().write_all(header(s, &sender).as_bytes());
    let mut inj = Some(inj);
    let mut decoder = DataDecoder::new(s.cfg.databytes);
    let signatures = std::mem::take(&mut s.cfg.signatures);
    let mut exec = ExecCheck::new(&signatures);
    let mut out = Vec::with_capacity(crate::io::READ_BUF);
    let result = loop {
        if s.io.data().is_empty() {
            if let Err(end) = s.fill() {
                // the queue program sees EOF without an envelope and cleans up
                return Flow::End(end);
            }
        }
        out.clear();
        let (n, step) = decoder.push(s.io.data(), &mut out);
        s.io.consume(n);
        if let Some(i) = inj.as_mut() {
            exec.scan(&out);
            let _ = i.message().write_all(&out);
            if decoder.refused().is_some() || exec.hit() {
                // refused: stop the queue program now, read on to the end
                if let Some(i) = inj.take() {
                    i.abort();
                }
            }
        }
        match step {
            Step::NeedMore => continue,
            Step::End(result) => break result,
            Step::Fatal(e) => {
                let (code, text) = match e {
                    DataError::BareLf => (
                        451,
                        "bare LF in DATA refused, see https://cr.yp.to/docs/smtplf.html (#4.5.0)",
                    ),
                    DataError::BareCr => {
                        (451, "bare CR in DATA refused: lines must end in CRLF (#4.5.0)")
                    }
                    DataError::HeaderTooLong => (500, "header line too long (#5.5.2)"),
                };
                s.log.at(3, format_args!("{code} {text} ({})", s.env.remote_ip));
                s.io.reply(code, text);
                return Flow::End(End::Dropped);
            }
        }
    };
    s.cfg.signatures = signatures;
    let rcpts = std::mem::take(&mut s.rcpts);
    s.reset();
    let verdict = match (result, inj) {
        (Err(Refusal::TooBig), _) => {
            Err(Verdict::perm("sorry, that message size exceeds my databytes limit (#5.3.4)"))
        }
        (Err(Refusal::Looping), _) => {
            Err(Verdict::perm("too many hops, this message is looping (#5.4.6)"))
        }
        (Ok(()), None) => Err(Verdict::perm("sorry, no executable attachments allowed (#5.3.4)")),
        (Ok(()), Some(inj)) => inj.finish(&Envelope::new(sender, rcpts)),
    };
    match verdict {
        Ok(()) => {
            let text = format!("ok {} qp {qp} by {}", unix_now(), s.cfg.me);
            s.log.at(2, format_args!("message queued: {text}"));
            s.io.reply(250, &text);
        }
        Err(Verdict::Perm(text)) => {
            s.log.at(3, format_args!("message refused: {text}"));
            let code = if text.contains("(#5.3.4)") { 552 } else { 554 };
            s.io.reply(code, &text);
        }
        Err(Verdict::Temp(text)) => {
            s.log.at(3, format_args!("message not queued: {text}"));
            s.io.reply(451, &text);
        }
    }
    Flow::Continue
}

/// The lines qmail-smtpd puts before the message: X-RBL lines, then the Received line of the
/// qmail-LDAP form (every field through [`qmail::safe::received`]).
fn header(s: &Session, sender: &qmail::address::Address) -> String {
    let mut h = String::new();
    for line in &s.rbl_headers {
        h.push_str(line);
        h.push('\n');
    }
    let env = &s.env;
    h.push_str("Received: from ");
    h.push_str(&safe(env.remote_host.as_bytes()));
    if let Some(helo) = &s.helo {
        if !helo.eq_ignore_ascii_case(env.remote_host.as_bytes()) {
            h.push_str(" (HELO ");
            h.push_str(&safe(helo));
            h.push(')');
        }
    }
    h.push_str(" (");
    let info = match (&env.authprepend, checks::auth_user()) {
        (Some(prefix), Some(user)) => Some(format!("{prefix}{user}")),
        _ => env.remote_info.clone(),
    };
    if let Some(info) = info {
        h.push_str(&safe(info.as_bytes()));
        h.push('@');
    }
    h.push('[');
    h.push_str(&safe(env.remote_ip.as_bytes()));
    h.push_str("])\n          (envelope-sender <");
    h.push_str(&safe(sender.as_bytes()));
    h.push_str(">)\n          by ");
    h.push_str(&safe(env.local_host.as_bytes()));
    h.push_str(" (qmail-ldap-rs) with SMTP\n          for <");
    h.push_str(&safe(s.rcpts.first().map_or(&b""[..], |r| r.as_bytes())));
    h.push_str(">; ");
    h.push_str(&Utc::now().rfc822());
    h.push('\n');
    h
}
