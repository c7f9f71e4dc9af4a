//! `apus images` inside `apus serve`, driven by the clients OpenStack
//! users have: python-glanceclient's `glance` command and openstacksdk's
//! image API each round-trip a 64 MiB image byte for byte, with Glance's
//! checksum and SHA-512 hash, kept in apus as SLO segments, while the
//! server's memory stays far below the image's size; and the seed's
//! `curl http://localhost:9292/images` answers in Glance v1's shape.
//! Needs `APUS_GLANCE` and `APUS_OPENSTACK_PYTHON` (`scripts/clients.sh`,
//! which the README's test command runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use support::{banner_images_addr, client_tool, exchange, login, md5_hex, pattern, Server};

const IMAGE_SIZE: usize = 64 * 1024 * 1024;
const SEGMENT_SIZE: usize = 8 * 1024 * 1024;
/// A server that held an image in memory would grow by at least its size
/// over the peak of a warm-up round trip of one segment; apus grows by
/// about half of it (allocator caches filling as four streams run at once).
const MAX_RSS_GROWTH: u64 = IMAGE_SIZE as u64;

fn glance_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    client_tool(
        "APUS_GLANCE",
        &format!("{home}/.cache/apus-clients/venv/bin/glance"),
    )
}

fn sdk_python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    client_tool(
        "APUS_OPENSTACK_PYTHON",
        &format!("{home}/.cache/apus-clients/venv/bin/python"),
    )
}

/// `glance <args>` against `images` with `token`.
fn glance(images: SocketAddr, token: &str, args: &[&str]) -> Output {
    Command::new(glance_bin())
        .args(["--os-image-url", &format!("http://{images}")])
        .args(["--os-auth-token", token])
        .args(args)
        .output()
        .expect("run glance")
}

