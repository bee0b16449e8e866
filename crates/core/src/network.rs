//! The network a pool mines on, as configuration names it, and what the
//! statistics need of it (the block subsidy at a height).

use bitcoin::{Amount, Network};

/// `mainnet` (or `bitcoin`), `testnet`, `testnet4`, `signet` or `regtest`.
pub fn parse_network(name: &str) -> Result<Network, String> {
    match name {
        "mainnet" | "bitcoin" => Ok(Network::Bitcoin),
        "testnet" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(format!(
            "network {other:?} is not mainnet, testnet, testnet4, signet or regtest"
        )),
    }
}

/// The network `getblockchaininfo`'s `chain` names (`main`, `test`,
/// `testnet4`, `signet`, `regtest`), or `None` for a chain this build does
/// not know.
pub fn network_of_chain(chain: &str) -> Option<Network> {
    match chain {
        "main" => Some(Network::Bitcoin),
        "test" => Some(Network::Testnet),
        "testnet4" => Some(Network::Testnet4),
        "signet" => Some(Network::Signet),
        "regtest" => Some(Network::Regtest),
        _ => None,
    }
}

/// The name Bitcoin Core's `getblockchaininfo` gives `network`'s chain: the
/// inverse of [`network_of_chain`].
pub fn chain_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

/// The block subsidy (fees excluded) at `height`: 50 BTC halved every
/// 210,000 blocks, every 150 on regtest (Bitcoin Core's `GetBlockSubsidy`).
pub fn block_subsidy(network: Network, height: u32) -> Amount {
    let interval = if network == Network::Regtest {
        150
    } else {
        210_000
    };
    let halvings = height / interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(5_000_000_000u64 >> halvings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsidy_halves_on_schedule() {
        assert_eq!(block_subsidy(Network::Bitcoin, 0), Amount::from_int_btc(50));
        assert_eq!(
            block_subsidy(Network::Bitcoin, 840_000),
            Amount::from_sat(312_500_000)
        );
        assert_eq!(
            block_subsidy(Network::Regtest, 149),
            Amount::from_int_btc(50)
        );
        assert_eq!(
            block_subsidy(Network::Regtest, 150),
            Amount::from_int_btc(25)
        );
        assert_eq!(block_subsidy(Network::Regtest, 150 * 64), Amount::ZERO);
        assert_eq!(parse_network("mainnet"), Ok(Network::Bitcoin));
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Signet,
            Network::Regtest,
        ] {
            assert_eq!(network_of_chain(chain_name(n)), Some(n));
        }
        assert_eq!(network_of_chain("mainnet"), None, "Core says main");
        assert!(parse_network("main").unwrap_err().contains("regtest"));
    }
}
