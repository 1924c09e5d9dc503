//! verify: the verdict on a recipient before the message is accepted — for qmail-verify
//! (qmail-smtpd's `RCPTCHECK`) and smmapd (Postfix's or Sendmail's socketmap).
//!
//! The verdict takes the path delivery takes, with the same code: the address is routed like
//! qmail-send routes it ([`crate::rewrite`]: `locals`, `virtualdomains`, the percent hack),
//! then the local part is looked up like qmail-getpw looks it up for qmail-lspawn
//! ([`crate::recipient`]: the directory with its catch-alls and extensions, `users/cdb`,
//! passwd, the alias user), and what qmail-local would then refuse is checked where it can be
//! seen without the message:
//!
//! - a classic account (users/cdb, passwd) with an extension, and the alias user, need a
//!   `.qmail` file of the lookup sequence ([`crate::dotqmail::candidates`]) in the home
//!   directory, or qmail-local bounces "no mailbox here by that name";
//! - a directory account with a Maildir++ quota must have room for one more message of no
//!   size (Maildir++ `maildirsize`, the rules of [`crate::quota`]: storage exactly at the limit
//!   is room, a count at the limit is not).
//!
//! What cannot be seen is not guessed at: a home directory the verifier may not read, or a
//! `maildirsize` it cannot scan, gives [`Verdict::Deliverable`] and delivery decides. A
//! directory entry that delivery would bounce for being ambiguous or broken (exit 156–158) is
//! [`Verdict::Temporary`] here: at SMTP time it waits for the administrator (doc/DECISIONS.md, 10).
//! The message size is not known at RCPT, so `mailSizeMax` is not checked.
//!
//! Texts are delivery's texts; what a client is told ([`Verdict::client_text`]) says no more
//! than delivery would (no paths, no entries, nothing about which lookup step answered).

use crate::account::{Account, EnvName};
use crate::control::Control;
use crate::dotqmail;
use crate::exit::{self, LdapExit, Outcome};
use crate::quota::{self, Quota};
use crate::recipient::{Failure, Found, Lookup, Source};
use crate::rewrite::{Rewriter, Route};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest address verified; a longer one is unknown (SMTP allows 256 bytes).
pub const ADDRESS_MAX: usize = 1024;

/// The text of an unknown recipient (qmail-local's and qmail-verify's).
pub const NO_MAILBOX: &str = "Sorry, no mailbox here by that name. (#5.1.1)";
/// The text of an address without a domain.
pub const NO_HOST: &str = "Sorry, address must include host name. (#5.1.3)";
/// The text of a disabled account (`accountStatus: disabled`; qmail-getpw's).
pub const DISABLED: &str = "Mailaddress is administratively disabled. (#5.2.1)";
/// The text of a mailbox over its quota (qmail-local's).
pub const OVER_QUOTA: &str = "The users mailfolder is over the allowed quota (size). (#5.2.2)";

/// The answer for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivery would take the message.
    Deliverable,
    /// No such mailbox (delivery would bounce).
    Unknown(String),
    /// The mailbox exists but takes no mail: `accountStatus: disabled`.
    NotPostable(String),
    /// The mailbox is full.
    OverQuota(String),
    /// Cannot tell now: the directory, a control file or a home directory failed. The text is
    /// for the log (it may name directory entries); clients get [`Verdict::client_text`].
    Temporary(String),
    /// The domain is not delivered here (not in `locals` or `virtualdomains`).
    NotLocal,
}

/// What a client is told on a temporary failure: nothing about entries or files.
pub const TEMPORARY: &str = "Temporary failure verifying the address. (#4.3.0)";

impl Verdict {
    /// The text for the client: the fixed texts of delivery for a definite answer, a fixed
    /// text for a temporary failure (whose own text names entries and files: it is for the
    /// log only), nothing for deliverable and not-local.
    pub fn client_text(&self) -> &str {
        match self {
            Verdict::Unknown(t) | Verdict::NotPostable(t) | Verdict::OverQuota(t) => t,
            Verdict::Temporary(_) => TEMPORARY,
            Verdict::Deliverable | Verdict::NotLocal => "",
        }
    }
}

/// The verifier of one long-lived process: the lookup keeps its directory connection.
pub struct Verifier {
    home: PathBuf,
    lookup: Lookup,
    /// The routing tables and when they were read.
    rewriter: Option<(Rewriter, Instant)>,
}

