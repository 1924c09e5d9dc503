//! qmail-tcpsrv: accept TCP connections and run a program for each, as ucspi-tcp's tcpserver.
//!
//! `qmail-tcpsrv [options] host port program [args...]` listens on `host` (`0` or empty: every
//! IPv4 and IPv6 address) and `port` (a number, a service name, or 0 for a port the kernel
//! picks; `-1` prints it), and runs `program` per connection with the socket on fds 0 and 1 and
//! the ucspi-tcp environment (`PROTO`, `TCPLOCALIP`, `TCPLOCALPORT`, `TCPLOCALHOST`,
//! `TCPREMOTEIP`, `TCPREMOTEPORT`; `TCPREMOTEHOST` and `TCPREMOTEINFO` are always unset: no
//! DNS, no ident). `-c n` caps the children: at the cap it stops accepting, so clients wait in
//! the kernel's backlog. `-x rules.cdb` (tcprules' format, re-read per connection) can deny a
//! connection or set variables. See doc/qmail-tcpsrv.8.
//!
//! With `-W` the program is not run per connection: long-lived workers of it (never root)
//! get each allowed connection and its environment over a Unix socket and serve one session
//! after another (workers.rs, qmail::handoff); `-n` sessions each.
//!
//! Exit codes: 100 usage, 111 fatal setup error (bind, privileges, `-W` as root); SIGTERM
//! exits 0 at once and leaves the children running their sessions (workers end after theirs:
//! they see end of file on their socket).
//!
//! Structure: the main thread binds, drops privileges, then loops: wait for a free slot, poll
//! the listeners, accept. Each connection gets a small thread that sends the banner, applies
//! the rules, spawns the program and waits for it (so it is also the reaper); the slot is
//! given back when the connection ends, and the thread parks for the next connection
//! (`qmail::parked`) instead of ending. Threads, fds and memory are therefore bounded by `-c`. A
//! signal thread waits for SIGTERM (blocked everywhere else) with sigwait: no handler, no
//! unsafe.

#![forbid(unsafe_code)]

mod args;
mod conn;
mod listen;
mod workers;

use args::Options;
use nix::sys::signal::{SigSet, Signal};
use qmail::parked::Parked;
use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let opts = match args::parse(
        &argv,
        std::env::var_os("UID").as_deref(),
        std::env::var_os("GID").as_deref(),
    ) {
        Ok(o) => o,
        Err(why) => {
            log(&format!("{why}\nqmail-tcpsrv: {}", args::USAGE));
            return ExitCode::from(qmail::exit::PERM);
        }
    };
    let quiet = opts.verbosity == 0;
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            if !quiet {
                log(&format!("fatal: {why}"));
            }
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

/// Set up, then serve until SIGTERM (which exits from the signal thread). `Err` is fatal.
fn run(opts: Options) -> Result<(), String> {
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_block().map_err(|e| format!("unable to block SIGTERM: {e}"))?;
    std::thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || loop {
            if let Ok(Signal::SIGTERM) = term.wait() {
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("unable to start the signal thread: {e}"))?;

    let port = listen::port(&opts.port)?;
    let listeners = listen::bind(&opts.host, port, opts.backlog)?;
    let bound = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .ok_or("unable to get local address")?;
    drop_privileges(opts.uid, opts.gid)?;
    if opts.workers && nix::unistd::geteuid().is_root() {
        // a worker serves many clients: one break-in would see every later session
        return Err("workers (-W) never run as root: give -u or -U".into());
    }
    if opts.print_port {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{bound}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    }
    // like tcpserver's close(0) and close(1): whoever reads our stdout sees EOF
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("unable to open /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .map_err(|e| format!("unable to close stdin and stdout: {e}"))?;

    let pool = opts.workers.then(|| workers::Pool::new(&opts));
    let server = Arc::new(Server { opts, pool, children: Mutex::new(0), freed: Condvar::new() });
    if server.pool.is_some() {
        let srv = Arc::clone(&server);
        std::thread::Builder::new()
            .name("sweep".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Some(pool) = &srv.pool {
                    pool.sweep();
                }
            })
            .map_err(|e| format!("unable to start the sweep thread: {e}"))?;
    }
    server.status(0);
    serve(&server, &listeners)
}

/// tcpserver's -g then -u, after the bind. 0 means "do not switch".
fn drop_privileges(uid: u32, gid: u32) -> Result<(), String> {
    use nix::unistd::{getgid, setgid, setgroups, Gid};
    if uid != 0 {
        let gid = if gid != 0 { gid } else { getgid().as_raw() };
        qmail::prot::drop_to(uid, gid).map_err(|e| format!("unable to set uid: {e}"))?;
    } else if gid != 0 {
        if nix::unistd::geteuid().is_root() {
            setgroups(&[Gid::from_raw(gid)]).map_err(|e| format!("unable to set gid: {e}"))?;
        }
        setgid(Gid::from_raw(gid)).map_err(|e| format!("unable to set gid: {e}"))?;
    }
    Ok(())
}

/// What the connection threads share.
pub struct Server {
    pub opts: Options,
    /// `-W`: the workers
    pub pool: Option<workers::Pool>,
    /// Connections being served (accepted and not yet finished).
    children: Mutex<usize>,
    freed: Condvar,
}

impl Server {
    fn status(&self, children: usize) {
        if self.opts.verbosity >= 2 {
            log(&format!("status: {children}/{}", self.opts.limit));
        }
    }

    /// Block until fewer than `-c` connections are being served.
    fn wait_for_slot(&self) {
        let mut n = self.children.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.opts.limit {
            n = self.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Count an accepted connection; the returned slot gives it back when dropped.
    fn take_slot(self: &Arc<Self>) -> Slot {
        let mut n = self.children.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.status(*n);
        Slot(Arc::clone(self))
    }

    pub fn warn(&self, text: &str) {
        if self.opts.verbosity >= 1 {
            log(&format!("warning: {text}"));
        }
    }

    pub fn verbose(&self, text: &str) {
        if self.opts.verbosity >= 2 {
            log(text);
        }
    }
}

/// One connection's place under the `-c` limit.
pub struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut n = self.0.children.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.0.status(*n);
        self.0.freed.notify_one();
    }
}

/// The accept loop; returns only on a fatal error.
fn serve(server: &Arc<Server>, listeners: &[TcpListener]) -> Result<(), String> {
    let mut next = 0;
    // connection threads park between connections (never more than -c of them)
    let parked = Arc::new(Parked::new());
    loop {
        server.wait_for_slot();
        let stream = listen::accept(listeners, &mut next);
        let slot = server.take_slot();
        let Err(job) = parked.hand((stream, slot)) else { continue };
        let (srv, parked) = (Arc::clone(server), Arc::clone(&parked));
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(256 * 1024)
            .spawn(move || parked.serve(job, |(stream, slot)| conn::serve(&srv, stream, slot)));
        if let Err(e) = spawned {
            server.warn(&format!("dropping connection, unable to start a thread: {e}"));
        }
    }
}

/// One line on stderr, written at once so that lines of different threads never mix.
pub fn log(text: &str) {
    let line = format!("qmail-tcpsrv: {text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
