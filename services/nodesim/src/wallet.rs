//! nodesim's wallet: what the payer asks of Bitcoin Core's.
//!
//! Keys are derived from the node's seed and handed out in order by
//! `getnewaddress` (P2WPKH on regtest), so a demo pool's address can be the
//! wallet's first one before the node runs ([`first_address`]). The wallet
//! owns every output of the active chain paying one of its scripts; a
//! coinbase is spendable at 101 confirmations, as Core's wallet counts it
//! (`COINBASE_MATURITY` blocks on top of it). Transactions it builds spend
//! confirmed mature coins only, pay the fee rate they are given (Core on
//! regtest has no estimate and no fallback fee either) and send change to
//! the first address. A passphrase, if configured, locks it as an
//! `encryptwallet`ed wallet is locked.

use std::collections::HashMap;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Txid, Witness, absolute, ecdsa, transaction,
};

use crate::coins::{Coin, View};

/// Core's `COINBASE_MATURITY`.
pub(crate) const COINBASE_MATURITY: u32 = 100;
/// Core's dust limit for a P2WPKH output at the default dust relay fee.
pub(crate) const P2WPKH_DUST: u64 = 294;

/// One key and the script it pays to.
#[derive(Debug, Clone)]
struct Key {
    secret: SecretKey,
    public: CompressedPublicKey,
    script: ScriptBuf,
}

/// The wallet's keys, its lock and the transactions it has seen.
#[derive(Debug)]
pub(crate) struct Wallet {
    secp: Secp256k1<All>,
    seed: u64,
    keys: Vec<Key>,
    handed_out: usize,
    passphrase: String,
    unlocked_until: u64,
    /// Transactions spending or paying the wallet that reached the mempool.
    pub(crate) known: HashMap<Txid, Transaction>,
}

/// Why the wallet will not do something, as Core says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalletError {
    /// -13: locked.
    Locked,
    /// -14: wrong passphrase.
    WrongPassphrase,
    /// -15: not encrypted.
    Unencrypted(&'static str),
    /// -6: not enough mature coins.
    InsufficientFunds,
}

/// The wallet of `seed`'s first address: the pool's coinbase address in
/// the demo, so its block rewards are the wallet's to pay out.
pub fn first_address(seed: u64) -> Address {
    let w = Wallet::new(seed, "");
    Address::p2wpkh(&w.keys[0].public, Network::Regtest)
}

impl Wallet {
    pub(crate) fn new(seed: u64, passphrase: &str) -> Self {
        let mut w = Wallet {
            secp: Secp256k1::new(),
            seed,
            keys: Vec::new(),
            handed_out: 0,
            passphrase: passphrase.to_owned(),
            unlocked_until: 0,
            known: HashMap::new(),
        };
        w.derive();
        w
    }

    fn derive(&mut self) {
        let index = self.keys.len() as u64;
        let secret = (0u32..)
            .find_map(|n| {
                let material = [
                    b"nodesim wallet".as_slice(),
                    &self.seed.to_le_bytes(),
                    &index.to_le_bytes(),
                    &n.to_le_bytes(),
                ]
                .concat();
                SecretKey::from_slice(sha256::Hash::hash(&material).as_byte_array()).ok()
            })
            .expect("a sha256 is a valid secret key with overwhelming odds");
        let public = CompressedPublicKey(secret.public_key(&self.secp));
        let script = ScriptBuf::new_p2wpkh(&public.wpubkey_hash());
        self.keys.push(Key {
            secret,
            public,
            script,
        });
    }

    /// `getnewaddress`: the next key's address.
    pub(crate) fn new_address(&mut self) -> Address {
        if self.handed_out == self.keys.len() {
            self.derive();
        }
        let key = &self.keys[self.handed_out];
        self.handed_out += 1;
        Address::p2wpkh(&key.public, Network::Regtest)
    }

    /// Whether `script` pays this wallet.
    pub(crate) fn is_mine(&self, script: &ScriptBuf) -> bool {
        self.keys.iter().any(|k| &k.script == script)
    }

    /// Whether `walletpassphrase` is needed before signing at `now` (secs).
    pub(crate) fn is_locked(&self, now: u64) -> bool {
        !self.passphrase.is_empty() && now >= self.unlocked_until
    }

    /// `walletpassphrase`.
    pub(crate) fn unlock(
        &mut self,
        passphrase: &str,
        secs: u64,
        now: u64,
    ) -> Result<(), WalletError> {
        if self.passphrase.is_empty() {
            return Err(WalletError::Unencrypted("walletpassphrase"));
        }
        if passphrase != self.passphrase {
            return Err(WalletError::WrongPassphrase);
        }
        self.unlocked_until = now.saturating_add(secs);
        Ok(())
    }

    /// `walletlock`.
    pub(crate) fn lock(&mut self) -> Result<(), WalletError> {
        if self.passphrase.is_empty() {
            return Err(WalletError::Unencrypted("walletlock"));
        }
        self.unlocked_until = 0;
        Ok(())
    }

    /// The wallet's unspent coins in `view`.
    pub(crate) fn coins(&self, view: &View) -> Vec<Coin> {
        view.unspent()
            .filter(|c| self.is_mine(&c.txout.script_pubkey))
            .collect()
    }

