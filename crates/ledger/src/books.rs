//! Double-entry books: every movement of satoshis is a transaction of
//! entries that sum to zero, and a balance is the sum of an account's
//! entries. Nothing is edited or deleted: an orphaned block's credits and a
//! failed payout are taken back by a transaction of opposite entries.
//!
//! Accounts (user id 0 is the pool's own: its fee, the floors' remainders
//! and, under PPS, the blocks it finds):
//!
//! | account | holds |
//! |---|---|
//! | `rewards` | block rewards given out (negative: what blocks brought in) |
//! | `pps` | what PPS credits cost the pool (negative) |
//! | `immature(u)` | u's credits from blocks not yet spendable (101 confirmations) |
//! | `balance(u)` | what the pool owes u, payable |
//! | `in_flight` | payouts signed or broadcast, not yet confirmed |
//! | `paid` | payouts confirmed on chain, and their network fees |
//!
//! Each transaction is named by its kind and a reference (the block hash,
//! the payout id, the PPS period), unique in the books: writing one twice is
//! refused by the database, so a restart that repeats a step changes nothing.

use std::collections::BTreeMap;

use crate::split::Split;

/// The pool's own account holder.
pub const POOL: u32 = 0;

/// An account of the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// Block rewards given out.
    Rewards,
    /// PPS credits given out.
    Pps,
    /// A user's credits from blocks not yet mature.
    Immature(u32),
    /// What the pool owes a user, payable.
    Balance(u32),
    /// Payouts not yet confirmed.
    InFlight,
    /// Payouts confirmed, network fees included.
    Paid,
}

impl Account {
    /// The account's kind as the books store it, and its user (0 for the
    /// pool's accounts).
    pub fn code(self) -> (u8, u32) {
        match self {
            Account::Rewards => (1, POOL),
            Account::Pps => (2, POOL),
            Account::Immature(u) => (3, u),
            Account::Balance(u) => (4, u),
            Account::InFlight => (5, POOL),
            Account::Paid => (6, POOL),
        }
    }

    /// The account a stored `(kind, user)` names.
    pub fn from_code(kind: u8, user: u32) -> Option<Self> {
        Some(match kind {
            1 => Account::Rewards,
            2 => Account::Pps,
            3 => Account::Immature(user),
            4 => Account::Balance(user),
            5 => Account::InFlight,
            6 => Account::Paid,
            _ => return None,
        })
    }
}

/// What a transaction records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A found block's reward credited, immature (reference: block hash).
    BlockCredit,
    /// A block's credits matured (reference: block hash).
    BlockMature,
    /// A block's credits taken back: it left the best chain (reference: hash).
    BlockOrphaned,
    /// PPS value credited (reference: the unix ms it was credited at).
    PpsCredit,
    /// A payout signed: balances into flight (reference: payout id).
    Payout,
    /// A payout confirmed (reference: payout id).
    PayoutConfirmed,
    /// A payout that will never confirm, taken back (reference: payout id).
    PayoutFailed,
}

impl Kind {
    /// Its name in the books.
    pub fn name(self) -> &'static str {
        match self {
            Kind::BlockCredit => "block_credit",
            Kind::BlockMature => "block_mature",
            Kind::BlockOrphaned => "block_orphaned",
            Kind::PpsCredit => "pps_credit",
            Kind::Payout => "payout",
            Kind::PayoutConfirmed => "payout_confirmed",
            Kind::PayoutFailed => "payout_failed",
        }
    }

    /// The kind its stored name names.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Kind::BlockCredit,
            Kind::BlockMature,
            Kind::BlockOrphaned,
            Kind::PpsCredit,
            Kind::Payout,
            Kind::PayoutConfirmed,
            Kind::PayoutFailed,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// A balanced set of entries, recorded at once or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// What it records.
    pub kind: Kind,
    /// Which block, payout or period.
    pub reference: String,
    /// Satoshis per account; zero entries are left out.
    pub entries: BTreeMap<Account, i64>,
}

impl Txn {
    fn new(kind: Kind, reference: impl Into<String>) -> Self {
        Txn {
            kind,
            reference: reference.into(),
            entries: BTreeMap::new(),
        }
    }

    fn post(&mut self, account: Account, sat: i64) {
        if sat == 0 {
            return;
        }
        let e = self.entries.entry(account).or_default();
        *e += sat;
        if *e == 0 {
            self.entries.remove(&account);
        }
    }

    /// Whether its entries sum to zero (every transaction built here does).
    pub fn is_balanced(&self) -> bool {
        self.entries.values().map(|&v| i128::from(v)).sum::<i128>() == 0
    }

    /// The same movement taken back, as `kind`.
    pub fn reversed(&self, kind: Kind) -> Txn {
        let mut t = Txn::new(kind, self.reference.clone());
        for (&account, &sat) in &self.entries {
            t.post(account, -sat);
        }
        t
    }
}

fn sat(v: u64) -> i64 {
    i64::try_from(v).expect("amounts are below 21e14 satoshis")
}

/// A found block's split credited, immature: the pool's part to its own
/// immature account.
pub fn block_credit(hash: &str, split: &Split) -> Txn {
    let mut t = Txn::new(Kind::BlockCredit, hash);
    t.post(Account::Rewards, -sat(split.reward));
    t.post(Account::Immature(POOL), sat(split.pool()));
    for (&user, credit) in &split.credits {
        t.post(Account::Immature(user), sat(credit.sat));
    }
    t
}

/// A credited block matured: each immature credit of `credit` (the block's
/// [`block_credit`]) becomes balance.
pub fn block_mature(credit: &Txn) -> Txn {
    let mut t = Txn::new(Kind::BlockMature, credit.reference.clone());
    for (&account, &v) in &credit.entries {
        if let Account::Immature(user) = account {
            t.post(account, -v);
            t.post(Account::Balance(user), v);
        }
    }
    t
}

