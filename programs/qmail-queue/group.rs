//! Group commit: one sync for every thread waiting for one, leader and followers.
//!
//! A thread that needs its files durable calls [`Group::paced_round`]. It needs a sync that
//! starts after its call. When no sync runs, it runs one itself (a lone message waits for
//! nothing but its own sync); when one runs, it waits for it to end, and then one such waiter
//! (the end of a round wakes the callers it served and one of the next round's) runs the next
//! one for all who arrived meanwhile.
//!
//! A caller may bring a job (`paced_round`'s `job`): the leader takes the jobs of everyone
//! its round serves when the round's sync begins and, once the sync has ended, carries them
//! all out (`after`) before the round counts as ended, so the followers are woken once, with
//! their jobs done; a caller without a job is woken as soon as the sync has ended. The queue
//! service's job is a message's link into `todo/`, and `after` makes every link of the
//! round, then syncs `todo/` once for them: one thread does the round's whole commit,
//! instead of each follower waking to make its own link and then waiting for a second round
//! that finds only some of the links made.
//!
//! While the recent rounds served several callers each, a round waits before its sync
//! begins: until as many messages have joined it as the busiest of the last four rounds
//! carried, or until the group's gap after the last round ended, whichever comes first.
//! Waiting gathers the messages of many clients and the sync requests that come meanwhile.
//! Under a steady load the clients a round answered come back with their next messages a
//! little apart (the last of ten SMTP sessions up to 3.5 ms after the answers went out), and
//! the round begins as soon as the last of them is in, instead of a fixed time after the
//! last round began, which left the slowest few for the round after. A lone client's next
//! message comes only after its last was answered and delivered, so waiting would gather
//! nobody: after rounds of one message each, a message does not wait.
//!
//! A failed round fails every thread that counted on it, and every round after it: the kernel
//! reports a write error once, to the sync that found it, and the data that failed may be a
//! waiter's of the next round (written before the failed round started, waiting since just
//! after). So no later answer may say "durable"; the service ends that worker instead
//! ([`Group::failed`]), and a fresh one, whose syncs report the errors that come after it
//! opened the queue, takes over.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Group<J = ()> {
    state: Mutex<State<J>>,
    /// where the callers waiting for an even and for an odd round wait, those with a job
    /// (`[0]`) and those without (`[1]`): the end of a round wakes those it served, and one
    /// of those waiting for the next to lead it, not everyone; a caller without a job needs
    /// only the sync and is woken as soon as it has ended, before the round's jobs are done
    changed: [[Condvar; 2]; 2],
    /// the longest a paced round waits after the last one ended
    gap: Duration,
    /// where a paced leader waits for its round to fill
    filled: Condvar,
}

struct State<J> {
    /// rounds started so far (the number of the latest)
    started: u64,
    /// rounds whose sync has begun: a caller from now on needs the one after
    sealed: u64,
    /// when the latest round ended
    ended: Option<Instant>,
    /// the messages (callers with a job) of the last four rounds, the latest first
    carried: [usize; 4],
    /// whether a paced leader waits for the messages to fill its round
    filling: bool,
    /// rounds ended so far
    finished: u64,
    running: bool,
    /// rounds whose sync has ended well (a caller without a job needs no more)
    synced: u64,
    /// callers waiting, with a job and without, by the parity of the round they wait for
    waiting: [[usize; 2]; 2],
    /// the first round that failed: it and every later one count as failed
    failed_from: Option<u64>,
    /// callers since the latest sync began: the next round serves them
    joined: usize,
    /// callers a round served lately, in sixteenths (see [`served_after`])
    served: usize,
    /// the jobs of the callers since the latest sync began: the next round's leader does them
    jobs: Vec<J>,
}

impl<J> Default for State<J> {
    fn default() -> Self {
        State {
            started: 0,
            sealed: 0,
            ended: None,
            carried: [0; 4],
            filling: false,
            finished: 0,
            running: false,
            synced: 0,
            waiting: [[0; 2]; 2],
            failed_from: None,
            joined: 0,
            served: 0,
            jobs: Vec::new(),
        }
    }
}