fn glance_ok(images: SocketAddr, token: &str, args: &[&str]) -> String {
    let out = glance(images, token, args);
    assert!(
        out.status.success(),
        "glance {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A value from glance's `| Property | Value |` table.
fn field(table: &str, name: &str) -> String {
    let mut value = String::new();
    let mut inside = false;
    for line in table.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        if cells[1] == name {
            inside = true;
            value.push_str(cells[2]);
        } else if inside && cells[1].is_empty() {
            // Long values wrap onto continuation rows.
            value.push_str(cells[2]);
        } else {
            inside = false;
        }
    }
    value
}

/// The largest resident set of `pid` while `work` runs, sampled every
/// 20 ms.
fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (u64, T) {
    let rss = move || -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let peak = Arc::new(AtomicU64::new(rss()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = work();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (peak.load(Ordering::Relaxed), out)
}

fn current_rss(pid: u32) -> u64 {
    peak_rss_during(pid, || ()).0
}

struct Cluster {
    server: Server,
    proxy: SocketAddr,
    images: SocketAddr,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

/// `apus serve` with image data in `AUTH_images` (so a reseller admin can
/// look at it through the Swift API) in 8 MiB segments.
fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let conf = path.join("apus.toml");
    fs::write(
        &conf,
        format!("[images]\naccount = \"AUTH_images\"\nsegment_size = {SEGMENT_SIZE}\n"),
    )
    .unwrap();
    let mut server = Server::start_with(&path, &path.join("data"), "apus", Some(&conf));
    let proxy = server.wait_ready();
    let banner = fs::read_to_string(&server.stdout).unwrap();
    let images = banner_images_addr(&banner).unwrap_or_else(|| panic!("{banner}"));
    Cluster {
        server,
        proxy,
        images,
        _dir: dir,
        dir: path,
    }
}

fn write_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = pattern(IMAGE_SIZE, 18);
    let path = dir.join("image.raw");
    fs::write(&path, &data).unwrap();
    (path, data)
}

fn sha512_hex(data: &[u8]) -> String {
    format!("{:x}", sha2::Sha512::digest(data))
}

#[test]
fn glanceclient_round_trips_a_64_mib_image_in_segments() {
    let _one = support::serial();
    let c = start();
    let (file, data) = write_image(&c.dir);
    let (token, _) = login(c.proxy, "test:tester", "testing");
    let pid = c.server.pid();

    // A first, smaller round trip: the growth that any first transfer
    // brings (thread pools, allocator arenas and caches, connections) is
    // not the image's. Its peak is the baseline.
    let warm = c.dir.join("warm.raw");
    fs::write(&warm, pattern(SEGMENT_SIZE, 7)).unwrap();
    let (warm_peak, ()) = peak_rss_during(pid, || {
        let created = glance_ok(
            c.images,
            &token,
            &[
                "image-create",
                "--file",
                warm.to_str().unwrap(),
                "--disk-format",
                "raw",
                "--container-format",
                "bare",
                "--name",
                "warm-up",
            ],
        );
        let back = c.dir.join("warm.back");
        glance_ok(
            c.images,
            &token,
            &[
                "image-download",
                "--file",
                back.to_str().unwrap(),
                &field(&created, "id"),
            ],
        );
    });
    let before = warm_peak.max(current_rss(pid));
    let (peak, created) = peak_rss_during(pid, || {
        let created = glance_ok(
            c.images,
            &token,
            &[
                "image-create",
                "--file",
                file.to_str().unwrap(),
                "--disk-format",
                "qcow2",
                "--container-format",
                "bare",
                "--name",
                "big",
                "--property",
                "os_distro=cirros",
            ],
        );
        let id = field(&created, "id");
        let back = c.dir.join("back.raw");
        glance_ok(
            c.images,
            &token,
            &["image-download", "--file", back.to_str().unwrap(), &id],
        );
        assert!(fs::read(&back).unwrap() == data, "the download differs");
        created
    });
    println!("apus serve's RSS: {before} bytes after the warm-up, {peak} at most during the 64 MiB round trip");
    assert!(
        peak.saturating_sub(before) < MAX_RSS_GROWTH,
        "apus serve grew from {before} to {peak} bytes for a {IMAGE_SIZE}-byte image"
    );
    let id = field(&created, "id");
    assert_eq!(field(&created, "status"), "active", "{created}");
    assert_eq!(field(&created, "size"), IMAGE_SIZE.to_string());
    assert_eq!(field(&created, "checksum"), md5_hex(&data));
    assert_eq!(field(&created, "os_hash_algo"), "sha512");
    assert_eq!(field(&created, "os_hash_value"), sha512_hex(&data));
    assert_eq!(field(&created, "os_distro"), "cirros");
    assert_eq!(field(&created, "owner"), "test");

    // The data is an SLO of 8 segments in the configured account.
    let (admin, _) = login(c.proxy, "admin:admin", "admin");
    let auth = [("X-Auth-Token", admin.as_str())];
    let (head, _) = exchange(
        c.proxy,
        "HEAD",
        &format!("/v1/AUTH_images/images/{id}"),
        &auth,
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-static-large-object"), Some("True"));
    let (head, body) = exchange(
        c.proxy,
        "GET",
        "/v1/AUTH_images/images_segments?format=json",
        &auth,
        b"",
    );
    assert_eq!(head.status, 200);
    let listing: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let segments_of = |listing: &serde_json::Value, id: &str| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["name"].as_str().unwrap().starts_with(&format!("{id}/")))
            .count()
    };
    assert_eq!(segments_of(&listing, &id), IMAGE_SIZE / SEGMENT_SIZE);

    // List, show, update, tag.
    let listed = glance_ok(c.images, &token, &["image-list"]);
    assert!(
        listed.contains(&id) && listed.contains("warm-up"),
        "{listed}"
    );
    let updated = glance_ok(
        c.images,
        &token,
        &[
            "image-update",
            "--property",
            "arch=x86_64",
            "--name",
            "renamed",
            &id,
        ],
    );
    assert_eq!(field(&updated, "arch"), "x86_64");
    assert_eq!(field(&updated, "name"), "renamed");
    let shown = glance_ok(c.images, &token, &["image-show", &id]);
    assert_eq!(field(&shown, "arch"), "x86_64");
    assert_eq!(field(&shown, "checksum"), md5_hex(&data));

    // Glance's refusals, as the client reports them.
    let twice = glance(
        c.images,
        &token,
        &["image-upload", "--file", file.to_str().unwrap(), &id],
    );
    assert!(!twice.status.success());
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(said.contains("409"), "uploading twice: {said}");
    let (reader, _) = login(c.proxy, "test:tester3", "testing3");
    let refused = glance(
        c.images,
        &reader,
        &[
            "image-create",
            "--name",
            "nope",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
        ],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("403"), "a reader creating: {said}");
    // glanceclient's words for a 401.
    let forged = glance(c.images, "AUTH_tkforged", &["image-list"]);
    let said = String::from_utf8_lossy(&forged.stderr);
    assert!(
        said.contains("Invalid OpenStack Identity credentials"),
        "{said}"
    );

    // Delete: the image, its manifest and its segments go.
    glance_ok(c.images, &token, &["image-delete", &id]);
    let gone = glance(c.images, &token, &["image-show", &id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));
    let (_, body) = exchange(
        c.proxy,
        "GET",
        "/v1/AUTH_images/images_segments?format=json",
        &auth,
        b"",
    );
    let listing: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(segments_of(&listing, &id), 0, "{listing}");
    assert_eq!(
        listing.as_array().unwrap().len(),
        1,
        "the warm-up image's segment stays"
    );
}

/// openstacksdk with a token and the image endpoint: upload, download
/// (checking Glance's checksum itself), update and delete.
const OPENSTACKSDK_SCRIPT: &str = r#"
import hashlib, sys
import openstack
endpoint, token, source, target = sys.argv[1:5]
conn = openstack.connect(auth_type="admin_token",
                         auth={"token": token, "endpoint": endpoint},
                         image_endpoint_override=endpoint)
image = conn.image.create_image(name="sdk", filename=source, disk_format="raw",
                                container_format="bare", wait=True)
image = conn.image.get_image(image.id)
print("status", image.status, image.size, image.checksum, image.hash_algo)
with open(target, "wb") as out:
    response = conn.image.download_image(image, stream=True)
    for chunk in response.iter_content(1 << 20):
        out.write(chunk)
conn.image.update_image(image, min_ram=512, os_distro="cirros")
image = conn.image.get_image(image.id)
print("updated", image.min_ram, image.os_distro)
print("listed", sum(1 for i in conn.image.images() if i.id == image.id))
conn.image.delete_image(image)
print("left", sum(1 for i in conn.image.images() if i.id == image.id))
"#;

#[test]
fn openstacksdk_round_trips_a_64_mib_image() {
    let _one = support::serial();
    let c = start();
    let (file, data) = write_image(&c.dir);
    let (token, _) = login(c.proxy, "test:tester", "testing");
    let target = c.dir.join("sdk.raw");
    let out = Command::new(sdk_python())
        .args(["-c", OPENSTACKSDK_SCRIPT])
        .arg(format!("http://{}", c.images))
        .arg(&token)
        .arg(&file)
        .arg(&target)
        .output()
        .expect("run openstacksdk");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        c.server.stderr()
    );
    assert!(fs::read(&target).unwrap() == data, "the download differs");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("status active {IMAGE_SIZE} {} sha512", md5_hex(&data)).as_str(),
            "updated 512 cirros",
            "listed 1",
            "left 0",
        ],
        "{stdout}"
    );
}

