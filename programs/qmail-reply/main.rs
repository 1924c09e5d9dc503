//! qmail-reply: the vacation auto-reply (doc/qmail-reply.8).
//!
//! `qmail-reply [-f textfile] [-j junkfile] [maildir]`, run by qmail-local (directly, never
//! through a shell) for deliveryMode `reply`, with the message on stdin and `QMAILREPLYTEXT`
//! (unless `-f`), `DTLINE`, `SENDER`, `RECIPIENT` and `HOST` in the environment. It answers
//! with envelope sender `<>`, `To: <SENDER>`, `Precedence: junk` and `Auto-Submitted:
//! auto-replied`, queued through qmail-queue. It never answers the null sender, `#@[]`, a
//! sender without `@`, senders such as `MAILER-DAEMON`, `postmaster` or `*-request` (plus the
//! patterns of `-j`), nor a message from a list or robot (`Precedence: junk|bulk|list`,
//! `List-*:`, `Mailing-List:`, `X-RBL:`, `X-Spam-Status: Yes`, `Auto-Submitted:` other than
//! `no`). With `maildir`, each sender is answered at most once per 14 days per reply text,
//! recorded in `maildir/qmail-reply.db` (bounded to the newest 128 KiB, rewritten atomically
//! under an flock on `maildir/qmail-reply.lock`).
//!
//! Exits 0 sent or suppressed, 100 usage, missing environment, unreadable `-f`/`-j` file or a
//! permanent queue error (qmail-local then bounces the message), 111 temporary failures.
//! See doc/qmail-reply.8.

#![forbid(unsafe_code)]

use md5::{Digest, Md5};
use nix::fcntl::{Flock, FlockArg};
use qmail::address::Address;
use qmail::date822::Utc;
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::mailmagic::{self, Field, Line};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A sender is answered once per this many seconds (doc/DECISIONS.md, 18).
const WINDOW: i64 = 1_209_600;
/// The database keeps the newest entries up to this size.
const DB_KEEP: usize = 128 * 1024;
/// A database bigger than this is not read (it starts afresh).
const DB_MAX: u64 = 1 << 20;
/// The longest reply text or junk file read.
const TEXT_MAX: u64 = 1 << 20;
/// How long to wait for the database lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Senders never answered: whole address, local part, `@domain` or a `-suffix` of the local
/// part, compared case-insensitively.
const JUNK: &[&str] = &[
    "-request",
    "daemon",
    "-daemon",
    "uucp",
    "mailer-daemon",
    "mailer",
    "postmaster",
    "root",
    "-relay",
];

const USAGE: &str = "usage: qmail-reply [-f textfile] [-j junkfile] [maildir]";

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.into_vec()).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(v) => {
            let _ = writeln!(io::stdout(), "{}", v.text());
            ExitCode::from(v.tool_code())
        }
    }
}

/// The command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    text_file: Option<Vec<u8>>,
    junk_file: Option<Vec<u8>>,
    maildir: Option<Vec<u8>>,
}

impl Args {
    fn parse(args: &[Vec<u8>]) -> Option<Args> {
        let mut a = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_slice() {
                b"-f" => a.text_file = Some(it.next()?.clone()),
                b"-j" => a.junk_file = Some(it.next()?.clone()),
                b"--" => {
                    a.maildir = it.next().cloned();
                    break;
                }
                m if a.maildir.is_none() && matches!(m.first(), Some(b'.' | b'/')) => {
                    a.maildir = Some(m.to_vec())
                }
                _ => return None,
            }
        }
        if it.next().is_some() {
            return None;
        }
        match &a.maildir {
            Some(m) if !m.ends_with(b"/") || !matches!(m.first(), Some(b'.' | b'/')) => None,
            _ => Some(a),
        }
    }
}

fn env(name: &str) -> Result<Vec<u8>, Verdict> {
    std::env::var_os(name)
        .map(|v| v.into_vec())
        .ok_or_else(|| Verdict::perm(format!("qmail-reply: {name} not set (#5.3.5)")))
}

