//! The query parameters the HTTP API accepts, read from the raw query string
//! by pure functions: every request's parameters pass through here, and the
//! fuzz target `http_params` drives these with arbitrary strings.
//!
//! A parameter that does not read is an error naming it, never a default.

use serde::Deserialize;

use crate::minutes::DAY_MINUTES;

/// The most worker ids one `/worker_status` request may ask for (btcpool's
/// callers ask for a page of workers; an unbounded list is work for free).
pub const MAX_WORKER_IDS: usize = 1000;

/// The most blocks one `/api/v1/blocks` request lists.
pub const MAX_BLOCKS: u32 = 1000;

/// Reads `query` (`None`: no `?`) as a form into `T`.
fn form<'a, T: Deserialize<'a>>(query: Option<&'a str>) -> Result<T, String> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| format!("bad query string: {e}"))
}

/// btcpool's `/worker_status` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// `user_id`.
    pub user_id: u32,
    /// `worker_id`, comma-separated (0 is the user's sum).
    pub worker_ids: Vec<i64>,
    /// `is_merge=true`: one merged entry instead of one per worker.
    pub merge: bool,
}

#[derive(Deserialize)]
struct RawWorkerStatus {
    user_id: Option<String>,
    worker_id: Option<String>,
    is_merge: Option<String>,
}

/// `user_id=N&worker_id=A,B,…[&is_merge=true]`; btcpool answers any fault
/// with "invalid args", and so do we.
pub fn worker_status(query: Option<&str>) -> Result<WorkerStatus, &'static str> {
    const INVALID: &str = "invalid args";
    let raw: RawWorkerStatus = form(query).map_err(|_| INVALID)?;
    let user_id = raw
        .user_id
        .as_deref()
        .and_then(|u| u.trim().parse().ok())
        .ok_or(INVALID)?;
    let worker_ids = raw
        .worker_id
        .as_deref()
        .and_then(|w| {
            w.split(',')
                .map(|id| id.trim().parse().ok())
                .collect::<Option<Vec<i64>>>()
        })
        .filter(|v| !v.is_empty() && v.len() <= MAX_WORKER_IDS)
        .ok_or(INVALID)?;
    let merge = raw
        .is_merge
        .as_deref()
        .is_some_and(|m| m.starts_with(['t', 'T']));
    Ok(WorkerStatus {
        user_id,
        worker_ids,
        merge,
    })
}

#[derive(Deserialize)]
struct RawMinutes {
    minutes: Option<String>,
}

/// `minutes=N` (1 to a day; default a day).
pub fn minutes(query: Option<&str>) -> Result<usize, String> {
    let raw: RawMinutes = form(query)?;
    match raw.minutes.as_deref().map(str::parse::<usize>) {
        None => Ok(DAY_MINUTES),
        Some(Ok(n)) if (1..=DAY_MINUTES).contains(&n) => Ok(n),
        Some(_) => Err(format!("minutes must be 1 to {DAY_MINUTES}")),
    }
}

/// `/api/v1/blocks` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    /// How many, newest first (default 50).
    pub limit: u32,
    /// Only this user's blocks.
    pub user_id: Option<u32>,
}

#[derive(Deserialize)]
struct RawBlocks {
    limit: Option<String>,
    user_id: Option<String>,
}

/// `limit=N` (1 to 1,000) and `user_id=N`, both optional.
pub fn blocks(query: Option<&str>) -> Result<Blocks, String> {
    let raw: RawBlocks = form(query)?;
    let limit = match raw.limit.as_deref().map(str::parse::<u32>) {
        None => 50,
        Some(Ok(n)) if (1..=MAX_BLOCKS).contains(&n) => n,
        Some(_) => return Err(format!("limit must be a number from 1 to {MAX_BLOCKS}")),
    };
    let user_id = match raw.user_id.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Err("user_id must be a user's number".into()),
    };
    Ok(Blocks { limit, user_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_status_reads_btcpool_arguments() {
        assert_eq!(
            worker_status(Some("user_id=7&worker_id=0,%2012,-3&is_merge=true")),
            Ok(WorkerStatus {
                user_id: 7,
                worker_ids: vec![0, 12, -3],
                merge: true
            })
        );
        assert!(!worker_status(Some("user_id=7&worker_id=1")).unwrap().merge);
        for bad in [
            None,
            Some("user_id=7"),
            Some("worker_id=1"),
            Some("user_id=x&worker_id=1"),
            Some("user_id=7&worker_id=1,,2"),
            Some("user_id=7&worker_id=1&user_id=8"),
            Some("user_id=-1&worker_id=1"),
        ] {
            assert_eq!(worker_status(bad), Err("invalid args"), "{bad:?}");
        }
        let many = format!(
            "user_id=1&worker_id={}",
            vec!["1"; MAX_WORKER_IDS + 1].join(",")
        );
        assert_eq!(
            worker_status(Some(&many)),
            Err("invalid args"),
            "too many ids"
        );
    }

    #[test]
    fn minutes_default_to_a_day_and_stay_within_it() {
        assert_eq!(minutes(None), Ok(DAY_MINUTES));
        assert_eq!(minutes(Some("minutes=60")), Ok(60));
        assert_eq!(minutes(Some("other=1")), Ok(DAY_MINUTES));
        for bad in [
            "minutes=0",
            "minutes=1441",
            "minutes=abc",
            "minutes=-1",
            "minutes=1e3",
        ] {
            assert!(minutes(Some(bad)).is_err(), "{bad}");
        }
        assert!(
            minutes(Some("minutes=1&minutes=2"))
                .unwrap_err()
                .contains("bad query")
        );
    }

    #[test]
    fn blocks_read_limit_and_user() {
        assert_eq!(
            blocks(None),
            Ok(Blocks {
                limit: 50,
                user_id: None
            })
        );
        assert_eq!(
            blocks(Some("limit=1000&user_id=3")),
            Ok(Blocks {
                limit: 1000,
                user_id: Some(3)
            })
        );
        assert!(blocks(Some("limit=0")).unwrap_err().contains("1 to 1000"));
        assert!(blocks(Some("limit=1001")).is_err());
        assert!(blocks(Some("user_id=me")).unwrap_err().contains("user_id"));
    }
}
