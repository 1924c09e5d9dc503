//! imapd's session (doc/imapd.8): the states of RFC 3501 3 (not authenticated,
//! authenticated, selected, logout), the commands of each, and the untagged updates.

use crate::fetch;
use crate::io::{Io, IoError};
use crate::mailbox::{Changes, Mailbox};
use crate::Settings;
use qmail::auth::{self, Credentials};
use qmail::getln::{Got, Lines};
use qmail::imap::flags::Flags;
use qmail::imap::folders::{self, Folder, FolderError, Store};
use qmail::imap::search::{self, Search, SearchError};
use qmail::imap::uidlist::{Rewrite, UidList};
use qmail::imap::{self as imap, write, Command, Event, Reader, Request, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Syntax errors in a row that end the session.
const MAX_ERRORS: u32 = 10;
/// The largest message APPEND takes.
pub const APPEND_MAX: u32 = 64 * 1024 * 1024;
/// How often IDLE looks at the folder.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often IDLE says it is still there.
const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);

/// The flags a folder knows, for FLAGS and PERMANENTFLAGS.
const SYSTEM_FLAGS: &str = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)";

/// Who is logged in, and where the mail is.
pub struct User {
    pub name: String,
    pub store: Store,
    /// the Maildir root (for `maildirsize`)
    pub root: PathBuf,
    /// `MAILDIRQUOTA`
    pub quota: Option<qmail::quota::Quota>,
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// LOGOUT, or the client went away
    Normal,
    /// an I/O failure, a timeout, too many errors, shutdown
    Dropped,
}

pub struct Session<'a> {
    pub io: Io,
    pub settings: &'a Settings,
    pub user: Option<User>,
    pub selected: Option<Mailbox>,
    reader: Reader,
    errors: u32,
    first: bool,
    /// the tag of the command being served
    pub tag: Option<Vec<u8>>,
}

/// A command's outcome: the tagged reply's status and text.
enum Reply {
    Ok(String),
    No(String),
    Bad(String),
    /// the reply has been sent (LOGOUT, IDLE)
    Sent,
}

impl<'a> Session<'a> {
    pub fn new(io: Io, settings: &'a Settings) -> Session<'a> {
        Session {
            io,
            settings,
            user: None,
            selected: None,
            reader: Reader::new(imap::Limits::new(APPEND_MAX)),
            errors: 0,
            first: true,
            tag: None,
        }
    }

    /// The capabilities for the current state.
    pub fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS");
        caps.push_str(
            " UNSELECT CHILDREN SPECIAL-USE MOVE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE",
        );
        if self.user.is_none() {
            if !self.io.is_tls() && self.settings.tls_available() {
                caps.push_str(" STARTTLS");
            }
            if self.login_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    fn login_allowed(&self) -> bool {
        self.io.is_tls() || self.settings.ssf >= 2 || self.settings.allow_plaintext
    }

    /// Serve commands until the end.
    pub fn run(&mut self) -> End {
        loop {
            let (n, event) = self.reader.push(&self.io.inbuf);
            self.io.inbuf.drain(..n);
            let event = match event {
                Some(e) => e,
                None => match self.io.fill() {
                    Ok(()) => continue,
                    Err(e) => return self.io_end(e),
                },
            };
            let result = match event {
                Event::Continue => self.io.send(b"+ Ready for literal data\r\n"),
                Event::Error(e) => {
                    let first = std::mem::replace(&mut self.first, false);
                    if first && e.tag.is_none() {
                        let _ = self.io.send(b"* BYE Not an IMAP client\r\n");
                        self.io.close();
                        return End::Dropped;
                    }
                    if let imap::ErrorKind::LiteralTooBig { size: None, .. } = e.kind {
                        let _ = self.io.send(&e.response());
                        let _ = self.io.send(b"* BYE Literal too big\r\n");
                        self.io.close();
                        return End::Dropped;
                    }
                    self.io.send(&e.response()).and_then(|()| self.syntax_error())
                }
                Event::Command(cmd) => match self.command(&cmd) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        self.io.close();
                        return End::Normal;
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                return self.io_end(e);
            }
        }
    }

    /// Count a syntax error; the tenth in a row ends the session.
    fn syntax_error(&mut self) -> Result<(), IoError> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.io.send(b"* BYE Too many syntax errors\r\n")?;
            self.io.close();
            return Err(IoError::Broken);
        }
        Ok(())
    }

    fn io_end(&mut self, e: IoError) -> End {
        match e {
            IoError::Eof => End::Normal,
            IoError::Timeout => {
                let _ = self.io.send(b"* BYE Autologout; idle for too long\r\n");
                self.io.close();
                End::Dropped
            }
            IoError::Term => {
                let _ = self.io.send(b"* BYE Server shutting down\r\n");
                self.io.close();
                End::Normal
            }
            IoError::Broken => End::Dropped,
        }
    }

