//! imapd: an IMAP4rev1 server over Maildir++ (doc/imapd.8).
//!
//! `imapd [-C config] [-U uses] [-T secs] [-D] [-s] [-p ssf] [--listen where] [maildir | nextprog args...]`
//!
//! One program, three wirings:
//!
//! - one connection on fds 0 and 1, run by tcpserver or qmail-tcpsrv: greets, takes LOGIN or
//!   AUTHENTICATE PLAIN itself ([`qmail::auth`]: the directory, `users/passwd`, the system's
//!   passwd), becomes the mailbox's owner when started as root (the lookups run in an
//!   unprivileged child, [`qmail::auth::split`]), and serves the mailbox;
//! - `--listen`: the same sessions in generations of listening workers ([`qmail::listener`],
//!   `-U` connections per worker, `-T` idle seconds), which must not run as root: every
//!   mailbox must belong to the user the workers run as (a virtual-mail uid);
//! - a login chain, `imapd -p 2 auth_imap imapd Maildir`: the first imapd takes LOGIN and
//!   execs the next program with the courier request on fd 3 (reading the client a byte at
//!   a time, so what follows LOGIN stays in the socket); auth_imap runs it again after a
//!   refused login (`IMAPLOGINTAG` set: it answers that tag NO), or becomes the user and
//!   execs the second imapd (`AUTHENTICATED` set): logged in, the mailbox `MAILDIR` or the
//!   `maildir` argument (relative to the home), starting with the tagged OK of the LOGIN
//!   (`IMAPLOGINTAG`) or `* PREAUTH`. Under TLS (STARTTLS, `-s`) the first imapd cannot
//!   exec: it runs the chain on a socket pair and relays ([`qmail::tls::relay`]).
//!
//! Folders are Courier's Maildir++ namespace (`INBOX.`, separator `.`;
//! [`qmail::imap::folders`]); UIDs live in each folder's `dovecot-uidlist`
//! ([`qmail::imap::uidlist`]). The administrator's files are under the configuration
//! directory (`QMAILHOME/imapd`, or `configdirectory` in the `-C` file): `msg/motd`,
//! `msg/shutdown.imap` and `msg/shutdown`, `log/<user>` (telemetry).
//!
//! Exit codes: 0 the session ended (LOGOUT, the client left, SIGTERM); 1 it was dropped
//! (timeout, errors, I/O failure); 64 usage; 78 `-s` without a certificate; 100 run as
//! root where that is refused; 111 a set-up failure.

#![forbid(unsafe_code)]

mod fetch;
mod io;
mod mailbox;
mod session;

use io::Io;
use qmail::auth::{self, Credentials, Failure, Service};
use qmail::control::Control;
use qmail::imap::folders::Store;
use session::{End, Session, User};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: imapd [-C config] [-U uses] [-T secs] [-D] [-s] [-p ssf] \
                     [--listen unix:/path|tcp:host:port|fd:N] [maildir | nextprog args...]";
const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;
const EX_ROOT: u8 = 100;
/// The autologout when `control/timeoutimap` does not say: 30 minutes (RFC 3501 5.4).
const DEFAULT_TIMEOUT: u64 = 1800;
/// The largest `-C` file read.
const CONFIG_MAX: u64 = 64 << 10;

/// The command line.
#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    uses: u64,
    idle: u64,
    debug: bool,
    implicit_tls: bool,
    ssf: u32,
    listen: Option<String>,
    args: Vec<OsString>,
}

impl Options {
    fn parse(args: &[OsString]) -> Option<Options> {
        let mut opts = Options { uses: 250, idle: 60, ..Options::default() };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_bytes() {
                b"-C" => opts.config = Some(PathBuf::from(it.next()?)),
                b"-U" => opts.uses = it.next()?.to_str()?.parse().ok()?,
                b"-T" => opts.idle = it.next()?.to_str()?.parse().ok()?,
                b"-D" => opts.debug = true,
                b"-s" => opts.implicit_tls = true,
                b"-p" => opts.ssf = it.next()?.to_str()?.parse().ok()?,
                b"-N" => return None,
                b"--listen" => opts.listen = Some(it.next()?.to_str()?.to_string()),
                b"--" => {
                    opts.args.extend(it.cloned());
                    break;
                }
                a if a.starts_with(b"-") && a.len() > 1 => return None,
                _ => opts.args.push(arg.clone()),
            }
        }
        Some(opts)
    }
}

