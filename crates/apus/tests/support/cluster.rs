//! A real multi-node cluster for fault scenarios: four storage nodes and a
//! proxy, each a separate `apus serve --config` process on 127.0.0.1 with
//! its own ports and devices directory, sharing generated rings (part
//! power 6, 3 replicas, one device per node in its own zone). Any node can
//! be stopped, killed and restarted, any daemon run once on any node, and
//! the files on every device inspected.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apus_core::HashConfig;
use apus_ring::builder::{RingBuilder, AUTO_ID};
use apus_ring::{Device, Ring};

use super::{apus_bin, exchange, free_port, login, Head, START_TIMEOUT, STOP_TIMEOUT};

pub const NODES: usize = 4;
const PART_POWER: u32 = 6;

/// Which server of a node.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Object,
    Container,
    Account,
}

pub struct Node {
    pub index: usize,
    /// The device name, `d<index+1>`.
    pub device: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub object_port: u16,
    pub container_port: u16,
    pub account_port: u16,
    child: Option<Child>,
}

impl Node {
    pub fn device_path(&self) -> PathBuf {
        self.dir.join("devices").join(&self.device)
    }

    pub fn port(&self, kind: Kind) -> u16 {
        match kind {
            Kind::Object => self.object_port,
            Kind::Container => self.container_port,
            Kind::Account => self.account_port,
        }
    }
}

pub struct Options {
    /// `[daemons] reclaim_age` of every node, seconds.
    pub reclaim_age: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reclaim_age: 604_800.0,
        }
    }
}

pub struct MultiCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub proxy_port: u16,
    pub hash: HashConfig,
    proxy: Option<Child>,
    token: String,
    /// `/v1/AUTH_test`.
    pub account_path: String,
}

fn build_ring(path: &Path, ports: &[u16]) -> Ring {
    let mut builder = RingBuilder::new(PART_POWER, 3.0, 0).unwrap();
    for (i, port) in ports.iter().enumerate() {
        builder
            .add_dev(Device {
                id: AUTO_ID,
                region: 1,
                zone: i as u32 + 1,
                ip: "127.0.0.1".into(),
                port: *port,
                replication_ip: "127.0.0.1".into(),
                replication_port: *port,
                device: format!("d{}", i + 1),
                weight: 100.0,
                meta: String::new(),
            })
            .unwrap();
    }
    builder.rebalance(Some(1), &mut |_| {}).unwrap();
    let data = builder.ring_data().unwrap();
    data.save(path).unwrap();
    Ring::new(data).unwrap()
}

