//! spare: buffers a long-lived worker keeps for its next session or delivery.
//!
//! A worker serves one session (or makes one delivery) after another; a 64 KiB buffer made
//! fresh for each cost its allocation, a clear, and, once freed, glibc giving the top of the
//! heap back to the kernel and faulting it in again (bench/README.md, "Twenty local slots, 4 ms
//! between message syncs"). A [`Spare`] is taken from a per-thread keep and given back when
//! dropped. Full-length buffers ([`Spare::sized`]) and empty ones with room
//! ([`Spare::empty`]) are kept apart, so that neither is cleared again.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    /// Kept buffers: full-length ones, then empty ones.
    static KEPT: RefCell<[Vec<Vec<u8>>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// The most buffers of each kind a thread keeps (a session uses one of each at a time).
const KEPT_MAX: usize = 2;

/// A buffer taken from the thread's keep (or made), given back when dropped. What an earlier
/// user left in it is never read: its users read only what they wrote since (a read buffer's
/// filled range, a `Vec`'s length), as they would in memory fresh from the allocator.
pub struct Spare {
    v: Vec<u8>,
    kind: usize,
}

impl Spare {
    fn take(kind: usize) -> Vec<u8> {
        KEPT.with_borrow_mut(|k| k[kind].pop()).unwrap_or_default()
    }

    /// `len` bytes (zero only where never written before).
    pub fn sized(len: usize) -> Spare {
        let mut v = Spare::take(0);
        v.resize(len, 0);
        Spare { v, kind: 0 }
    }

    /// Empty, with room for `capacity` bytes.
    pub fn empty(capacity: usize) -> Spare {
        let mut v = Spare::take(1);
        v.clear();
        v.reserve(capacity);
        Spare { v, kind: 1 }
    }
}

impl Deref for Spare {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.v
    }
}

impl DerefMut for Spare {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.v
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        // a thread that is ending has no more sessions: nothing to keep
        let _ = KEPT.try_with(|k| {
            let kept = &mut k.borrow_mut()[self.kind];
            if kept.len() < KEPT_MAX {
                kept.push(v);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_come_back_to_the_next_user_of_their_kind() {
        const LEN: usize = 64 * 1024;
        let (read, data) = (Spare::sized(LEN), Spare::empty(LEN));
        assert_eq!((read.len(), data.len()), (LEN, 0));
        assert!(data.capacity() >= LEN);
        let (read_at, data_at) = (read.as_ptr(), data.as_ptr());
        let mut data = data;
        data.extend_from_slice(b"the last session's bytes");
        drop((read, data));
        // the next session on this thread gets the same memory, each of its own kind, and
        // an empty buffer stays empty
        let (read, data) = (Spare::sized(LEN), Spare::empty(LEN));
        assert_eq!((read.as_ptr(), data.as_ptr()), (read_at, data_at));
        assert_eq!((read.len(), data.len()), (LEN, 0));
        // no more are kept than a session uses
        let many: Vec<Spare> = (0..KEPT_MAX + 3).map(|_| Spare::sized(16)).collect();
        drop(many);
        assert_eq!(KEPT.with_borrow(|k| k[0].len()), KEPT_MAX);
    }
}
