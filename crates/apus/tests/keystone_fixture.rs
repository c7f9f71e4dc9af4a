//! The Keystone fixture itself (`support::keystone`): a real Keystone
//! starts on loopback with the fixture's users, issues a project-scoped
//! token, lets the swift service user validate it with the roles and
//! project it carries, refuses a wrong password, and forgets a token once
//! revoked; and python-swiftclient logs in to it with v3 credentials and
//! finds its storage URL in the catalog. Needs `APUS_KEYSTONE_PYTHON`
//! (`scripts/keystone.sh`) and the reference venv (`scripts/swift-ref.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Instant;

use support::keystone::Keystone;
use support::swift_python;

/// One Keystone for all of it: a start costs seconds of CPU.
#[test]
fn keystone_serves_tokens_and_swiftclient_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let ks = Keystone::start(dir.path());
    eprintln!("Keystone ready in {:?}", started.elapsed());
    assert_eq!(ks.auth_url, format!("http://{}/v3", ks.addr));

    let (token, project_id) = ks.token("tester", "testing", "test");
    assert_eq!(project_id, ks.tester.project_id);
    assert_ne!(ks.tester.project_id, ks.tester2.project_id);
    assert_eq!(ks.tester.project_id, ks.tester3.project_id);
    let (service_token, _) = ks.token_for(&ks.swift);

    let validate = |subject: &str| {
        ks.request(
            "GET",
            "/v3/auth/tokens",
            &[
                ("X-Auth-Token", &service_token),
                ("X-Subject-Token", subject),
            ],
            None,
        )
    };
    let (head, body) = validate(&token);
    assert_eq!(head.status, 200, "{body}");
    let t = &body["token"];
    assert_eq!(t["project"]["id"], ks.tester.project_id.as_str());
    assert_eq!(t["project"]["name"], "test");
    assert_eq!(t["user"]["id"], ks.tester.id.as_str());
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["swiftoperator"], "{body}");

    // tester3 has member (which implies reader) and no operator role.
    let (token3, _) = ks.token_for(&ks.tester3);
    let (head, body) = validate(&token3);
    assert_eq!(head.status, 200, "{body}");
    let mut roles: Vec<&str> = body["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert!(roles.contains(&"member"), "{roles:?}");
    assert!(!roles.contains(&"swiftoperator"), "{roles:?}");

    let (status, _) = ks.try_token("tester", "wrong", "test").unwrap_err();
    assert_eq!(status, 401);

    let (head, body) = ks.request(
        "DELETE",
        "/v3/auth/tokens",
        &[
            ("X-Auth-Token", &service_token),
            ("X-Subject-Token", &token),
        ],
        None,
    );
    assert_eq!(head.status, 204, "{body}");
    let (head, body) = validate(&token);
    assert_eq!(head.status, 404, "{body}");

    swiftclient_logs_in_with_v3_credentials(&ks);
}

/// python-swiftclient, as the reference venv has it, logs in to `ks`.
fn swiftclient_logs_in_with_v3_credentials(ks: &Keystone) {
    // Nothing serves it: `swift auth` only logs in and reads the catalog.
    ks.register_object_store("http://127.0.0.1:9/v1/AUTH_$(project_id)s");
    let out = Command::new(swift_python().with_file_name("swift"))
        .args(["--os-auth-url", &ks.auth_url, "--auth-version", "3"])
        .args(["--os-username", "tester", "--os-password", "testing"])
        .args(["--os-project-name", "test"])
        .args([
            "--os-user-domain-id",
            "default",
            "--os-project-domain-id",
            "default",
        ])
        .arg("auth")
        .output()
        .expect("run swift");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swift auth: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ks.logs()
    );
    let url = format!("http://127.0.0.1:9/v1/AUTH_{}", ks.tester.project_id);
    assert!(
        stdout.contains(&format!("export OS_STORAGE_URL={url}")),
        "{stdout}"
    );
    assert!(stdout.contains("export OS_AUTH_TOKEN="), "{stdout}");
}
