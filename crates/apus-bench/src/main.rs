//! apus-bench: a load tool for any endpoint speaking the Swift API with
//! v1.0 auth (apus or Swift itself), so both can be measured the same way
//! on the same machine. It reports small-object PUT/GET/HEAD/DELETE ops/s,
//! the time to list a 10,000-object container, and large-object PUT/GET
//! MB/s, one `metric value unit` line each, and cleans up what it wrote.
//!
//! With `--s3` it runs the same small- and large-object workloads (not the
//! listing) through the S3 API instead: path-style requests signed with
//! AWS Signature V4, as against apus's S3 layer or Swift's s3api.
//!
//! It depends only on `apus-http` (as an HTTP client), never on the
//! storage or proxy crates: it sees the system under test from outside.

mod sigv4;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use apus_http::{empty, full, BackendClient, Body, ClientConfig};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;

#[derive(Parser, Debug)]
#[command(about = "Load tool for Swift-API and S3 endpoints")]
struct Args {
    /// Auth URL, e.g. http://127.0.0.1:8080/auth/v1.0; with --s3, the S3
    /// endpoint, e.g. http://127.0.0.1:8080
    #[arg(long, short = 'A')]
    auth: String,
    /// User (Swift) or access key (S3).
    #[arg(long, short = 'U', default_value = "test:tester")]
    user: String,
    /// Key (Swift) or secret key (S3).
    #[arg(long, short = 'K', default_value = "testing")]
    key: String,
    /// Speak S3 (path-style, AWS Signature V4) instead of the Swift API;
    /// the listing phase is skipped.
    #[arg(long)]
    s3: bool,
    /// The region S3 signatures name.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Concurrent requests in the small-object phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Objects written, read and headed in the small-object phases.
    #[arg(long, default_value_t = 2000)]
    objects: usize,
    /// Size of each small object in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Objects in the listing container (0 skips the listing phase; Swift
    /// API only).
    #[arg(long, default_value_t = 10_000)]
    listing: usize,
    /// Size of the large object in MiB (0 skips the large-object phase).
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// Storage policy of the containers it creates (`X-Storage-Policy`;
    /// the cluster's default when not given), e.g. `ec42`. Swift API only.
    #[arg(long, conflicts_with = "s3")]
    policy: Option<String>,
}

/// How requests are authorized.
enum Auth {
    /// Swift: paths under the storage URL, with the v1.0 token.
    Swift {
        /// The storage URL's path, `/v1/AUTH_test`.
        base: String,
        token: HeaderValue,
    },
    /// S3: path-style `/bucket/key`, each request signed.
    S3(sigv4::Signer),
}

struct Session {
    http: BackendClient,
    host: String,
    auth: Auth,
}

/// Splits `http://host:port/path` into host and path.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

impl Session {
    async fn login(args: &Args) -> anyhow::Result<Session> {
        let http = BackendClient::new(ClientConfig {
            connect_timeout: Duration::from_secs(5),
            node_timeout: Duration::from_secs(120),
            pool_max_idle_per_host: 256,
            ..ClientConfig::default()
        });
        let (host, path) = split_url(&args.auth)?;
        if args.s3 {
            if path != "/" {
                bail!("--s3 wants the endpoint alone, e.g. http://127.0.0.1:8080");
            }
            let signer = sigv4::Signer::new(&args.user, &args.key, &args.region);
            return Ok(Session {
                http,
                host,
                auth: Auth::S3(signer),
            });
        }
        let mut h = HeaderMap::new();
        h.insert("x-auth-user", HeaderValue::from_str(&args.user)?);
        h.insert("x-auth-key", HeaderValue::from_str(&args.key)?);
        let resp = http.request(Method::GET, &host, &path, h, empty()).await?;
        if !resp.status().is_success() {
            bail!("auth failed: {}", resp.status());
        }
        let token = resp
            .headers()
            .get("x-auth-token")
            .cloned()
            .context("no X-Auth-Token")?;
        let url = resp
            .headers()
            .get("x-storage-url")
            .and_then(|v| v.to_str().ok())
            .context("no X-Storage-Url")?
            .to_string();
        let (_, base) = split_url(&url)?;
        Ok(Session {
            http,
            host,
            auth: Auth::Swift { base, token },
        })
    }

    /// Sends `method path` (`/container/object`, or `/bucket/key` in S3)
    /// and reads the whole response body; returns its status and length.
    async fn call(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Body,
    ) -> anyhow::Result<(StatusCode, u64)> {
        let url = match &self.auth {
            Auth::Swift { base, token } => {
                headers.insert("x-auth-token", token.clone());
                format!("{base}{path}")
            }
            Auth::S3(signer) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let date = sigv4::amz_date(now);
                let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
                // `UNSIGNED-PAYLOAD`: the body is left out of the
                // signature, as many SDKs send it over TLS, so the client
                // spends no CPU hashing bodies (nor the server checking a
                // body hash) and the figures measure the store, not SHA-256.
                let authorization = signer.authorization(&sigv4::Request {
                    method: method.as_str(),
                    path: path_only,
                    query,
                    headers: &[
                        ("host", &self.host),
                        ("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD),
                        ("x-amz-date", &date),
                    ],
                    payload_hash: sigv4::UNSIGNED_PAYLOAD,
                });
                headers.insert(http::header::HOST, HeaderValue::from_str(&self.host)?);
                headers.insert(
                    "x-amz-content-sha256",
                    HeaderValue::from_static(sigv4::UNSIGNED_PAYLOAD),
                );
                headers.insert("x-amz-date", HeaderValue::from_str(&date)?);
                headers.insert(
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(&authorization)?,
                );
                path.to_string()
            }
        };
        let resp = self
            .http
            .request(method, &self.host, &url, headers, body)
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
            }
        }
        Ok((status, n))
    }
}

