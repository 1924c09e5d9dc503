//! parked: threads that wait for the next job when they are done, instead of ending
//! (doc/INTERNALS.md, "Parked threads").
//!
//! A server that starts a thread per connection pays for the thread's creation and end (its
//! stack mapped, guarded and unmapped) on every connection. Here a thread that has served
//! its job parks: it puts its own channel on the pool's stack of idle threads and waits on
//! it. [`Parked::hand`] gives a job to the thread that parked last (its caches are the
//! warmest) when there is one, waking that thread alone, and returns it otherwise, for the
//! caller to start a thread that runs [`Parked::serve`]. So there are never more threads
//! than the most jobs ever run at once, which the caller already bounds. [`Parked::close`]
//! (or dropping the pool) ends the parked threads; a thread serving a job ends after it.
//!
//! (Until 2026-12-06 the idle threads shared one channel behind a mutex: a job woke the
//! thread waiting on the channel, whose unlock then woke the next thread waiting for the
//! mutex only to wait again, two wake-ups a job where one does.)

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

/// Parked threads waiting for jobs of type `J`.
pub struct Parked<J> {
    /// each parked thread's channel, the last to park last; `None` once closed. `None` on a
    /// channel ends its thread.
    idle: Mutex<Option<Vec<Sender<Option<J>>>>>,
}

impl<J> Default for Parked<J> {
    fn default() -> Self {
        Parked { idle: Mutex::new(Some(Vec::new())) }
    }
}

impl<J> Parked<J> {
    pub fn new() -> Parked<J> {
        Parked::default()
    }

    /// Give `job` to a parked thread; `Err(job)` when none is idle (or the pool is closed):
    /// the caller starts a thread with [`Parked::serve`] for it.
    pub fn hand(&self, job: J) -> Result<(), J> {
        let mut job = Some(job);
        loop {
            let parked = match &mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(idle) => idle.pop(),
                None => None,
            };
            let Some(parked) = parked else { break };
            // a thread on the stack waits on its channel until it is handed something; a
            // send fails only if it is gone, and then the job is still ours
            match parked.send(job.take()) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        Err(job.expect("the job is still ours"))
    }

    /// The life of a thread: `work` on `first`, then on every job handed to it while it is
    /// parked, until the pool is closed. A job that panics ends the thread (it never parks
    /// again, so no job is handed to it).
    pub fn serve(&self, first: J, mut work: impl FnMut(J)) {
        let (send, receive): (Sender<Option<J>>, Receiver<Option<J>>) = mpsc::channel();
        work(first);
        loop {
            match &mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(idle) => idle.push(send.clone()),
                None => return,
            }
            match receive.recv() {
                Ok(Some(job)) => work(job),
                // closed (the thread holds a sender itself: recv never fails)
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// End the parked threads (and every thread when its job is done).
    pub fn close(&self) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        for parked in idle.into_iter().flatten() {
            let _ = parked.send(None);
        }
    }

    /// Threads parked now (for tests and status lines).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, Vec::len)
    }
}

impl<J> Drop for Parked<J> {
    /// Dropping the pool ends its parked threads, as [`Parked::close`].
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Wait (at most 10 s) until a thread is parked.
    fn until_parked<J>(pool: &Parked<J>) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.idle() == 0 {
            assert!(std::time::Instant::now() < deadline, "no thread parked");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_parked_thread_serves_the_next_job_and_ends_when_closed() {
        let pool: Arc<Parked<u32>> = Arc::new(Parked::new());
        assert_eq!(pool.hand(1), Err(1), "nobody parked yet");
        let (done, finished) = mpsc::channel();
        let thread = {
            let (pool, done) = (Arc::clone(&pool), done.clone());
            std::thread::spawn(move || {
                pool.serve(1, |j| done.send((j, std::thread::current().id())).unwrap())
            })
        };
        let (first, id) = finished.recv().unwrap();
        assert_eq!(first, 1);
        // it parks: the next job goes to the same thread
        until_parked(&pool);
        assert_eq!(pool.hand(2), Ok(()));
        assert_eq!(finished.recv().unwrap(), (2, id));
        until_parked(&pool);
        pool.close();
        thread.join().unwrap();
        assert_eq!(pool.hand(3), Err(3), "closed");
    }

    /// The thread that parked last serves the next job; closing ends every parked thread.
    #[test]
    fn the_last_thread_parked_serves_first() {
        let pool: Arc<Parked<u32>> = Arc::new(Parked::new());
        let (done, finished) = mpsc::channel();
        // two threads held in their first jobs until let go, one after the other
        let gates: Vec<_> = (0..2).map(|_| mpsc::channel::<()>()).collect();
        let mut threads = Vec::new();
        let mut go = Vec::new();
        for (job, (open, gate)) in (0u32..).zip(gates) {
            let (pool, done) = (Arc::clone(&pool), done.clone());
            go.push(open);
            threads.push(std::thread::spawn(move || {
                let mut gate = Some(gate);
                pool.serve(job, |j| {
                    if let Some(g) = gate.take() {
                        g.recv().unwrap();
                    }
                    done.send((j, std::thread::current().id())).unwrap();
                })
            }));
        }
        let mut ids = Vec::new();
        for (n, open) in go.iter().enumerate() {
            open.send(()).unwrap();
            ids.push(finished.recv().unwrap().1);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while pool.idle() != n + 1 {
                assert!(std::time::Instant::now() < deadline, "not parked");
                std::thread::yield_now();
            }
        }
        assert_eq!(pool.hand(7), Ok(()));
        let (job, id) = finished.recv().unwrap();
        assert_eq!((job, id), (7, ids[1]), "the last parked took it");
        pool.close();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.hand(8), Err(8), "closed");
    }

    #[test]
    fn jobs_find_idle_threads_or_are_returned() {
        let pool: Arc<Parked<u32>> = Arc::new(Parked::new());
        let (done, finished) = mpsc::channel();
        let mut threads = Vec::new();
        let mut started = 0;
        for job in 0..200u32 {
            match pool.hand(job) {
                Ok(()) => {}
                Err(job) => {
                    started += 1;
                    let (pool, done) = (Arc::clone(&pool), done.clone());
                    threads.push(std::thread::spawn(move || {
                        pool.serve(job, |j| done.send(j).unwrap())
                    }));
                }
            }
        }
        let mut got: Vec<u32> = (0..200).map(|_| finished.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "every job ran once");
        assert!(started <= 200);
        pool.close();
        for t in threads {
            t.join().unwrap();
        }
    }
}
