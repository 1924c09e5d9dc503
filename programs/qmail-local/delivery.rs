//! delivery: what the deliveries of one message share (its header lines, the programs'
//! environment, the quota) and each kind of delivery: Maildir, mbox, program, forward, and
//! the helpers qmail-reply and qmail-quotawarn (doc/qmail-local.8, doc/dot-qmail.5).

use crate::args::Args;
use crate::{mbox, program};
use qmail::address::Address;
use qmail::dotqmail;
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::maildir;
use qmail::queue::Injection;
use qmail::quota::{self, Quota};
use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

/// The bounce texts of a full mailbox (doc/qmail-local.8, MAILDIRQUOTA).
const OVER_QUOTA_MAILDIR: &str = "The users mailfolder is over the allowed quota (size). (#5.2.2)";
const OVER_QUOTA_MBOX: &str = "The users mailbox is over the allowed quota (size). (#5.2.2)";

/// What the deliveries of this message share: header lines and the programs' environment.
pub struct Delivery<'a> {
    message: File,
    dtline: Vec<u8>,
    rpline: Vec<u8>,
    ufline: Vec<u8>,
    env: Vec<(&'static str, Vec<u8>)>,
    /// The account's Maildir++ quota (`MAILDIRQUOTA`).
    quota: Option<Quota>,
    /// A delivery worker's collection (helpers' output, Maildir files for its batch commit);
    /// without it, helpers print on our stdout and every Maildir file is committed at once.
    collect: Option<&'a Collect>,
}

/// What a delivery worker collects from one delivery.
#[derive(Debug, Default)]
pub struct Collect {
    /// What helper programs printed, in order.
    pub said: RefCell<Vec<u8>>,
    /// Maildir files written but not yet synced or linked: the worker commits them with the
    /// other deliveries of its batch ([`maildir::commit_batch`]) before it answers.
    pub staged: RefCell<Vec<maildir::Staged>>,
}

/// `control/automaildirmake` 1: a missing Maildir is created before a delivery to it
/// (upstream's AUTOMAILDIRMAKE build option; off by default, as there).
fn auto_maildir_make() -> Result<bool, Verdict> {
    qmail::control::Control::new(&qmail::auto::home())
        .int_or("automaildirmake", 0)
        .map(|n| n != 0)
        .map_err(|e| Verdict::temp(format!("Uh-oh: {e} (#4.3.0)")))
}

/// Scan header lines for `line` (which ends in LF) without holding any line in memory.
fn has_header_line(mut r: impl BufRead, line: &[u8]) -> io::Result<bool> {
    let (mut pos, mut same) = (0usize, true);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        for &b in buf {
            same = same && line.get(pos) == Some(&b);
            pos += 1;
            if b == b'\n' {
                if pos == 1 {
                    return Ok(false);
                }
                if same && pos == line.len() {
                    return Ok(true);
                }
                (pos, same) = (0, true);
            }
        }
        let n = buf.len();
        r.consume(n);
    }
}

impl<'a> Delivery<'a> {
    /// Does the header (up to the first empty line) hold a line byte-identical to our
    /// Delivered-To line? Then the message is looping.
    pub fn is_looping(&self) -> Result<bool, Verdict> {
        let fail = |e: io::Error| Verdict::temp(format!("Unable to read message: {e} (#4.3.0)"));
        has_header_line(BufReader::new(self.rewound()?), &self.dtline).map_err(fail)
    }