/// What the control files, the `-C` file and the environment say.
pub struct Settings {
    pub home: PathBuf,
    /// `msg/` and `log/` are under it
    pub config_dir: PathBuf,
    pub timeout: Duration,
    pub ssf: u32,
    /// `allowplaintext: 1`: LOGIN without TLS
    pub allow_plaintext: bool,
    /// `SSLCERT`, else `control/smtpcert` when it exists
    pub cert: Option<PathBuf>,
    pub debug: bool,
    pub bad_login_delay: Duration,
    /// the service name of `msg/shutdown.<service>`
    pub service: String,
    /// the login chain's next program and its arguments: LOGIN hands over to it
    pub chain: Vec<OsString>,
    /// this program's command line for a chain behind a TLS relay: as given, but with
    /// `-p 2` and without `-s` (the relay is the outer layer)
    relayed_argv: Vec<OsString>,
    /// `control/imapddebugcommand` (`-C`: `debug_command`), run by `-D`
    debug_command: Option<String>,
}

impl Settings {
    fn load(opts: &Options) -> Result<Settings, String> {
        let home = qmail::auto::home();
        let control = Control::new(&home);
        let mut timeout = control
            .int("timeoutimap")
            .map_err(|e| e.to_string())?
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut config_dir = home.join("imapd");
        let mut debug_command = control.line("imapddebugcommand").map_err(|e| e.to_string())?;
        let mut allow_plaintext = false;
        if let Some(path) = &opts.config {
            for (name, value) in read_config(path)? {
                match name.as_str() {
                    "configdirectory" => config_dir = PathBuf::from(value),
                    "debug_command" => debug_command = Some(value),
                    "allowplaintext" => {
                        allow_plaintext = matches!(&value[..], "1" | "yes" | "on" | "true")
                    }
                    "timeout" | "timeoutimap" => {
                        timeout =
                            value.parse().map_err(|_| format!("{}: bad timeout", path.display()))?
                    }
                    _ => return Err(format!("{}: unknown setting {name}", path.display())),
                }
            }
        }
        let cert = match std::env::var_os("SSLCERT") {
            Some(p) if !p.is_empty() => Some(home.join(p)),
            _ => Some(home.join("control/smtpcert")).filter(|p| p.exists()),
        };
        let service = std::env::var("IMAPD_SERVICE").ok().filter(|s| !s.is_empty());
        Ok(Settings {
            home,
            config_dir,
            // never below 30 minutes of autologout once logged in (RFC 3501 5.4) unless set
            timeout: Duration::from_secs(timeout),
            ssf: opts.ssf,
            allow_plaintext,
            cert,
            debug: opts.debug,
            bad_login_delay: bad_login_delay(),
            service: service.unwrap_or_else(|| "imap".into()),
            chain: Vec::new(),
            relayed_argv: Vec::new(),
            debug_command,
        })
    }

    /// STARTTLS can be offered: there is a certificate.
    pub fn tls_available(&self) -> bool {
        self.cert.is_some()
    }

    /// The TLS configuration: the certificate file and `control/tlsciphers`, read now (a
    /// renewed certificate counts from the next session on).
    pub fn tls(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let cert = self.cert.as_ref().ok_or("no certificate (control/smtpcert or SSLCERT)")?;
        qmail::tls::installation_config(&self.home, cert).map_err(|e| e.to_string())
    }

