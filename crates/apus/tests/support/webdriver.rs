//! A minimal W3C WebDriver client for tests that drive a real headless
//! Chromium: Debian's `chromium` and `chromedriver`, which
//! `scripts/browser.sh` installs and names in `APUS_CHROMIUM` and
//! `APUS_CHROMEDRIVER`. [`Browser::start`] runs chromedriver on a port the
//! kernel picks and opens one session; dropping the [`Browser`] ends both.
//!
//! Every wait is bounded and polls every 100 ms. The browser's console log
//! is read through chromedriver's `POST /session/{id}/se/log`, which hands
//! each entry out once: `{"level": "SEVERE", "source": "javascript",
//! "message": "http://… 0:123 Uncaught Error: boom", "timestamp": …}`, with
//! `source` also `console-api` (console.error and friends) and `network`
//! (failed loads).

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// A default for every wait: generous, since a debug build, the browser and
/// the server share two busy cores.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// How long one WebDriver command may take before the test fails; the
/// session's own page-load and script timeouts ([`WAIT`]) end first.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// The key under which W3C WebDriver passes an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A reference to an element of the current page (its W3C element id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// The element as a script argument for [`Browser::execute`] (it
    /// arrives as the DOM element).
    pub fn json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// An error chromedriver answered a command with.
#[derive(Debug)]
struct WdError {
    status: u16,
    error: String,
    message: String,
}

/// A chromedriver and the one session opened on it; dropping it deletes the
/// session and kills chromedriver's whole process group (so Chromium too).
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    downloads: PathBuf,
}

