//! `apus status`: every storage server the rings name, asked at once for
//! its health and figures: `/healthcheck`, then Swift's `/recon` checks
//! (ring and `swift.conf` md5s against the local files, clock skew,
//! unmounted and full devices, async pendings, when replication last
//! completed). One line per server, those with problems first, or
//! `--json`; exit code 1 when any server has a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use apus_http::{BackendClient, ClientConfig};
use apus_ring::Ring;
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// The longest answer read from a server.
const BODY_LIMIT: usize = 4 << 20;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The directory of the rings and swift.conf.
    #[arg(long, value_name = "DIR", default_value = "/etc/swift")]
    swift_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for a server's connection and each answer.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// A device fuller than this percentage is a problem.
    #[arg(long, value_name = "PCT", default_value_t = 90.0)]
    full_percent: f64,
    /// A server clock further than this many seconds from ours is a problem.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    max_skew: f64,
    /// Replication last completed longer ago than this many seconds is a
    /// problem (a server that never replicated is only shown as such).
    #[arg(long, value_name = "SECS", default_value_t = 86_400.0)]
    max_replication_age: f64,
}

pub fn run(args: &StatusArgs) -> ExitCode {
    match status(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One storage server (a distinct ip:port of the rings) and what it said.
#[derive(Debug, Default, Serialize)]
struct Server {
    host: String,
    ip: String,
    port: u16,
    /// The rings that name it: `account`, `container`, `object`.
    types: Vec<String>,
    reachable: bool,
    ok: bool,
    problems: Vec<String>,
    healthcheck: Option<bool>,
    ring_md5_matches: Option<bool>,
    swift_conf_md5_matches: Option<bool>,
    time_skew_secs: Option<f64>,
    unmounted: Vec<String>,
    full_devices: Vec<String>,
    disk_used_max_pct: Option<f64>,
    async_pending: Option<u64>,
    replication_last: Option<f64>,
    replication_age_secs: Option<f64>,
}

/// The ring files of `swift_dir` and their md5s: account, container,
/// then every object ring (`object.ring.gz`, `object-N.ring.gz`).
fn local_rings(swift_dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, String)>> {
    let mut files: Vec<String> = vec!["account.ring.gz".into(), "container.ring.gz".into()];
    let mut objects: Vec<(u32, String)> = Vec::new();
    let entries = std::fs::read_dir(swift_dir)
        .with_context(|| format!("cannot read {}", swift_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "object.ring.gz" {
            objects.push((0, name));
        } else if let Some(n) = name
            .strip_prefix("object-")
            .and_then(|r| r.strip_suffix(".ring.gz"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            objects.push((n, name));
        }
    }
    objects.sort();
    files.extend(objects.into_iter().map(|(_, n)| n));
    let mut out = Vec::new();
    for name in files {
        let path = swift_dir.join(&name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        out.push((name, path, md5_hex(&bytes)));
    }
    if out.is_empty() {
        bail!("no rings in {}", swift_dir.display());
    }
    Ok(out)
}

fn md5_hex(bytes: &[u8]) -> String {
    apus_core::hash::to_hex(&apus_core::hash::md5_digest(bytes))
}

fn host_of(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// What the server-wide checks compare with.
struct Expect {
    ring_md5: BTreeMap<String, String>,
    swift_conf_md5: Option<String>,
    full_percent: f64,
    max_skew: f64,
    max_replication_age: f64,
}

/// GETs `path` and parses its JSON.
async fn get_json(http: &BackendClient, host: &str, path: &str) -> anyhow::Result<Value> {
    let resp = http
        .request(
            Method::GET,
            host,
            path,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    let status = resp.status();
    let body = apus_http::body::collect_limited(resp.into_body(), BODY_LIMIT).await?;
    if status != StatusCode::OK {
        bail!("{path}: {status}");
    }
    serde_json::from_slice(&body).map_err(|e| anyhow!("{path}: not JSON: {e}"))
}

/// Runs every check against one server.
async fn check_server(http: BackendClient, mut s: Server, expect: &Expect) -> Server {
    let host = s.host.clone();
    // Reachable and healthy.
    match http
        .request(
            Method::GET,
            &host,
            "/healthcheck",
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Err(e) => {
            s.problems.push(format!("unreachable: {e}"));
            return s;
        }
        Ok(resp) => {
            s.reachable = true;
            let status = resp.status();
            let body = apus_http::body::collect_limited(resp.into_body(), BODY_LIMIT)
                .await
                .unwrap_or_default();
            let healthy = status == StatusCode::OK && body.as_ref() == b"OK";
            s.healthcheck = Some(healthy);
            if !healthy {
                s.problems.push(format!("healthcheck answered {status}"));
            }
        }
    }

    // Ring md5s: each ring the server loads that we have too.
    match get_json(&http, &host, "/recon/ringmd5").await {
        Ok(Value::Object(rings)) => {
            let mut all = true;
            for (path, md5) in &rings {
                let name = path.rsplit('/').next().unwrap_or(path);
                let Some(ours) = expect.ring_md5.get(name) else {
                    continue;
                };
                if md5.as_str() != Some(ours.as_str()) {
                    all = false;
                    s.problems.push(format!("{name} differs"));
                }
            }
            s.ring_md5_matches = Some(all);
        }
        Ok(_) => s.problems.push("ringmd5: not an object".into()),
        Err(e) => s.problems.push(format!("recon {e}")),
    }

    match get_json(&http, &host, "/recon/swiftconfmd5").await {
        Ok(Value::Object(conf)) => {
            if let Some(ours) = &expect.swift_conf_md5 {
                let theirs = conf.values().next().and_then(Value::as_str);
                let same = theirs == Some(ours.as_str());
                s.swift_conf_md5_matches = Some(same);
                if !same {
                    s.problems.push("swift.conf differs".into());
                }
            }
        }
        Ok(_) => s.problems.push("swiftconfmd5: not an object".into()),
        Err(e) => s.problems.push(format!("recon {e}")),
    }

    // Clock skew: the server's time against ours before and after asking.
    let before = apus_core::clock::now_secs();
    match get_json(&http, &host, "/recon/time").await {
        Ok(v) => {
            let after = apus_core::clock::now_secs();
            if let Some(theirs) = v.as_f64() {
                let skew = if theirs < before {
                    theirs - before
                } else if theirs > after {
                    theirs - after
                } else {
                    0.0
                };
                s.time_skew_secs = Some(skew);
                if skew.abs() > expect.max_skew {
                    s.problems.push(format!("clock off by {skew:.1}s"));
                }
            }
        }
        Err(e) => s.problems.push(format!("recon {e}")),
    }

    match get_json(&http, &host, "/recon/unmounted").await {
        Ok(Value::Array(devs)) => {
            for d in devs {
                let name = d
                    .get("device")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                s.problems.push(format!("{name} unmounted"));
                s.unmounted.push(name);
            }
        }
        Ok(_) => s.problems.push("unmounted: not a list".into()),
        Err(e) => s.problems.push(format!("recon {e}")),
    }

    match get_json(&http, &host, "/recon/diskusage").await {
        Ok(Value::Array(devs)) => {
            for d in devs {
                let (Some(size), Some(used)) = (
                    d.get("size").and_then(Value::as_f64),
                    d.get("used").and_then(Value::as_f64),
                ) else {
                    continue;
                };
                if size <= 0.0 {
                    continue;
                }
                let pct = 100.0 * used / size;
                s.disk_used_max_pct = Some(s.disk_used_max_pct.map_or(pct, |m| m.max(pct)));
                if pct > expect.full_percent {
                    let name = d.get("device").and_then(Value::as_str).unwrap_or("?");
                    s.problems.push(format!("{name} {pct:.0}% full"));
                    s.full_devices.push(name.to_string());
                }
            }
        }
        Ok(_) => s.problems.push("diskusage: not a list".into()),
        Err(e) => s.problems.push(format!("recon {e}")),
    }

    let is_object = s.types.iter().any(|t| t == "object");
    if is_object {
        match get_json(&http, &host, "/recon/async").await {
            Ok(v) => s.async_pending = v.get("async_pending").and_then(Value::as_u64),
            Err(e) => s.problems.push(format!("recon {e}")),
        }
    }

    // Replication of the server's own kind (objects first).
    let kind = ["object", "container", "account"]
        .into_iter()
        .find(|k| s.types.iter().any(|t| t == k))
        .unwrap_or("object");
    match get_json(&http, &host, &format!("/recon/replication/{kind}")).await {
        Ok(v) => {
            let key = if kind == "object" {
                "object_replication_last"
            } else {
                "replication_last"
            };
            if let Some(last) = v.get(key).and_then(Value::as_f64) {
                let age = (apus_core::clock::now_secs() - last).max(0.0);
                s.replication_last = Some(last);
                s.replication_age_secs = Some(age);
                if age > expect.max_replication_age {
                    s.problems
                        .push(format!("{kind} replication last done {} ago", span(age)));
                }
            }
        }
        Err(e) => s.problems.push(format!("recon {e}")),
    }
    s
}

/// `42s`, `5m`, `3h`, `2d`.
fn span(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn status(args: &StatusArgs) -> anyhow::Result<bool> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let rings = local_rings(&args.swift_dir)?;
    // Every distinct ip:port, with the rings that name it.
    let mut servers: BTreeMap<(Option<IpAddr>, String, u16), BTreeSet<&'static str>> =
        BTreeMap::new();
    for (name, path, _) in &rings {
        let kind = if name.starts_with("account") {
            "account"
        } else if name.starts_with("container") {
            "container"
        } else {
            "object"
        };
        let ring = Ring::load(path).with_context(|| format!("cannot load {}", path.display()))?;
        for dev in ring.devs() {
            let key = (dev.ip.parse().ok(), dev.ip.clone(), dev.port);
            servers.entry(key).or_default().insert(kind);
        }
    }
    let swift_conf_md5 = std::fs::read(args.swift_dir.join("swift.conf"))
        .ok()
        .map(|b| md5_hex(&b));
    let expect = std::sync::Arc::new(Expect {
        ring_md5: rings
            .iter()
            .map(|(n, _, m)| (n.clone(), m.clone()))
            .collect(),
        swift_conf_md5: swift_conf_md5.clone(),
        full_percent: args.full_percent,
        max_skew: args.max_skew,
        max_replication_age: args.max_replication_age,
    });
    let timeout = Duration::from_secs_f64(args.timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let results: Vec<Server> = runtime.block_on(async {
        let http = BackendClient::new(ClientConfig {
            connect_timeout: timeout,
            node_timeout: timeout,
            pool_max_idle_per_host: 1,
            ..ClientConfig::default()
        });
        let mut tasks = JoinSet::new();
        for (i, ((_, ip, port), types)) in servers.iter().enumerate() {
            let s = Server {
                host: host_of(ip, *port),
                ip: ip.clone(),
                port: *port,
                types: types.iter().map(|t| t.to_string()).collect(),
                ..Server::default()
            };
            let (http, expect) = (http.clone(), expect.clone());
            tasks.spawn(async move { (i, check_server(http, s, &expect).await) });
        }
        let mut out: Vec<(usize, Server)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(r) = joined {
                out.push(r);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, s)| s).collect()
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut results = results;
    for s in &mut results {
        s.ok = s.reachable && s.problems.is_empty();
    }
    // Problems first: unreachable servers, then the others with problems.
    results.sort_by_key(|s| (s.ok, s.reachable));
    let all_ok = results.len() == servers.len() && results.iter().all(|s| s.ok);

    let mut nodes: BTreeMap<&str, bool> = BTreeMap::new();
    for s in &results {
        let ok = nodes.entry(s.ip.as_str()).or_insert(true);
        *ok &= s.ok;
    }
    let nodes_ok = nodes.values().filter(|ok| **ok).count();
    let servers_ok = results.iter().filter(|s| s.ok).count();

    if args.json {
        let local: BTreeMap<&str, &str> = rings
            .iter()
            .map(|(n, _, m)| (n.as_str(), m.as_str()))
            .collect();
        let out = json!({
            "ok": all_ok,
            "nodes": nodes.len(),
            "nodes_ok": nodes_ok,
            "servers_ok": servers_ok,
            "servers": results,
            "local": {
                "swift_dir": args.swift_dir.to_string_lossy(),
                "ring_md5": local,
                "swift_conf_md5": swift_conf_md5,
            },
        });
        println!("{out}");
        return Ok(all_ok);
    }

    let dash = || "-".to_string();
    println!(
        "{:<12} {:<22} {:<22} {:>6} {:>6} {:>11} {:>5}  PROBLEMS",
        "STATE", "SERVER", "TYPE", "SKEW", "ASYNC", "REPLICATED", "DISK"
    );
    for s in &results {
        let state = if !s.reachable {
            "UNREACHABLE"
        } else if s.ok {
            "OK"
        } else {
            "PROBLEM"
        };
        println!(
            "{:<12} {:<22} {:<22} {:>6} {:>6} {:>11} {:>5}  {}",
            state,
            s.host,
            s.types.join(","),
            s.time_skew_secs.map_or_else(dash, |v| format!("{v:.1}s")),
            s.async_pending.map_or_else(dash, |v| v.to_string()),
            match (s.reachable, s.replication_age_secs) {
                (false, _) => dash(),
                (true, None) => "never".to_string(),
                (true, Some(age)) => format!("{} ago", span(age)),
            },
            s.disk_used_max_pct
                .map_or_else(dash, |v| format!("{v:.0}%")),
            if s.problems.is_empty() {
                "-".to_string()
            } else {
                s.problems.join("; ")
            },
        );
    }
    println!(
        "{} servers on {} nodes: {servers_ok} servers OK, {} with problems; {nodes_ok} of {} nodes OK",
        results.len(),
        nodes.len(),
        results.len() - servers_ok,
        nodes.len()
    );
    Ok(all_ok)
}
