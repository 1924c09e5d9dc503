//! qmail-smtpd's DATA (doc/qmail-smtpd.8, "DATA"): start qmail-queue, answer 354, write the X-RBL
//! and Received lines, then stream the decoded body into the queue as it arrives (memory: one read
//! buffer), and answer with the queue's verdict.
//!
//! The decoder (`qmail::smtp::DataDecoder`) enforces the bare LF/CR policy, the header line
//! limit, the hop count and databytes. A refused message is read to its end and never
//! committed: the queue program is dropped before it sees an envelope, so it exits 54 and
//! removes what it wrote. A bare LF or CR (or an over-long header line) ends the session at
//! once: nothing after it is read, so no second message can be smuggled in.

use crate::checks::ExecCheck;
use crate::config::{Config, Env};
use crate::conn::{Conn, End, Flow};
use crate::envelope::Gate;
use crate::transaction::Transaction;
use qmail::address::Address;
use qmail::date822::{unix_now, Utc};
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::queue::Injection;
use qmail::safe::received as safe;
use qmail::smtp::{DataDecoder, DataError, Refusal, Step};
use std::io::Write;

/// Handle DATA: the transaction's message, from the client to the queue.
pub fn data(
    conn: &mut Conn,
    cfg: &Config,
    env: &Env,
    helo: Option<&[u8]>,
    txn: &mut Transaction,
    gate: &mut Gate,
) -> Flow {
    let Some(sender) = txn.sender().cloned() else {
        conn.reply(503, "MAIL first (#5.5.1)");
        return Flow::Continue;
    };
    if txn.rcpts().is_empty() {
        conn.reply(503, "RCPT first (#5.5.1)");
        return Flow::Continue;
    }
    gate.close_coprocess();
    // SMTPAUTHUSER: the login of a successful AUTH, for queue filters
    let auth_env: Vec<(&str, &str)> =
        txn.auth_user().map(|u| ("SMTPAUTHUSER", u)).into_iter().collect();
    let mut inj = match Injection::start_with_env(&cfg.home, &auth_env) {
        Ok(inj) => inj,
        Err(v) => {
            conn.log().at(3, format_args!("unable to start the queue: {v}"));
            conn.reply(451, "qqt failure (#4.3.0)");
            return Flow::Continue;
        }
    };
    let qp = inj.pid();
    conn.reply(354, "go ahead");
    let first = txn.rcpts().first();
    let header = header(
        env,
        helo,
        gate.rbl_headers(),
        &sender,
        first,
        conn.tls().as_deref(),
        txn.auth_user(),
    );
    let _ = inj.message().write_all(header.as_bytes());
    let mut inj = Some(inj);
    let mut decoder = DataDecoder::new(cfg.databytes);
    let mut exec = ExecCheck::new(&cfg.signatures);
    let mut out = qmail::spare::Spare::empty(crate::io::READ_BUF);
    let result = loop {
        if conn.input().is_empty() {
            if let Err(end) = conn.fill() {
                // the queue program sees EOF without an envelope and cleans up
                return Flow::End(end);
            }
        }
        out.clear();
        let (n, step) = decoder.push(conn.input(), &mut out);
        conn.consume(n);
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
                conn.log().at(3, format_args!("{code} {text} ({})", env.remote_ip));
                conn.reply(code, text);
                return Flow::End(End::Dropped);
            }
        }
    };
    let rcpts = txn.end();
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
            let text = format!("ok {} qp {qp} by {}", unix_now(), cfg.me);
            conn.log().at(2, format_args!("message queued: {text}"));
            conn.reply(250, &text);
        }
        Err(Verdict::Perm(text)) => {
            conn.log().at(3, format_args!("message refused: {text}"));
            let code = if text.contains("(#5.3.4)") { 552 } else { 554 };
            conn.reply(code, &text);
        }
        Err(Verdict::Temp(text)) => {
            conn.log().at(3, format_args!("message not queued: {text}"));
            conn.reply(451, &text);
        }
    }
    Flow::Continue
}

/// The lines qmail-smtpd puts before the message: X-RBL lines, then the Received line of the
/// qmail-LDAP form (every field through [`qmail::safe::received`]).
fn header(
    env: &Env,
    helo: Option<&[u8]>,
    rbl_headers: &[String],
    sender: &Address,
    first: Option<&Address>,
    tls: Option<&str>,
    auth_user: Option<&str>,
) -> String {
    let mut h = String::new();
    for line in rbl_headers {
        h.push_str(line);
        h.push('\n');
    }
    h.push_str("Received: from ");
    h.push_str(&safe(env.remote_host.as_bytes()));
    if let Some(helo) = helo {
        if !helo.eq_ignore_ascii_case(env.remote_host.as_bytes()) {
            h.push_str(" (HELO ");
            h.push_str(&safe(helo));
            h.push(')');
        }
    }
    h.push_str(" (");
    let info = match (&env.authprepend, auth_user) {
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
    match tls {
        // upstream's form: `with (TLSv1.3 cipher ...) encrypted SMTP`
        Some(tls) => {
            h.push_str(" (qmail-ldap-rs) with (");
            // each word made safe; the spaces between them kept
            let words: Vec<String> = tls.split(' ').map(|w| safe(w.as_bytes())).collect();
            h.push_str(&words.join(" "));
            h.push_str(") encrypted SMTP\n          for <");
        }
        None => h.push_str(" (qmail-ldap-rs) with SMTP\n          for <"),
    }
    h.push_str(&safe(first.map_or(&b""[..], |r| r.as_bytes())));
    h.push_str(">; ");
    h.push_str(&Utc::now().rfc822());
    h.push('\n');
    h
}
