//! qmail-send's delivery channels, local (qmail-lspawn) and remote (qmail-rspawn)
//! (doc/INTERNALS.md, "qmail-send's cycle"): for each, the pipes to its spawner and the slots,
//! the passes over its channel files and the messages waiting for their next attempt. A
//! permanent failure is appended to `bounce/id` here; a message with no channel file left
//! goes to completion. Losing a spawner is fatal (doc/INTERNALS.md, "Lost partners").

use crate::bounce;
use crate::due::{Due, TROUBLE};
use crate::log::Log;
use nix::poll::{PollFd, PollFlags};
use qmail::date822::unix_now;
use qmail::queue::pool::{self, Giver};
use qmail::queue::records::{self, Record};
use qmail::queue::split_name;
use qmail::rewrite::Rewriter;
use qmail::safe::log as safe;
use qmail::spawn::{Command, Report, ReportDecoder};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::{Index, IndexMut};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// A channel: `local/`, delivered by qmail-lspawn, or `remote/`, by qmail-rspawn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Chan {
    Local,
    Remote,
}

impl Chan {
    pub const ALL: [Chan; 2] = [Chan::Local, Chan::Remote];

    /// Its directory in the queue, also its name in the log.
    pub fn dir(self) -> &'static str {
        match self {
            Chan::Local => "local",
            Chan::Remote => "remote",
        }
    }

    pub fn other(self) -> Chan {
        match self {
            Chan::Local => Chan::Remote,
            Chan::Remote => Chan::Local,
        }
    }

    /// Message `id`'s file on this channel.
    pub fn path(self, id: u64) -> String {
        split_name(self.dir(), id)
    }

    /// The `C` of the retry formula.
    fn c(self) -> i64 {
        match self {
            Chan::Local => 10,
            Chan::Remote => 20,
        }
    }
}

/// Both channels and the deliveries they run.
pub struct Channels {
    chans: [Channel; 2],
    /// `queuelifetime`
    lifetime: i64,
    /// the number of the last delivery started
    delnum: u64,
    /// after TERM: start no more deliveries
    exitasap: bool,
    /// finished channel files go there, for qmail-todo to reuse
    pool: Giver,
}

/// One channel's spawner and work.
struct Channel {
    to: File,
    from: File,
    outbox: Vec<u8>,
    reports: ReportDecoder,
    slots: Vec<Option<Delivery>>,
    passes: Vec<Pass>,
    /// messages waiting for their next attempt
    queue: Due,
    /// messages with a pass open
    active: HashSet<u64>,
}

impl Index<Chan> for [Channel; 2] {
    type Output = Channel;
    fn index(&self, c: Chan) -> &Channel {
        &self[c as usize]
    }
}

impl IndexMut<Chan> for [Channel; 2] {
    fn index_mut(&mut self, c: Chan) -> &mut Channel {
        &mut self[c as usize]
    }
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

impl Channels {
    /// `spawners`: for local, then remote, the pipe commands go to, the pipe reports come
    /// from, and the number of slots.
    pub fn new(spawners: [(File, File, usize); 2], lifetime: i64) -> Self {
        let chan = |(to, from, n): (File, File, usize)| {
            qmail::timeoutio::set_nonblocking(&to);
            Channel {
                to,
                from,
                outbox: Vec::new(),
                reports: ReportDecoder::new(),
                slots: (0..n).map(|_| None).collect(),
                passes: Vec::new(),
                queue: Due::default(),
                active: HashSet::new(),
            }
        };
        let pool = Giver::new(pool::SEND);
        Channels { chans: spawners.map(chan), lifetime, delnum: 0, exitasap: false, pool }
    }

    /// Attempt message `id` on channel `c` at `at`.
    pub fn queue(&mut self, c: Chan, at: i64, id: u64) {
        self.chans[c].queue.push(at, id);
    }

    /// Make every queued message due now (ALRM).
    pub fn retry_all(&mut self, now: i64) {
        for c in &mut self.chans {
            c.queue.all_at(now);
        }
    }

    /// Tell qmail-lspawn to re-read its control files (HUP).
    pub fn reload(&mut self) {
        self.chans[Chan::Local].outbox.extend(Command::reload().encode());
    }

    /// Start no more deliveries (TERM).
    pub fn exit_asap(&mut self) {
        self.exitasap = true;
    }

    pub fn exiting(&self) -> bool {
        self.exitasap
    }

    /// No delivery running and no command waiting to be sent.
    pub fn idle(&self) -> bool {
        self.chans.iter().all(|c| c.slots.iter().all(Option::is_none) && c.outbox.is_empty())
    }

    /// The earliest due time of a channel with a free slot.
    pub fn next_due(&self) -> Option<i64> {
        self.chans
            .iter()
            .filter(|c| c.slots.iter().any(Option::is_none))
            .filter_map(|c| c.queue.next())
            .min()
    }

