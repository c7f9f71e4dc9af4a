//! A load generator with a ledger, for scenarios that fault nodes while
//! clients write: threads with one keep-alive connection each PUT, GET and
//! DELETE 4 KiB objects in one container, time every request, and record
//! what each acknowledged write means for the object's final state.
//!
//! Each thread owns its object names, so no two clients race on a name and
//! the ledger is exact: an acknowledged PUT or DELETE fixes a name's state;
//! one that failed or got no answer may or may not have reached a node, so
//! it adds a possible state rather than replacing the known one (a write
//! that reached one node can still win later through replication).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::random_u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Put,
    Get,
    Delete,
}

/// One request: when it ended (since the load started), what, how it
/// ended (0: no answer) and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub end: Duration,
    pub op: Op,
    pub status: u16,
    pub latency: Duration,
}

/// What an object may be at the end: `None` is absent (never written or
/// deleted), `Some(md5)` is that content.
pub type State = Option<String>;

/// A GET answer that no write to the object ever allowed: a corrupt body.
#[derive(Clone, Debug)]
pub struct Violation {
    pub name: String,
    pub expected: BTreeSet<State>,
    pub got: State,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub threads: usize,
    pub object_size: usize,
    /// Names each thread owns.
    pub names_per_thread: usize,
    /// Percentages of PUT and DELETE; the rest are GETs.
    pub put_percent: u64,
    pub delete_percent: u64,
    /// Socket timeout of one request.
    pub timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            threads: 8,
            object_size: 4096,
            names_per_thread: 50,
            put_percent: 45,
            delete_percent: 10,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the load found.
#[derive(Default)]
pub struct Report {
    pub samples: Vec<Sample>,
    /// Every name's possible final states.
    pub ledger: BTreeMap<String, BTreeSet<State>>,
    /// GETs that answered a body no write ever made.
    pub violations: Vec<Violation>,
    /// GETs that answered an earlier state of the object than the ledger
    /// allows now: a node that missed a later write answered first. Swift
    /// is eventually consistent, so during faults these can happen; after
    /// convergence they must not.
    pub stale_reads: usize,
}

impl Report {
    /// Samples that ended in `[from, to)`.
    pub fn window(&self, from: Duration, to: Duration) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|s| s.end >= from && s.end < to)
            .copied()
            .collect()
    }
}

/// Throughput and latency of a set of samples.
#[derive(Debug)]
pub struct Summary {
    pub ops: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Answers other than 2xx and the 404s the ledger expects, and no
    /// answers at all.
    pub errors: usize,
}

pub fn summarize(samples: &[Sample], seconds: f64) -> Summary {
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort();
    let pick = |q: f64| -> Duration {
        if lat.is_empty() {
            Duration::ZERO
        } else {
            lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)]
        }
    };
    Summary {
        ops: samples.len(),
        per_second: samples.len() as f64 / seconds.max(f64::EPSILON),
        p50: pick(0.50),
        p99: pick(0.99),
        max: lat.last().copied().unwrap_or_default(),
        errors: samples
            .iter()
            .filter(|s| !(200..300).contains(&s.status) && s.status != 404)
            .count(),
    }
}

/// A running load; [`Load::finish`] stops it and returns what it found.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<ThreadReport>>,
    pub started: Instant,
}

struct ThreadReport {
    samples: Vec<Sample>,
    ledger: BTreeMap<String, BTreeSet<State>>,
    violations: Vec<Violation>,
    stale_reads: usize,
}

impl Load {
    /// Starts `config.threads` clients on `container` (a path such as
    /// `/v1/AUTH_test/load`, which must exist) of the proxy at `proxy`.
    pub fn start(proxy: SocketAddr, token: &str, container: &str, config: LoadConfig) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = (0..config.threads)
            .map(|t| {
                let client = Client {
                    proxy,
                    token: token.to_string(),
                    container: container.to_string(),
                    timeout: config.timeout,
                    conn: None,
                };
                let stop = stop.clone();
                let config = config.clone();
                std::thread::spawn(move || run_thread(t, client, config, stop, started))
            })
            .collect();
        Load {
            stop,
            threads,
            started,
        }
    }

    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for t in self.threads {
            let r = t.join().expect("a load thread panicked");
            report.samples.extend(r.samples);
            report.ledger.extend(r.ledger);
            report.violations.extend(r.violations);
            report.stale_reads += r.stale_reads;
        }
        report.samples.sort_by_key(|s| s.end);
        report
    }
}

