//! smtp: qmail-remote's SMTP client dialogue on one connection (doc/qmail-remote.8, "The SMTP
//! dialogue"), and the records it writes ("Output").
//!
//! [`deliver`] runs greeting, EHLO (HELO when EHLO is refused), MAIL (with `SIZE=` when the
//! server offers SIZE), RCPT for every recipient (pipelined in groups when the server offers
//! PIPELINING), DATA, the body, and QUIT (its reply is not awaited). It writes a recipient
//! record per recipient and the message record through [`Out`], or returns [`Step::Next`]
//! before writing anything when the next MX should be tried (a 4xx greeting, a 4xx HELO).
//! Replies are read with the bounded, sans-I/O [`qmail::smtpreply::ReplyReader`]; a malformed
//! reply counts as a temporary failure. The connection's read and write timeouts are set by
//! the caller.
//!
//! Outbound bytes never hold a bare CR or LF: [`BodyEncoder`] turns every line end of the
//! message (LF, CRLF, or a CR alone) into CRLF, doubles a leading `.`, and ends a last line
//! that has no line end with CRLF before the final `.`; envelope addresses holding CR, LF or
//! NUL are refused before they reach the wire (`#5.1.3`).
//!
//! STARTTLS ([`StartTls`]): sent after EHLO when the server offers it and the destination's
//! policy allows TLS; whatever the server sent after its 220 and before the handshake is
//! thrown away, and EHLO is sent again inside TLS. A destination that requires TLS gets
//! [`Step::Next`] when the server does not offer it, refuses it or fails the handshake; an
//! opportunistic one gets [`Step::Plaintext`] when the handshake fails (nothing of the
//! mail was sent yet), and goes on in plaintext when STARTTLS is refused.

use qmail::remote::record;
use qmail::smtpreply::{Reply, ReplyReader};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// How many commands are sent at once when pipelining.
const PIPELINE_GROUP: usize = 100;
/// The size of the chunks the message is read in.
const CHUNK: usize = 64 * 1024;

/// Where records go: qmail-remote's stdout. Write errors are ignored (nobody is left to
/// tell; qmail-rspawn then sees no or short output and keeps the message queued).
pub struct Out<W: Write> {
    w: W,
    pub message_done: bool,
}

impl<W: Write> Out<W> {
    pub fn new(w: W) -> Self {
        Out { w, message_done: false }
    }

    /// A recipient record: `r`, `h` or `s`.
    pub fn rcpt(&mut self, letter: u8, text: &[u8]) {
        let _ = self.w.write_all(&record(letter, text)).and_then(|()| self.w.flush());
    }

    /// The message record, `K`, `Z` or `D`: written once, later ones are dropped.
    pub fn message(&mut self, letter: u8, text: &[u8]) {
        if self.message_done {
            return;
        }
        self.message_done = true;
        let _ = self.w.write_all(&record(letter, text)).and_then(|()| self.w.flush());
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// What happened on a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The message record was written.
    Done,
    /// Nothing was written: try the next address. The text says why.
    Next(Vec<u8>),
    /// Nothing was written: the TLS handshake failed before any mail data was sent, and
    /// TLS is opportunistic for this destination: the same server may be tried again in
    /// plaintext. The text says why.
    Plaintext(Vec<u8>),
    /// Nothing was written: TLS is required and this server does not offer it, refuses it
    /// or fails the handshake (a certificate that does not pass, too). Try the next address.
    NoTls(Vec<u8>),
}

/// How to use STARTTLS with this server.
pub struct StartTls {
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry (and the SNI sent when it is a DNS name).
    pub name: ServerName<'static>,
    /// TLS is required and the certificate is checked (control/tlsdestinations).
    pub required: bool,
}

/// The envelope and what the dialogue needs to know.
pub struct Params<'a> {
    pub helohost: &'a str,
    /// Already checked by [`check_address`].
    pub sender: &'a [u8],
    pub recipients: &'a [Vec<u8>],
    /// The message file's size, for `SIZE=`.
    pub size: u64,
    /// The first 32 bytes of `control/smtpclustercookie`, if any.
    pub cookie: Option<&'a [u8]>,
    /// How the peer is named in texts: its address.
    pub peer: String,
    /// STARTTLS, when the destination's policy allows TLS.
    pub tls: Option<&'a StartTls>,
    /// Appended to the text of a success: why this went in plaintext after all.
    pub note: &'a [u8],
}