fn read_file(name: &[u8]) -> Result<Vec<u8>, Verdict> {
    let shown = String::from_utf8_lossy(name);
    let fail = |e: io::Error| Verdict::perm(format!("qmail-reply: unable to read {shown}: {e}"));
    let mut data = Vec::new();
    File::open(OsStr::from_bytes(name))
        .map_err(fail)?
        .take(TEXT_MAX)
        .read_to_end(&mut data)
        .map_err(fail)?;
    Ok(data)
}

fn run(args: &[Vec<u8>]) -> Result<(), Verdict> {
    let args = Args::parse(args).ok_or_else(|| Verdict::perm(USAGE))?;
    let text = match &args.text_file {
        Some(f) => read_file(f)?,
        None => env(qmail::account::EnvName::ReplyText.as_str())?,
    };
    let dtline = env("DTLINE")?;
    let sender = env("SENDER")?;
    let recipient = env("RECIPIENT")?;
    env("HOST")?;
    if recipient.iter().position(|&b| b == b'@').map_or(true, |i| i == 0) {
        return Err(Verdict::perm("qmail-reply: RECIPIENT must hold an address (#5.3.5)"));
    }
    let mut junk: Vec<Vec<u8>> = JUNK.iter().map(|j| j.as_bytes().to_vec()).collect();
    if let Some(f) = &args.junk_file {
        junk.extend(
            read_file(f)?
                .split(|&b| b == b'\n')
                .map(|l| l.trim_ascii().to_ascii_lowercase())
                .filter(|l| !l.is_empty() && l[0] != b'#'),
        );
    }
    if !answerable(&sender, &junk) {
        return Ok(());
    }
    let header = mailmagic::read_header(&mut io::BufReader::new(io::stdin().lock()))
        .map_err(|e| Verdict::temp(format!("qmail-reply: unable to read message: {e}")))?;
    if from_robot(&header) {
        return Ok(());
    }
    let hash = text_hash(&text);
    let now = qmail::date822::unix_now();
    let db = args.maildir.as_ref().map(|m| Db::open(PathBuf::from(OsStr::from_bytes(m))));
    if let Some(Ok(db)) = &db {
        if db.answered(&sender, &hash, now) {
            return Ok(());
        }
    }
    let reply = compose(&text, &header, &dtline, &sender, &recipient, now);
    let to = Address::new(sender.clone())
        .map_err(|_| Verdict::perm("qmail-reply: sender too long (#5.1.3)"))?;
    qmail::queue::inject(&qmail::auto::home(), &reply, &Envelope::new(Address::null(), vec![to]))
        .map_err(|v| match v {
        Verdict::Temp(t) => Verdict::Temp(format!("qmail-reply: {t}")),
        Verdict::Perm(t) => Verdict::Perm(format!("qmail-reply: {t}")),
    })?;
    // sent: remember the sender (a failure only means a second reply some day)
    if let Some(Ok(db)) = db {
        let _ = db.record(&sender, &hash, now);
    }
    Ok(())
}

/// May this sender get an automatic answer at all?
fn answerable(sender: &[u8], junk: &[Vec<u8>]) -> bool {
    if sender.is_empty() || sender == b"#@[]" || sender.iter().any(|b| b.is_ascii_control()) {
        return false;
    }
    let lower = sender.to_ascii_lowercase();
    let (local, Some(_)) = qmail::address::split(&lower) else {
        return false;
    };
    let domain = &lower[local.len()..]; // with its `@`
    let suffixes = local.iter().enumerate().filter(|(_, &b)| b == b'-').map(|(i, _)| &local[i..]);
    let mut forms: Vec<&[u8]> = vec![&lower, local, domain];
    forms.extend(suffixes);
    !junk.iter().any(|j| forms.contains(&j.as_slice()))
}

