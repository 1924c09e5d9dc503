//! listener: serve a protocol on a listening socket with a master process and generations of
//! worker processes, as Cyrus's master serves smmapd (doc/smmapd.8, LISTENING) — for smmapd and
//! qmail-verify's service mode. The same session handler also serves one connection on fds
//! 0/1 ([`Conn::stdio`]) for tcpserver, unixserver, inetd or qmail-tcpsrv.
//!
//! The master ([`run`]) binds the socket (`unix:/path`, `tcp:host:port`, or takes an
//! already-listening one on a descriptor, `fd:N`), starts no threads and parses nothing from
//! the network. While no worker is accepting and a connection is waiting, it starts a worker:
//! the same executable with the same arguments, the socket on fd 3 and the write end of a
//! notification pipe on fd 4 (environment `QMAIL_LISTENER_WORKER=1`). A worker accepts
//! connections and serves each on a thread, up to [`Options::sessions`] at a time; a thread
//! that has served a session parks for the next one ([`crate::parked`]) and keeps its state
//! (so a directory connection is reused from session to session). It stops accepting after
//! [`Options::uses`] connections (0: never), or, once it has served one, when it has been
//! idle — no session open — for [`Options::idle`] (randomised in `[T, 2T-1]` seconds so that
//! workers do not all end together; zero: never): it closes the socket and the pipe, which
//! tells the master to start the next worker at the next connection, finishes its open
//! sessions and exits 0. A worker whose master is gone (the
//! pipe's reader closed) stops accepting too.
//!
//! Workers run the executable found at the master's start under the same path, so a program
//! replaced on disk (an upgrade) serves from its next worker on.
//!
//! The master ends on TERM or INT: it sends TERM to its workers, waits for them, and exits 0.
//! A worker that dies abnormally is replaced no sooner than a second later.
//!
//! Everything is logged on stderr, one line per event and per write (the log is often a pipe
//! shared with other programs), prefixed with the program name.

use crate::child;
use crate::parked::Parked;
use crate::timeoutio::{self, poll_timeout};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The environment variable that makes [`run`] act as a worker.
const WORKER_ENV: &str = "QMAIL_LISTENER_WORKER";
/// The worker's listening socket.
const LISTEN_FD: RawFd = 3;
/// The worker's end of the notification pipe.
const NOTIFY_FD: RawFd = 4;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `unix:/path`: a Unix-domain socket, created (a stale one replaced), mode 0666 —
    /// access is the directory's business.
    Unix(PathBuf),
    /// `tcp:host:port` or `host:port`.
    Tcp(String),
    /// `fd:N`: a socket already listening, handed over on descriptor N.
    Fd(RawFd),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{s}: no socket path"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        if let Some(n) = s.strip_prefix("fd:") {
            return n
                .parse::<RawFd>()
                .ok()
                .filter(|&n| n >= 0)
                .map(Listen::Fd)
                .ok_or_else(|| format!("{s}: not a descriptor number"));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Listen::Tcp(addr.to_string()))
            }
            _ => Err(format!("{s}: expected unix:/path, tcp:host:port or fd:N")),
        }
    }
}

/// How workers behave.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections a worker accepts before it makes way for a new one; 0 = no limit.
    pub uses: u32,
    /// Idle time after which a worker that has served a connection exits; zero = never.
    pub idle: Duration,
    /// Sessions a worker serves at the same time.
    pub sessions: usize,
    /// The read and write timeout on a client connection.
    pub timeout: Duration,
}

/// One client connection: reads and writes that give up after the timeout
/// ([`io::ErrorKind::TimedOut`]).
pub struct Conn {
    read: OwnedFd,
    /// `None`: the same descriptor as `read` (a socket).
    write: Option<OwnedFd>,
    timeout: Duration,
}

