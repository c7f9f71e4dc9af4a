//! `apus images` behind a real Keystone: python-glanceclient and
//! openstacksdk log in with v3 credentials and find the image service in
//! Keystone's catalog; images belong to the token's project; a member
//! creates and shares, a user with no member role only looks, another
//! project sees a shared image once it accepts it, an admin publicizes,
//! and a revoked token is refused. Needs `APUS_KEYSTONE_PYTHON`
//! (`scripts/keystone.sh`), `APUS_GLANCE` and `APUS_OPENSTACK_PYTHON`
//! (`scripts/clients.sh`), which the README's test command installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use support::keystone::{Keystone, User};
use support::{banner_images_addr, client_tool, exchange, md5_hex, pattern};

/// How long apus trusts a validation; the revocation check waits it out.
const TOKEN_CACHE_TIME: Duration = Duration::from_secs(1);

fn glance_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    client_tool(
        "APUS_GLANCE",
        &format!("{home}/.cache/apus-clients/venv/bin/glance"),
    )
}

/// `glance <args>` logged in as `user` with v3 credentials: the image
/// endpoint comes from the catalog.
fn glance(ks: &Keystone, user: &User, args: &[&str]) -> Output {
    Command::new(glance_bin())
        .args(["--os-auth-url", &ks.auth_url])
        .args(["--os-username", user.name, "--os-password", user.password])
        .args(["--os-project-name", user.project])
        .args(["--os-user-domain-id", "default"])
        .args(["--os-project-domain-id", "default"])
        .args(args)
        .output()
        .expect("run glance")
}

fn glance_ok(ks: &Keystone, user: &User, args: &[&str]) -> String {
    let out = glance(ks, user, args);
    assert!(
        out.status.success(),
        "glance {args:?} as {}: {}\n{}",
        user.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refusal(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A value from glance's `| Property | Value |` table.
fn field(table: &str, name: &str) -> String {
    table
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.len() > 2 && cells[1] == name)
        .map(|cells| cells[2].to_string())
        .unwrap_or_default()
}

fn status(addr: SocketAddr, method: &str, path: &str, token: &str) -> u16 {
    exchange(addr, method, path, &[("X-Auth-Token", token)], b"")
        .0
        .status
}

/// openstacksdk logged in with v3 credentials: lists the images it sees.
const OPENSTACKSDK_SCRIPT: &str = r#"
import sys
import openstack
auth_url, user, password, project = sys.argv[1:5]
conn = openstack.connect(auth_url=auth_url, username=user, password=password,
                         project_name=project, user_domain_id="default",
                         project_domain_id="default", region_name="RegionOne")
for image in conn.image.images():
    print("image", image.name, image.visibility, image.owner)
"#;

#[test]
fn keystone_projects_own_share_and_publicize_images() {
    let _one = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystone::start(&dir.path().join("keystone"));
    let (mut server, _) = ks.start_apus(
        dir.path(),
        &format!("token_cache_time = {}", TOKEN_CACHE_TIME.as_secs()),
        "[images]\n",
    );
    let banner = fs::read_to_string(&server.stdout).unwrap();
    let images = banner_images_addr(&banner).unwrap_or_else(|| panic!("{banner}"));
    ks.register_service("image", "glance", &format!("http://{images}"));

    // A member of `test` creates an image; it belongs to the project.
    let file = dir.path().join("disk.qcow2");
    let bytes = pattern(3 * 1024 * 1024 + 5, 9);
    fs::write(&file, &bytes).unwrap();
    let created = glance_ok(
        &ks,
        &ks.tester3,
        &[
            "image-create",
            "--file",
            file.to_str().unwrap(),
            "--name",
            "shared-disk",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
        ],
    );
    let id = field(&created, "id");
    assert_eq!(field(&created, "owner"), ks.tester3.project_id);
    assert_eq!(field(&created, "checksum"), md5_hex(&bytes));
    assert_eq!(field(&created, "visibility"), "shared");

    // Without a member role: may look, may not create.
    let listed = glance_ok(&ks, &ks.tester, &["image-list"]);
    assert!(listed.contains(&id), "{listed}");
    let said = refusal(&glance(
        &ks,
        &ks.tester,
        &[
            "image-create",
            "--name",
            "x",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
        ],
    ));
    assert!(said.contains("403"), "{said}");

    // Another project: nothing, until it is made a member and accepts.
    let said = refusal(&glance(&ks, &ks.tester2, &["image-show", &id]));
    assert!(said.contains("404") || said.contains("No image"), "{said}");
    glance_ok(
        &ks,
        &ks.tester3,
        &["member-create", &id, &ks.tester2.project_id],
    );
    let said = refusal(&glance(
        &ks,
        &ks.tester3,
        &["member-update", &id, &ks.tester2.project_id, "accepted"],
    ));
    assert!(said.contains("403"), "only the member accepts: {said}");
    glance_ok(
        &ks,
        &ks.tester2,
        &["member-update", &id, &ks.tester2.project_id, "accepted"],
    );
    let back = dir.path().join("back.qcow2");
    glance_ok(
        &ks,
        &ks.tester2,
        &["image-download", "--file", back.to_str().unwrap(), &id],
    );
    assert!(
        fs::read(&back).unwrap() == bytes,
        "the member's download differs"
    );
    let said = refusal(&glance(&ks, &ks.tester2, &["image-delete", &id]));
    // glanceclient's words for a 403 on delete.
    assert!(
        said.contains("not permitted to delete"),
        "a member deleting: {said}"
    );

    // Only an admin makes an image public.
    let said = refusal(&glance(
        &ks,
        &ks.tester3,
        &["image-update", "--visibility", "public", &id],
    ));
    assert!(said.contains("403"), "{said}");
    let updated = glance_ok(
        &ks,
        &ks.admin,
        &["image-update", "--visibility", "public", &id],
    );
    assert_eq!(field(&updated, "visibility"), "public");

    // openstacksdk finds the service in the catalog too.
    let home = std::env::var("HOME").unwrap_or_default();
    let python = client_tool(
        "APUS_OPENSTACK_PYTHON",
        &format!("{home}/.cache/apus-clients/venv/bin/python"),
    );
    let out = Command::new(python)
        .args(["-c", OPENSTACKSDK_SCRIPT, &ks.auth_url])
        .args([ks.tester2.name, ks.tester2.password, ks.tester2.project])
        .output()
        .expect("run openstacksdk");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("image shared-disk public {}", ks.tester3.project_id)
    );

    // A revoked token opens nothing once its validation expires.
    let (token, _) = ks.token_for(&ks.tester3);
    let path = format!("/v2/images/{id}");
    assert_eq!(status(images, "GET", &path, &token), 200);
    let (service, _) = ks.token_for(&ks.swift);
    let (revoke, _) = ks.request(
        "DELETE",
        "/v3/auth/tokens",
        &[("X-Auth-Token", &service), ("X-Subject-Token", &token)],
        None,
    );
    assert_eq!(revoke.status, 204);
    std::thread::sleep(TOKEN_CACHE_TIME + Duration::from_millis(500));
    assert_eq!(status(images, "GET", &path, &token), 401);
    assert_eq!(status(images, "GET", &path, "gAAAAABforged"), 401);

    glance_ok(&ks, &ks.tester3, &["image-delete", &id]);
    assert!(server.terminate().success(), "{}", server.stderr());
}
