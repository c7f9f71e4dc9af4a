//! The web console in a real browser: headless Chromium, driven through
//! WebDriver, against `apus serve`. A user logs in with the keyboard,
//! creates a container, uploads a 3 MiB file through the file picker (as a
//! static large object), downloads it byte-identical, edits its metadata,
//! shares it with a temporary URL, makes the container public, deletes
//! the object and the containers, and logs in again with a token; a
//! reseller admin opens the cluster page.
//! Every step is checked through the API as well as on the page; any
//! JavaScript error fails the test.
//!
//! `APUS_CONSOLE_SCREENSHOTS=<dir>` keeps the screenshots (those in
//! `docs/` come from here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::webdriver::{png_distinct_colours, Browser};
use support::{exchange, login, pattern, Server};

const WAIT: Duration = Duration::from_secs(60);
const FILE_SIZE: usize = 3 * 1024 * 1024;

/// Checks a screenshot is a drawn page, not a blank one, and keeps it
/// when asked to.
fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot_png();
    let colours = png_distinct_colours(&png);
    assert!(
        colours > 16,
        "the {name} screenshot looks blank ({colours} colours)"
    );
    if let Some(dir) = std::env::var_os("APUS_CONSOLE_SCREENSHOTS") {
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// Form controls on the page that a screen reader could not name.
fn unlabelled_controls(browser: &Browser) -> Vec<String> {
    let found = browser.execute(
        "return Array.from(document.querySelectorAll('input, select, textarea, button'))
           .filter((e) => e.type !== 'hidden' && e.getClientRects().length > 0)
           .filter((e) => {
             const byLabel = e.labels && Array.from(e.labels).some((l) => l.textContent.trim());
             const byAria = (e.getAttribute('aria-label') || '').trim();
             const byText = e.tagName === 'BUTTON' && e.textContent.trim();
             return !(byLabel || byAria || byText);
           })
           .map((e) => e.outerHTML.slice(0, 160));",
        vec![],
    );
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_all_labelled(browser: &Browser, view: &str) {
    let missing = unlabelled_controls(browser);
    assert!(
        missing.is_empty(),
        "unlabelled controls on {view}: {missing:?}"
    );
}

fn assert_no_js_errors(browser: &Browser) {
    let errors = browser.js_errors();
    assert!(errors.is_empty(), "JavaScript errors: {errors:?}");
}

/// Logs in through the form with the keyboard alone: the user name, Tab
/// to the key, Enter to submit.
fn keyboard_login(browser: &Browser, user: &str, key: &str) {
    let field = browser.wait_for("#login-user", WAIT);
    browser.click(&field);
    browser.type_text(&field, &format!("{user}\u{E004}{key}\u{E007}"));
    browser.wait_for("#account-title", WAIT);
}

fn head_status(addr: std::net::SocketAddr, path: &str, token: &str) -> support::Head {
    exchange(addr, "HEAD", path, &[("X-Auth-Token", token)], b"").0
}

#[test]
fn a_user_manages_objects_and_an_admin_sees_the_cluster() {
    let _one = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = Server::start(dir.path(), &data, "console");
    let addr = server.wait_ready();
    let (token, account) = login(addr, "test:tester", "testing");

    let upload = dir.path().join("three.bin");
    let bytes = pattern(FILE_SIZE, 7);
    std::fs::write(&upload, &bytes).unwrap();

    let browser = Browser::start(&dir.path().join("browser"));
    browser.goto(&format!("http://{addr}/console/"));
    browser.wait_for("#login-user", WAIT);
    assert_all_labelled(&browser, "the login page");
    keyboard_login(&browser, "test:tester", "testing");
    assert_all_labelled(&browser, "the containers page");

    // A container, made on the page.
    let name = browser.wait_for("#new-container", WAIT);
    browser.type_text(&name, "console-test");
    browser.click(&browser.wait_for("#create-container", WAIT));
    let link = browser.wait_for("a[href='#/c/console-test']", WAIT);
    assert_eq!(
        head_status(addr, &format!("{account}/console-test"), &token).status,
        204
    );
    browser.click(&link);
    browser.wait_for("#container-title", WAIT);
    assert_all_labelled(&browser, "the container page");

    // Upload through the file picker in 1 MiB segments: a static large
    // object of three segments.
    browser.click(&browser.wait_for("#upload-options summary", WAIT));
    let seg = browser.wait_for("#segment-size", WAIT);
    browser.clear(&seg);
    browser.type_text(&seg, "1");
    let picker = browser.wait_for("#upload-file", WAIT);
    browser.type_text(&picker, upload.to_str().unwrap());
    let row = "tr[data-object='three.bin']";
    browser.wait_for(row, WAIT);
    browser.wait_until("document.querySelector('#uploads li.done')", WAIT);
    let object = format!("{account}/console-test/three.bin");
    let head = head_status(addr, &object, &token);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3145728"));
    assert_eq!(head.header("x-static-large-object"), Some("True"));
    let (seg_head, seg_list) = exchange(
        addr,
        "GET",
        &format!("{account}/console-test_segments?format=json"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(seg_head.status, 200);
    let segments: serde_json::Value = serde_json::from_slice(&seg_list).unwrap();
    assert_eq!(segments.as_array().unwrap().len(), 3, "{segments}");
    screenshot(&browser, "console-listing");

    // Download: the same bytes.
    browser.click(&browser.wait_for(&format!("{row} .object-download"), WAIT));
    let saved = browser.wait_download("three.bin", WAIT);
    let got = std::fs::read(&saved).unwrap();
    assert!(got == bytes, "the download differs ({} bytes)", got.len());

    // Metadata, edited in the object's dialog.
    browser.click(&browser.wait_for(&format!("{row} .object-open"), WAIT));
    browser.wait_for("#object-dialog", WAIT);
    assert_all_labelled(&browser, "the object dialog");
    browser.click(&browser.wait_for("#object-meta-add", WAIT));
    browser.type_text(&browser.wait_for("#object-meta-key-1", WAIT), "Color");
    browser.type_text(&browser.wait_for("#object-meta-value-1", WAIT), "blue");

    // Share: the account has no temp-URL key, the console offers to set one.
    browser.click(&browser.wait_for("#share-create", WAIT));
    browser.accept_alert(WAIT);
    browser.wait_until(
        "(() => { const o = document.querySelector('#share-url'); return !!o && !o.hidden && o.textContent.includes('temp_url_sig='); })()",
        WAIT,
    );
    let shared = browser.text(&browser.wait_for("#share-url", WAIT));
    let shared_path = &shared[shared.find("/v1/").unwrap()..];
    let (shared_head, shared_body) = exchange(addr, "GET", shared_path, &[], b"");
    assert_eq!(shared_head.status, 200, "{shared}");
    assert!(shared_body == bytes, "the temporary URL serves other bytes");

    browser.click(&browser.wait_for("#object-meta-save", WAIT));
    browser.wait_until("!document.querySelector('#object-dialog')", WAIT);
    let head = head_status(addr, &object, &token);
    assert_eq!(head.header("x-object-meta-color"), Some("blue"));
    assert_eq!(head.header("x-static-large-object"), Some("True"));

    // Public: anonymous users read and list.
    let anonymous = exchange(addr, "GET", &format!("{account}/console-test"), &[], b"").0;
    assert_eq!(anonymous.status, 401);
    browser.click(&browser.wait_for("#container-settings summary", WAIT));
    browser.click(&browser.wait_for("#container-public", WAIT));
    browser.click(&browser.wait_for("#container-save", WAIT));
    browser.wait_until(
        "(document.querySelector('#status').textContent || '').includes('Saved the settings')",
        WAIT,
    );
    let anonymous = exchange(addr, "GET", &format!("{account}/console-test"), &[], b"");
    assert_eq!(anonymous.0.status, 200);
    assert!(String::from_utf8_lossy(&anonymous.1).contains("three.bin"));

    // A narrow window: one card per row, nothing scrolls sideways.
    browser.set_window_size(380, 800);
    browser.wait_for(row, WAIT);
    let overflow = browser.execute(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        vec![],
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the narrow page scrolls sideways by {overflow} px"
    );
    browser.set_window_size(1280, 900);

    // Delete the object (and its segments), then both containers.
    browser.click(&browser.wait_for(&format!("{row} .object-delete"), WAIT));
    browser.accept_alert(WAIT);
    browser.wait_until(
        "!document.querySelector(\"tr[data-object='three.bin']\")",
        WAIT,
    );
    assert_eq!(head_status(addr, &object, &token).status, 404);
    let (_, seg_list) = exchange(
        addr,
        "GET",
        &format!("{account}/console-test_segments?format=json"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seg_list).unwrap(),
        serde_json::json!([])
    );
    browser.click(&browser.wait_for("nav[aria-label='Breadcrumbs'] a[href='#/']", WAIT));
    for c in ["console-test", "console-test_segments"] {
        let button = browser.wait_for(&format!("button[aria-label='Delete container {c}']"), WAIT);
        browser.click(&button);
        browser.accept_alert(WAIT);
        browser.wait_until(
            &format!("!document.querySelector(\"a[href='#/c/{c}']\")"),
            WAIT,
        );
        assert_eq!(
            head_status(addr, &format!("{account}/{c}"), &token).status,
            404
        );
    }
    assert!(
        browser
            .find("#nav-cluster")
            .is_some_and(|e| browser.property(&e, "hidden") == true),
        "an account admin is offered the cluster page"
    );

    // A token obtained elsewhere: a wrong one is refused, the right one
    // opens the account.
    browser.click(&browser.wait_for("#logout", WAIT));
    browser.click(&browser.wait_for("#main details summary", WAIT));
    let token_field = browser.wait_for("#token-value", WAIT);
    browser.type_text(&token_field, "AUTH_tk0123456789abcdef0123456789abcdef");
    let url_field = browser.wait_for("#token-url", WAIT);
    browser.type_text(&url_field, &format!("{account}\u{E007}"));
    browser.wait_until(
        "(document.querySelector('#alert').textContent || '').includes('not valid')",
        WAIT,
    );
    assert!(browser.find("#account-title").is_none());
    browser.clear(&token_field);
    browser.type_text(&token_field, &format!("{token}\u{E007}"));
    browser.wait_for("#account-title", WAIT);

    // A reseller admin: the cluster page, with every server answering.
    browser.click(&browser.wait_for("#logout", WAIT));
    keyboard_login(&browser, "admin:admin", "admin");
    browser.wait_until(
        "(() => { const a = document.querySelector('#nav-cluster'); return !!a && !a.hidden; })()",
        WAIT,
    );
    browser.click(&browser.wait_for("#nav-cluster", WAIT));
    browser.wait_for("#device-list tbody tr", WAIT);
    // The rates need a second sample.
    browser.wait_until(
        "(() => { const t = document.querySelector('#tile-requests .value'); return !!t && t.textContent.endsWith('/s'); })()",
        WAIT,
    );
    let state = browser.execute(
        "return [document.querySelectorAll('#device-list tbody tr').length,
                 document.querySelectorAll('#server-list tbody tr').length,
                 document.querySelector('#cluster-problems').textContent]",
        vec![],
    );
    assert!(state[0].as_u64().unwrap() >= 1, "{state}");
    assert!(state[1].as_u64().unwrap() >= 3, "{state}");
    assert!(
        state[2].as_str().unwrap().starts_with("None"),
        "problems on a healthy cluster: {state}"
    );
    assert_all_labelled(&browser, "the cluster page");
    screenshot(&browser, "console-cluster");

    assert_no_js_errors(&browser);
    drop(browser);
    server.terminate();
}
