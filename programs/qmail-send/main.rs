//! qmail-send: schedule deliveries, retry, bounce (doc/qmail-send.8).
//!
//! Started by qmail-start with fd 0 = log (written), fd 1/2 = commands to / reports from
//! qmail-lspawn, fd 3/4 = the same for qmail-rspawn, fd 5/6 = requests to / replies from
//! qmail-clean, fd 7/8 = bytes to / records from qmail-todo. Runs in `QMAILHOME/queue`.
//! Signals: TERM finishes running deliveries and exits 0; ALRM retries every queued message
//! now; HUP re-reads the bounce control files and virtualdomains and tells qmail-todo and
//! qmail-lspawn to re-read theirs. Exit 0 after TERM; 111 when it cannot start (controls,
//! `lock/sendmutex` held by another qmail-send, a missing descriptor) or loses a partner.
//!
//! This file starts it and runs its loop (doc/INTERNALS.md, "qmail-send's cycle"); the
//! channels are in channel.rs, completion and the leftovers sweep in complete.rs, the link
//! to qmail-todo in todo.rs.

#![forbid(unsafe_code)]

mod bounce;
mod channel;
mod complete;
mod due;
mod log;
mod todo;

use channel::{Chan, Channels};
use complete::Completion;
use log::Log;
use todo::Todo;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use qmail::auto::{self, SPLIT};
use qmail::clean::Client;
use qmail::control::Control;
use qmail::date822::unix_now;
use qmail::rewrite::Rewriter;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The most a poll sleeps.
const MAX_SLEEP: i64 = 1500;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // fd 0 is the log (fd 1 and 2 are qmail-lspawn's pipes)
            if let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() {
                let _ = File::from(fd)
                    .write_all(format!("alert: qmail-send: {e}; exiting\n").as_bytes());
            }
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

struct Send {
    control: Control,
    log: Log,
    chans: Channels,
    finish: Completion,
    todo: Todo,
    /// `virtualdomains`, to strip a recipient's prefix in a bounce (re-read on HUP)
    rewriter: Rewriter,
}

fn run() -> Result<(), String> {
    // first of all: from here on TERM, ALRM and HUP wait for the main loop (qmailctl doqueue
    // and reload signal only a process that blocks them)
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| format!("sigprocmask: {e}"))?;
    let signals = SignalFd::with_flags(&mask, nix::sys::signalfd::SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let home = auto::home();
    let control = Control::new(&home);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::env::set_current_dir(home.join("queue"))
        .map_err(|e| format!("unable to enter the queue: {e}"))?;
    let mutex = OpenOptions::new()
        .write(true)
        .open("lock/sendmutex")
        .map_err(|e| format!("cannot open lock/sendmutex: {e}"))?;
    let _mutex = nix::fcntl::Flock::lock(mutex, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| "another qmail-send is already running".to_string())?;
    qmail::queue::check_split(Path::new(""))?;

    let fd =
        |n| qmail::child::inherited(n).map(File::from).ok_or(format!("descriptor {n} is not open"));
    let log = File::from(io::stdin().as_fd().try_clone_to_owned().map_err(|e| e.to_string())?);
    let (l_to, l_from, r_to, r_from) = (fd(1)?, fd(2)?, fd(3)?, fd(4)?);
    let (clean_w, clean_r, todo_w, todo_r) = (fd(5)?, fd(6)?, fd(7)?, fd(8)?);

    let lmax = handshake(&l_from).map_err(|e| format!("qmail-lspawn: {e}"))?;
    let rmax = handshake(&r_from).map_err(|e| format!("qmail-rspawn: {e}"))?;
    let conc = |name, def: u64, max: u16| -> Result<usize, String> {
        Ok(control.int_or(name, def).map_err(|e| e.to_string())?.min(u64::from(max)) as usize)
    };
    let (lconc, rconc) =
        (conc("concurrencylocal", 100, lmax)?, conc("concurrencyremote", 20, rmax)?);
    let lifetime = control.int_or("queuelifetime", 604_800).map_err(|e| e.to_string())? as i64;
    let rewriter = Rewriter::load(&control).map_err(|e| e.to_string())?;
    let bounce = bounce::BounceConf::load(&control).map_err(|e| e.to_string())?;
    let mut send = Send {
        control,
        log: Log::new(log),
        chans: Channels::new([(l_to, l_from, lconc), (r_to, r_from, rconc)], lifetime),
        finish: Completion::new(home, bounce, Client::new(clean_w, clean_r)),
        todo: Todo::new(todo_w, todo_r),
        rewriter,
    };
    send.startup_scan();
    // qmail-todo may start now: the queue scan is complete
    send.todo.start();
    send.chans.status(&mut send.log);
    send.main_loop(&signals)
}