#[test]
fn the_seeds_curl_lists_public_images_in_v1_shape() {
    let _one = support::serial();
    let c = start();
    let (admin, _) = login(c.proxy, "admin:admin", "admin");
    let file = c.dir.join("natty.img");
    let bytes = pattern(1_476_395, 6);
    fs::write(&file, &bytes).unwrap();
    let created = glance_ok(
        c.images,
        &admin,
        &[
            "image-create",
            "--file",
            file.to_str().unwrap(),
            "--name",
            "natty-uec",
            "--disk-format",
            "ami",
            "--container-format",
            "ami",
            "--visibility",
            "public",
            "--property",
            "type=raw",
        ],
    );
    let id = field(&created, "id");
    // `curl http://localhost:9292/images`: no token needed for public images.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://{}/images", c.images),
        ])
        .output()
        .expect("run curl");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        listing,
        serde_json::json!({"images": [{
            "name": "natty-uec",
            "container_format": "ami",
            "disk_format": "ami",
            "checksum": md5_hex(&bytes),
            "id": id,
            "size": bytes.len(),
        }]})
    );
    let (head, body) = exchange(c.images, "GET", "/images/detail", &[], b"");
    assert_eq!(head.status, 200);
    let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(detail["images"][0]["is_public"], true);
    assert_eq!(detail["images"][0]["properties"]["type"], "raw");
    assert_eq!(detail["images"][0]["status"], "active");
}