/// How long a verifier keeps the control files it has read (routing, directory settings): a
/// change counts within a second, and a busy service reads no files per address.
pub const CONTROL_TTL: Duration = Duration::from_secs(1);

impl Verifier {
    pub fn new(home: &Path) -> Self {
        Verifier {
            home: home.to_path_buf(),
            lookup: Lookup::with_ttl(home, CONTROL_TTL),
            rewriter: None,
        }
    }

    /// The routing tables, read again once older than [`CONTROL_TTL`].
    fn route(&mut self, address: &[u8]) -> crate::control::Result<Route> {
        if !self.rewriter.as_ref().is_some_and(|(_, at)| at.elapsed() < CONTROL_TTL) {
            let r = Rewriter::load(&Control::new(&self.home))?;
            self.rewriter = Some((r, Instant::now()));
        }
        match &self.rewriter {
            Some((r, _)) => r.route(address),
            None => Rewriter::load(&Control::new(&self.home))?.route(address),
        }
    }

    /// The verdict on `address` (an envelope recipient as given: `local@domain`).
    pub fn verdict(&mut self, address: &[u8]) -> Verdict {
        self.detailed(address, false).verdict
    }

    /// The verdict on `address` with what smmapd needs besides it: the account's Maildir (for
    /// its `+detail` folder check; looked for only `with_maildir`, as it may read a `.qmail`
    /// file) and whether a temporary failure was a directory timeout.
    pub fn detailed(&mut self, address: &[u8], with_maildir: bool) -> Detailed {
        if address.len() > ADDRESS_MAX || address.contains(&0) {
            return Verdict::Unknown(NO_MAILBOX.into()).into();
        }
        if !address.contains(&b'@') {
            return Verdict::Unknown(NO_HOST.into()).into();
        }
        let routed = match self.route(address) {
            Ok(Route::Local(a)) => a,
            Ok(Route::Remote(_)) => return Verdict::NotLocal.into(),
            Err(e) => {
                return Verdict::Temporary(format!("Unable to read controls: {e} (#4.3.0)")).into()
            }
        };
        let (local, domain) = crate::address::split(&routed);
        let domain = domain.unwrap_or_default();
        if local.is_empty() {
            return Verdict::Unknown(NO_MAILBOX.into()).into();
        }
        match self.lookup.find(local, Some(domain), None) {
            Ok(found) => Detailed {
                verdict: after_lookup(&found),
                maildir: with_maildir
                    .then(|| default_maildir(&Control::new(&self.home), &found))
                    .flatten(),
                timed_out: false,
            },
            Err(failure) => Detailed {
                verdict: from_failure(&failure),
                maildir: None,
                timed_out: LdapExit::from_code(failure.code) == Some(LdapExit::Timeout),
            },
        }
    }
}

/// A verdict with what smmapd needs besides it ([`Verifier::detailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detailed {
    pub verdict: Verdict,
    /// The Maildir the account's mail is filed into by default, when one can be named: a
    /// directory account's default delivery, a classic account's `.qmail` or
    /// `control/defaultdelivery` (its first Maildir line); none for forward-only accounts, the
    /// alias user and extensions.
    pub maildir: Option<PathBuf>,
    /// The verdict is temporary because the directory timed out (qmail-lspawn's 154).
    pub timed_out: bool,
}

impl From<Verdict> for Detailed {
    fn from(verdict: Verdict) -> Self {
        Detailed { verdict, maildir: None, timed_out: false }
    }
}

/// A lookup failure as a verdict: `disabled` is not postable, `deleted` unknown, every other
/// failure temporary (the permanent ones too: doc/DECISIONS.md, 10).
fn from_failure(f: &Failure) -> Verdict {
    let text = text_of(f);
    match LdapExit::from_code(f.code) {
        Some(LdapExit::Disabled) => Verdict::NotPostable(text),
        Some(LdapExit::Deleted) => Verdict::Unknown(text),
        _ => Verdict::Temporary(text.replace("#5.", "#4.")),
    }
}

