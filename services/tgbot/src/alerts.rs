//! Alerts: what is wrong, told once when it starts and once when it ends.
//!
//! Conditions come from two places: every service's heartbeat on the Event
//! topic (missing for too long, unhealthy and why, the broker not
//! acknowledging) and statshttpd's API (pool hashrate against its hour,
//! MySQL, each node, statshttpd itself). Each evaluation lists the
//! conditions that hold; one that has held for `hold` becomes an incident
//! and is told ("ALERT"), and an incident whose condition no longer holds is
//! told recovered with how long it lasted. A found block is news, told at
//! once. Pure state: the tests drive it with their own clock.

use std::collections::{BTreeMap, HashMap};

use sluice_api::{Health, Pool};
use sluice_core::record::{
    BlockFound, BlockStanding, BlockStatus, PayoutNews, PayoutState, ServiceStatus,
};

use crate::view;

/// Thresholds (`[alerts]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// A service whose heartbeat (every 10 s) is missing this long is down.
    pub heartbeat_timeout_secs: u64,
    /// How long a condition holds before it is told (one bad heartbeat or
    /// probe is not an incident).
    pub hold_secs: u64,
    /// The pool's 5-minute hashrate this many percent below its 1-hour
    /// average is an alert.
    pub hashrate_drop_percent: f64,
    /// Seconds between looks at statshttpd.
    pub check_interval_secs: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            heartbeat_timeout_secs: 45,
            hold_secs: 20,
            hashrate_drop_percent: 30.0,
            check_interval_secs: 15,
        }
    }
}

/// A message for the operators' chats.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A condition became an incident.
    Alert(String),
    /// An incident ended.
    Recovered(String),
    /// Something happened (a block).
    News(String),
}

impl Notice {
    /// The message as sent.
    pub fn text(&self) -> String {
        match self {
            Notice::Alert(m) => format!("ALERT {m}"),
            Notice::Recovered(m) => format!("RECOVERED {m}"),
            Notice::News(m) => m.clone(),
        }
    }
}

#[derive(Debug)]
struct Incident {
    since_ms: u64,
    /// Told (held long enough).
    told: bool,
    message: String,
}

/// A service unhealthy without a reason this early in its life is starting.
const STARTING_SECS: u64 = 60;

/// What the alerts know.
#[derive(Debug, Default)]
pub struct Watch {
    config: AlertConfig,
    /// Last heartbeat by (service, instance): when, and what it said.
    beats: BTreeMap<(String, String), (u64, ServiceStatus)>,
    /// statshttpd's pool and health, or why they could not be read.
    stats: Option<Result<(Pool, Health), String>>,
    incidents: HashMap<String, Incident>,
    news: Vec<Notice>,
}

impl Watch {
    pub fn new(config: AlertConfig) -> Self {
        Watch {
            config,
            ..Watch::default()
        }
    }

    /// A heartbeat heard at `at_ms`.
    pub fn heartbeat(&mut self, at_ms: u64, status: ServiceStatus) {
        let key = (status.service.clone(), status.instance.clone());
        if self.beats.get(&key).is_none_or(|(t, _)| *t <= at_ms) {
            self.beats.insert(key, (at_ms, status));
        }
    }

    /// A block found (blkmaker's event).
    pub fn block(&mut self, block: &BlockFound) {
        let outcome = if block.accepted {
            "accepted by a node"
        } else {
            "NOT accepted by any node"
        };
        let (kind, paid) = match &block.solo_address {
            Some(address) => ("Solo block", format!(", paying {address}")),
            None => ("Block", String::new()),
        };
        self.news.push(Notice::News(format!(
            "{kind} found at height {} by {}, {outcome}, reward {:.8} BTC{paid}\n{}",
            block.height,
            block.worker_name,
            block.reward_sat as f64 / 1e8,
            block.hash
        )));
    }

