//! Group commit: one sync for every thread waiting for one, leader and followers.
//!
//! A thread that needs its files durable calls [`Group::round`]. It needs a sync that starts
//! after its call. When no sync runs, it runs one itself at once (a lone message waits for
//! nothing but its own sync); when one runs, it waits for it to end, and then the first such
//! waiter runs the next one for all who arrived meanwhile. A failed round fails every thread
//! that counted on it (a sync error is not reported twice by the kernel).

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
pub struct Group {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// rounds started so far (the number of the latest)
    started: u64,
    /// rounds ended so far
    finished: u64,
    running: bool,
    /// the failed rounds not yet forgotten, oldest first (at most [`FAILURES_KEPT`])
    failed: std::collections::VecDeque<u64>,
    /// every round up to this one counts as failed: its record may have been dropped
    forgotten: u64,
}

/// How many failed rounds are remembered for waiters that wake late.
const FAILURES_KEPT: usize = 64;

impl State {
    /// How round `round` (ended) went. It is that round's own result, not the latest: a
    /// later round may end, failed or not, before a waiter of this one wakes, and a failure
    /// is reported by the kernel only once, so a later success proves nothing.
    fn outcome(&self, round: u64) -> io::Result<()> {
        if round <= self.forgotten || self.failed.contains(&round) {
            Err(io::Error::other("the sync of this group failed"))
        } else {
            Ok(())
        }
    }
}

impl Group {
    /// Wait for a sync that started after this call, running it (`sync`) when it is this
    /// thread's turn. `lead` is called by the thread that ran a successful round, after it:
    /// once per group (qmail-queue pulls qmail-send's trigger there).
    pub fn round(
        &self,
        sync: impl FnOnce() -> io::Result<()>,
        lead: impl FnOnce(),
    ) -> io::Result<()> {
        let mut s = self.lock();
        let target = s.started + 1;
        loop {
            if s.finished >= target {
                return s.outcome(target);
            }
            if !s.running {
                // no round runs, and the last one started before this call: lead the next
                s.started += 1;
                s.running = true;
                let round = s.started;
                drop(s);
                let mut ended = Ended { group: self, round, ok: false };
                let result = sync();
                ended.ok = result.is_ok();
                drop(ended);
                if result.is_ok() {
                    lead();
                }
                return result;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rounds run so far (for the tests).
    #[cfg(test)]
    fn rounds(&self) -> u64 {
        self.lock().finished
    }
}

/// The end of a round, also when its sync panics (then it failed).
struct Ended<'a> {
    group: &'a Group,
    round: u64,
    ok: bool,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        let mut s = self.group.lock();
        s.running = false;
        s.finished = self.round;
        if !self.ok {
            s.failed.push_back(self.round);
            if s.failed.len() > FAILURES_KEPT {
                s.forgotten = s.failed.pop_front().unwrap_or(s.forgotten);
            }
        }
        self.group.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn a_lone_caller_runs_its_own_round() {
        let g = Group::default();
        let led = AtomicU64::new(0);
        for _ in 0..3 {
            g.round(
                || Ok(()),
                || {
                    led.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
        }
        assert_eq!((g.rounds(), led.load(Ordering::SeqCst)), (3, 3));
    }

    #[test]
    fn callers_during_a_round_share_the_next() {
        let g = Group::default();
        let syncs = AtomicU64::new(0);
        // each caller's "data" is a number; a round makes every number written before it
        // started durable, and each caller checks that its own is
        let written = AtomicU64::new(0);
        let durable = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                    g.round(
                        || {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            let upto = written.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            durable.fetch_max(upto, Ordering::SeqCst);
                            Ok(())
                        },
                        || {},
                    )
                    .unwrap();
                    assert!(durable.load(Ordering::SeqCst) >= mine, "answered before its sync");
                });
            }
        });
        let n = syncs.load(Ordering::SeqCst);
        assert!(n < 32, "{n} syncs for 32 callers");
        assert_eq!(g.rounds(), n);
    }

    #[test]
    fn each_waiter_gets_its_own_rounds_result() {
        let mut s = State::default();
        // round 1 failed, 2 succeeded, 3 failed: a waiter of 2 that wakes after 3 is fine
        s.failed.extend([1, 3]);
        s.finished = 3;
        assert!(s.outcome(1).is_err());
        assert!(s.outcome(2).is_ok());
        assert!(s.outcome(3).is_err());
        // a round whose failure record was dropped counts as failed, never as done
        s.forgotten = 2;
        s.failed.pop_front();
        assert!(s.outcome(2).is_err());
        assert!(s.outcome(4).is_ok());
    }

    #[test]
    fn a_failed_round_fails_its_waiters_and_the_next_may_succeed() {
        let g = Group::default();
        assert!(g.round(|| Err(io::Error::other("EIO")), || panic!("no lead")).is_err());
        assert!(g.round(|| Ok(()), || {}).is_ok());
        // a panicking sync ends its round as failed, and the group goes on
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.round(|| panic!("sync"), || {})
        }));
        assert!(r.is_err());
        assert!(g.round(|| Ok(()), || {}).is_ok());
        assert_eq!(g.rounds(), 4);
    }
}
