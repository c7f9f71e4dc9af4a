//! `apus serve` authenticating with a real Keystone (`[proxy.keystone]`):
//! python-swiftclient logs in with v3 credentials and uploads, lists and
//! downloads through apus; a user with an operator role owns its project's
//! `AUTH_<project id>` account, a user without one is refused, another
//! project reads only through a container ACL naming it, a reseller admin
//! reaches any account, and a forged or revoked token is refused. Needs
//! `APUS_KEYSTONE_PYTHON` (`scripts/keystone.sh`) and the reference venv
//! (`scripts/swift-ref.sh`), which the README's test command installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::keystone::{Keystone, User};
use support::{exchange, pattern, swift_python};

/// How long apus trusts a validation; the revocation check waits it out.
const TOKEN_CACHE_TIME: Duration = Duration::from_secs(1);

fn status(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    exchange(addr, method, path, headers, b"").0.status
}

fn account(user: &User) -> String {
    format!("/v1/AUTH_{}", user.project_id)
}

/// `swift <args>` with `user`'s v3 credentials; its stdout.
fn swift(ks: &Keystone, user: &User, args: &[&str]) -> String {
    let out = Command::new(swift_python().with_file_name("swift"))
        .args(["--os-auth-url", &ks.auth_url, "--auth-version", "3"])
        .args(["--os-username", user.name, "--os-password", user.password])
        .args(["--os-project-name", user.project])
        .args(["--os-user-domain-id", "default"])
        .args(["--os-project-domain-id", "default"])
        .args(args)
        .output()
        .expect("run swift");
    assert!(
        out.status.success(),
        "swift {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keystone_users_reach_what_their_roles_allow() {
    let _one = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystone::start(&dir.path().join("keystone"));
    let (mut server, addr) = ks.start_apus(
        dir.path(),
        &format!("token_cache_time = {}", TOKEN_CACHE_TIME.as_secs()),
        "",
    );
    ks.register_object_store(&format!("http://{addr}/v1/AUTH_$(project_id)s"));

    // python-swiftclient with v3 credentials: upload, list, download.
    let upload = dir.path().join("two.bin");
    let bytes = pattern(2 * 1024 * 1024 + 17, 3);
    fs::write(&upload, &bytes).unwrap();
    swift(
        &ks,
        &ks.tester,
        &[
            "upload",
            "files",
            upload.to_str().unwrap(),
            "--object-name",
            "two.bin",
        ],
    );
    let listed = swift(&ks, &ks.tester, &["list", "files"]);
    assert_eq!(listed.trim(), "two.bin");
    let back = dir.path().join("back.bin");
    swift(
        &ks,
        &ks.tester,
        &["download", "files", "two.bin", "-o", back.to_str().unwrap()],
    );
    assert!(fs::read(&back).unwrap() == bytes, "the download differs");

    // The operator owns AUTH_<its project id>.
    let (tester, _) = ks.token_for(&ks.tester);
    let own = [("X-Auth-Token", tester.as_str())];
    let object = format!("{}/files/two.bin", account(&ks.tester));
    assert_eq!(status(addr, "HEAD", &account(&ks.tester), &own), 204);
    assert_eq!(status(addr, "HEAD", &object, &own), 200);

    // The same project without an operator role: refused.
    let (member, _) = ks.token_for(&ks.tester3);
    let member = [("X-Auth-Token", member.as_str())];
    assert_eq!(status(addr, "HEAD", &account(&ks.tester), &member), 403);
    assert_eq!(status(addr, "GET", &object, &member), 403);

    // Another project: refused, until a container ACL names it by ids.
    let (other, _) = ks.token_for(&ks.tester2);
    let other = [("X-Auth-Token", other.as_str())];
    assert_eq!(status(addr, "GET", &object, &other), 403);
    let grant = format!("{}:{}", ks.tester2.project_id, ks.tester2.id);
    let container = format!("{}/files", account(&ks.tester));
    assert_eq!(
        status(
            addr,
            "POST",
            &container,
            &[("X-Auth-Token", &tester), ("X-Container-Read", &grant)]
        ),
        204
    );
    let (head, body) = exchange(addr, "GET", &object, &other, b"");
    assert_eq!(head.status, 200);
    assert!(body == bytes);
    // Reading is all the ACL gives.
    assert_eq!(
        status(addr, "DELETE", &object, &other),
        403,
        "a read ACL let another project delete"
    );
    // Its own account is its own.
    assert_eq!(
        status(
            addr,
            "PUT",
            &format!("{}/mine", account(&ks.tester2)),
            &other
        ),
        201
    );

    // A reseller admin reaches any account.
    let (reseller, _) = ks.token_for(&ks.reseller);
    let reseller = [("X-Auth-Token", reseller.as_str())];
    let (head, listing) = exchange(addr, "GET", &account(&ks.tester), &reseller, b"");
    assert_eq!(head.status, 200);
    assert_eq!(String::from_utf8_lossy(&listing).trim(), "files");
    assert_eq!(status(addr, "HEAD", &account(&ks.tester2), &reseller), 204);

    // Tokens Keystone did not issue, or has revoked, open nothing.
    let forged = [("X-Auth-Token", "gAAAAABforgedtokenforgedtokenforgedtoken")];
    assert_eq!(status(addr, "HEAD", &account(&ks.tester), &forged), 401);
    assert_eq!(status(addr, "HEAD", &account(&ks.tester), &[]), 401);
    let (service, _) = ks.token_for(&ks.swift);
    let (revoke, _) = ks.request(
        "DELETE",
        "/v3/auth/tokens",
        &[("X-Auth-Token", &service), ("X-Subject-Token", &tester)],
        None,
    );
    assert_eq!(revoke.status, 204);
    // Validations are trusted for token_cache_time at most.
    std::thread::sleep(TOKEN_CACHE_TIME + Duration::from_millis(500));
    assert_eq!(status(addr, "HEAD", &account(&ks.tester), &own), 401);

    assert!(server.terminate().success(), "{}", server.stderr());
}