impl<J> Default for Group<J> {
    fn default() -> Self {
        Group {
            state: Mutex::default(),
            changed: Default::default(),
            gap: Duration::ZERO,
            filled: Condvar::new(),
        }
    }
}

impl<J> State<J> {
    /// Whether as many messages wait for the next round as the busiest of the last four
    /// carried. After rounds of one message each (one client), its message is all there
    /// is to wait for; after rounds of none (only sync requests), the gap gathers them.
    fn full(&self) -> bool {
        let expected = self.carried.iter().copied().max().unwrap_or(0);
        expected >= 1 && self.jobs.len() >= expected
    }

    /// How round `round` (ended) went: well unless it or an earlier round failed.
    fn outcome(&self, round: u64) -> io::Result<()> {
        match self.failed_from {
            Some(first) if round >= first => Err(io::Error::other("a sync of the queue failed")),
            _ => Ok(()),
        }
    }
}

impl<J> Group<J> {
    /// [`Group::paced_round`] that never waits out the gap: the tests' rounds that begin at
    /// once (the queue service's callers all may wait).
    #[cfg(test)]
    pub fn round(
        &self,
        job: Option<J>,
        sync: impl FnOnce() -> io::Result<()>,
        after: impl FnOnce(Vec<J>) -> io::Result<()>,
        lead: impl FnOnce(usize),
    ) -> io::Result<()> {
        self.run(false, job, sync, after, lead)
    }

    /// Wait for a sync that started after this call, running it (`sync`) when it is this
    /// thread's turn, then `after` with the jobs of every caller the round serves (`job`,
    /// this caller's, among them): the round ends, and its callers with a job are answered,
    /// once both have; a caller without a job is answered when the sync has ended. Every
    /// caller passes the same `sync` and `after`; the leader's run. `lead` is called by the
    /// thread that ran a successful round, after its end, with the number of jobs it did
    /// (qmail-queue pulls qmail-send's trigger there when there were any).
    ///
    /// While the recent rounds served more than [`SHARED`] callers each, a round this caller
    /// leads begins once as many messages have joined it as the busiest of the last four
    /// rounds carried, or the group's gap after the last round ended, whichever is first,
    /// and everyone calling meanwhile shares it. The queue service's messages come from many
    /// clients at once and gather this way, and so do the sync requests (qmail-todo's
    /// batches, the delivery workers' steps, whose pipeline keeps them busy while they
    /// wait); a lone client's messages, with nobody to gather, do not wait.
    pub fn paced_round(
        &self,
        job: Option<J>,
        sync: impl FnOnce() -> io::Result<()>,
        after: impl FnOnce(Vec<J>) -> io::Result<()>,
        lead: impl FnOnce(usize),
    ) -> io::Result<()> {
        self.run(true, job, sync, after, lead)
    }

    fn run(
        &self,
        paced: bool,
        job: Option<J>,
        sync: impl FnOnce() -> io::Result<()>,
        after: impl FnOnce(Vec<J>) -> io::Result<()>,
        lead: impl FnOnce(usize),
    ) -> io::Result<()> {
        let mut s = self.lock();
        let target = s.sealed + 1;
        if s.failed_from.is_some() {
            return s.outcome(target);
        }
        s.joined += 1;
        let kind = usize::from(job.is_none());
        // the round that serves this call is the next to seal, which takes the jobs
        s.jobs.extend(job);
        if s.filling && s.full() {
            self.filled.notify_one();
        }
        loop {
            if kind == 1 && s.synced >= target {
                // its sync ended well; what the round does after it is the jobs' business
                return Ok(());
            }
            if s.finished >= target || s.failed_from.is_some() {
                return s.outcome(target);
            }
            if !s.running {
                // no round runs, and the last one began before this call: lead the next,
                // which everyone calling until its sync begins shares; paced, it begins once
                // the messages of the recent rounds are back or the gap after the last
                // round is over (under load, fewer, larger rounds), unless the rounds lately
                // had nobody to gather
                s.started += 1;
                s.running = true;
                let round = s.started;
                if let Some(until) = s.ended.filter(|_| paced && s.served > SHARED) {
                    let until = until + self.gap;
                    s.filling = true;
                    loop {
                        let now = Instant::now();
                        if now >= until || s.full() {
                            break;
                        }
                        s = self
                            .filled
                            .wait_timeout(s, until - now)
                            .map_or_else(|p| p.into_inner().0, |(s, _)| s);
                    }
                    s.filling = false;
                }
                s.sealed = round;
                let messages = s.jobs.len();
                s.carried.rotate_right(1);
                s.carried[0] = messages;
                let joined = std::mem::take(&mut s.joined);
                s.served = served_after(s.served, joined);
                let jobs = std::mem::take(&mut s.jobs);
                drop(s);
                let mut ended = Ended { group: self, round, ok: false };
                let done = jobs.len();
                let result = sync().and_then(|()| {
                    if done == 0 {
                        return Ok(());
                    }
                    // the callers without a job are served: let them go before the jobs
                    let mut s = self.lock();
                    s.synced = round;
                    let parity = (round % 2) as usize;
                    let waiting = s.waiting[1][parity] > 0;
                    drop(s);
                    if waiting {
                        self.changed[1][parity].notify_all();
                    }
                    after(jobs)
                });
                ended.ok = result.is_ok();
                drop(ended);
                if result.is_ok() {
                    lead(done);
                }
                return result;
            }
            let parity = (target % 2) as usize;
            s.waiting[kind][parity] += 1;
            s = self.changed[kind][parity].wait(s).unwrap_or_else(|p| p.into_inner());
            s.waiting[kind][parity] -= 1;
        }
    }