    /// The first line of `msg/<name>`, with leading `[` removed (a text must not look like a
    /// response code); `None` when the file is missing.
    fn message(&self, name: &str) -> Option<String> {
        let data = std::fs::read(self.config_dir.join("msg").join(name)).ok()?;
        let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r').trim_start_matches('[');
        let line: String = line.chars().filter(|c| !c.is_control()).take(1000).collect();
        Some(if line.is_empty() { "Server shutting down".into() } else { line })
    }

    /// `msg/shutdown.<service>`, else `msg/shutdown`.
    pub fn shutdown_message(&self) -> Option<String> {
        self.message(&format!("shutdown.{}", self.service)).or_else(|| self.message("shutdown"))
    }

    fn motd(&self) -> Option<String> {
        self.message("motd")
    }

    /// The user deny list's message when `user` may not use this service (`control/userdeny`,
    /// `userdeny.cdb`; the service is `IMAPD_SERVICE`, default imap). An unreadable list
    /// denies nothing but is logged.
    pub fn denied(&self, user: &str) -> Option<String> {
        let ctl = Control::new(&self.home);
        match qmail::userdeny::denied(&ctl, user.as_bytes(), self.service.as_bytes()) {
            Ok(message) => message,
            Err(e) => {
                qmail::log::line(format_args!("imapd: warning: {e}"));
                None
            }
        }
    }
}

/// How long a refused login waits (doc/DECISIONS.md, 31; `IMAPD_TEST_DELAY` in the tests' build).
fn bad_login_delay() -> Duration {
    auth::refused_login_delay("IMAPD_TEST_DELAY")
}

/// The `name: value` lines of a `-C` file (blank and `#` lines skipped).
fn read_config(path: &Path) -> Result<Vec<(String, String)>, String> {
    use std::io::Read;
    let shown = path.display();
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CONFIG_MAX + 1).read_to_end(&mut data))
        .map_err(|e| format!("unable to read {shown}: {e}"))?;
    if data.len() as u64 > CONFIG_MAX {
        return Err(format!("{shown}: too big"));
    }
    let text = String::from_utf8(data).map_err(|_| format!("{shown}: not UTF-8"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| format!("{shown}: no ':' in {line:?}"))?;
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(out)
}