/// Read a spawner's two-byte slot limit.
fn handshake(from: &File) -> io::Result<u16> {
    let mut b = [0u8; 2];
    (&*from).read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

impl Send {
    /// At start (doc/INTERNALS.md, "qmail-send's cycle"), every preprocessed message (info present,
    /// todo absent) is scheduled at its channel files' mtimes; one without channel files goes to
    /// completion.
    fn startup_scan(&mut self) {
        for s in 0..SPLIT {
            let Ok(dir) = fs::read_dir(format!("info/{s}")) else { continue };
            for e in dir.flatten() {
                let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                    continue;
                };
                if Path::new(&format!("todo/{id}")).exists() {
                    continue; // qmail-todo redoes it
                }
                let mut any = false;
                for c in Chan::ALL {
                    if let Ok(m) = fs::metadata(c.path(id)) {
                        self.chans.queue(c, m.mtime(), id);
                        any = true;
                    }
                }
                if !any {
                    self.finish.waiting().push(0, id);
                }
            }
        }
    }

    fn main_loop(&mut self, signals: &SignalFd) -> Result<(), String> {
        loop {
            if self.chans.exiting() && self.chans.idle() && self.todo.done() {
                self.log.line("status: exiting");
                return Ok(());
            }
            self.finish.run(&mut self.log)?;
            if !self.chans.exiting() {
                self.finish.sweep(&mut self.log)?;
            }
            self.chans.schedule(&mut self.log, self.finish.waiting());
            self.chans.flush()?;
            let timeout = self.timeout();
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                self.chans.poll_reports(Chan::Local),
                self.chans.poll_reports(Chan::Remote),
                PollFd::new(self.todo.fd(), PollFlags::POLLIN),
                self.chans.poll_commands(Chan::Local),
                self.chans.poll_commands(Chan::Remote),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if ready[0] {
                while let Ok(Some(info)) = signals.read_signal() {
                    self.signal(info.ssi_signo as i32);
                }
            }
            for (i, c) in Chan::ALL.into_iter().enumerate() {
                if ready[1 + i] {
                    let done = self.finish.waiting();
                    self.chans.read_reports(&mut self.log, done, &self.rewriter, c)?;
                }
            }
            if ready[3] {
                self.read_todo()?;
            }
        }
    }

    fn timeout(&self) -> PollTimeout {
        let now = unix_now();
        let mut due = now + MAX_SLEEP;
        for t in [self.chans.next_due(), self.finish.next()].into_iter().flatten() {
            due = due.min(t);
        }
        qmail::timeoutio::poll_timeout(Duration::from_secs((due - now).max(0) as u64))
    }

    fn signal(&mut self, signo: i32) {
        match Signal::try_from(signo) {
            Ok(Signal::SIGTERM) if !self.chans.exiting() => {
                self.chans.exit_asap();
                self.todo.exit();
                self.chans.status(&mut self.log);
            }
            Ok(Signal::SIGALRM) => {
                self.chans.retry_all(unix_now());
                self.log.line("status: retrying every message now (ALRM)");
            }
            Ok(Signal::SIGHUP) => {
                match (Rewriter::load(&self.control), bounce::BounceConf::load(&self.control)) {
                    (Ok(r), Ok(b)) => {
                        self.rewriter = r;
                        self.finish.reconfigure(b);
                        self.log.line("status: reread control files (HUP)");
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        self.log.line(&format!("alert: unable to reread controls: {e}"))
                    }
                }
                self.todo.reload();
                self.chans.reload();
            }
            _ => {}
        }
    }

    /// Schedule the messages qmail-todo has handed over.
    fn read_todo(&mut self) -> Result<(), String> {
        use qmail::todo::Channels as To;
        for (channels, id) in self.todo.read(&mut self.log, self.chans.exiting())? {
            let now = unix_now();
            match channels {
                To::Local => self.chans.queue(Chan::Local, now, id),
                To::Remote => self.chans.queue(Chan::Remote, now, id),
                To::Both => {
                    self.chans.queue(Chan::Local, now, id);
                    self.chans.queue(Chan::Remote, now, id);
                }
                To::Neither => self.finish.waiting().push(now, id),
            }
        }
        Ok(())
    }
}
