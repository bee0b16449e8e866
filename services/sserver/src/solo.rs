//! Solo miners: who logs in with an address, and the coinbase each one's
//! jobs pay it with.
//!
//! When the jobs carry solo terms (jobmaker's `[solo]`), a login whose user
//! is an address of the jobs' network mines solo ([`Shared::login`]): the
//! address becomes (or is) a user marked solo, and every job the channel is
//! sent ends in its own coinbase2 ([`SoloCoinbases`]): the job's shared
//! parts, the miner's output first. The merkle branch, coinbase1 and the
//! board are the pool's; only the notify line's coinbase2 (spliced into the
//! job's line, [`crate::jobs::ServerJob::notify_line_paying`]) and the
//! share's coinbase txid differ. A coinbase2 is made once per job terms
//! (the template's value and commitment), not per job, and shared by the
//! channel's jobs.

use std::sync::Arc;

use bitcoin::ScriptBuf;

use sluice_core::solo::solo_address;

use crate::jobs::ServerJob;
use crate::shared::Shared;
use crate::users::AuthError;

/// What a solo miner is paid to: the address it logged in with (as the
/// network writes it) and its script.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Payee {
    pub(crate) address: String,
    pub(crate) script: ScriptBuf,
}

/// A channel's solo coinbases: the last one made, with the job whose terms
/// it was made of (a new template's value or commitment makes another).
#[derive(Debug)]
pub(crate) struct SoloCoinbases {
    pub(crate) payee: Arc<Payee>,
    last: Option<(Arc<ServerJob>, Arc<[u8]>)>,
}

impl SoloCoinbases {
    pub(crate) fn new(payee: Arc<Payee>) -> Self {
        SoloCoinbases { payee, last: None }
    }

    /// The coinbase2 paying this miner on `job`; `None` for a job without
    /// solo terms (jobmaker's `[solo]` was turned off): it is never sent.
    pub(crate) fn coinbase2(&mut self, job: &Arc<ServerJob>) -> Option<Arc<[u8]>> {
        let terms = job.job.solo.as_ref()?;
        match &self.last {
            Some((made_for, made)) if made_for.job.solo.as_ref() == Some(terms) => {
                Some(Arc::clone(made))
            }
            _ => {
                let made: Arc<[u8]> = terms.coinbase2(&self.payee.script).into();
                self.last = Some((Arc::clone(job), Arc::clone(&made)));
                Some(made)
            }
        }
    }
}

/// Who logged in: a user, and the address it is paid to when solo.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    pub(crate) user_id: u32,
    pub(crate) solo: Option<Arc<Payee>>,
}

impl Shared {
    /// Authorizes `user` (the part of a login before the worker): solo when
    /// the jobs offer it and `user` is an address of their network (a user
    /// of that name registered as pooled stays pooled); else a pooled user
    /// of the `users` table. An address of another network, or one no
    /// output should pay, is refused with what is wrong. An address while
    /// no job has arrived yet is asked to try again: it cannot be told
    /// apart from a pooled name until the jobs say whether solo is on.
    pub(crate) async fn login(&self, user: &str) -> Result<LoggedIn, AuthError> {
        let network = {
            let board = self.board.borrow();
            match board.latest() {
                Some(job) => job.job.solo.as_ref().map(|s| s.network),
                None if looks_like_an_address(user) => return Err(AuthError::NoJobYet),
                None => None,
            }
        };
        let address = match network {
            Some(network) => {
                solo_address(user, network).map_err(|e| AuthError::BadAddress(e.to_string()))?
            }
            None => None,
        };
        let Some(address) = address else {
            let user_id = self.users.authorize(user).await?;
            return Ok(LoggedIn {
                user_id,
                solo: None,
            });
        };
        let name = address.to_string();
        let (user_id, solo) = self.users.authorize_solo(&name).await?;
        let solo = solo.then(|| {
            Arc::new(Payee {
                script: address.script_pubkey(),
                address: name,
            })
        });
        Ok(LoggedIn { user_id, solo })
    }
}

/// Whether `user` reads as an address of any network.
fn looks_like_an_address(user: &str) -> bool {
    user.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, Network};
    use sluice_core::solo::{AddressType, address_of};

    use super::*;
    use crate::channel::SentJobs;
    use crate::judge::tests::{HARD_BITS, job};
    use sluice_core::SoloCoinbase;

    fn with_solo(seq: u64, value: u64) -> Arc<ServerJob> {
        let mut j = job(seq, 1, HARD_BITS).job.clone();
        j.coinbase_value = Amount::from_sat(value);
        j.solo = Some(
            SoloCoinbase::new(
                Network::Regtest,
                j.coinbase_value,
                100,
                &ScriptBuf::new(),
                None,
            )
            .unwrap(),
        );
        Arc::new(ServerJob::new(j, 8))
    }

    fn payee() -> Arc<Payee> {
        let address = address_of(AddressType::P2tr, [5; 32], Network::Regtest);
        Arc::new(Payee {
            script: address.script_pubkey(),
            address: address.to_string(),
        })
    }

    #[test]
    fn a_solo_channel_s_jobs_pay_its_address_and_share_one_coinbase_per_terms() {
        let payee = payee();
        let mut sent = SentJobs::new(1).paying(Some(Arc::clone(&payee)));
        let now = Instant::now();
        let (a, b, c) = (
            with_solo(1, 5_000),
            with_solo(2, 5_000),
            with_solo(3, 6_000),
        );
        for j in [&a, &b, &c] {
            assert!(sent.offer(j, 1.0, false, now).is_some());
        }
        let cb = |i: usize| sent.job(i).and_then(|s| s.coinbase2.clone()).unwrap();
        assert!(Arc::ptr_eq(&cb(0), &cb(1)), "the same terms: one coinbase2");
        assert!(!Arc::ptr_eq(&cb(1), &cb(2)), "a new value: another");
        let terms = c.job.solo.as_ref().unwrap();
        assert_eq!(&*cb(2), &terms.coinbase2(&payee.script)[..]);
        // The line a miner is sent carries it, and the share check uses it.
        let line = c.notify_line_paying(true, &cb(2));
        assert!(line.contains(&hex::encode(&*cb(2))), "{line}");
        let sub = sluice_core::Submission {
            extranonce1: &[1; 4],
            extranonce2: &[2; 8],
            ntime: 0,
            nonce: 0,
            version_bits: None,
        };
        let header = c.work.header_with(&cb(2), &sub, 0).unwrap();
        let coinbase =
            sluice_core::coinbase::join_coinbase(&c.work.coinbase1, &[1; 4], &[2; 8], &cb(2));
        let txid = bitcoin::Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(&coinbase));
        assert_eq!(header.merkle_root, sluice_core::merkle_root(txid, &[]));
    }

    #[test]
    fn a_solo_channel_is_never_sent_a_job_that_pays_the_pool() {
        let mut sent = SentJobs::new(1).paying(Some(payee()));
        let pooled = job(1, 1, HARD_BITS);
        assert_eq!(sent.offer(&pooled, 1.0, true, Instant::now()), None);
        assert!(sent.latest().is_none());
        // A pooled channel takes it, with the job's own coinbase.
        let mut pool = SentJobs::new(1);
        assert!(pool.offer(&pooled, 1.0, false, Instant::now()).is_some());
        assert_eq!(
            pool.latest().map(|s| s.coinbase2()),
            Some(&pooled.work.coinbase2[..])
        );
    }
}