    /// A group whose paced rounds wait at most `gap` after the last one ended.
    pub fn with_gap(gap: Duration) -> Group<J> {
        Group { gap, ..Group::default() }
    }

    /// Whether a round has failed (every later one fails without a sync).
    pub fn failed(&self) -> bool {
        self.lock().failed_from.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rounds run so far (for the tests).
    #[cfg(test)]
    fn rounds(&self) -> u64 {
        self.lock().finished
    }
}

/// Above this many callers a round (in sixteenths: one and a half), the rounds are shared
/// and a paced leader waits out the gap.
const SHARED: usize = 24;

/// How many callers (messages and sync requests alike) a round served lately, in
/// sixteenths, after a round that served `joined` (its leader among them): a quarter of the
/// way from `served` to `joined`. Counting the sync requests keeps the rounds paced where
/// deliveries to many users sync one by one between the messages. After a quiet spell two
/// rounds of four callers (one of seven) are enough to wait again; under load, a few rounds
/// of one each in a row are enough to stop.
fn served_after(served: usize, joined: usize) -> usize {
    (3 * served + 16 * joined.min(1 << 20)) / 4
}

/// The end of a round, also when its sync panics (then it failed).
struct Ended<'a, J> {
    group: &'a Group<J>,
    round: u64,
    ok: bool,
}

