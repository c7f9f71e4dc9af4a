//! A real multi-node cluster for fault scenarios: four storage nodes and a
//! proxy, each a separate `apus serve --config` process with its own
//! loopback address and devices directory, sharing generated rings (part
//! power 6, 3 replicas, one device per node in its own zone).
//!
//! Node addresses are written into the rings before any node starts, so
//! they cannot come from `bind(0)`. Each cluster takes a /24 of 127/8 no
//! other test uses and ports below the ephemeral range: a port found free
//! there stays free until the node binds it, and again after a restart.
//! The proxy, which no ring names, binds port 0 and is found by its banner. Any node can
//! be stopped, killed and restarted, any daemon run once on any node, and
//! the files on every device inspected. A node's device directory can be
//! a small tmpfs (mounted before the node starts, unmounted when the
//! cluster drops), and a fifth node can join, with every ring rebuilt.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use apus_core::HashConfig;
use apus_ring::builder::{RingBuilder, AUTO_ID};
use apus_ring::{Device, Ring};

use super::load::State;
use super::{
    apus_bin, banner_proxy_addr, exchange, fixed_port, login, private_loopback_net, Head,
    START_TIMEOUT, STOP_TIMEOUT,
};

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
    pub ip: Ipv4Addr,
    pub object_port: u16,
    pub container_port: u16,
    pub account_port: u16,
    /// Environment of the node's processes (`apus serve` and the daemons
    /// run with [`MultiCluster::run_daemon`]), set by
    /// [`MultiCluster::set_node_env`].
    env: Vec<(String, String)>,
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

    pub fn addr(&self, kind: Kind) -> SocketAddr {
        SocketAddr::new(self.ip.into(), self.port(kind))
    }
}

#[derive(Clone)]
pub struct Options {
    /// `[daemons] reclaim_age` of every node, seconds.
    pub reclaim_age: f64,
    /// `node_timeout` of the proxy and the storage nodes, seconds.
    pub node_timeout: f64,
    /// The storage nodes' own `node_timeout` (a container server's
    /// account updates, the daemons' requests) when it should differ from
    /// the proxy's, as in Swift's defaults (3 s against the proxy's 10 s).
    pub storage_node_timeout: Option<f64>,
    /// Run the storage daemons inside every node, each pass this many
    /// seconds after the last began; `None` runs none (scenarios run
    /// them by hand with [`MultiCluster::run_daemon`]).
    pub daemon_interval: Option<f64>,
    /// `log_requests` of the storage nodes: one line per request in each
    /// node's `node.log`.
    pub log_requests: bool,
    /// Lines added to the `[storage]` table of node `i` (`mount_check =
    /// true`, ...).
    pub storage_config: Vec<(usize, String)>,
    /// Lines added to the proxy's `[proxy]` table.
    pub proxy_config: String,
    /// Node `i`'s device directory is a tmpfs of this many bytes, mounted
    /// before the node first starts and unmounted when the cluster drops.
    /// A mount that fails fails the test.
    pub tmpfs: Vec<(usize, u64)>,
    /// A second storage policy (`Policy-1`, index 1, its own
    /// `object-1.ring.gz` on the same nodes and port) beside the default
    /// `Policy-0`.
    pub two_policies: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reclaim_age: 604_800.0,
            node_timeout: 5.0,
            storage_node_timeout: None,
            daemon_interval: None,
            log_requests: false,
            storage_config: Vec::new(),
            proxy_config: String::new(),
            tmpfs: Vec::new(),
            two_policies: false,
        }
    }
}

/// The `[[policy]]` tables of a cluster with two policies.
const TWO_POLICIES_TOML: &str = "\n[[policy]]\nindex = 0\nname = \"Policy-0\"\ndefault = true\n\n\
                                 [[policy]]\nindex = 1\nname = \"Policy-1\"\n";

fn policies_toml(options: &Options) -> &'static str {
    if options.two_policies {
        TWO_POLICIES_TOML
    } else {
        ""
    }
}

