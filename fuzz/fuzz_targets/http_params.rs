//! statshttpd's query strings, read by the functions every request's
//! parameters pass through. What they accept is within the documented
//! bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statshttpd::params;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = params::worker_status(Some(query)) {
        assert!(!q.worker_ids.is_empty() && q.worker_ids.len() <= params::MAX_WORKER_IDS);
    }
    if let Ok(n) = params::minutes(Some(query)) {
        assert!((1..=1440).contains(&n));
    }
    if let Ok(b) = params::blocks(Some(query)) {
        assert!((1..=params::MAX_BLOCKS).contains(&b.limit));
    }
});
