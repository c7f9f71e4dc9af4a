//! The worker trait and the two ways to run a worker: one pass
//! (`--once`), or passes forever with a pause between them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::context::DaemonContext;
use crate::stats::{PassStats, Stats};

/// A background worker. A pass walks this node's devices once; it counts
/// what it did in `stats` and handles its own errors (logging and
/// counting them) so one bad file or peer never stops the pass. `Err` is
/// for a pass that could not run at all (no rings, say).
pub trait Worker: Send + Sync + 'static {
    /// The daemon's name as Swift spells it (`object-replicator`).
    fn name(&self) -> &'static str;

    fn run_pass(
        &self,
        ctx: &DaemonContext,
        stats: &Stats,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Tells workers to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown handle and the sender that triggers it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// One that never fires (for `--once` and tests).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever so `changed()` never errors out.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested (or its sender is gone).
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Runs one pass of `worker`, cut short by `shutdown`; a completed pass
/// is recorded in the recon cache when the context has one, and every
/// pass in the context's metrics.
pub async fn run_once<W: Worker>(
    worker: &W,
    ctx: &DaemonContext,
    mut shutdown: Shutdown,
) -> PassStats {
    let stats = Stats::new();
    let start = Instant::now();
    let completed = tokio::select! {
        res = worker.run_pass(ctx, &stats) => match res {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(worker = worker.name(), error = %e, "pass failed");
                false
            }
        },
        _ = shutdown.wait() => false,
    };
    let pass = PassStats::new(worker.name(), start.elapsed(), completed, &stats);
    if let Some(metrics) = &ctx.metrics {
        metrics.record(&pass);
    }
    if let Some(cache) = ctx.recon.clone() {
        let (devices, recorded) = (ctx.devices.clone(), pass.clone());
        let _ = tokio::task::spawn_blocking(move || {
            crate::recon::record_pass(&cache, &devices, &recorded)
        })
        .await;
    }
    pass
}

/// Runs passes until `shutdown`, starting one every `interval` (at once
/// if a pass took longer). Each pass's stats are logged and handed to
/// `report`.
pub async fn run_forever<W: Worker>(
    worker: Arc<W>,
    ctx: Arc<DaemonContext>,
    interval: Duration,
    mut shutdown: Shutdown,
    report: impl Fn(&PassStats) + Send + 'static,
) {
    while !shutdown.is_set() {
        let start = Instant::now();
        let pass = run_once(worker.as_ref(), &ctx, shutdown.clone()).await;
        tracing::info!("{pass}");
        report(&pass);
        let pause = interval.saturating_sub(start.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use apus_core::HashConfig;

    use crate::context::LocalIdentity;

    struct Counting {
        passes: AtomicU32,
        pass_time: Duration,
    }

    impl Worker for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        async fn run_pass(&self, _ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
            self.passes.fetch_add(1, Ordering::SeqCst);
            stats.incr("passes");
            tokio::time::sleep(self.pass_time).await;
            stats.incr("finished");
            Ok(())
        }
    }

    fn ctx() -> DaemonContext {
        let any = "127.0.0.1:1".parse().unwrap();
        DaemonContext::new(
            "/nonexistent".into(),
            HashConfig::new("", ""),
            "/nonexistent".into(),
            vec![0],
            LocalIdentity {
                account: any,
                container: any,
                object: any,
            },
            Default::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn once_runs_one_pass_and_reports_it() {
        let w = Counting {
            passes: AtomicU32::new(0),
            pass_time: Duration::from_secs(2),
        };
        let pass = run_once(&w, &ctx(), Shutdown::never()).await;
        assert!(pass.completed);
        assert_eq!(pass.count("finished"), 1);
        assert!(pass.elapsed_secs >= 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_pass_is_counted_in_the_metrics() {
        let w = Counting {
            passes: AtomicU32::new(0),
            pass_time: Duration::from_secs(1),
        };
        let mut ctx = ctx();
        let metrics = crate::metrics::DaemonMetrics::new();
        ctx.metrics = Some(metrics.clone());
        run_once(&w, &ctx, Shutdown::never()).await;
        run_once(&w, &ctx, Shutdown::never()).await;
        let f = metrics.figures(w.name()).unwrap();
        assert_eq!((f.passes_completed, f.passes_incomplete), (2, 0));
        assert_eq!(f.counts["finished"], 2);
        assert!(f.last_pass_seconds >= 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn forever_keeps_the_interval_and_stops_on_shutdown() {
        let w = Arc::new(Counting {
            passes: AtomicU32::new(0),
            pass_time: Duration::from_secs(1),
        });
        let (tx, shutdown) = Shutdown::new();
        let reports = Arc::new(AtomicU32::new(0));
        let r = reports.clone();
        let task = tokio::spawn(run_forever(
            w.clone(),
            Arc::new(ctx()),
            Duration::from_secs(10),
            shutdown,
            move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            },
        ));
        // Passes start at 0, 10, 20 and 30 s.
        tokio::time::sleep(Duration::from_millis(35_500)).await;
        assert_eq!(w.passes.load(Ordering::SeqCst), 4);
        tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(reports.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_pass_short() {
        let w = Counting {
            passes: AtomicU32::new(0),
            pass_time: Duration::from_secs(1000),
        };
        let (tx, shutdown) = Shutdown::new();
        let pass = tokio::spawn(async move { run_once(&w, &ctx(), shutdown).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(true).unwrap();
        let pass = pass.await.unwrap();
        assert!(!pass.completed);
        assert_eq!(pass.count("passes"), 1);
        assert_eq!(pass.count("finished"), 0);
    }
}