impl Conn {
    /// The connection on fds 0 (read) and 1 (write), as tcpserver and friends hand it over.
    pub fn stdio(timeout: Duration) -> io::Result<Conn> {
        let read = io::stdin().as_fd().try_clone_to_owned()?;
        let write = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Conn { read, write: Some(write), timeout })
    }

    /// A connected socket.
    pub fn socket(fd: OwnedFd, timeout: Duration) -> Conn {
        Conn { read: fd, write: None, timeout }
    }

    /// The descriptor read from (a socket's only one), to ask it something (its peer's
    /// credentials) without a copy.
    pub fn read_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The descriptors to read and to write (copies), for a session that does its own I/O
    /// (imapd: TLS, and waits that watch more than the client).
    pub fn fds(&self) -> io::Result<(OwnedFd, OwnedFd)> {
        let write = self.write.as_ref().unwrap_or(&self.read);
        Ok((self.read.try_clone()?, write.try_clone()?))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        timeoutio::read_by(self.read.as_fd(), buf, Instant::now() + self.timeout)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.write.as_ref().unwrap_or(&self.read);
        timeoutio::write_by(fd.as_fd(), buf, Instant::now() + self.timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serve `listen` until TERM: the master, or — in a process started by the master — a worker.
/// `make` creates a session state when the pool has none; `handle` serves one connection.
/// `name` prefixes the log lines. Errors are fatal setup errors of the master.
pub fn run<S, M, H>(
    name: &str,
    listen: &Listen,
    opts: &Options,
    make: M,
    handle: H,
) -> io::Result<()>
where
    S: Send,
    M: Fn() -> S + Sync,
    H: Fn(&mut S, &mut Conn) + Sync,
{
    if std::env::var_os(WORKER_ENV).is_some() {
        worker(name, opts, make, handle);
        return Ok(());
    }
    master(name, listen)
}

/// Whether this process is a worker started by a master (for programs that must skip their
/// own start-up checks or logging in workers).
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Bind or take the listening socket (also for a supervisor that keeps the socket and hands
/// it to its child as `fd:3`).
pub fn bind(listen: &Listen) -> io::Result<OwnedFd> {
    match listen {
        Listen::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            let l = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            Ok(l.into())
        }
        Listen::Tcp(addr) => {
            let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
            Ok(TcpListener::bind(&addrs[..])?.into())
        }
        Listen::Fd(n) => child::inherited(*n).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("descriptor {n} is not open"))
        }),
    }
}

