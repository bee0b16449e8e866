//! Solo mining: a coinbase that pays the miner's own address.
//!
//! jobmaker publishes with every job what all solo coinbases of it share
//! ([`SoloCoinbase`]): the network, what the miner's output gets (the
//! coinbase value less the pool's fee) and the outputs after it (the fee,
//! the witness commitment). A solo miner's coinbase is the job's
//! `coinbase1` ‖ extranonce ‖ [`SoloCoinbase::coinbase2`] of its script: the
//! scriptSig (height, tag, extranonce) is the pooled coinbase's, only the
//! outputs differ, so the merkle branch is the job's and sserver fills in
//! one output per session. [`solo_address`] reads a login as an address of
//! the pool's network.

use std::str::FromStr;

use bitcoin::address::NetworkUnchecked;
use bitcoin::consensus::Encodable;
use bitcoin::{
    Address, Amount, Network, Script, ScriptBuf, Sequence, TxOut, VarInt, WitnessVersion,
};

use crate::coinbase::CoinbaseError;

/// The fee is in basis points of the coinbase value: at most this.
pub const MAX_FEE_BPS: u16 = 10_000;

/// What every solo coinbase of one job shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoloCoinbase {
    /// The network the miner's address must be of.
    pub network: Network,
    /// What the miner's output is paid: the coinbase value less the fee.
    pub miner_value: Amount,
    /// The outputs after the miner's: the pool's fee (when not zero), then
    /// the witness commitment (when the template has one).
    pub outputs: Vec<TxOut>,
}

impl SoloCoinbase {
    /// The solo coinbase of a job paying `value`: `fee_bps` of it (floored
    /// to the satoshi) to `fee_script`, the rest to the miner.
    pub fn new(
        network: Network,
        value: Amount,
        fee_bps: u16,
        fee_script: &Script,
        witness_commitment: Option<&Script>,
    ) -> Result<Self, CoinbaseError> {
        if fee_bps > MAX_FEE_BPS {
            return Err(CoinbaseError::FixedOutputsExceedValue {
                fixed: Amount::MAX,
                value,
            });
        }
        let fee = u64::try_from(u128::from(value.to_sat()) * u128::from(fee_bps) / 10_000)
            .map(Amount::from_sat)
            .unwrap_or(value);
        let mut outputs = Vec::with_capacity(2);
        if fee > Amount::ZERO {
            outputs.push(TxOut {
                value: fee,
                script_pubkey: fee_script.to_owned(),
            });
        }
        if let Some(commitment) = witness_commitment {
            outputs.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.to_owned(),
            });
        }
        Ok(SoloCoinbase {
            network,
            miner_value: value - fee,
            outputs,
        })
    }

    /// What the pool keeps: the outputs' value.
    pub fn fee(&self) -> Amount {
        self.outputs.iter().map(|o| o.value).sum()
    }

    /// The coinbase after the extranonce for a miner paid at `script`: the
    /// input's sequence, the outputs (the miner's first) and the lock time,
    /// as [`crate::CoinbaseParams::build`] writes them.
    pub fn coinbase2(&self, script: &Script) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + script.len() + self.outputs_len());
        let miner = TxOut {
            value: self.miner_value,
            script_pubkey: script.to_owned(),
        };
        let written = Sequence::MAX
            .consensus_encode(&mut out)
            .and_then(|_| VarInt(self.outputs.len() as u64 + 1).consensus_encode(&mut out))
            .and_then(|_| miner.consensus_encode(&mut out))
            .and_then(|_| {
                self.outputs
                    .iter()
                    .try_for_each(|o| o.consensus_encode(&mut out).map(drop))
                    .map(|()| 0)
            })
            .and_then(|_| bitcoin::absolute::LockTime::ZERO.consensus_encode(&mut out));
        written.expect("writing to a Vec cannot fail");
        out
    }

    fn outputs_len(&self) -> usize {
        self.outputs.iter().map(|o| 9 + o.script_pubkey.len()).sum()
    }
}