    /// The shutdown message, when the administrator has left one (doc/imapd.8, "msg/shutdown").
    fn shutdown_check(&mut self) -> Result<(), IoError> {
        if let Some(text) = self.settings.shutdown_message() {
            self.io.send(format!("* BYE [ALERT] {text}\r\n").as_bytes())?;
            self.io.close();
            return Err(IoError::Broken);
        }
        Ok(())
    }

    /// The user deny list: a user blocked from this service gets `* BYE [ALERT] <message>`
    /// (after the login, and before each command, as upstream).
    fn deny_check(&mut self) -> Result<(), IoError> {
        let Some(user) = &self.user else { return Ok(()) };
        if let Some(why) = self.settings.denied(&user.name) {
            qmail::log::line(format_args!(
                "imapd: {}: denied: {why}",
                qmail::safe::log(user.name.as_bytes())
            ));
            self.io.send(format!("* BYE [ALERT] {why}\r\n").as_bytes())?;
            self.io.close();
            return Err(IoError::Broken);
        }
        Ok(())
    }

    /// One command: `Ok(false)` ends the session.
    fn command(&mut self, cmd: &Command) -> Result<bool, IoError> {
        if self.user.is_some() {
            self.shutdown_check()?;
            self.deny_check()?;
        }
        let request = match Request::of(cmd) {
            Ok(r) => r,
            Err(kind) => {
                let error = imap::Error { tag: Some(cmd.tag.clone()), kind };
                self.io.send(&error.response())?;
                if std::mem::replace(&mut self.first, false) {
                    // not an IMAP client (an HTTP request, a stray protocol): say so and go
                    self.io.send(b"* BYE Not an IMAP client\r\n")?;
                    self.io.close();
                    return Err(IoError::Broken);
                }
                self.syntax_error()?;
                return Ok(true);
            }
        };
        self.first = false;
        self.tag = Some(cmd.tag.clone());
        if self.settings.debug {
            qmail::log::line(format_args!("imapd: pid {}: {request:?}", std::process::id()));
        }
        let reply = self.dispatch(&cmd.tag, &request)?;
        let (status, text) = match reply {
            Reply::Sent => {
                self.errors = 0;
                return Ok(!matches!(request, Request::Logout));
            }
            Reply::Ok(t) => ("OK", t),
            Reply::No(t) => ("NO", t),
            Reply::Bad(t) => ("BAD", t),
        };
        if status == "BAD" {
            self.syntax_error()?;
        } else {
            self.errors = 0;
        }
        // updates for the selected folder after every command but those that may not expunge
        let may_expunge = !matches!(
            request,
            Request::Fetch { uid: false, .. }
                | Request::Store { uid: false, .. }
                | Request::Search { uid: false, .. }
                | Request::Copy(_)
        );
        if !matches!(request, Request::Select(_) | Request::Examine(_)) {
            self.updates(may_expunge)?;
        }
        let mut line = cmd.tag.clone();
        line.extend_from_slice(format!(" {status} {text}\r\n").as_bytes());
        self.io.send(&line)?;
        Ok(true)
    }

    /// Send what changed in the selected folder.
    fn updates(&mut self, may_expunge: bool) -> Result<(), IoError> {
        let Some(mb) = self.selected.as_mut() else { return Ok(()) };
        let changes = match mb.sync(may_expunge) {
            Ok(c) => c,
            Err(e) => {
                qmail::log::line(format_args!("imapd: {}: {e}", mb.name));
                return Ok(());
            }
        };
        self.send_changes(changes)
    }

    fn send_changes(&mut self, changes: Changes) -> Result<(), IoError> {
        let Some(mb) = self.selected.as_ref() else { return Ok(()) };
        let mut out = Vec::new();
        for n in &changes.expunged {
            out.extend_from_slice(format!("* {n} EXPUNGE\r\n").as_bytes());
        }
        for &n in &changes.flags {
            let m = &mb.msgs[n as usize - 1];
            out.extend_from_slice(format!("* {n} FETCH (UID {} FLAGS ", m.uid).as_bytes());
            m.flags().write(&mut out);
            out.extend_from_slice(b")\r\n");
        }
        if let Some(n) = changes.exists {
            out.extend_from_slice(
                format!("* {n} EXISTS\r\n* {} RECENT\r\n", mb.recent()).as_bytes(),
            );
        }
        self.io.send(&out)
    }