/// The connection died or timed out.
struct Died;

/// The connection's byte stream: plaintext, then perhaps TLS.
enum Wire<S: Read + Write> {
    Plain(S),
    Tls(Box<StreamOwned<ClientConnection, S>>),
    /// Between the two, and after a failed handshake.
    Gone,
}

impl<S: Read + Write> Read for Wire<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(s) => s.read(buf),
            Wire::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl<S: Read + Write> Write for Wire<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Tls(s) => s.write(buf),
            Wire::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Tls(s) => s.flush(),
            Wire::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// A connection and its reply reader.
struct Conn<S: Read + Write> {
    s: Wire<S>,
    reader: ReplyReader,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: Read + Write> Conn<S> {
    fn new(s: S) -> Self {
        Conn { s: Wire::Plain(s), reader: ReplyReader::new(), buf: vec![0; 8192], start: 0, end: 0 }
    }

    /// The TLS handshake, after the server's 220 to STARTTLS. What the server sent after
    /// that reply is dropped unread: nothing of the plaintext session may reach the TLS one.
    fn start_tls(&mut self, tls: &StartTls) -> Result<(), String> {
        self.start = self.end;
        self.reader = ReplyReader::new();
        let Wire::Plain(mut sock) = std::mem::replace(&mut self.s, Wire::Gone) else {
            return Err("STARTTLS inside TLS".into());
        };
        let mut conn = ClientConnection::new(tls.config.clone(), tls.name.clone())
            .map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
                    io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
                    _ => e.to_string(),
                });
            }
        }
        self.s = Wire::Tls(Box::new(StreamOwned::new(conn, sock)));
        Ok(())
    }

    /// `TLSv1.3 cipher TLS13_AES_256_GCM_SHA384` when the session is in TLS.
    fn tls(&self) -> Option<String> {
        match &self.s {
            Wire::Tls(s) => Some(qmail::tls::describe(&s.conn)),
            _ => None,
        }
    }

    fn reply(&mut self) -> Result<Reply, Died> {
        loop {
            if self.start < self.end {
                let (n, got) = self.reader.push(&self.buf[self.start..self.end]);
                self.start += n;
                if let Some(reply) = got {
                    return Ok(reply);
                }
            }
            match self.s.read(&mut self.buf) {
                Ok(0) => return Err(Died),
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Died),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Died> {
        self.s.write_all(bytes).and_then(|()| self.s.flush()).map_err(|_| Died)
    }
}

/// An envelope address may not hold a byte that would end an SMTP line early.
pub fn check_address(addr: &[u8]) -> bool {
    !addr.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// `addr` as it goes inside `<>`: the local part quoted when it is not a dot-atom (upstream's
/// `quote2`), the domain as it is. An address without `@` (the null sender) is used as is.
pub fn quote(addr: &[u8]) -> Vec<u8> {
    if !addr.contains(&b'@') {
        return addr.to_vec();
    }
    qmail::address::quote_address(addr)
}

/// "Remote host said: " and the reply, each line ended by LF.
fn said(reply: &Reply) -> Vec<u8> {
    let mut t = b"Remote host said: ".to_vec();
    t.extend_from_slice(&reply.text);
    t.push(b'\n');
    t
}

/// Run the dialogue on `conn`, sending `message`.
pub fn deliver<S: Read + Write, M: Read, W: Write>(
    conn: S,
    p: &Params,
    message: M,
    out: &mut Out<W>,
) -> Step {
    let mut c = Conn::new(conn);
    let mut critical = false;
    match dialogue(&mut c, p, message, out, &mut critical) {
        Ok(step) => step,
        Err(Died) => {
            let dup = if critical { "Possible duplicate! " } else { "" };
            let text = format!("Connected to {} but connection died. {dup}(#4.4.2)\n", p.peer);
            out.message(b'Z', text.as_bytes());
            Step::Done
        }
    }
}

/// Give up with a message record; send QUIT and do not wait for its reply.
fn quit<S: Read + Write, W: Write>(
    c: &mut Conn<S>,
    out: &mut Out<W>,
    letter: u8,
    text: impl AsRef<[u8]>,
    reply: Option<&Reply>,
) -> Result<Step, Died> {
    let _ = c.send(b"QUIT\r\n");
    let mut t = text.as_ref().to_vec();
    if let Some(r) = reply {
        t.extend_from_slice(&said(r));
    }
    out.message(letter, &t);
    Ok(Step::Done)
}

fn dialogue<S: Read + Write, M: Read, W: Write>(
    c: &mut Conn<S>,
    p: &Params,
    mut message: M,
    out: &mut Out<W>,
    critical: &mut bool,
) -> Result<Step, Died> {
    let peer = &p.peer;
    let greeting = c.reply()?;
    if greeting.code != 220 {
        return match greeting.class() {
            5 if !greeting.malformed() => quit(
                c,
                out,
                b'D',
                format!("Connected to {peer} but greeting failed.\n"),
                Some(&greeting),
            ),
            4 if !greeting.malformed() => {
                let _ = c.send(b"QUIT\r\n");
                Ok(Step::Next(refused(peer, &greeting)))
            }
            _ => quit(
                c,
                out,
                b'Z',
                format!("Connected to {peer} but greeting failed.\n"),
                Some(&greeting),
            ),
        };
    }
    if let Some(cookie) = p.cookie {
        if is_loop(&greeting, cookie) {
            return quit(
                c,
                out,
                b'D',
                format!("{peer} is me: the cluster cookie came back; mail would loop. (#5.4.6)\n"),
                Some(&greeting),
            );
        }
    }

    c.send(format!("EHLO {}\r\n", p.helohost).as_bytes())?;
    let ehlo = c.reply()?;
    let mut ext = Extensions::default();
    if ehlo.code == 250 {
        ext = Extensions::of(&ehlo);
    } else {
        c.send(format!("HELO {}\r\n", p.helohost).as_bytes())?;
        let helo = c.reply()?;
        if helo.code != 250 {
            let text = format!("Connected to {peer} but my name was rejected.\n");
            return match helo.class() {
                5 if !helo.malformed() => quit(c, out, b'D', &text, Some(&helo)),
                4 if !helo.malformed() => {
                    let _ = c.send(b"QUIT\r\n");
                    Ok(Step::Next(refused(peer, &helo)))
                }
                _ => quit(c, out, b'Z', &text, Some(&helo)),
            };
        }
    }
    if let Some(tls) = p.tls {
        if let Some(step) = starttls(c, p, tls, &mut ext, out)? {
            return Ok(step);
        }
    }

    let mut mail = b"MAIL FROM:<".to_vec();
    mail.extend_from_slice(&quote(p.sender));
    mail.push(b'>');
    if ext.size {
        let n = p.size.saturating_add(p.size / 32).saturating_add(1);
        mail.extend_from_slice(format!(" SIZE={n}").as_bytes());
    }
    mail.extend_from_slice(b"\r\n");
    let rcpt_cmd = |r: &[u8]| -> Option<Vec<u8>> {
        if !check_address(r) {
            return None;
        }
        let mut cmd = b"RCPT TO:<".to_vec();
        cmd.extend_from_slice(&quote(r));
        cmd.extend_from_slice(b">\r\n");
        Some(cmd)
    };

    // MAIL and the RCPTs: in groups when pipelining, one at a time otherwise
    let cmds: Vec<Option<Vec<u8>>> = p.recipients.iter().map(|r| rcpt_cmd(r)).collect();
    let pipelining = ext.pipelining;
    let group = if pipelining { PIPELINE_GROUP } else { 1 };
    let mut rcpt_replies: Vec<Option<Reply>> = Vec::with_capacity(cmds.len());
    let mut batch = mail;
    let mut mail_reply: Option<Reply> = None;
    let mut next = 0usize;
    loop {
        let mut sent = Vec::new();
        // without pipelining MAIL goes alone
        if pipelining || mail_reply.is_some() {
            while next < cmds.len() && sent.len() < group {
                if let Some(cmd) = &cmds[next] {
                    batch.extend_from_slice(cmd);
                }
                sent.push(cmds[next].is_some());
                next += 1;
            }
        }
        c.send(&batch)?;
        batch.clear();
        if mail_reply.is_none() {
            let reply = c.reply()?;
            if reply.class() != 2 || reply.malformed() {
                let letter = if reply.class() == 5 && !reply.malformed() { b'D' } else { b'Z' };
                let text = format!("Connected to {peer} but sender was rejected.\n");
                return quit(c, out, letter, &text, Some(&reply));
            }
            mail_reply = Some(reply);
        }
        for was_sent in sent {
            rcpt_replies.push(if was_sent { Some(c.reply()?) } else { None });
        }
        if next >= cmds.len() {
            break;
        }
    }
    let mut accepted = 0usize;
    for reply in &rcpt_replies {
        match reply {
            None => out.rcpt(
                b'h',
                format!(
                    "{peer}: the recipient address holds a line break or NUL; not sent. (#5.1.3)\n"
                )
                .as_bytes(),
            ),
            Some(r) if r.class() == 2 => {
                accepted += 1;
                out.rcpt(b'r', b"");
            }
            Some(r) => {
                let letter = if r.class() == 5 && !r.malformed() { b'h' } else { b's' };
                let mut t = format!("{peer} does not like recipient.\n").into_bytes();
                t.extend_from_slice(&said(r));
                out.rcpt(letter, &t);
            }
        }
    }
    if accepted == 0 {
        return quit(c, out, b'D', format!("Giving up on {peer}.\n"), None);
    }

    c.send(b"DATA\r\n")?;
    let data = c.reply()?;
    if data.code != 354 {
        let letter = if data.class() == 5 && !data.malformed() { b'D' } else { b'Z' };
        return quit(c, out, letter, format!("{peer} failed on DATA command.\n"), Some(&data));
    }
    let mut enc = BodyEncoder::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut wire = Vec::with_capacity(2 * CHUNK + 8);
    loop {
        let n = match qmail::timeoutio::read(&mut message, &mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                // drop the connection without the final dot: nothing is delivered
                out.message(b'Z', b"Unable to read the message. (#4.3.0)\n");
                return Ok(Step::Done);
            }
        };
        wire.clear();
        enc.encode(&chunk[..n], &mut wire);
        c.send(&wire)?;
    }
    wire.clear();
    enc.finish(&mut wire);
    *critical = true;
    c.send(&wire)?;
    let after = c.reply()?;
    *critical = false;
    match after.class() {
        2 if !after.malformed() => {
            let mut text = format!("{peer} accepted message.\n").into_bytes();
            text.extend_from_slice(&said(&after));
            if let (Some(tls), Some(how)) = (p.tls, c.tls()) {
                let checked = if tls.required { "verified" } else { "not verified" };
                text.extend_from_slice(format!("TLS: {how}, certificate {checked}.\n").as_bytes());
            }
            text.extend_from_slice(p.note);
            quit(c, out, b'K', text, None)
        }
        5 if !after.malformed() => {
            quit(c, out, b'D', format!("{peer} failed after I sent the message.\n"), Some(&after))
        }
        _ => quit(c, out, b'Z', format!("{peer} failed after I sent the message.\n"), Some(&after)),
    }
}

/// What the server's EHLO reply offers.
#[derive(Default)]
struct Extensions {
    pipelining: bool,
    size: bool,
    starttls: bool,
}

impl Extensions {
    fn of(ehlo: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in ehlo.lines().skip(1) {
            let word = line.split(|&b| b == b' ').next().unwrap_or(b"");
            if word.eq_ignore_ascii_case(b"PIPELINING") {
                ext.pipelining = true;
            } else if word.eq_ignore_ascii_case(b"SIZE") {
                ext.size = true;
            } else if word.eq_ignore_ascii_case(b"STARTTLS") {
                ext.starttls = true;
            }
        }
        ext
    }
}

/// "IP refused the session, trying the next server." and what it said.
fn refused(peer: &str, reply: &Reply) -> Vec<u8> {
    let mut t = format!("{peer} refused the session, trying the next server.\n").into_bytes();
    t.extend_from_slice(&said(reply));
    t
}

/// STARTTLS after EHLO: `Ok(None)` to go on with the mail (in TLS, or in plaintext where
/// the policy allows it), `Ok(Some(step))` to leave this server.
fn starttls<S: Read + Write, W: Write>(
    c: &mut Conn<S>,
    p: &Params,
    tls: &StartTls,
    ext: &mut Extensions,
    out: &mut Out<W>,
) -> Result<Option<Step>, Died> {
    let peer = &p.peer;
    if !ext.starttls {
        if !tls.required {
            return Ok(None);
        }
        let _ = c.send(b"QUIT\r\n");
        return Ok(Some(Step::NoTls(
            format!("{peer} does not offer STARTTLS, which control/tlsdestinations requires.\n")
                .into_bytes(),
        )));
    }
    c.send(b"STARTTLS\r\n")?;
    let reply = c.reply()?;
    if reply.code != 220 {
        if !tls.required {
            return Ok(None);
        }
        let _ = c.send(b"QUIT\r\n");
        let mut t = format!("{peer} refused STARTTLS, which control/tlsdestinations requires.\n")
            .into_bytes();
        t.extend_from_slice(&said(&reply));
        return Ok(Some(Step::NoTls(t)));
    }
    if let Err(why) = c.start_tls(tls) {
        let text = format!("TLS handshake with {peer} failed: {why}.\n").into_bytes();
        return Ok(Some(if tls.required { Step::NoTls(text) } else { Step::Plaintext(text) }));
    }
    c.send(format!("EHLO {}\r\n", p.helohost).as_bytes())?;
    let ehlo = c.reply()?;
    if ehlo.code != 250 {
        let text = format!("Connected to {peer} but my name was rejected after STARTTLS.\n");
        return quit(c, out, b'Z', &text, Some(&ehlo)).map(Some);
    }
    *ext = Extensions::of(&ehlo);
    Ok(None)
}

/// Does a line of the greeting end with our cluster cookie (as its last word)?
fn is_loop(greeting: &Reply, cookie: &[u8]) -> bool {
    !cookie.is_empty()
        && greeting.text.split(|&b| b == b'\n').any(|line| {
            let line = line.trim_ascii_end();
            line.ends_with(cookie)
                && matches!(
                    line.len().checked_sub(cookie.len() + 1).map(|i| line[i]),
                    Some(b' ' | b'-')
                )
        })
}

/// The DATA body encoder: line ends to CRLF, leading dots doubled, a final CRLF if missing,
/// then `.` CRLF. Bounded: `encode` writes at most twice its input plus 2 bytes.
#[derive(Debug)]
pub struct BodyEncoder {
    at_line_start: bool,
    /// The last byte was a CR, already sent as CRLF: an LF right after it is swallowed.
    after_cr: bool,
    empty: bool,
}

impl Default for BodyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyEncoder {
    pub fn new() -> Self {
        BodyEncoder { at_line_start: true, after_cr: false, empty: true }
    }

    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.empty = false;
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    self.after_cr = b == b'\r';
                }
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                    self.after_cr = false;
                }
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
        let _ = self.empty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn body(input: &[u8]) -> Vec<u8> {
        // also fed byte by byte: the same output
        let mut whole = Vec::new();
        let mut e = BodyEncoder::new();
        e.encode(input, &mut whole);
        e.finish(&mut whole);
        let mut bytes = Vec::new();
        let mut e = BodyEncoder::new();
        for &b in input {
            e.encode(&[b], &mut bytes);
        }
        e.finish(&mut bytes);
        assert_eq!(whole, bytes);
        whole
    }

    #[test]
    fn body_encoding() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b"a\rb", b"a\r\nb\r\n.\r\n"),
            (b"a\r\r\nb\n", b"a\r\n\r\nb\r\n.\r\n"),
            (b".\n..x\n.", b"..\r\n...x\r\n..\r\n.\r\n"),
            (b"x.\n", b"x.\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        ];
        for (input, want) in rows {
            assert_eq!(
                String::from_utf8_lossy(&body(input)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // never a bare CR or LF, whatever the input
        let junk: Vec<u8> =
            (0..5000u32).map(|i| [b'\r', b'\n', b'.', b'x'][(i * 7 % 13 % 4) as usize]).collect();
        let out = body(&junk);
        for (i, &b) in out.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(out.get(i + 1), Some(&b'\n'));
            }
            if b == b'\n' {
                assert_eq!(out[i - 1], b'\r');
            }
        }
    }

    #[test]
    fn quoting() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"joe@example.com", b"joe@example.com"),
            (b"j.o+e@example.com", b"j.o+e@example.com"),
            (b"", b""),
            (b"#@[]", b"#@[]"),
            (b"a b@x", b"\"a b\"@x"),
            (b"a\"b\\c@x", b"\"a\\\"b\\\\c\"@x"),
            (b".a@x", b"\".a\"@x"),
            (b"a..b@x", b"\"a..b\"@x"),
            (b"@x", b"\"\"@x"),
            (b"a@b@x", b"\"a@b\"@x"),
        ];
        for (a, want) in rows {
            assert_eq!(quote(a), *want, "{:?}", String::from_utf8_lossy(a));
        }
        assert!(check_address(b"a@b"));
        assert!(!check_address(b"a\r@b"));
        assert!(!check_address(b"a@b\n"));
        assert!(!check_address(b"a\0@b"));
    }

    #[test]
    fn cookies() {
        let r = |t: &[u8]| Reply { code: 220, text: t.to_vec() };
        assert!(is_loop(&r(b"220 mx.example ESMTP c00kie"), b"c00kie"));
        assert!(is_loop(&r(b"220-mx.example c00kie\n220 more"), b"c00kie"));
        assert!(!is_loop(&r(b"220 mx.example ESMTPc00kie"), b"c00kie"));
        assert!(!is_loop(&r(b"220 mx.example ESMTP"), b"c00kie"));
        assert!(!is_loop(&r(b"220 x"), b""));
    }

    /// Run the dialogue against a scripted server: for each command the client sends (one
    /// line), the server answers with the next canned reply. Returns (records, commands).
    fn scripted(replies: &[&str], recipients: &[&str], message: &[u8]) -> (Vec<u8>, String) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let replies: Vec<String> = replies.iter().map(|s| s.to_string()).collect();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut it = replies.into_iter();
            if let Some(g) = it.next() {
                server.write_all(g.as_bytes()).unwrap();
            }
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            let mut in_data = false;
            loop {
                let n = match server.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    line.push(b);
                    seen.push(b);
                    if b != b'\n' {
                        continue;
                    }
                    let l = std::mem::take(&mut line);
                    if in_data && l != b".\r\n" {
                        continue;
                    }
                    in_data = false;
                    if l == b"QUIT\r\n" {
                        return String::from_utf8_lossy(&seen).into_owned();
                    }
                    match it.next() {
                        Some(r) if r == "CLOSE" => {
                            return String::from_utf8_lossy(&seen).into_owned()
                        }
                        Some(r) => {
                            if r.starts_with("354") {
                                in_data = true;
                            }
                            let _ = server.write_all(r.as_bytes());
                            if !r.ends_with('\n') {
                                // a reply cut short: the server hangs up
                                return String::from_utf8_lossy(&seen).into_owned();
                            }
                        }
                        None => return String::from_utf8_lossy(&seen).into_owned(),
                    }
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        });
        let recipients: Vec<Vec<u8>> = recipients.iter().map(|r| r.as_bytes().to_vec()).collect();
        let p = Params {
            helohost: "me.example",
            sender: b"s@example.org",
            recipients: &recipients,
            size: message.len() as u64,
            cookie: Some(b"c00kie"),
            peer: "192.0.2.1".into(),
            tls: None,
            note: b"",
        };
        let mut out = Out::new(Vec::new());
        let step = deliver(client, &p, message, &mut out);
        let commands = t.join().unwrap();
        let mut records = out.into_inner();
        if let Step::Next(why) = step {
            records = [b"NEXT:".as_slice(), &why].concat();
        }
        (records, commands)
    }

    fn show(b: &[u8]) -> String {
        String::from_utf8_lossy(b).replace('\0', "|")
    }

    #[test]
    fn a_whole_delivery_with_pipelining_and_size() {
        let (rec, cmds) = scripted(
            &[
                "220 mx ESMTP\r\n",
                "250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "550 no such user\r\n",
                "451 later\r\n",
                "354 go\r\n",
                "250 queued as 1\r\n",
            ],
            &["a@x", "b@x", "c@x"],
            b"Subject: hi\n\n.dot\n",
        );
        assert_eq!(
            show(&rec),
            "r|h192.0.2.1 does not like recipient.\nRemote host said: 550 no such user\n|\
             s192.0.2.1 does not like recipient.\nRemote host said: 451 later\n|\
             K192.0.2.1 accepted message.\nRemote host said: 250 queued as 1\n|"
        );
        assert_eq!(
            cmds,
            "EHLO me.example\r\nMAIL FROM:<s@example.org> SIZE=19\r\nRCPT TO:<a@x>\r\n\
             RCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
        );
    }

    #[test]
    fn helo_fallback_without_pipelining() {
        let (rec, cmds) = scripted(
            &[
                "220 mx\r\n",
                "500 what\r\n",
                "250 hi\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
            ],
            &["a@x", "b@x"],
            b"x",
        );
        assert_eq!(show(&rec), "r|r|K192.0.2.1 accepted message.\nRemote host said: 250 ok\n|");
        assert_eq!(
            cmds,
            "EHLO me.example\r\nHELO me.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@x>\r\n\
             RCPT TO:<b@x>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"
        );
    }

    #[test]
    fn failures() {
        let rows: &[(&[&str], &str)] = &[
            (&["421 busy\r\n"], "NEXT:192.0.2.1 refused the session, trying the next server.\nRemote host said: 421 busy\n"),
            (&["554 go away\r\n"], "DConnected to 192.0.2.1 but greeting failed.\nRemote host said: 554 go away\n|"),
            (&["hello\r\n"], "ZConnected to 192.0.2.1 but greeting failed.\nRemote host said: hello\n|"),
            (&["220 mx c00kie\r\n"], "D192.0.2.1 is me"),
            (&["220 mx\r\n", "500 no\r\n", "421 no\r\n"], "NEXT:192.0.2.1 refused the session, trying the next server.\nRemote host said: 421 no\n"),
            (&["220 mx\r\n", "500 no\r\n", "501 no\r\n"], "DConnected to 192.0.2.1 but my name was rejected."),
            (&["220 mx\r\n", "250 mx\r\n", "553 bad sender\r\n"], "DConnected to 192.0.2.1 but sender was rejected.\nRemote host said: 553 bad sender\n|"),
            (&["220 mx\r\n", "250 mx\r\n", "451 later\r\n"], "ZConnected to 192.0.2.1 but sender was rejected."),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "550 no\r\n"], "h192.0.2.1 does not like recipient.\nRemote host said: 550 no\n|DGiving up on 192.0.2.1.\n|"),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "554 no data\r\n"], "r|D192.0.2.1 failed on DATA command."),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "451 no data\r\n"], "r|Z192.0.2.1 failed on DATA command."),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "552 too big\r\n"], "r|D192.0.2.1 failed after I sent the message.\nRemote host said: 552 too big\n|"),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "452 full\r\n"], "r|Z192.0.2.1 failed after I sent the message."),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "CLOSE"], "r|ZConnected to 192.0.2.1 but connection died. Possible duplicate! (#4.4.2)\n|"),
            (&["220 mx\r\n", "250 mx\r\n", "CLOSE"], "ZConnected to 192.0.2.1 but connection died. (#4.4.2)\n|"),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "3"], "r|ZConnected to 192.0.2.1 but connection died. (#4.4.2)\n|"),
        ];
        for (replies, want) in rows {
            let (rec, _) = scripted(replies, &["a@x"], b"m\n");
            assert!(
                show(&rec).starts_with(want),
                "{replies:?}:\n got {:?}\nwant {want:?}",
                show(&rec)
            );
        }
    }

    /// A TLS server on the other end of a socket pair: it answers 220 to STARTTLS with a
    /// reply it should not send in the same write, then speaks TLS. The client must drop that
    /// reply unread, take the TLS session's EHLO reply, and name the session on success.
    #[test]
    fn starttls_drops_what_the_server_sent_before_the_handshake() {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let (client, mut server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let line = |s: &mut dyn Read| {
                let mut l = Vec::new();
                let mut b = [0u8];
                while s.read(&mut b).unwrap() == 1 {
                    l.push(b[0]);
                    if b[0] == b'\n' {
                        break;
                    }
                }
                String::from_utf8(l).unwrap()
            };
            server.write_all(b"220 mx ESMTP\r\n").unwrap();
            assert_eq!(line(&mut server), "EHLO me.example\r\n");
            server.write_all(b"250-mx\r\n250 STARTTLS\r\n").unwrap();
            assert_eq!(line(&mut server), "STARTTLS\r\n");
            server.write_all(b"220 go ahead\r\n250 injected before TLS\r\n").unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, server);
            let mut seen = Vec::new();
            for reply in ["250-mx in TLS\r\n250 PIPELINING\r\n", "", "250 ok\r\n", "354 go\r\n"] {
                seen.push(line(&mut tls));
                if reply.is_empty() {
                    continue; // MAIL and RCPT come together: one reply each after RCPT
                }
                if reply.starts_with("250 ok") {
                    tls.write_all(b"250 ok\r\n").unwrap();
                }
                tls.write_all(reply.as_bytes()).unwrap();
            }
            while line(&mut tls) != ".\r\n" {}
            tls.write_all(b"250 queued in TLS\r\n").unwrap();
            seen.push(line(&mut tls));
            seen.concat()
        });
        let config =
            qmail::tlsclient::client_config(provider, qmail::tlsclient::Trust::Any, None).unwrap();
        let tls =
            StartTls { config, name: ServerName::try_from("mx.example").unwrap(), required: false };
        let recipients = vec![b"a@x".to_vec()];
        let p = Params {
            helohost: "me.example",
            sender: b"s@example.org",
            recipients: &recipients,
            size: 2,
            cookie: None,
            peer: "192.0.2.1".into(),
            tls: Some(&tls),
            note: b"",
        };
        let mut out = Out::new(Vec::new());
        assert_eq!(deliver(client, &p, &b"m\n"[..], &mut out), Step::Done);
        let seen = t.join().unwrap();
        assert_eq!(
            seen,
            "EHLO me.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@x>\r\nDATA\r\nQUIT\r\n"
        );
        let rec = show(&out.into_inner());
        assert!(
            rec.starts_with(
                "r|K192.0.2.1 accepted message.\nRemote host said: 250 queued in TLS\n"
            ),
            "{rec}"
        );
        assert!(rec.contains("\nTLS: TLSv1.3 cipher TLS13_") && rec.ends_with("not verified.\n|"));
    }

    #[test]
    fn bad_recipients_are_not_sent() {
        let (rec, cmds) = scripted(
            &["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"],
            &["a\r\nRSET@x", "b@x"],
            b"m\n",
        );
        assert!(show(&rec).starts_with("h192.0.2.1: the recipient address holds a line break"));
        assert!(show(&rec).contains("|r|K"));
        assert!(!cmds.contains("RSET"), "{cmds}");
    }
}
