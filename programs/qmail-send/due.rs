//! Message ids waiting for a time, earliest first: a channel's messages waiting for their
//! next attempt and the messages waiting for completion (doc/INTERNALS.md, "qmail-send's
//! cycle").

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Retry after trouble with the file system.
pub const TROUBLE: i64 = 123;

#[derive(Default)]
pub struct Due(BinaryHeap<Reverse<(i64, u64)>>);

impl Due {
    pub fn push(&mut self, at: i64, id: u64) {
        self.0.push(Reverse((at, id)));
    }

    /// The earliest time waited for.
    pub fn next(&self) -> Option<i64> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest id, if it is due by `now`.
    pub fn pop(&mut self, now: i64) -> Option<u64> {
        let Reverse((at, id)) = *self.0.peek()?;
        if at > now {
            return None;
        }
        self.0.pop();
        Some(id)
    }

    /// Make every id due at `now`.
    pub fn all_at(&mut self, now: i64) {
        let all: Vec<_> = self.0.drain().map(|Reverse((_, id))| Reverse((now, id))).collect();
        self.0.extend(all);
    }
}