    fn dispatch(&mut self, tag: &[u8], request: &Request<'_>) -> Result<Reply, IoError> {
        let reply = match request {
            Request::Capability => {
                let caps = self.capabilities();
                self.io.send(format!("* CAPABILITY {caps}\r\n").as_bytes())?;
                Reply::Ok("CAPABILITY completed".into())
            }
            Request::Noop => Reply::Ok("NOOP completed".into()),
            Request::Logout => {
                self.io.send(b"* BYE Logging out\r\n")?;
                let mut line = tag.to_vec();
                line.extend_from_slice(b" OK LOGOUT completed\r\n");
                self.io.send(&line)?;
                return Ok(Reply::Sent);
            }
            Request::Id(_) => {
                self.io.send(b"* ID (\"name\" \"qmail-ldap-rs imapd\")\r\n")?;
                Reply::Ok("ID completed".into())
            }
            Request::Starttls => return self.starttls(tag),
            Request::Login { user, password } => {
                let creds = Credentials {
                    login: user.to_vec(),
                    password: Zeroizing::new(password.to_vec()),
                };
                self.authenticate(&creds)?
            }
            Request::Authenticate(args) => self.authenticate_sasl(args)?,
            _ if self.user.is_none() => Reply::Bad("Please log in first".into()),
            Request::Enable(_) => {
                self.io.send(b"* ENABLED\r\n")?;
                Reply::Ok("ENABLE completed".into())
            }
            Request::Namespace => {
                self.io.send(format!("* NAMESPACE {}\r\n", folders::NAMESPACE).as_bytes())?;
                Reply::Ok("NAMESPACE completed".into())
            }
            Request::Select(name) => self.select(name, false)?,
            Request::Examine(name) => self.select(name, true)?,
            Request::Create(name) => self.folder_op(|s| s.create(name).map(|_| ()), "CREATE"),
            Request::Delete(name) => {
                let store = &self.user.as_ref().expect("logged in").store;
                if let (Some(mb), Ok(f)) = (&self.selected, store.resolve(name)) {
                    if f.name == mb.name {
                        self.selected = None;
                    }
                }
                self.folder_op(|s| s.delete(name), "DELETE")
            }
            Request::Rename { from, to } => self.folder_op(|s| s.rename(from, to), "RENAME"),
            Request::Subscribe(name) => self.folder_op(|s| s.subscribe(name), "SUBSCRIBE"),
            Request::Unsubscribe(name) => self.folder_op(|s| s.unsubscribe(name), "UNSUBSCRIBE"),
            Request::List(p) => self.list(p, "LIST")?,
            Request::Lsub(p) => self.list(p, "LSUB")?,
            Request::Status { mailbox, items } => self.status(mailbox, items)?,
            Request::GetQuotaRoot(name) => self.quota_root(name)?,
            Request::GetQuota([]) => {
                self.quota_line()?;
                Reply::Ok("GETQUOTA completed".into())
            }
            Request::GetQuota(_) => Reply::No("[NONEXISTENT] No such quota root".into()),
            Request::SetQuota(_) => {
                Reply::No("[NOPERM] Quotas are set by the administrator".into())
            }
            Request::Append { mailbox, flags, date, message } => {
                self.append(mailbox, *flags, *date, message)?
            }
            _ if self.selected.is_none() => Reply::Bad("No mailbox selected".into()),
            Request::Check => Reply::Ok("CHECK completed".into()),
            Request::Close => {
                let mb = self.selected.take().expect("selected");
                if !mb.read_only {
                    let mut mb = mb;
                    let deleted: Vec<usize> = (0..mb.msgs.len())
                        .filter(|&i| mb.msgs[i].flags.contains(Flags::DELETED))
                        .collect();
                    let (_, bytes, count) = mb.expunge(&deleted);
                    self.quota_removed(bytes, count);
                }
                Reply::Ok("CLOSE completed".into())
            }
            Request::Unselect => {
                self.selected = None;
                Reply::Ok("UNSELECT completed".into())
            }
            Request::Expunge(set) => self.expunge(set.as_ref())?,
            Request::Idle => return self.idle(tag),
            Request::Search { uid, keys } => self.search(*uid, keys)?,
            Request::Fetch { uid, set, items } => {
                let mb = self.selected.as_mut().expect("selected");
                match fetch::fetch(&mut self.io, mb, set, *uid, items)? {
                    fetch::Outcome::Done => Reply::Ok("FETCH completed".into()),
                    fetch::Outcome::Bad(why) => Reply::Bad(why.into()),
                    fetch::Outcome::Expunged => Reply::No(
                        "[EXPUNGEISSUED] Some of the requested messages no longer exist".into(),
                    ),
                }
            }
            Request::Store { uid, set, action, flags } => self.store(*uid, set, action, flags)?,
            Request::Copy(t) => self.copy(t, false)?,
            Request::Move(t) => self.copy(t, true)?,
        };
        Ok(reply)
    }

    fn starttls(&mut self, tag: &[u8]) -> Result<Reply, IoError> {
        if self.user.is_some() || self.io.is_tls() {
            return Ok(Reply::Bad("TLS not available now".into()));
        }
        let config = match self.settings.tls() {
            Ok(c) => c,
            Err(e) => {
                qmail::log::line(format_args!("imapd: STARTTLS: {e}"));
                return Ok(Reply::No("TLS not available".into()));
            }
        };
        let mut line = tag.to_vec();
        line.extend_from_slice(b" OK Begin TLS negotiation now\r\n");
        self.io.send(&line)?;
        self.io.start_tls(config)?;
        // what was read in the clear is forgotten
        self.reader = Reader::new(imap::Limits::new(APPEND_MAX));
        Ok(Reply::Sent)
    }

