//! qmail-tcpsrv's workers (`-W`, doc/qmail-tcpsrv.8, WORKERS): long-lived processes of the
//! program that serve one connection after another, handed over by [`qmail::handoff`].
//!
//! A worker is started when a connection finds none idle, so there are never more than `-c`.
//! Idle workers form a stack: the one that finished last serves next (its caches are warm),
//! and the ones at the bottom, beyond [`KEEP`], end after [`IDLE`] without a session. A worker
//! ends after `-n` sessions. Ending a worker is closing its socket: it sees end of file and
//! exits; it is then reaped. A worker that dies — during a session (the client sees the close,
//! and the `end` line the signal) or idle (it does not acknowledge the next hand-over, and the
//! connection goes to another worker) — is reaped and replaced by the next start.

use crate::args::Options;
use qmail::handoff;
use qmail::tcprules::EnvChange;
use std::ffi::OsString;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle workers that stay however long they idle (the top of the stack).
pub const KEEP: usize = 2;
/// How long the other idle workers live without a session.
pub const IDLE: Duration = Duration::from_secs(60);
/// How often idle workers are looked at (ended after [`IDLE`], reaped when dead).
const SWEEP: Duration = Duration::from_secs(5);

/// One worker process and its end of the socket pair.
pub struct Worker {
    child: Child,
    socket: UnixStream,
    served: u32,
    since: Instant,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// End it: close its socket (it exits at end of file), and reap it. For a worker that
    /// serves no session, so the wait is short.
    fn retire(self) -> i32 {
        let Worker { mut child, socket, .. } = self;
        drop(socket);
        child.wait().map(|s| s.into_raw()).unwrap_or(0)
    }

    /// A worker that failed: kill it and reap it; its raw wait status.
    fn discard(mut self) -> i32 {
        let _ = self.child.kill();
        self.child.wait().map(|s| s.into_raw()).unwrap_or(0)
    }
}

/// The workers of one qmail-tcpsrv.
pub struct Pool {
    program: OsString,
    args: Vec<OsString>,
    /// sessions per worker; 0 = no limit
    uses: u32,
    /// idle workers, the last to finish on top
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    pub fn new(opts: &Options) -> Pool {
        Pool {
            program: opts.program.clone(),
            args: opts.args.clone(),
            uses: opts.uses,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Hand `stream` with the session's `env` to an idle worker, or to a new one; the
    /// worker now serving it. Our copy of the socket is closed when this returns.
    pub fn hand(&self, stream: TcpStream, env: &[EnvChange]) -> Result<Worker, String> {
        let record = handoff::Record::new(env)?;
        loop {
            let (worker, fresh) = match self.pop() {
                Some(idle) => (idle, false),
                None => (self.start()?, true),
            };
            let Err(e) = handoff::send(&worker.socket, &stream, &record) else {
                return Ok(worker);
            };
            // it died while idle (or hangs): reaped, and the next one is asked; it has not
            // spoken to the client
            let pid = worker.pid();
            let status = worker.discard();
            let why = format!("worker {pid} did not take the connection ({e}), status {status}");
            if fresh {
                return Err(why);
            }
            crate::log(&format!("warning: {why}"));
        }
    }

    /// Wait for the end of the session `worker` serves: the raw wait status a program run
    /// for the connection would have left (the exit code times 256), or the worker's own
    /// when it died. The worker goes back on the stack, or ends after its last session.
    pub fn finish(&self, mut worker: Worker) -> i32 {
        let Some(code) = handoff::answer_of(&worker.socket) else {
            return worker.discard();
        };
        worker.served += 1;
        if self.uses > 0 && worker.served >= self.uses {
            worker.retire();
        } else {
            worker.since = Instant::now();
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        }
        i32::from(code) << 8
    }

    fn pop(&self) -> Option<Worker> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// A new worker: the program with its arguments, [`handoff::WORKER_ENV`] set, its end
    /// of a socket pair on fd 0 (ours is close-on-exec, so no other worker holds it).
    fn start(&self) -> Result<Worker, String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("unable to make a socket pair: {e}"))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env(handoff::WORKER_ENV, "1");
        cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
        let spawned = cmd.spawn();
        // the Command holds the worker's end: close ours, or its end of file never comes
        drop(cmd);
        let child = spawned
            .map_err(|e| format!("unable to run {}: {e}", self.program.to_string_lossy()))?;
        Ok(Worker { child, socket: ours, served: 0, since: Instant::now() })
    }

    /// Every [`SWEEP`]: end the idle workers below the top [`KEEP`] that have idled longer
    /// than [`IDLE`], and reap the ones that died while idle. Runs for ever (a thread).
    pub fn sweep(&self) -> ! {
        loop {
            std::thread::sleep(SWEEP);
            let (ending, dead) = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let mut dead = Vec::new();
                let mut k = 0;
                while k < idle.len() {
                    if matches!(idle[k].child.try_wait(), Ok(Some(_))) {
                        dead.push(idle.remove(k));
                    } else {
                        k += 1;
                    }
                }
                let stale = stale(idle.iter().map(|w| w.since), Instant::now());
                (idle.drain(..stale).collect::<Vec<_>>(), dead)
            };
            for worker in ending {
                worker.retire();
            }
            for worker in dead {
                let pid = worker.pid();
                let status = worker.discard();
                crate::log(&format!("warning: worker {pid} ended while idle, status {status}"));
            }
        }
    }
}

/// How many idle workers, from the bottom of the stack (`since`, oldest first), are to end
/// `now`: those idle longer than [`IDLE`], never one of the top [`KEEP`].
fn stale(since: impl ExactSizeIterator<Item = Instant>, now: Instant) -> usize {
    let candidates = since.len().saturating_sub(KEEP);
    since.take(candidates).take_while(|&t| now.saturating_duration_since(t) > IDLE).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_idle_workers_below_the_top_end() {
        let now = Instant::now() + IDLE * 10;
        let old = now - IDLE * 2;
        let new = now - Duration::from_secs(1);
        assert_eq!(stale([old, old, old, new].into_iter(), now), 2);
        assert_eq!(stale([old, new, old, old].into_iter(), now), 1);
        assert_eq!(stale([old, old].into_iter(), now), 0);
        assert_eq!(stale([].into_iter(), now), 0);
        assert_eq!(stale([new, old, old].into_iter(), now), 0);
    }
}
