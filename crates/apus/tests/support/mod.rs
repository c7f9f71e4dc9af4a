//! Running the built `apus` binary in integration tests: a child-process
//! guard that learns the address the server bound, private loopback
//! addresses for multi-process clusters, and a minimal HTTP/1.0 client over
//! `std::net`; `webdriver`, a headless Chromium driven over W3C
//! WebDriver for tests of what a browser shows; and `keystone`, a real
//! OpenStack Keystone on loopback with the users Swift's Keystone tests
//! expect.
#![allow(dead_code)]

pub mod cluster;
pub mod keystone;
pub mod load;
pub mod webdriver;

use std::ffi::OsString;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous for a debug build on a busy 2-core machine; a start takes
/// well under a second otherwise.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test: `APUS_BIN` when set (to run a release build),
/// else the one cargo built for these tests.
pub fn apus_bin() -> OsString {
    std::env::var_os("APUS_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_apus").into())
}

/// A running `apus serve`; killed and reaped on drop, whatever the test did.
pub struct Server {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    /// `apus serve --data <data> --bind 127.0.0.1:0`, its output in
    /// `<dir>/<run>.out` and `<dir>/<run>.err`. The proxy binds a port the
    /// kernel picks, so nothing can take it between choosing and binding;
    /// [`Server::wait_ready`] reads it back from the banner.
    pub fn start(dir: &Path, data: &Path, run: &str) -> Server {
        Server::start_with(dir, data, run, None)
    }

    /// [`Server::start`] with `--config <config>` as well (the local
    /// layout, with the file's settings).
    pub fn start_with(dir: &Path, data: &Path, run: &str, config: Option<&Path>) -> Server {
        let stdout = dir.join(format!("{run}.out"));
        let stderr = dir.join(format!("{run}.err"));
        let mut cmd = Command::new(apus_bin());
        cmd.arg("serve");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .arg("--data")
            .arg(data)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--images-bind")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run apus serve");
        Server {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the banner (printed once every server is bound) and a
    /// healthy proxy; returns the proxy's address.
    pub fn wait_ready(&mut self) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("apus serve exited ({status}): {}", self.stderr());
            }
            let banner = fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(addr) = banner_proxy_addr(&banner) {
                if let Some((status, body)) = get(addr, "/healthcheck") {
                    assert_eq!((status, body.as_str()), (200, "OK"));
                    return addr;
                }
            }
            assert!(
                Instant::now() < deadline,
                "apus serve not ready: {banner}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to end by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "apus serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process (not yet reaped).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tests that start a whole cluster of processes run one at a time: a
/// 2-core machine stays responsive enough for their timeouts.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(data))
}

/// A number from the environment (a scenario's length, say), or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The proxy address in an `apus serve` banner (`  proxy      http://ADDR`).
pub fn banner_proxy_addr(banner: &str) -> Option<SocketAddr> {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("proxy"))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|addr| addr.parse().ok())
}

/// The image service's address in an `apus serve` banner
/// (`  images     http://ADDR ...`).
pub fn banner_images_addr(banner: &str) -> Option<SocketAddr> {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("images"))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
}

/// A random number, different in every call (std's hasher keys are random).
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A loopback network of this test's own, `127.a.b.0/24` with random `a`
/// and `b` (never 127.0.x.x, where other tests and servers live): its hosts
/// need ports fixed in advance (they are written into rings), and on an
/// address nothing else uses, a port found free stays free.
pub fn private_loopback_net() -> [u8; 3] {
    let r = random_u64();
    [127, 1 + (r % 254) as u8, (r >> 8) as u8]
}

/// A port below the kernel's ephemeral range (which `bind(0)` and outgoing
/// connections draw from) that is free on every one of `ips`.
pub fn fixed_port(ips: &[Ipv4Addr]) -> u16 {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 1_024u16.max(ephemeral_low.saturating_sub(20_000));
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1));
    loop {
        let port = low + (random_u64() % span) as u16;
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
}

