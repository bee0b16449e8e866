//! Connection settings shared by every Kafka client of a service.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// The `[kafka]` section of a service's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Bootstrap servers, `host:port,...`.
    pub brokers: String,
    /// Client id reported to the broker (defaults to the service name).
    pub client_id: String,
    /// Topic names.
    pub topics: TopicNames,
    /// Largest message the producer sends, bytes. The default, 16 MiB, holds
    /// the template of a full 4 MB block with every transaction's ids;
    /// `sluicectl create-topics` sets the topics' `max.message.bytes` to
    /// match.
    pub message_max_bytes: u32,
    /// How long a produced message may wait for delivery before it fails;
    /// 0 (the default) never gives up. librdkafka then retries for as long
    /// as the broker is away, with the same producer id and sequence, so a
    /// retried message is written once; an application-level resend after a
    /// timeout could write it twice (docs/DECISIONS.md).
    pub message_timeout_ms: u32,
    /// Extra librdkafka properties (e.g. `security.protocol`), applied last.
    pub librdkafka: BTreeMap<String, String>,
}

/// Topic names (ARCHITECTURE.md §4 defaults).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Block templates.
    pub raw_gbt: String,
    /// Stratum jobs.
    pub job: String,
    /// Checked shares.
    pub share: String,
    /// Block candidates.
    pub solved_share: String,
    /// Events.
    pub event: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            raw_gbt: "BtcRawGbt".to_owned(),
            job: "BtcJob".to_owned(),
            share: "BtcShare".to_owned(),
            solved_share: "BtcSolvedShare".to_owned(),
            event: "BtcEvent".to_owned(),
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "sluice".to_owned(),
            topics: TopicNames::default(),
            message_max_bytes: 16 * 1024 * 1024,
            message_timeout_ms: 0,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl BusConfig {
    /// The librdkafka settings common to producers, consumers and admin.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Loopback brokers are named 127.0.0.1; never try IPv6 first.
            .set("broker.address.family", "v4")
            .set(
                "message.max.bytes",
                self.topic_max_message_bytes().to_string(),
            )
            .set("log_level", "4");
        c
    }

    /// The largest record batch a topic must take: a message of
    /// `message_max_bytes` and the batch's framing.
    pub(crate) fn topic_max_message_bytes(&self) -> u32 {
        self.message_max_bytes.saturating_add(64 * 1024)
    }

    /// Applies the operator's raw overrides.
    pub(crate) fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        c
    }
}