    /// A signed transaction paying `outputs` at `fee_rate` sat/vB from
    /// coins spendable at `tip` (confirmed; coinbases 101 deep), change to
    /// the first address. Its fee is the inputs less the outputs.
    pub(crate) fn build(
        &self,
        view: &View,
        tip: u32,
        outputs: Vec<TxOut>,
        fee_rate: u64,
        now: u64,
    ) -> Result<(Transaction, Vec<TxOut>), WalletError> {
        if self.is_locked(now) {
            return Err(WalletError::Locked);
        }
        let mut coins: Vec<Coin> = self
            .coins(view)
            .into_iter()
            .filter(|c| c.spendable_by_wallet(tip) && !view.spent_in_mempool(&c.outpoint))
            .collect();
        coins.sort_by(|a, b| {
            b.txout
                .value
                .cmp(&a.txout.value)
                .then(a.outpoint.cmp(&b.outpoint))
        });
        let paid: Amount = outputs.iter().map(|o| o.value).sum();
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: Vec::new(),
            output: outputs,
        };
        let change = TxOut {
            value: Amount::ZERO,
            script_pubkey: self.keys[0].script.clone(),
        };
        let mut prevouts = Vec::new();
        for coin in coins {
            tx.input.push(TxIn {
                previous_output: coin.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: dummy_witness(),
            });
            prevouts.push(coin.txout);
            let have: Amount = prevouts.iter().map(|o| o.value).sum();
            let mut with_change = tx.clone();
            with_change.output.push(change.clone());
            let fee_with_change = fee(&with_change, fee_rate);
            let fee_without = fee(&tx, fee_rate);
            if have >= paid + fee_with_change + Amount::from_sat(P2WPKH_DUST) {
                tx = with_change;
                let last = tx.output.len() - 1;
                tx.output[last].value = have - paid - fee_with_change;
                return Ok((self.sign(tx, &prevouts), prevouts));
            }
            if have >= paid + fee_without {
                // What is left over is below dust: it goes to the fee.
                return Ok((self.sign(tx, &prevouts), prevouts));
            }
        }
        Err(WalletError::InsufficientFunds)
    }

    /// Signs every input (each spends a P2WPKH coin of this wallet).
    fn sign(&self, mut tx: Transaction, prevouts: &[TxOut]) -> Transaction {
        let mut witnesses = Vec::with_capacity(prevouts.len());
        let mut cache = SighashCache::new(&tx);
        for (i, prevout) in prevouts.iter().enumerate() {
            let key = self
                .keys
                .iter()
                .find(|k| k.script == prevout.script_pubkey)
                .expect("only the wallet's coins are selected");
            let sighash = cache
                .p2wpkh_signature_hash(
                    i,
                    &prevout.script_pubkey,
                    prevout.value,
                    EcdsaSighashType::All,
                )
                .expect("a P2WPKH script and an input in range");
            let msg = Message::from_digest(sighash.to_byte_array());
            let signature = ecdsa::Signature::sighash_all(self.secp.sign_ecdsa(&msg, &key.secret));
            witnesses.push(Witness::p2wpkh(&signature, &key.public.0));
        }
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        tx
    }
}

/// A P2WPKH witness of the largest size (72-byte signature, 33-byte key).
fn dummy_witness() -> Witness {
    Witness::from_slice(&[vec![0u8; 72], vec![0u8; 33]])
}

/// `fee_rate` sat/vB on `tx`'s virtual size, rounded up.
fn fee(tx: &Transaction, fee_rate: u64) -> Amount {
    Amount::from_sat(tx.vsize() as u64 * fee_rate)
}

/// Checks input `index`'s P2WPKH witness against `prevout`, as Core's
/// script interpreter would (key hash, signature, sighash type).
pub(crate) fn verify_p2wpkh(
    secp: &Secp256k1<All>,
    tx: &Transaction,
    index: usize,
    prevout: &TxOut,
) -> Result<(), &'static str> {
    let witness = &tx.input[index].witness;
    let (Some(sig), Some(key), 2) = (witness.nth(0), witness.nth(1), witness.len()) else {
        return Err("mandatory-script-verify-flag-failed (Witness program hash mismatch)");
    };
    let public = CompressedPublicKey::from_slice(key)
        .map_err(|_| "mandatory-script-verify-flag-failed (Public key is neither compressed or uncompressed)")?;
    if ScriptBuf::new_p2wpkh(&public.wpubkey_hash()) != prevout.script_pubkey {
        return Err("mandatory-script-verify-flag-failed (Witness program hash mismatch)");
    }
    let signature = ecdsa::Signature::from_slice(sig)
        .map_err(|_| "mandatory-script-verify-flag-failed (Non-canonical DER signature)")?;
    let sighash = SighashCache::new(tx)
        .p2wpkh_signature_hash(
            index,
            &prevout.script_pubkey,
            prevout.value,
            signature.sighash_type,
        )
        .map_err(|_| "mandatory-script-verify-flag-failed (Witness program hash mismatch)")?;
    secp.verify_ecdsa(
        &Message::from_digest(sighash.to_byte_array()),
        &signature.signature,
        &public.0,
    )
    .map_err(|_| "mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)")
}

impl Wallet {
    /// The secp context, for verifying.
    pub(crate) fn secp(&self) -> &Secp256k1<All> {
        &self.secp
    }
}

impl Coin {
    /// Whether Core's wallet would spend it with the chain at `tip`:
    /// confirmed, and a coinbase 101 deep.
    pub(crate) fn spendable_by_wallet(&self, tip: u32) -> bool {
        match self.height {
            None => false,
            Some(h) if self.coinbase => tip + 1 - h > COINBASE_MATURITY,
            Some(_) => true,
        }
    }
}