/// The report text of a failure, else the fixed text of qmail-lspawn's table.
fn text_of(f: &Failure) -> String {
    let line = f.line();
    let bytes = if line.is_empty() {
        match exit::getpw_code(f.code) {
            Err(Outcome::Temp(t) | Outcome::Perm(t) | Outcome::Success(t)) => t,
            Ok(()) => Vec::new(),
        }
    } else {
        line
    };
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

/// What qmail-lspawn and qmail-local would still refuse once the account is known.
fn after_lookup(found: &Found) -> Verdict {
    let account = &found.account;
    if account.uid == 0 {
        return Verdict::Temporary(
            "Temporary failure: refusing to deliver to root. (#4.3.0)".into(),
        );
    }
    let home = Path::new(OsStr::from_bytes(&account.home));
    match found.source {
        Source::Directory => quota_verdict(account, home),
        Source::Assigned | Source::Passwd if account.dash.is_empty() => Verdict::Deliverable,
        Source::Assigned | Source::Passwd | Source::Alias => {
            dot_qmail_verdict(home, &account.dash, &account.ext)
        }
    }
}

/// A classic account with an extension: one file of the `.qmail` lookup sequence must exist.
fn dot_qmail_verdict(home: &Path, dash: &[u8], ext: &[u8]) -> Verdict {
    for c in dotqmail::candidates(dash, ext) {
        match std::fs::metadata(home.join(OsStr::from_bytes(&c.name))) {
            Ok(m) if m.is_file() => return Verdict::Deliverable,
            Ok(_) => continue,
            Err(e) if crate::file::is_missing(&e) => continue,
            // not ours to read: delivery decides
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Verdict::Deliverable,
            Err(_) => {
                return Verdict::Temporary(
                    "Temporary failure: unable to check the mailbox. (#4.3.0)".into(),
                )
            }
        }
    }
    Verdict::Unknown(NO_MAILBOX.into())
}

/// A directory account: room for one more message in the Maildir of its default delivery.
fn quota_verdict(account: &Account, home: &Path) -> Verdict {
    let Some(Ok(Some(quota))) = account.var(EnvName::MaildirQuota).map(Quota::parse) else {
        return Verdict::Deliverable;
    };
    let delivery = account.aliasempty.as_deref().unwrap_or(b"./Maildir/");
    let Some(maildir) = maildir_of(home, delivery) else { return Verdict::Deliverable };
    over_quota(&maildir, &quota)
}

/// The Maildir of a default delivery line (`./Maildir/`, `/abs/dir/`), if it is one.
fn maildir_of(home: &Path, delivery: &[u8]) -> Option<PathBuf> {
    let line = delivery.split(|&b| b == b'\n').next()?;
    if !line.ends_with(b"/") || !(line.starts_with(b".") || line.starts_with(b"/")) {
        return None;
    }
    Some(home.join(OsStr::from_bytes(line)))
}

/// The Maildir an account's mail is filed into by default, when one can be named without
/// reading the message: a directory account's default delivery (`ALIASEMPTY`, else
/// `./Maildir/`); a classic account without extension, the first Maildir line of its `.qmail`,
/// else of `control/defaultdelivery` (else `./Maildir/`). `None`: forward-only accounts, the
/// alias user, extensions, a `.qmail` without a Maildir line, anything unreadable.
fn default_maildir(ctl: &Control, found: &Found) -> Option<PathBuf> {
    let account = &found.account;
    let home = Path::new(OsStr::from_bytes(&account.home));
    match found.source {
        Source::Directory if account.var(EnvName::Mode) == Some(b"forwardonly") => None,
        Source::Directory => {
            maildir_of(home, account.aliasempty.as_deref().unwrap_or(b"./Maildir/"))
        }
        Source::Assigned | Source::Passwd if account.dash.is_empty() => {
            let dot = std::fs::File::open(home.join(".qmail")).and_then(|f| {
                let mut text = Vec::new();
                f.take(dotqmail::MAX_FILE).read_to_end(&mut text).map(|_| text)
            });
            let text = match dot {
                Ok(text) => text,
                Err(e) if crate::file::is_missing(&e) => ctl
                    .raw("defaultdelivery")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| b"./Maildir/".to_vec()),
                Err(_) => return None,
            };
            text.split(|&b| b == b'\n').find_map(|line| match dotqmail::parse_line(line) {
                dotqmail::Line::Maildir(dir) => Some(home.join(OsStr::from_bytes(dir))),
                _ => None,
            })
        }
        Source::Assigned | Source::Passwd | Source::Alias => None,
    }
}

/// Whether a Maildir has room for one more message of no size (a scan that fails: room).
fn over_quota(maildir: &Path, quota: &Quota) -> Verdict {
    match quota::check(&quota::root(maildir), quota, 0) {
        Ok(check) if check.over => Verdict::OverQuota(OVER_QUOTA.into()),
        _ => Verdict::Deliverable,
    }
}

