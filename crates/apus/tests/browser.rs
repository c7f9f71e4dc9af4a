//! The WebDriver harness itself (`support::webdriver`), against small pages
//! served from a thread: typing and clicking, choosing a file, script
//! errors read from the browser log, screenshots told blank from not, and
//! a download landing whole. It drives Debian's headless Chromium, which
//! the README's test command installs (`scripts/browser.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::webdriver::{decode_png, is_blank, png_distinct_colours, Browser, WAIT};

const FORM: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>form</title></head>
<body>
<h1>Harness page</h1>
<p><label for="name">Name</label> <input id="name" type="text">
<button id="show" onclick="document.getElementById('out').textContent =
  document.getElementById('name').value">Show</button></p>
<div id="out"></div>
<p><label for="file">File</label> <input id="file" type="file"
  onchange="document.getElementById('size').textContent = String(this.files[0].size)"></p>
<div id="size"></div>
<p><a id="download" href="/file.bin" download="data.bin">Download</a></p>
</body></html>"#;

const BOOM: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>boom</title></head>
<body><p>This page throws.</p>
<script>setTimeout(() => { throw new Error('boom') })</script>
</body></html>"#;

const BLANK: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>blank</title></head>
<body style="background: #fff"></body></html>"#;

/// The file the download link fetches.
fn download_body() -> Vec<u8> {
    support::pattern(300_000, 11)
}

/// Serves the pages above on 127.0.0.1, a thread per connection, for as
/// long as the test process lives; anything else is a 404.
fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    addr
}

fn answer(mut conn: TcpStream) {
    // Chromium may open a connection it never uses.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(n) if n > 0 && !header.trim_end().is_empty() => {}
            _ => break,
        }
    }
    let (status, kind, body) = match path.as_str() {
        "/" => (
            "200 OK",
            "text/html; charset=utf-8",
            FORM.as_bytes().to_vec(),
        ),
        "/boom" => (
            "200 OK",
            "text/html; charset=utf-8",
            BOOM.as_bytes().to_vec(),
        ),
        "/blank" => (
            "200 OK",
            "text/html; charset=utf-8",
            BLANK.as_bytes().to_vec(),
        ),
        "/file.bin" => ("200 OK", "application/octet-stream", download_body()),
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}

/// One browser at a time: each is a handful of processes on two cores.
fn setup() -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    String,
    Browser,
) {
    let guard = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let site = format!("http://{}", serve());
    let started = Instant::now();
    let browser = Browser::start(dir.path());
    eprintln!("browser started in {:?}", started.elapsed());
    (guard, dir, site, browser)
}

#[test]
fn typing_and_clicking_show_the_text() {
    let (_guard, _dir, site, b) = setup();
    b.goto(&format!("{site}/"));
    let name = b.wait_for("#name", WAIT);
    b.type_text(&name, "hello apus");
    assert_eq!(b.property(&name, "value"), "hello apus");
    b.click(&b.find("#show").unwrap());
    b.wait_until(
        "document.getElementById('out').textContent === 'hello apus'",
        WAIT,
    );
    assert_eq!(b.text(&b.find("#out").unwrap()), "hello apus");
    b.clear(&name);
    assert_eq!(b.property(&name, "value"), "");
    assert!(b.find("#nothing-like-this").is_none());
    assert_eq!(b.find_all("label").len(), 2);
    let tag = b.execute("return arguments[0].tagName", vec![name.json()]);
    assert_eq!(tag, "INPUT");
    assert_eq!(b.url(), format!("{site}/"));
    assert!(b.js_errors().is_empty());
}

#[test]
fn a_chosen_file_s_size_shows() {
    let (_guard, dir, site, b) = setup();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, support::pattern(12_345, 3)).unwrap();
    b.goto(&format!("{site}/"));
    let input = b.wait_for("#file", WAIT);
    b.type_text(&input, file.to_str().unwrap());
    b.wait_until(
        "document.getElementById('size').textContent === '12345'",
        WAIT,
    );
}

#[test]
fn script_errors_are_read_from_the_browser_log() {
    let (_guard, _dir, site, b) = setup();
    // The clean page: its favicon's 404 is a failed load, not an error.
    b.goto(&format!("{site}/"));
    b.wait_for("#name", WAIT);
    let errors = b.js_errors();
    assert!(errors.is_empty(), "{errors:?}");

    b.goto(&format!("{site}/boom"));
    let deadline = Instant::now() + WAIT;
    let errors = loop {
        let errors = b.js_errors();
        if !errors.is_empty() || Instant::now() > deadline {
            break errors;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        errors.iter().any(|e| e.contains("boom")),
        "no 'boom' in {errors:?}"
    );
    // Each is handed out once.
    assert!(b.js_errors().is_empty());

    b.execute("console.error('logged', 42)", vec![]);
    let errors = b.js_errors();
    assert!(
        errors.iter().any(|e| e.contains("logged")),
        "console.error not seen: {errors:?}"
    );
}

#[test]
fn screenshots_tell_a_page_from_a_blank_one() {
    let (_guard, _dir, site, b) = setup();
    b.goto(&format!("{site}/"));
    b.wait_for("#name", WAIT);
    let shot = b.screenshot_png();
    let colours = png_distinct_colours(&shot);
    assert!(colours > 10, "a page with text has {colours} colours");
    assert!(!is_blank(&shot));

    b.goto(&format!("{site}/blank"));
    b.wait_until("document.title === 'blank'", WAIT);
    let shot = b.screenshot_png();
    assert!(is_blank(&shot), "{} colours", png_distinct_colours(&shot));

    b.set_window_size(800, 600);
    let (width, height, _, _) = decode_png(&b.screenshot_png());
    assert!(
        (700..=800).contains(&width) && (400..=600).contains(&height),
        "{width}x{height} after resizing to 800x600"
    );
}

#[test]
fn a_download_lands_whole() {
    let (_guard, _dir, site, b) = setup();
    b.goto(&format!("{site}/"));
    b.click(&b.wait_for("#download", WAIT));
    let path = b.wait_download("data.bin", WAIT);
    assert_eq!(path.parent().unwrap(), b.downloads_dir());
    assert!(std::fs::read(&path).unwrap() == download_body());
}