impl MultiCluster {
    pub fn start(options: Options) -> MultiCluster {
        let dir = tempfile::tempdir().unwrap();
        let rings = dir.path().join("rings");
        fs::create_dir_all(&rings).unwrap();
        let ports: Vec<[u16; 3]> = (0..NODES)
            .map(|_| [free_port(), free_port(), free_port()])
            .collect();
        build_ring(
            &rings.join("object.ring.gz"),
            &ports.iter().map(|p| p[0]).collect::<Vec<_>>(),
        );
        build_ring(
            &rings.join("container.ring.gz"),
            &ports.iter().map(|p| p[1]).collect::<Vec<_>>(),
        );
        build_ring(
            &rings.join("account.ring.gz"),
            &ports.iter().map(|p| p[2]).collect::<Vec<_>>(),
        );
        let hash = HashConfig::new("scenario-prefix", "scenario-suffix");
        let hash_toml = "[hash]\nprefix = \"scenario-prefix\"\nsuffix = \"scenario-suffix\"\n";
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let ndir = dir.path().join(format!("node{}", i + 1));
            let device = format!("d{}", i + 1);
            fs::create_dir_all(ndir.join("devices").join(&device)).unwrap();
            let config = ndir.join("node.toml");
            fs::write(
                &config,
                format!(
                    "roles = [\"storage\"]\nrings_dir = \"../rings\"\nlog_requests = false\n\
                     shutdown_timeout = 2\n{hash_toml}\n\
                     [storage]\ndevices = \"devices\"\nbind_ip = \"127.0.0.1\"\n\
                     object_port = {}\ncontainer_port = {}\naccount_port = {}\n\
                     node_timeout = 5\n\n\
                     [daemons]\nrun = false\nreclaim_age = {}\n\n\
                     [daemons.object-updater]\nper_second = 0\n",
                    p[0], p[1], p[2], options.reclaim_age
                ),
            )
            .unwrap();
            nodes.push(Node {
                index: i,
                device,
                dir: ndir,
                config,
                object_port: p[0],
                container_port: p[1],
                account_port: p[2],
                child: None,
            });
        }
        let proxy_port = free_port();
        let pdir = dir.path().join("proxy");
        fs::create_dir_all(&pdir).unwrap();
        fs::write(
            pdir.join("proxy.toml"),
            format!(
                "roles = [\"proxy\"]\nrings_dir = \"../rings\"\nlog_requests = false\n\
                 shutdown_timeout = 2\n{hash_toml}\n\
                 [proxy]\nbind = \"127.0.0.1:{proxy_port}\"\nnode_timeout = 5\n\
                 recheck_account_existence = 0\nrecheck_container_existence = 0\n\n\
                 [[proxy.tempauth.users]]\nname = \"test:tester\"\nkey = \"testing\"\n\
                 groups = [\".admin\"]\n"
            ),
        )
        .unwrap();
        let mut cluster = MultiCluster {
            dir,
            nodes,
            proxy_port,
            hash,
            proxy: None,
            token: String::new(),
            account_path: String::new(),
        };
        for i in 0..NODES {
            cluster.start_node(i);
        }
        cluster.start_proxy();
        let (token, path) = login(proxy_port, "test:tester", "testing");
        cluster.token = token;
        cluster.account_path = path;
        cluster
    }

    fn spawn(&self, config: &Path, log: &Path) -> Child {
        Command::new(apus_bin())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .expect("run apus serve")
    }

    fn start_proxy(&mut self) {
        let pdir = self.dir.path().join("proxy");
        let child = self.spawn(&pdir.join("proxy.toml"), &pdir.join("proxy.log"));
        self.proxy = Some(child);
        wait_listening(
            self.proxy_port,
            self.proxy.as_mut().unwrap(),
            &pdir.join("proxy.log"),
        );
    }

    /// Starts node `i` and waits until its three servers accept connections.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is running");
        let log = self.nodes[i].dir.join("node.log");
        let child = self.spawn(&self.nodes[i].config.clone(), &log);
        let node = &mut self.nodes[i];
        node.child = Some(child);
        for port in [node.object_port, node.container_port, node.account_port] {
            wait_listening(port, node.child.as_mut().unwrap(), &log);
        }
    }

    /// SIGTERM, and waits for a graceful exit.
    pub fn stop_node(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node is running");
        // SAFETY: signalling our own, unreaped child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_exit(&mut child);
    }

    /// SIGKILL, and reaps the process.
    pub fn kill_node(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// `apus <daemon> --config <node i> --once`: the pass's stats.
    pub fn run_daemon(&self, i: usize, daemon: &str) -> serde_json::Value {
        let out = Command::new(apus_bin())
            .arg(daemon)
            .arg("--config")
            .arg(&self.nodes[i].config)
            .arg("--once")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run a daemon");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{daemon} on node {i} failed ({}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{daemon} printed {stdout:?}: {e}"))
    }

    /// One pass of `daemon` on every running node, in node order.
    pub fn run_daemon_everywhere(&self, daemon: &str) -> Vec<serde_json::Value> {
        (0..NODES)
            .filter(|&i| self.is_running(i))
            .map(|i| self.run_daemon(i, daemon))
            .collect()
    }

    pub fn ring(&self, kind: Kind) -> Ring {
        let name = match kind {
            Kind::Object => "object.ring.gz",
            Kind::Container => "container.ring.gz",
            Kind::Account => "account.ring.gz",
        };
        Ring::load(&self.dir.path().join("rings").join(name)).unwrap()
    }

    /// Node indexes holding the primaries of a name, in replica order.
    pub fn primaries(
        &self,
        kind: Kind,
        account: &str,
        container: Option<&str>,
        obj: Option<&str>,
    ) -> (u32, Vec<usize>) {
        let ring = self.ring(kind);
        let part = ring.partition(&self.hash, account, container, obj);
        let nodes = ring
            .primaries(part)
            .iter()
            .map(|d| d.device[1..].parse::<usize>().unwrap() - 1)
            .collect();
        (part, nodes)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The account of the test user (`AUTH_test`).
    pub fn account(&self) -> String {
        self.account_path.trim_start_matches("/v1/").to_string()
    }

    /// The files in an object's hash directory on node `i` (sorted names).
    pub fn object_files(&self, i: usize, container: &str, obj: &str) -> Vec<String> {
        let account = self.account();
        let (part, _) = self.primaries(Kind::Object, &account, Some(container), Some(obj));
        let hash = self.hash.hash_path(&account, Some(container), Some(obj));
        let dir = self.nodes[i]
            .device_path()
            .join("objects")
            .join(part.to_string())
            .join(&hash[29..])
            .join(&hash);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The path of an object's hash directory on node `i`.
    pub fn object_dir(&self, i: usize, container: &str, obj: &str) -> PathBuf {
        let account = self.account();
        let (part, _) = self.primaries(Kind::Object, &account, Some(container), Some(obj));
        let hash = self.hash.hash_path(&account, Some(container), Some(obj));
        self.nodes[i]
            .device_path()
            .join("objects")
            .join(part.to_string())
            .join(&hash[29..])
            .join(&hash)
    }

    /// A request through the proxy as `test:tester`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Head, Vec<u8>) {
        let mut all = headers.to_vec();
        all.push(("X-Auth-Token", &self.token));
        let full = format!("{}{path}", self.account_path);
        exchange(self.proxy_port, method, &full, &all, body)
    }

    /// A request straight to node `i`'s `kind` server (`path` after
    /// `/<device>/<partition>`).
    pub fn direct(
        &self,
        i: usize,
        kind: Kind,
        part: u32,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Head, Vec<u8>) {
        let node = &self.nodes[i];
        let full = format!("/{}/{part}{path}", node.device);
        exchange(node.port(kind), method, &full, headers, b"")
    }

    /// The object names node `i`'s replica of `container` lists.
    pub fn container_replica_listing(&self, i: usize, container: &str) -> Vec<String> {
        let account = self.account();
        let (part, _) = self.primaries(Kind::Container, &account, Some(container), None);
        let (head, body) = self.direct(
            i,
            Kind::Container,
            part,
            "GET",
            &format!("/{account}/{container}?format=json"),
            &[],
        );
        assert!(
            head.status == 200 || head.status == 204,
            "listing on node {i}: {}",
            head.status
        );
        let v: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Array(vec![]));
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for MultiCluster {
    fn drop(&mut self) {
        for child in self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.as_mut())
            .chain(self.proxy.as_mut())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "apus serve exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node did not stop within {STOP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