    pub fn status(&self, log: &mut Log) {
        let busy = |c: &Channel| c.slots.iter().filter(|s| s.is_some()).count();
        let [l, r] = &self.chans;
        log.line(&format!(
            "status: local {}/{} remote {}/{}{}",
            busy(l),
            l.slots.len(),
            busy(r),
            r.slots.len(),
            if self.exitasap { " exitasap" } else { "" }
        ));
    }

    /// Channel `c`'s reports, for poll.
    pub fn poll_reports(&self, c: Chan) -> PollFd<'_> {
        PollFd::new(self.chans[c].from.as_fd(), PollFlags::POLLIN)
    }

    /// Channel `c`'s commands, for poll: writable is of interest while commands wait.
    pub fn poll_commands(&self, c: Chan) -> PollFd<'_> {
        let c = &self.chans[c];
        let ev = if c.outbox.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
        PollFd::new(c.to.as_fd(), ev)
    }

    /// Write the waiting commands as far as the spawners take them.
    pub fn flush(&mut self) -> Result<(), String> {
        for c in Chan::ALL {
            let ch = &mut self.chans[c];
            while !ch.outbox.is_empty() {
                match (&ch.to).write(&ch.outbox) {
                    Ok(n) => {
                        ch.outbox.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(format!("oh no! lost the {} spawn connection: {e}", c.dir()))
                    }
                }
            }
        }
        Ok(())
    }

    /// Start deliveries while slots are free (doc/INTERNALS.md, "qmail-send's cycle"); a
    /// message whose channel files are all gone goes into `done`.
    pub fn schedule(&mut self, log: &mut Log, done: &mut Due) {
        if self.exitasap {
            return;
        }
        let now = unix_now();
        for c in Chan::ALL {
            while let Some(slot) = self.chans[c].slots.iter().position(Option::is_none) {
                // a pass with records left, else the next due message
                let pi = match self.chans[c].passes.iter().position(|p| !p.eof) {
                    Some(pi) => pi,
                    None => match self.open_next_pass(log, c, now) {
                        Some(pi) => pi,
                        None => break,
                    },
                };
                self.advance(log, done, c, pi, slot);
            }
        }
    }

    /// Open the pass of the earliest due message of channel `c`.
    fn open_next_pass(&mut self, log: &mut Log, c: Chan, now: i64) -> Option<usize> {
        loop {
            let id = self.chans[c].queue.pop(now)?;
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
                    log.line(&format!(
                        "warning: trouble opening {}: {e}; will try again later",
                        c.path(id)
                    ));
                    self.chans[c].queue.push(now + TROUBLE, id);
                }
            }
        }
    }

    fn open_pass(&self, c: Chan, id: u64, now: i64) -> io::Result<Option<Pass>> {
        let file = match OpenOptions::new().read(true).write(true).open(c.path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let info_path = split_name("info", id);
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
            next: next_retry(birth, now, c.c()),
            expired: now > birth + self.lifetime,
            sender,
        }))
    }

    /// Read the next `T` record of pass `pi` and start it in `slot`; finish the pass at EOF.
    fn advance(&mut self, log: &mut Log, done: &mut Due, c: Chan, pi: usize, slot: usize) {
        let mut rec = Vec::new();
        loop {
            let pass = &mut self.chans[c].passes[pi];
            rec.clear();
            let start = pass.offset;
            match pass.reader.read_until(0, &mut rec) {
                Ok(0) => {
                    pass.eof = true;
                    self.maybe_finish(log, done, c, pi);
                    return;
                }
                Ok(n) => pass.offset += n as u64,
                Err(e) => {
                    pass.eof = true;
                    pass.undone = true;
                    log.line(&format!("warning: trouble reading {}: {e}", c.path(pass.id)));
                    self.maybe_finish(log, done, c, pi);
                    return;
                }
            }
            if rec.last() != Some(&0) {
                pass.eof = true; // a partial record: ignore it
                self.maybe_finish(log, done, c, pi);
                return;
            }
            rec.pop();
            let Some(Record::Recipient(recipient)) = Record::parse(&rec) else {
                continue; // done (`D`) or unknown
            };
            let recipient = recipient.to_vec();
            pass.outstanding += 1;
            let id = pass.id;
            let sender = verp(&pass.sender, &recipient);
            self.delnum += 1;
            let num = self.delnum;
            let cmd = Command {
                slot: slot as u16,
                message: format!("{}/{id}", qmail::queue::split(id)).into_bytes(),
                sender,
                recipient: recipient.clone(),
            };
            let ch = &mut self.chans[c];
            ch.outbox.extend(cmd.encode());
            ch.slots[slot] =
                Some(Delivery { num, id, offset: start, recipient: recipient.clone() });
            log.line(&format!(
                "starting delivery {num}: msg {id} to {} {}",
                c.dir(),
                safe(&recipient)
            ));
            self.status(log);
            return;
        }
    }

    /// End pass `pi` if it has read everything and nothing is outstanding.
    fn maybe_finish(&mut self, log: &mut Log, done: &mut Due, c: Chan, pi: usize) {
        let pass = &self.chans[c].passes[pi];
        if !pass.eof || pass.outstanding > 0 {
            return;
        }
        let pass = self.chans[c].passes.swap_remove(pi);
        self.chans[c].active.remove(&pass.id);
        let id = pass.id;
        let file_path = c.path(id);
        if pass.undone {
            let t = UNIX_EPOCH + Duration::from_secs(pass.next.max(0) as u64);
            if let Err(e) = pass.file.set_modified(t) {
                log.line(&format!("warning: unable to utime {file_path}: {e}"));
            }
            self.chans[c].queue.push(pass.next, id);
            return;
        }
        drop(pass);
        if let Err(e) = self.pool.give(Path::new(&file_path)) {
            if e.kind() != io::ErrorKind::NotFound {
                log.line(&format!("warning: unable to unlink {file_path}: {e}"));
                self.chans[c].queue.push(unix_now() + TROUBLE, id);
                return;
            }
        }
        if !Path::new(&c.other().path(id)).exists() {
            done.push(0, id);
        }
    }

    /// Read channel `c`'s reports and act on each.
    pub fn read_reports(
        &mut self,
        log: &mut Log,
        done: &mut Due,
        rewriter: &Rewriter,
        c: Chan,
    ) -> Result<(), String> {
        let mut buf = [0u8; 16384];
        let n = match (&self.chans[c].from).read(&mut buf) {
            Ok(0) => return Err(format!("oh no! lost the {} spawn connection", c.dir())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("reading from the {} spawner: {e}", c.dir())),
        };
        self.chans[c].reports.feed(&buf[..n]);
        while let Some(r) = self.chans[c].reports.next() {
            self.report(log, done, rewriter, c, r);
        }
        Ok(())
    }

    /// Act on one delivery result (doc/INTERNALS.md, "qmail-send's cycle").
    fn report(&mut self, log: &mut Log, done: &mut Due, rewriter: &Rewriter, c: Chan, r: Report) {
        let slot = r.slot as usize;
        let Some(Some(d)) = self.chans[c].slots.get(slot) else {
            log.line(&format!("warning: report for a free slot {slot} of {}", c.dir()));
            return;
        };
        let (num, id, offset) = (d.num, d.id, d.offset);
        if r.letter == b'L' {
            log.line(&format!("delivery {num}: log: {}", safe(&r.text)));
            return;
        }
        let d = self.chans[c].slots[slot].take().expect("checked above");
        let Some(pi) = self.chans[c].passes.iter().position(|p| p.id == id) else { return };
        let expired = self.chans[c].passes[pi].expired;
        let mut letter = r.letter;
        let mut text = r.text;
        if !matches!(letter, b'K' | b'Z' | b'D') {
            log.line(&format!("delivery {num}: report mangled, will defer"));
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
                log.line(&format!("delivery {num}: success: {}", safe(&text)));
                self.mark_done(log, c, pi, offset);
            }
            b'Z' => {
                log.line(&format!("delivery {num}: deferral: {}", safe(&text)));
                self.chans[c].passes[pi].undone = true;
            }
            _ => {
                log.line(&format!("delivery {num}: failure: {}", safe(&text)));
                let rcpt = rewriter.strip_prefix(&d.recipient);
                match bounce::append(Path::new(&format!("bounce/{id}")), &rcpt, &text) {
                    Ok(()) => self.mark_done(log, c, pi, offset),
                    Err(e) => {
                        log.line(&format!("warning: unable to append to bounce/{id}: {e}"));
                        self.chans[c].passes[pi].undone = true;
                    }
                }
            }
        }
        self.chans[c].passes[pi].outstanding -= 1;
        self.maybe_finish(log, done, c, pi);
        self.status(log);
    }

    /// Overwrite the record's `T` with `D` (no fsync: a lost mark only repeats a delivery;
    /// doc/INTERNALS.md, "fsyncs per message").
    fn mark_done(&mut self, log: &mut Log, c: Chan, pi: usize, offset: u64) {
        let pass = &mut self.chans[c].passes[pi];
        if let Err(e) = pass.file.write_at(&[records::DONE], offset) {
            pass.undone = true;
            let id = pass.id;
            log.line(&format!("warning: unable to mark a recipient of msg {id} done: {e}"));
        }
    }
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