    /// LOGIN, or AUTHENTICATE's credentials.
    fn authenticate(&mut self, creds: &Credentials) -> Result<Reply, IoError> {
        if self.user.is_some() {
            return Ok(Reply::Bad("Already logged in".into()));
        }
        if !self.login_allowed() {
            return Ok(Reply::No(
                "[PRIVACYREQUIRED] Plaintext login disallowed, use STARTTLS".into(),
            ));
        }
        match crate::log_in(self, creds) {
            Ok(()) => {
                self.deny_check()?;
                Ok(Reply::Ok(format!("[CAPABILITY {}] Logged in", self.capabilities())))
            }
            Err(failure) => {
                let who = qmail::safe::log(&creds.login);
                qmail::log::line(format_args!("imapd: login {who} failed: {failure}"));
                Ok(Reply::No(match failure {
                    auth::Failure::NoSuchUser
                    | auth::Failure::BadPassword
                    | auth::Failure::Disabled(_) => {
                        self.io.flush()?;
                        std::thread::sleep(self.settings.bad_login_delay);
                        "[AUTHENTICATIONFAILED] Authentication failed".into()
                    }
                    _ => "[UNAVAILABLE] Temporary authentication failure".into(),
                }))
            }
        }
    }

    /// AUTHENTICATE PLAIN, with the initial response (SASL-IR) or after a `+`.
    fn authenticate_sasl(&mut self, args: &[Value]) -> Result<Reply, IoError> {
        let mech = match &args[0] {
            Value::Atom(m) => m.clone(),
            _ => return Ok(Reply::Bad("Mechanism expected".into())),
        };
        if !mech.eq_ignore_ascii_case(b"PLAIN") {
            return Ok(Reply::No("Unsupported authentication mechanism".into()));
        }
        if self.user.is_some() {
            return Ok(Reply::Bad("Already logged in".into()));
        }
        if !self.login_allowed() {
            return Ok(Reply::No(
                "[PRIVACYREQUIRED] Plaintext login disallowed, use STARTTLS".into(),
            ));
        }
        let response: Zeroizing<Vec<u8>> = match args.get(1) {
            Some(Value::Atom(r)) if r == b"=" => Zeroizing::new(Vec::new()),
            Some(v) => match v.astring() {
                Some(r) => Zeroizing::new(r.to_vec()),
                None => return Ok(Reply::Bad("Bad initial response".into())),
            },
            None => {
                self.io.send(b"+ \r\n")?;
                match self.line()? {
                    Some(line) if line.as_slice() == b"*" => {
                        return Ok(Reply::Bad("Authentication canceled".into()))
                    }
                    Some(line) => line,
                    None => return Ok(Reply::Bad("Response too long".into())),
                }
            }
        };
        let request = auth::smtp::plain_request(&response);
        match auth::smtp::credentials(&request) {
            Ok(Some(creds)) => self.authenticate(&creds),
            _ => Ok(Reply::Bad("Bad PLAIN response".into())),
        }
    }

