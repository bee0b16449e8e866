//! The example config loads and validates; bad values get one clear line.
#![allow(clippy::unwrap_used)]

use sluice_service::Validate;

#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/blkmaker.toml");
    let config: blkmaker::Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.nodes.len(), 1);
    assert_eq!(config.service.admin_listen.port(), 9104);
    assert_eq!(
        config.group(),
        format!("sluice-blkmaker-{}", config.service.instance)
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let node =
        |name: &str| format!("[[nodes]]\nname = \"{name}\"\nrpc_url = \"http://127.0.0.1:1\"\n");
    let parse = |text: &str| -> blkmaker::Config { toml::from_str(text).unwrap() };
    assert!(
        parse("nodes = []")
            .validate()
            .unwrap_err()
            .contains("no [[nodes]]")
    );
    assert!(
        parse(&format!("{}{}", node("a"), node("a")))
            .validate()
            .unwrap_err()
            .contains("two [[nodes]] are called \"a\"")
    );
    assert!(
        parse("[[nodes]]\nname = \"a\"\nrpc_url = \"127.0.0.1:8332\"\n")
            .validate()
            .unwrap_err()
            .contains("rpc_url")
    );
    assert!(
        parse(&format!("retry_window_secs = 0\n{}", node("a")))
            .validate()
            .unwrap_err()
            .contains("retry_window_secs")
    );
    assert!(
        parse(&format!("{}[mysql]\nurl = \"postgres://x\"\n", node("a")))
            .validate()
            .unwrap_err()
            .contains("mysql.url")
    );
    assert!(parse(&node("a")).validate().is_ok());
    assert!(
        toml::from_str::<blkmaker::Config>(&format!("retry = 1\n{}", node("a"))).is_err(),
        "unknown keys are errors"
    );
}
