//! The web console's cluster page, server side: the cluster's state
//! gathered on demand, as one JSON document, for a reseller admin.
//!
//! It owns the list of storage servers the rings name (one per type,
//! IP and port, whatever the number of devices or policies), asking each
//! server's recon middleware (`/recon/<check>`) for its devices and its
//! daemons' last passes, and the proxy's own figures (client requests,
//! body bytes, error-limited nodes) from [`ProxyMetrics`]. Who may see
//! the page is decided by whoever serves it.
//!
//! The report is bounded: every server is asked its checks at once, with
//! a connect timeout and one deadline for all its checks
//! ([`Limits`]); up to [`Limits::concurrency`] servers are asked at a
//! time. A server that answers no check in time is `"reachable": false`
//! with empty figures; a check that fails on a server that answers others
//! leaves its figures `null`. Nothing a server sends can fail the report.
//!
//! Where the figures come from (the keys of `apus-server`'s recon, which
//! the daemons' recon cache fills after each completed pass):
//! - `devices`: `/recon/diskusage`;
//! - `async_pending` (object servers): `/recon/async`;
//! - `replication_last`: `/recon/replication/<type>`;
//! - `daemons`, unix times of the last completed pass, by server type:
//!   - object: `replicator` (`replication_last`), `reconstructor`
//!     (`/recon/reconstruction/object`), `auditor` (the end of the period
//!     `object_auditor_stats_ALL` covers: `start_time + audit_time`),
//!     `updater` (`object_updater_last`);
//!   - container and account: `replicator` (`replication_last`),
//!     `auditor` (`<type>_audits_since + <type>_auditor_pass_completed`,
//!     the pass's start plus its length).
//!
//!   The expirer and the container updater leave only the length of
//!   their pass in recon, not when it ended, so they are not listed.

use std::collections::BTreeSet;
use std::time::Duration;

use apus_http::{empty, BackendClient, ClientConfig};
use futures_util::future::join_all;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::metrics::ProxyMetrics;

/// Recon answers larger than this are not read.
const MAX_ANSWER: usize = 1 << 20;

/// The kind of a storage server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerType {
    Account,
    Container,
    Object,
}

impl ServerType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerType::Account => "account",
            ServerType::Container => "container",
            ServerType::Object => "object",
        }
    }

    /// The recon checks asked of a server of this type.
    fn checks(self) -> &'static [&'static str] {
        match self {
            ServerType::Object => &[
                DISKUSAGE,
                "async",
                "replication/object",
                "reconstruction/object",
                "auditor/object",
                "updater/object",
            ],
            ServerType::Container => &[DISKUSAGE, "replication/container", "auditor/container"],
            ServerType::Account => &[DISKUSAGE, "replication/account", "auditor/account"],
        }
    }
}

const DISKUSAGE: &str = "diskusage";

/// One storage server of the rings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Server {
    pub kind: ServerType,
    pub ip: String,
    pub port: u16,
}

impl Server {
    /// `ip:port`, an IPv6 address in brackets.
    pub fn address(&self) -> String {
        if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// How long and how widely a report may ask.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time allowed to connect to a server.
    pub connect: Duration,
    /// Time allowed for all of one server's checks.
    pub per_server: Duration,
    /// Servers asked at once.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(1),
            per_server: Duration::from_secs(3),
            concurrency: 64,
        }
    }
}

/// What the console's cluster page shows, gathered now.
pub async fn report(config: &ProxyConfig) -> Value {
    gather(
        &servers(config),
        config.metrics.as_deref(),
        Limits::default(),
    )
    .await
}

/// The servers of the account, container and object rings (every
/// policy's), each once, by type then address; empty ring slots skipped.
pub fn servers(config: &ProxyConfig) -> Vec<Server> {
    let mut found = BTreeSet::new();
    let rings = [
        (ServerType::Account, &config.account_ring),
        (ServerType::Container, &config.container_ring),
    ]
    .into_iter()
    .chain(
        config
            .policies
            .iter()
            .map(|p| (ServerType::Object, &p.ring)),
    );
    for (kind, ring) in rings {
        for dev in ring.get().devs() {
            found.insert(Server {
                kind,
                ip: dev.ip.clone(),
                port: dev.port,
            });
        }
    }
    found.into_iter().collect()
}

