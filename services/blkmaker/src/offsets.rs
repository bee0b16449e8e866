//! Out-of-order completion, in-order acknowledgement: a share's offset may
//! be stored only when it and every share before it in its partition are
//! done, or a restart would skip an unfinished block.

use std::collections::{BTreeMap, BTreeSet};

/// The offsets taken and finished, per partition.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    partitions: BTreeMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    open: BTreeSet<i64>,
    finished: BTreeSet<i64>,
}

impl Offsets {
    /// `offset` of `partition` was taken.
    pub(crate) fn begin(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .open
            .insert(offset);
    }

    /// `offset` of `partition` is done. Returns the highest offset that may
    /// now be stored, if that moved.
    pub(crate) fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        if !p.open.remove(&offset) {
            return None;
        }
        p.finished.insert(offset);
        let first_open = p.open.first().copied().unwrap_or(i64::MAX);
        let storable = p.finished.range(..first_open).next_back().copied()?;
        p.finished = p.finished.split_off(&(storable + 1));
        Some(storable)
    }

    /// How many are taken and not done.
    pub(crate) fn open(&self) -> usize {
        self.partitions.values().map(|p| p.open.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Offsets;

    #[test]
    fn an_offset_is_stored_only_when_everything_before_it_is_done() {
        let mut o = Offsets::default();
        for off in [10, 11, 12] {
            o.begin(0, off);
        }
        o.begin(1, 5);
        assert_eq!(o.finish(0, 12), None, "10 and 11 are still open");
        assert_eq!(o.finish(0, 11), None);
        assert_eq!(o.finish(1, 5), Some(5), "partitions are independent");
        assert_eq!(o.finish(0, 10), Some(12));
        assert_eq!(o.open(), 0);
        assert_eq!(o.finish(0, 10), None, "finishing twice stores nothing");
        o.begin(0, 13);
        assert_eq!(o.finish(0, 13), Some(13));
    }
}
