//! parked: threads that wait for the next job when they are done, instead of ending
//! (doc/INTERNALS.md, "Parked threads").
//!
//! A server that starts a thread per connection pays for the thread's creation and end (its
//! stack mapped, guarded and unmapped) on every connection. Here a thread that has served
//! its job parks: it counts itself idle and waits on the pool's channel. [`Parked::hand`]
//! gives a job to a parked thread when there is one and returns it otherwise, for the caller
//! to start a thread that runs [`Parked::serve`]. So there are never more threads than the
//! most jobs ever run at once, which the caller already bounds. [`Parked::close`] (or
//! dropping the pool) ends the parked threads; a thread serving a job ends after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

/// Parked threads waiting for jobs of type `J`.
pub struct Parked<J> {
    send: Mutex<Option<Sender<J>>>,
    receive: Mutex<Receiver<J>>,
    /// threads parked or about to park, not yet handed a job
    idle: AtomicUsize,
}

impl<J> Default for Parked<J> {
    fn default() -> Self {
        let (send, receive) = mpsc::channel();
        Parked {
            send: Mutex::new(Some(send)),
            receive: Mutex::new(receive),
            idle: AtomicUsize::new(0),
        }
    }
}

impl<J> Parked<J> {
    pub fn new() -> Parked<J> {
        Parked::default()
    }

    /// Give `job` to a parked thread; `Err(job)` when none is idle (or the pool is closed):
    /// the caller starts a thread with [`Parked::serve`] for it.
    pub fn hand(&self, job: J) -> Result<(), J> {
        if self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(job);
        }
        // an idle thread is parked or about to be, and waits for exactly this job
        match &*self.send.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(send) => send.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// The life of a thread: `work` on `first`, then on every job handed to it while it is
    /// parked, until the pool is closed. A job that panics ends the thread (it never parks
    /// again, so no job is handed to it).
    pub fn serve(&self, first: J, mut work: impl FnMut(J)) {
        work(first);
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let next = self.receive.lock().unwrap_or_else(|p| p.into_inner()).recv();
            match next {
                Ok(job) => work(job),
                Err(_) => return,
            }
        }
    }

    /// End the parked threads (and every thread when its job is done).
    pub fn close(&self) {
        self.send.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Threads parked now (for tests and status lines).
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Acquire)
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
