//! The fixed suite `scripts/bench.sh` compares apus and Swift with: small
//! objects PUT, GET, HEAD and DELETE in phases (ops/s, and each phase's
//! p50 and p99 latency), the time to list a 10,000-object container (the
//! first listing after filling it, which also merges the queued container
//! updates, apart from the mean of the next five), and one large object
//! PUT and GET (MB/s). Each figure is one
//! `metric value unit` line, in the same words for every endpoint, so
//! two runs `join` into ratios. Any failed request fails the suite.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use http::{Method, StatusCode};

use crate::client::{Api, Endpoint, Session};
use crate::histogram::{AtomicHistogram, Histogram};

/// The suite's knobs.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Requests in flight in the small-object and listing-fill phases.
    pub concurrency: usize,
    /// Objects written, read, headed and deleted by the small phases.
    pub objects: usize,
    /// Bytes in each small object.
    pub size: u64,
    /// Objects in the listing container (0 skips the listing; Swift only).
    pub listing: usize,
    /// MiB in the large object (0 skips it).
    pub large_mib: u64,
    /// The containers' `X-Storage-Policy` (Swift only).
    pub policy: Option<String>,
}

/// One line of the suite's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// Digits printed after the point.
    pub decimals: usize,
}

impl fmt::Display for Metric {
    /// `small_put 1234.5 ops/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:.*} {}",
            self.name, self.decimals, self.value, self.unit
        )
    }
}

fn metric(name: impl Into<String>, value: f64, unit: &'static str) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit,
        decimals: 1,
    }
}

/// A per-request latency, to the microsecond: a HEAD may take a tenth of
/// a millisecond, which one decimal would round to nothing.
fn latency_metric(name: String, latencies: &Histogram, percent: f64) -> Metric {
    Metric {
        name,
        value: latencies.percentile_ms(percent),
        unit: "ms",
        decimals: 3,
    }
}

/// Runs `op(i)` for `i in 0..count` with `concurrency` in flight; returns
/// the elapsed time and every op's latency. Any failed op fails the phase.
async fn run_phase<F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<(Duration, Histogram)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(AtomicHistogram::default());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next, latencies) = (op.clone(), next.clone(), latencies.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let started = Instant::now();
                op(i).await?;
                latencies.record(started.elapsed());
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok((start.elapsed(), latencies.snapshot()))
}

fn check(status: StatusCode, what: &str) -> anyhow::Result<()> {
    if status.is_success() {
        Ok(())
    } else {
        bail!("{what}: {status}")
    }
}

/// Deletes an object the suite wrote; a failure is reported, not fatal,
/// since the figures are already out.
async fn clean_up(s: &Session, path: &str) {
    match s.send(Method::DELETE, path).await {
        Ok(reply) if reply.status.is_success() => {}
        Ok(reply) => eprintln!("warning: cleanup DELETE {path}: {}", reply.status),
        Err(e) => eprintln!("warning: cleanup DELETE {path}: {e:#}"),
    }
}

/// Deletes a container the suite created, the same way.
async fn clean_up_container(s: &Session, name: &str) {
    if let Err(e) = s.delete_container(name).await {
        eprintln!("warning: cleanup: {e:#}");
    }
}