    pub fn new(
        args: &Args,
        message: File,
        new_sender: &[u8],
        default: Option<Vec<u8>>,
        quota: Option<Quota>,
        collect: Option<&'a Collect>,
    ) -> Self {
        let dtline = dotqmail::delivered_to(&args.local, &args.domain);
        let rpline = dotqmail::return_path(&args.sender);
        let ufline = from_line(&args.sender, qmail::date822::unix_now());
        let recipient = [&args.local[..], b"@", &args.domain].concat();
        let (ext2, ext3, ext4) = ext_parts(&args.ext);
        let (host2, host3, host4) = host_parts(&args.domain);
        let mut env: Vec<(&'static str, Vec<u8>)> = vec![
            ("SENDER", args.sender.clone()),
            ("NEWSENDER", new_sender.to_vec()),
            ("RECIPIENT", recipient),
            ("USER", args.user.clone()),
            ("HOME", args.home.clone()),
            ("HOST", args.domain.clone()),
            ("HOST2", host2.to_vec()),
            ("HOST3", host3.to_vec()),
            ("HOST4", host4.to_vec()),
            ("LOCAL", args.local.clone()),
            ("EXT", args.ext.clone()),
            ("EXT2", ext2.to_vec()),
            ("EXT3", ext3.to_vec()),
            ("EXT4", ext4.to_vec()),
            ("DTLINE", dtline.clone()),
            ("RPLINE", rpline.clone()),
            ("UFLINE", ufline.clone()),
        ];
        if let Some(d) = default {
            env.push(("DEFAULT", d));
        }
        Delivery { message, dtline, rpline, ufline, env, quota, collect }
    }

    /// The message, positioned at offset 0 (the returned handle shares the offset).
    pub fn rewound(&self) -> Result<File, Verdict> {
        let fail = |e: io::Error| Verdict::temp(format!("Unable to rewind message: {e} (#4.3.0)"));
        let mut f = self.message.try_clone().map_err(fail)?;
        f.seek(SeekFrom::Start(0)).map_err(fail)?;
        Ok(f)
    }

    /// Deliver into a Maildir; with a quota, the message is staged first, checked against
    /// `maildirsize`, accounted for, and only then linked into `new/`.
    pub fn maildir(&self, path: &[u8]) -> Result<(), Verdict> {
        let shown = String::from_utf8_lossy(path);
        let fail = |e: maildir::MaildirError| {
            Verdict::temp(format!("Unable to deliver to Maildir {shown}: {e} (#{})", e.status()))
        };
        let header = [&self.rpline[..], &self.dtline].concat();
        let mut msg = BufReader::with_capacity(64 * 1024, self.rewound()?);
        let dir = Path::new(OsStr::from_bytes(path));
        if auto_maildir_make()? {
            maildir::make(dir).map_err(|e| {
                Verdict::temp(format!("Uh-oh: maildir {shown} seems to be corrupted: {e} (#4.2.1)"))
            })?;
        }
        let staged = match self.collect {
            Some(_) => maildir::stage_unsynced(dir, &header, &mut msg),
            None => maildir::stage(dir, &header, &mut msg),
        }
        .map_err(fail)?;
        let Some(q) = &self.quota else {
            return self.commit(staged).map_err(fail);
        };
        let root = quota::root(dir);
        let qfail = |e: quota::QuotaError| {
            Verdict::temp(format!("Unable to check quota of {shown}: {e} (#4.3.0)"))
        };
        let check = quota::check(&root, q, staged.size()).map_err(qfail)?;
        if check.over {
            // the staged file is removed when it goes out of scope
            self.quotawarn(path)?;
            return Err(Verdict::perm(OVER_QUOTA_MAILDIR));
        }
        if check.warn {
            self.quotawarn(path)?;
        }
        quota::add(&root, staged.size(), 1).map_err(qfail)?;
        self.commit(staged).map_err(fail)
    }

    /// Link a staged file into `new/` now, or leave it to the worker's batch commit.
    fn commit(&self, staged: maildir::Staged) -> Result<(), maildir::MaildirError> {
        match self.collect {
            Some(c) => {
                c.staged.borrow_mut().push(staged);
                Ok(())
            }
            None => staged.commit().map(drop),
        }
    }

    pub fn mbox(&self, path: &[u8]) -> Result<(), Verdict> {
        let header = [&self.ufline[..], &self.rpline, &self.dtline].concat();
        if let Some(q) = &self.quota {
            let size = self
                .message
                .metadata()
                .map_err(|e| Verdict::temp(format!("Unable to stat message: {e} (#4.3.0)")))?
                .len()
                .saturating_add(header.len() as u64);
            let check = quota::check_mbox(Path::new(OsStr::from_bytes(path)), q, size)
                .map_err(|e| Verdict::temp(format!("Unable to check quota: {e} (#4.3.0)")))?;
            if check.over {
                self.quotawarn(path)?;
                return Err(Verdict::perm(OVER_QUOTA_MBOX));
            }
            if check.warn {
                self.quotawarn(path)?;
            }
        }
        let mut msg = BufReader::with_capacity(64 * 1024, self.rewound()?);
        mbox::deliver(Path::new(OsStr::from_bytes(path)), &header, &mut msg)
    }

