//! The container updater (`container-updater`): reports each local
//! container database's stats to its account, as Swift's updater does.
//!
//! A container is reported when its put or delete timestamp is newer, or
//! its object count or bytes differ, from what was last reported (the
//! `reported_*` columns). The report is Swift's `PUT
//! /<dev>/<part>/<account>/<container>` to every primary of the account's
//! partition (with `X-Account-Override-Deleted: yes`, and apus's
//! `X-Apus-Stats-Timestamp`: when the stats were read); a majority of
//! successes records the report in the database. On failure the account is
//! left alone for `account_suppression_time`. Every local container
//! database is considered, primary or not, as in Swift; auto-created
//! containers (put timestamp zero) are skipped.
//!
//! Not done: Swift quarantines a container whose account answers 404 from
//! every replica; apus only counts it as a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_core::Timestamp;
use apus_db::{BrokerOptions, ContainerBroker, ContainerInfo};
use apus_proto::AccountUpdate;
use apus_ring::Device;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::context::{replication_host, DaemonContext, ServerKind};
use crate::db_walk::{for_each_db, LocalPartition};
use crate::stats::Stats;
use crate::worker::Worker;

/// Tunables; the defaults are Swift's.
#[derive(Clone, Debug)]
pub struct ContainerUpdaterConfig {
    pub max_containers_per_second: f64,
    /// Containers reported at once.
    pub concurrency: usize,
    pub account_suppression_time: Duration,
}

impl Default for ContainerUpdaterConfig {
    fn default() -> Self {
        ContainerUpdaterConfig {
            max_containers_per_second: 50.0,
            concurrency: 4,
            account_suppression_time: Duration::from_secs(60),
        }
    }
}

pub struct ContainerUpdater {
    pub config: ContainerUpdaterConfig,
    /// Accounts whose servers failed recently, until when to leave them.
    suppressed: Arc<Mutex<HashMap<String, Instant>>>,
}

impl ContainerUpdater {
    pub fn new(config: ContainerUpdaterConfig) -> Self {
        ContainerUpdater {
            config,
            suppressed: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Whether `info` differs from what the account last heard.
pub fn needs_report(info: &ContainerInfo) -> bool {
    info.put_timestamp > info.reported_put_timestamp
        || info.delete_timestamp > info.reported_delete_timestamp
        || info.object_count != info.reported_object_count
        || info.bytes_used != info.reported_bytes_used
}

/// The report of `info`, read at `read_at`.
fn report_headers(info: &ContainerInfo, read_at: Timestamp) -> HeaderMap {
    let report = AccountUpdate {
        put_timestamp: info.put_timestamp,
        delete_timestamp: info.delete_timestamp,
        object_count: info.object_count,
        bytes_used: info.bytes_used,
        storage_policy_index: info.storage_policy_index,
        stats_timestamp: read_at,
    };
    let mut headers = report.headers();
    headers.push(("x-account-override-deleted", "yes".into()));
    headers.push((
        "user-agent",
        format!("container-updater {}", std::process::id()),
    ));
    let mut h = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h
}

impl Worker for ContainerUpdater {
    fn name(&self) -> &'static str {
        "container-updater"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let job = {
            let (ctx, rings, stats) = (Arc::new(ctx.clone()), rings.clone(), stats.clone());
            let (suppressed, suppress_for) = (
                self.suppressed.clone(),
                self.config.account_suppression_time,
            );
            move |_lp: LocalPartition, db: PathBuf| {
                let (ctx, rings, stats, suppressed) = (
                    ctx.clone(),
                    rings.clone(),
                    stats.clone(),
                    suppressed.clone(),
                );
                async move {
                    process_container(&ctx, &rings.account, &stats, &suppressed, suppress_for, db)
                        .await
                }
            }
        };
        for_each_db(
            Arc::new(ctx.clone()),
            rings,
            ServerKind::Container,
            "containers",
            self.config.max_containers_per_second,
            self.config.concurrency,
            job,
        )
        .await
    }
}

async fn process_container(
    ctx: &DaemonContext,
    account_ring: &apus_ring::Ring,
    stats: &Stats,
    suppressed: &Mutex<HashMap<String, Instant>>,
    suppress_for: Duration,
    db: PathBuf,
) {
    let opened = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let opts = BrokerOptions {
                pending_timeout: Duration::from_secs(5),
                ..BrokerOptions::default()
            };
            let broker = ContainerBroker::open(&db, opts)?;
            let read_at = Timestamp::now();
            let info = broker.get_info()?;
            Ok::<_, apus_db::DbError>((broker, info, read_at))
        })
        .await
    };
    let (broker, info, read_at) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::info!(db = %db.display(), error = %e, "cannot read container info; skipping");
            return;
        }
        Err(_) => return,
    };
    // Auto-created containers have no stats worth reporting yet.
    if info.put_timestamp <= Timestamp::ZERO {
        return;
    }
    let now = Instant::now();
    if let Ok(mut s) = suppressed.lock() {
        s.retain(|_, until| *until > now);
        if s.contains_key(&info.account) {
            return;
        }
    }
    if !needs_report(&info) {
        stats.incr("no_changes");
        return;
    }
    let part = account_ring.partition(&ctx.hash, &info.account, None, None);
    let nodes: Vec<Device> = account_ring.primaries(part).into_iter().cloned().collect();
    let path = apus_proto::quote(&format!("/{}/{}", info.account, info.container));
    let mut puts = JoinSet::new();
    for node in &nodes {
        let client = ctx.client.clone();
        let host = replication_host(node);
        let target = format!("/{}/{}{}", apus_proto::quote(&node.device), part, path);
        let headers = report_headers(&info, read_at);
        puts.spawn(async move {
            match client
                .request(Method::PUT, &host, &target, headers, apus_http::empty())
                .await
            {
                Ok(resp) => resp.status().is_success(),
                Err(e) => {
                    tracing::warn!(%host, error = %e, "account update failed; will retry");
                    false
                }
            }
        });
    }
    let mut successes = 0;
    while let Some(done) = puts.join_next().await {
        if matches!(done, Ok(true)) {
            successes += 1;
        }
    }
    if !nodes.is_empty() && successes > nodes.len() / 2 {
        let recorded = tokio::task::spawn_blocking(move || {
            broker.reported(
                info.put_timestamp,
                info.delete_timestamp,
                info.object_count,
                info.bytes_used,
            )
        })
        .await;
        if matches!(recorded, Ok(Ok(()))) {
            stats.incr("successes");
        } else {
            stats.incr("failures");
        }
    } else {
        stats.incr("failures");
        if let Ok(mut s) = suppressed.lock() {
            s.insert(info.account.clone(), now + suppress_for);
        }
    }
}
