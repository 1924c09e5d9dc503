//! spawner: the engine shared by qmail-lspawn and qmail-rspawn (upstream's `spawn.c`;
//! doc/INTERNALS.md, "The spawn protocol").
//!
//! [`serve`] writes the handshake (the slot limit [`LIMIT`] as 2 bytes LE) on stdout, reads
//! commands from stdin with [`CommandDecoder`], checks each ([`check`], then
//! [`open_message`]) and hands a good one to the program's [`Deliverer`] on a thread of its
//! own, so deliveries run in parallel. Every report goes out through the main loop, which owns
//! stdout and the table of busy slots: a slot is marked free when its report is queued, and
//! the queued reports are written together before the loop waits for the next event (so
//! qmail-send reads a burst of them at one wake-up); qmail-send reuses a slot only after
//! reading its report, so a command reusing a slot is never refused as busy, and a
//! delivery's report is written exactly once. The reload command (slot [`RELOAD`]) and SIGHUP call
//! [`Deliverer::reload`] and are not answered. At end of input the running deliveries finish
//! and their reports are written before [`serve`] returns.
//!
//! The process must have entered `queue/mess` first ([`enter_queue`]): message paths in
//! commands are relative to it.
//!
//! Security: the message path is digits and `/` only (so it cannot leave `queue/mess`), is
//! opened without following a symbolic link and without blocking, and must be a regular file
//! with the same owner as the `queue` directory (upstream: owned by qmailq; comparing with the
//! queue's owner lets a single-user installation work). Child output is collected up to a
//! bound, the rest read and dropped.

use crate::exit::Outcome;
use crate::parked::Parked;
use crate::spawn::{Command, CommandDecoder, Report, LIMIT, MAX_MESSAGE, RELOAD};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// What a spawner program does with a checked command.
pub trait Deliverer: Send + Sync + 'static {
    /// Carry out one delivery (on a thread of its own) and say how it went.
    fn deliver(&self, delivery: Delivery) -> Outcome;

    /// Re-read the configuration: the reload command or SIGHUP.
    fn reload(&self) {}
}

/// A command that passed every check, with its message file open.
#[derive(Debug)]
pub struct Delivery {
    pub slot: u16,
    /// The message, opened read-only, positioned at its start.
    pub message: File,
    pub sender: Vec<u8>,
    /// Contains an `@`.
    pub recipient: Vec<u8>,
}

/// Enter `home/queue/mess`; the uid owning `home/queue`, which message files must have.
pub fn enter_queue(home: &Path) -> io::Result<u32> {
    let queue = home.join("queue");
    let owner = fs::metadata(&queue)?.uid();
    std::env::set_current_dir(queue.join("mess"))?;
    Ok(owner)
}

/// The checks (doc/INTERNALS.md, "The spawn protocol") that need no file: slot in range and free,
/// message path well formed, recipient with an `@`. `busy` tells whether the slot is taken.
pub fn check(cmd: &Command, busy: bool) -> Result<(), Outcome> {
    if cmd.slot >= LIMIT {
        return Err(Outcome::temp("Internal error: delivery number out of range. (#4.3.5)\n"));
    }
    if busy {
        return Err(Outcome::temp("Internal error: delivery number in use. (#4.3.5)\n"));
    }
    let m = &cmd.message;
    if m.is_empty() {
        return Err(Outcome::perm("Internal error: message id too short. (#5.3.5)\n"));
    }
    if m.len() > MAX_MESSAGE {
        return Err(Outcome::perm("Internal error: message id too long. (#5.3.5)\n"));
    }
    if m[0] == b'/' || !m.iter().all(|&b| b == b'/' || b.is_ascii_digit()) {
        return Err(Outcome::perm("Internal error: message id has nonnumerics. (#5.3.5)\n"));
    }
    if !cmd.recipient.contains(&b'@') {
        return Err(Outcome::perm("Sorry, address must include host name. (#5.1.3)\n"));
    }
    Ok(())
}

