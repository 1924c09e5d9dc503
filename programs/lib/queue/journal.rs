//! The queue journal's record format (doc/INTERNALS.md, "The queue journal"): the queue
//! service writes a record of each message it answers before its round into `queue/journal`,
//! and a worker reads them back at start. The I/O is the service's
//! (`programs/qmail-queue/journal.rs`); this is the bounded codec, fuzzed by the target
//! `queuejournal`.
//!
//! Layout (little-endian; each record begins at a multiple of [`ALIGN`]):
//! `magic[8] seq:u64 covered:u64 id:u64 mess_len:u32 env_len:u32 crc:u32 zero:u32`, then the
//! message file's bytes and the envelope's, then zeros to the next multiple of [`ALIGN`].
//! `crc` is CRC-32 over the header (with `crc` zero) and the two byte strings. A record of
//! id 0 and no bytes is a mark: it only says how far everything is covered.

use std::collections::BTreeMap;

/// Records begin at multiples of this.
pub const ALIGN: usize = 512;

/// The first bytes of every record.
pub const MAGIC: &[u8; 8] = b"qjournl1";
/// A record's header.
pub const HEAD: usize = 48;

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
pub fn aligned(n: usize) -> usize {
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
    /// the sequence number the next record takes
    pub next_seq: u64,
    /// where the next record goes (the end of the newest one)
    pub pos: u64,
}

impl Found {
    /// An empty journal's.
    pub fn empty() -> Found {
        Found { uncovered: Vec::new(), next_seq: 1, pos: 0 }
    }
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

    /// Valid records with bytes changed, cut or shifted (what the fuzz target does, a few
    /// thousand times, deterministically): nothing panics, what is found decodes to itself.
    #[test]
    fn mutated_journals_never_panic() {
        let mut ring = Vec::new();
        for i in 0..6u64 {
            ring.extend(encode(i + 1, i, 100 + i, &vec![b'm'; (i * 300) as usize], b"u0\0Ta\0"));
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut m = ring.clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            let cut = (next() as usize) % (m.len() + 1);
            let m = &m[(next() as usize % 64).min(cut)..cut];
            let recs = scan(m);
            for (at, r) in recs.values() {
                assert_eq!(&decode(&m[*at..]).unwrap().0, r);
            }
            let _ = found(&recs, m.len() as u64);
        }
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
}