/// A tool from `var`, else `default`; a test fails rather than skips when
/// it is missing.
fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: run scripts/browser.sh (the README's test command does), or set {var}",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose profile is
    /// `<dir>/profile` and whose downloads land in `<dir>/downloads`;
    /// chromedriver's output goes to `<dir>/chromedriver.out` and `.err`.
    /// `dir` is the test's to remove.
    pub fn start(dir: &Path) -> Browser {
        let chromedriver = tool("APUS_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = tool("APUS_CHROMIUM", "/usr/bin/chromium");
        let profile = dir.join("profile");
        let downloads = dir.join("downloads");
        fs::create_dir_all(&downloads).unwrap();
        let out = dir.join("chromedriver.out");
        let err = dir.join("chromedriver.err");
        // `--port=0`: the kernel picks a free port, so nothing can take it
        // between choosing and binding; chromedriver prints which.
        let driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            // Its own process group, which Chromium's processes join: one
            // signal ends them all, whatever state the session is in.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", chromedriver.display()));
        let mut browser = Browser {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            session: String::new(),
            downloads: downloads.clone(),
        };
        let deadline = Instant::now() + WAIT;
        let port = loop {
            let said = fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = reported_port(&said) {
                break port;
            }
            if let Some(status) = browser.driver.try_wait().unwrap() {
                panic!(
                    "chromedriver exited ({status}): {said}\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not say its port: {said}"
            );
            std::thread::sleep(POLL);
        };
        browser.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let wait_ms = WAIT.as_millis() as u64;
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        format!("--user-data-dir={}", profile.display()),
                        "--window-size=1280,900",
                    ],
                    "prefs": {
                        "download.default_directory": downloads,
                        "download.prompt_for_download": false,
                    },
                },
                "goog:loggingPrefs": { "browser": "ALL" },
                "timeouts": { "pageLoad": wait_ms, "script": wait_ms, "implicit": 0 },
            }}
        });
        let value =
            http(browser.addr, "POST", "/session", Some(&capabilities)).unwrap_or_else(|e| {
                panic!(
                    "new WebDriver session: {e:?}\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                )
            });
        browser.session = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_string();
        browser
    }

    /// One command on the session (`suffix` follows `/session/{id}`).
    fn try_command(
        &self,
        method: &str,
        suffix: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let path = format!("/session/{}{suffix}", self.session);
        http(self.addr, method, &path, body.as_ref())
    }

    fn command(&self, method: &str, suffix: &str, body: Option<Value>) -> Value {
        self.try_command(method, suffix, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {suffix}: {e:?}"))
    }

    /// Navigates to `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The current page's visible text (`document.body.innerText`).
    pub fn page_text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The first element matching the CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        match self.try_command("POST", "/element", Some(body)) {
            Ok(v) => Some(element_of(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css:?}: {e:?}"),
        }
    }

    /// Every element matching the CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let v = self.command("POST", "/elements", Some(body));
        v.as_array()
            .map(|all| all.iter().map(element_of).collect())
            .unwrap_or_default()
    }

    /// Waits for an element matching the CSS selector to be in the page;
    /// fails the test with the page's URL and text if none comes.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(el) = self.find(css) {
                return el;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no {css:?} after {timeout:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the JavaScript expression `js` to be true (truthy); fails
    /// the test with the page's URL and text if it does not become so.
    pub fn wait_until(&self, js: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({js});");
        loop {
            if self.execute(&script, vec![]) == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{js:?} not true after {timeout:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for a `confirm()` or `alert()` prompt and accepts it; returns
    /// its text.
    pub fn accept_alert(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_command("GET", "/alert/text", None) {
                Ok(text) => {
                    self.command("POST", "/alert/accept", Some(json!({})));
                    return text.as_str().unwrap_or_default().to_string();
                }
                Err(e) if e.error == "no such alert" => {}
                Err(e) => panic!("waiting for a prompt: {e:?}"),
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no prompt after {timeout:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Fails the test, saying what the page showed and what went wrong in
    /// its scripts.
    fn fail(&self, what: &str) -> ! {
        let mut text = self.page_text();
        if text.len() > 4000 {
            let mut end = 4000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        panic!(
            "{what}\nat {}\npage text:\n{text}\nscript errors: {:?}",
            self.url(),
            self.js_errors()
        );
    }

    /// Clicks the element (scrolled into view first, as a user would).
    pub fn click(&self, el: &Element) {
        self.command("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    /// Types `text` into the element; on an `<input type=file>`, `text` is
    /// the path of the file to choose.
    pub fn type_text(&self, el: &Element, text: &str) {
        let body = json!({ "text": text });
        self.command("POST", &format!("/element/{}/value", el.0), Some(body));
    }

    /// Empties an input or textarea.
    pub fn clear(&self, el: &Element) {
        self.command("POST", &format!("/element/{}/clear", el.0), Some(json!({})));
    }

    /// The element's rendered text.
    pub fn text(&self, el: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", el.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A DOM property of the element (`value`, `checked`, …); null if none.
    pub fn property(&self, el: &Element, name: &str) -> Value {
        self.command("GET", &format!("/element/{}/property/{name}", el.0), None)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and gives
    /// what it returns.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({ "script": script, "args": args });
        self.command("POST", "/execute/sync", Some(body))
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let b64 = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"))
    }

    /// Resizes the window (the viewport is a little smaller).
    pub fn set_window_size(&self, width: u32, height: u32) {
        let body = json!({ "width": width, "height": height });
        self.command("POST", "/window/rect", Some(body));
    }

    /// Where the browser saves downloads.
    pub fn downloads_dir(&self) -> PathBuf {
        self.downloads.clone()
    }

    /// Waits until `<downloads>/<name>` exists and no download is still in
    /// progress (no `.crdownload` left); gives its path.
    pub fn wait_download(&self, name: &str, timeout: Duration) -> PathBuf {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + timeout;
        loop {
            let partial = fs::read_dir(&self.downloads)
                .map(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
                })
                .unwrap_or(false);
            if path.exists() && !partial {
                return path;
            }
            if Instant::now() >= deadline {
                let present: Vec<String> = fs::read_dir(&self.downloads)
                    .map(|entries| {
                        entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                self.fail(&format!(
                    "download {name:?} not complete after {timeout:?}; downloads: {present:?}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The script errors logged since the last call: uncaught exceptions
    /// and `console.error` (every SEVERE entry of the browser log), leaving
    /// out failed loads (`Failed to load resource`, as for a 404 a page
    /// expects). Each is the log's message, which starts with the script's
    /// URL and line.
    pub fn js_errors(&self) -> Vec<String> {
        let entries = self.command("POST", "/se/log", Some(json!({ "type": "browser" })));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE" && e["source"] != "network")
            .filter_map(|e| e["message"].as_str())
            .filter(|m| !m.contains("Failed to load resource"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Chromium closes its windows and exits.
            let _ = http(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: signalling the process group of our own child, which is
        // not yet reaped (so the group id is still its).
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
        // Chromium's processes were in the group too: wait for them to end.
        // Ended, not reaped: orphans are init's to reap, in its own time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_lives(group) && Instant::now() < deadline {
            // SAFETY: the group's live members are Chromium's processes,
            // which chromedriver started.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a process of the group is still running (not a zombie), as
/// `/proc/<pid>/stat` says: `pid (comm) state ppid pgrp ...`.
fn group_lives(group: libc::pid_t) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2].parse() == Ok(group) && !matches!(fields[0], "Z" | "X")
    })
}

/// The port in chromedriver's "ChromeDriver was started successfully on
/// port 35057." line.
fn reported_port(said: &str) -> Option<u16> {
    said.lines()
        .find(|l| l.contains("started successfully"))
        .and_then(|l| l.split("on port ").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches('.').parse().ok())
}

fn element_of(v: &Value) -> Element {
    Element(
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element: {v}"))
            .to_string(),
    )
}

/// One WebDriver request: the answer's `value`, or the error it names.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, WdError> {
    let io = |e: std::io::Error| WdError {
        status: 0,
        error: "i/o".to_string(),
        message: format!("{method} {path}: {e}"),
    };
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(io)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
    conn.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).map_err(io)?;
    conn.write_all(body.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| WdError {
            status: 0,
            error: "bad answer".to_string(),
            message: format!("{method} {path}: status line {line:?}"),
        })?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            reader.read_exact(&mut raw).map_err(io)?;
        }
        None => {
            reader.read_to_end(&mut raw).map_err(io)?;
        }
    }
    let answer: Value = serde_json::from_slice(&raw).map_err(|e| WdError {
        status,
        error: "bad answer".to_string(),
        message: format!("{method} {path}: {e}: {}", String::from_utf8_lossy(&raw)),
    })?;
    let value = answer["value"].clone();
    if status == 200 {
        Ok(value)
    } else {
        Err(WdError {
            status,
            error: value["error"].as_str().unwrap_or("unknown").to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// How many distinct colours a PNG's pixels have: 1 for a blank page, many
/// for one with text or pictures. Reads the 8-bit, non-interlaced images
/// screenshots are (grey, RGB, with or without alpha).
pub fn png_distinct_colours(png: &[u8]) -> usize {
    let (_, _, channels, pixels) = decode_png(png);
    pixels
        .chunks_exact(channels)
        .map(|px| px.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)))
        .collect::<HashSet<u32>>()
        .len()
}

/// Whether a screenshot shows (next to) nothing: a handful of colours at
/// most.
pub fn is_blank(png: &[u8]) -> bool {
    png_distinct_colours(png) <= 4
}

/// A PNG's width, height, bytes per pixel and unfiltered pixel bytes.
pub fn decode_png(png: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG ({} bytes)",
        png.len()
    );
    let mut at = 8;
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut compressed = Vec::new();
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
                height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
                let (depth, colour, interlace) = (data[8], data[9], data[12]);
                assert!(
                    depth == 8 && interlace == 0,
                    "unsupported PNG: depth {depth}, interlace {interlace}"
                );
                channels = match colour {
                    0 => 1,
                    2 => 3,
                    4 => 2,
                    6 => 4,
                    other => panic!("unsupported PNG colour type {other}"),
                };
            }
            b"IDAT" => compressed.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let mut filtered = Vec::new();
    flate2::read::ZlibDecoder::new(&compressed[..])
        .read_to_end(&mut filtered)
        .unwrap_or_else(|e| panic!("PNG image data: {e}"));
    let stride = width * channels;
    assert_eq!(filtered.len(), height * (stride + 1), "PNG image data size");
    let mut pixels = vec![0u8; height * stride];
    for y in 0..height {
        let row = &filtered[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, row) = (row[0], &row[1..]);
        for x in 0..stride {
            let a = if x >= channels {
                pixels[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 {
                pixels[(y - 1) * stride + x]
            } else {
                0
            };
            let c = if x >= channels && y > 0 {
                pixels[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                other => panic!("bad PNG filter {other}"),
            };
            pixels[y * stride + x] = row[x].wrapping_add(predicted);
        }
    }
    (width, height, channels, pixels)
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}
