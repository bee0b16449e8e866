//! The PROXY protocol v1/v2 header a load balancer puts before a miner's
//! bytes, read as sserver reads it: from every prefix as the bytes arrive.
//! A header, once read, has a length within what was given, and reading
//! more bytes after it never changes the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sserver::proxy::parse;

fuzz_target!(|data: &[u8]| {
    let mut found = None;
    for end in 0..=data.len().min(600) {
        match parse(&data[..end]) {
            Ok(None) => {}
            Ok(Some(header)) => {
                assert!(header.len <= end, "a header longer than its bytes");
                match found {
                    None => found = Some(header),
                    Some(first) => assert_eq!(first, header, "more bytes changed the header"),
                }
            }
            Err(_) => return,
        }
    }
});