/// The qmail-verify protocol (doc/qmail-verify.8, "The protocol"), shared by qmail-verify, which
/// writes answers, and qmail-smtpd, which reads them: the request is the address and a NUL; the
/// answer is `K` alone, or `D` or `Z`, a text and a NUL.
pub mod wire {
    /// The longest answer text read; a longer one is a broken verifier.
    pub const TEXT_MAX: usize = 1024;

    /// The longest request taken (read with [`crate::text0::read_record`]): an address of at
    /// most [`super::ADDRESS_MAX`] bytes, the NUL not counted.
    pub const REQUEST_MAX: usize = super::ADDRESS_MAX;

    /// A request's bytes: the address and a NUL.
    pub fn request(address: &[u8]) -> Vec<u8> {
        [address, b"\0"].concat()
    }

    /// One answer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Answer {
        /// `K`: take the recipient.
        Ok,
        /// `D<text>\0`: refuse it (a 5xx, or what the text's code says).
        Refused(Vec<u8>),
        /// `Z<text>\0`: try again later (a 4xx).
        Temporary(Vec<u8>),
    }

    /// Bytes that are not an answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Malformed;

    impl Answer {
        /// The answer's bytes; a NUL in the text (never in ours) is replaced by a space.
        pub fn encode(&self) -> Vec<u8> {
            let (letter, text) = match self {
                Answer::Ok => return b"K".to_vec(),
                Answer::Refused(t) => (b'D', t),
                Answer::Temporary(t) => (b'Z', t),
            };
            let mut out = Vec::with_capacity(text.len() + 2);
            out.push(letter);
            out.extend(text.iter().map(|&b| if b == 0 { b' ' } else { b }));
            out.push(0);
            out
        }

        /// Decode the start of `buf` (sans-I/O): `Ok(None)` when more bytes are needed, else
        /// the answer and the bytes it took. A text over [`TEXT_MAX`] or an unknown letter is
        /// [`Malformed`].
        pub fn decode(buf: &[u8]) -> Result<Option<(Answer, usize)>, Malformed> {
            let Some(&letter) = buf.first() else { return Ok(None) };
            if letter == b'K' {
                return Ok(Some((Answer::Ok, 1)));
            }
            if letter != b'D' && letter != b'Z' {
                return Err(Malformed);
            }
            let rest = &buf[1..];
            let Some(nul) = rest.iter().take(TEXT_MAX + 1).position(|&b| b == 0) else {
                return if rest.len() > TEXT_MAX { Err(Malformed) } else { Ok(None) };
            };
            let text = rest[..nul].to_vec();
            let answer =
                if letter == b'D' { Answer::Refused(text) } else { Answer::Temporary(text) };
            Ok(Some((answer, nul + 2)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_lines() {
        let h = Path::new("/home/joe");
        assert_eq!(maildir_of(h, b"./Maildir/"), Some(PathBuf::from("/home/joe/./Maildir/")));
        assert_eq!(maildir_of(h, b"/var/mail/joe/"), Some(PathBuf::from("/var/mail/joe/")));
        assert_eq!(maildir_of(h, b"./Mailbox"), None);
        assert_eq!(maildir_of(h, b"|prog"), None);
        assert_eq!(maildir_of(h, b"&joe@x"), None);
        assert_eq!(maildir_of(h, b""), None);
    }

    #[test]
    fn default_maildirs() {
        let dir = std::env::temp_dir().join(format!("verify-maildir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("control")).unwrap();
        std::fs::create_dir_all(dir.join("joe")).unwrap();
        let ctl = Control::new(&dir);
        let home = dir.join("joe");
        let found = |source, dash: &[u8], env: Vec<(&'static str, Vec<u8>)>| {
            let home = home.as_os_str().as_bytes().to_vec();
            let mut account = Account::plain(b"joe".to_vec(), 1000, 1000, home);
            account.dash = dash.to_vec();
            for (name, value) in env {
                match EnvName::parse(name.as_bytes()) {
                    Some(name) => account.env.push((name, value)),
                    None => account.aliasempty = Some(value),
                }
            }
            Found { account, source }
        };
        let dir_account = found(Source::Directory, b"", vec![]);
        assert_eq!(default_maildir(&ctl, &dir_account), Some(home.join("./Maildir/")));
        let store = found(Source::Directory, b"", vec![("ALIASEMPTY", b"/m/joe/".to_vec())]);
        assert_eq!(default_maildir(&ctl, &store), Some(PathBuf::from("/m/joe/")));
        let fwd = found(Source::Directory, b"", vec![("QMAILMODE", b"forwardonly".to_vec())]);
        assert_eq!(default_maildir(&ctl, &fwd), None);
        // classic: control/defaultdelivery, then the user's .qmail
        let classic = found(Source::Passwd, b"", vec![]);
        assert_eq!(default_maildir(&ctl, &classic), Some(home.join("./Maildir/")));
        std::fs::write(ctl.path("defaultdelivery"), "./Mailbox\n./Box/\n").unwrap();
        assert_eq!(default_maildir(&ctl, &classic), Some(home.join("./Box/")));
        std::fs::write(home.join(".qmail"), "&x@y\n").unwrap();
        assert_eq!(default_maildir(&ctl, &classic), None);
        std::fs::write(home.join(".qmail"), "# c\n/var/m/joe/\n").unwrap();
        assert_eq!(default_maildir(&ctl, &classic), Some(PathBuf::from("/var/m/joe/")));
        assert_eq!(default_maildir(&ctl, &found(Source::Assigned, b"-", vec![])), None);
        assert_eq!(default_maildir(&ctl, &found(Source::Alias, b"-", vec![])), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_never_bounce_except_the_definite_ones() {
        let f = |code| from_failure(&Failure::log(code, "x"));
        assert!(matches!(f(159), Verdict::NotPostable(_)));
        assert!(matches!(f(160), Verdict::Unknown(_)));
        for code in [111, 113, 115, 116, 118, 152, 153, 154, 155, 156, 157, 158, 162, 100] {
            match f(code) {
                Verdict::Temporary(t) => assert!(!t.contains("#5."), "{code}: {t}"),
                v => panic!("{code}: {v:?}"),
            }
        }
        let v = from_failure(&Failure::report(
            159,
            "Mailaddress is administratively disabled. (#5.2.1)",
        ));
        assert_eq!(
            v,
            Verdict::NotPostable("Mailaddress is administratively disabled. (#5.2.1)".into())
        );
    }

    #[test]
    fn hostile_addresses() {
        let dir = std::env::temp_dir().join(format!("verify-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("control")).unwrap();
        std::fs::write(dir.join("control/me"), "example.org\n").unwrap();
        std::fs::write(dir.join("control/locals"), "example.org\n").unwrap();
        let mut v = Verifier::new(&dir);
        assert_eq!(v.verdict(b"nobody"), Verdict::Unknown(NO_HOST.into()));
        assert_eq!(v.verdict(&[b'a'; 5000]), Verdict::Unknown(NO_MAILBOX.into()));
        assert_eq!(v.verdict(b"a\0b@example.org"), Verdict::Unknown(NO_MAILBOX.into()));
        assert_eq!(v.verdict(b"@example.org"), Verdict::Unknown(NO_MAILBOX.into()));
        assert_eq!(v.verdict(b"x@elsewhere.net"), Verdict::NotLocal);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wire_answers() {
        use wire::{Answer, Malformed};
        type Decoded = Result<Option<(Answer, usize)>, Malformed>;
        let rows: &[(&[u8], Decoded)] = &[
            (b"", Ok(None)),
            (b"K", Ok(Some((Answer::Ok, 1)))),
            (b"Kx", Ok(Some((Answer::Ok, 1)))),
            (b"Dno\0", Ok(Some((Answer::Refused(b"no".to_vec()), 4)))),
            (b"Z\0", Ok(Some((Answer::Temporary(Vec::new()), 2)))),
            (b"Zwait", Ok(None)),
            (b"X\0", Err(Malformed)),
        ];
        for (bytes, want) in rows {
            assert_eq!(&Answer::decode(bytes), want, "{bytes:?}");
        }
        assert_eq!(Answer::decode(&[b'D'; wire::TEXT_MAX + 2]), Err(Malformed));
        let mut long = vec![b'D'; wire::TEXT_MAX + 1];
        long.push(0);
        assert!(matches!(Answer::decode(&long), Ok(Some((Answer::Refused(_), _)))));
        for a in [Answer::Ok, Answer::Refused(b"a\0b".to_vec()), Answer::Temporary(Vec::new())] {
            let bytes = a.encode();
            let (back, used) = Answer::decode(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(back.encode(), bytes);
        }
    }
}
