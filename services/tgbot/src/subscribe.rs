//! Per-user worker alerts, opt-in: a chat subscribes to a user with
//! `/subscribe USER` and is told, in one message per check, which of that
//! user's workers went offline (no share for `worker_offline_secs`) and
//! which came back. Subscriptions are kept in a JSON file across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_api::UserWorkers;

use crate::view;

/// Who follows whom.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// (chat, user) pairs.
    pub pairs: BTreeSet<(i64, String)>,
}

impl Subscriptions {
    /// The file's subscriptions; none if it does not exist yet.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a subscriptions file: {e}", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes them (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp: PathBuf = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The users anyone follows.
    pub fn users(&self) -> BTreeSet<String> {
        self.pairs.iter().map(|(_, u)| u.clone()).collect()
    }

    /// The chats following `user`.
    pub fn chats_of(&self, user: &str) -> Vec<i64> {
        self.pairs
            .iter()
            .filter(|(_, u)| u == user)
            .map(|(c, _)| *c)
            .collect()
    }
}

/// The offline workers of each followed user, as last seen.
#[derive(Debug, Default)]
pub struct WorkerWatch {
    offline: BTreeMap<String, BTreeSet<String>>,
}

impl WorkerWatch {
    /// `user`'s workers now (`/api/v1/users/USER/workers`); returns the
    /// message to tell, if any worker went offline or came back. The first
    /// look at a user tells nothing (its offline workers are listed when the
    /// chat subscribes). A worker statshttpd forgot (an hour without shares)
    /// stays offline.
    pub fn look(
        &mut self,
        user: &str,
        body: &UserWorkers,
        now_secs: u64,
        offline_secs: u64,
    ) -> Option<String> {
        let mut seen_online = BTreeSet::new();
        let mut offline_now = BTreeSet::new();
        for w in &body.workers {
            let name = w.name.clone();
            if w.is_offline(now_secs, offline_secs) {
                offline_now.insert(name);
            } else {
                seen_online.insert(name);
            }
        }
        let Some(before) = self.offline.get_mut(user) else {
            self.offline.insert(user.to_owned(), offline_now);
            return None;
        };
        let went: Vec<String> = offline_now.difference(before).cloned().collect();
        let back: Vec<String> = before.intersection(&seen_online).cloned().collect();
        before.extend(went.iter().cloned());
        for b in &back {
            before.remove(b);
        }
        let mut lines = Vec::new();
        if !went.is_empty() {
            lines.push(format!(
                "{user}: {} worker(s) offline (no share for {}): {}",
                went.len(),
                view::age(offline_secs as f64),
                went.join(", ")
            ));
        }
        if !back.is_empty() {
            lines.push(format!(
                "{user}: {} worker(s) back: {}",
                back.len(),
                back.join(", ")
            ));
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Forgets users nobody follows any more.
    pub fn keep_only(&mut self, users: &BTreeSet<String>) {
        self.offline.retain(|u, _| users.contains(u));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// As statshttpd answers, parsed as the bot does.
    fn workers(now: u64, ages: &[(&str, u64)]) -> UserWorkers {
        serde_json::from_value(json!({"workers": ages.iter().map(|(n, a)| json!({"name": n, "last_share_time": now - a})).collect::<Vec<_>>()})).unwrap()
    }

    #[test]
    fn workers_going_offline_and_back_are_told_in_one_message_each_time() {
        let mut w = WorkerWatch::default();
        let t = 1_800_000_000;
        assert_eq!(
            w.look("alice", &workers(t, &[("a", 5), ("b", 900)]), t, 600),
            None,
            "first look"
        );
        assert_eq!(
            w.look("alice", &workers(t, &[("a", 5), ("b", 900)]), t, 600),
            None,
            "no change"
        );
        assert_eq!(
            w.look("alice", &workers(t, &[("a", 700), ("c", 800)]), t, 600)
                .as_deref(),
            Some("alice: 2 worker(s) offline (no share for 10 min): a, c"),
            "b vanished from the list: still offline, not back"
        );
        assert_eq!(
            w.look(
                "alice",
                &workers(t, &[("a", 1), ("b", 2), ("c", 900)]),
                t,
                600
            )
            .as_deref(),
            Some("alice: 2 worker(s) back: a, b")
        );
        w.keep_only(&BTreeSet::new());
        assert!(w.offline.is_empty());
    }

    #[test]
    fn subscriptions_survive_a_restart_and_a_bad_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("tgbot-subs-{}", std::process::id()));
        let path = dir.join("state/subscriptions.json");
        assert_eq!(
            Subscriptions::load(&path).unwrap(),
            Subscriptions::default()
        );
        let mut s = Subscriptions::default();
        s.pairs.insert((1, "alice".into()));
        s.pairs.insert((2, "alice".into()));
        s.pairs.insert((2, "bob".into()));
        s.save(&path).unwrap();
        let back = Subscriptions::load(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.chats_of("alice"), vec![1, 2]);
        assert_eq!(back.users().len(), 2);
        std::fs::write(&path, "{not json").unwrap();
        let error = Subscriptions::load(&path).unwrap_err().to_string();
        assert!(error.contains("is not a subscriptions file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