/// Runs the suite against `endpoint`, handing each figure to `emit` as it
/// is measured.
pub async fn run(
    endpoint: &Endpoint,
    config: &SuiteConfig,
    mut emit: impl FnMut(&Metric),
) -> anyhow::Result<()> {
    let s = Arc::new(Session::login(endpoint, config.concurrency).await?);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let container = format!("bench-{stamp}");
    let policy = config.policy.as_deref();
    s.create_container(&container, policy).await?;

    let (objects, conc, size) = (config.objects, config.concurrency, config.size);
    let phase = |method: Method| {
        let s = s.clone();
        let container = container.clone();
        move |i: usize| {
            let s = s.clone();
            let path = format!("/{container}/obj-{i:08}");
            let method = method.clone();
            async move {
                let reply = if method == Method::PUT {
                    s.put(&path, size).await?
                } else {
                    s.send(method.clone(), &path).await?
                };
                check(reply.status, &format!("{method} {path}"))
            }
        }
    };
    for method in [Method::PUT, Method::GET, Method::HEAD, Method::DELETE] {
        let (took, latencies) = run_phase(objects, conc, phase(method.clone())).await?;
        let name = format!("small_{}", method.as_str().to_lowercase());
        emit(&metric(&name, objects as f64 / took.as_secs_f64(), "ops/s"));
        emit(&latency_metric(format!("{name}_p50"), &latencies, 50.0));
        emit(&latency_metric(format!("{name}_p99"), &latencies, 99.0));
    }

    if config.listing > 0 && endpoint.api == Api::Swift {
        let list_container = format!("{container}-listing");
        s.create_container(&list_container, policy).await?;
        let fill = {
            let s = s.clone();
            let lc = list_container.clone();
            move |i: usize| {
                let s = s.clone();
                let path = format!("/{lc}/entry-{i:08}");
                async move { check(s.put(&path, 0).await?.status, "listing fill PUT") }
            }
        };
        run_phase(config.listing, conc, fill).await?;
        // The first listing after the fill also merges the container
        // updates still queued (pending files, in Swift and in apus): timed
        // apart, so that the figure after it is the listing's own.
        let path = format!("/{list_container}?format=json&limit=10000");
        let start = Instant::now();
        let reply = s.send(Method::GET, &path).await?;
        check(reply.status, "listing GET")?;
        emit(&metric(
            "listing_10k_first_json",
            start.elapsed().as_secs_f64() * 1000.0,
            "ms",
        ));
        let rounds = 5;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            let reply = s.send(Method::GET, &path).await?;
            check(reply.status, "listing GET")?;
            bytes = reply.body_len;
        }
        let per = start.elapsed().as_secs_f64() / rounds as f64;
        emit(&metric("listing_10k_json", per * 1000.0, "ms"));
        emit(&metric("listing_10k_bytes", bytes as f64, "bytes"));
        let drain = {
            let s = s.clone();
            let lc = list_container.clone();
            move |i: usize| {
                let s = s.clone();
                let path = format!("/{lc}/entry-{i:08}");
                async move {
                    let reply = s.send(Method::DELETE, &path).await?;
                    check(reply.status, "listing cleanup DELETE")
                }
            }
        };
        run_phase(config.listing, conc, drain).await?;
        clean_up_container(&s, &list_container).await;
    }

    if config.large_mib > 0 {
        let len = config.large_mib * 1024 * 1024;
        let path = format!("/{container}/large");
        let start = Instant::now();
        check(s.put(&path, len).await?.status, "large PUT")?;
        emit(&metric(
            "large_put",
            len as f64 / 1048576.0 / start.elapsed().as_secs_f64(),
            "MB/s",
        ));
        let start = Instant::now();
        let reply = s.send(Method::GET, &path).await?;
        check(reply.status, "large GET")?;
        if reply.body_len != len {
            bail!("large GET returned {} of {len} bytes", reply.body_len);
        }
        emit(&metric(
            "large_get",
            len as f64 / 1048576.0 / start.elapsed().as_secs_f64(),
            "MB/s",
        ));
        clean_up(&s, &path).await;
    }
    clean_up_container(&s, &container).await;
    crate::mix::note_reauthentications(&s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_read_as_before() {
        assert_eq!(
            metric("small_put", 1234.56, "ops/s").to_string(),
            "small_put 1234.6 ops/s"
        );
        assert_eq!(
            metric("listing_10k_json", 41.26, "ms").to_string(),
            "listing_10k_json 41.3 ms"
        );
        assert_eq!(
            metric("listing_10k_bytes", 838_890.0, "bytes").to_string(),
            "listing_10k_bytes 838890.0 bytes"
        );
        assert_eq!(
            metric("large_get", 517.54, "MB/s").to_string(),
            "large_get 517.5 MB/s"
        );
        let mut h = Histogram::default();
        h.record(Duration::from_micros(127));
        assert_eq!(
            latency_metric("small_head_p99".into(), &h, 99.0).to_string(),
            "small_head_p99 0.127 ms"
        );
    }
}
