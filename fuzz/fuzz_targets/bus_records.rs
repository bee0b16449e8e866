//! A Kafka record's value, decoded as each consumer decodes it: the first
//! byte picks the topic's message (RawGbt, Job, Share, SolvedShare, Event),
//! the rest is the record. What decodes is then checked the way the
//! consumers check it (a template, a job, and sserver's job preparation),
//! and re-encoding it is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::job::Job;
use sluice_core::record::{Event, ShareRecord, SolvedShare};
use sluice_core::template::BlockTemplate;
use sluice_proto::Payload;

/// What decoded encodes to bytes that decode to the same bytes again
/// (compared as bytes: a NaN figure is not equal to itself).
fn round_trip<T: Payload>(value: &T) {
    let bytes = value.encode_to_vec();
    let again = T::decode_from(&bytes).expect("what decoded re-encodes");
    assert!(
        again.encode_to_vec() == bytes,
        "re-encoding changed the record"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&topic, bytes)) = data.split_first() else {
        return;
    };
    match topic % 5 {
        0 => {
            if let Ok(mut t) = BlockTemplate::decode_from(bytes) {
                round_trip(&t);
                let _ = t.check();
                // A forged template with its id recomputed (what a broken
                // gbtmaker could publish) reaches the checks behind the id.
                t.id = t.compute_id();
                let _ = t.check();
            }
        }
        1 => {
            if let Ok(job) = Job::decode_from(bytes) {
                round_trip(&job);
                if job.check().is_ok() {
                    for en2 in [4, 8] {
                        let prepared = sserver::jobs::ServerJob::new(job.clone(), en2);
                        let line = prepared.notify_line(true);
                        assert!(!line.contains('\n'));
                        assert!(sluice_stratum::ServerMessage::parse(line).is_ok());
                    }
                }
            }
        }
        2 => {
            if let Ok(s) = ShareRecord::decode_from(bytes) {
                round_trip(&s);
            }
        }
        3 => {
            if let Ok(s) = SolvedShare::decode_from(bytes) {
                round_trip(&s);
            }
        }
        _ => {
            if let Ok(e) = Event::decode_from(bytes) {
                round_trip(&e);
            }
        }
    }
});
