//! qmail-quotawarn: put one quota warning into a mailbox (doc/qmail-quotawarn.8).
//!
//! `qmail-quotawarn MAILBOX`, run by qmail-local (never through a shell) with the message on
//! stdin (unused) when a Maildir++ quota is 70% used or exceeded. MAILBOX is a Maildir when it
//! ends in `/`, else an mbox file. The text is `control/quotawarning` (absent or empty: no
//! warnings at all), with an optional `%HEADER%` block. At most one warning waits at a time:
//! none is written while a Maildir holds a file whose name after its last `.` starts with
//! `QUOTA_WARNING` in `new/` or `cur/`, or an mbox holds the line
//! `Qmail-QuotaWarning: USER@HOST`. The warning is written directly (not queued, not charged
//! to the quota): Maildir `tmp/` then `new/…QUOTA_WARNING,S=<size>`; mbox appended under an
//! exclusive lock. Exits 0 written or not needed, 100 usage or missing USER/HOST, 111 missing
//! RECIPIENT/DTLINE or any I/O failure. See doc/qmail-quotawarn.8.

#![forbid(unsafe_code)]

use nix::fcntl::{Flock, FlockArg};
use qmail::control::Control;
use qmail::date822::Utc;
use qmail::exit::Verdict;
use qmail::mailmagic::{self, Line};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long to wait for an mbox lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.into_vec()).collect();
    let result = match args.as_slice() {
        [mailbox] if !mailbox.is_empty() => run(mailbox),
        _ => Err(Verdict::perm("usage: qmail-quotawarn mailbox")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(v) => {
            let _ = writeln!(io::stdout(), "{}", v.text());
            ExitCode::from(v.tool_code())
        }
    }
}

fn env(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(|v| v.into_vec())
}

fn run(mailbox: &[u8]) -> Result<(), Verdict> {
    let missing = |n: &str| format!("qmail-quotawarn: {n} not set");
    let user = env("USER").ok_or_else(|| Verdict::perm(missing("USER")))?;
    let host = env("HOST").ok_or_else(|| Verdict::perm(missing("HOST")))?;
    let recipient = env("RECIPIENT").ok_or_else(|| Verdict::temp(missing("RECIPIENT")))?;
    let dtline = env("DTLINE").ok_or_else(|| Verdict::temp(missing("DTLINE")))?;
    let control = Control::new(&qmail::auto::home());
    let cfail = |e: qmail::control::ControlError| Verdict::temp(format!("qmail-quotawarn: {e}"));
    let text = match control.raw("quotawarning").map_err(cfail)? {
        Some(t) if !t.trim_ascii().is_empty() => t,
        _ => return Ok(()),
    };
    let me = control.me().map_err(cfail)?.unwrap_or_else(|| "localhost".to_string());
    let marker = [&b"Qmail-QuotaWarning: "[..], &user, b"@", &host].concat();
    let path = Path::new(OsStr::from_bytes(mailbox));
    let io_fail = |e: io::Error| {
        Verdict::temp(format!("qmail-quotawarn: unable to write to {}: {e}", path.display()))
    };
    let now = qmail::date822::unix_now();
    let warning = compose(&text, &marker, &dtline, &recipient, &me, now);
    if mailbox.ends_with(b"/") {
        if maildir_has_warning(path).map_err(io_fail)? {
            return Ok(());
        }
        let msg = [&b"Return-Path: <>\n"[..], &warning].concat();
        write_maildir(path, &msg, now).map_err(io_fail)
    } else {
        append_mbox(path, &marker, &warning, now).map_err(io_fail)
    }
}

