//! The queue journal (doc/INTERNALS.md, "The queue journal"; doc/DECISIONS.md 51): the queue
//! service's commit for a message that fits, so that its answer does not wait for the round
//! that makes its queue files durable.
//!
//! `queue/journal` is a file of fixed size, written full of zeros once (its blocks allocated
//! and written, so overwriting it changes no metadata), used as a ring of records. A record
//! holds a message's file and envelope as the queue has them; the records of messages
//! written at the same time go in one write and one `fdatasync` (a group commit, leader and
//! followers as the sync rounds), and a message is answered 0 once its record is durable. The
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
//! Record layout (little-endian; each record begins at a multiple of [`ALIGN`]):
//! `magic[8] seq:u64 covered:u64 id:u64 mess_len:u32 env_len:u32 crc:u32 zero:u32`, then the
//! message file's bytes and the envelope's, then zeros to the next multiple of [`ALIGN`].
//! `crc` is CRC-32 over the header (with `crc` zero) and the two byte strings. A record of
//! id 0 and no bytes is a mark.

use nix::fcntl::{Flock, FlockArg};
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

/// Records begin at multiples of this.
pub const ALIGN: usize = 512;

const MAGIC: &[u8; 8] = b"qjournl1";
const HEAD: usize = 48;

/// A record read back: a message the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub covered: u64,
    pub id: u64,
    pub mess: Vec<u8>,
    pub env: Vec<u8>,
}