/// Open the message `path` (relative to `queue/mess`): it must open (`Z #4.3.0`), be a
/// regular file and belong to `owner` (`Z #4.3.5`).
pub fn open_message(path: &[u8], owner: u32) -> Result<File, Outcome> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|_| Outcome::temp("Unable to open the message. (#4.3.0)\n"))?;
    let meta =
        file.metadata().map_err(|_| Outcome::temp("Unable to fstat the message. (#4.3.0)\n"))?;
    if !meta.is_file() {
        return Err(Outcome::temp("Sorry, message has wrong type. (#4.3.5)\n"));
    }
    if meta.uid() != owner {
        return Err(Outcome::temp("Sorry, message has wrong owner. (#4.3.5)\n"));
    }
    Ok(file)
}

/// Why [`serve`] stopped early.
#[derive(Debug)]
pub enum ServeError {
    /// stdout is gone or failed: qmail-send cannot hear us.
    Write(io::Error),
    /// stdin failed.
    Read(io::Error),
    /// A command field exceeded its limit: the command stream cannot be trusted.
    Mangled,
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Write(e) => write!(f, "unable to write a report: {e}"),
            ServeError::Read(e) => write!(f, "unable to read commands: {e}"),
            ServeError::Mangled => f.write_str("command stream mangled (a field is too long)"),
        }
    }
}

impl std::error::Error for ServeError {}

enum Event {
    Command(Command),
    InputEnd(Result<(), ServeError>),
    Done(u16, Outcome),
    Hangup,
}

/// Run the spawner on stdin/stdout until end of input (see the module comment). On
/// [`ServeError::Read`] and [`ServeError::Mangled`] the running deliveries are still waited
/// for and reported first.
pub fn serve<D: Deliverer>(deliverer: Arc<D>, queue_owner: u32) -> Result<(), ServeError> {
    let (tx, rx) = mpsc::channel();
    watch_hangup(tx.clone());
    let mut out = io::stdout().lock();
    out.write_all(&LIMIT.to_le_bytes()).and_then(|()| out.flush()).map_err(ServeError::Write)?;
    {
        let tx = tx.clone();
        std::thread::spawn(move || read_commands(io::stdin(), &tx));
    }
    let mut busy = vec![false; usize::from(LIMIT)];
    let mut running = 0usize;
    // a delivery's thread parks for the next delivery instead of ending (doc/INTERNALS.md,
    // "Parked threads"); they end with this function
    let parked: Arc<Parked<Delivery>> = Arc::new(Parked::new());
    let _close = Close(&parked);
    let mut ended: Option<Result<(), ServeError>> = None;
    // reports wait here while more events are at hand, and go out together before the loop
    // waits for the next: qmail-send reads a batch's reports at one wake-up
    let mut reports = Vec::new();
    let send = |reports: &mut Vec<u8>, slot: u16, outcome: Outcome| {
        let report = Report { slot, letter: outcome.letter(), text: outcome.into_text() };
        reports.extend_from_slice(&report.encode());
    };
    let mut flush = |reports: &mut Vec<u8>| -> Result<(), ServeError> {
        if reports.is_empty() {
            return Ok(());
        }
        let written = out.write_all(reports).and_then(|()| out.flush());
        reports.clear();
        written.map_err(ServeError::Write)
    };
    loop {
        if running == 0 {
            if let Some(end) = ended {
                flush(&mut reports)?;
                return end;
            }
        }
        let event = match rx.try_recv() {
            Ok(event) => event,
            Err(_) => {
                flush(&mut reports)?;
                // the hangup watcher holds a sender for ever: recv cannot fail
                let Ok(event) = rx.recv() else { return ended.unwrap_or(Ok(())) };
                event
            }
        };
        match event {
            Event::Command(cmd) if cmd.slot == RELOAD => deliverer.reload(),
            Event::Command(cmd) => {
                let slot = cmd.slot;
                let taken = busy.get(usize::from(slot)).copied().unwrap_or(false);
                let checked = check(&cmd, taken)
                    .and_then(|()| open_message(&cmd.message, queue_owner))
                    .map(|message| Delivery {
                        slot,
                        message,
                        sender: cmd.sender,
                        recipient: cmd.recipient,
                    });
                let delivery = match checked {
                    Ok(delivery) => delivery,
                    Err(outcome) => {
                        send(&mut reports, slot, outcome);
                        continue;
                    }
                };
                let started = match parked.hand(delivery) {
                    Ok(()) => Ok(()),
                    Err(delivery) => {
                        let (d, tx, pool) =
                            (Arc::clone(&deliverer), tx.clone(), Arc::clone(&parked));
                        std::thread::Builder::new()
                            .name("delivery".into())
                            .spawn(move || pool.serve(delivery, |job| run_delivery(&*d, job, &tx)))
                            .map(drop)
                    }
                };
                match started {
                    Ok(_) => {
                        // check() made sure the slot is in range
                        busy[usize::from(slot)] = true;
                        running += 1;
                    }
                    Err(_) => send(
                        &mut reports,
                        slot,
                        Outcome::temp("Unable to start a delivery thread. (#4.3.0)\n"),
                    ),
                }
            }
            Event::Done(slot, outcome) => {
                send(&mut reports, slot, outcome);
                busy[usize::from(slot)] = false;
                running -= 1;
            }
            Event::InputEnd(end) => ended = Some(end),
            Event::Hangup => deliverer.reload(),
        }
    }
}

