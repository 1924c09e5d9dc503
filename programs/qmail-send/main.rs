//! qmail-send: schedule deliveries, retry, bounce (doc/qmail-send.8).
//!
//! Started by qmail-start with fd 0 = log (written), fd 1/2 = commands to / reports from
//! qmail-lspawn, fd 3/4 = the same for qmail-rspawn, fd 5/6 = requests to / replies from
//! qmail-clean, fd 7/8 = bytes to / records from qmail-todo. Runs in `QMAILHOME/queue`.
//! Signals: TERM finishes running deliveries and exits 0; ALRM retries every queued message
//! now; HUP re-reads the bounce control files and virtualdomains and tells qmail-todo and
//! qmail-lspawn to re-read theirs. Exit 0 after TERM; 111 when it cannot start (controls,
//! `lock/sendmutex` held by another qmail-send, a missing descriptor) or loses a partner.

#![forbid(unsafe_code)]

mod bounce;
mod complete;
mod due;
mod log;
mod todo;

use complete::Completion;
use due::TROUBLE;
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
use qmail::safe::log as safe;
use qmail::spawn::{Command, ReportDecoder};
use qmail::todo::Channels;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

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

/// One delivery channel: local (lspawn) or remote (rspawn).
struct Channel {
    name: &'static str,
    /// the `C` of the retry formula
    c: i64,
    to: File,
    from: File,
    outbox: Vec<u8>,
    reports: ReportDecoder,
    slots: Vec<Option<Delivery>>,
    passes: Vec<Pass>,
    /// (due time, id), earliest first
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    active: HashSet<u64>,
}

/// A running delivery in a slot.
struct Delivery {
    num: u64,
    id: u64,
    offset: u64,
    recipient: Vec<u8>,
}

/// A pass over one message's channel file.
struct Pass {
    id: u64,
    file: File,
    reader: BufReader<File>,
    offset: u64,
    eof: bool,
    outstanding: usize,
    undone: bool,
    next: i64,
    expired: bool,
    sender: Vec<u8>,
}

struct Send {
    control: Control,
    log: Log,
    chans: [Channel; 2],
    finish: Completion,
    todo: Todo,
    rewriter: Rewriter,
    lifetime: i64,
    delnum: u64,
    exitasap: bool,
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
        (conc("concurrencylocal", 10, lmax)?, conc("concurrencyremote", 20, rmax)?);
    let lifetime = control.int_or("queuelifetime", 604_800).map_err(|e| e.to_string())? as i64;
    let rewriter = Rewriter::load(&control).map_err(|e| e.to_string())?;
    let bounce = bounce::BounceConf::load(&control).map_err(|e| e.to_string())?;
    for f in [&l_to, &r_to] {
        qmail::timeoutio::set_nonblocking(f);
    }
    let chan = |name, c, to, from, n| Channel {
        name,
        c,
        to,
        from,
        outbox: Vec::new(),
        reports: ReportDecoder::new(),
        slots: (0..n).map(|_| None).collect(),
        passes: Vec::new(),
        queue: BinaryHeap::new(),
        active: HashSet::new(),
    };
    let mut send = Send {
        control,
        log: Log::new(log),
        chans: [chan("local", 10, l_to, l_from, lconc), chan("remote", 20, r_to, r_from, rconc)],
        finish: Completion::new(home, bounce, Client::new(clean_w, clean_r)),
        todo: Todo::new(todo_w, todo_r),
        rewriter,
        lifetime,
        delnum: 0,
        exitasap: false,
    };
    send.startup_scan();
    // qmail-todo may start now: the queue scan is complete
    send.todo.start();
    send.status();
    send.main_loop(&signals)
}

/// Read a spawner's two-byte slot limit.
fn handshake(from: &File) -> io::Result<u16> {
    let mut b = [0u8; 2];
    (&*from).read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

fn isqrt(n: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    let n = n as u128;
    let mut x = (n as f64).sqrt() as u128;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x as i64
}

/// The next attempt: `birth + (isqrt(age) + c)^2` (doc/qmail-send.8, "Channels and retries").
fn next_retry(birth: i64, now: i64, c: i64) -> i64 {
    let age = (now - birth).max(0);
    let r = isqrt(age) + c;
    birth + r * r
}

fn mtime(m: &fs::Metadata) -> i64 {
    m.mtime()
}

fn chan_dir(chan: usize) -> &'static str {
    if chan == 0 {
        "local"
    } else {
        "remote"
    }
}

fn path(dir: &str, id: u64) -> String {
    format!("{dir}/{}/{id}", id % SPLIT)
}

