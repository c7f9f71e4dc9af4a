//! `apus serve` under load and under SIGKILL: a large object streams
//! through in bounded memory, and a crash mid-upload loses nothing that
//! was acknowledged, serves nothing partial and leaves no temp files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use support::{exchange, login, read_head, send_head, Server};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Socket timeout for the big transfers: long enough for a debug build to
/// fsync three replicas of the whole object before answering.
const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// The bound on the process's resident memory while streaming.
const RSS_LIMIT_KB: u64 = 100 * 1000;

/// A deterministic body of any length, produced 64 KiB at a time.
struct Pattern {
    base: Vec<u8>,
}

impl Pattern {
    fn new() -> Pattern {
        // A xorshift stream: not compressible, cheap to make once.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = (0..CHUNK + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Pattern { base }
    }

    /// The `n`th chunk: 64 KiB from an offset that changes chunk by chunk.
    fn chunk(&self, n: u64) -> &[u8] {
        let off = (n.wrapping_mul(61) % 4096) as usize;
        &self.base[off..off + CHUNK]
    }

    /// The first `len` bytes of the body, in memory (for small objects).
    fn bytes(&self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut n = 0;
        while out.len() < len {
            let c = self.chunk(n);
            out.extend_from_slice(&c[..c.len().min(len - out.len())]);
            n += 1;
        }
        out
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag(head: &support::Head) -> String {
    head.header("etag")
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

/// Streams `len` bytes of `pattern` to `conn`, hashing what was sent;
/// `pace` runs after each chunk with the bytes sent so far and may stop
/// the upload early by returning false.
fn send_body(
    conn: &mut impl Write,
    pattern: &Pattern,
    len: u64,
    mut pace: impl FnMut(u64) -> bool,
) -> std::io::Result<String> {
    let mut md5 = Md5::new();
    let mut sent = 0u64;
    let mut n = 0;
    while sent < len {
        let c = pattern.chunk(n);
        let c = &c[..(len - sent).min(c.len() as u64) as usize];
        conn.write_all(c)?;
        md5.update(c);
        sent += c.len() as u64;
        n += 1;
        if !pace(sent) {
            break;
        }
    }
    Ok(hex(&md5.finalize()))
}

/// A kB field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process's VmRSS every 50 ms until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, usize)>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    peak = peak.max(kb);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (peak, samples)
        });
        RssSampler { stop, thread }
    }

    /// The peak VmRSS seen (kB) and the number of samples.
    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The object size for the streaming test: `APUS_STREAM_TEST_MIB`, or the
/// default.
fn stream_test_mib() -> u64 {
    std::env::var("APUS_STREAM_TEST_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn streaming_1gib_keeps_rss_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "stream");
    let proxy = server.wait_ready();
    let pid = server.pid();
    let (token, account) = login(proxy, "test:tester", "testing");
    let auth = [("X-Auth-Token", token.as_str())];
    let (head, _) = exchange(proxy, "PUT", &format!("{account}/big"), &auth, b"");
    assert_eq!(head.status, 201, "{}", server.stderr());

    let size = stream_test_mib() * MIB;
    let path = format!("{account}/big/object");
    let pattern = Pattern::new();
    let sampler = RssSampler::start(pid);
    let rss_before = proc_status_kb(pid, "VmRSS:").unwrap();

    let started = Instant::now();
    let length = size.to_string();
    let mut conn = send_head(
        proxy,
        "PUT",
        &path,
        &[
            ("X-Auth-Token", &token),
            ("Content-Length", &length),
            ("Content-Type", "application/octet-stream"),
        ],
        IO_TIMEOUT,
    );
    let sent_md5 = send_body(&mut conn, &pattern, size, |_| true).unwrap();
    let mut reader = BufReader::new(conn);
    let put = read_head(&mut reader);
    let put_time = started.elapsed();
    assert_eq!(put.status, 201, "{}", server.stderr());
    assert_eq!(etag(&put), sent_md5);

    let started = Instant::now();
    let conn = send_head(proxy, "GET", &path, &auth, IO_TIMEOUT);
    let mut reader = BufReader::with_capacity(CHUNK, conn);
    let get = read_head(&mut reader);
    assert_eq!(get.status, 200, "{}", server.stderr());
    assert_eq!(get.header("content-length"), Some(length.as_str()));
    let mut md5 = Md5::new();
    let mut received = 0u64;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        received += n as u64;
    }
    let get_time = started.elapsed();
    let (rss_peak, samples) = sampler.finish();
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap();
    let got_md5 = hex(&md5.finalize());

    eprintln!(
        "streamed {} MiB: PUT {:.1} s, GET {:.1} s; apus VmRSS before {} kB, \
         peak sampled {} kB ({} samples), VmHWM {} kB",
        size / MIB,
        put_time.as_secs_f64(),
        get_time.as_secs_f64(),
        rss_before,
        rss_peak,
        samples,
        hwm
    );
    assert_eq!(received, size);
    assert_eq!(got_md5, sent_md5);
    assert_eq!(etag(&get), sent_md5);
    assert!(rss_peak < RSS_LIMIT_KB, "peak VmRSS {rss_peak} kB");
    assert!(hwm < RSS_LIMIT_KB, "VmHWM {hwm} kB");
    assert!(server.terminate().success(), "{}", server.stderr());
}