/// Closes the pool of parked delivery threads when [`serve`] returns.
struct Close<'a>(&'a Parked<Delivery>);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One delivery, on its own thread; a panic in the deliverer becomes a temporary failure, so
/// the slot is always reported and freed.
fn run_delivery<D: Deliverer + ?Sized>(d: &D, delivery: Delivery, tx: &Sender<Event>) {
    let slot = delivery.slot;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.deliver(delivery)))
        .unwrap_or_else(|_| Outcome::temp("Internal error in the spawner. (#4.3.0)\n"));
    let _ = tx.send(Event::Done(slot, outcome));
}

/// Decode commands from `input` until its end.
fn read_commands(mut input: impl Read, tx: &Sender<Event>) {
    let mut decoder = CommandDecoder::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = match crate::timeoutio::read(&mut input, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(ServeError::Read(e)),
        };
        decoder.feed(&buf[..n]);
        loop {
            match decoder.next() {
                Ok(Some(cmd)) => {
                    if tx.send(Event::Command(cmd)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = tx.send(Event::InputEnd(Err(ServeError::Mangled)));
                    return;
                }
            }
        }
    };
    let _ = tx.send(Event::InputEnd(end));
}

/// Turn SIGHUP into [`Event::Hangup`]: block it in this thread (every thread started later
/// inherits the mask; `std::process::Command` resets it in children) and wait for it on a
/// thread of its own.
fn watch_hangup(tx: Sender<Event>) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        while let Ok(_signal) = set.wait() {
            if tx.send(Event::Hangup).is_err() {
                return;
            }
        }
    });
}

/// What a child said and how it ended.
#[derive(Debug)]
pub struct Collected {
    pub status: ExitStatus,
    /// At most the limit given to [`run_child`].
    pub output: Vec<u8>,
    /// The child wrote more than the limit; the rest was read and dropped.
    pub cut: bool,
}

/// Run `cmd` with stdout and stderr on one pipe, collect at most `limit` bytes of what it
/// writes (reading on to end of file), and wait for it. stdin is left to the caller. Err when
/// the child cannot be started.
pub fn run_child(mut cmd: std::process::Command, limit: usize) -> io::Result<Collected> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let spawned = cmd.spawn();
    // the Command holds the write end: drop it, or the read below never sees end of file
    drop(cmd);
    let mut child = spawned?;
    let (output, cut) = read_bounded(File::from(reader), limit);
    let status = child.wait()?;
    Ok(Collected { status, output, cut })
}