fn main() -> ExitCode {
    if let Some(code) = auth::split::child_mode() {
        return ExitCode::from(code);
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(opts) = Options::parse(&args) else {
        qmail::log::line(format_args!("{USAGE}"));
        return ExitCode::from(EX_USAGE);
    };
    let mut settings = match Settings::load(&opts) {
        Ok(s) => s,
        Err(e) => {
            qmail::log::line(format_args!("imapd: fatal: {e}"));
            return ExitCode::from(qmail::exit::TEMP);
        }
    };
    if opts.implicit_tls && settings.cert.is_none() {
        qmail::log::line(format_args!("imapd: fatal: -s without a certificate (control/smtpcert)"));
        return ExitCode::from(EX_CONFIG);
    }
    // the debugger attaches to the process that serves: in listening mode, each worker
    if opts.debug && (opts.listen.is_none() || qmail::listener::is_worker()) {
        let format = settings.debug_command.as_deref();
        qmail::listener::debug_command(
            "imapd",
            "imapddebugcommand",
            format,
            settings.service.as_bytes(),
        );
    }
    let authenticated = std::env::var_os("AUTHENTICATED").filter(|a| !a.is_empty());
    if let Some(name) = authenticated {
        return preauthenticated(&settings, &opts, name);
    }
    if !opts.args.is_empty() {
        if opts.listen.is_some() {
            qmail::log::line(format_args!("imapd: fatal: a login chain takes no --listen"));
            return ExitCode::from(EX_USAGE);
        }
        settings.chain = opts.args.clone();
        let mut argv: Vec<OsString> = std::env::args_os().take(1).collect();
        if let Some(config) = &opts.config {
            argv.extend(["-C".into(), config.clone().into_os_string()]);
        }
        if opts.debug {
            argv.push("-D".into());
        }
        argv.extend(["-p".into(), "2".into(), "--".into()]);
        argv.extend(opts.args.iter().cloned());
        settings.relayed_argv = argv;
    }
    match &opts.listen {
        None => {
            let (input, output) = match stdio() {
                Ok(fds) => fds,
                Err(e) => {
                    qmail::log::line(format_args!("imapd: fatal: fds 0 and 1: {e}"));
                    return ExitCode::from(qmail::exit::TEMP);
                }
            };
            let mut io = Io::new(input, output, settings.timeout, true);
            // what follows LOGIN must stay in the socket for the chain's imapd
            io.bytewise = !settings.chain.is_empty();
            exit(serve(io, &settings, opts.implicit_tls))
        }
        Some(listen) => listening(&settings, &opts, listen),
    }
}

fn exit(end: End) -> ExitCode {
    match end {
        End::Normal => ExitCode::SUCCESS,
        End::Dropped => ExitCode::from(1),
    }
}

fn stdio() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok((
        std::io::stdin().as_fd().try_clone_to_owned()?,
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

/// `--listen`: sessions in listening workers.
fn listening(settings: &Settings, opts: &Options, listen: &str) -> ExitCode {
    if nix::unistd::geteuid().is_root() {
        qmail::log::line(format_args!("imapd: fatal: --listen refuses to run as root"));
        return ExitCode::from(EX_ROOT);
    }
    let listen: qmail::listener::Listen = match listen.parse() {
        Ok(l) => l,
        Err(e) => {
            qmail::log::line(format_args!("imapd: fatal: --listen {e}"));
            return ExitCode::from(EX_USAGE);
        }
    };
    let options = qmail::listener::Options {
        uses: u32::try_from(opts.uses).unwrap_or(u32::MAX).max(1),
        idle: Duration::from_secs(opts.idle),
        sessions: 64,
        timeout: settings.timeout,
    };
    let handle = |_: &mut (), conn: &mut qmail::listener::Conn| {
        let Ok((input, output)) = conn.fds() else { return };
        let io = Io::new(input, output, settings.timeout, false);
        serve(io, settings, opts.implicit_tls);
    };
    match qmail::listener::run("imapd", &listen, &options, || (), handle) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            qmail::log::line(format_args!("imapd: fatal: unable to listen: {e}"));
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

/// The greeting's host name: `TCPLOCALHOST`, else `control/me`, else the system's.
fn host(settings: &Settings) -> String {
    std::env::var("TCPLOCALHOST")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| Control::new(&settings.home).me().ok().flatten())
        .or_else(|| nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "localhost".into())
}

/// One session that logs its user in itself.
fn serve(io: Io, settings: &Settings, implicit_tls: bool) -> End {
    let mut session = Session::new(io, settings);
    if implicit_tls {
        let config = match settings.tls() {
            Ok(c) => c,
            Err(e) => {
                qmail::log::line(format_args!("imapd: -s: {e}"));
                return End::Dropped;
            }
        };
        if session.io.start_tls(config).is_err() {
            return End::Dropped;
        }
    }
    if let Some(tag) = failed_chain_login(settings) {
        // auth_imap ran this program again after a refused login: answer that LOGIN
        std::thread::sleep(settings.bad_login_delay);
        let line = format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
        if session.io.send(line.as_bytes()).is_err() {
            return End::Dropped;
        }
        let end = session.run();
        return finish(&session, end);
    }
    if let Some(text) = settings.shutdown_message() {
        let _ = session.io.send(format!("* BYE [ALERT] {text}\r\n").as_bytes());
        session.io.close();
        return End::Normal;
    }
    let greeting = format!(
        "* OK [CAPABILITY {}] {} IMAP4rev1 ready\r\n",
        session.capabilities(),
        host(settings)
    );
    if session.io.send(greeting.as_bytes()).is_err() {
        return End::Dropped;
    }
    if let Some(motd) = settings.motd() {
        let _ = session.io.send(format!("* OK [ALERT] {motd}\r\n").as_bytes());
    }
    let end = session.run();
    finish(&session, end)
}

/// Log the end of a session (and its CPU time, as upstream's USAGE line).
fn finish(session: &Session<'_>, end: End) -> End {
    if let Some(user) = &session.user {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
        let (u, s) = usage.map_or((0.0, 0.0), |r| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            (t(r.user_time()), t(r.system_time()))
        });
        qmail::log::line(format_args!(
            "imapd: pid {}: USAGE {} user {u:.3} sys {s:.3} read {} written {}",
            std::process::id(),
            qmail::safe::log(user.name.as_bytes()),
            session.io.read_total,
            session.io.written_total
        ));
    }
    end
}

/// The tag of the LOGIN a login chain refused: this program was run again by auth_imap
/// (`IMAPLOGINTAG` set, `AUTHENTICATED` not).
fn failed_chain_login(settings: &Settings) -> Option<String> {
    if settings.chain.is_empty() {
        return None;
    }
    let tag = std::env::var("IMAPLOGINTAG").ok()?;
    valid_tag(&tag).then_some(tag)
}

/// A tag as RFC 3501 has it (ASTRING-CHARs but `+`), short.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && tag.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"]+\\".contains(&b))
}

/// The login chain: hand LOGIN's name and password to the next program on descriptor 3
/// (`imap\nlogin\n<name>\n<password>\n`, courier's format, as auth_imap reads it), with
/// this program's command line in `AUTHARGC`/`AUTHARGV<n>` (run again after a refused
/// login) and the LOGIN's tag in `IMAPLOGINTAG`. Returns only when it cannot.
fn hand_to_chain(s: &mut Session<'_>, creds: &Credentials) -> Failure {
    use std::os::unix::process::CommandExt;
    // in plain text nothing behind the LOGIN was read (bytewise); under TLS the relay
    // passes on what was
    let Some(tag) = s.tag.clone().filter(|_| s.io.is_tls() || s.io.inbuf.is_empty()) else {
        return Failure::Temporary("commands pipelined behind LOGIN".into());
    };
    let tag = String::from_utf8_lossy(&tag).into_owned();
    if !valid_tag(&tag) || creds.login.contains(&b'\n') || creds.password.contains(&b'\n') {
        return Failure::BadPassword;
    }
    let mut request = zeroize::Zeroizing::new(b"imap\nlogin\n".to_vec());
    request.extend_from_slice(&creds.login);
    request.push(b'\n');
    request.extend_from_slice(&creds.password);
    request.push(b'\n');
    if request.len() > 1023 {
        return Failure::BadPassword;
    }
    let (read, write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Failure::Temporary(format!("pipe: {e}")),
    };
    // the request fits the pipe's buffer: written whole before the exec
    if let Err(e) = std::fs::File::from(write).write_all(&request) {
        return Failure::Temporary(format!("pipe: {e}"));
    }
    let _ = s.io.flush();
    let tls = s.io.is_tls();
    let me: Vec<OsString> =
        if tls { s.settings.relayed_argv.clone() } else { std::env::args_os().collect() };
    let chain = &s.settings.chain;
    let mut cmd = std::process::Command::new(&chain[0]);
    cmd.args(&chain[1..]).env_remove("AUTHENTICATED").env("IMAPLOGINTAG", &tag);
    cmd.env("AUTHARGC", me.len().to_string());
    for (i, arg) in me.iter().enumerate() {
        cmd.env(format!("AUTHARGV{i}"), arg);
    }
    qmail::child::map_fds(&mut cmd, vec![(read, 3)]);
    if !tls {
        let e = cmd.exec();
        return Failure::Temporary(format!("unable to run {}: {e}", chain[0].to_string_lossy()));
    }
    // a TLS session cannot cross an exec: the chain gets one end of a socket pair as its fds
    // 0 and 1, and this process relays between it and the client until it is done
    let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return Failure::Temporary(format!("socketpair: {e}")),
    };
    let theirs_out = match theirs.try_clone() {
        Ok(t) => t,
        Err(e) => return Failure::Temporary(format!("socketpair: {e}")),
    };
    cmd.stdin(OwnedFd::from(theirs)).stdout(OwnedFd::from(theirs_out));
    let child = cmd.spawn();
    drop(cmd);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Failure::Temporary(format!("unable to run {}: {e}", chain[0].to_string_lossy()))
        }
    };
    let relayed = s.io.relay(ours);
    let status = child.wait();
    s.io.close();
    let code = match (relayed, status) {
        (Ok(()), Ok(st)) if st.success() => 0,
        _ => 1,
    };
    std::process::exit(code)
}

