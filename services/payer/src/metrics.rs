//! payer's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_service::Metrics;

/// What happened to a block in the books.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StepLabel {
    pub(crate) step: &'static str,
}

/// Shares read, blocks booked and what the books hold.
#[derive(Clone)]
pub(crate) struct PayerMetrics {
    pub(crate) leader: Gauge,
    pub(crate) shares: Counter,
    pub(crate) batches: Counter,
    pub(crate) blocks: Family<StepLabel, Counter>,
    /// Satoshis owed to users: immature credits.
    pub(crate) immature: Gauge,
    /// Satoshis owed to users: payable balances.
    pub(crate) owed: Gauge,
    /// Satoshis in payouts signed or broadcast, not yet confirmed.
    pub(crate) in_flight: Gauge,
    pub(crate) pps_credited: Counter,
    pub(crate) payouts: Family<StepLabel, Counter>,
    pub(crate) paid: Counter,
    pub(crate) pruned: Counter,
}

impl PayerMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let m = PayerMetrics {
            leader: Gauge::default(),
            shares: Counter::default(),
            batches: Counter::default(),
            blocks: Family::default(),
            immature: Gauge::default(),
            owed: Gauge::default(),
            in_flight: Gauge::default(),
            pps_credited: Counter::default(),
            payouts: Family::default(),
            paid: Counter::default(),
            pruned: Counter::default(),
        };
        metrics.register(|r| {
            r.register(
                "payer_leader",
                "1 while this instance keeps the books",
                m.leader.clone(),
            );
            r.register(
                "payer_shares_read",
                "Shares read from the Share topic into the books (all verdicts)",
                m.shares.clone(),
            );
            r.register(
                "payer_work_batches",
                "Database transactions of work and offsets written",
                m.batches.clone(),
            );
            r.register(
                "payer_blocks",
                "Blocks booked, by step: credited, matured, orphaned",
                m.blocks.clone(),
            );
            r.register(
                "payer_immature_sat",
                "Satoshis credited to users from blocks not yet mature",
                m.immature.clone(),
            );
            r.register(
                "payer_pps_credited_sat",
                "Satoshis credited to users for their shares under PPS",
                m.pps_credited.clone(),
            );
            r.register(
                "payer_payouts",
                "Payout batches by step: signed (recorded before broadcast), confirmed, failed (taken back)",
                m.payouts.clone(),
            );
            r.register(
                "payer_paid_sat",
                "Satoshis put into signed payout batches",
                m.paid.clone(),
            );
            r.register(
                "payer_in_flight_sat",
                "Satoshis in payouts signed or broadcast, not yet confirmed (network fees included)",
                m.in_flight.clone(),
            );
            r.register(
                "payer_work_pruned_rows",
                "Rows of per-minute work deleted once no block's window can reach them",
                m.pruned.clone(),
            );
            r.register(
                "payer_owed_sat",
                "Satoshis payable to users (balances, the pool's own excluded)",
                m.owed.clone(),
            );
        });
        m
    }
}