/// A small xorshift generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", Md5::digest(data))
}

fn run_thread(
    t: usize,
    mut client: Client,
    config: LoadConfig,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> ThreadReport {
    let mut rng = Rng(random_u64() | 1);
    let names: Vec<String> = (0..config.names_per_thread)
        .map(|i| format!("t{t}-{i}"))
        .collect();
    let mut ledger: BTreeMap<String, BTreeSet<State>> = names
        .iter()
        .map(|n| (n.clone(), BTreeSet::from([None])))
        .collect();
    // Every state each name has ever been written to, for telling a stale
    // read from a corrupt one.
    let mut history = ledger.clone();
    let mut samples = Vec::new();
    let mut violations = Vec::new();
    let mut stale_reads = 0;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let name = &names[rng.below(names.len() as u64) as usize];
        let roll = rng.below(100);
        let op = if roll < config.put_percent {
            Op::Put
        } else if roll < config.put_percent + config.delete_percent {
            Op::Delete
        } else {
            Op::Get
        };
        let began = Instant::now();
        let states = ledger.get_mut(name).expect("every name is in the ledger");
        let ever = history.get_mut(name).expect("every name is in the history");
        let status = match op {
            Op::Put => {
                seq += 1;
                let mut body = format!("{name} version {seq} ").into_bytes();
                body.resize(config.object_size, b'.');
                let md5 = md5_hex(&body);
                ever.insert(Some(md5.clone()));
                let status = client.request("PUT", name, &body).map(|r| r.0).unwrap_or(0);
                if status == 201 {
                    *states = BTreeSet::from([Some(md5)]);
                } else {
                    states.insert(Some(md5));
                }
                status
            }
            Op::Delete => {
                let status = client
                    .request("DELETE", name, b"")
                    .map(|r| r.0)
                    .unwrap_or(0);
                // A 404 is as good as a 204: the object is gone either way.
                if status == 204 || status == 404 {
                    *states = BTreeSet::from([None]);
                } else {
                    states.insert(None);
                }
                status
            }
            Op::Get => match client.request("GET", name, b"") {
                Some((status, body)) => {
                    let got = match status {
                        200 => Some(Some(md5_hex(&body))),
                        404 => Some(None),
                        _ => None,
                    };
                    if let Some(got) = got {
                        if !states.contains(&got) && ever.contains(&got) {
                            stale_reads += 1;
                        } else if !states.contains(&got) {
                            violations.push(Violation {
                                name: name.clone(),
                                expected: states.clone(),
                                got,
                                status,
                            });
                        }
                    }
                    status
                }
                None => 0,
            },
        };
        samples.push(Sample {
            end: started.elapsed(),
            op,
            status,
            latency: began.elapsed(),
        });
    }
    ThreadReport {
        samples,
        ledger,
        violations,
        stale_reads,
    }
}

/// One keep-alive HTTP/1.1 connection to the proxy, reopened after any
/// failure.
struct Client {
    proxy: SocketAddr,
    token: String,
    container: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// The status and body, or `None` when no complete answer came.
    fn request(&mut self, method: &str, name: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let answer = self.try_request(method, name, body);
        if answer.is_none() {
            self.conn = None;
        }
        answer
    }

    fn try_request(&mut self, method: &str, name: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.proxy, self.timeout).ok()?;
            stream.set_read_timeout(Some(self.timeout)).ok()?;
            stream.set_write_timeout(Some(self.timeout)).ok()?;
            stream.set_nodelay(true).ok()?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut()?;
        let head = format!(
            "{method} {}/{name} HTTP/1.1\r\nHost: load\r\nX-Auth-Token: {}\r\n\
             Content-Length: {}\r\n\r\n",
            self.container,
            self.token,
            body.len()
        );
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut line = String::new();
        conn.read_line(&mut line).ok()?;
        let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
        let mut length: Option<usize> = None;
        let mut close = false;
        loop {
            line.clear();
            conn.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':')?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Object answers are never chunked; anything else is
                // read to the end and the connection dropped.
                close = true;
            }
        }
        let mut body = Vec::new();
        let no_body = method == "HEAD" || status == 204 || status == 304;
        match (no_body, length) {
            (true, _) => {}
            (false, Some(n)) => {
                body.resize(n, 0);
                conn.read_exact(&mut body).ok()?;
            }
            (false, None) => {
                conn.read_to_end(&mut body).ok()?;
                close = true;
            }
        }
        if close {
            self.conn = None;
        }
        Some((status, body))
    }
}
