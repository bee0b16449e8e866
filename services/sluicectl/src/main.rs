//! `sluicectl`: what install/stack.sh and operators run against the
//! infrastructure. Settings come from `-c sluicectl.toml` (see
//! deploy/config/sluicectl.toml) or, without it, from the environment
//! (`SLUICE_KAFKA_BROKERS`, `SLUICE_ZK`, `SLUICE_MYSQL_URL`) and defaults.
//!
//! Exit codes: 0 ok, 64 bad configuration, 69 a dependency is unavailable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use sluice_bus::{
    BusConfig, Producer, TailConsumer, Topic, TopicLayout, TopicSpec, create_topics, delete_topics,
    list_topics,
};
use sluice_coord::{Coord, CoordConfig};
use sluice_core::record::{Event, ShareRecord, SolvedShare};
use sluice_core::{BlockTemplate, Job};
use sluice_service::{EXIT_CONFIG, Validate, load_config};
use sluice_store::Store;

const EXIT_UNAVAILABLE: u8 = 69;

/// Prints a line; a closed stdout (`sluicectl check | head -1`) is not an
/// error worth a panic, unlike with `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod payouts;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file; without it, environment variables and defaults.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations not yet applied.
    Migrate,
    /// Create the pool's topics that do not exist yet and bring existing
    /// ones to their declared settings and partitions.
    CreateTopics,
    /// The pool's topics: partitions, messages written, messages retained.
    Topics,
    /// Delete topics by name or prefix (scratch topics of tests and
    /// benchmarks); the pool's own five topics are refused.
    DeleteTopics {
        /// Topic names.
        names: Vec<String>,
        /// Also every topic whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Check that Kafka, ZooKeeper and MySQL answer and the schema is current.
    Check,
    /// Print the newest messages of a topic, one line each.
    Tail {
        /// Which topic.
        #[arg(value_enum)]
        topic: TailTopic,
        /// How many of the newest messages.
        #[arg(short = 'n', long, default_value_t = 5)]
        count: i64,
        /// Every field of each message, not a summary.
        #[arg(long)]
        full: bool,
    },
    /// Each partition's end of a topic, as `partition:offset,…`: where a
    /// later `count-shares --from` starts.
    Offsets {
        /// Which topic.
        #[arg(value_enum)]
        topic: TailTopic,
    },
    /// One user's shares on the Share topic from `--from` to its end now,
    /// as JSON: records, accepted ones (block included) and their distinct
    /// header hashes (an audit: a share accepted twice shows as fewer
    /// distinct hashes than accepted records). With `--accepted`, checks by
    /// identity too: `missing` lists the file's hashes not on the topic as
    /// accepted, `twice` those there more than once.
    CountShares {
        /// The account name.
        #[arg(long)]
        user: String,
        /// Where to start, as `sluicectl offsets share` printed it
        /// (partitions not named: their earliest message).
        #[arg(long, default_value = "")]
        from: String,
        /// A file of header hashes (one per line, or the simulator's
        /// `--json --record-accepted` report) the miners were told were
        /// accepted.
        #[arg(long)]
        accepted: Option<std::path::PathBuf>,
    },
    /// Reads block hashes (one per line) on stdin and prints those without a
    /// found_blocks row.
    MissingBlocks,
    /// Makes the Stratum V2 authority key pair sserver's `[sv2]` names
    /// (written 0600; an existing file is kept, never overwritten) and
    /// prints the public key miners are configured with.
    Sv2Keygen {
        /// The key file to write.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Payouts: users' addresses, balances, batches.
    Payouts {
        #[command(subcommand)]
        command: payouts::PayoutsCommand,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TailTopic {
    Rawgbt,
    Job,
    Share,
    Solved,
    Event,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    kafka: BusConfig,
    zookeeper: ZkSection,
    mysql: MysqlSection,
    /// Partitions of the Share topic.
    share_partitions: i32,
    /// Replication factor of every topic.
    replication: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ZkSection {
    connect: String,
    root: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MysqlSection {
    url: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: BusConfig {
                brokers: env_or("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092"),
                client_id: "sluicectl".to_owned(),
                ..BusConfig::default()
            },
            zookeeper: ZkSection::default(),
            mysql: MysqlSection::default(),
            share_partitions: 4,
            replication: 1,
        }
    }
}

impl Default for ZkSection {
    fn default() -> Self {
        ZkSection {
            connect: env_or("SLUICE_ZK", "127.0.0.1:2181"),
            root: "/sluice".to_owned(),
        }
    }
}

impl Default for MysqlSection {
    fn default() -> Self {
        MysqlSection {
            url: env_or(
                "SLUICE_MYSQL_URL",
                "mysql://sluice:sluice@127.0.0.1:3306/sluice",
            ),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.share_partitions < 1 {
            return Err("share_partitions must be at least 1".to_owned());
        }
        if self.replication < 1 {
            return Err("replication must be at least 1".to_owned());
        }
        Ok(())
    }
}

impl Config {
    /// The pool's topics with their settings (declared in sluice-bus).
    fn topics(&self) -> Vec<TopicSpec> {
        self.kafka.topics.specs(TopicLayout {
            share_partitions: self.share_partitions,
            replication: self.replication,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => match load_config::<Config>(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sluicectl: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        eprintln!("sluicectl: cannot start the async runtime");
        return ExitCode::from(EXIT_UNAVAILABLE);
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate => migrate(&config).await,
            Command::CreateTopics => topics(&config).await,
            Command::Topics => list(&config).await,
            Command::DeleteTopics { names, prefix } => {
                delete(&config, names, prefix.as_deref()).await
            }
            Command::Check => check(&config).await,
            Command::Tail { topic, count, full } => tail(&config, topic, count, full).await,
            Command::Offsets { topic } => offsets(&config, topic).await,
            Command::CountShares {
                user,
                from,
                accepted,
            } => count_shares(&config, &user, &from, accepted.as_deref()).await,
            Command::MissingBlocks => missing_blocks(&config).await,
            Command::Sv2Keygen { out } => sv2_keygen(&out),
            Command::Payouts { command } => payouts::run(&config, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluicectl: {e:#}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}

/// Writes a new authority key pair to `out` unless one is there; prints
/// the public key either way.
fn sv2_keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let keys = if out.exists() {
        let keys = sluice_sv2::AuthorityKeys::load(out)?;
        eprintln!("{} exists; kept", out.display());
        keys
    } else {
        let keys = sluice_sv2::AuthorityKeys::generate();
        keys.save_new(out)?;
        eprintln!("wrote {}", out.display());
        keys
    };
    out!("{}", keys.public());
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::new(&config.mysql.url)?;
    let applied = store.migrate().await;
    store.close().await;
    let applied = applied?;
    out!("migrations: {} applied now, schema current", applied.len());
    Ok(())
}

async fn topics(config: &Config) -> anyhow::Result<()> {
    let specs = config.topics();
    let applied = create_topics(&config.kafka, &specs).await?;
    for name in &applied.updated {
        out!("topic {name}: settings or partitions brought to the declared ones");
    }
    out!(
        "topics: {} created, {} updated, {} present",
        applied.created.len(),
        applied.updated.len(),
        specs.len()
    );
    Ok(())
}

async fn list(config: &Config) -> anyhow::Result<()> {
    for name in config.kafka.topics.all() {
        let marks = sluice_bus::fetch_watermarks(&config.kafka, name).await?;
        let written: i64 = marks.iter().map(|(_, _, high)| high).sum();
        let retained: i64 = marks.iter().map(|(_, low, high)| high - low).sum();
        let lagging = sluice_bus::under_replicated(&config.kafka, name).await?;
        let sync = if lagging.is_empty() {
            "every replica in sync".to_owned()
        } else {
            let parts: Vec<String> = lagging
                .iter()
                .map(|(p, replicas, isr)| format!("{p} ({isr} of {replicas} in sync)"))
                .collect();
            format!("under-replicated: {}", parts.join(", "))
        };
        out!(
            "{name}: {} partitions, {written} messages written, {retained} retained, {sync}",
            marks.len()
        );
    }
    Ok(())
}

async fn delete(
    config: &Config,
    mut names: Vec<String>,
    prefix: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(prefix) = prefix {
        anyhow::ensure!(!prefix.is_empty(), "--prefix must not be empty");
        let all = list_topics(&config.kafka).await?;
        names.extend(all.into_iter().filter(|n| n.starts_with(prefix)));
    }
    let pool = config.kafka.topics.all();
    if let Some(own) = names.iter().find(|n| pool.contains(&n.as_str())) {
        anyhow::bail!("{own} is one of the pool's topics; not deleted");
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_topics(&config.kafka, &refs).await?;
    out!("topics: {} deleted", refs.len());
    Ok(())
}

async fn check(config: &Config) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let mut report = |name: &str, result: anyhow::Result<String>| match result {
        Ok(detail) => out!("ok    {name}: {detail}"),
        Err(e) => {
            out!("FAIL  {name}: {e:#}");
            failures.push(name.to_owned());
        }
    };
    report("kafka", kafka_check(config).await);
    report("zookeeper", zk_check(config).await);
    report("mysql", mysql_check(config).await);
    anyhow::ensure!(failures.is_empty(), "unavailable: {}", failures.join(", "));
    Ok(())
}

async fn kafka_check(config: &Config) -> anyhow::Result<String> {
    let brokers = Producer::new(&config.kafka, 0)?
        .ping(Duration::from_secs(5))
        .await?;
    for spec in config.topics() {
        sluice_bus::fetch_partitions(&config.kafka, &spec.name).await?;
    }
    Ok(format!(
        "{brokers} broker(s) at {}, all topics present",
        config.kafka.brokers
    ))
}

async fn zk_check(config: &Config) -> anyhow::Result<String> {
    let cfg = CoordConfig {
        connect: config.zookeeper.connect.clone(),
        root: config.zookeeper.root.clone(),
        ..CoordConfig::default()
    };
    let coord = tokio::time::timeout(Duration::from_secs(10), Coord::connect(&cfg)).await??;
    Ok(format!("session {:?} at {}", coord.state(), cfg.connect))
}

async fn mysql_check(config: &Config) -> anyhow::Result<String> {
    let store = Store::new(&config.mysql.url)?;
    let result = async {
        store.ping().await?;
        let pending = store.pending_migrations().await?;
        anyhow::ensure!(
            pending.is_empty(),
            "migrations not applied: {pending:?} (run sluicectl migrate)"
        );
        Ok(format!("schema current at {}", store.addr()))
    }
    .await;
    store.close().await;
    result
}

/// Prints up to `count` of the newest messages of `topic`, one line each
/// (`full`: every field).
async fn tail(config: &Config, topic: TailTopic, count: i64, full: bool) -> anyhow::Result<()> {
    let t = &config.kafka.topics;
    let tail = Tail {
        config,
        count,
        full,
    };
    match topic {
        TailTopic::Rawgbt => {
            tail.print(&t.raw_gbt, |v: BlockTemplate| {
                format!(
                    "template {} node {} height {} prev {} txs {} value {} sat",
                    v.id,
                    v.node_id,
                    v.height,
                    v.prev_blockhash,
                    v.transactions.len(),
                    v.coinbase_value.to_sat()
                )
            })
            .await
        }
        TailTopic::Job => {
            tail.print(&t.job, |v: Job| {
                format!(
                    "job {} epoch {} height {} clean {} prev {} branch {} coinbase {}+{} bytes",
                    v.id,
                    v.leader_epoch,
                    v.height,
                    v.clean,
                    v.prev_blockhash,
                    v.merkle_branch.len(),
                    v.coinbase1.len(),
                    v.coinbase2.len()
                )
            })
            .await
        }
        TailTopic::Share => {
            tail.print(&t.share, |v: ShareRecord| {
                format!(
                    "share {:?} user {} worker {} difficulty {} job {} hash {}",
                    v.status, v.user_id, v.worker_name, v.share_difficulty, v.job_id, v.hash
                )
            })
            .await
        }
        TailTopic::Solved => {
            tail.print(&t.solved_share, |v: SolvedShare| {
                format!(
                    "solved {} height {} user {} worker {} job {}",
                    v.block_hash, v.height, v.user_id, v.worker_name, v.job_id
                )
            })
            .await
        }
        TailTopic::Event => {
            tail.print(&t.event, |v: Event| {
                format!("event at {} ms: {:?}", v.timestamp_ms, v.kind)
            })
            .await
        }
    }
}

/// How `sluicectl tail` reads.
struct Tail<'a> {
    config: &'a Config,
    count: i64,
    full: bool,
}

impl Tail<'_> {
    /// Reads the newest `count` messages of `topic` (waiting up to 2 s for
    /// each) and prints each as `line` renders it, or every field.
    async fn print<T: sluice_proto::Payload + std::fmt::Debug>(
        &self,
        topic: &str,
        line: impl Fn(T) -> String,
    ) -> anyhow::Result<()> {
        let consumer = TailConsumer::<T>::new(
            &self.config.kafka,
            &Topic::new(topic.to_owned()),
            self.count,
        )
        .await?;
        for _ in 0..self.count {
            let Ok(record) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
            else {
                break;
            };
            let value = record?.value;
            if self.full {
                out!("{value:?}");
            } else {
                out!("{}", line(value));
            }
        }
        Ok(())
    }
}

impl TailTopic {
    fn name(self, t: &sluice_bus::TopicNames) -> &str {
        match self {
            TailTopic::Rawgbt => &t.raw_gbt,
            TailTopic::Job => &t.job,
            TailTopic::Share => &t.share,
            TailTopic::Solved => &t.solved_share,
            TailTopic::Event => &t.event,
        }
    }
}

async fn offsets(config: &Config, topic: TailTopic) -> anyhow::Result<()> {
    let name = topic.name(&config.kafka.topics);
    let marks = sluice_bus::fetch_watermarks(&config.kafka, name).await?;
    let ends: Vec<String> = marks
        .iter()
        .map(|(p, _, high)| format!("{p}:{high}"))
        .collect();
    out!("{}", ends.join(","));
    Ok(())
}

/// `partition:offset,…` (empty: none).
fn parse_positions(spec: &str) -> anyhow::Result<std::collections::HashMap<i32, i64>> {
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (partition, offset) = p
                .trim()
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("{p:?} is not partition:offset"))?;
            Ok((partition.parse()?, offset.parse()?))
        })
        .collect()
}

async fn count_shares(
    config: &Config,
    user: &str,
    from: &str,
    told: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let from = parse_positions(from)?;
    let told = told.map(accepted_hashes).transpose()?;
    let store = Store::new(&config.mysql.url)?;
    let found = store.user_by_name(user).await;
    store.close().await;
    let user_id = found?
        .ok_or_else(|| anyhow::anyhow!("no user {user:?}"))?
        .id;
    let topic = Topic::<ShareRecord>::new(config.kafka.topics.share.clone());
    let (mut records, mut accepted) = (0u64, 0u64);
    let mut hashes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    sluice_bus::read_to_end(
        &config.kafka,
        &topic,
        &from,
        Duration::from_secs(30),
        |record| {
            let share = record.value;
            if share.user_id != user_id {
                return;
            }
            records += 1;
            if share.status.is_accepted() {
                accepted += 1;
                *hashes.entry(share.hash.to_string()).or_default() += 1;
            }
        },
    )
    .await?;
    let mut report = serde_json::json!({
        "user_id": user_id,
        "records": records,
        "accepted": accepted,
        "distinct": hashes.len(),
    });
    if let Some(told) = told {
        let missing: Vec<&String> = told.iter().filter(|h| !hashes.contains_key(*h)).collect();
        let twice: Vec<&String> = told
            .iter()
            .filter(|h| hashes.get(*h).is_some_and(|n| *n > 1))
            .collect();
        report["told_accepted"] = told.len().into();
        report["missing"] = serde_json::json!(missing);
        report["twice"] = serde_json::json!(twice);
    }
    out!("{report}");
    Ok(())
}

/// The header hashes in `path`: one per line, or a simulator report's
/// `accepted_hashes`.
fn accepted_hashes(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Report {
            accepted_hashes: Vec<String>,
        }
        let r: Report = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a simulator report with accepted_hashes (run it with --json --record-accepted): {e}",
                path.display()
            )
        })?;
        return Ok(r.accepted_hashes);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

async fn missing_blocks(config: &Config) -> anyhow::Result<()> {
    let store = Store::new(&config.mysql.url)?;
    let mut result = Ok(());
    for line in std::io::stdin().lines() {
        let hash = line?;
        let hash = hash.trim();
        if hash.is_empty() {
            continue;
        }
        match store.found_block_count(hash).await {
            Ok(0) => out!("{hash}"),
            Ok(_) => {}
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    store.close().await;
    result
}
