//! qmail-send's completion of a message (doc/INTERNALS.md, "qmail-send's cycle"): once no
//! channel file is left, the bounce (if any), then the message's files; and the sweep that
//! removes leftovers (doc/INTERNALS.md, "Leftovers"). Both go through qmail-clean, and losing
//! it is fatal (doc/INTERNALS.md, "Lost partners").

use crate::bounce::{self, BounceConf};
use crate::due::{Due, TROUBLE};
use crate::log::Log;
use qmail::auto::SPLIT;
use qmail::clean::{self, CleanError, Client};
use qmail::date822::unix_now;
use qmail::queue::pool::{self, Giver};
use qmail::queue::{split_name, Leftover};
use std::fs;
use std::path::{Path, PathBuf};

/// Time between cleanup sweeps.
const SWEEP: i64 = 76_431;

pub struct Completion {
    home: PathBuf,
    bounce: BounceConf,
    cleaner: Client,
    /// messages whose completion is due
    due: Due,
    next_sweep: i64,
    /// finished `info` files go there, for qmail-todo to reuse
    pool: Giver,
}

impl Completion {
    pub fn new(home: PathBuf, bounce: BounceConf, cleaner: Client) -> Self {
        let pool = Giver::new(pool::SEND);
        Completion { home, bounce, cleaner, due: Due::default(), next_sweep: 0, pool }
    }

    /// The bounce control files, re-read on HUP.
    pub fn reconfigure(&mut self, bounce: BounceConf) {
        self.bounce = bounce;
    }

    /// The messages waiting for completion.
    pub fn waiting(&mut self) -> &mut Due {
        &mut self.due
    }

    /// When the next completion is due.
    pub fn next(&self) -> Option<i64> {
        self.due.next()
    }

    /// Finish the messages due; losing qmail-clean is fatal (the set is restarted). The
    /// message files of all of them go in one batch of qmail-clean requests.
    pub fn run(&mut self, log: &mut Log) -> Result<(), String> {
        let now = unix_now();
        let later = |log: &mut Log, due: &mut Due, id: u64, e: String| {
            log.line(&format!("warning: trouble completing msg {id}: {e}; will try again later"));
            due.push(now + TROUBLE, id);
        };
        let mut cleaned = Vec::new();
        while let Some(id) = self.due.pop(now) {
            match self.complete(log, id) {
                Ok(()) => cleaned.push(clean::Request::Foop(id)),
                Err(e) => later(log, &mut self.due, id, e),
            }
        }
        let replies = self.cleaner.requests(&cleaned);
        for (request, reply) in cleaned.into_iter().zip(replies) {
            let clean::Request::Foop(id) = request else { continue };
            match reply {
                Ok(()) => {}
                Err(e @ CleanError::Lost(_)) => return Err(format!("oh no! {e}")),
                Err(e @ CleanError::Refused(..)) => later(log, &mut self.due, id, e.to_string()),
            }
        }
        Ok(())
    }

    /// Completion: bounce if needed, then remove `info` (the message file is the caller's,
    /// through qmail-clean); trouble is tried again later.
    fn complete(&mut self, log: &mut Log, id: u64) -> Result<(), String> {
        let bounce_path = PathBuf::from(format!("bounce/{id}"));
        let info_path = split_name("info", id);
        if bounce_path.exists() {
            let info = fs::read(&info_path).map_err(|e| format!("{info_path}: {e}"))?;
            let sender = qmail::queue::info_sender(&info);
            if bounce::route(&sender, &self.bounce).is_none() {
                log.line(&format!("triple bounce: discarding bounce/{id}"));
            } else {
                let mess = PathBuf::from(split_name("mess", id));
                let qp = bounce::inject(&self.home, &self.bounce, &sender, &bounce_path, &mess)
                    .map_err(|v| v.to_string())?;
                log.line(&format!("bounce msg {id} qp {qp}"));
            }
            fs::remove_file(&bounce_path).map_err(|e| format!("unlink bounce/{id}: {e}"))?;
        }
        log.line(&format!("end msg {id}"));
        if let Err(e) = self.pool.give(Path::new(&info_path)) {
            return Err(format!("unlink {info_path}: {e}"));
        }
        Ok(())
    }

    /// Remove what will never be delivered, when a sweep is due (doc/INTERNALS.md,
    /// "Leftovers"): a message file with neither todo nor info that no live qmail-queue
    /// holds, i.e. the debris of a crashed injection or a finished message whose info was
    /// removed just before a crash. The first sweep runs at start, so no crash leaves such a
    /// file listed as queued mail.
    pub fn sweep(&mut self, log: &mut Log) -> Result<(), String> {
        let now = unix_now();
        if now < self.next_sweep {
            return Ok(());
        }
        for s in 0..SPLIT {
            let Ok(dir) = fs::read_dir(format!("mess/{s}")) else { continue };
            for e in dir.flatten() {
                let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                    continue;
                };
                match qmail::queue::leftover(Path::new("."), id) {
                    Ok(Some(Leftover::Debris)) => {}
                    Ok(None | Some(Leftover::Injecting)) => continue,
                    Err(e) => {
                        log.line(&format!("warning: unable to check msg {id}: {e}"));
                        continue;
                    }
                }
                log.line(&format!("warning: removing leftover msg {id} (nothing will deliver it)"));
                match self.cleaner.request(clean::Request::Foop(id)) {
                    Ok(()) => {}
                    Err(e @ CleanError::Lost(_)) => return Err(format!("oh no! {e}")),
                    Err(e) => log.line(&format!("warning: {e}")),
                }
            }
        }
        self.next_sweep = now + SWEEP;
        Ok(())
    }
}
