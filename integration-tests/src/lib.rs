//! End-to-end tests live in `tests/`; `src/bin/` holds the service mains the
//! drills run as processes. No library code.