/// The report for `servers` (in their order) and the proxy's figures
/// from `metrics` (zeros and no limited nodes without).
pub async fn gather(servers: &[Server], metrics: Option<&ProxyMetrics>, limits: Limits) -> Value {
    let client = BackendClient::new(ClientConfig {
        connect_timeout: limits.connect,
        node_timeout: limits.per_server,
        pool_idle_timeout: Duration::from_secs(1),
        pool_max_idle_per_host: 8,
    });
    // Batches of `concurrency` servers, each batch asked at once. (A
    // buffered stream of borrowing futures is not `Send` for every
    // lifetime, which the proxy's services need.)
    let mut answers: Vec<Value> = Vec::with_capacity(servers.len());
    for batch in servers.chunks(limits.concurrency.max(1)) {
        let asked: Vec<_> = batch
            .iter()
            .map(|s| server_report(&client, s, limits.per_server))
            .collect();
        answers.extend(join_all(asked).await);
    }
    json!({
        // After the asking: every time a server gave is before it.
        "time": apus_core::clock::now_secs(),
        "proxy": proxy_figures(metrics),
        "servers": answers,
    })
}

fn proxy_figures(metrics: Option<&ProxyMetrics>) -> Value {
    let (t, limited) = metrics
        .map(|m| (m.totals(), m.limited_nodes()))
        .unwrap_or_default();
    json!({
        "requests": t.requests,
        "by_class": {
            "2xx": t.class("2xx"),
            "3xx": t.class("3xx"),
            "4xx": t.class("4xx"),
            "5xx": t.class("5xx"),
        },
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        "error_limited": limited,
    })
}

/// What one check came to.
#[derive(Debug)]
enum Answer {
    /// No answer in time: refused, broken or too slow.
    Silent,
    /// An answer, but not a successful JSON document.
    Unusable,
    Json(Value),
}