    /// One line from the client that is not a command (AUTHENTICATE's response, IDLE's
    /// DONE); `None` when over 64 KiB.
    fn line(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>, IoError> {
        let mut lines = Lines::new(imap::MAX_LINE);
        loop {
            let (n, got) = lines.push(&self.io.inbuf);
            self.io.inbuf.drain(..n);
            match got {
                Some(Got::Line) => return Ok(Some(Zeroizing::new(lines.line().to_vec()))),
                Some(Got::TooLong) => return Ok(None),
                None => self.io.fill()?,
            }
        }
    }

    /// The folder `name` when it exists; else the NO to answer (`code`: NONEXISTENT, or
    /// TRYCREATE where the client may create it and try again), or the folder error.
    fn existing(&self, name: &[u8], code: &str) -> Result<Folder, Reply> {
        let folder = self.store_of().resolve(name).map_err(folder_error)?;
        if !self.store_of().exists(&folder) {
            return Err(Reply::No(format!("[{code}] Mailbox does not exist")));
        }
        Ok(folder)
    }

    /// The user's store.
    fn store_of(&self) -> &Store {
        &self.user.as_ref().expect("logged in").store
    }

    fn folder_op(
        &mut self,
        op: impl FnOnce(&Store) -> Result<(), FolderError>,
        what: &str,
    ) -> Reply {
        match op(self.store_of()) {
            Ok(()) => Reply::Ok(format!("{what} completed")),
            Err(e) => folder_error(e),
        }
    }

    fn select(&mut self, name: &[u8], read_only: bool) -> Result<Reply, IoError> {
        self.selected = None;
        let folder = match self.existing(name, "NONEXISTENT") {
            Ok(f) => f,
            Err(reply) => return Ok(reply),
        };
        let mb = match Mailbox::open(&folder.name, &folder.dir, read_only) {
            Ok(mb) => mb,
            Err(e) => {
                qmail::log::line(format_args!("imapd: {}: {e}", folder.name));
                return Ok(Reply::No("[UNAVAILABLE] Unable to open the mailbox".into()));
            }
        };
        let mut out = format!("* FLAGS {SYSTEM_FLAGS}\r\n");
        if read_only {
            out.push_str("* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            out.push_str(&format!("* OK [PERMANENTFLAGS {SYSTEM_FLAGS}] Limited\r\n"));
        }
        out.push_str(&format!("* {} EXISTS\r\n* {} RECENT\r\n", mb.exists(), mb.recent()));
        if let Some(n) = mb.first_unseen() {
            out.push_str(&format!("* OK [UNSEEN {n}] First unseen\r\n"));
        }
        out.push_str(&format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", mb.uidvalidity));
        out.push_str(&format!("* OK [UIDNEXT {}] Predicted next UID\r\n", mb.uidnext));
        self.io.send(out.as_bytes())?;
        self.selected = Some(mb);
        Ok(Reply::Ok(if read_only {
            "[READ-ONLY] EXAMINE completed".into()
        } else {
            "[READ-WRITE] SELECT completed".into()
        }))
    }

    fn list(&mut self, p: &imap::Pattern<'_>, kind: &str) -> Result<Reply, IoError> {
        let found = match kind {
            "LIST" => self.store_of().list(p.reference, p.pattern),
            _ => self.store_of().lsub(p.reference, p.pattern),
        };
        match found {
            Ok(list) => {
                let mut out = Vec::new();
                for l in &list {
                    folders::write_listed(kind, l, &mut out);
                }
                self.io.send(&out)?;
                Ok(Reply::Ok(format!("{kind} completed")))
            }
            Err(e) => Ok(folder_error(e)),
        }
    }

    fn status(&mut self, name: &[u8], items: &[Value]) -> Result<Reply, IoError> {
        let folder = match self.existing(name, "NONEXISTENT") {
            Ok(f) => f,
            Err(reply) => return Ok(reply),
        };
        let mut words = Vec::new();
        for item in items {
            match item {
                Value::Atom(a) => words.push(a.to_ascii_uppercase()),
                _ => return Ok(Reply::Bad("Invalid status item".into())),
            }
        }
        // the selected folder answers from the view (after a sync); another is opened read-only
        let opened;
        let mb = match self.selected.as_mut().filter(|mb| mb.name == folder.name) {
            Some(mb) => {
                let _ = mb.sync(false);
                &*mb
            }
            None => match Mailbox::open(&folder.name, &folder.dir, true) {
                Ok(mb) => {
                    opened = mb;
                    &opened
                }
                Err(e) => {
                    qmail::log::line(format_args!("imapd: {}: {e}", folder.name));
                    return Ok(Reply::No("[UNAVAILABLE] Unable to open the mailbox".into()));
                }
            },
        };
        let mut parts = Vec::new();
        for w in &words {
            let value = match &w[..] {
                b"MESSAGES" => mb.exists(),
                b"RECENT" => mb.recent(),
                b"UIDNEXT" => mb.uidnext,
                b"UIDVALIDITY" => mb.uidvalidity,
                b"UNSEEN" => {
                    mb.msgs.iter().filter(|m| !m.flags.contains(Flags::SEEN)).count() as u32
                }
                _ => return Ok(Reply::Bad("Unknown status item".into())),
            };
            parts.push(format!("{} {value}", String::from_utf8_lossy(w)));
        }
        let mut out = b"* STATUS ".to_vec();
        write::astring(folder.name.as_bytes(), &mut out);
        out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.io.send(&out)?;
        Ok(Reply::Ok("STATUS completed".into()))
    }

    /// GETQUOTAROOT (RFC 9208): every folder is in the one root `""`, the Maildir's
    /// `maildirsize`; without a quota there is no root.
    fn quota_root(&mut self, name: &[u8]) -> Result<Reply, IoError> {
        let folder = match self.existing(name, "NONEXISTENT") {
            Ok(f) => f,
            Err(reply) => return Ok(reply),
        };
        let mut out = b"* QUOTAROOT ".to_vec();
        write::astring(folder.name.as_bytes(), &mut out);
        if self.user.as_ref().is_some_and(|u| u.quota.is_some()) {
            out.extend_from_slice(b" \"\"");
        }
        out.extend_from_slice(b"\r\n");
        self.io.send(&out)?;
        self.quota_line()?;
        Ok(Reply::Ok("GETQUOTAROOT completed".into()))
    }

    /// `* QUOTA "" (STORAGE used limit MESSAGE used limit)` from `maildirsize` (STORAGE in
    /// KiB, rounded up; a limit of 0 is no limit and not listed). Nothing without a quota.
    fn quota_line(&mut self) -> Result<(), IoError> {
        let Some(user) = self.user.as_ref() else { return Ok(()) };
        let Some(quota) = &user.quota else { return Ok(()) };
        let usage = match qmail::quota::check(&user.root, quota, 0) {
            Ok(check) => check.usage,
            Err(e) => {
                qmail::log::line(format_args!("imapd: maildirsize: {e}"));
                return Ok(());
            }
        };
        let mut parts = Vec::new();
        if quota.bytes > 0 {
            let used = u64::try_from(usage.bytes).unwrap_or(0).div_ceil(1024);
            parts.push(format!("STORAGE {used} {}", quota.bytes.div_ceil(1024)));
        }
        if quota.count > 0 {
            let used = u64::try_from(usage.count).unwrap_or(0);
            parts.push(format!("MESSAGE {used} {}", quota.count));
        }
        self.io.send(format!("* QUOTA \"\" ({})\r\n", parts.join(" ")).as_bytes())
    }

    fn append(
        &mut self,
        name: &[u8],
        flags: Option<&[Value]>,
        date: Option<&[u8]>,
        message: &[u8],
    ) -> Result<Reply, IoError> {
        let folder = match self.existing(name, "TRYCREATE") {
            Ok(f) => f,
            Err(reply) => return Ok(reply),
        };
        let set = match system_flags(flags.unwrap_or_default()) {
            Ok(set) => set,
            Err(reply) => return Ok(reply),
        };
        let time = match date {
            None => None,
            Some(d) => match qmail::imap::date::parse_date_time(d) {
                Some(t) => Some(t),
                None => return Ok(Reply::Bad("Invalid date-time".into())),
            },
        };
        if message.is_empty() {
            return Ok(Reply::No("Empty message".into()));
        }
        // stored with LF line ends, as qmail-local delivers (FETCH and qmail-pop3d add the CRs)
        let message = &lf_line_ends(message)[..];
        let user = self.user.as_ref().expect("logged in");
        if let Some(quota) = &user.quota {
            match qmail::quota::check(&user.root, quota, message.len() as u64) {
                Ok(check) if check.over => {
                    return Ok(Reply::No("[OVERQUOTA] Quota exceeded".into()));
                }
                Ok(_) => {}
                Err(e) => qmail::log::line(format_args!("imapd: quota: {e}")),
            }
        }
        let staged = match qmail::maildir::stage(&folder.dir, b"", &mut &message[..]) {
            Ok(s) => s,
            Err(e) => {
                qmail::log::line(format_args!("imapd: APPEND to {}: {e}", folder.name));
                return Ok(Reply::No("[SERVERBUG] Unable to store the message".into()));
            }
        };
        if let Some(t) = time {
            let when = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
            let times = std::fs::FileTimes::new().set_modified(when).set_accessed(when);
            if let Ok(f) = std::fs::File::options().write(true).open(staged.tmp_path()) {
                let _ = f.set_times(times);
            }
        }
        let base = staged.base();
        let info = qmail::imap::flags::Info::with_flags(set);
        let name_with_info = info.name(&base);
        let suffix = &name_with_info[base.len()..];
        let size = staged.size();
        if let Err(e) = staged.commit_into("cur", suffix) {
            qmail::log::line(format_args!("imapd: APPEND to {}: {e}", folder.name));
            return Ok(Reply::No("[SERVERBUG] Unable to store the message".into()));
        }
        let root = user.root.clone();
        if let Err(e) = qmail::quota::add(&root, size, 1) {
            qmail::log::line(format_args!("imapd: maildirsize: {e}"));
        }
        let uid = uid_of(&folder.dir, &[base]);
        match uid {
            Some((validity, uids)) => {
                Ok(Reply::Ok(format!("[APPENDUID {validity} {}] APPEND completed", uids[0])))
            }
            None => Ok(Reply::Ok("APPEND completed".into())),
        }
    }

    fn quota_removed(&self, bytes: u64, count: u64) {
        if count == 0 {
            return;
        }
        if let Some(user) = &self.user {
            if let Err(e) = qmail::quota::remove(&user.root, bytes, count) {
                qmail::log::line(format_args!("imapd: maildirsize: {e}"));
            }
        }
    }

    fn expunge(&mut self, set: Option<&imap::SequenceSet>) -> Result<Reply, IoError> {
        let mb = self.selected.as_mut().expect("selected");
        if mb.read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let chosen: Vec<usize> = match set {
            Some(set) => mb.select(set, true),
            None => (0..mb.msgs.len()).collect(),
        };
        let deleted: Vec<usize> =
            chosen.into_iter().filter(|&i| mb.msgs[i].flags.contains(Flags::DELETED)).collect();
        let (numbers, bytes, count) = mb.expunge(&deleted);
        let mut out = Vec::new();
        for n in numbers {
            out.extend_from_slice(format!("* {n} EXPUNGE\r\n").as_bytes());
        }
        self.io.send(&out)?;
        self.quota_removed(bytes, count);
        Ok(Reply::Ok("EXPUNGE completed".into()))
    }

    fn store(
        &mut self,
        uid: bool,
        set: &imap::SequenceSet,
        action: &Value,
        flags: &[Value],
    ) -> Result<Reply, IoError> {
        let Value::Atom(action) = action else { return Ok(Reply::Bad("Invalid STORE".into())) };
        let action = action.to_ascii_uppercase();
        let (action, silent) = match action.strip_suffix(b".SILENT") {
            Some(a) => (a.to_vec(), true),
            None => (action, false),
        };
        let mode = match &action[..] {
            b"FLAGS" => 0,
            b"+FLAGS" => 1,
            b"-FLAGS" => 2,
            _ => return Ok(Reply::Bad("Invalid STORE action".into())),
        };
        let list: &[Value] = match flags {
            [Value::List(l)] => l,
            atoms => atoms,
        };
        let set_flags = match system_flags(list) {
            Ok(set) => set,
            Err(reply) => return Ok(reply),
        };
        let mb = self.selected.as_mut().expect("selected");
        if mb.read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let chosen = mb.select(set, uid);
        let mut out = Vec::new();
        for i in chosen {
            let old = mb.msgs[i].flags;
            let new = match mode {
                0 => set_flags,
                1 => old.union(set_flags),
                _ => old.minus(set_flags),
            };
            match mb.set_flags(i, new) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    qmail::log::line(format_args!("imapd: STORE: {e}"));
                    self.io.send(&out)?;
                    return Ok(Reply::No("[SERVERBUG] Unable to change flags".into()));
                }
            }
            if !silent {
                let m = &mb.msgs[i];
                out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
                if uid {
                    out.extend_from_slice(format!("UID {} ", m.uid).as_bytes());
                }
                out.extend_from_slice(b"FLAGS ");
                m.flags().write(&mut out);
                out.extend_from_slice(b")\r\n");
            }
            if out.len() > 64 * 1024 {
                self.io.send(&out)?;
                out.clear();
            }
        }
        self.io.send(&out)?;
        Ok(Reply::Ok("STORE completed".into()))
    }

    fn copy(&mut self, t: &imap::Transfer<'_>, moving: bool) -> Result<Reply, IoError> {
        let what = if moving { "MOVE" } else { "COPY" };
        let folder = match self.existing(t.mailbox, "TRYCREATE") {
            Ok(f) => f,
            Err(reply) => return Ok(reply),
        };
        let mb = self.selected.as_mut().expect("selected");
        if moving && mb.read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let chosen = mb.select(&t.set, t.uid);
        if chosen.is_empty() {
            return Ok(Reply::Ok(format!("{what} completed")));
        }
        let mut bases = Vec::new();
        let mut src_uids = Vec::new();
        let mut copied = Vec::new();
        let mut bytes = 0u64;
        for &i in &chosen {
            let file = match mb.open_msg(i) {
                Ok(f) => f,
                Err(_) => continue,
            };
            let m = &mb.msgs[i];
            let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
            let base = format!("{},S={size}", qmail::maildir::unique_name());
            let info = qmail::imap::flags::Info::with_flags(m.flags);
            let target = folder.dir.join("cur").join(info.name(&base));
            let src = mb.dir.join(&m.path);
            let linked = std::fs::hard_link(&src, &target).or_else(|_| {
                // another file system: a copy through tmp/
                let tmp = folder.dir.join("tmp").join(&base);
                std::fs::copy(&src, &tmp)
                    .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, &target))
            });
            if let Err(e) = linked {
                qmail::log::line(format_args!("imapd: {what} to {}: {e}", folder.name));
                // nothing half done stays: the copies made so far are taken back
                for path in &copied {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(Reply::No(format!("[SERVERBUG] {what} failed")));
            }
            copied.push(target);
            bytes += size;
            bases.push(base);
            src_uids.push(m.uid);
        }
        if let Err(e) = qmail::file::fsync_dir(&folder.dir.join("cur")) {
            qmail::log::line(format_args!("imapd: {what} to {}: {e}", folder.name));
            for path in &copied {
                let _ = std::fs::remove_file(path);
            }
            return Ok(Reply::No(format!("[SERVERBUG] {what} failed")));
        }
        let code = match uid_of(&folder.dir, &bases) {
            Some((validity, dst)) => {
                format!("[COPYUID {validity} {} {}] ", uid_set(&src_uids), uid_set(&dst))
            }
            None => String::new(),
        };
        if !moving {
            let count = bases.len() as u64;
            let user = self.user.as_ref().expect("logged in");
            if let Err(e) = qmail::quota::add(&user.root, bytes, count as i64) {
                qmail::log::line(format_args!("imapd: maildirsize: {e}"));
            }
            return Ok(Reply::Ok(format!("{code}COPY completed")));
        }
        // MOVE: the COPYUID first, untagged, then the EXPUNGEs (RFC 6851 4.3)
        let mut out = Vec::new();
        if !code.is_empty() {
            out.extend_from_slice(format!("* OK {code}Moved\r\n").as_bytes());
        }
        let mb = self.selected.as_mut().expect("selected");
        let (numbers, _, _) = mb.expunge(&chosen);
        for n in numbers {
            out.extend_from_slice(format!("* {n} EXPUNGE\r\n").as_bytes());
        }
        self.io.send(&out)?;
        Ok(Reply::Ok("MOVE completed".into()))
    }