    /// Run `bin/qmail-quotawarn MAILBOX` (no shell) with the message on stdin: 0 goes on,
    /// 111 or a failure to run it is temporary, anything else permanent (doc/qmail-quotawarn.8).
    fn quotawarn(&self, mailbox: &[u8]) -> Result<(), Verdict> {
        let prog = qmail::auto::home().join("bin/qmail-quotawarn");
        self.helper(&prog, &[mailbox]).and_then(|code| match code {
            0 => Ok(()),
            111 => Err(Verdict::temp("")),
            _ => Err(Verdict::perm("")),
        })
    }

    /// Run `bin/qmail-reply [MAILDIR]` (no shell) before any other delivery; its exit code
    /// counts as a program's (100 bounces the message, 111 defers it).
    pub fn reply(&self, aliasempty: &[u8]) -> Result<(), Verdict> {
        let prog = qmail::auto::home().join("bin/qmail-reply");
        let maildir = matches!(aliasempty.first(), Some(b'.' | b'/')) && aliasempty.ends_with(b"/");
        let args: &[&[u8]] = if maildir { &[aliasempty] } else { &[] };
        let code = self.helper(&prog, args)?;
        match program::outcome(std::process::ExitStatus::from_raw(code << 8)) {
            Ok(_) => Ok(()),
            Err(v) => Err(v),
        }
    }

    /// Run a helper program directly with the message on stdin and the programs'
    /// environment, its stdout and stderr collected (bounded as qmail-lspawn bounds ours) and
    /// passed on ([`Delivery::say`]); its exit code (a crash is temporary).
    fn helper(&self, prog: &Path, args: &[&[u8]]) -> Result<i32, Verdict> {
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args.iter().map(|a| OsStr::from_bytes(a)))
            .stdin(std::process::Stdio::from(self.rewound()?));
        for (k, v) in &self.env {
            cmd.env(k, OsStr::from_bytes(v));
        }
        let ran = qmail::spawner::run_child(cmd, qmail::exit::LOCAL_OUTPUT_MAX).map_err(|e| {
            Verdict::temp(format!("Unable to run {}: {e} (#4.3.0)", prog.display()))
        })?;
        self.say(&ran.output);
        ran.status
            .code()
            .ok_or_else(|| Verdict::temp(format!("Uh-oh: {} crashed. (#4.3.0)", prog.display())))
    }

    /// Pass on what a helper printed: into the collected text, or onto our stdout.
    fn say(&self, text: &[u8]) {
        match self.collect {
            Some(c) => c.said.borrow_mut().extend_from_slice(text),
            None => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(text).and_then(|()| out.flush());
            }
        }
    }

    pub fn program(&self, command: &[u8]) -> Result<program::Outcome, Verdict> {
        // whatever we printed must come before the program's own output
        let _ = io::stdout().flush();
        program::run(command, self.rewound()?, &self.env)
    }

    /// Queue one copy for every forward target: Delivered-To line, `Precedence: bulk` when
    /// there is more than one target, the message; envelope sender NEWSENDER.
    pub fn forward(&self, new_sender: &[u8], targets: Vec<Address>) -> Result<(), Verdict> {
        let sender = Address::new(new_sender)
            .map_err(|_| Verdict::perm("Forwarding sender is too long. (#5.1.3)"))?;
        let mut msg = BufReader::with_capacity(64 * 1024, self.rewound()?);
        let mut inj = Injection::start(&qmail::auto::home())?;
        let mut w = inj.message();
        let _ = w.write_all(&self.dtline);
        if targets.len() > 1 {
            let _ = w.write_all(b"Precedence: bulk\n");
        }
        // the writer never fails (qmail-queue's errors come from finish); a read error
        // abandons the injection, and qmail-queue, seeing no envelope, queues nothing
        io::copy(&mut msg, &mut w)
            .map_err(|e| Verdict::temp(format!("Unable to read message: {e} (#4.3.0)")))?;
        inj.finish(&Envelope::new(sender, targets))
            .map_err(|v| prefix(v, "Unable to forward message: "))
    }
}