/// Is the message from a list or a robot (RFC 3834 and the usual list headers)?
fn from_robot(header: &[Field]) -> bool {
    header.iter().any(|f| {
        let v = mailmagic::value(f).to_ascii_lowercase();
        match f.name.as_slice() {
            b"precedence" => matches!(v.as_slice(), b"junk" | b"bulk" | b"list"),
            b"mailing-list" | b"x-rbl" => true,
            b"x-spam-status" => v.starts_with(b"yes"),
            b"auto-submitted" => v != b"no",
            n => n.starts_with(b"list-"),
        }
    })
}

/// The reply: Delivered-To (so a reply that comes back is seen as a loop), our own lines,
/// the `%HEADER%` fields with defaults, the text with `%SUBJECT%` expanded.
fn compose(
    text: &[u8],
    header: &[Field],
    dtline: &[u8],
    sender: &[u8],
    recipient: &[u8],
    now: i64,
) -> Vec<u8> {
    let subject = mailmagic::subject(header);
    let (fields, body) = mailmagic::split(text);
    let date = Utc::from_unix(now).rfc822();
    let host = qmail::address::split(recipient).1.unwrap_or(recipient);
    let mut m = Vec::new();
    m.extend_from_slice(dtline);
    m.extend_from_slice(
        format!(
            "Message-Id: <{now}.{}.qmail-reply@{}>\nDate: {date}\n",
            std::process::id(),
            String::from_utf8_lossy(host)
        )
        .as_bytes(),
    );
    m.extend_from_slice(&mailmagic::header(
        vec![
            Line::Unless(b"from", [&b"From: <"[..], recipient, b">\n"].concat()),
            Line::Always([&b"To: <"[..], sender, b">\n"].concat()),
            Line::Unless(b"subject", b"Subject: [Auto-Reply] %SUBJECT%\n".to_vec()),
            Line::Always(b"MIME-Version: 1.0\n".to_vec()),
            Line::Unless(b"content-type", b"Content-Type: text/plain; charset=utf-8\n".to_vec()),
            Line::Unless(b"content-transfer-encoding", b"Content-Transfer-Encoding: 8bit\n".to_vec()),
            Line::Always(
                b"X-Mailer: qmail-reply (by qmail-ldap)\nPrecedence: junk\nAuto-Submitted: auto-replied\n"
                    .to_vec(),
            ),
        ],
        &fields,
    ));
    let mut out = mailmagic::expand(&m, &subject);
    out.push(b'\n');
    out.extend_from_slice(&mailmagic::expand(body, &subject));
    out.push(b'\n');
    out
}

/// The once-per-sender database in a Maildir, held under an exclusive lock.
struct Db {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Db {
    fn open(dir: PathBuf) -> io::Result<Db> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("qmail-reply.lock"))?;
        let start = Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Db { dir, _lock: lock }),
                Err((f, _)) if start.elapsed() < LOCK_WAIT => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err((_, e)) => return Err(io::Error::other(e)),
            }
        }
    }

    fn entries(&self, hash: &str) -> Vec<(Vec<u8>, i64)> {
        let mut data = Vec::new();
        let ok = File::open(self.dir.join("qmail-reply.db"))
            .and_then(|f| f.take(DB_MAX + 1).read_to_end(&mut data))
            .is_ok();
        if !ok || data.len() as u64 > DB_MAX {
            return Vec::new();
        }
        parse_db(&data, hash)
    }

    fn answered(&self, sender: &[u8], hash: &str, now: i64) -> bool {
        self.entries(hash).iter().any(|(s, t)| s.eq_ignore_ascii_case(sender) && recent(*t, now))
    }

    fn record(&self, sender: &[u8], hash: &str, now: i64) -> io::Result<()> {
        let mut entries = self.entries(hash);
        entries.retain(|(s, t)| !s.eq_ignore_ascii_case(sender) && recent(*t, now));
        entries.push((sender.to_vec(), now));
        let text = render_db(entries, hash);
        let tmp_dir =
            if self.dir.join("tmp").is_dir() { self.dir.join("tmp") } else { self.dir.clone() };
        let tmp = tmp_dir.join(format!("qmail-reply.{}.{now}", std::process::id()));
        qmail::file::replace_with(&self.dir.join("qmail-reply.db"), &tmp, 0o600, |mut f| {
            f.write_all(&text)
        })
    }
}

