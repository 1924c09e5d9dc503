//! The queue journal (doc/INTERNALS.md, "The queue journal"; doc/DECISIONS.md 51): the queue
//! service's commit for a message that fits, so that its answer does not wait for the round
//! that makes its queue files durable.
//!
//! `queue/journal` is a file of fixed size, written full of zeros once (its blocks allocated
//! and written, so overwriting it changes no metadata), used as a ring of records. A record
//! holds a message's file and envelope as the queue has them; the records of messages
//! written at the same time are written together and share one `fdatasync` (a group commit,
//! leader and followers as the sync rounds), and a message is answered 0 once its record is durable. The
//! round ([`crate::group`]) then makes its queue files durable and links it into `todo/` as
//! before; after the fsync of `todo/` its record is *covered*, and its space may be written
//! again. Every record carries the highest sequence number up to which all records are
//! covered, and a round that covered records writes a mark (a record without a message)
//! saying so.
//!
//! At start, before serving, a worker reads the journal: every intact record beyond the
//! highest covered mark is queued again, with the one-shot mode's syncs, as a new message
//! ([`crate::sequence::requeue`]); then a mark covers them all. A record whose message had
//! been committed after all (a crash between its round and the mark) is then queued twice:
//! at least once, never lost.
//!
//! The record format is the library's ([`qmail::queue::journal`]).

use nix::fcntl::{Flock, FlockArg};
use qmail::queue::journal::{aligned, encode, found, scan, Found, ALIGN, HEAD};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The journal's name in `queue/`.
pub const NAME: &str = "journal";

/// The size made when `control/queuejournal` does not say (KiB).
pub const DEFAULT_KIB: u64 = 8192;

/// The smallest journal worth having (KiB); a smaller size in `control/queuejournal` is this.
pub const MIN_KIB: u64 = 64;

/// The largest (KiB).
pub const MAX_KIB: u64 = 1 << 20;

/// The journal of a running worker.
pub struct Journal {
    file: Flock<File>,
    size: u64,
    /// the test hook's disk error for every write of records (`fail:journal`)
    failing: bool,
    state: Mutex<State>,
    written: Condvar,
}

struct State {
    next_seq: u64,
    pos: u64,
    /// encoded records waiting for the writer, with their offsets
    queued: Vec<(u64, Vec<u8>)>,
    /// the highest sequence number queued
    last_queued: u64,
    /// every record up to this sequence number is durable
    durable: u64,
    writing: bool,
    failed: bool,
    /// records not yet covered: sequence number → offset and length
    open: BTreeMap<u64, (u64, u64)>,
    /// the `covered` the last mark or record said
    said: u64,
}

impl State {
    /// Every record up to this sequence number is covered.
    fn covered(&self) -> u64 {
        self.open.keys().next().map_or(self.next_seq - 1, |s| s - 1)
    }

    /// Where a record of `len` bytes goes, if the ring has room for it: after the last, or at
    /// the start when it would run past the end; never over an open record.
    fn place(&self, len: u64, size: u64) -> Option<u64> {
        let at = if self.pos + len > size { 0 } else { self.pos };
        let clear = self.open.values().all(|&(o, l)| at + len <= o || o + l <= at);
        (at + len <= size && clear).then_some(at)
    }
}