/// Read `input` to its end (or an error), keeping the first `limit` bytes.
fn read_bounded(mut input: impl Read, limit: usize) -> (Vec<u8>, bool) {
    let mut output = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 4096];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = limit - output.len();
                if n > room {
                    cut = true;
                }
                output.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (output, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(slot: u16, message: &str, recipient: &str) -> Command {
        Command {
            slot,
            message: message.into(),
            sender: b"a@b".to_vec(),
            recipient: recipient.into(),
        }
    }

    #[test]
    fn command_checks() {
        let long = "1".repeat(101);
        let fits = "1".repeat(100);
        type Row<'a> = (Command, bool, Option<(u8, &'a str)>);
        let rows: &[Row] = &[
            (cmd(0, "20/457", "u@d"), false, None),
            (cmd(499, "1/1", "@"), false, None),
            (cmd(1, &fits, "u@d"), false, None),
            (cmd(500, "20/457", "u@d"), false, Some((b'Z', "#4.3.5"))),
            (cmd(u16::MAX, "20/457", "u@d"), false, Some((b'Z', "#4.3.5"))),
            (cmd(3, "20/457", "u@d"), true, Some((b'Z', "in use"))),
            (cmd(3, "", "u@d"), false, Some((b'D', "#5.3.5"))),
            (cmd(3, &long, "u@d"), false, Some((b'D', "#5.3.5"))),
            (cmd(3, "/20/457", "u@d"), false, Some((b'D', "#5.3.5"))),
            (cmd(3, "20/../457", "u@d"), false, Some((b'D', "#5.3.5"))),
            (cmd(3, "20/45x", "u@d"), false, Some((b'D', "#5.3.5"))),
            (cmd(3, "20/457", "ud"), false, Some((b'D', "#5.1.3"))),
            (cmd(3, "20/457", ""), false, Some((b'D', "#5.1.3"))),
        ];
        for (c, busy, want) in rows {
            let got = check(c, *busy);
            match want {
                None => assert_eq!(got, Ok(()), "{c:?}"),
                Some((letter, needle)) => {
                    let o = got.expect_err("refused");
                    assert_eq!(o.letter(), *letter, "{c:?}");
                    assert!(String::from_utf8_lossy(o.text()).contains(needle), "{c:?}: {o:?}");
                }
            }
        }
    }

    #[test]
    fn output_is_bounded() {
        let big = vec![b'x'; 100_000];
        let (out, cut) = read_bounded(&big[..], 3000);
        assert_eq!((out.len(), cut), (3000, true));
        let (out, cut) = read_bounded(&big[..3000], 3000);
        assert_eq!((out.len(), cut), (3000, false));
        let (out, cut) = read_bounded(&b""[..], 0);
        assert_eq!((out.len(), cut), (0, false));
    }

    #[test]
    fn children_are_collected() {
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]).stdin(std::process::Stdio::null());
        let got = run_child(c, 100).unwrap();
        assert_eq!(got.status.code(), Some(3));
        assert_eq!(got.output, b"out\nerr\n");
        assert!(!got.cut);
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", "head -c 50000 /dev/zero"]).stdin(std::process::Stdio::null());
        let got = run_child(c, 10).unwrap();
        assert_eq!((got.output.len(), got.cut, got.status.success()), (10, true, true));
        assert!(run_child(std::process::Command::new("/nonexistent/program"), 10).is_err());
    }

    #[test]
    fn messages_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("qmail-spawner-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("1")).unwrap();
        fs::write(dir.join("1/1"), b"hello").unwrap();
        std::os::unix::fs::symlink(dir.join("1/1"), dir.join("1/2")).unwrap();
        let me = fs::metadata(dir.join("1/1")).unwrap().uid();
        let p = |s: &str| dir.join(s).into_os_string().into_encoded_bytes();
        assert!(open_message(&p("1/1"), me).is_ok());
        let letter = |r: Result<File, Outcome>| r.expect_err("refused").letter();
        assert_eq!(letter(open_message(&p("1/1"), me.wrapping_add(1))), b'Z');
        assert_eq!(letter(open_message(&p("1/9"), me)), b'Z');
        assert_eq!(letter(open_message(&p("1"), me)), b'Z');
        assert_eq!(letter(open_message(&p("1/2"), me)), b'Z', "symbolic links are refused");
        fs::set_permissions(dir.join("1/1"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