/// Within the window (an entry from the future counts only up to one window ahead).
fn recent(t: i64, now: i64) -> bool {
    t <= now.saturating_add(WINDOW) && now.saturating_sub(t) < WINDOW
}

/// The name of a reply text in the database: its MD5 as 32 lowercase hex digits (upstream's
/// `QRDBv1:` line; nothing here needs collision resistance).
fn text_hash(text: &[u8]) -> String {
    Md5::digest(text).iter().map(|b| format!("{b:02x}")).collect()
}

/// The database text: `QRDBv1:<md5 of the text>` then `<sender>:<hex time>` lines. Another
/// hash (a changed text) or a bad first line means no entries; a bad line is skipped alone.
/// The sender is everything before the last `:`, compared whole (never as a prefix).
fn parse_db(data: &[u8], hash: &str) -> Vec<(Vec<u8>, i64)> {
    let mut lines = data.split(|&b| b == b'\n');
    if lines.next() != Some(format!("QRDBv1:{hash}").as_bytes()) {
        return Vec::new();
    }
    lines
        .filter_map(|l| {
            let i = l.iter().rposition(|&b| b == b':')?;
            let (s, t) = (&l[..i], &l[i + 1..]);
            if s.is_empty() || t.is_empty() || t.len() > 15 || !t.iter().all(u8::is_ascii_hexdigit)
            {
                return None;
            }
            let t = i64::from_str_radix(std::str::from_utf8(t).ok()?, 16).ok()?;
            Some((s.to_vec(), t))
        })
        .collect()
}