/// A credited block orphaned: its credit taken back. A block orphaned after
/// it matured (a reorganization deeper than 100 blocks) is taken back from
/// the balances it became.
pub fn block_orphaned(credit: &Txn, matured: bool) -> Txn {
    let mut t = credit.reversed(Kind::BlockOrphaned);
    if matured {
        let moved: Vec<(Account, i64)> = t.entries.iter().map(|(a, v)| (*a, *v)).collect();
        for (account, v) in moved {
            if let Account::Immature(user) = account {
                t.post(account, -v);
                t.post(Account::Balance(user), v);
            }
        }
    }
    t
}

/// PPS credits (named by `reference`): payable at once.
pub fn pps_credit(reference: &str, credits: &BTreeMap<u32, u64>) -> Txn {
    let mut t = Txn::new(Kind::PpsCredit, reference);
    for (&user, &v) in credits {
        t.post(Account::Pps, -sat(v));
        t.post(Account::Balance(user), sat(v));
    }
    t
}

/// A payout signed: each user's amount and the network fee (the pool's)
/// leave the balances for `in_flight`.
pub fn payout(id: u64, amounts: &BTreeMap<u32, u64>, network_fee: u64) -> Txn {
    let mut t = Txn::new(Kind::Payout, id.to_string());
    for (&user, &v) in amounts {
        t.post(Account::Balance(user), -sat(v));
        t.post(Account::InFlight, sat(v));
    }
    t.post(Account::Balance(POOL), -sat(network_fee));
    t.post(Account::InFlight, sat(network_fee));
    t
}

/// A payout confirmed: what was in flight is paid.
pub fn payout_confirmed(signed: &Txn) -> Txn {
    let mut t = Txn::new(Kind::PayoutConfirmed, signed.reference.clone());
    let total = signed.entries.get(&Account::InFlight).copied().unwrap_or(0);
    t.post(Account::InFlight, -total);
    t.post(Account::Paid, total);
    t
}

/// A payout that cannot confirm: the balances get their amounts back.
pub fn payout_failed(signed: &Txn) -> Txn {
    signed.reversed(Kind::PayoutFailed)
}

/// Balances after `txns`, per account.
pub fn balances<'a>(txns: impl IntoIterator<Item = &'a Txn>) -> BTreeMap<Account, i64> {
    let mut out = BTreeMap::new();
    for t in txns {
        for (&account, &v) in &t.entries {
            *out.entry(account).or_default() += v;
        }
    }
    out.retain(|_, v| *v != 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::split;

    fn credit() -> Txn {
        let work = [(7, 3u128), (9, 1)].into_iter().collect();
        block_credit("00ab", &split(1_000_001, 100, &work).unwrap())
    }

    #[test]
    fn a_block_is_credited_immature_then_matures_into_balances() {
        let c = credit();
        assert!(c.is_balanced());
        assert_eq!(c.entries[&Account::Rewards], -1_000_001);
        assert_eq!(c.entries[&Account::Immature(7)], 742_500);
        assert_eq!(c.entries[&Account::Immature(9)], 247_500);
        assert_eq!(c.entries[&Account::Immature(POOL)], 10_001);
        let m = block_mature(&c);
        assert!(m.is_balanced());
        let b = balances([&c, &m]);
        assert_eq!(b[&Account::Balance(7)], 742_500);
        assert!(!b.contains_key(&Account::Immature(7)));
    }

    #[test]
    fn an_orphaned_block_is_taken_back_by_opposite_entries() {
        let c = credit();
        let o = block_orphaned(&c, false);
        assert!(o.is_balanced());
        assert_eq!(o.kind, Kind::BlockOrphaned);
        assert!(balances([&c, &o]).is_empty());
        // Orphaned after maturing: from the balances.
        let (m, late) = (block_mature(&c), block_orphaned(&c, true));
        assert!(late.is_balanced());
        assert!(balances([&c, &m, &late]).is_empty());
    }

    #[test]
    fn a_payout_moves_balances_into_flight_then_paid_or_back() {
        let c = credit();
        let m = block_mature(&c);
        let amounts = [(7, 742_500u64), (9, 247_500)].into_iter().collect();
        let p = payout(1, &amounts, 300);
        assert!(p.is_balanced());
        let b = balances([&c, &m, &p]);
        assert_eq!(b[&Account::InFlight], 990_300);
        assert_eq!(b[&Account::Balance(POOL)], 10_001 - 300);
        assert!(!b.contains_key(&Account::Balance(7)));
        let ok = payout_confirmed(&p);
        assert!(ok.is_balanced());
        assert_eq!(balances([&c, &m, &p, &ok])[&Account::Paid], 990_300);
        let failed = payout_failed(&p);
        assert_eq!(balances([&c, &m, &p, &failed]), balances([&c, &m]));
    }

    #[test]
    fn pps_credits_are_payable_at_once_and_codes_round_trip() {
        let t = pps_credit("1740000000000", &[(3, 17u64)].into_iter().collect());
        assert!(t.is_balanced());
        assert_eq!(t.entries[&Account::Balance(3)], 17);
        for a in [
            Account::Rewards,
            Account::Pps,
            Account::Immature(4),
            Account::Balance(5),
            Account::InFlight,
            Account::Paid,
        ] {
            let (kind, user) = a.code();
            assert_eq!(Account::from_code(kind, user), Some(a));
        }
        for k in [Kind::BlockCredit, Kind::PayoutFailed, Kind::PpsCredit] {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
    }
}
