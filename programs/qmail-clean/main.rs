//! qmail-clean: remove a message's queue files on request (doc/qmail-clean.8).
//!
//! Run by qmail-start as qmailq, one for qmail-send and one for qmail-todo, with requests on
//! stdin and replies on stdout; no arguments. It works in `QMAILHOME/queue`.
//!
//! - Requests and replies: [`qmail::clean`] (the protocol, shared with the clients). A file
//!   that is already gone is fine; the replies to the requests one read brought are written
//!   together, as soon as they are carried out.
//! - At start, and after a request once a minute has passed since the last time, it also
//!   removes `pid/*` files not accessed for 36 hours (left behind by a qmail-queue that died).
//!   Upstream sweeps every 30 requests; `pid/` here also holds the pool of recycled files,
//!   up to thousands of names read on each sweep.
//!
//! Exit codes: 0 at end of input; 111 when it cannot enter the queue, read its input or write
//! a reply.
//!
//! Security: it only ever unlinks (or renames into the pool of recycled files: an envelope to
//! `pid/free.<inode>`, a message file to `pid/free.m<inode>` only when nobody else has it
//! open, zeroed first) names it builds itself from a decimal id, so a request can name no
//! other file. A request longer than the
//! limit is skipped to its `\0` without being stored.

#![forbid(unsafe_code)]

use qmail::clean::{Request, Requests};
use qmail::queue::pool;
use qmail::{auto, exit};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// A `pid/` file not accessed for this long is debris (upstream's OSSIFIED).
const OSSIFIED: Duration = Duration::from_secs(129_600);
/// The least time between two sweeps of `pid/` (after start, when a request comes).
const SWEEP_GAP: Duration = Duration::from_secs(60);

/// [`SWEEP_GAP`]; in a build for the tests, `QMAILCLEAN_TEST_SWEEPGAP` (milliseconds) when set.
#[cfg(feature = "test-hooks")]
fn sweep_gap() -> Duration {
    std::env::var("QMAILCLEAN_TEST_SWEEPGAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SWEEP_GAP, Duration::from_millis)
}

#[cfg(not(feature = "test-hooks"))]
fn sweep_gap() -> Duration {
    SWEEP_GAP
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            qmail::log::line(format_args!("qmail-clean: fatal: {why}"));
            ExitCode::from(exit::TEMP)
        }
    }
}

fn run() -> Result<(), String> {
    // a lease taken on a message file (pool::Giver::give_message) is broken by anybody who
    // opens it meanwhile, with SIGIO to the holder: blocked, never delivered
    nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGIO)
        .thread_block()
        .map_err(|e| format!("unable to block SIGIO: {e}"))?;
    let queue = auto::home().join("queue");
    std::env::set_current_dir(&queue)
        .map_err(|e| format!("unable to switch to {}: {e}", queue.display()))?;
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut requests = Requests::default();
    let mut pool = pool::Giver::new(pool::QUEUE);
    sweep_pid(Path::new("pid"), SystemTime::now(), true);
    let mut swept = Instant::now();
    let gap = sweep_gap();
    let mut buf = [0u8; 4096];
    loop {
        let n = match qmail::timeoutio::read(&mut input, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) => return Err(format!("unable to read requests: {e}")),
        };
        // the replies to every request this read brought, written together (a client that
        // sends a batch at once reads its replies at one wake-up)
        let mut replies = Vec::new();
        for &byte in &buf[..n] {
            let Some(request) = requests.push(byte) else { continue };
            replies.push(match request {
                Some(req) => carry_out(req, &mut pool),
                None => b'x',
            });
            if swept.elapsed() >= gap {
                sweep_pid(Path::new("pid"), SystemTime::now(), false);
                swept = Instant::now();
            }
        }
        if !replies.is_empty() {
            output
                .write_all(&replies)
                .and_then(|()| output.flush())
                .map_err(|e| format!("unable to write a reply: {e}"))?;
        }
    }
}

/// Unlink a request's files, the last name of the inode into the pool of recycled files while
/// it has room (doc/INTERNALS.md, "Recycled queue files"); the reply byte.
///
/// A message file (`mess/S/id`) goes to the pool only when nobody else has it open and
/// nobody else may open it ([`pool::Giver::give_message`]): a delivery program gets the
/// message file's descriptor and may keep it open after the delivery, and must never see
/// another message through it.
fn carry_out(request: Request, pool: &mut pool::Giver) -> u8 {
    let message = matches!(request, Request::Foop(_));
    let [first, last] = request.files();
    let unlink = qmail::file::remove_if_present;
    let done =
        unlink(&first)
            .and_then(|()| if message { pool.give_message(&last) } else { pool.give(&last) });
    match done {
        Ok(()) => b'+',
        Err(_) => b'!',
    }
}

/// Remove the files in `pid/` last accessed more than [`OSSIFIED`] before `now`. Failures
/// are left for the next sweep. The recycled files there (up to thousands) are looked at only
/// when `pool` (at start): the later sweeps would otherwise stat them all each time.
fn sweep_pid(dir: &Path, now: SystemTime, pool: bool) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !pool && pool::is_pooled(entry.file_name().as_bytes()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let old =
            meta.accessed().ok().and_then(|a| a.checked_add(OSSIFIED)).is_some_and(|t| t < now);
        if old {
            let _ = fs::remove_file(&path);
        }
    }
}