/// The master: start workers as connections arrive, reap them, end on TERM.
fn master(name: &str, listen: &Listen) -> io::Result<()> {
    // the executable's path, taken now: once the file is replaced (an upgrade), the running
    // image's /proc/self/exe names a deleted file, and new workers must run the new one
    let exe = std::env::current_exe()?;
    let socket = bind(listen)?;
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK)?;
    let mut workers: Vec<Pid> = Vec::new();
    // the worker accepting now, and the read end of its pipe
    let mut accepting: Option<OwnedFd> = None;
    let mut not_before = Instant::now();
    let mut stopping = false;
    crate::log::line(format_args!("{name}: listening, pid {}", std::process::id()));
    loop {
        reap(name, &mut workers, &mut not_before);
        if stopping && workers.is_empty() {
            return Ok(());
        }
        let wait = not_before.saturating_duration_since(Instant::now());
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let watch_socket = accepting.is_none() && !stopping && wait.is_zero();
        match (&accepting, watch_socket) {
            (Some(pipe), _) => fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN)),
            (None, true) => fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN)),
            (None, false) => {}
        }
        let second = Duration::from_secs(1);
        match poll(&mut fds, poll_timeout(if wait.is_zero() { second } else { wait.min(second) })) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = Signal::try_from(info.ssi_signo as i32).ok();
            if matches!(sig, Some(Signal::SIGINT | Signal::SIGTERM)) && !stopping {
                stopping = true;
                accepting = None;
                for &pid in &workers {
                    let _ = kill(pid, Signal::SIGTERM);
                }
            }
        }
        if stopping || !ready {
            continue;
        }
        if accepting.is_some() {
            // the accepting worker closed its pipe: it accepts no more
            accepting = None;
        } else {
            match start_worker(&exe, &socket) {
                Ok((pid, pipe)) => {
                    workers.push(pid);
                    accepting = Some(pipe);
                }
                Err(e) => {
                    crate::log::line(format_args!("{name}: unable to start a worker: {e}"));
                    not_before = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }
}

/// Reap ended workers; an abnormal end delays the next start by a second.
fn reap(name: &str, workers: &mut Vec<Pid>, not_before: &mut Instant) {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { return };
                workers.retain(|&p| p != pid);
                let normal = matches!(
                    status,
                    WaitStatus::Exited(_, 0) | WaitStatus::Signaled(_, Signal::SIGTERM, _)
                );
                if !normal {
                    crate::log::line(format_args!(
                        "{name}: worker {pid} ended abnormally: {status:?}"
                    ));
                    *not_before = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }
}

/// Start a worker: this executable with our arguments, the socket on fd 3, a pipe on fd 4.
fn start_worker(exe: &std::path::Path, socket: &OwnedFd) -> io::Result<(Pid, OwnedFd)> {
    // close-on-exec: a worker that inherited the read end would never see its master go
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(WORKER_ENV, "1");
    child::map_fds(&mut cmd, vec![(socket.try_clone()?, LISTEN_FD), (write, NOTIFY_FD)]);
    let child = cmd.spawn()?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // the master reaps with waitpid; the Child handle is not needed
    drop(child);
    Ok((pid, read))
}

/// Sessions open in a worker, and when the last one ended.
struct Activity {
    open: usize,
    last: Instant,
}

/// A worker: accept, serve on threads, make way after `uses` connections or when idle.
fn worker<S, M, H>(name: &str, opts: &Options, make: M, handle: H)
where
    S: Send,
    M: Fn() -> S + Sync,
    H: Fn(&mut S, &mut Conn) + Sync,
{
    let pid = std::process::id();
    // the master's blocked signals (TERM) may be inherited: a worker dies of TERM
    let _ = SigSet::empty().thread_set_mask();
    let (Some(socket), Some(notify)) = (child::inherited(LISTEN_FD), child::inherited(NOTIFY_FD))
    else {
        crate::log::line(format_args!("{name}: worker {pid}: no socket or pipe from the master"));
        std::process::exit(111);
    };
    let socket = match Socket::new(socket) {
        Ok(s) => s,
        Err(e) => {
            crate::log::line(format_args!(
                "{name}: worker {pid}: descriptor {LISTEN_FD} is not a listening socket: {e}"
            ));
            std::process::exit(111);
        }
    };
    let idle = randomised(opts.idle);
    let activity = Mutex::new(Activity { open: 0, last: Instant::now() });
    let changed = Condvar::new();
    // the session threads: each keeps its state and parks between sessions
    let parked: Parked<OwnedFd> = Parked::new();
    crate::log::line(format_args!("{name}: worker {pid} accepting"));
    std::thread::scope(|scope| {
        let mut served: u32 = 0;
        let why = loop {
            // room for another session
            {
                let mut a = activity.lock().unwrap_or_else(|p| p.into_inner());
                while a.open >= opts.sessions.max(1) {
                    a = changed.wait(a).unwrap_or_else(|p| p.into_inner());
                }
            }
            let timeout = {
                let a = activity.lock().unwrap_or_else(|p| p.into_inner());
                if idle.is_zero() || served == 0 || a.open > 0 {
                    Duration::from_secs(1)
                } else {
                    match idle.checked_sub(a.last.elapsed()) {
                        Some(left) if !left.is_zero() => left.min(Duration::from_secs(1)),
                        _ => break "idle",
                    }
                }
            };
            let mut fds = [
                PollFd::new(socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(notify.as_fd(), PollFlags::empty()),
            ];
            let timeout = poll_timeout(timeout.max(Duration::from_millis(1)));
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                break "the master is gone";
            }
            if !fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                continue;
            }
            let Some(fd) = socket.accept() else { continue };
            served += 1;
            activity.lock().unwrap_or_else(|p| p.into_inner()).open += 1;
            if let Err(fd) = parked.hand(fd) {
                let (parked, activity, changed, make, handle) =
                    (&parked, &activity, &changed, &make, &handle);
                scope.spawn(move || {
                    let mut state = make();
                    parked.serve(fd, |fd| {
                        let _done = Done { activity, changed };
                        let mut conn = Conn::socket(fd, opts.timeout);
                        handle(&mut state, &mut conn);
                    });
                });
            }
            if opts.uses > 0 && served >= opts.uses {
                break "its connections are used up";
            }
        };
        drop(socket);
        drop(notify);
        parked.close();
        crate::log::line(format_args!("{name}: worker {pid} accepts no more: {why}"));
    });
    std::process::exit(0);
}

/// Marks the end of a session, also when its handler panics.
struct Done<'a> {
    activity: &'a Mutex<Activity>,
    changed: &'a Condvar,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut a = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        a.open = a.open.saturating_sub(1);
        a.last = Instant::now();
        self.changed.notify_all();
    }
}

/// A listening socket of either family.
enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Socket {
    /// The listener on `fd`, non-blocking (several workers may be woken for one client).
    fn new(fd: OwnedFd) -> io::Result<Socket> {
        use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
        let addr: SockaddrStorage = getsockname(fd.as_raw_fd())?;
        let socket = match addr.family() {
            Some(AddressFamily::Unix) => Socket::Unix(fd.into()),
            _ => Socket::Tcp(fd.into()),
        };
        match &socket {
            Socket::Unix(l) => l.set_nonblocking(true)?,
            Socket::Tcp(l) => l.set_nonblocking(true)?,
        }
        Ok(socket)
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }

    /// Accept one connection (blocking, as sessions expect); `None` when another worker got
    /// it first or the accept failed (the client sees that).
    fn accept(&self) -> Option<OwnedFd> {
        match self {
            Socket::Unix(l) => {
                let (s, _) = l.accept().ok()?;
                s.set_nonblocking(false).ok()?;
                Some(s.into())
            }
            Socket::Tcp(l) => {
                let (s, _) = l.accept().ok()?;
                s.set_nonblocking(false).ok()?;
                let _ = s.set_nodelay(true);
                Some(s.into())
            }
        }
    }
}