    /// A found block's standing changed (blkmaker's confirmation watch).
    pub fn standing(&mut self, block: &BlockStanding) {
        let text = match block.status {
            BlockStatus::Confirmed => format!(
                "Block {} CONFIRMED: {} confirmations, its {:.8} BTC are spendable\n{}",
                block.height,
                block.confirmations,
                block.reward_sat as f64 / 1e8,
                block.hash
            ),
            BlockStatus::Orphaned => format!(
                "Block {} ORPHANED: no node holds it on its best chain; its {:.8} BTC are lost unless it comes back\n{}",
                block.height,
                block.reward_sat as f64 / 1e8,
                block.hash
            ),
            BlockStatus::Pending => format!(
                "Block {} is back on the best chain ({} confirmations)\n{}",
                block.height, block.confirmations, block.hash
            ),
        };
        self.news.push(Notice::News(text));
    }

    /// A payout batch broadcast, confirmed or taken back.
    pub fn payout(&mut self, p: &PayoutNews) {
        let amount = format!(
            "{:.8} BTC to {} user{} (network fee {} sat)",
            p.total_sat as f64 / 1e8,
            p.users,
            if p.users == 1 { "" } else { "s" },
            p.network_fee_sat
        );
        let text = match p.state {
            PayoutState::Broadcast => format!(
                "Payout {} SENT: {amount}
{}",
                p.id, p.txid
            ),
            PayoutState::Confirmed => format!(
                "Payout {} CONFIRMED: {amount}
{}",
                p.id, p.txid
            ),
            PayoutState::Failed => format!(
                "Payout {} FAILED and taken back ({}): {amount}; the balances are owed again\n{}",
                p.id, p.error, p.txid
            ),
        };
        self.news.push(Notice::News(text));
    }

    /// statshttpd's `/api/v1/pool` and `/api/v1/health`, or why not.
    pub fn stats(&mut self, read: Result<(Pool, Health), String>) {
        self.stats = Some(read);
    }