fn prefix(v: Verdict, p: &str) -> Verdict {
    match v {
        Verdict::Temp(t) => Verdict::Temp(format!("{p}{t}")),
        Verdict::Perm(t) => Verdict::Perm(format!("{p}{t}")),
    }
}

/// EXT2–EXT4: the extension after its first, second and third `-` (empty when there is none).
fn ext_parts(ext: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let after_dash = |from: usize| match ext[from..].iter().position(|&b| b == b'-') {
        Some(i) => from + i + 1,
        None => ext.len(),
    };
    let i2 = after_dash(0);
    let i3 = after_dash(i2);
    let i4 = after_dash(i3);
    (&ext[i2..], &ext[i3..], &ext[i4..])
}

/// HOST2–HOST4: the domain before its last, second-last and third-last `.` (all of it when
/// there is none).
fn host_parts(host: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let before_dot = |s: &[u8]| s.iter().rposition(|&b| b == b'.').unwrap_or(s.len());
    let h2 = &host[..before_dot(host)];
    let h3 = &h2[..before_dot(h2)];
    let h4 = &h3[..before_dot(h3)];
    (h2, h3, h4)
}

/// The mbox `From ` line: `From SENDER Www Mmm DD HH:MM:SS YYYY\n` in UTC; `MAILER-DAEMON`
/// for the null sender; space, tab and LF in the sender become `-`.
fn from_line(sender: &[u8], now: i64) -> Vec<u8> {
    let mut line = b"From ".to_vec();
    if sender.is_empty() {
        line.extend_from_slice(b"MAILER-DAEMON");
    } else {
        line.extend(
            sender.iter().map(|&b| if matches!(b, b' ' | b'\t' | b'\n') { b'-' } else { b }),
        );
    }
    line.push(b' ');
    line.extend_from_slice(qmail::date822::asctime(now).as_bytes());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parts() {
        let rows: &[(&str, [&str; 3])] = &[
            ("", ["", "", ""]),
            ("a", ["", "", ""]),
            ("a-b", ["b", "", ""]),
            ("a-b-c-d-e", ["b-c-d-e", "c-d-e", "d-e"]),
            ("-", ["", "", ""]),
            ("--x", ["-x", "x", ""]),
        ];
        for (ext, want) in rows {
            let (a, b, c) = ext_parts(ext.as_bytes());
            assert_eq!([a, b, c], want.map(str::as_bytes), "{ext}");
        }
        let rows: &[(&str, [&str; 3])] = &[
            ("example.org", ["example", "example", "example"]),
            ("a.b.c.d", ["a.b.c", "a.b", "a"]),
            ("localhost", ["localhost", "localhost", "localhost"]),
            ("", ["", "", ""]),
        ];
        for (host, want) in rows {
            let (a, b, c) = host_parts(host.as_bytes());
            assert_eq!([a, b, c], want.map(str::as_bytes), "{host}");
        }
    }

    #[test]
    fn from_lines() {
        assert_eq!(from_line(b"a@b", 0), b"From a@b Thu Jan 01 00:00:00 1970\n");
        assert_eq!(from_line(b"", 1_795_307_472), b"From MAILER-DAEMON Sun Nov 22 00:31:12 2026\n");
        assert_eq!(from_line(b"a b\tc\nd", 0), b"From a-b-c-d Thu Jan 01 00:00:00 1970\n");
    }

    #[test]
    fn header_scan() {
        let dt = b"Delivered-To: joe@example.org\n";
        let rows: &[(&[u8], bool)] = &[
            (b"Delivered-To: joe@example.org\n\nbody", true),
            (b"X: y\nDelivered-To: joe@example.org\n\n", true),
            (b"X: y\n\nDelivered-To: joe@example.org\n", false),
            (b"Delivered-To: joe@example.org.\n\n", false),
            (b"Delivered-To: joe@example.or\n\n", false),
            (b"delivered-to: joe@example.org\n\n", false),
            (b"Delivered-To: joe@example.org", false),
            (b"", false),
        ];
        for (msg, want) in rows {
            assert_eq!(
                has_header_line(BufReader::with_capacity(3, *msg), dt).unwrap(),
                *want,
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }
}