/// `t` seconds randomised into `[t, 2t-1]` (whole seconds; zero stays zero).
fn randomised(t: Duration) -> Duration {
    let secs = t.as_secs();
    if secs <= 1 {
        return t;
    }
    // without a kernel random source every worker idles for `t` alone
    let noise = getrandom::u64().unwrap_or(0);
    Duration::from_secs(secs + noise % secs)
}

/// `-D` of smmapd and imapd (Cyrus's `debug_command`): run `format` through the shell with
/// `%s %d %s` = program name, pid, service (each quoted for the shell; `%%` is a `%`), and
/// wait for it, as upstream. `setting` names the control file for the log when none is
/// configured.
pub fn debug_command(name: &str, setting: &str, format: Option<&str>, service: &[u8]) {
    let Some(format) = format else {
        crate::log::line(format_args!("{name}: warning: -D given but no {setting} configured"));
        return;
    };
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let argv0 = argv0.to_string_lossy();
    let pid = std::process::id().to_string();
    let service = String::from_utf8_lossy(service);
    let command = fill(format, &[&argv0, &pid, &service]);
    crate::log::line(format_args!("{name}: running debug command {command}"));
    match Command::new("/bin/sh").arg("-c").arg(&command).status() {
        Ok(status) if !status.success() => {
            crate::log::line(format_args!("{name}: warning: debug command failed: {status}"))
        }
        Ok(_) => {}
        Err(e) => {
            crate::log::line(format_args!("{name}: warning: unable to run the debug command: {e}"))
        }
    }
}

/// A printf-style format with `%s` and `%d` taking `values` in order, shell-quoted.
fn fill(format: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut next = values.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('%')) => {
                chars.next();
                out.push('%');
            }
            ('%', Some('s' | 'd')) => {
                chars.next();
                out.push_str(&quote(next.next().copied().unwrap_or("")));
            }
            _ => out.push(c),
        }
    }
    out
}

/// `'...'` with every `'` written `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_command_formats() {
        assert_eq!(
            fill("gdb %s %d # %s", &["smmapd", "42", "smmap"]),
            "gdb 'smmapd' '42' # 'smmap'"
        );
        assert_eq!(fill("a %% b %s", &["it's"]), "a % b 'it'\\''s'");
        assert_eq!(fill("%s %s %s %s", &["a"]), "'a' '' '' ''");
        assert_eq!(fill("100%", &[]), "100%");
    }

    #[test]
    fn addresses() {
        assert_eq!("unix:/run/x.sock".parse(), Ok(Listen::Unix("/run/x.sock".into())));
        assert_eq!("tcp:127.0.0.1:25".parse(), Ok(Listen::Tcp("127.0.0.1:25".into())));
        assert_eq!("127.0.0.1:25".parse(), Ok(Listen::Tcp("127.0.0.1:25".into())));
        assert_eq!("[::1]:25".parse(), Ok(Listen::Tcp("[::1]:25".into())));
        assert_eq!("fd:3".parse(), Ok(Listen::Fd(3)));
        for bad in ["unix:", "fd:-1", "fd:x", "tcp:host", "nothing", ":25", "h:99999", ""] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn idle_is_randomised_within_bounds() {
        assert_eq!(randomised(Duration::ZERO), Duration::ZERO);
        assert_eq!(randomised(Duration::from_secs(1)), Duration::from_secs(1));
        for _ in 0..100 {
            let r = randomised(Duration::from_secs(60)).as_secs();
            assert!((60..=119).contains(&r), "{r}");
        }
    }

    #[test]
    fn conn_times_out_and_reads() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut c = Conn::socket(a.into(), Duration::from_millis(50));
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).unwrap_err().kind(), io::ErrorKind::TimedOut);
        b.write_all(b"hi").unwrap();
        assert_eq!(c.read(&mut buf).unwrap(), 2);
        c.write_all(b"ok").unwrap();
        let mut got = [0u8; 2];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
        drop(b);
        assert_eq!(c.read(&mut buf).unwrap(), 0);
    }
}