/// Files in the devices' temp directories (`tmp`, `tmp-N`), with sizes.
fn temp_files(data: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for dev in fs::read_dir(data.join("devices")).unwrap() {
        let dev = dev.unwrap().path();
        for sub in fs::read_dir(&dev).unwrap() {
            let sub = sub.unwrap();
            if !sub.file_name().to_string_lossy().starts_with("tmp") {
                continue;
            }
            for f in fs::read_dir(sub.path()).unwrap() {
                let f = f.unwrap();
                out.push((f.path().display().to_string(), f.metadata().unwrap().len()));
            }
        }
    }
    out
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_during_upload_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "before");
    let proxy = server.wait_ready();
    let (token, account) = login(proxy, "test:tester", "testing");
    let auth = [("X-Auth-Token", token.as_str())];
    let container = format!("{account}/crash");
    let (head, _) = exchange(proxy, "PUT", &container, &auth, b"");
    assert_eq!(head.status, 201, "{}", server.stderr());

    // Objects acknowledged before the crash: name -> MD5.
    let pattern = Pattern::new();
    let mut acked = Vec::new();
    let sizes = [
        ("empty", 0),
        ("one-byte", 1),
        ("small", 1000),
        ("a/nested/name", 70_000),
        ("two-mib", 2 * MIB as usize),
        ("three-and-a-bit-mib", 3 * MIB as usize + 12_345),
    ];
    for (name, len) in sizes {
        let body = pattern.bytes(len);
        let (head, _) = exchange(proxy, "PUT", &format!("{container}/{name}"), &auth, &body);
        assert_eq!(head.status, 201, "PUT {name}: {}", server.stderr());
        let md5 = md5_hex(&body);
        assert_eq!(etag(&head), md5, "PUT {name}");
        acked.push((name.to_string(), md5));
    }

    // A 64 MiB upload, killed once 20 MiB are sent and the replicas' temp
    // files hold some of it.
    let big = format!("{container}/interrupted");
    let length = (64 * MIB).to_string();
    let mut conn = send_head(
        proxy,
        "PUT",
        &big,
        &[("X-Auth-Token", &token), ("Content-Length", &length)],
        Duration::from_secs(60),
    );
    send_body(&mut conn, &pattern, 64 * MIB, |sent| sent < 20 * MIB).unwrap();
    let in_temp = wait_for(Duration::from_secs(20), || {
        temp_files(&data).iter().map(|f| f.1).sum::<u64>() >= 8 * MIB
    });
    assert!(
        in_temp,
        "the upload never reached the temp files: {:?}",
        temp_files(&data)
    );
    server.signal(libc::SIGKILL);
    let status = server.wait_exit();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // The upload's connection is dead; whatever it says, it is no 201.
    let mut reader = BufReader::new(conn);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 201 "),
        "the interrupted PUT was acknowledged"
    );
    drop(server);

    let mut server = Server::start(dir.path(), &data, "after");
    let proxy = server.wait_ready();
    let (token, _) = login(proxy, "test:tester", "testing");
    let auth = [("X-Auth-Token", token.as_str())];

    // The crash left the upload's temp files; the restart removed them.
    let left = temp_files(&data);
    assert!(left.is_empty(), "temp files after restart: {left:?}");

    for (name, md5) in &acked {
        let (head, body) = exchange(proxy, "GET", &format!("{container}/{name}"), &auth, b"");
        assert_eq!(head.status, 200, "GET {name}");
        assert_eq!(md5_hex(&body), *md5, "GET {name}");
        assert_eq!(etag(&head), *md5, "GET {name}");
    }
    let (head, _) = exchange(proxy, "GET", &big, &auth, b"");
    assert_eq!(head.status, 404, "the interrupted upload is served");
    let (head, _) = exchange(proxy, "HEAD", &big, &auth, b"");
    assert_eq!(head.status, 404, "the interrupted upload answers HEAD");

    // Each acknowledged PUT updated the container before its 201 (the
    // servers are local and answer well within the object server's
    // container_update_timeout), and the kill came seconds later, so the
    // listing holds exactly those objects and never the interrupted one.
    let (head, body) = exchange(proxy, "GET", &container, &auth, b"");
    assert_eq!(head.status, 200);
    let listed: Vec<String> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected: Vec<String> = acked.iter().map(|a| a.0.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Nothing written since the restart is left in temp either.
    let left = temp_files(&data);
    assert!(left.is_empty(), "temp files at the end: {left:?}");
    assert!(server.terminate().success(), "{}", server.stderr());
}
