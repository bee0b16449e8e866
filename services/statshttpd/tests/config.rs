//! The example config loads and validates; bad values get one clear line.
#![allow(clippy::unwrap_used)]

use sluice_service::Validate;

#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/config/statshttpd.toml");
    let config: statshttpd::Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(config.service.admin_listen.port(), 9106);
    assert_eq!(config.nodes.len(), 1);
    assert!(config.zookeeper.is_some());
    assert_eq!(
        config.group(),
        format!("sluice-statshttpd-{}", config.service.instance)
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let parse = |text: &str| -> statshttpd::Config { toml::from_str(text).unwrap() };
    assert!(parse("").validate().is_ok(), "every key has a default");
    let refused = |text: &str, why: &str| {
        let e = parse(text).validate().unwrap_err();
        assert!(e.contains(why), "{text:?}: {e}");
    };
    refused("network = \"main\"", "network \"main\"");
    refused("flush_interval_secs = 0", "flush_interval_secs");
    refused("data_dir = \"\"", "data_dir");
    refused("[mysql]\nurl = \"postgres://x\"", "mysql.url");
    refused("[zookeeper]\nroot = \"sluice\"", "zookeeper.root");
    refused(
        "[[nodes]]\nname = \"a\"\nrpc_url = \"127.0.0.1:8332\"",
        "rpc_url",
    );
    assert!(
        toml::from_str::<statshttpd::Config>("flush = 1").is_err(),
        "unknown keys are errors"
    );
}
