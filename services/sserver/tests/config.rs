//! The example config loads and validates; bad values get one clear line.
#![allow(clippy::unwrap_used)]

use sluice_service::Validate;

#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/sserver.toml");
    let config: sserver::Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.listen.port(), 3333);
    assert_eq!(config.version_mask().unwrap(), 0x1fff_e000);
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let parse = |extra: &str| -> sserver::Config { toml::from_str(extra).unwrap() };
    assert!(
        parse("extranonce2_size = 9")
            .validate()
            .unwrap_err()
            .contains("extranonce2_size")
    );
    assert!(
        parse("version_mask = \"xyz\"")
            .validate()
            .unwrap_err()
            .contains("version_mask")
    );
    assert!(
        parse("[difficulty]\nmin = 10.0\ndefault = 1.0")
            .validate()
            .unwrap_err()
            .contains("min <= default")
    );
    assert!(
        parse("[difficulty]\nmax = -1.0")
            .validate()
            .unwrap_err()
            .contains("difficulty.max")
    );
    assert!(
        parse("[zookeeper]\nsession_timeout_ms = 100")
            .validate()
            .unwrap_err()
            .contains("session_timeout_ms")
    );
    assert!(
        toml::from_str::<sserver::Config>("listen_port = 1").is_err(),
        "unknown keys are errors"
    );
    parse("").validate().unwrap();
}