    fn search(&mut self, uid: bool, keys: &[Value]) -> Result<Reply, IoError> {
        let search = match Search::parse(keys) {
            Ok(s) => s,
            Err(SearchError::BadCharset) => {
                return Ok(Reply::No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset".into()))
            }
            Err(SearchError::Syntax(why)) => return Ok(Reply::Bad(why.into())),
        };
        let mb = self.selected.as_mut().expect("selected");
        let found = match fetch::search(mb, &search, uid) {
            Ok(found) => found,
            Err(e) => {
                qmail::log::line(format_args!("imapd: SEARCH: {e}"));
                return Ok(Reply::No("[SERVERBUG] Search failed".into()));
            }
        };
        let mut out = Vec::new();
        search::write_result(&found, &mut out);
        self.io.send(&out)?;
        Ok(Reply::Ok("SEARCH completed".into()))
    }

    /// IDLE (RFC 2177): updates as they happen until DONE.
    fn idle(&mut self, tag: &[u8]) -> Result<Reply, IoError> {
        self.io.send(b"+ idling\r\n")?;
        let mut keepalive = Instant::now() + IDLE_KEEPALIVE;
        let mut lines = Lines::new(imap::MAX_LINE);
        loop {
            let (n, got) = lines.push(&self.io.inbuf);
            self.io.inbuf.drain(..n);
            match got {
                Some(Got::Line) => {
                    let mut line = tag.to_vec();
                    if lines.line().eq_ignore_ascii_case(b"DONE") {
                        self.updates(true)?;
                        line.extend_from_slice(b" OK IDLE terminated\r\n");
                    } else {
                        line.extend_from_slice(b" BAD Expected DONE\r\n");
                    }
                    self.io.send(&line)?;
                    return Ok(Reply::Sent);
                }
                Some(Got::TooLong) => {
                    let mut line = tag.to_vec();
                    line.extend_from_slice(b" BAD Expected DONE\r\n");
                    self.io.send(&line)?;
                    return Ok(Reply::Sent);
                }
                None => {}
            }
            let wake = Instant::now() + IDLE_POLL;
            if self.io.fill_until(Some(wake))? {
                continue;
            }
            if self.user.is_some() {
                self.shutdown_check()?;
            }
            if self.selected.is_some() {
                self.updates(true)?;
            }
            if Instant::now() >= keepalive {
                self.io.send(b"* OK Still here\r\n")?;
                keepalive = Instant::now() + IDLE_KEEPALIVE;
            }
        }
    }
}

/// The UIDVALIDITY of the folder in `dir` and the UIDs of the messages with `bases`, in
/// order (the list is brought up to date, which gives new files their UIDs).
fn uid_of(dir: &Path, bases: &[String]) -> Option<(u32, Vec<u32>)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let list = UidList::open(dir, now, Rewrite::Never).ok()?;
    let by_base: std::collections::HashMap<&str, u32> =
        list.messages().iter().map(|m| (m.base(), m.uid)).collect();
    let uids: Option<Vec<u32>> = bases.iter().map(|b| by_base.get(b.as_str()).copied()).collect();
    Some((list.uidvalidity(), uids?))
}

