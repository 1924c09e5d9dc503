//! pbsdbd's cache: who logged in, until when, with what environment — in bounded memory.
//!
//! Upstream keeps dnscache's cache: a fixed memory area holding a ring of entries, a hash
//! table of chains into it, and chain walks cut short after 100 steps against hash flooding.
//! This is a simpler structure with the same observable behaviour (doc/DECISIONS.md, 34):
//!
//! - bounded memory: every entry is charged what it would take in upstream's ring
//!   ([`OVERHEAD`] + 4 address bytes + its env-block) against `pbscachesize`;
//! - the oldest entries are dropped first to make room, and a re-added address gets a new
//!   entry at the young end (its old one is dropped when the ring reaches it, as upstream);
//! - an entry found after its expiry is a miss (and is forgotten);
//! - the index is std's `HashMap` with its per-process random SipHash keys, so no one can
//!   choose addresses that collide: lookups stay O(1) without a step limit.

use qmail::pbs::EnvBlock;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

/// What an entry costs besides its key and env-block in upstream's ring: a 4-byte link,
/// a 4-byte expiry, a 4-byte env length and a 1-byte key length.
pub const OVERHEAD: usize = 13;

pub struct Cache {
    limit: usize,
    used: usize,
    /// entries, oldest first; `first` is the sequence number of the front one
    ring: VecDeque<Entry>,
    first: u64,
    /// the sequence number of each address's newest entry
    index: HashMap<Ipv4Addr, u64>,
}

struct Entry {
    addr: Ipv4Addr,
    expires: Instant,
    env: EnvBlock,
    cost: usize,
}

impl Cache {
    /// A cache charging at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Cache { limit, used: 0, ring: VecDeque::new(), first: 0, index: HashMap::new() }
    }

    /// Remember `addr` with `env` until `expires`, dropping the oldest entries to make
    /// room. False when the entry alone is bigger than the whole cache.
    pub fn add(&mut self, addr: Ipv4Addr, env: EnvBlock, expires: Instant) -> bool {
        let cost = OVERHEAD + 4 + env.encoded_len();
        if cost > self.limit {
            return false;
        }
        while self.used + cost > self.limit {
            self.drop_oldest();
        }
        let seq = self.first + self.ring.len() as u64;
        self.ring.push_back(Entry { addr, expires, env, cost });
        self.used += cost;
        self.index.insert(addr, seq);
        true
    }

    /// Charge at most `limit` bytes from now on, dropping the oldest entries to get there.
    pub fn resize(&mut self, limit: usize) {
        self.limit = limit;
        while self.used > self.limit {
            self.drop_oldest();
        }
    }

    /// The env-block of `addr` if it has an entry that has not expired at `now`.
    pub fn get(&mut self, addr: Ipv4Addr, now: Instant) -> Option<&EnvBlock> {
        let seq = *self.index.get(&addr)?;
        // the index only holds sequence numbers of entries still in the ring
        let at = usize::try_from(seq - self.first).ok()?;
        if self.ring[at].expires <= now {
            self.index.remove(&addr);
            return None;
        }
        Some(&self.ring[at].env)
    }

    /// The bytes charged now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used
    }

    fn drop_oldest(&mut self) {
        let Some(old) = self.ring.pop_front() else { return };
        self.used -= old.cost;
        if self.index.get(&old.addr) == Some(&self.first) {
            self.index.remove(&old.addr);
        }
        self.first += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + n)
    }

    fn env(value: &str) -> EnvBlock {
        let mut b = EnvBlock::new();
        b.push(b"V", value.as_bytes()).unwrap();
        b
    }

    const LATER: Duration = Duration::from_secs(600);

    #[test]
    fn entries_expire_on_read() {
        let now = Instant::now();
        let mut c = Cache::new(1000);
        assert!(c.add(ip(1), env("a"), now + Duration::from_secs(1)));
        assert_eq!(c.get(ip(1), now), Some(&env("a")));
        assert_eq!(c.get(ip(2), now), None);
        assert_eq!(c.get(ip(1), now + Duration::from_secs(1)), None);
        // forgotten: even a clock going back does not bring it back
        assert_eq!(c.get(ip(1), now), None);
    }

    #[test]
    fn the_newest_entry_of_an_address_answers() {
        let now = Instant::now();
        let mut c = Cache::new(1000);
        c.add(ip(1), env("old"), now + LATER);
        c.add(ip(1), env("new"), now + LATER);
        assert_eq!(c.get(ip(1), now), Some(&env("new")));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_go_first() {
        let now = Instant::now();
        let cost = OVERHEAD + 4 + env("x").encoded_len();
        let mut c = Cache::new(10 * cost);
        for n in 0..1000 {
            assert!(c.add(ip(n), env("x"), now + LATER));
            assert!(c.used() <= 10 * cost);
        }
        for n in 0..990 {
            assert_eq!(c.get(ip(n), now), None, "{n}");
        }
        for n in 990..1000 {
            assert_eq!(c.get(ip(n), now), Some(&env("x")), "{n}");
        }
        assert!(c.index.len() <= 10 && c.ring.len() == 10);
    }

    /// A re-added address keeps its new entry when the ring drops its old one.
    #[test]
    fn dropping_an_old_entry_keeps_a_newer_one() {
        let now = Instant::now();
        let cost = OVERHEAD + 4 + env("x").encoded_len();
        let mut c = Cache::new(3 * cost);
        c.add(ip(1), env("x"), now + LATER);
        c.add(ip(2), env("x"), now + LATER);
        c.add(ip(1), env("y"), now + LATER);
        c.add(ip(3), env("x"), now + LATER); // drops ip(1)'s first entry
        assert_eq!(c.get(ip(1), now), Some(&env("y")));
        assert_eq!(c.get(ip(2), now), Some(&env("x")));
    }

    #[test]
    fn shrinking_drops_the_oldest() {
        let now = Instant::now();
        let cost = OVERHEAD + 4 + env("x").encoded_len();
        let mut c = Cache::new(10 * cost);
        for n in 0..10 {
            c.add(ip(n), env("x"), now + LATER);
        }
        c.resize(3 * cost);
        assert_eq!(c.used(), 3 * cost);
        assert_eq!(c.get(ip(6), now), None);
        assert_eq!(c.get(ip(7), now), Some(&env("x")));
    }

    #[test]
    fn an_entry_bigger_than_the_cache_is_refused() {
        let mut c = Cache::new(20);
        assert!(!c.add(ip(1), env("too long for twenty bytes"), Instant::now() + LATER));
        assert_eq!(c.used(), 0);
    }
}