/// LOGIN / AUTHENTICATE in the session: authenticate, become the mailbox's owner, open it
/// (or, in a login chain, hand the login to the next program).
pub fn log_in(s: &mut Session<'_>, creds: &Credentials) -> Result<(), Failure> {
    if !s.settings.chain.is_empty() {
        return Err(hand_to_chain(s, creds));
    }
    let login = auth::split::authenticate(&s.settings.home, Service::Imap, creds)?;
    let mailbox = login.mailbox.ok_or_else(|| Failure::BadRecord("no mailbox".into()))?;
    if let Err(e) = qmail::prot::drop_to(mailbox.uid, mailbox.gid) {
        return Err(Failure::Temporary(format!(
            "unable to run as uid {} gid {}: {e}",
            mailbox.uid, mailbox.gid
        )));
    }
    let maildir = match &mailbox.maildir {
        auth::Maildir::Store(store) => mailbox.home.join(store),
        auth::Maildir::DotQmail => auth::system::dot_qmail_maildir(&mailbox.home)
            .map(|m| mailbox.home.join(OsString::from_vec(m)))
            .unwrap_or_else(|| mailbox.home.join("Maildir")),
        auth::Maildir::Unset => mailbox.home.join("Maildir"),
    };
    let quota = mailbox.quota.as_deref().map(str::as_bytes);
    let name = login.name.clone();
    start_user(s, &name, &maildir, quota)
}