impl<J> Drop for Ended<'_, J> {
    fn drop(&mut self) {
        let mut s = self.group.lock();
        s.running = false;
        s.ended = Some(Instant::now());
        s.sealed = self.round;
        s.finished = self.round;
        if self.ok {
            s.synced = self.round;
        } else if s.failed_from.is_none() {
            s.failed_from = Some(self.round);
        }
        // everyone waits for this round or the next (a caller's is the one after the last
        // sealed): this one's are served; the next needs a leader, unless it has failed too
        let (this, next) = ((self.round % 2) as usize, ((self.round + 1) % 2) as usize);
        let failed = s.failed_from.is_some();
        let leader = [0, 1].into_iter().find(|&kind| s.waiting[kind][next] > 0);
        // woken after the lock is let go, so that they do not wake only to wait for it
        drop(s);
        let changed = &self.group.changed;
        for kind in [0, 1] {
            changed[kind][this].notify_all();
        }
        if failed {
            for kind in [0, 1] {
                changed[kind][next].notify_all();
            }
        } else if let Some(kind) = leader {
            changed[kind][next].notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Rounds without jobs.
    impl Group {
        fn r(&self, sync: impl FnOnce() -> io::Result<()>, lead: impl FnOnce()) -> io::Result<()> {
            self.round(None, sync, |_| unreachable!("no jobs"), |_| lead())
        }

        fn pr(&self, sync: impl FnOnce() -> io::Result<()>, lead: impl FnOnce()) -> io::Result<()> {
            self.paced_round(None, sync, |_| unreachable!("no jobs"), |_| lead())
        }
    }

    #[test]
    fn a_lone_caller_runs_its_own_round() {
        let g = Group::default();
        let led = AtomicU64::new(0);
        for _ in 0..3 {
            g.r(
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
                    g.r(
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
    fn callers_in_many_rounds_are_all_served_and_never_early() {
        // eight threads, each calling again as soon as it is answered, paced and not: every
        // call is answered (a caller for the next round is woken to lead it, not lost) and
        // never before a sync that began after it
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let g = Group::with_gap(Duration::from_micros(200));
            let (written, durable) = (AtomicU64::new(0), AtomicU64::new(0));
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (g, written, durable) = (&g, &written, &durable);
                    s.spawn(move || {
                        for i in 0..300 {
                            let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                            let sync = || {
                                let upto = written.load(Ordering::SeqCst);
                                std::thread::yield_now();
                                durable.fetch_max(upto, Ordering::SeqCst);
                                Ok(())
                            };
                            if (t + i) % 2 == 0 {
                                g.pr(sync, || {}).unwrap();
                            } else {
                                g.r(sync, || {}).unwrap();
                            }
                            assert!(durable.load(Ordering::SeqCst) >= mine, "answered early");
                        }
                    });
                }
            });
            let _ = done.send(g.rounds());
        });
        let rounds =
            finished.recv_timeout(Duration::from_secs(120)).expect("a caller was never answered");
        assert!((1..=2400).contains(&rounds), "{rounds} rounds");
    }

    #[test]
    fn a_lone_callers_rounds_do_not_wait_out_the_gap() {
        // one client, one message after the other: nobody else to gather, no wait
        let gap = Duration::from_secs(5);
        let g = Group::with_gap(gap);
        let t = Instant::now();
        for _ in 0..4 {
            g.pr(|| Ok(()), || {}).unwrap();
            // a sync request between them (a delivery's) changes nothing
            g.r(|| Ok(()), || {}).unwrap();
        }
        assert!(t.elapsed() < gap);
        assert_eq!(g.rounds(), 8);
    }

    #[test]
    fn rounds_of_several_callers_make_the_next_wait_and_rounds_of_one_stop_it() {
        let waits = |served| served > SHARED;
        // after a quiet spell, two rounds of four (or one of seven) are enough to wait again
        let s = served_after(0, 4);
        assert!(!waits(s) && waits(served_after(s, 4)), "{s}");
        assert!(waits(served_after(0, 7)));
        // under load (five a round) it settles at five, and a round of one now and then
        // (a message that found no company) does not stop the waiting
        let mut s = 0;
        for _ in 0..20 {
            s = served_after(s, 5);
        }
        assert!((76..=80).contains(&s), "{s}");
        assert!(waits(served_after(s, 1)));
        // rounds of one each: waiting stops after a few, and stays stopped
        let mut rounds = 0;
        while waits(s) {
            s = served_after(s, 1);
            rounds += 1;
        }
        assert!((3..=8).contains(&rounds), "{rounds}");
        for _ in 0..100 {
            s = served_after(s, 1);
            assert!(!waits(s));
        }
        // two a round is sharing
        for _ in 0..5 {
            s = served_after(s, 2);
        }
        assert!(waits(s), "{s}");
        // no overflow however many
        assert!(waits(served_after(usize::MAX / 4, usize::MAX)));
    }

    #[test]
    fn a_round_waits_out_the_gap_and_callers_meanwhile_share_it() {
        let gap = Duration::from_secs(5);
        let g = Group::with_gap(gap);
        // rounds lately served several callers each
        g.lock().served = 4 * 16;
        // the first round, after a quiet moment, waits for nothing
        let t = Instant::now();
        g.pr(|| Ok(()), || {}).unwrap();
        assert!(t.elapsed() < gap);
        let syncs = AtomicU64::new(0);
        std::thread::scope(|s| {
            // the next leader claims round 2 and waits out the gap before its sync begins
            s.spawn(|| {
                g.pr(
                    || {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    },
                    || {},
                )
                .unwrap()
            });
            let claimed = || {
                let st = g.lock();
                st.started == 2 && st.sealed == 1
            };
            while !claimed() {
                std::thread::yield_now();
            }
            // a caller during the gap is served by that round, not a third
            g.r(|| panic!("no round of its own"), || {}).unwrap();
        });
        assert_eq!((g.rounds(), syncs.load(Ordering::SeqCst)), (2, 1));
        // an unpaced round does not wait for the gap
        let t = Instant::now();
        g.r(|| Ok(()), || {}).unwrap();
        assert!(t.elapsed() < gap);
    }

    #[test]
    fn a_round_begins_once_as_many_messages_are_back_as_the_busiest_recent_one_carried() {
        // ten SMTP sessions under load: the round does not wait out the gap for nobody,
        // and the three messages share it
        let gap = Duration::from_secs(60);
        let g: Group<u32> = Group::with_gap(gap);
        let t = Instant::now();
        g.round(None, || Ok(()), |_| unreachable!("no jobs"), |_| {}).unwrap();
        {
            let mut st = g.lock();
            st.served = 4 * 16;
            st.carried = [0, 3, 1, 0];
        }
        let syncs = AtomicU64::new(0);
        std::thread::scope(|s| {
            for m in 0..3 {
                let (g, syncs) = (&g, &syncs);
                s.spawn(move || {
                    let sync = || {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    };
                    g.paced_round(
                        Some(m),
                        sync,
                        |jobs| {
                            assert_eq!(jobs.len(), 3);
                            Ok(())
                        },
                        |_| {},
                    )
                    .unwrap();
                });
            }
        });
        assert!(t.elapsed() < gap);
        assert_eq!((g.rounds(), syncs.load(Ordering::SeqCst)), (2, 1));
        assert_eq!(g.lock().carried, [3, 0, 3, 1]);
    }

    #[test]
    fn a_round_short_of_messages_waits_the_gap_after_the_last_one_ended() {
        let busy = |g: &Group<u32>, carried| {
            g.round(None, || Ok(()), |_| unreachable!("no jobs"), |_| {}).unwrap();
            let mut st = g.lock();
            st.served = 4 * 16;
            st.carried = carried;
        };
        // three messages lately, one now: it waits the gap out (from the last round's end)
        let gap = Duration::from_millis(300);
        let g: Group<u32> = Group::with_gap(gap);
        let t = Instant::now();
        busy(&g, [0, 3, 0, 0]);
        g.paced_round(Some(1), || Ok(()), |_| Ok(()), |_| {}).unwrap();
        assert!(t.elapsed() >= gap);
        // rounds of one message (one client): nobody is coming, no wait
        let gap = Duration::from_secs(60);
        let g: Group<u32> = Group::with_gap(gap);
        let t = Instant::now();
        busy(&g, [1, 1, 0, 1]);
        for m in 0..3 {
            g.paced_round(Some(m), || Ok(()), |_| Ok(()), |_| {}).unwrap();
        }
        assert!(t.elapsed() < gap);
        assert_eq!(g.rounds(), 4);
    }

    #[test]
    fn the_leader_does_every_job_of_its_round_before_its_callers_are_answered() {
        // messages (a job each: mark it done) and sync requests (no job) from many threads:
        // every job is done exactly once, after a sync that began after it was handed in,
        // and before its caller is answered, whoever led the round
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let g: Group<(u64, Arc<AtomicU64>)> = Group::with_gap(Duration::from_micros(100));
            let (written, durable, jobs_done) =
                (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
            std::thread::scope(|s| {
                for t in 0..8u64 {
                    let (g, written, durable, jobs_done) = (&g, &written, &durable, &jobs_done);
                    s.spawn(move || {
                        for i in 0..200 {
                            let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                            let flag = Arc::new(AtomicU64::new(0));
                            let sync = || {
                                let upto = written.load(Ordering::SeqCst);
                                std::thread::yield_now();
                                durable.fetch_max(upto, Ordering::SeqCst);
                                Ok(())
                            };
                            let after = |jobs: Vec<(u64, Arc<AtomicU64>)>| {
                                for (n, flag) in jobs {
                                    assert!(durable.load(Ordering::SeqCst) >= n, "done unsynced");
                                    assert_eq!(flag.fetch_add(1, Ordering::SeqCst), 0, "twice");
                                    jobs_done.fetch_add(1, Ordering::SeqCst);
                                }
                                Ok(())
                            };
                            if (t + i) % 3 == 0 {
                                g.round(None, sync, after, |_| {}).unwrap();
                            } else {
                                g.paced_round(Some((mine, Arc::clone(&flag))), sync, after, |_| {})
                                    .unwrap();
                                assert_eq!(flag.load(Ordering::SeqCst), 1, "answered undone");
                            }
                            assert!(durable.load(Ordering::SeqCst) >= mine, "answered early");
                        }
                    });
                }
            });
            let _ = done.send(jobs_done.load(Ordering::SeqCst));
        });
        let jobs =
            finished.recv_timeout(Duration::from_secs(120)).expect("a caller never answered");
        // (t + i) % 3 != 0 for 8 threads of 200 calls
        let want = (0..8u64).map(|t| (0..200u64).filter(|i| (t + i) % 3 != 0).count() as u64).sum();
        assert_eq!(jobs, want);
    }

    #[test]
    fn a_caller_without_a_job_is_answered_before_the_jobs_are_done() {
        // a delivery's sync request in a round of messages needs only the sync: the leader
        // lets it go before it links the messages
        let g: Group<u32> = Group::with_gap(Duration::from_secs(5));
        g.lock().served = 4 * 16;
        g.round(None, || Ok(()), |_| unreachable!("no jobs"), |_| {}).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let g = &g;
        std::thread::scope(|s| {
            s.spawn(move || {
                let after = |jobs: Vec<u32>| {
                    assert_eq!(jobs, [7]);
                    rx.recv_timeout(Duration::from_secs(60))
                        .map_err(|_| io::Error::other("the sync request waited for the job"))
                };
                g.paced_round(Some(7), || Ok(()), after, |n| assert_eq!(n, 1)).unwrap();
            });
            // the leader has claimed round 2 and waits out the gap
            while !{
                let st = g.lock();
                st.started == 2 && st.sealed == 1
            } {
                std::thread::yield_now();
            }
            g.round(None, || panic!("no round of its own"), |_| unreachable!(), |_| {}).unwrap();
            tx.send(()).unwrap();
        });
        assert_eq!(g.rounds(), 2);
    }

    #[test]
    fn a_failed_job_step_fails_the_round_and_every_later_one() {
        let g: Group<u32> = Group::default();
        let lead = |_| panic!("no lead after a failure");
        let after = |_| Err(io::Error::other("EIO on todo/"));
        assert!(g.round(Some(1), || Ok(()), after, lead).is_err());
        assert!(g.failed());
        let after = |_| panic!("nothing after a failure");
        assert!(g.paced_round(Some(2), || panic!("no sync"), after, lead).is_err());
        // a round without jobs does not run the step at all
        let g: Group<u32> = Group::default();
        let after = |_| panic!("no step without jobs");
        let led = AtomicU64::new(9);
        g.round(None, || Ok(()), after, |n| led.store(n as u64, Ordering::SeqCst)).unwrap();
        assert_eq!(led.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failed_round_fails_it_and_every_later_one() {
        let s = State::<()> { finished: 3, failed_from: Some(2), ..State::default() };
        // a waiter of round 1 that wakes late still gets round 1's result
        assert!(s.outcome(1).is_ok());
        assert!(s.outcome(2).is_err());
        assert!(s.outcome(3).is_err());
        assert!(s.outcome(4).is_err());
    }

    #[test]
    fn after_a_failed_round_nothing_syncs_and_nothing_succeeds() {
        let g = Group::default();
        assert!(g.r(|| Ok(()), || {}).is_ok());
        assert!(!g.failed());
        assert!(g.r(|| Err(io::Error::other("EIO")), || panic!("no lead")).is_err());
        assert!(g.failed());
        assert!(g.r(|| panic!("no sync after a failure"), || panic!("no lead")).is_err());
        assert_eq!(g.rounds(), 2);
        // a panicking sync ends its round as failed
        let g = Group::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.r(|| panic!("sync"), || {})
        }));
        assert!(r.is_err());
        assert!(g.failed());
        assert!(g.r(|| Ok(()), || {}).is_err());
    }
}