fn length(n: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    h
}

/// Runs `op(i)` for `i in 0..count` with `concurrency` in flight; returns
/// the elapsed time. Any failed operation fails the phase.
async fn run_phase<F, Fut>(count: usize, concurrency: usize, op: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let op = op.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                op(i).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(start.elapsed())
}

/// A body of `len` bytes generated on the fly, so a large upload needs no
/// memory for its data.
struct PatternBody {
    left: u64,
    chunk: Bytes,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

fn report(metric: &str, value: f64, unit: &str) {
    println!("{metric} {value:.1} {unit}");
}

fn check(status: StatusCode, what: &str) -> anyhow::Result<()> {
    if status.is_success() {
        Ok(())
    } else {
        bail!("{what}: {status}")
    }
}

/// Deletes what the run wrote; a failure is reported, not fatal, since the
/// figures are already out (a container may briefly still list a deleted
/// object while its update is pending).
async fn cleanup(s: &Session, path: &str) {
    match s
        .call(Method::DELETE, path, HeaderMap::new(), empty())
        .await
    {
        Ok((st, _)) if st.is_success() => {}
        Ok((st, _)) => eprintln!("warning: cleanup DELETE {path}: {st}"),
        Err(e) => eprintln!("warning: cleanup DELETE {path}: {e:#}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let s = Arc::new(Session::login(&args).await?);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let container = format!("bench-{stamp}");
    let mut container_headers = length(0);
    if let Some(policy) = &args.policy {
        container_headers.insert("x-storage-policy", HeaderValue::from_str(policy)?);
    }
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("/{container}"),
            container_headers.clone(),
            empty(),
        )
        .await?;
    check(st, "container PUT")?;

    let payload = Bytes::from(vec![b'x'; args.size]);
    let (objects, conc) = (args.objects, args.concurrency);
    let phase = |method: Method| {
        let s = s.clone();
        let container = container.clone();
        let payload = payload.clone();
        move |i: usize| {
            let s = s.clone();
            let path = format!("/{container}/obj-{i:08}");
            let method = method.clone();
            let payload = payload.clone();
            async move {
                let (headers, body) = if method == Method::PUT {
                    (length(payload.len() as u64), full(payload))
                } else {
                    (HeaderMap::new(), empty())
                };
                let (st, _) = s.call(method.clone(), &path, headers, body).await?;
                check(st, &format!("{method} {path}"))
            }
        }
    };
    for method in [Method::PUT, Method::GET, Method::HEAD] {
        let t = run_phase(objects, conc, phase(method.clone())).await?;
        report(
            &format!("small_{}", method.as_str().to_lowercase()),
            objects as f64 / t.as_secs_f64(),
            "ops/s",
        );
    }
    let t = run_phase(objects, conc, phase(Method::DELETE)).await?;
    report("small_delete", objects as f64 / t.as_secs_f64(), "ops/s");

    if args.listing > 0 && !args.s3 {
        let list_container = format!("{container}-listing");
        let (st, _) = s
            .call(
                Method::PUT,
                &format!("/{list_container}"),
                container_headers.clone(),
                empty(),
            )
            .await?;
        check(st, "container PUT")?;
        let fill = {
            let s = s.clone();
            let lc = list_container.clone();
            move |i: usize| {
                let s = s.clone();
                let path = format!("/{lc}/entry-{i:08}");
                async move {
                    let (st, _) = s.call(Method::PUT, &path, length(0), empty()).await?;
                    check(st, "listing fill PUT")
                }
            }
        };
        run_phase(args.listing, conc, fill).await?;
        let rounds = 5;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            let (st, n) = s
                .call(
                    Method::GET,
                    &format!("/{list_container}?format=json&limit=10000"),
                    HeaderMap::new(),
                    empty(),
                )
                .await?;
            check(st, "listing GET")?;
            bytes = n;
        }
        let per = start.elapsed().as_secs_f64() / rounds as f64;
        report("listing_10k_json", per * 1000.0, "ms");
        report("listing_10k_bytes", bytes as f64, "bytes");
        let drain = {
            let s = s.clone();
            let lc = list_container.clone();
            move |i: usize| {
                let s = s.clone();
                let path = format!("/{lc}/entry-{i:08}");
                async move {
                    let (st, _) = s
                        .call(Method::DELETE, &path, HeaderMap::new(), empty())
                        .await?;
                    check(st, "listing cleanup DELETE")
                }
            }
        };
        run_phase(args.listing, conc, drain).await?;
        cleanup(&s, &format!("/{list_container}")).await;
    }

    if args.large_mib > 0 {
        let len = args.large_mib * 1024 * 1024;
        let path = format!("/{container}/large");
        let body = PatternBody {
            left: len,
            chunk: Bytes::from(vec![b'y'; 1 << 16]),
        }
        .boxed();
        let start = Instant::now();
        let (st, _) = s.call(Method::PUT, &path, length(len), body).await?;
        check(st, "large PUT")?;
        report(
            "large_put",
            len as f64 / 1048576.0 / start.elapsed().as_secs_f64(),
            "MB/s",
        );
        let start = Instant::now();
        let (st, n) = s
            .call(Method::GET, &path, HeaderMap::new(), empty())
            .await?;
        check(st, "large GET")?;
        if n != len {
            bail!("large GET returned {n} of {len} bytes");
        }
        report(
            "large_get",
            len as f64 / 1048576.0 / start.elapsed().as_secs_f64(),
            "MB/s",
        );
        cleanup(&s, &path).await;
    }
    cleanup(&s, &format!("/{container}")).await;
    Ok(())
}
