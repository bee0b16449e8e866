//! Session indexes: the low three bytes of extranonce1, unique on this server.
//!
//! Allocated round-robin over 2^24 so a freed index is not reused at once (a
//! late share from a closed session can never be credited to a new one), and
//! freed when the connection's guard drops. A process starts at a random
//! index: a restarted server (same server id) would otherwise hand its
//! predecessor's extranonce1s out again, in nearly the same order, and a
//! miner that restarts its extranonce2 and nonces from zero on a job both
//! processes hold would repeat work the dead one already credited.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// 2^24 indexes per server id.
pub(crate) const SPACE: u32 = 1 << 24;

#[derive(Debug, Default)]
struct Inner {
    next: u32,
    used: HashSet<u32>,
}

/// The allocator, shared by connections.
#[derive(Debug, Clone, Default)]
pub struct SessionIds {
    inner: Arc<Mutex<Inner>>,
}

/// An index held by one connection; released on drop.
#[derive(Debug)]
pub struct SessionIndex {
    index: u32,
    ids: SessionIds,
}

impl SessionIndex {
    /// The index (below 2^24).
    pub fn get(&self) -> u32 {
        self.index
    }
}

impl Drop for SessionIndex {
    fn drop(&mut self) {
        self.ids
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used
            .remove(&self.index);
    }
}

impl SessionIds {
    /// An allocator starting at a random index.
    pub fn new() -> Self {
        Self::starting_at(rand::random_range(0..SPACE))
    }

    /// An allocator whose first index is `start` (mod 2^24).
    pub fn starting_at(start: u32) -> Self {
        SessionIds {
            inner: Arc::new(Mutex::new(Inner {
                next: start % SPACE,
                used: HashSet::new(),
            })),
        }
    }

    /// The next free index, or `None` when all 2^24 are taken.
    pub fn allocate(&self) -> Option<SessionIndex> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.used.len() >= SPACE as usize {
            return None;
        }
        loop {
            let candidate = inner.next;
            inner.next = (inner.next + 1) % SPACE;
            if inner.used.insert(candidate) {
                return Some(SessionIndex {
                    index: candidate,
                    ids: self.clone(),
                });
            }
        }
    }

    /// Indexes in use.
    pub fn in_use(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_and_released_on_drop() {
        let ids = SessionIds::starting_at(SPACE - 1);
        let a = ids.allocate().expect("free");
        let b = ids.allocate().expect("free");
        assert_eq!((a.get(), b.get()), (SPACE - 1, 0), "wraps within 2^24");
        drop(a);
        assert_eq!(ids.in_use(), 1);
        assert_eq!(ids.allocate().expect("free").get(), 1, "not reused at once");
    }

    #[test]
    fn a_new_process_does_not_start_where_its_predecessor_did() {
        let starts: HashSet<u32> = (0..4)
            .map(|_| SessionIds::new().allocate().expect("free").get())
            .collect();
        assert_eq!(starts.len(), 4, "{starts:?}");
    }
}