/// One HTTP/1.0 GET: the status and body, or None if nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, &[], "")
}

/// One HTTP/1.0 request: the status and body, or None if nothing answers.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    conn.write_all(head.as_bytes()).ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A response's status line and headers (names lowercased); the body is
/// left on the connection for the caller to stream.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends an HTTP/1.0 request head (the body, if any, is the caller's to
/// write on the returned stream).
pub fn send_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(timeout)).unwrap();
    conn.set_write_timeout(Some(timeout)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn
}

/// Reads a response head; the reader is left at the start of the body.
pub fn read_head(reader: &mut impl BufRead) -> Head {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Head { status, headers }
}

/// A whole HTTP/1.0 exchange with a small body both ways.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Head, Vec<u8>) {
    try_exchange(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("{method} {path}: no complete answer"))
}

/// [`exchange`], or `None` when the server closes the connection without
/// a complete status line and headers (as when it refuses to finish a
/// corrupt object before anything was sent).
pub fn try_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(Head, Vec<u8>)> {
    let len = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Length", &len));
    let mut conn = send_head(addr, method, path, &all, Duration::from_secs(30));
    conn.write_all(body).ok()?;
    let mut raw = Vec::new();
    // A reset after a partial answer still leaves what came before it.
    let _ = conn.read_to_end(&mut raw);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut reader = BufReader::new(&raw[..end + 4]);
    let head = read_head(&mut reader);
    Some((head, raw[end + 4..].to_vec()))
}

/// Logs in with tempauth's v1.0: the token and the storage URL's path.
pub fn login(addr: SocketAddr, user: &str, key: &str) -> (String, String) {
    let (head, _) = exchange(
        addr,
        "GET",
        "/auth/v1.0",
        &[("X-Auth-User", user), ("X-Auth-Key", key)],
        b"",
    );
    assert_eq!(head.status, 200, "login of {user}");
    let token = head.header("x-auth-token").unwrap().to_string();
    let url = head.header("x-storage-url").unwrap();
    let path = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap();
    (token, path)
}

/// Every `.data` file below `dir`.
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "data") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, &mut found);
    found
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// The reference venv's Python (with swiftclient, boto3 and botocore),
/// which the README's test command installs (`scripts/swift-ref.sh`);
/// `APUS_SWIFT_PYTHON` names another.
pub fn swift_python() -> PathBuf {
    let python = match std::env::var_os("APUS_SWIFT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
        }
    };
    assert!(
        python.exists(),
        "{} not found: run scripts/swift-ref.sh (the README's test command does), \
         or set APUS_SWIFT_PYTHON",
        python.display()
    );
    python
}

/// What a client script printed, one `key value...` line per step.
pub struct ScriptOutput(pub String);

impl ScriptOutput {
    /// The whole line that starts with `key`.
    pub fn line(&self, key: &str) -> String {
        self.0
            .lines()
            .find(|l| l.split(' ').next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} line in {}", self.0))
            .to_string()
    }

    /// What follows `key` on its line.
    pub fn after(&self, key: &str) -> String {
        self.line(key)[key.len()..].trim().to_string()
    }
}

/// Runs `script` with the reference Python against `http://{proxy}`; a
/// script that fails fails the test with what it and the server said.
pub fn run_python_script(script: &str, proxy: SocketAddr, server: &Server) -> ScriptOutput {
    let out = Command::new(swift_python())
        .arg("-c")
        .arg(script)
        .arg(format!("http://{proxy}"))
        .output()
        .expect("run the reference Python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    ScriptOutput(stdout)
}

/// A third-party client the README's test command installs
/// (`scripts/clients.sh`): `var` names it, else `default`.
pub fn client_tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: run scripts/clients.sh (the README's test command does), or set {var}",
        path.display()
    );
    path
}

/// Runs a client command and gives its output; a failure fails the test
/// with what the client said.
pub fn run_client(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run the client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