impl Send {
    fn status(&mut self) {
        let busy = |c: &Channel| c.slots.iter().filter(|s| s.is_some()).count();
        let line = format!(
            "status: local {}/{} remote {}/{}{}",
            busy(&self.chans[0]),
            self.chans[0].slots.len(),
            busy(&self.chans[1]),
            self.chans[1].slots.len(),
            if self.exitasap { " exitasap" } else { "" }
        );
        self.log.line(&line);
    }

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
                for c in 0..2 {
                    if let Ok(m) = fs::metadata(path(chan_dir(c), id)) {
                        self.chans[c].queue.push(Reverse((mtime(&m), id)));
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
            if self.exitasap && self.idle() && self.todo.done() {
                self.log.line("status: exiting");
                return Ok(());
            }
            self.finish.run(&mut self.log)?;
            if !self.exitasap {
                self.finish.sweep(&mut self.log)?;
            }
            self.schedule()?;
            self.flush_outboxes()?;
            let timeout = self.timeout();
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.chans[0].from.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.chans[1].from.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.todo.fd(), PollFlags::POLLIN),
            ];
            for c in &self.chans {
                let ev = if c.outbox.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
                fds.push(PollFd::new(c.to.as_fd(), ev));
            }
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
            for c in 0..2 {
                if ready[1 + c] {
                    self.read_reports(c)?;
                }
            }
            if ready[3] {
                self.read_todo()?;
            }
        }
    }

    fn idle(&self) -> bool {
        self.chans.iter().all(|c| c.slots.iter().all(Option::is_none) && c.outbox.is_empty())
    }

    fn timeout(&self) -> PollTimeout {
        let now = unix_now();
        let mut due = now + MAX_SLEEP;
        for c in &self.chans {
            if c.slots.iter().any(Option::is_none) {
                if let Some(Reverse((t, _))) = c.queue.peek() {
                    due = due.min(*t);
                }
            }
        }
        if let Some(t) = self.finish.next() {
            due = due.min(t);
        }
        qmail::timeoutio::poll_timeout(Duration::from_secs((due - now).max(0) as u64))
    }

    fn signal(&mut self, signo: i32) {
        match Signal::try_from(signo) {
            Ok(Signal::SIGTERM) if !self.exitasap => {
                self.exitasap = true;
                self.todo.exit();
                self.status();
            }
            Ok(Signal::SIGALRM) => {
                let now = unix_now();
                for c in &mut self.chans {
                    let all: Vec<_> =
                        c.queue.drain().map(|Reverse((_, id))| Reverse((now, id))).collect();
                    c.queue.extend(all);
                }
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
                self.chans[0].outbox.extend(Command::reload().encode());
            }
            _ => {}
        }
    }

    fn flush_outboxes(&mut self) -> Result<(), String> {
        for c in &mut self.chans {
            while !c.outbox.is_empty() {
                match (&c.to).write(&c.outbox) {
                    Ok(n) => {
                        c.outbox.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(format!("oh no! lost the {} spawn connection: {e}", c.name))
                    }
                }
            }
        }
        Ok(())
    }

    /// Start deliveries while slots are free (doc/INTERNALS.md, "qmail-send's cycle").
    fn schedule(&mut self) -> Result<(), String> {
        if self.exitasap {
            return Ok(());
        }
        let now = unix_now();
        for c in 0..2 {
            while let Some(slot) = self.chans[c].slots.iter().position(Option::is_none) {
                // a pass with records left, else the next due message
                let pi = match self.chans[c].passes.iter().position(|p| !p.eof) {
                    Some(pi) => pi,
                    None => match self.open_next_pass(c, now) {
                        Some(pi) => pi,
                        None => break,
                    },
                };
                self.advance(c, pi, slot);
            }
        }
        Ok(())
    }

    /// Open the pass of the earliest due message of channel `c`.
    fn open_next_pass(&mut self, c: usize, now: i64) -> Option<usize> {
        loop {
            let Reverse((due, id)) = *self.chans[c].queue.peek()?;
            if due > now {
                return None;
            }
            self.chans[c].queue.pop();
            if self.chans[c].active.contains(&id) {
                continue;
            }
            match self.open_pass(c, id, now) {
                Ok(Some(p)) => {
                    self.chans[c].active.insert(id);
                    self.chans[c].passes.push(p);
                    return Some(self.chans[c].passes.len() - 1);
                }
                Ok(None) => continue, // the channel file is gone: nothing to do
                Err(e) => {
                    self.log.line(&format!(
                        "warning: trouble opening {}: {e}; will try again later",
                        path(chan_dir(c), id)
                    ));
                    self.chans[c].queue.push(Reverse((now + TROUBLE, id)));
                }
            }
        }
    }

    fn open_pass(&mut self, c: usize, id: u64, now: i64) -> io::Result<Option<Pass>> {
        let file = match OpenOptions::new().read(true).write(true).open(path(chan_dir(c), id)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let info_path = path("info", id);
        let info = fs::read(&info_path)?;
        let birth = fs::metadata(&info_path)?.mtime();
        let sender = qmail::queue::info_sender(&info);
        let reader = BufReader::new(file.try_clone()?);
        Ok(Some(Pass {
            id,
            file,
            reader,
            offset: 0,
            eof: false,
            outstanding: 0,
            undone: false,
            next: next_retry(birth, now, self.chans[c].c),
            expired: now > birth + self.lifetime,
            sender,
        }))
    }

    /// Read the next `T` record of pass `pi` and start it in `slot`; finish the pass at EOF.
    fn advance(&mut self, c: usize, pi: usize, slot: usize) {
        let mut rec = Vec::new();
        loop {
            let pass = &mut self.chans[c].passes[pi];
            rec.clear();
            let start = pass.offset;
            match pass.reader.read_until(0, &mut rec) {
                Ok(0) => {
                    pass.eof = true;
                    self.maybe_finish(c, pi);
                    return;
                }
                Ok(n) => pass.offset += n as u64,
                Err(e) => {
                    pass.eof = true;
                    pass.undone = true;
                    let line =
                        format!("warning: trouble reading {}: {e}", path(chan_dir(c), pass.id));
                    self.log.line(&line);
                    self.maybe_finish(c, pi);
                    return;
                }
            }
            if rec.last() != Some(&0) {
                pass.eof = true; // a partial record: ignore it
                self.maybe_finish(c, pi);
                return;
            }
            rec.pop();
            if rec.first() != Some(&b'T') {
                continue; // done (`D`) or unknown
            }
            let recipient = rec[1..].to_vec();
            pass.outstanding += 1;
            let id = pass.id;
            let sender = verp(&pass.sender, &recipient);
            self.delnum += 1;
            let num = self.delnum;
            let cmd = Command {
                slot: slot as u16,
                message: format!("{}/{id}", id % SPLIT).into_bytes(),
                sender,
                recipient: recipient.clone(),
            };
            let ch = &mut self.chans[c];
            ch.outbox.extend(cmd.encode());
            ch.slots[slot] =
                Some(Delivery { num, id, offset: start, recipient: recipient.clone() });
            let line =
                format!("starting delivery {num}: msg {id} to {} {}", ch.name, safe(&recipient));
            self.log.line(&line);
            self.status();
            return;
        }
    }

    /// End pass `pi` if it has read everything and nothing is outstanding.
    fn maybe_finish(&mut self, c: usize, pi: usize) {
        let pass = &self.chans[c].passes[pi];
        if !pass.eof || pass.outstanding > 0 {
            return;
        }
        let pass = self.chans[c].passes.swap_remove(pi);
        self.chans[c].active.remove(&pass.id);
        let id = pass.id;
        let file_path = path(chan_dir(c), id);
        if pass.undone {
            let t = UNIX_EPOCH + Duration::from_secs(pass.next.max(0) as u64);
            if let Err(e) = pass.file.set_modified(t) {
                self.log.line(&format!("warning: unable to utime {file_path}: {e}"));
            }
            self.chans[c].queue.push(Reverse((pass.next, id)));
            return;
        }
        drop(pass);
        if let Err(e) = fs::remove_file(&file_path) {
            if e.kind() != io::ErrorKind::NotFound {
                self.log.line(&format!("warning: unable to unlink {file_path}: {e}"));
                self.chans[c].queue.push(Reverse((unix_now() + TROUBLE, id)));
                return;
            }
        }
        let other = path(chan_dir(1 - c), id);
        if !Path::new(&other).exists() {
            self.finish.waiting().push(0, id);
        }
    }

    fn read_reports(&mut self, c: usize) -> Result<(), String> {
        let mut buf = [0u8; 16384];
        let n = match (&self.chans[c].from).read(&mut buf) {
            Ok(0) => {
                return Err(format!("oh no! lost the {} spawn connection", self.chans[c].name))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("reading from the {} spawner: {e}", self.chans[c].name)),
        };
        self.chans[c].reports.feed(&buf[..n]);
        while let Some(r) = self.chans[c].reports.next() {
            self.report(c, r.slot as usize, r.letter, &r.text);
        }
        Ok(())
    }

    /// Act on one delivery result (doc/INTERNALS.md, "qmail-send's cycle").
    fn report(&mut self, c: usize, slot: usize, letter: u8, text: &[u8]) {
        let Some(Some(d)) = self.chans[c].slots.get(slot) else {
            self.log
                .line(&format!("warning: report for a free slot {slot} of {}", self.chans[c].name));
            return;
        };
        let (num, id, offset) = (d.num, d.id, d.offset);
        if letter == b'L' {
            self.log.line(&format!("delivery {num}: log: {}", safe(text)));
            return;
        }
        let d = self.chans[c].slots[slot].take().expect("checked above");
        let Some(pi) = self.chans[c].passes.iter().position(|p| p.id == id) else { return };
        let expired = self.chans[c].passes[pi].expired;
        let mut letter = letter;
        let mut text = text.to_vec();
        if !matches!(letter, b'K' | b'Z' | b'D') {
            self.log.line(&format!("delivery {num}: report mangled, will defer"));
            letter = b'Z';
        }
        if letter == b'Z' && expired {
            letter = b'D';
            if !text.ends_with(b"\n") && !text.is_empty() {
                text.push(b'\n');
            }
            text.extend_from_slice(
                b"I'm not going to try again; this message has been in the queue too long.\n",
            );
        }
        match letter {
            b'K' => {
                self.log.line(&format!("delivery {num}: success: {}", safe(&text)));
                self.mark_done(c, pi, offset);
            }
            b'Z' => {
                self.log.line(&format!("delivery {num}: deferral: {}", safe(&text)));
                self.chans[c].passes[pi].undone = true;
            }
            _ => {
                self.log.line(&format!("delivery {num}: failure: {}", safe(&text)));
                let rcpt = self.rewriter.strip_prefix(&d.recipient);
                match bounce::append(Path::new(&format!("bounce/{id}")), &rcpt, &text) {
                    Ok(()) => self.mark_done(c, pi, offset),
                    Err(e) => {
                        self.log.line(&format!("warning: unable to append to bounce/{id}: {e}"));
                        self.chans[c].passes[pi].undone = true;
                    }
                }
            }
        }
        self.chans[c].passes[pi].outstanding -= 1;
        self.maybe_finish(c, pi);
        self.status();
    }

    /// Overwrite the record's `T` with `D` (no fsync: a lost mark only repeats a delivery).
    fn mark_done(&mut self, c: usize, pi: usize, offset: u64) {
        let pass = &mut self.chans[c].passes[pi];
        if let Err(e) = pass.file.write_at(b"D", offset) {
            pass.undone = true;
            let id = pass.id;
            self.log.line(&format!("warning: unable to mark a recipient of msg {id} done: {e}"));
        }
    }

    /// Schedule the messages qmail-todo has handed over.
    fn read_todo(&mut self) -> Result<(), String> {
        for (channels, id) in self.todo.read(&mut self.log, self.exitasap)? {
            let now = unix_now();
            let due = Reverse((now, id));
            match channels {
                Channels::Local => self.chans[0].queue.push(due),
                Channels::Remote => self.chans[1].queue.push(due),
                Channels::Both => {
                    self.chans[0].queue.push(due);
                    self.chans[1].queue.push(due);
                }
                Channels::Neither => self.finish.waiting().push(now, id),
            }
        }
        Ok(())
    }
}