pub struct MultiCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// Where the proxy listens; known once it has started.
    pub proxy_addr: SocketAddr,
    proxy_ip: Ipv4Addr,
    pub hash: HashConfig,
    proxy: Option<Child>,
    /// Environment of the proxy process, see [`MultiCluster::set_proxy_env`].
    proxy_env: Vec<(String, String)>,
    token: String,
    /// `/v1/AUTH_test`.
    pub account_path: String,
    options: Options,
    /// The object, container and account ports every node serves on.
    ports: [u16; 3],
    /// Device directories with a tmpfs mounted on them.
    mounts: Mounts,
}

/// Mount points to unmount on drop, whatever the test did.
#[derive(Default)]
pub struct Mounts(Vec<PathBuf>);

impl Mounts {
    /// Mounts a tmpfs of `bytes` on `dir`; panics with the reason if it fails.
    pub fn tmpfs(&mut self, dir: &Path, bytes: u64) {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (these tests need root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push(dir.to_path_buf());
    }

    /// Unmounts `dir` (lazily: files a process still holds open stay
    /// usable to it, new lookups see the directory underneath).
    pub fn unmount(&mut self, dir: &Path) {
        let out = Command::new("umount")
            .arg("-l")
            .arg(dir)
            .output()
            .expect("run umount");
        assert!(
            out.status.success(),
            "cannot unmount {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.retain(|d| d != dir);
    }

    fn unmount_all(&mut self) {
        for dir in std::mem::take(&mut self.0) {
            let _ = Command::new("umount").arg("-l").arg(&dir).output();
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

/// Node `i`'s device, `d<i+1>` in zone `i+1`.
fn ring_device(i: usize, ip: Ipv4Addr, port: u16) -> Device {
    Device {
        id: AUTO_ID,
        region: 1,
        zone: i as u32 + 1,
        ip: ip.to_string(),
        port,
        replication_ip: ip.to_string(),
        replication_port: port,
        device: format!("d{}", i + 1),
        weight: 100.0,
        meta: String::new(),
    }
}

/// Writes `<path>.ring.gz` from a new builder, kept as `<path>.builder`.
fn build_ring(path: &Path, ips: &[Ipv4Addr], port: u16) -> Ring {
    let mut builder = RingBuilder::new(PART_POWER, 3.0, 0).unwrap();
    for (i, ip) in ips.iter().enumerate() {
        builder.add_dev(ring_device(i, *ip, port)).unwrap();
    }
    builder.rebalance(Some(1), &mut |_| {}).unwrap();
    builder.save(&path.with_extension("builder")).unwrap();
    let data = builder.ring_data().unwrap();
    data.save(&path.with_extension("ring.gz")).unwrap();
    Ring::new(data).unwrap()
}

const HASH_TOML: &str = "[hash]\nprefix = \"scenario-prefix\"\nsuffix = \"scenario-suffix\"\n";

/// Creates node `i`'s directory, device (a tmpfs if `options` says so)
/// and configuration.
fn new_node(
    root: &Path,
    i: usize,
    ip: Ipv4Addr,
    ports: [u16; 3],
    options: &Options,
    mounts: &mut Mounts,
) -> Node {
    let mut daemons = format!(
        "[daemons]\nrun = {}\nreclaim_age = {}\n\n\
         [daemons.object-updater]\nper_second = 0\n",
        options.daemon_interval.is_some(),
        options.reclaim_age
    );
    if let Some(interval) = options.daemon_interval {
        daemons.push_str(&format!("interval = {interval}\n"));
        for name in [
            "object-replicator",
            "object-auditor",
            "container-replicator",
            "container-auditor",
            "container-updater",
            "account-replicator",
            "account-auditor",
        ] {
            daemons.push_str(&format!("\n[daemons.{name}]\ninterval = {interval}\n"));
        }
    }
    let storage_extra: String = options
        .storage_config
        .iter()
        .filter(|(n, _)| *n == i)
        .map(|(_, line)| format!("{line}\n"))
        .collect();
    let ndir = root.join(format!("node{}", i + 1));
    let device = format!("d{}", i + 1);
    let device_dir = ndir.join("devices").join(&device);
    fs::create_dir_all(&device_dir).unwrap();
    if let Some((_, bytes)) = options.tmpfs.iter().find(|(n, _)| *n == i) {
        mounts.tmpfs(&device_dir, *bytes);
    }
    let config = ndir.join("node.toml");
    fs::write(
        &config,
        format!(
            "roles = [\"storage\"]\nrings_dir = \"../rings\"\nlog_requests = {}\n\
             shutdown_timeout = 2\n{HASH_TOML}\n\
             [storage]\ndevices = \"devices\"\nbind_ip = \"{ip}\"\n\
             object_port = {}\ncontainer_port = {}\naccount_port = {}\n\
             node_timeout = {}\n{storage_extra}\n{daemons}{}",
            options.log_requests,
            ports[0],
            ports[1],
            ports[2],
            options.storage_node_timeout.unwrap_or(options.node_timeout),
            policies_toml(options)
        ),
    )
    .unwrap();
    Node {
        index: i,
        device,
        dir: ndir,
        config,
        ip,
        object_port: ports[0],
        container_port: ports[1],
        account_port: ports[2],
        env: Vec::new(),
        child: None,
    }
}

impl MultiCluster {
    pub fn start(options: Options) -> MultiCluster {
        let dir = tempfile::tempdir().unwrap();
        let rings = dir.path().join("rings");
        fs::create_dir_all(&rings).unwrap();
        let [a, b, c] = private_loopback_net();
        let ips: Vec<Ipv4Addr> = (1..=NODES as u8)
            .map(|host| Ipv4Addr::new(a, b, c, host))
            .collect();
        let proxy_ip = Ipv4Addr::new(a, b, c, 100);
        // Every node serves on the same three ports, as real nodes do; they
        // are free on the address of a node added later too.
        let mut free_on = ips.clone();
        free_on.push(Ipv4Addr::new(a, b, c, NODES as u8 + 1));
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = fixed_port(&free_on);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        build_ring(&rings.join("object"), &ips, ports[0]);
        if options.two_policies {
            build_ring(&rings.join("object-1"), &ips, ports[0]);
        }
        build_ring(&rings.join("container"), &ips, ports[1]);
        build_ring(&rings.join("account"), &ips, ports[2]);
        let hash = HashConfig::new("scenario-prefix", "scenario-suffix");
        let mut mounts = Mounts::default();
        let ports = [ports[0], ports[1], ports[2]];
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            nodes.push(new_node(dir.path(), i, *ip, ports, &options, &mut mounts));
        }
        let pdir = dir.path().join("proxy");
        fs::create_dir_all(&pdir).unwrap();
        fs::write(
            pdir.join("proxy.toml"),
            format!(
                "roles = [\"proxy\"]\nrings_dir = \"../rings\"\nlog_requests = false\n\
                 shutdown_timeout = 2\n{HASH_TOML}\n\
                 [proxy]\nbind = \"{proxy_ip}:0\"\nnode_timeout = {}\n\
                 recheck_account_existence = 0\nrecheck_container_existence = 0\n{}\n\n\
                 [[proxy.tempauth.users]]\nname = \"test:tester\"\nkey = \"testing\"\n\
                 groups = [\".admin\"]\n{}",
                options.node_timeout,
                options.proxy_config,
                policies_toml(&options)
            ),
        )
        .unwrap();
        let mut cluster = MultiCluster {
            dir,
            nodes,
            proxy_addr: SocketAddr::new(proxy_ip.into(), 0),
            proxy_ip,
            hash,
            proxy: None,
            proxy_env: Vec::new(),
            token: String::new(),
            account_path: String::new(),
            options,
            ports,
            mounts,
        };
        for i in 0..NODES {
            cluster.start_node(i);
        }
        cluster.start_proxy();
        let (token, path) = login(cluster.proxy_addr, "test:tester", "testing");
        cluster.token = token;
        cluster.account_path = path;
        cluster
    }

    fn spawn(&self, config: &Path, out: Stdio, log: &Path) -> Child {
        self.spawn_with_env(config, out, log, &[])
    }

    fn spawn_with_env(&self, config: &Path, out: Stdio, log: &Path, env: &[(&str, &str)]) -> Child {
        Command::new(apus_bin())
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
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

    /// Starts the proxy on a port of its choosing and waits for its banner.
    fn start_proxy(&mut self) {
        let pdir = self.dir.path().join("proxy");
        let banner = pdir.join("proxy.out");
        let log = pdir.join("proxy.log");
        let out = Stdio::from(fs::File::create(&banner).unwrap());
        let env: Vec<(&str, &str)> = self
            .proxy_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut child = self.spawn_with_env(&pdir.join("proxy.toml"), out, &log, &env);
        let text = wait_banner(&banner, &mut child, &log);
        let addr = banner_proxy_addr(&text).unwrap_or_else(|| panic!("no proxy in {text}"));
        assert_eq!(addr.ip(), self.proxy_ip);
        self.proxy_addr = addr;
        self.proxy = Some(child);
        wait_listening(addr, self.proxy.as_mut().unwrap(), &log);
    }

    /// Starts node `i` and waits until it is ready: its banner is printed
    /// once every server is set up (stale temp files removed, databases
    /// checked), which listening alone does not tell.
    pub fn start_node(&mut self, i: usize) {
        self.start_node_with_env(i, &[]);
    }

    /// Starts node `i` with extra environment variables (failpoints),
    /// besides those [`MultiCluster::set_node_env`] set.
    pub fn start_node_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        assert!(self.nodes[i].child.is_none(), "node {i} is running");
        let log = self.nodes[i].dir.join("node.log");
        let banner = self.nodes[i].dir.join("node.out");
        let out = Stdio::from(fs::File::create(&banner).unwrap());
        let mut all: Vec<(&str, &str)> = self.nodes[i]
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(env);
        let mut child = self.spawn_with_env(&self.nodes[i].config.clone(), out, &log, &all);
        wait_banner(&banner, &mut child, &log);
        let node = &mut self.nodes[i];
        node.child = Some(child);
        for kind in [Kind::Object, Kind::Container, Kind::Account] {
            let addr = node.addr(kind);
            wait_listening(addr, node.child.as_mut().unwrap(), &log);
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

    /// SIGSTOP: the node keeps its sockets but answers nothing, as a node
    /// that hangs (swapping, a stuck disk, a long GC pause) does.
    pub fn pause_node(&mut self, i: usize) {
        self.signal_node(i, libc::SIGSTOP);
    }

    /// Whether every thread of node `i` is stopped by a signal (state `T`
    /// in `/proc`, or on its way out): a SIGSTOP takes effect a moment
    /// after `kill` returns.
    pub fn node_is_stopped(&self, i: usize) -> bool {
        let Some(child) = self.nodes[i].child.as_ref() else {
            return false;
        };
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", child.id())) else {
            return false;
        };
        let mut any = false;
        for task in tasks.flatten() {
            let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
                return false;
            };
            // `pid (comm) S ...`: the state follows the last `)`.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            match state {
                Some('T') => any = true,
                // A thread on its way out runs no more code either.
                Some('Z' | 'X') => {}
                _ => return false,
            }
        }
        any
    }

    /// SIGCONT after [`MultiCluster::pause_node`].
    pub fn resume_node(&mut self, i: usize) {
        self.signal_node(i, libc::SIGCONT);
    }

    fn signal_node(&mut self, i: usize, signal: libc::c_int) {
        let child = self.nodes[i].child.as_ref().expect("node is running");
        // SAFETY: signalling our own, unreaped child.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} to node {i}");
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

    /// Waits up to `timeout` for node `i` to exit by itself; its exit
    /// status (the node then counts as stopped), or `None` if it still runs.
    pub fn wait_node_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.nodes[i].child.as_mut().expect("node is running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.nodes[i].child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Mounts a fresh tmpfs of `bytes` on node `i`'s device directory.
    pub fn mount_device(&mut self, i: usize, bytes: u64) {
        let dir = self.nodes[i].device_path();
        self.mounts.tmpfs(&dir, bytes);
    }

    /// Unmounts node `i`'s device (mounted by [`Options::tmpfs`] or
    /// [`MultiCluster::mount_device`]); its directory is left empty.
    pub fn unmount_device(&mut self, i: usize) {
        let dir = self.nodes[i].device_path();
        self.mounts.unmount(&dir);
    }

    /// Adds a storage node with one device of the same weight as the
    /// others, in a zone of its own, starts it, and rebalances the three
    /// rings with it (the new rings replace the old ones in the shared
    /// rings directory, where every node and the proxy find them). Returns
    /// its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let [a, b, c, _] = self.nodes[0].ip.octets();
        let ip = Ipv4Addr::new(a, b, c, i as u8 + 1);
        let node = new_node(
            self.dir.path(),
            i,
            ip,
            self.ports,
            &self.options,
            &mut self.mounts,
        );
        self.nodes.push(node);
        self.start_node(i);
        let rings = self.dir.path().join("rings");
        for (name, port) in [
            ("object", self.ports[0]),
            ("container", self.ports[1]),
            ("account", self.ports[2]),
        ] {
            let path = rings.join(format!("{name}.builder"));
            let mut builder = RingBuilder::load(&path).unwrap();
            builder.add_dev(ring_device(i, ip, port)).unwrap();
            builder.rebalance(Some(1), &mut |_| {}).unwrap();
            builder.save(&path).unwrap();
            builder
                .ring_data()
                .unwrap()
                .save(&rings.join(format!("{name}.ring.gz")))
                .unwrap();
        }
        i
    }

    /// The process id of node `i`'s `apus serve`, while it runs.
    pub fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The process id of the proxy.
    pub fn proxy_pid(&self) -> u32 {
        self.proxy.as_ref().expect("the proxy is running").id()
    }

    /// Sets an environment variable for node `i`'s processes from its next
    /// start on (and for its daemons at once).
    pub fn set_node_env(&mut self, i: usize, name: &str, value: &str) {
        let env = &mut self.nodes[i].env;
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value.to_string()));
    }

    /// Sets an environment variable for the proxy from its next start on
    /// (see [`MultiCluster::restart_proxy`]).
    pub fn set_proxy_env(&mut self, name: &str, value: &str) {
        self.proxy_env.retain(|(k, _)| k != name);
        self.proxy_env.push((name.to_string(), value.to_string()));
    }

    /// Stops the proxy gracefully and starts it again (on a new port),
    /// logging in anew: its caches, error limits and tokens start empty.
    pub fn restart_proxy(&mut self) {
        let mut child = self.proxy.take().expect("the proxy is running");
        // SAFETY: signalling our own, unreaped child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_exit(&mut child);
        self.start_proxy();
        let (token, path) = login(self.proxy_addr, "test:tester", "testing");
        self.token = token;
        self.account_path = path;
    }

    /// `apus <daemon> --config <node i> --once`: the pass's stats.
    pub fn run_daemon(&self, i: usize, daemon: &str) -> serde_json::Value {
        let out = Command::new(apus_bin())
            .envs(self.nodes[i].env.iter().map(|(k, v)| (k, v)))
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
        (0..self.nodes.len())
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

    /// The files in an object's hash directory of storage policy `policy`
    /// (`objects/` or `objects-<policy>/`, placed by that policy's ring)
    /// on node `i`, sorted.
    pub fn policy_object_files(
        &self,
        i: usize,
        policy: u32,
        container: &str,
        obj: &str,
    ) -> Vec<String> {
        let (ring, dir) = if policy == 0 {
            ("object.ring.gz".to_string(), "objects".to_string())
        } else {
            (
                format!("object-{policy}.ring.gz"),
                format!("objects-{policy}"),
            )
        };
        let ring = Ring::load(&self.dir.path().join("rings").join(ring)).unwrap();
        let account = self.account();
        let part = ring.partition(&self.hash, &account, Some(container), Some(obj));
        let hash = self.hash.hash_path(&account, Some(container), Some(obj));
        let dir = self.nodes[i]
            .device_path()
            .join(dir)
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

    /// The path of `container`'s database on node `i` (there or not).
    pub fn container_db(&self, i: usize, container: &str) -> PathBuf {
        let account = self.account();
        let (part, _) = self.primaries(Kind::Container, &account, Some(container), None);
        let hash = self.hash.hash_path(&account, Some(container), None);
        self.nodes[i]
            .device_path()
            .join("containers")
            .join(part.to_string())
            .join(&hash[29..])
            .join(&hash)
            .join(format!("{hash}.db"))
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
        exchange(self.proxy_addr, method, &full, &all, body)
    }

    /// [`MultiCluster::request`], or `None` when no complete status line
    /// and headers came back.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(Head, Vec<u8>)> {
        let mut all = headers.to_vec();
        all.push(("X-Auth-Token", &self.token));
        let full = format!("{}{path}", self.account_path);
        super::try_exchange(self.proxy_addr, method, &full, &all, body)
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
        exchange(node.addr(kind), method, &full, headers, b"")
    }

    /// The rows (JSON objects) node `i`'s replica of `container` lists.
    pub fn container_replica_rows(&self, i: usize, container: &str) -> Vec<serde_json::Value> {
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
        match serde_json::from_slice(&body) {
            Ok(serde_json::Value::Array(rows)) => rows,
            _ => Vec::new(),
        }
    }

    /// The object names node `i`'s replica of `container` lists, sorted.
    pub fn container_replica_listing(&self, i: usize, container: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .container_replica_rows(i, container)
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Runs the consistency daemons on every running node until nothing
    /// moves: replication first (handoffs home), then the updaters.
    pub fn converge(&self) {
        for daemon in [
            "object-replicator",
            "object-replicator",
            "object-updater",
            "container-replicator",
            "container-replicator",
            "container-updater",
            "account-replicator",
            "account-replicator",
        ] {
            self.run_daemon_everywhere(daemon);
        }
    }

    /// Once the cluster has converged: every name of `ledger` reads back
    /// (through the proxy) as one of its possible states, and every replica
    /// of `container` lists exactly the names that exist. Returns how many
    /// checks were made and how many objects exist.
    pub fn check_ledger(
        &self,
        container: &str,
        ledger: &std::collections::BTreeMap<String, std::collections::BTreeSet<State>>,
    ) -> (usize, usize) {
        let mut checks = 0;
        let mut existing = std::collections::BTreeSet::new();
        for (name, states) in ledger {
            let (head, body) = self.request("GET", &format!("/{container}/{name}"), &[], b"");
            let got: State = match head.status {
                200 => Some(super::md5_hex(&body)),
                404 => None,
                other => panic!("GET {name} after convergence: {other}"),
            };
            assert!(
                states.contains(&got),
                "{name}: {got:?} after convergence, the ledger allows {states:?}"
            );
            if got.is_some() {
                existing.insert(name.clone());
            }
            checks += 1;
        }
        let account = self.account();
        let (_, nodes) = self.primaries(Kind::Container, &account, Some(container), None);
        for i in nodes {
            let listed: std::collections::BTreeSet<String> = self
                .container_replica_listing(i, container)
                .into_iter()
                .collect();
            assert_eq!(listed, existing, "container replica on node {i}");
            checks += 1;
        }
        (checks, existing.len())
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
        // Before the temp dir goes: its mount points must be plain
        // directories again.
        self.mounts.unmount_all();
    }
}

/// Waits for `apus serve`'s banner in `out` (written in one piece once
/// the process serves) and returns it.
fn wait_banner(out: &Path, child: &mut Child, log: &Path) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "apus serve exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        let text = fs::read_to_string(out).unwrap_or_default();
        if text.starts_with("apus serve:") && text.ends_with('\n') {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no banner in {}: {text}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the server at `addr` answers HTTP.
fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "apus serve exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if super::request(addr, "HEAD", "/", &[], "").is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing answers on {addr}");
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