/// Why a login that is an address cannot be mined to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoloAddressError {
    /// An address of another network.
    #[error("{address} is not a {network} address; this pool mines {network}")]
    WrongNetwork {
        /// As logged in with.
        address: String,
        /// The pool's network, as Bitcoin Core names its chain.
        network: &'static str,
    },
    /// A witness version no soft fork has given meaning to: anyone could
    /// spend what is paid to it.
    #[error(
        "{address} is a witness version {version} address, which anyone can spend; use P2PKH, P2SH, P2WPKH, P2WSH or P2TR"
    )]
    UnspendableVersion {
        /// As logged in with.
        address: String,
        /// Its witness version.
        version: u8,
    },
}

/// The address `user` names on `network`, for a solo login: `Ok(None)` when
/// `user` is no address at all (a pooled user's name). An address of
/// another network, or of a witness version past taproot, is refused.
pub fn solo_address(user: &str, network: Network) -> Result<Option<Address>, SoloAddressError> {
    let Ok(unchecked) = Address::<NetworkUnchecked>::from_str(user) else {
        return Ok(None);
    };
    let address =
        unchecked
            .require_network(network)
            .map_err(|_| SoloAddressError::WrongNetwork {
                address: user.to_owned(),
                network: crate::network::chain_name(network),
            })?;
    if let Some(version) = address.witness_program().map(|p| p.version())
        && version > WitnessVersion::V1
    {
        return Err(SoloAddressError::UnspendableVersion {
            address: user.to_owned(),
            version: version.to_num(),
        });
    }
    Ok(Some(address))
}

/// The address types a solo miner may log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    /// Pay to public key hash (base58, `1…`, `m…`/`n…`).
    P2pkh,
    /// Pay to script hash (base58, `3…`, `2…`).
    P2sh,
    /// Segwit v0 key hash (`bc1q…`, 20 bytes).
    P2wpkh,
    /// Segwit v0 script hash (`bc1q…`, 32 bytes).
    P2wsh,
    /// Taproot (`bc1p…`).
    P2tr,
}

impl AddressType {
    /// Every type, in the order above.
    pub const ALL: [AddressType; 5] = [
        AddressType::P2pkh,
        AddressType::P2sh,
        AddressType::P2wpkh,
        AddressType::P2wsh,
        AddressType::P2tr,
    ];
}