    /// The conditions that hold at `now_ms`, by key.
    fn conditions(&self, now_ms: u64) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let timeout_ms = self.config.heartbeat_timeout_secs * 1000;
        for ((service, instance), (at, s)) in &self.beats {
            let silent_ms = now_ms.saturating_sub(*at);
            let stopped = s.problems.iter().any(|p| p == "stopping");
            if silent_ms > timeout_ms || stopped {
                let what = if service == "sserver" { "gone" } else { "down" };
                let why = if stopped {
                    "it stopped".to_owned()
                } else {
                    format!("no heartbeat for {}", view::age(silent_ms as f64 / 1000.0))
                };
                out.insert(
                    format!("down {service} {instance}"),
                    format!("{service} {instance} is {what}: {why}"),
                );
                continue;
            }
            // Unhealthy with nothing reported yet is a service starting.
            let starting = s.problems.is_empty() && s.uptime_secs < STARTING_SECS;
            if !s.healthy && !starting {
                // Problems told as incidents of their own: the broker not
                // acknowledging, and blkmaker's blocks refused for a parent
                // no node has; the rest is "unhealthy".
                let special = [
                    ("kafka", "broker", "the broker is not acknowledging"),
                    (
                        "wrong_chain",
                        "wrong chain",
                        "the pool is mining on the WRONG CHAIN (its nodes do not hold it), says",
                    ),
                ];
                let mut told = false;
                for (prefix, key, says) in special {
                    let these: Vec<&String> = s
                        .problems
                        .iter()
                        .filter(|p| p.starts_with(prefix))
                        .collect();
                    if !these.is_empty() {
                        told = true;
                        out.insert(
                            format!("{key} {service} {instance}"),
                            format!("{says} {service} {instance}: {}", join(&these)),
                        );
                    }
                }
                let other: Vec<&String> = s
                    .problems
                    .iter()
                    .filter(|p| !special.iter().any(|(prefix, _, _)| p.starts_with(prefix)))
                    .collect();
                if !other.is_empty() || !told {
                    out.insert(
                        format!("unhealthy {service} {instance}"),
                        format!("{service} {instance} is unhealthy: {}", join(&other)),
                    );
                }
            }
        }
        match &self.stats {
            None => {}
            Some(Err(why)) => {
                out.insert(
                    "statshttpd".into(),
                    format!("statshttpd cannot be read: {why}"),
                );
            }
            Some(Ok((pool, health))) => {
                let (recent, hour) = (pool.figures.hashrate.m5, pool.figures.hashrate.h1);
                let floor = hour * (1.0 - self.config.hashrate_drop_percent / 100.0);
                if hour > 0.0 && recent < floor {
                    out.insert(
                        "hashrate".into(),
                        format!(
                            "pool hashrate {} over 5 min, {:.0}% below its 1 h average {}",
                            view::hashrate(recent),
                            100.0 * (1.0 - recent / hour),
                            view::hashrate(hour)
                        ),
                    );
                }
                // A node more than a block behind the best of the others.
                let heights: Vec<(&str, u64)> = health
                    .components
                    .iter()
                    .filter_map(|(name, c)| {
                        let node = name.strip_prefix("node:")?;
                        let height = c.detail.strip_prefix("height ")?;
                        Some((node, height.trim().parse().ok()?))
                    })
                    .collect();
                let best = heights.iter().map(|(_, h)| *h).max().unwrap_or(0);
                for (node, height) in &heights {
                    if height + 1 < best {
                        out.insert(
                            format!("behind {node}"),
                            format!(
                                "node {node} is behind: height {height}, another node is at {best}"
                            ),
                        );
                    }
                }
                for (name, c) in &health.components {
                    if c.ok {
                        continue;
                    }
                    let detail = c.detail.as_str();
                    let message = if name == "mysql" {
                        format!("MariaDB is unreachable: {detail}")
                    } else if let Some(node) = name.strip_prefix("node:") {
                        format!("node {node} is unreachable or behind: {detail}")
                    } else {
                        format!("statshttpd reports {name}: {detail}")
                    };
                    out.insert(format!("health {name}"), message);
                }
            }
        }
        out
    }

    /// What to tell at `now_ms`: news, new incidents that held long enough,
    /// ended incidents.
    pub fn evaluate(&mut self, now_ms: u64) -> Vec<Notice> {
        // News heard since the last evaluation is one message (split at
        // Telegram's limit when sent): a burst of blocks found or orphaned
        // does not queue behind the per-chat rate limit one by one.
        let news: Vec<String> = std::mem::take(&mut self.news)
            .iter()
            .map(Notice::text)
            .collect();
        let mut notices = Vec::new();
        if !news.is_empty() {
            notices.push(Notice::News(news.join("\n\n")));
        }
        let holding = self.conditions(now_ms);
        let hold_ms = self.config.hold_secs * 1000;
        let mut ended: Vec<String> = self
            .incidents
            .keys()
            .filter(|k| !holding.contains_key(*k))
            .cloned()
            .collect();
        ended.sort();
        for key in ended {
            if let Some(incident) = self.incidents.remove(&key)
                && incident.told
            {
                notices.push(Notice::Recovered(format!(
                    "{} (after {})",
                    incident.message,
                    view::age(now_ms.saturating_sub(incident.since_ms) as f64 / 1000.0)
                )));
            }
        }
        for (key, message) in holding {
            let incident = self.incidents.entry(key).or_insert(Incident {
                since_ms: now_ms,
                told: false,
                message: message.clone(),
            });
            if !incident.told && now_ms.saturating_sub(incident.since_ms) >= hold_ms {
                incident.told = true;
                incident.message = message.clone();
                notices.push(Notice::Alert(message));
            }
        }
        notices
    }

    /// Incidents told and not yet recovered.
    pub fn open(&self) -> usize {
        self.incidents.values().filter(|i| i.told).count()
    }
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_core::bitcoin::BlockHash;
    use sluice_core::bitcoin::hashes::Hash;

    use super::*;

    /// statshttpd's answers as the bot parses them.
    fn read(pool: serde_json::Value, health: serde_json::Value) -> Result<(Pool, Health), String> {
        Ok((
            serde_json::from_value(pool).unwrap(),
            serde_json::from_value(health).unwrap(),
        ))
    }

    const T0: u64 = 1_800_000_000_000;
    const S: u64 = 1000;

    fn beat(service: &str, instance: &str, healthy: bool, problems: &[&str]) -> ServiceStatus {
        ServiceStatus {
            service: service.into(),
            instance: instance.into(),
            host: "h".into(),
            version: "0".into(),
            uptime_secs: 1,
            healthy,
            figures: Vec::new(),
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn texts(n: Vec<Notice>) -> Vec<String> {
        n.iter().map(Notice::text).collect()
    }

    #[test]
    fn a_missing_heartbeat_alerts_once_after_the_hold_and_recovers_once() {
        let mut w = Watch::new(AlertConfig::default());
        w.heartbeat(T0, beat("sserver", "ss-a", true, &[]));
        w.heartbeat(T0, beat("jobmaker", "jm-1", true, &[]));
        assert!(w.evaluate(T0 + 10 * S).is_empty());
        // ss-a beats on; jm-1 falls silent. 45 s is the timeout, 20 s the hold.
        for t in (20..=60).step_by(10) {
            w.heartbeat(T0 + t * S, beat("sserver", "ss-a", true, &[]));
            assert!(w.evaluate(T0 + t * S).is_empty(), "at {t} s");
        }
        w.heartbeat(T0 + 70 * S, beat("sserver", "ss-a", true, &[]));
        assert_eq!(
            texts(w.evaluate(T0 + 70 * S)),
            ["ALERT jobmaker jm-1 is down: no heartbeat for 70 s"]
        );
        assert_eq!(w.open(), 1);
        for t in [80, 90, 100] {
            w.heartbeat(T0 + t * S, beat("sserver", "ss-a", true, &[]));
            assert!(w.evaluate(T0 + t * S).is_empty(), "told once, at {t} s");
        }
        w.heartbeat(T0 + 105 * S, beat("jobmaker", "jm-1", true, &[]));
        assert_eq!(
            texts(w.evaluate(T0 + 110 * S)),
            ["RECOVERED jobmaker jm-1 is down: no heartbeat for 70 s (after 60 s)"]
        );
        assert_eq!(w.open(), 0);
        assert!(w.evaluate(T0 + 120 * S).is_empty());
    }

    #[test]
    fn a_service_starting_is_not_unhealthy_until_it_has_had_time() {
        let mut w = Watch::new(AlertConfig::default());
        w.heartbeat(T0, beat("gbtmaker", "g", false, &[]));
        assert!(w.evaluate(T0).is_empty());
        assert!(w.evaluate(T0 + 30 * S).is_empty());
        let mut late = beat("gbtmaker", "g", false, &[]);
        late.uptime_secs = 120;
        w.heartbeat(T0 + 40 * S, late);
        w.evaluate(T0 + 40 * S);
        assert_eq!(
            texts(w.evaluate(T0 + 60 * S)),
            ["ALERT gbtmaker g is unhealthy: "]
        );
    }

    #[test]
    fn a_blip_shorter_than_the_hold_is_not_an_incident() {
        let mut w = Watch::new(AlertConfig::default());
        w.heartbeat(T0, beat("blkmaker", "b", false, &["mysql: timeout"]));
        assert!(w.evaluate(T0).is_empty());
        w.heartbeat(T0 + 10 * S, beat("blkmaker", "b", true, &[]));
        assert!(w.evaluate(T0 + 10 * S).is_empty());
        assert!(w.evaluate(T0 + 60 * S).is_empty());
    }

    #[test]
    fn unhealthy_services_say_why_and_the_broker_is_named() {
        let mut w = Watch::new(AlertConfig::default());
        w.heartbeat(
            T0,
            beat(
                "sserver",
                "ss-a",
                false,
                &["kafka_shares: the broker has acknowledged nothing for 7s"],
            ),
        );
        w.heartbeat(
            T0,
            beat("jobmaker", "jm", false, &["templates: no template for 75s"]),
        );
        w.heartbeat(T0, beat("sserver", "ss-b", false, &["stopping"]));
        assert!(w.evaluate(T0).is_empty());
        let told = texts(w.evaluate(T0 + 20 * S));
        assert_eq!(
            told,
            [
                "ALERT the broker is not acknowledging sserver ss-a: kafka_shares: the broker has acknowledged nothing for 7s",
                "ALERT sserver ss-b is gone: it stopped",
                "ALERT jobmaker jm is unhealthy: templates: no template for 75s",
            ]
        );
    }

    #[test]
    fn blocks_on_a_chain_the_nodes_lack_are_told_as_the_wrong_chain() {
        let mut w = Watch::new(AlertConfig::default());
        let problem = "wrong_chain: block 00ab at height 229 builds on 00cd, which no node has \
            (prev-blk-not-found from every node): the pool is mining on a chain its nodes do not hold";
        w.heartbeat(T0, beat("blkmaker", "b", false, &[problem]));
        assert!(w.evaluate(T0).is_empty(), "held first");
        assert_eq!(
            texts(w.evaluate(T0 + 20 * S)),
            [format!(
                "ALERT the pool is mining on the WRONG CHAIN (its nodes do not hold it), says blkmaker b: {problem}"
            )],
            "one alert, not a second one as a plain unhealthy service"
        );
        w.heartbeat(T0 + 30 * S, beat("blkmaker", "b", true, &[]));
        let told = texts(w.evaluate(T0 + 30 * S));
        assert_eq!(told.len(), 1);
        assert!(
            told[0].starts_with("RECOVERED the pool is mining on the WRONG CHAIN"),
            "{told:?}"
        );
    }

    #[test]
    fn statshttpd_hashrate_mysql_and_nodes() {
        let mut w = Watch::new(AlertConfig::default());
        let pool = |m5: f64| json!({"hashrate": {"5m": m5, "1h": 1.0e15}});
        let health = |mysql: bool, node: bool| {
            json!({"ok": mysql && node, "components": {
                "mysql": {"ok": mysql, "detail": if mysql { "ok" } else { "connection refused" }},
                "node:core-a": {"ok": node, "detail": if node { "height 900000" } else { "no answer" }},
                "kafka": {"ok": true, "detail": "ok"},
            }})
        };
        w.stats(read(pool(0.9e15), health(true, true)));
        assert!(w.evaluate(T0).is_empty());
        w.stats(read(pool(0.5e15), health(false, false)));
        assert!(w.evaluate(T0 + 15 * S).is_empty());
        assert_eq!(
            texts(w.evaluate(T0 + 35 * S)),
            [
                "ALERT pool hashrate 500 TH/s over 5 min, 50% below its 1 h average 1.00 PH/s",
                "ALERT MariaDB is unreachable: connection refused",
                "ALERT node core-a is unreachable or behind: no answer",
            ]
        );
        w.stats(Err("statshttpd unreachable (connection refused)".into()));
        let told = texts(w.evaluate(T0 + 50 * S));
        assert_eq!(told.len(), 3, "three recoveries: {told:?}");
        assert!(told.iter().all(|t| t.starts_with("RECOVERED")), "{told:?}");
        assert_eq!(
            texts(w.evaluate(T0 + 70 * S)),
            ["ALERT statshttpd cannot be read: statshttpd unreachable (connection refused)"]
        );
    }

    #[test]
    fn a_node_more_than_a_block_behind_the_others_is_told() {
        let mut w = Watch::new(AlertConfig::default());
        let health = |a: u64, b: u64| {
            json!({"ok": true, "components": {
                "node:core-a": {"ok": true, "detail": format!("height {a}")},
                "node:core-b": {"ok": true, "detail": format!("height {b}")},
            }})
        };
        let pool = json!({"hashrate": {"5m": 1.0, "1h": 1.0}});
        w.stats(read(pool.clone(), health(900_000, 899_999)));
        assert!(w.evaluate(T0).is_empty(), "a block apart is normal");
        assert!(w.evaluate(T0 + 30 * S).is_empty());
        w.stats(read(pool.clone(), health(900_003, 899_999)));
        w.evaluate(T0 + 40 * S);
        assert_eq!(
            texts(w.evaluate(T0 + 60 * S)),
            ["ALERT node core-b is behind: height 899999, another node is at 900003"]
        );
        w.stats(read(pool, health(900_003, 900_003)));
        let told = texts(w.evaluate(T0 + 70 * S));
        assert_eq!(told.len(), 1);
        assert!(
            told[0].starts_with("RECOVERED node core-b is behind"),
            "{told:?}"
        );
    }

    #[test]
    fn each_payout_batch_is_news() {
        let mut w = Watch::new(AlertConfig::default());
        let news = |state, error: &str| PayoutNews {
            id: 7,
            txid: sluice_core::bitcoin::Txid::from_byte_array([9; 32]),
            state,
            total_sat: 4_950_000_000,
            network_fee_sat: 1_258,
            users: 2,
            error: error.into(),
        };
        w.payout(&news(PayoutState::Broadcast, ""));
        w.payout(&news(PayoutState::Failed, "conflicted"));
        let told = texts(w.evaluate(T0));
        let told: Vec<&str> = told[0].split("\n\n").collect();
        assert!(
            told[0]
                .starts_with("Payout 7 SENT: 49.50000000 BTC to 2 users (network fee 1258 sat)\n"),
            "{told:?}"
        );
        assert!(
            told[1].starts_with("Payout 7 FAILED and taken back (conflicted)"),
            "{told:?}"
        );
    }

    #[test]
    fn a_block_confirmed_orphaned_or_back_is_news_once() {
        let mut w = Watch::new(AlertConfig::default());
        let standing = |status, confirmations| BlockStanding {
            height: 900_001,
            hash: BlockHash::from_byte_array([7; 32]),
            status,
            confirmations,
            worker_name: "alice.rig1".into(),
            reward_sat: 312_500_000,
        };
        w.standing(&standing(BlockStatus::Orphaned, 0));
        w.standing(&standing(BlockStatus::Pending, 2));
        w.standing(&standing(BlockStatus::Confirmed, 100));
        let told = texts(w.evaluate(T0));
        assert_eq!(told.len(), 1, "a burst is one message: {told:?}");
        let told: Vec<&str> = told[0].split("\n\n").collect();
        assert_eq!(told.len(), 3, "{told:?}");
        assert!(
            told[0].starts_with("Block 900001 ORPHANED: no node holds it"),
            "{told:?}"
        );
        assert!(
            told[1].starts_with("Block 900001 is back on the best chain (2 confirmations)"),
            "{told:?}"
        );
        assert!(
            told[2].starts_with(
                "Block 900001 CONFIRMED: 100 confirmations, its 3.12500000 BTC are spendable\n"
            ),
            "{told:?}"
        );
        assert!(w.evaluate(T0 + S).is_empty());
    }

    #[test]
    fn a_found_block_is_news_at_once() {
        let mut w = Watch::new(AlertConfig::default());
        w.block(&BlockFound {
            height: 900_001,
            hash: BlockHash::from_byte_array([7; 32]),
            prev_hash: BlockHash::from_byte_array([6; 32]),
            user_id: 1,
            worker_id: 11,
            worker_name: "alice.rig1".into(),
            job_id: sluice_core::JobId(5),
            reward_sat: 312_500_000,
            accepted: true,
            solo_address: None,
        });
        let told = texts(w.evaluate(T0));
        assert_eq!(told.len(), 1);
        assert!(
            told[0].starts_with(
                "Block found at height 900001 by alice.rig1, accepted by a node, reward 3.12500000 BTC\n"
            ),
            "{told:?}"
        );
        assert!(w.evaluate(T0 + S).is_empty());
    }

    #[test]
    fn a_solo_block_says_the_address_it_pays() {
        let mut w = Watch::new(AlertConfig::default());
        let address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        w.block(&BlockFound {
            height: 900_002,
            hash: BlockHash::from_byte_array([8; 32]),
            prev_hash: BlockHash::from_byte_array([7; 32]),
            user_id: 2,
            worker_id: 12,
            worker_name: "bitaxe".into(),
            job_id: sluice_core::JobId(6),
            reward_sat: 307_812_500,
            accepted: true,
            solo_address: Some(address.into()),
        });
        let told = texts(w.evaluate(T0));
        assert_eq!(
            told,
            [format!(
                "Solo block found at height 900002 by bitaxe, accepted by a node, reward 3.07812500 BTC, paying {address}\n{}",
                BlockHash::from_byte_array([8; 32])
            )]
        );
    }
}