/// The warning: our own lines, then the `%HEADER%` fields with defaults, then the text.
fn compose(
    text: &[u8],
    marker: &[u8],
    dtline: &[u8],
    recipient: &[u8],
    me: &str,
    now: i64,
) -> Vec<u8> {
    let date = Utc::from_unix(now).rfc822();
    let (fields, body) = mailmagic::split(text);
    let mut m = Vec::new();
    m.extend_from_slice(dtline);
    m.extend_from_slice(marker);
    m.push(b'\n');
    m.extend_from_slice(
        format!(
            "Received: (directly through the qmail-quotawarning program); {date}\n\
             Message-Id: <{now}.{}.qmail-quotawarn@{me}>\nDate: {date}\n",
            std::process::id()
        )
        .as_bytes(),
    );
    let to: Vec<u8> = recipient.iter().copied().filter(|&b| b != b'\n' && b != b'\r').collect();
    m.extend_from_slice(&mailmagic::header(
        vec![
            Line::Unless(b"from", format!("From: Qmail-QUOTAGUARD <MAILER-DAEMON@{me}>\n").into()),
            Line::Always([&b"To: <"[..], &to, b">\n"].concat()),
            Line::Unless(b"subject", b"Subject: QUOTA-WARNING!\n".to_vec()),
            Line::Always(b"MIME-Version: 1.0\n".to_vec()),
            Line::Unless(
                b"content-type",
                b"Content-Type: text/plain; charset=iso-8859-1\n".to_vec(),
            ),
            Line::Unless(
                b"content-transfer-encoding",
                b"Content-Transfer-Encoding: 8bit\n".to_vec(),
            ),
        ],
        &fields,
    ));
    m.push(b'\n');
    m.extend_from_slice(body);
    if !m.ends_with(b"\n") {
        m.push(b'\n');
    }
    m
}

/// Is a warning already waiting in `new/` or `cur/`?
fn maildir_has_warning(maildir: &Path) -> io::Result<bool> {
    for sub in ["new", "cur"] {
        for entry in fs::read_dir(maildir.join(sub))? {
            let name = entry?.file_name();
            let name = name.as_bytes();
            let last = name.iter().rposition(|&b| b == b'.').map_or(name, |i| &name[i + 1..]);
            if last.starts_with(b"QUOTA_WARNING") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// `tmp/<time>.<pid>.QUOTA_WARNING`, fsynced, linked to `new/…,S=<size>`.
fn write_maildir(maildir: &Path, msg: &[u8], now: i64) -> io::Result<()> {
    let name = format!("{now}.{}.QUOTA_WARNING", std::process::id());
    let tmp = maildir.join("tmp").join(&name);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(msg)?;
        // a warning is a delivery (doc/INTERNALS.md, "fsyncs per message")
        f.sync_all()?;
        drop(f);
        fs::hard_link(&tmp, maildir.join("new").join(format!("{name},S={}", msg.len())))?;
        qmail::file::fsync_dir(&maildir.join("new"))
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Append to an mbox under an exclusive lock, unless the marker line is already there.
fn append_mbox(path: &Path, marker: &[u8], warning: &[u8], now: i64) -> io::Result<()> {
    let file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)?;
    let start = Instant::now();
    let mut file = file;
    let locked: Flock<File> = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((f, _)) if start.elapsed() < LOCK_WAIT => {
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => return Err(io::Error::other(format!("unable to lock: {e}"))),
        }
    };
    let mut r = BufReader::new(&*locked);
    let mut line = Vec::new();
    loop {
        line.clear();
        // bounded lines: a longer one cannot be the marker anyway
        let n = io::Read::take(&mut r, 4096).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.strip_suffix(b"\n") == Some(marker) {
            return Ok(());
        }
        while !line.ends_with(b"\n") {
            line.clear();
            if io::Read::take(&mut r, 4096).read_until(b'\n', &mut line)? == 0 {
                break;
            }
        }
    }
    let mut out = format!("From MAILER-DAEMON {}\nReturn-Path: <>\n", qmail::date822::asctime(now))
        .into_bytes();
    for l in warning.split_inclusive(|&b| b == b'\n') {
        let body = l.iter().skip_while(|&&b| b == b'>').copied().collect::<Vec<u8>>();
        if body.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(l);
    }
    out.push(b'\n');
    let mut w = &*locked;
    w.write_all(&out)?;
    // a warning is a delivery (doc/INTERNALS.md, "fsyncs per message")
    locked.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes() {
        let m = compose(
            b"%HEADER%\nSubject: Full!\nTo: evil@x\n\nYour box is full.",
            b"Qmail-QuotaWarning: joe@example.org",
            b"Delivered-To: joe@example.org\n",
            b"joe@example.org\nBcc: x",
            "mx.example.org",
            0,
        );
        let s = String::from_utf8(m).unwrap();
        assert!(
            s.starts_with("Delivered-To: joe@example.org\nQmail-QuotaWarning: joe@example.org\n")
        );
        assert!(s.contains("From: Qmail-QUOTAGUARD <MAILER-DAEMON@mx.example.org>\n"));
        assert!(s.contains("To: <joe@example.orgBcc: x>\n"));
        assert!(s.contains("Subject: Full!\n") && !s.contains("QUOTA-WARNING!"));
        assert!(!s.contains("evil"));
        assert!(s.ends_with("\n\nYour box is full.\n"));
    }
}