/// `n` rounded up to [`ALIGN`].
fn aligned(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The bytes of one record, padded.
pub fn encode(seq: u64, covered: u64, id: u64, mess: &[u8], env: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(aligned(HEAD + mess.len() + env.len()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&covered.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u32::try_from(mess.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(env.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(mess);
    out.extend_from_slice(env);
    let crc = checksum(&out[..HEAD], &out[HEAD..]);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out.resize(aligned(out.len()), 0);
    out
}

/// CRC-32 of a header (its `crc` field taken as zero) and the payload after it.
fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..40]);
    h.update(&[0; 4]);
    h.update(&head[44..HEAD]);
    h.update(payload);
    h.finalize()
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap_or_default())
}

/// The record at the start of `at`, if an intact one begins there, and its padded length.
/// Bounded by `at` itself: lengths that run past it, a wrong magic, a checksum that does not
/// match, all are "no record here".
pub fn decode(at: &[u8]) -> Option<(Record, usize)> {
    if at.len() < HEAD || &at[..8] != MAGIC || le32(&at[44..]) != 0 {
        return None;
    }
    let (mlen, elen) = (le32(&at[32..]) as usize, le32(&at[36..]) as usize);
    let end = HEAD.checked_add(mlen)?.checked_add(elen)?;
    if end > at.len() || checksum(&at[..HEAD], &at[HEAD..end]) != le32(&at[40..]) {
        return None;
    }
    let record = Record {
        seq: le64(&at[8..]),
        covered: le64(&at[16..]),
        id: le64(&at[24..]),
        mess: at[HEAD..HEAD + mlen].to_vec(),
        env: at[HEAD + mlen..end].to_vec(),
    };
    Some((record, aligned(end)))
}

/// What a journal's bytes hold: the intact records with their offsets, by sequence number.
pub fn scan(bytes: &[u8]) -> BTreeMap<u64, (usize, Record)> {
    let mut found = BTreeMap::new();
    let mut at = 0;
    while at + HEAD <= bytes.len() {
        match decode(&bytes[at..]) {
            Some((r, len)) => {
                found.insert(r.seq, (at, r));
                at += len;
            }
            None => at += ALIGN,
        }
    }
    found
}

/// What the start of a worker learned from the journal: the records to queue again, and
/// where writing goes on.
pub struct Found {
    /// intact records beyond the highest covered mark, oldest first (marks left out)
    pub uncovered: Vec<Record>,
    next_seq: u64,
    pos: u64,
}

/// From a scan: the highest `covered` of all records is the mark; the newest record's end is
/// where writing goes on.
pub fn found(records: &BTreeMap<u64, (usize, Record)>, size: u64) -> Found {
    let covered = records.values().map(|(_, r)| r.covered).max().unwrap_or(0);
    let uncovered = records
        .range(covered.saturating_add(1)..)
        .map(|(_, (_, r))| r)
        .filter(|r| r.id != 0)
        .cloned()
        .collect();
    let (next_seq, pos) = match records.last_key_value() {
        Some((&seq, (at, r))) => {
            let end = *at as u64 + aligned(HEAD + r.mess.len() + r.env.len()) as u64;
            (seq + 1, if end >= size { 0 } else { end })
        }
        None => (1, 0),
    };
    Found { uncovered, next_seq, pos }
}

/// The journal of a running worker.
pub struct Journal {
    file: Flock<File>,
    size: u64,
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
            let none = Found { uncovered: Vec::new(), next_seq: 1, pos: 0 };
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
        if !meta.is_file() || meta.len() % ALIGN as u64 != 0 || meta.len() < MIN_KIB * 1024 {
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
        let journal = Journal { file, size, state: Mutex::new(state), written: Condvar::new() };
        Ok((Some(journal), found))
    }

    /// After the records found at the start are queued again: a mark that covers them, then
    /// the journal made again when `control/queuejournal` asks for another size (or removed
    /// for 0; nothing in it waits any more). `None` when there is no journal from now on.
    pub fn settle(self, kib: u64) -> io::Result<Option<Journal>> {
        self.mark()?;
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
    /// free again, and a mark says so when the covered number moved.
    pub fn cover(&self, seqs: &[u64]) -> io::Result<()> {
        let mut st = self.lock();
        for s in seqs {
            st.open.remove(s);
        }
        if st.covered() <= st.said || st.failed {
            return Ok(());
        }
        drop(st);
        self.mark()
    }

    /// A mark: a record with no message that says how far everything is covered.
    fn mark(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.failed {
            return Err(io::Error::other("the journal failed"));
        }
        let len = ALIGN as u64;
        let Some(at) = st.place(len, self.size) else { return Ok(()) };
        let seq = st.next_seq;
        st.next_seq += 1;
        let covered = seq;
        // a mark covers itself and everything before it that is not open
        let covered = st.open.keys().next().map_or(covered, |s| s - 1);
        st.said = st.said.max(covered);
        st.queued.push((at, encode(seq, covered, 0, b"", b"")));
        st.pos = at + len;
        st.last_queued = seq;
        self.wait_durable(st, seq)
    }

    /// Until record `seq` is durable: the first waiter writes everything queued (and goes on
    /// while more is queued), the others wait for it.
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

    fn write(&self, batch: &[(u64, Vec<u8>)]) -> io::Result<()> {
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

    #[test]
    fn a_record_round_trips_and_a_flipped_bit_is_no_record() {
        let bytes = encode(7, 5, 1234, b"Received: x\nbody\n", b"u0\0p1\0Fa@b\0Tc@d\0");
        assert_eq!(bytes.len() % ALIGN, 0);
        let (r, len) = decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!((r.seq, r.covered, r.id), (7, 5, 1234));
        assert_eq!(r.mess, b"Received: x\nbody\n");
        assert_eq!(r.env, b"u0\0p1\0Fa@b\0Tc@d\0");
        for i in [0, 9, 20, 30, 33, 41, 50, 60] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_none(), "bit flipped at {i}");
        }
        assert!(decode(&bytes[..HEAD + 3]).is_none(), "cut short");
    }

    /// Hostile lengths and garbage: nothing panics, nothing is read past the buffer.
    #[test]
    fn garbage_is_no_record() {
        let mut head = encode(1, 0, 1, b"", b"");
        head[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        head[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&head).is_none());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = vec![0u8; 64 * 1024];
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        noise[4096..4104].copy_from_slice(MAGIC);
        assert!(scan(&noise).is_empty());
        assert!(scan(&[]).is_empty());
        assert!(scan(MAGIC).is_empty());
    }

    /// A ring: records and marks, old ones from a lap before; what is beyond the highest
    /// covered number is uncovered, marks are not messages, and writing goes on after the
    /// newest record.
    #[test]
    fn what_a_scan_finds() {
        let size = 64 * 1024;
        let mut ring = vec![0u8; size];
        let mut put = |at: usize, b: Vec<u8>| ring[at..at + b.len()].copy_from_slice(&b);
        put(0, encode(10, 8, 100, b"m10", b"e10"));
        put(512, encode(11, 9, 0, b"", b""));
        put(1024, encode(12, 9, 102, b"m12", b"e12"));
        put(1536, encode(13, 10, 103, &[b'x'; 700], b"e13"));
        put(8192, encode(3, 1, 50, b"old", b"old"));
        let recs = scan(&ring);
        assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [3, 10, 11, 12, 13]);
        let f = found(&recs, size as u64);
        let ids: Vec<u64> = f.uncovered.iter().map(|r| r.id).collect();
        assert_eq!(ids, [102, 103], "beyond covered 10, marks left out");
        assert_eq!((f.next_seq, f.pos), (14, 1536 + 1024));
        let empty = found(&BTreeMap::new(), size as u64);
        assert!(empty.uncovered.is_empty());
        assert_eq!((empty.next_seq, empty.pos), (1, 0));
    }

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
