//! jobmaker's tests run on the shared rig (crates/rig) without its jobmaker:
//! nodesim and gbtmaker in process, fresh topics and ZooKeeper root; each
//! test starts the jobmakers it needs.

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use sluice_bus::TailConsumer;
use sluice_core::{BlockTemplate, Job};
pub(crate) use sluice_rig::next_where as job_where;
pub(crate) use sluice_rig::{Pipeline as Rig, context};
use sluice_service::Context;

/// nodesim + gbtmaker (polling every `poll_ms`) publishing to fresh topics.
pub(crate) async fn rig(poll_ms: u64) -> Rig {
    sluice_rig::pipeline(sluice_rig::Options {
        poll_ms,
        jobmaker: false,
        ..sluice_rig::Options::default()
    })
    .await
}

/// What jobmaker's tests read and start on the rig.
pub(crate) trait RigExt {
    /// The Job topic from its last 1000 messages.
    async fn jobs(&self) -> TailConsumer<Job>;
    /// The RawGbt topic from its last 1000 messages.
    async fn templates(&self) -> TailConsumer<BlockTemplate>;
    /// Starts jobmaker in process and waits for its first job (height 1).
    async fn start_jobmaker(&self) -> (Context, TailConsumer<Job>, Job);
    /// Starts jobmaker with `config` and waits for its job at `height`.
    async fn start_jobmaker_with(
        &self,
        config: jobmaker::Config,
        height: u32,
    ) -> (Context, TailConsumer<Job>, Job);
}

impl RigExt for Rig {
    async fn jobs(&self) -> TailConsumer<Job> {
        self.tail(&self.kafka.topics.job, 1000).await
    }

    async fn templates(&self) -> TailConsumer<BlockTemplate> {
        self.tail(&self.kafka.topics.raw_gbt, 1000).await
    }

    async fn start_jobmaker(&self) -> (Context, TailConsumer<Job>, Job) {
        self.start_jobmaker_with(self.jobmaker_config(), 1).await
    }

    async fn start_jobmaker_with(
        &self,
        config: jobmaker::Config,
        height: u32,
    ) -> (Context, TailConsumer<Job>, Job) {
        let ctx = context();
        tokio::spawn(jobmaker::run(config, ctx.clone()));
        let jobs = self.jobs().await;
        let first = job_where(
            &jobs,
            Duration::from_secs(30),
            &format!("at height {height}"),
            |j| j.height == height,
        )
        .await;
        (ctx, jobs, first)
    }
}