impl Answer {
    fn json(&self) -> Option<&Value> {
        match self {
            Answer::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// Asks `check` of `host`, giving up at `deadline`.
async fn ask(client: &BackendClient, host: &str, check: &str, deadline: Instant) -> Answer {
    let asking = async {
        let path = format!("/recon/{check}");
        let Ok(resp) = client
            .request(Method::GET, host, &path, HeaderMap::new(), empty())
            .await
        else {
            return Answer::Silent;
        };
        if !resp.status().is_success() {
            return Answer::Unusable;
        }
        match Limited::new(resp.into_body(), MAX_ANSWER).collect().await {
            Ok(body) => {
                serde_json::from_slice(&body.to_bytes()).map_or(Answer::Unusable, Answer::Json)
            }
            Err(_) => Answer::Unusable,
        }
    };
    tokio::time::timeout_at(deadline, asking)
        .await
        .unwrap_or(Answer::Silent)
}

/// One server's entry of the report.
async fn server_report(client: &BackendClient, server: &Server, budget: Duration) -> Value {
    let deadline = Instant::now() + budget;
    let host = server.address();
    let checks = server.kind.checks();
    let answers = join_all(checks.iter().map(|c| ask(client, &host, c, deadline))).await;
    let reachable = answers.iter().any(|a| !matches!(a, Answer::Silent));
    let answer = |check: &str| -> Option<&Value> {
        checks
            .iter()
            .position(|c| *c == check)
            .and_then(|i| answers.get(i))
            .and_then(Answer::json)
    };
    let kind = server.kind.as_str();
    let replication = answer(&format!("replication/{kind}"));
    let replication_last = time_at(replication, &["replication_last"])
        .or_else(|| time_at(replication, &["object_replication_last"]));
    let mut daemons = Map::new();
    daemons.insert("replicator".into(), time_json(replication_last));
    let auditor = answer(&format!("auditor/{kind}"));
    let async_pending = match server.kind {
        ServerType::Object => {
            daemons.insert(
                "reconstructor".into(),
                time_json(time_at(
                    answer("reconstruction/object"),
                    &["object_reconstruction_last"],
                )),
            );
            const STATS: &str = "object_auditor_stats_ALL";
            let ended = time_at(auditor, &[STATS, "start_time"])
                .zip(time_at(auditor, &[STATS, "audit_time"]))
                .map(|(start, secs)| start + secs);
            daemons.insert("auditor".into(), time_json(ended));
            daemons.insert(
                "updater".into(),
                time_json(time_at(answer("updater/object"), &["object_updater_last"])),
            );
            answer("async")
                .and_then(|v| v.get("async_pending"))
                .filter(|v| v.is_number())
                .cloned()
                .unwrap_or(Value::Null)
        }
        ServerType::Container | ServerType::Account => {
            let since = time_at(auditor, &[&format!("{kind}_audits_since")]);
            let secs = time_at(auditor, &[&format!("{kind}_auditor_pass_completed")]);
            let ended = since.zip(secs).map(|(start, secs)| start + secs);
            daemons.insert("auditor".into(), time_json(ended));
            Value::Null
        }
    };
    json!({
        "type": kind,
        "address": host,
        "reachable": reachable,
        "devices": devices(answer(DISKUSAGE)),
        "async_pending": async_pending,
        "replication_last": time_json(replication_last),
        "daemons": daemons,
    })
}

/// The number at `path` (object keys) inside `v`, if it is one.
fn time_at(v: Option<&Value>, path: &[&str]) -> Option<f64> {
    let mut v = v?;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64().filter(|t| t.is_finite())
}

fn time_json(t: Option<f64>) -> Value {
    t.map_or(Value::Null, |t| json!(t))
}

/// The devices of a `/recon/diskusage` answer; an unmounted device's
/// figures (empty strings) are `null`.
fn devices(answer: Option<&Value>) -> Value {
    let Some(Value::Array(items)) = answer else {
        return json!([]);
    };
    let figure = |item: &Value, key: &str| {
        item.get(key)
            .filter(|v| v.is_number())
            .cloned()
            .unwrap_or(Value::Null)
    };
    let devices: Vec<Value> = items
        .iter()
        .filter(|item| item.is_object())
        .map(|item| {
            json!({
                "device": item.get("device").and_then(Value::as_str).unwrap_or(""),
                "mounted": item.get("mounted").and_then(Value::as_bool).unwrap_or(false),
                "size": figure(item, "size"),
                "used": figure(item, "used"),
                "avail": figure(item, "avail"),
            })
        })
        .collect();
    Value::Array(devices)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use apus_core::policy::PolicyKind;
    use apus_core::HashConfig;
    use apus_ring::{Device, ReloadingRing, Ring, RingData};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::backend::{ErrorLimiter, LimiterConfig};
    use crate::config::Policy;

    /// A storage server that answers `GET /recon/<check>` from `answers`
    /// (a 404 for the rest), one request per connection.
    async fn fake_server(answers: &[(&str, &str)]) -> SocketAddr {
        let answers: Arc<HashMap<String, String>> = Arc::new(
            answers
                .iter()
                .map(|(k, v)| (format!("/recon/{k}"), v.to_string()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("");
                    let (status, body) = match answers.get(path) {
                        Some(b) => ("200 OK", b.as_str()),
                        None => ("404 Not Found", "Invalid path"),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// A ring of `devs` (`None`: an empty slot), each given a partition.
    fn ring(devs: &[Option<(&str, u16, &str)>]) -> Arc<ReloadingRing> {
        let devs: Vec<Option<Device>> = devs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.map(|(ip, port, name)| Device {
                    id: i as u32,
                    region: 1,
                    zone: 1,
                    ip: ip.into(),
                    port,
                    replication_ip: ip.into(),
                    replication_port: port,
                    device: name.into(),
                    weight: 1.0,
                    meta: String::new(),
                })
            })
            .collect();
        let table = devs.iter().flatten().map(|d| d.id as u16).collect();
        let data = RingData {
            devs,
            replica2part2dev: vec![table],
            part_shift: 28,
            next_part_power: None,
            version: None,
        };
        Arc::new(ReloadingRing::fixed(Ring::new(data).unwrap()))
    }

    fn policy(index: u32, ring: Arc<ReloadingRing>) -> Policy {
        Policy {
            index,
            name: format!("p{index}"),
            aliases: Vec::new(),
            default: index == 0,
            deprecated: false,
            ring,
            kind: PolicyKind::Replication,
        }
    }

    fn config(
        account: Arc<ReloadingRing>,
        container: Arc<ReloadingRing>,
        objects: Vec<Arc<ReloadingRing>>,
    ) -> ProxyConfig {
        let policies = objects
            .into_iter()
            .enumerate()
            .map(|(i, r)| policy(i as u32, r))
            .collect();
        ProxyConfig::new(HashConfig::new("", "salt"), account, container, policies)
    }

    fn server<'a>(report: &'a Value, kind: &str, address: &str) -> &'a Value {
        report["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == kind && s["address"] == address)
            .unwrap_or_else(|| panic!("no {kind} server {address} in {report}"))
    }

    #[tokio::test]
    async fn a_server_is_reported_with_what_its_recon_serves() {
        let addr = fake_server(&[
            (
                "diskusage",
                r#"[{"device": "sdb1", "mounted": true, "size": 100, "used": 40, "avail": 60},
                    {"device": "sdb2", "mounted": false, "size": "", "used": "", "avail": ""}]"#,
            ),
            ("async", r#"{"async_pending": 7, "async_pending_last": 1765000001.0}"#),
            (
                "replication/object",
                r#"{"replication_last": 1765000000.5, "replication_time": 0.2,
                    "object_replication_last": 1765000000.5}"#,
            ),
            (
                "auditor/object",
                r#"{"object_auditor_stats_ALL": {"start_time": 1764999990.0, "audit_time": 5.0},
                    "object_auditor_stats_ZBF": null}"#,
            ),
            ("updater/object", r#"{"object_updater_last": 1764999999.0}"#),
            (
                "replication/container",
                r#"{"replication_last": 1764000000.0}"#,
            ),
            (
                "auditor/container",
                r#"{"container_audits_since": 1764000000.0, "container_auditor_pass_completed": 2.5}"#,
            ),
        ])
        .await;
        let port = addr.port();
        let object_ring = ring(&[
            Some(("127.0.0.1", port, "sdb1")),
            None,
            Some(("127.0.0.1", port, "sdb2")),
        ]);
        let mut cfg = config(
            ring(&[Some(("127.0.0.1", port, "sdb1"))]),
            ring(&[Some(("127.0.0.1", port, "sdb1"))]),
            // Two policies on the same server: listed once.
            vec![object_ring.clone(), object_ring],
        );
        let metrics = crate::metrics::ProxyMetrics::new(&[0, 1]);
        let limiter = Arc::new(ErrorLimiter::new(LimiterConfig {
            limit: 10,
            interval: Duration::from_secs(60),
            probe_interval: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(10),
        }));
        let sdb1 = cfg.account_ring.get().dev(0).unwrap().clone();
        limiter.limit_now(&sdb1);
        metrics.attach_limiter(limiter);
        cfg.metrics = Some(metrics);

        let before = apus_core::clock::now_secs();
        let r = report(&cfg).await;
        assert!(r["time"].as_f64().unwrap() >= before);
        let address = format!("127.0.0.1:{port}");
        assert_eq!(r["servers"].as_array().unwrap().len(), 3, "{r}");
        let kinds: Vec<&str> = r["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["account", "container", "object"]);

        let object = server(&r, "object", &address);
        assert_eq!(object["reachable"], true);
        assert_eq!(
            object["devices"],
            json!([
                {"device": "sdb1", "mounted": true, "size": 100, "used": 40, "avail": 60},
                {"device": "sdb2", "mounted": false, "size": null, "used": null, "avail": null},
            ])
        );
        assert_eq!(object["async_pending"], 7);
        assert_eq!(object["replication_last"], 1765000000.5);
        assert_eq!(
            object["daemons"],
            json!({
                "replicator": 1765000000.5,
                "reconstructor": null,
                "auditor": 1764999995.0,
                "updater": 1764999999.0,
            })
        );

        let container = server(&r, "container", &address);
        assert_eq!(container["reachable"], true);
        assert_eq!(container["async_pending"], Value::Null);
        assert_eq!(container["replication_last"], 1764000000.0);
        assert_eq!(
            container["daemons"],
            json!({"replicator": 1764000000.0, "auditor": 1764000002.5})
        );
        // The account server answered diskusage only.
        let account = server(&r, "account", &address);
        assert_eq!(account["reachable"], true);
        assert_eq!(account["devices"][0]["device"], "sdb1");
        assert_eq!(
            account["daemons"],
            json!({"replicator": null, "auditor": null})
        );

        let proxy = &r["proxy"];
        assert_eq!(proxy["requests"], 0);
        assert_eq!(
            proxy["by_class"],
            json!({"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0})
        );
        assert_eq!(
            proxy["error_limited"],
            json!([format!("127.0.0.1:{port}/sdb1")])
        );
    }

    #[tokio::test]
    async fn a_server_that_refuses_connections_is_unreachable() {
        let live = fake_server(&[("diskusage", "[]")]).await;
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = config(
            ring(&[Some(("127.0.0.1", live.port(), "sda"))]),
            ring(&[Some(("127.0.0.1", live.port(), "sda"))]),
            vec![ring(&[
                Some(("127.0.0.1", refused, "sda")),
                Some(("127.0.0.1", live.port(), "sda")),
            ])],
        );
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), report(&cfg))
            .await
            .expect("the report is bounded");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(r["servers"].as_array().unwrap().len(), 4, "{r}");
        let down = server(&r, "object", &format!("127.0.0.1:{refused}"));
        assert_eq!(down["reachable"], false);
        assert_eq!(down["devices"], json!([]));
        assert_eq!(down["async_pending"], Value::Null);
        assert_eq!(down["replication_last"], Value::Null);
        assert_eq!(down["daemons"]["replicator"], Value::Null);
        let up = server(&r, "object", &format!("127.0.0.1:{}", live.port()));
        assert_eq!(up["reachable"], true);
        // Without metrics the proxy's figures are zeros.
        assert_eq!(r["proxy"]["requests"], 0);
        assert_eq!(r["proxy"]["bytes_in"], 0);
        assert_eq!(r["proxy"]["error_limited"], json!([]));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_costs_one_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds connections, answering nothing.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let servers = [
            Server {
                kind: ServerType::Object,
                ip: "127.0.0.1".into(),
                port,
            },
            Server {
                kind: ServerType::Container,
                ip: "127.0.0.1".into(),
                port,
            },
        ];
        let limits = Limits {
            connect: Duration::from_millis(200),
            per_server: Duration::from_millis(300),
            concurrency: 4,
        };
        let started = std::time::Instant::now();
        let r = gather(&servers, None, limits).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        for s in r["servers"].as_array().unwrap() {
            assert_eq!(s["reachable"], false, "{s}");
        }
    }

    #[test]
    fn addresses_bracket_ipv6() {
        let s = |ip: &str| Server {
            kind: ServerType::Object,
            ip: ip.into(),
            port: 6200,
        };
        assert_eq!(s("10.0.0.1").address(), "10.0.0.1:6200");
        assert_eq!(s("fe80::1").address(), "[fe80::1]:6200");
    }

    #[test]
    fn unusable_diskusage_gives_no_devices() {
        assert_eq!(devices(None), json!([]));
        assert_eq!(devices(Some(&json!({"x": 1}))), json!([]));
        assert_eq!(
            devices(Some(&json!([1, {"device": 5, "size": "9"}]))),
            json!([{"device": "", "mounted": false, "size": null, "used": null, "avail": null}])
        );
    }
}
