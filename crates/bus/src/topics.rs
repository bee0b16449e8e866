//! The pool's topics and how the broker keeps each (ARCHITECTURE.md §4),
//! declared once here: `sluicectl create-topics` applies them to a cluster,
//! and the tests' rigs create their scratch topics the same way.

use crate::TopicNames;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How the broker drops a topic's old records (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Records older than the retention are deleted. Every pool topic is a
    /// log of events in time (templates, jobs, shares, blocks, events),
    /// whose keys are unique or must all be kept, so none is compacted.
    Delete,
}

impl Cleanup {
    /// The value of `cleanup.policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
        }
    }
}

/// A topic and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Copies of every partition (1 on a single broker, 3 on a cluster).
    pub replication: i32,
    /// `retention.ms`.
    pub retention_ms: u64,
    /// `cleanup.policy`.
    pub cleanup: Cleanup,
    /// `min.insync.replicas`: how many copies must have a record before an
    /// `acks=all` producer (every Sluice producer) is told it is written.
    /// With 3 copies, 2: a share or a block candidate the pool has been told
    /// is stored survives the loss of any one broker, and one broker may be
    /// down without stopping the pool. With fewer copies it is 1.
    pub min_insync_replicas: i32,
}

impl TopicSpec {
    /// A topic of `replication` copies with the matching
    /// `min.insync.replicas`, deleting records after `retention_ms`.
    pub fn new(name: &str, partitions: i32, replication: i32, retention_ms: u64) -> Self {
        TopicSpec {
            name: name.to_owned(),
            partitions,
            replication,
            retention_ms,
            cleanup: Cleanup::Delete,
            min_insync_replicas: min_insync_replicas(replication),
        }
    }

    /// A scratch topic for tests and benchmarks: one copy, kept an hour.
    pub fn scratch(name: &str, partitions: i32) -> Self {
        TopicSpec::new(name, partitions, 1, HOUR_MS)
    }

    /// The topic-level settings as the broker names them, besides
    /// `max.message.bytes`, which comes from the client's configuration.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", self.cleanup.as_str().to_owned()),
            ("retention.ms", self.retention_ms.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
        ]
    }
}

/// Two of three (or more) copies; one when there are fewer than three.
fn min_insync_replicas(replication: i32) -> i32 {
    if replication >= 3 { 2 } else { 1 }
}

/// What an operator chooses about the pool's topics (sluicectl.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLayout {
    /// Partitions of the Share topic: the most statshttpd instances that
    /// can share its load.
    pub share_partitions: i32,
    /// Copies of every partition.
    pub replication: i32,
}

impl Default for TopicLayout {
    fn default() -> Self {
        TopicLayout {
            share_partitions: 4,
            replication: 1,
        }
    }
}

impl TopicNames {
    /// The pool's five topics with their settings. Templates and jobs are
    /// read from the tail and matter for hours; shares are kept a week for
    /// statshttpd to rebuild from; block candidates and events, rare and
    /// precious, four and two weeks. Everything but shares has one
    /// partition: its readers need one order.
    pub fn specs(&self, layout: TopicLayout) -> Vec<TopicSpec> {
        let r = layout.replication;
        vec![
            TopicSpec::new(&self.raw_gbt, 1, r, 6 * HOUR_MS),
            TopicSpec::new(&self.job, 1, r, 6 * HOUR_MS),
            TopicSpec::new(&self.share, layout.share_partitions, r, 7 * DAY_MS),
            TopicSpec::new(&self.solved_share, 1, r, 28 * DAY_MS),
            TopicSpec::new(&self.event, 1, r, 14 * DAY_MS),
        ]
    }

    /// Every name, in the order of [`TopicNames::specs`].
    pub fn all(&self) -> [&str; 5] {
        [
            &self.raw_gbt,
            &self.job,
            &self.share,
            &self.solved_share,
            &self.event,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicated_cluster_needs_two_copies_of_every_write() {
        let specs = TopicNames::default().specs(TopicLayout {
            share_partitions: 8,
            replication: 3,
        });
        assert!(specs.iter().all(|s| s.min_insync_replicas == 2));
        assert!(specs.iter().all(|s| s.replication == 3));
        let single = TopicNames::default().specs(TopicLayout::default());
        assert!(single.iter().all(|s| s.min_insync_replicas == 1));
        assert_eq!(min_insync_replicas(2), 1);
    }

    #[test]
    fn only_shares_are_partitioned_and_nothing_is_compacted() {
        let names = TopicNames::default();
        let specs = names.specs(TopicLayout {
            share_partitions: 8,
            replication: 1,
        });
        let partitions: Vec<(&str, i32)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.partitions))
            .collect();
        assert_eq!(
            partitions,
            [
                ("BtcRawGbt", 1),
                ("BtcJob", 1),
                ("BtcShare", 8),
                ("BtcSolvedShare", 1),
                ("BtcEvent", 1)
            ]
        );
        assert!(specs.iter().all(|s| s.cleanup == Cleanup::Delete));
        assert_eq!(names.all().map(str::to_owned).to_vec(), {
            specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        });
    }

    #[test]
    fn settings_name_the_broker_keys() {
        let s = TopicSpec::scratch("t", 2).settings();
        assert_eq!(
            s,
            [
                ("cleanup.policy", "delete".to_owned()),
                ("retention.ms", "3600000".to_owned()),
                ("min.insync.replicas", "1".to_owned()),
            ]
        );
    }
}