/// An address of `kind` on `network` whose hash (or taproot key) is made of
/// `bytes`: no key behind it, for simulated miners and tests (a taproot
/// output key that is no curve point is still an address).
pub fn address_of(kind: AddressType, bytes: [u8; 32], network: Network) -> Address {
    use bitcoin::hashes::Hash;
    let mut short = [0u8; 20];
    short.copy_from_slice(&bytes[..20]);
    let script = match kind {
        AddressType::P2pkh => ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(short)),
        AddressType::P2sh => ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array(short)),
        AddressType::P2wpkh => ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(short)),
        AddressType::P2wsh => ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array(bytes)),
        AddressType::P2tr => ScriptBuf::new_witness_program(
            &bitcoin::WitnessProgram::new(WitnessVersion::V1, &bytes)
                .expect("32 bytes are a version 1 program"),
        ),
    };
    Address::from_script(&script, network).expect("a standard output script is an address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coinbase::{CoinbaseParams, coinbase_transaction, join_coinbase};

    fn params(payout: ScriptBuf, commitment: Option<ScriptBuf>) -> CoinbaseParams {
        CoinbaseParams {
            value: Amount::from_sat(312_512_345),
            payout_script: payout,
            witness_commitment: commitment,
            ..crate::coinbase::tests::params()
        }
    }

    fn commitment() -> ScriptBuf {
        ScriptBuf::from_bytes([&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed][..], &[0x11; 32]].concat())
    }

    fn addresses() -> Vec<Address> {
        AddressType::ALL
            .iter()
            .map(|&k| address_of(k, [7; 32], Network::Regtest))
            .collect()
    }

    #[test]
    fn at_no_fee_to_the_pool_s_own_script_it_is_the_pooled_coinbase() {
        for c in [None, Some(commitment())] {
            let payout = ScriptBuf::from_bytes(vec![
                0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
            ]);
            let p = params(payout.clone(), c.clone());
            let pooled = p.build().unwrap();
            let solo =
                SoloCoinbase::new(Network::Regtest, p.value, 0, &payout, c.as_deref()).unwrap();
            assert_eq!(solo.coinbase2(&payout), pooled.coinbase2);
        }
    }

    #[test]
    fn each_address_type_gets_the_reward_less_the_fee() {
        let pool = ScriptBuf::from_bytes(vec![0x51]);
        let p = params(pool.clone(), Some(commitment()));
        let split = p.build().unwrap();
        let solo =
            SoloCoinbase::new(Network::Regtest, p.value, 150, &pool, Some(&commitment())).unwrap();
        // floor(312,512,345 × 150 / 10,000) = 4,687,685
        assert_eq!(solo.fee(), Amount::from_sat(4_687_685));
        for address in addresses() {
            let a = address.to_string();
            assert_eq!(
                solo_address(&a, Network::Regtest).unwrap().as_ref(),
                Some(&address)
            );
            let script = address.script_pubkey();
            let bytes = join_coinbase(&split.coinbase1, &[1; 4], &[2; 8], &solo.coinbase2(&script));
            let tx = coinbase_transaction(&bytes).unwrap();
            assert!(tx.is_coinbase());
            assert_eq!(tx.output.len(), 3, "{a}");
            assert_eq!(tx.output[0].script_pubkey, script, "{a}");
            assert_eq!(tx.output[0].value, p.value - solo.fee());
            assert_eq!(tx.output[1].script_pubkey, pool);
            assert_eq!(tx.output[2].script_pubkey, commitment());
            let total: Amount = tx.output.iter().map(|o| o.value).sum();
            assert_eq!(total, p.value);
            assert_eq!(
                Address::from_script(&tx.output[0].script_pubkey, Network::Regtest).unwrap(),
                address
            );
        }
    }

    #[test]
    fn no_fee_means_no_fee_output() {
        let solo = SoloCoinbase::new(
            Network::Regtest,
            Amount::from_sat(100),
            0,
            &ScriptBuf::new(),
            None,
        )
        .unwrap();
        assert!(solo.outputs.is_empty());
        // One satoshi at 1 bps rounds down to nothing: no output either.
        let solo = SoloCoinbase::new(
            Network::Regtest,
            Amount::from_sat(1),
            1,
            &ScriptBuf::new(),
            None,
        )
        .unwrap();
        assert_eq!(
            (solo.fee(), solo.miner_value),
            (Amount::ZERO, Amount::from_sat(1))
        );
        assert!(
            SoloCoinbase::new(
                Network::Regtest,
                Amount::ONE_BTC,
                10_001,
                &ScriptBuf::new(),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn logins_that_are_addresses_of_another_network_or_unsafe_are_refused() {
        assert_eq!(solo_address("alice", Network::Regtest), Ok(None));
        assert_eq!(
            solo_address(
                "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
                Network::Regtest
            )
            .unwrap_err()
            .to_string(),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 is not a regtest address; this pool mines regtest"
        );
        assert!(
            solo_address(
                "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
                Network::Bitcoin
            )
            .unwrap()
            .is_some()
        );
        // Witness version 2 (BIP350's test vector, mainnet).
        let v2 = "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs";
        assert!(matches!(
            solo_address(v2, Network::Bitcoin),
            Err(SoloAddressError::UnspendableVersion { version: 2, .. })
        ));
        for a in addresses() {
            let a = a.to_string();
            assert!(solo_address(&a, Network::Regtest).unwrap().is_some(), "{a}");
            assert!(solo_address(&a, Network::Bitcoin).is_err(), "{a}");
        }
        let types: Vec<_> = addresses().iter().map(Address::address_type).collect();
        assert_eq!(
            types,
            [
                Some(bitcoin::AddressType::P2pkh),
                Some(bitcoin::AddressType::P2sh),
                Some(bitcoin::AddressType::P2wpkh),
                Some(bitcoin::AddressType::P2wsh),
                Some(bitcoin::AddressType::P2tr)
            ]
        );
    }
}
