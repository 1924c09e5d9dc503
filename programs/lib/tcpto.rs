//! tcpto: the table of remote hosts that timed out, `queue/lock/tcpto` (doc/qmail-tcpto.8,
//! doc/qmail-tcpok.8), shared by qmail-remote, qmail-rspawn, qmail-tcpto and qmail-tcpok.
//!
//! The file is 1024 bytes: 64 records of 16 bytes, each bytes 0–3 an IPv4 address, byte 4
//! the count of recent connect timeouts (0–10), bytes 8–11 the time of the last one
//! (little-endian seconds), the other bytes unused — upstream's layout, so the file can be
//! read by upstream's tools. IPv6 addresses are not recorded (there is no room in a record);
//! an IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! [`Table`] is the pure part (decode, the skip rule, recording); [`with_locked`] opens the
//! file, takes an exclusive `flock`, loads the table, runs a closure, writes it back when
//! changed. A file that is missing or shorter than 1024 bytes reads as zeros (upstream
//! ignores a table it cannot read: the worst case is trying a dead host again).
//!
//! Security: the file is written by the queue owner only; its bytes are still treated as
//! untrusted (any content decodes; counts are capped).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The size of the file.
pub const SIZE: usize = 1024;
/// Records in the file.
pub const RECORDS: usize = SIZE / 16;
/// The highest count kept.
pub const MAX_COUNT: u8 = 10;

/// One record with a count of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ip: Ipv4Addr,
    pub count: u8,
    /// Seconds since the epoch of the last timeout.
    pub when: u32,
}

/// The decoded table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    bytes: [u8; SIZE],
}

impl Default for Table {
    fn default() -> Self {
        Table { bytes: [0; SIZE] }
    }
}

/// The IPv4 address the table would record `ip` under, if any.
pub fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

impl Table {
    /// The table from the file's bytes; missing bytes count as zeros, extra ones are ignored.
    pub fn decode(data: &[u8]) -> Self {
        let mut t = Table::default();
        let n = data.len().min(SIZE);
        t.bytes[..n].copy_from_slice(&data[..n]);
        t
    }

    pub fn bytes(&self) -> &[u8; SIZE] {
        &self.bytes
    }

    fn record(&self, i: usize) -> Entry {
        let r = &self.bytes[i * 16..i * 16 + 16];
        Entry {
            ip: Ipv4Addr::new(r[0], r[1], r[2], r[3]),
            count: r[4].min(MAX_COUNT),
            when: u32::from_le_bytes([r[8], r[9], r[10], r[11]]),
        }
    }

    fn set(&mut self, i: usize, e: Entry) {
        let r = &mut self.bytes[i * 16..i * 16 + 16];
        r.fill(0);
        r[..4].copy_from_slice(&e.ip.octets());
        r[4] = e.count;
        r[8..12].copy_from_slice(&e.when.to_le_bytes());
    }

    /// Every record with a count of at least 1, in file order.
    pub fn entries(&self) -> Vec<Entry> {
        (0..RECORDS).map(|i| self.record(i)).filter(|e| e.count > 0).collect()
    }

    fn find(&self, ip: Ipv4Addr) -> Option<usize> {
        (0..RECORDS).find(|&i| {
            let e = self.record(i);
            e.count > 0 && e.ip == ip
        })
    }

    /// Skip `ip` now? When it has 2 or more recent timeouts and the last one is younger than
    /// `(60 + (pid & 31)) * 64` seconds.
    pub fn is_dead(&self, ip: IpAddr, now: u64, pid: u32) -> bool {
        let Some(ip) = v4(ip) else { return false };
        let Some(i) = self.find(ip) else { return false };
        let e = self.record(i);
        let window = (60 + u64::from(pid & 31)) * 64;
        e.count >= 2 && now.saturating_sub(u64::from(e.when)) < window
    }

    /// Record a connect timeout of `ip` at `now`. Returns whether the table changed.
    pub fn timed_out(&mut self, ip: IpAddr, now: u64) -> bool {
        let Some(ip) = v4(ip) else { return false };
        let now32 = u32::try_from(now).unwrap_or(u32::MAX);
        if let Some(i) = self.find(ip) {
            let e = self.record(i);
            if now.saturating_sub(u64::from(e.when)) < 120 {
                return false;
            }
            self.set(i, Entry { ip, count: (e.count + 1).min(MAX_COUNT), when: now32 });
            return true;
        }
        let slot = (0..RECORDS).find(|&i| self.record(i).count == 0).unwrap_or_else(|| {
            // every record in use: evict the one with the smallest when + count * 1024
            (0..RECORDS)
                .min_by_key(|&i| {
                    let e = self.record(i);
                    u64::from(e.when) + u64::from(e.count) * 1024
                })
                .unwrap_or(0)
        });
        self.set(slot, Entry { ip, count: 1, when: now32 });
        true
    }

