//! Miner names and the ids statistics are keyed by.
//!
//! A Stratum login is `user.worker`: split at the first dot, each part
//! filtered to a safe character set (btcpool's `[A-Za-z0-9-._:|^/]`), the
//! worker truncated to 20 characters and defaulted to `__default__`. The
//! worker id is btcpool's `workerHashId`: the first 8 bytes of the
//! double-SHA256 of the worker name, read as a big-endian `i64` of its
//! byte-reversed (display-order) digest; 0 becomes 1.

use bitcoin::hashes::{Hash, sha256d};

/// The worker name used when a login has none.
pub const DEFAULT_WORKER: &str = "__default__";
/// Longest worker name kept.
pub const MAX_WORKER_LEN: usize = 20;

/// A login split into user and worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The account (a row of the `users` table).
    pub user: String,
    /// The machine's name within the account.
    pub worker: String,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:|^/".contains(c)
}

/// Splits and sanitises a `user.worker` login. `None` if no user remains.
pub fn parse_login(full: &str) -> Option<Login> {
    let (user, worker) = full.split_once('.').unwrap_or((full, ""));
    let user: String = user.chars().filter(|&c| allowed(c)).collect();
    let mut worker: String = worker
        .chars()
        .filter(|&c| allowed(c))
        .take(MAX_WORKER_LEN)
        .collect();
    if user.is_empty() {
        return None;
    }
    if worker.is_empty() {
        worker = DEFAULT_WORKER.to_owned();
    }
    Some(Login { user, worker })
}

/// The id of a worker name (btcpool-compatible `workerHashId`).
pub fn worker_id(worker: &str) -> i64 {
    let digest = sha256d::Hash::hash(worker.as_bytes()).to_byte_array();
    // Display order is the reversed digest; its first 8 bytes, big-endian.
    let mut first = [0u8; 8];
    for (i, b) in first.iter_mut().enumerate() {
        *b = digest[31 - i];
    }
    match i64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_split_at_the_first_dot() {
        let l = parse_login("alice.rig-01.extra").unwrap();
        assert_eq!(
            (l.user.as_str(), l.worker.as_str()),
            ("alice", "rig-01.extra")
        );
        assert_eq!(parse_login("bob").unwrap().worker, DEFAULT_WORKER);
        assert_eq!(
            parse_login("c<a>rol.w\"1").unwrap(),
            Login {
                user: "carol".into(),
                worker: "w1".into()
            }
        );
        assert_eq!(parse_login(".w").map(|l| l.user), None);
        assert_eq!(
            parse_login("u.abcdefghijklmnopqrstuvwxyz")
                .unwrap()
                .worker
                .len(),
            MAX_WORKER_LEN
        );
    }

    #[test]
    fn worker_id_is_stable_and_depends_on_the_name_only() {
        assert_eq!(worker_id("rig1"), worker_id("rig1"));
        assert_ne!(worker_id("rig1"), worker_id("rig2"));
        // Computed independently: sha256d("rig1") reversed, first 8 bytes.
        let d = sha256d::Hash::hash(b"rig1").to_string();
        let expected = u64::from_str_radix(&d[..16], 16).unwrap() as i64;
        assert_eq!(worker_id("rig1"), expected);
    }
}