/// The VERP sender rewrite (doc/qmail-send.8, "Bounces"): `P@H-@[]` with recipient `box@rhost` is
/// sent as `Pbox=rhost@H`.
fn verp(sender: &[u8], recipient: &[u8]) -> Vec<u8> {
    let Some(base) = sender.strip_suffix(b"-@[]") else { return sender.to_vec() };
    let (p, Some(h)) = qmail::address::split(base) else { return sender.to_vec() };
    let mut out = p.to_vec();
    let (rbox, rhost) = qmail::address::split(recipient);
    out.extend_from_slice(rbox);
    if let Some(rhost) = rhost {
        out.push(b'=');
        out.extend_from_slice(rhost);
    }
    out.push(b'@');
    out.extend_from_slice(h);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule() {
        assert_eq!(isqrt(0), 0);
        assert_eq!(isqrt(99), 9);
        assert_eq!(isqrt(100), 10);
        assert_eq!(isqrt(i64::MAX), 3_037_000_499);
        // local: birth + 100, 400, 900 ...; remote: birth + 400, 1600, 3600 ...
        assert_eq!(next_retry(1000, 1000, 10), 1100);
        assert_eq!(next_retry(1000, 1100, 10), 1000 + 400);
        assert_eq!(next_retry(1000, 1400, 10), 1000 + 900);
        assert_eq!(next_retry(1000, 1000, 20), 1400);
        assert_eq!(next_retry(1000, 1400, 20), 1000 + 1600);
        // a birth in the future counts as age 0
        assert_eq!(next_retry(5000, 1000, 10), 5100);
    }

    #[test]
    fn verp_rewrite() {
        assert_eq!(verp(b"list-@host-@[]", b"box@rhost"), b"list-box=rhost@host");
        assert_eq!(verp(b"a@b", b"c@d"), b"a@b");
        assert_eq!(verp(b"", b"c@d"), b"");
    }
}