/// The user is known and runs as the mailbox's owner: open the Maildir (made when missing
/// and its parent exists) and turn telemetry on.
fn start_user(
    s: &mut Session<'_>,
    name: &str,
    maildir: &Path,
    quota: Option<&[u8]>,
) -> Result<(), Failure> {
    if let Err(e) = qmail::maildir::make(maildir) {
        return Err(Failure::Temporary(format!("{}: {e}", maildir.display())));
    }
    let quota = match quota.map(qmail::quota::Quota::parse) {
        Some(Ok(q)) => q,
        Some(Err(_)) => return Err(Failure::BadRecord("bad MAILDIRQUOTA".into())),
        None => None,
    };
    s.io.telemetry = telemetry(s.settings, name);
    s.user = Some(User {
        name: name.to_string(),
        store: Store::new(maildir),
        root: maildir.to_path_buf(),
        quota,
    });
    qmail::log::line(format_args!(
        "imapd: pid {}: login {}{}",
        std::process::id(),
        qmail::safe::log(name.as_bytes()),
        s.io.tls_description().map(|t| format!(" ({t})")).unwrap_or_default()
    ));
    Ok(())
}

/// `log/<user>/imap-<pid>` when the administrator made `log/<user>` (doc/imapd.8).
fn telemetry(settings: &Settings, name: &str) -> Option<std::fs::File> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = settings.config_dir.join("log").join(name);
    if !dir.is_dir() {
        return None;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{}-{}", settings.service, std::process::id()));
    let mut f =
        std::fs::OpenOptions::new().append(true).create(true).mode(0o644).open(path).ok()?;
    let now = qmail::date822::asctime(qmail::date822::unix_now());
    f.write_all(format!("---------- {name} {now}\n").as_bytes()).ok()?;
    Some(f)
}

/// After a login chain: `AUTHENTICATED` names the user, who this process already runs as.
fn preauthenticated(settings: &Settings, opts: &Options, name: OsString) -> ExitCode {
    if nix::unistd::geteuid().is_root() {
        qmail::log::line(format_args!("imapd: fatal: AUTHENTICATED but running as root"));
        return ExitCode::from(EX_ROOT);
    }
    let maildir = std::env::var_os("MAILDIR")
        .filter(|m| !m.is_empty())
        .or_else(|| opts.args.first().cloned())
        .unwrap_or_else(|| OsString::from("Maildir"));
    let maildir = match std::env::current_dir() {
        Ok(cwd) => cwd.join(maildir),
        Err(_) => PathBuf::from(maildir),
    };
    let (input, output) = match stdio() {
        Ok(fds) => fds,
        Err(e) => {
            qmail::log::line(format_args!("imapd: fatal: fds 0 and 1: {e}"));
            return ExitCode::from(qmail::exit::TEMP);
        }
    };
    let mut session = Session::new(Io::new(input, output, settings.timeout, true), settings);
    let name = name.to_string_lossy().into_owned();
    let quota = std::env::var_os("MAILDIRQUOTA").filter(|q| !q.is_empty());
    let tag = std::env::var_os("IMAPLOGINTAG").filter(|t| !t.is_empty());
    if let Err(e) = start_user(&mut session, &name, &maildir, quota.as_ref().map(|q| q.as_bytes()))
    {
        qmail::log::line(format_args!("imapd: {e}"));
        let line = match &tag {
            Some(t) => {
                format!("{} NO [UNAVAILABLE] Unable to open the mailbox\r\n", t.to_string_lossy())
            }
            None => "* BYE Unable to open the mailbox\r\n".into(),
        };
        let _ = session.io.send(line.as_bytes());
        session.io.close();
        return ExitCode::from(qmail::exit::TEMP);
    }
    if let Some(why) = settings.denied(&name) {
        qmail::log::line(format_args!(
            "imapd: {}: denied: {why}",
            qmail::safe::log(name.as_bytes())
        ));
        let _ = session.io.send(format!("* BYE [ALERT] {why}\r\n").as_bytes());
        session.io.close();
        return ExitCode::SUCCESS;
    }
    let caps = session.capabilities();
    let greeting = match &tag {
        Some(t) => format!("{} OK [CAPABILITY {caps}] Logged in\r\n", t.to_string_lossy()),
        None => format!("* PREAUTH [CAPABILITY {caps}] {} IMAP4rev1 ready\r\n", host(settings)),
    };
    if session.io.send(greeting.as_bytes()).is_err() {
        return ExitCode::from(1);
    }
    let end = session.run();
    exit(finish(&session, end))
}