    /// A successful connect to `ip`: its count becomes 0. Returns whether the table changed.
    pub fn connected(&mut self, ip: IpAddr) -> bool {
        let Some(ip) = v4(ip) else { return false };
        match self.find(ip) {
            Some(i) => {
                self.bytes[i * 16 + 4] = 0;
                true
            }
            None => false,
        }
    }
}

/// Open `path` read-write (creating it with mode 0644 when `create`), lock it exclusively,
/// run `f` on its table, write the table back if `f` says it changed. The lock is released
/// when the file closes.
pub fn with_locked<T>(
    path: &Path,
    create: bool,
    f: impl FnOnce(&mut Table) -> (bool, T),
) -> io::Result<T> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().read(true).write(true).create(create).mode(0o644).open(path)?;
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    let mut data = Vec::with_capacity(SIZE);
    (&mut *file as &mut File).take(SIZE as u64).read_to_end(&mut data)?;
    let mut table = Table::decode(&data);
    let (changed, out) = f(&mut table);
    if changed {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(table.bytes())?;
    }
    Ok(out)
}

/// Overwrite the table at `path` with zeros under the lock (qmail-tcpok, qmail-rspawn's start).
pub fn clear(path: &Path, create: bool) -> io::Result<()> {
    with_locked(path, create, |t| {
        *t = Table::default();
        (true, ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn timeouts_count_and_expire() {
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        assert!(!t.is_dead(a, 1000, 0));
        assert!(t.timed_out(a, 1000));
        assert!(!t.is_dead(a, 1000, 0), "one timeout is not enough");
        assert!(!t.timed_out(a, 1100), "a second timeout within 120 s is not counted");
        assert!(t.timed_out(a, 1200));
        assert_eq!(t.entries(), [Entry { ip: "192.0.2.1".parse().unwrap(), count: 2, when: 1200 }]);
        assert!(t.is_dead(a, 1200, 0));
        assert!(t.is_dead(a, 1200 + 60 * 64 - 1, 0));
        assert!(!t.is_dead(a, 1200 + 60 * 64, 0));
        assert!(t.is_dead(a, 1200 + 60 * 64, 31), "the window depends on the pid");
        assert!(!t.is_dead(a, 1200 + 91 * 64, 31));
        assert!(!t.is_dead(ip("192.0.2.2"), 1200, 0));
        assert!(t.connected(a));
        assert!(!t.is_dead(a, 1200, 0));
        assert!(t.entries().is_empty());
    }

    #[test]
    fn counts_are_capped() {
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        for k in 0..20u64 {
            t.timed_out(a, 10_000 + k * 200);
        }
        assert_eq!(t.entries()[0].count, MAX_COUNT);
    }

    #[test]
    fn a_full_table_evicts_the_oldest() {
        let mut t = Table::default();
        for i in 0..RECORDS as u8 {
            t.timed_out(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 100_000 + u64::from(i));
        }
        assert_eq!(t.entries().len(), RECORDS);
        t.timed_out(ip("192.0.2.9"), 200_000);
        let e = t.entries();
        assert_eq!(e.len(), RECORDS);
        assert!(e.iter().any(|e| e.ip == Ipv4Addr::new(192, 0, 2, 9)));
        assert!(!e.iter().any(|e| e.ip == Ipv4Addr::new(10, 0, 0, 0)), "the oldest went");
    }

    #[test]
    fn ipv6_is_not_recorded_but_mapped_ipv4_is() {
        let mut t = Table::default();
        assert!(!t.timed_out(ip("2001:db8::1"), 1000));
        assert!(t.entries().is_empty());
        assert!(t.timed_out(ip("::ffff:192.0.2.7"), 1000));
        assert_eq!(t.entries()[0].ip, Ipv4Addr::new(192, 0, 2, 7));
    }

    #[test]
    fn any_bytes_decode() {
        let junk: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let t = Table::decode(&junk);
        assert!(t.entries().iter().all(|e| e.count <= MAX_COUNT));
        assert_eq!(Table::decode(b"short").bytes().len(), SIZE);
        assert!(Table::decode(b"").entries().is_empty());
    }

    #[test]
    fn the_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("qmail-tcpto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tcpto");
        assert!(with_locked(&path, false, |_| (false, ())).is_err(), "not created");
        with_locked(&path, true, |t| (t.timed_out(ip("192.0.2.3"), 5000), ())).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), SIZE);
        let e = with_locked(&path, false, |t| (false, t.entries())).unwrap();
        assert_eq!(e[0].ip, Ipv4Addr::new(192, 0, 2, 3));
        clear(&path, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; SIZE]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
