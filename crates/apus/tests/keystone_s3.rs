//! S3 with Keystone EC2 credentials, as Swift's `s3token` gives it: boto3
//! signs with an EC2 credential a real Keystone issued; apus asks
//! Keystone whose it is (`/v3/s3tokens`), keeps buckets in that project's
//! `AUTH_<project id>` account (the same objects the Swift API shows with
//! a Keystone token), lets only an operator create buckets, and refuses a
//! wrong secret or an unknown key. Needs `APUS_KEYSTONE_PYTHON`
//! (`scripts/keystone.sh`) and the reference venv's boto3
//! (`scripts/swift-ref.sh`), which the README's test command installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::process::Command;

use serde_json::json;
use support::keystone::{Keystone, User};
use support::{exchange, swift_python};

/// An EC2 credential for `user` in its project, made by the admin (users
/// without a reader role may not make their own): (access, secret).
fn ec2_credential(ks: &Keystone, user: &User) -> (String, String) {
    let (token, _) = ks.token_for(&ks.admin);
    let (head, body) = ks.request(
        "POST",
        &format!("/v3/users/{}/credentials/OS-EC2", user.id),
        &[("X-Auth-Token", &token)],
        Some(json!({"tenant_id": user.project_id})),
    );
    assert_eq!(head.status, 201, "EC2 credential for {}: {body}", user.name);
    (
        body["credential"]["access"].as_str().unwrap().to_string(),
        body["credential"]["secret"].as_str().unwrap().to_string(),
    )
}

const SCRIPT: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
ep, access, secret, member_access, member_secret = sys.argv[1:6]
cfg = Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1})
def client(a, s):
    return boto3.client('s3', endpoint_url=ep, aws_access_key_id=a,
                        aws_secret_access_key=s, region_name='us-east-1', config=cfg)
def code(f):
    try:
        f()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
s3 = client(access, secret)
s3.create_bucket(Bucket='ks-bucket')
body = bytes(range(256)) * 1000
s3.put_object(Bucket='ks-bucket', Key='disk.img', Body=body)
print('buckets', [b['Name'] for b in s3.list_buckets()['Buckets']])
print('get', s3.get_object(Bucket='ks-bucket', Key='disk.img')['Body'].read() == body)
print('again', s3.get_object(Bucket='ks-bucket', Key='disk.img')['ContentLength'])
print('wrong', code(lambda: client(access, 'not-the-secret').list_buckets()))
print('unknown', code(lambda: client('0123456789abcdef', secret).list_buckets()))
member = client(member_access, member_secret)
print('member', code(lambda: member.create_bucket(Bucket='member-bucket')))
"#;

fn status(addr: SocketAddr, method: &str, path: &str, token: &str) -> (u16, String) {
    let (head, body) = exchange(addr, method, path, &[("X-Auth-Token", token)], b"");
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn ec2_credentials_sign_s3_requests_into_the_projects_account() {
    let _one = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystone::start(&dir.path().join("keystone"));
    let (mut server, addr) = ks.start_apus(dir.path(), "", "");

    let (access, secret) = ec2_credential(&ks, &ks.tester);
    let (member_access, member_secret) = ec2_credential(&ks, &ks.tester3);
    let out = Command::new(swift_python())
        .args(["-c", SCRIPT, &format!("http://{addr}")])
        .args([&access, &secret, &member_access, &member_secret])
        .output()
        .expect("run boto3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "buckets ['ks-bucket']",
            "get True",
            "again 256000",
            "wrong AccessDenied",
            "unknown AccessDenied",
            "member AccessDenied",
        ],
        "{stdout}"
    );

    // The same objects through the Swift API, in the project's account.
    let (token, _) = ks.token_for(&ks.tester);
    let account = format!("/v1/AUTH_{}", ks.tester.project_id);
    let (code, listing) = status(addr, "GET", &format!("{account}/ks-bucket"), &token);
    assert_eq!((code, listing.trim()), (200, "disk.img"));
    assert!(server.terminate().success(), "{}", server.stderr());
}
