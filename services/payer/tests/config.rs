//! The example config loads and validates; bad values get one clear line.
#![allow(clippy::unwrap_used)]

use payer::Scheme;
use sluice_service::Validate;

#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/payer.toml");
    let config: payer::Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.scheme, Scheme::Pplns);
    assert_eq!(config.window_milli(), 2_000);
    assert_eq!(config.service.admin_listen.port(), 9110);
    let payouts = config.payouts.unwrap();
    assert_eq!(payouts.node.rpc_url, "http://127.0.0.1:18443");
    assert_eq!(payouts.min_payout_sat, 1_000_000);
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let base = "network = \"regtest\"\nscheme = \"pplns\"\nfee_bps = 100\n";
    let parse = |text: &str| -> payer::Config { toml::from_str(text).unwrap() };
    let refused = |text: &str| parse(text).validate().unwrap_err();
    assert!(parse(base).validate().is_ok(), "the books without payouts");
    assert!(refused(&base.replace("100", "10001")).contains("fee_bps"));
    assert!(refused(&base.replace("regtest", "bitcoincash")).contains("network"));
    assert!(refused(&format!("{base}pplns_window = 0\n")).contains("pplns_window"));
    let payouts = "[payouts]\nfee_rate_sat_vb = 0\n[payouts.node]\nname = \"n\"\nrpc_url = \"http://127.0.0.1:1\"\n";
    assert!(refused(&format!("{base}{payouts}")).contains("fee_rate_sat_vb"));
    let payouts = "[payouts]\n[payouts.node]\nname = \"n\"\nrpc_url = \"127.0.0.1:1\"\n";
    assert!(refused(&format!("{base}{payouts}")).contains("rpc_url"));
    assert!(
        toml::from_str::<payer::Config>(&format!("{base}scheme2 = 1\n")).is_err(),
        "unknown keys"
    );
    assert!(
        toml::from_str::<payer::Config>(&base.replace("pplns", "ppsx")).is_err(),
        "a scheme the payer does not have is an error, not a default"
    );
    let fpps = base.replace("pplns", "fpps");
    assert!(
        refused(&fpps).contains("[payouts.node]"),
        "FPPS reads blocks' fees from the payout node"
    );
    let node = "[payouts]\n[payouts.node]\nname = \"n\"\nrpc_url = \"http://127.0.0.1:1\"\n";
    assert_eq!(parse(&format!("{fpps}{node}")).fpps_fee_blocks, 144);
    assert!(parse(&format!("{fpps}{node}")).validate().is_ok());
    assert!(refused(&format!("{fpps}fpps_fee_blocks = 0\n{node}")).contains("fpps_fee_blocks"));
}