/// Newest first, up to [`DB_KEEP`] bytes.
fn render_db(mut entries: Vec<(Vec<u8>, i64)>, hash: &str) -> Vec<u8> {
    entries.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut out = format!("QRDBv1:{hash}\n").into_bytes();
    for (s, t) in entries {
        let line = [&s[..], format!(":{t:08x}\n").as_bytes()].concat();
        if out.len() + line.len() > DB_KEEP {
            break;
        }
        out.extend_from_slice(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_hash_is_rfc1321_md5() {
        let rows: &[(&str, &str)] = &[
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in rows {
            assert_eq!(text_hash(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn args() {
        let p =
            |v: &[&str]| Args::parse(&v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>());
        assert_eq!(p(&[]), Some(Args::default()));
        assert!(p(&["./Maildir/"]).unwrap().maildir.is_some());
        assert!(p(&["-f", "t", "-j", "j", "/m/"]).unwrap().junk_file.is_some());
        for bad in
            [&["Maildir/"][..], &["./Maildir"], &["-f"], &["-x"], &["./a/", "./b/"], &["--", "m"]]
        {
            assert!(p(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn senders() {
        let junk: Vec<Vec<u8>> = JUNK.iter().map(|j| j.as_bytes().to_vec()).collect();
        let rows: &[(&[u8], bool)] = &[
            (b"alice@example.com", true),
            (b"", false),
            (b"#@[]", false),
            (b"alice", false),
            (b"MAILER-DAEMON@x.org", false),
            (b"mailer-daemon@x.org", false),
            (b"list-request@x.org", false),
            (b"List-Request@x.org", false),
            (b"root@x.org", false),
            (b"postmaster@x.org", false),
            (b"mx-daemon@x.org", false),
            (b"uucp@x", false),
            (b"a-relay@x", false),
            (b"daemonic@x", true),
            (b"requester@x", true),
            (b"a\nb@x", false),
            (b"a@b@x", true),
        ];
        for (s, want) in rows {
            assert_eq!(answerable(s, &junk), *want, "{:?}", String::from_utf8_lossy(s));
        }
        let mut more = junk.clone();
        more.push(b"@spam.example".to_vec());
        assert!(!answerable(b"x@spam.example", &more));
    }

    #[test]
    fn robots() {
        let rows: &[(&[u8], bool)] = &[
            (b"Subject: hi\n\n", false),
            (b"Precedence: bulk\n\n", true),
            (b"precedence:  LIST \n\n", true),
            (b"Precedence: junk\n\n", true),
            (b"Precedence: first-class\n\n", false),
            (b"List-Id: <x.y>\n\n", true),
            (b"List-Unsubscribe: <mailto:x>\n\n", true),
            (b"Mailing-List: contact x\n\n", true),
            (b"X-RBL: x\n\n", true),
            (b"X-Spam-Status: Yes, score=9\n\n", true),
            (b"X-Spam-Status: No\n\n", false),
            (b"Auto-Submitted: auto-replied\n\n", true),
            (b"Auto-Submitted: no\n\n", false),
            (b"Subject: x\n\nPrecedence: bulk\n", false),
        ];
        for (h, want) in rows {
            let (f, _) = mailmagic::fields(h);
            assert_eq!(from_robot(&f), *want, "{:?}", String::from_utf8_lossy(h));
        }
    }

    #[test]
    fn database() {
        let h = "0123456789abcdef0123456789abcdef";
        let data = format!(
            "QRDBv1:{h}\nalice@x:00000010\nal@x:00000020\nbad line\n:00000001\nb@x:zz\nc:d@x:00000030\nlong@x:{}\n",
            "f".repeat(40)
        );
        let e = parse_db(data.as_bytes(), h);
        let senders: Vec<&[u8]> = e.iter().map(|(s, _)| s.as_slice()).collect();
        assert_eq!(senders, [&b"alice@x"[..], b"al@x", b"c:d@x"]);
        assert!(parse_db(data.as_bytes(), "other").is_empty());
        assert!(parse_db(b"", h).is_empty());
        // prefix senders are distinct (upstream's quirk discarded the db)
        let e = parse_db(format!("QRDBv1:{h}\nalice@x.org:10\n").as_bytes(), h);
        assert!(!e.iter().any(|(s, _)| s == b"alice@x"));
        // bounded rendering, newest first
        let many: Vec<(Vec<u8>, i64)> =
            (0..20_000).map(|i| (format!("s{i}@x").into_bytes(), i)).collect();
        let text = render_db(many, h);
        assert!(text.len() <= DB_KEEP);
        let back = parse_db(&text, h);
        assert_eq!(back[0].1, 19_999);
        assert!(recent(100, 100 + WINDOW - 1) && !recent(100, 100 + WINDOW));
        assert!(!recent(i64::MAX, 0) && recent(10, 5));
    }

    #[test]
    fn composes() {
        let (hdr, _) = mailmagic::fields(b"Subject: Lunch?\n\n");
        let m = compose(
            b"%HEADER%\nFrom: Joe <joe@x>\nPrecedence: bulk\nTo: x@y\n\nAway re %SUBJECT%.",
            &hdr,
            b"Delivered-To: joe@x\n",
            b"alice@y",
            b"joe@x",
            0,
        );
        let s = String::from_utf8(m).unwrap();
        assert!(s.starts_with("Delivered-To: joe@x\nMessage-Id: <0."));
        assert!(s.contains("\nTo: <alice@y>\n") && !s.contains("x@y"));
        assert!(s.contains("\nFrom: Joe <joe@x>\n") && !s.contains("From: <joe@x>"));
        assert!(s.contains("\nSubject: [Auto-Reply] Lunch?\n"));
        assert!(s.contains("\nPrecedence: junk\n") && !s.contains("bulk"));
        assert!(s.ends_with("\n\nAway re Lunch?.\n"));
    }
}