/// The system flags of APPEND's or STORE's flag list. `\Recent` cannot be set and an
/// unknown `\` flag is an error (BAD); keywords are ignored (not kept: PERMANENTFLAGS has no
/// `\*`).
fn system_flags(list: &[Value]) -> Result<Flags, Reply> {
    let mut set = Flags::empty();
    for f in list {
        let Value::Atom(a) = f else { return Err(Reply::Bad("Invalid flag".into())) };
        match Flags::from_name(a) {
            Some(Flags::RECENT) => return Err(Reply::Bad("\\Recent cannot be set".into())),
            Some(flag) => set = set.union(flag),
            None if a.first() == Some(&b'\\') => {
                return Err(Reply::Bad("Unknown system flag".into()))
            }
            None => {}
        }
    }
    Ok(set)
}

/// UIDs as a compact set: `3:5,9`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// `message` with every CR LF made LF (a bare CR stays): a Maildir message has LF line ends.
fn lf_line_ends(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\n');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fn folder_error(e: FolderError) -> Reply {
    if let FolderError::Io(..) = e {
        qmail::log::line(format_args!("imapd: {e}"));
        return Reply::No(format!("[{}] Temporary failure", e.code()));
    }
    Reply::No(format!("[{}] {e}", e.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn append_stores_lf() {
        assert_eq!(lf_line_ends(b"a: b\r\n\r\nx\ry\r\n"), b"a: b\n\nx\ry\n");
        assert_eq!(lf_line_ends(b"lf\nonly\r"), b"lf\nonly\r");
        assert_eq!(lf_line_ends(b"\r\r\n"), b"\r\n");
    }
}
