//! The container and account auditors (`container-auditor`,
//! `account-auditor`): open every database on this node's devices, run
//! SQLite's `quick_check` and read its info; a database found damaged is
//! moved to `<dev>/quarantined/<containers|accounts>/<hash>` so the
//! replicators restore a good copy from its peers.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apus_db::{AccountBroker, BrokerOptions, ContainerBroker, DbError, ReplicaBroker};

use crate::context::DaemonContext;
use crate::db_replicator::server_kind;
use crate::db_walk::{for_each_db, LocalPartition};
use crate::stats::Stats;
use crate::worker::Worker;

/// Tunables; the defaults are Swift's.
#[derive(Clone, Debug)]
pub struct DbAuditorConfig {
    /// Databases audited per second (Swift's `containers_per_second` /
    /// `accounts_per_second`).
    pub files_per_second: f64,
}

impl Default for DbAuditorConfig {
    fn default() -> Self {
        DbAuditorConfig {
            files_per_second: 200.0,
        }
    }
}

pub struct DbAuditor<B> {
    pub config: DbAuditorConfig,
    _broker: PhantomData<fn() -> B>,
}

pub type ContainerAuditor = DbAuditor<ContainerBroker>;
pub type AccountAuditor = DbAuditor<AccountBroker>;

impl<B> DbAuditor<B> {
    pub fn new(config: DbAuditorConfig) -> Self {
        DbAuditor {
            config,
            _broker: PhantomData,
        }
    }
}

/// Checks one database. Blocking.
fn audit<B: ReplicaBroker>(db: &std::path::Path) -> Result<(), DbError> {
    let opts = BrokerOptions {
        // A busy database is skipped, not waited on for long.
        timeout: Duration::from_secs(5),
        pending_timeout: Duration::from_secs(5),
        stale_reads_ok: true,
        ..BrokerOptions::default()
    };
    let broker = B::open(db, opts)?;
    broker.quick_check()?;
    broker.get_replication_info()?;
    Ok(())
}

impl<B: ReplicaBroker> Worker for DbAuditor<B> {
    fn name(&self) -> &'static str {
        if B::SERVER_TYPE == "container" {
            "container-auditor"
        } else {
            "account-auditor"
        }
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let job = {
            let stats = stats.clone();
            move |_lp: LocalPartition, db: PathBuf| {
                let stats = stats.clone();
                async move {
                    stats.incr("audited");
                    let checked = {
                        let db = db.clone();
                        tokio::task::spawn_blocking(move || match audit::<B>(&db) {
                            Ok(()) => Ok(()),
                            Err(e) if e.is_quarantine_worthy() => {
                                Err((e.to_string(), Some(apus_db::quarantine_db(&db))))
                            }
                            Err(e) => Err((e.to_string(), None)),
                        })
                        .await
                    };
                    match checked {
                        Ok(Ok(())) => stats.incr("passes"),
                        Ok(Err((error, moved))) => {
                            stats.incr("failures");
                            match moved {
                                Some(Ok(to)) => {
                                    stats.incr("quarantined");
                                    tracing::error!(db = %db.display(), to = %to.display(), %error, "quarantined a damaged database");
                                }
                                Some(Err(e)) => {
                                    tracing::error!(db = %db.display(), %error, quarantine_error = %e, "damaged database could not be quarantined");
                                }
                                None => {
                                    tracing::warn!(db = %db.display(), %error, "audit failed");
                                }
                            }
                        }
                        Err(_) => stats.incr("failures"),
                    }
                }
            }
        };
        for_each_db(
            Arc::new(ctx.clone()),
            rings,
            server_kind::<B>(),
            B::DATADIR,
            self.config.files_per_second,
            1,
            job,
        )
        .await
    }
}