impl Journal {
    /// Open `queue/journal` (the working directory is `queue/`) and take it for this worker:
    /// an exclusive lock held for the process's life (a worker still finishing holds it until
    /// it ends). Made first when missing: `kib` KiB of zeros, synced, then named. `None` with
    /// `kib` 0 (no journal; an old one is removed once nothing in it waits).
    pub fn open(kib: u64) -> io::Result<(Option<Journal>, Found)> {
        if !Path::new(NAME).exists() {
            let none = Found::empty();
            if kib == 0 {
                return Ok((None, none));
            }
            if let Err(e) = make(NAME, kib * 1024) {
                // nothing waits in a journal that never was: serve without one
                qmail::log::line(format_args!("qmail-queue: unable to make queue/{NAME}: {e}"));
                return Ok((None, none));
            }
        }
        let file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(NAME)?;
            let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
            // replaced while we waited (a start before ours resized it): take the new one
            if std::fs::symlink_metadata(NAME)?.ino() == file.metadata()?.ino() {
                break file;
            }
        };
        let meta = file.metadata()?;
        let sizes = MIN_KIB * 1024..=MAX_KIB * 1024;
        if !meta.is_file() || meta.len() % ALIGN as u64 != 0 || !sizes.contains(&meta.len()) {
            // not one we made: read nothing of it (its size bounds what is read)
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a journal of this size"));
        }
        let size = meta.len();
        let mut bytes = Vec::with_capacity(size as usize);
        (&*file).read_to_end(&mut bytes)?;
        let found = found(&scan(&bytes), size);
        let state = State {
            next_seq: found.next_seq,
            pos: found.pos,
            queued: Vec::new(),
            last_queued: found.next_seq - 1,
            durable: found.next_seq - 1,
            writing: false,
            failed: false,
            open: BTreeMap::new(),
            said: 0,
        };
        let journal = Journal {
            file,
            size,
            failing: false,
            state: Mutex::new(state),
            written: Condvar::new(),
        };
        Ok((Some(journal), found))
    }

    /// After the records found at the start are queued again: a mark that covers them, then
    /// the journal made again when `control/queuejournal` asks for another size (or removed
    /// for 0; nothing in it waits any more). `None` when there is no journal from now on.
    pub fn settle(self, kib: u64) -> io::Result<Option<Journal>> {
        self.mark(self.lock())?;
        self.file.sync_data()?;
        if kib * 1024 == self.size {
            return Ok(Some(self));
        }
        if kib == 0 {
            std::fs::remove_file(NAME)?;
            qmail::file::fsync_dir(Path::new("."))?;
            return Ok(None);
        }
        let tmp = format!("{NAME}.new");
        let _ = std::fs::remove_file(&tmp);
        make(&tmp, kib * 1024)?;
        std::fs::rename(&tmp, NAME)?;
        qmail::file::fsync_dir(Path::new("."))?;
        // ours stays locked until we end; the new one is fresh
        drop(self);
        Ok(Self::open(kib)?.0)
    }

    /// Whether a write or sync of the journal failed: nothing this worker writes there is
    /// durable any more.
    pub fn failed(&self) -> bool {
        self.lock().failed
    }

    /// The largest record this journal takes: a quarter of it, so that a few can wait.
    pub fn max_record(&self) -> usize {
        (self.size / 4) as usize
    }

    /// Write a record of message `id` (its file's and envelope's bytes) and wait until it is
    /// durable: its sequence number, or `None` when it does not fit (too large, or the ring
    /// full of open records; the caller then waits for its round as without a journal).
    /// `Err` when the journal's write or sync failed: nothing is durable from this worker any
    /// more (the caller answers as for a failed sync).
    pub fn log(&self, id: u64, mess: &[u8], env: &[u8]) -> io::Result<Option<u64>> {
        let len = aligned(HEAD + mess.len() + env.len()) as u64;
        if len > self.max_record() as u64 {
            return Ok(None);
        }
        let mut st = self.lock();
        if st.failed {
            return Err(io::Error::other("the journal failed"));
        }
        let Some(at) = st.place(len, self.size) else { return Ok(None) };
        let seq = st.next_seq;
        st.next_seq += 1;
        st.open.insert(seq, (at, len));
        let covered = st.covered();
        st.said = st.said.max(covered);
        let bytes = encode(seq, covered, id, mess, env);
        st.queued.push((at, bytes));
        st.pos = at + len;
        st.last_queued = seq;
        self.wait_durable(st, seq).map(|()| Some(seq))
    }

    /// Records `seqs` are covered (their messages' round has synced `todo/`): their space is
    /// free again, and a mark says so when the covered number moved. The mark is written
    /// without a sync of its own: the journal's next `fdatasync` or the queue's next `syncfs`
    /// round takes it to the disk (until then a crash queues those records again: twice, not
    /// lost).
    pub fn cover(&self, seqs: &[u64]) -> io::Result<()> {
        let mut st = self.lock();
        for s in seqs {
            st.open.remove(s);
        }
        if st.covered() <= st.said || st.failed {
            return Ok(());
        }
        self.mark(st).map(drop)
    }

    /// A mark: a record with no message that says how far everything is covered, written
    /// (under the lock, so that nothing is placed over it meanwhile); its sequence number.
    fn mark(&self, mut st: MutexGuard<'_, State>) -> io::Result<u64> {
        if st.failed {
            return Err(io::Error::other("the journal failed"));
        }
        let len = ALIGN as u64;
        let Some(at) = st.place(len, self.size) else { return Ok(0) };
        let seq = st.next_seq;
        st.next_seq += 1;
        // a mark covers itself and everything before it that is not open
        let covered = st.open.keys().next().map_or(seq, |s| s - 1);
        st.said = st.said.max(covered);
        st.pos = at + len;
        if let Err(e) = self.file.write_all_at(&encode(seq, covered, 0, b"", b""), at) {
            st.failed = true;
            return Err(e);
        }
        Ok(seq)
    }

    /// Until record `seq` is durable: a waiter that finds no write running writes everything
    /// queued so far and syncs it; the others wait for that, and one of those still waiting
    /// then writes what was queued meanwhile.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, State>, seq: u64) -> io::Result<()> {
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if st.failed {
                return Err(io::Error::other("the journal failed"));
            }
            if st.writing {
                st = self.written.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.writing = true;
            let batch = std::mem::take(&mut st.queued);
            let upto = st.last_queued;
            drop(st);
            let done = self.write(&batch);
            st = self.lock();
            st.writing = false;
            match done {
                Ok(()) => st.durable = upto,
                Err(ref e) => {
                    st.failed = true;
                    qmail::log::line(format_args!("qmail-queue: unable to write the journal: {e}"));
                }
            }
            self.written.notify_all();
        }
    }

    /// From now on every write of records fails as a disk error would (the test hook
    /// `fail:journal`; the start's own marks are written all the same).
    pub fn fail_writes(&mut self) {
        self.failing = true;
    }

    fn write(&self, batch: &[(u64, Vec<u8>)]) -> io::Result<()> {
        if self.failing {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        for (at, bytes) in batch {
            self.file.write_all_at(bytes, *at)?;
        }
        self.file.sync_data()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A journal of `size` bytes of zeros at `name`: written, synced, then named (a crash leaves
/// no short journal under the name), and the directory synced.
fn make(name: &str, size: u64) -> io::Result<()> {
    let dir = File::open(".")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits())
        .open(".")?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        proc.as_str(),
        &dir,
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )?;
    qmail::file::fsync_dir(Path::new("."))
}

/// `control/queuejournal` in KiB: the default when missing (or without digits, as every
/// number in the control files), 0 for none, else between [`MIN_KIB`] and [`MAX_KIB`].
pub fn wanted_kib(control: &qmail::control::Control) -> qmail::control::Result<u64> {
    let kib = control.int_or("queuejournal", DEFAULT_KIB)?;
    Ok(if kib == 0 { 0 } else { kib.clamp(MIN_KIB, MAX_KIB) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placement: after the last record, at the start when the end is near, never over an
    /// open record.
    #[test]
    fn records_never_go_over_open_ones() {
        let mut st = State {
            next_seq: 1,
            pos: 0,
            queued: Vec::new(),
            last_queued: 0,
            durable: 0,
            writing: false,
            failed: false,
            open: BTreeMap::new(),
            said: 0,
        };
        let size = 4096;
        assert_eq!(st.place(1024, size), Some(0));
        st.open.insert(1, (0, 1024));
        st.pos = 1024;
        assert_eq!(st.place(2048, size), Some(1024));
        st.open.insert(2, (1024, 2048));
        st.pos = 3072;
        assert_eq!(st.place(1024, size), Some(3072));
        assert_eq!(st.place(1536, size), None, "would wrap onto record 1");
        st.open.remove(&1);
        assert_eq!(st.place(1536, size), None, "1024 free at the start only");
        assert_eq!(st.place(1024, size), Some(3072));
        st.pos = 4096;
        assert_eq!(st.place(1024, size), Some(0));
        assert_eq!(st.covered(), 1);
    }
}
