//! boto3 against `apus serve` through S3 (`s3api`): buckets, objects with
//! metadata, listings v1 and v2, a presigned GET, refused signatures, and
//! the same objects through the Swift API both ways (what Swift writes has
//! no S3 ACL: the account's owners reach it, other users do not). boto3
//! comes from the
//! reference venv the README's test command installs
//! (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{exchange, login, run_python_script, Server};

/// The client side: every step prints one line the test checks.
const SCRIPT: &str = r#"
import sys, urllib.request, boto3, botocore
from botocore.config import Config
ep = sys.argv[1]
cfg = Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1})
s3 = boto3.client('s3', endpoint_url=ep, aws_access_key_id='test:tester',
                  aws_secret_access_key='testing', region_name='us-east-1', config=cfg)
def code(f):
    try:
        f()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
s3.create_bucket(Bucket='photos')
print('buckets', [b['Name'] for b in s3.list_buckets()['Buckets']])
print('again', code(lambda: s3.create_bucket(Bucket='photos')))
print('badname', code(lambda: s3.create_bucket(Bucket='Bad_Name')))
body = bytes(range(256)) * 300
s3.put_object(Bucket='photos', Key='2024/cat one.jpg', Body=body, Metadata={'camera': 'x100'})
for i in range(5):
    s3.put_object(Bucket='photos', Key='n%d' % i, Body=b'%d' % i)
r = s3.get_object(Bucket='photos', Key='2024/cat one.jpg')
got = r['Body'].read()
print('get', got == body, {k.lower(): v for k, v in r['Metadata'].items()}, r['ContentLength'])
r = s3.get_object(Bucket='photos', Key='2024/cat one.jpg', Range='bytes=10-19')
print('range', r['Body'].read() == body[10:20], r['ContentRange'])
v2 = s3.list_objects_v2(Bucket='photos', MaxKeys=3)
print('v2', [o['Key'] for o in v2['Contents']], v2['IsTruncated'], v2['KeyCount'])
v2b = s3.list_objects_v2(Bucket='photos', ContinuationToken=v2['NextContinuationToken'])
print('v2next', [o['Key'] for o in v2b['Contents']], v2b['IsTruncated'])
v1 = s3.list_objects(Bucket='photos', Delimiter='/')
print('v1', [p['Prefix'] for p in v1['CommonPrefixes']], len(v1['Contents']))
print('nokey', code(lambda: s3.get_object(Bucket='photos', Key='missing')))
print('nobucket', code(lambda: s3.list_objects_v2(Bucket='nothere')))
print('notempty', code(lambda: s3.delete_bucket(Bucket='photos')))
url = s3.generate_presigned_url('get_object', Params={'Bucket': 'photos', 'Key': 'n1'}, ExpiresIn=60)
print('presigned', urllib.request.urlopen(url).read())
bad = boto3.client('s3', endpoint_url=ep, aws_access_key_id='test:tester',
                   aws_secret_access_key='wrong', region_name='us-east-1', config=cfg)
print('badsecret', code(lambda: bad.list_buckets()))
nobody = boto3.client('s3', endpoint_url=ep, aws_access_key_id='test:nobody',
                      aws_secret_access_key='x', region_name='us-east-1', config=cfg)
print('badkey', code(lambda: nobody.list_buckets()))
r = s3.get_object(Bucket='swiftside', Key='from-swift')
print('swiftobj', r['Body'].read(), {k.lower(): v for k, v in r['Metadata'].items()})
third = boto3.client('s3', endpoint_url=ep, aws_access_key_id='test:tester3',
                     aws_secret_access_key='testing3', region_name='us-east-1', config=cfg)
print('noowner', code(lambda: third.get_object(Bucket='swiftside', Key='from-swift')))
print('done')
"#;

#[test]
fn boto3_buckets_objects_and_the_swift_api_on_the_same_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let (token, account) = login(proxy, "test:tester", "testing");
    // A container and object written through Swift, which S3 reads as a
    // bucket and key.
    let (head, _) = exchange(
        proxy,
        "PUT",
        &format!("{account}/swiftside"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 201);
    let (head, _) = exchange(
        proxy,
        "PUT",
        &format!("{account}/swiftside/from-swift"),
        &[("X-Auth-Token", &token), ("X-Object-Meta-Origin", "swift")],
        b"written by swift",
    );
    assert_eq!(head.status, 201);

    let out = run_python_script(SCRIPT, proxy, &server);
    let line = |key: &str| out.line(key);
    // A container made through Swift has no S3 ACL, so no S3 owner: the
    // account's owners list and read it, a user without rights does not.
    assert_eq!(line("buckets"), "buckets ['photos', 'swiftside']");
    assert_eq!(line("noowner"), "noowner AccessDenied");
    assert_eq!(line("again"), "again BucketAlreadyOwnedByYou");
    assert_eq!(line("badname"), "badname InvalidBucketName");
    assert_eq!(line("get"), "get True {'camera': 'x100'} 76800");
    assert_eq!(line("range"), "range True bytes 10-19/76800");
    assert_eq!(line("v2"), "v2 ['2024/cat one.jpg', 'n0', 'n1'] True 3");
    assert_eq!(line("v2next"), "v2next ['n2', 'n3', 'n4'] False");
    assert_eq!(line("v1"), "v1 ['2024/'] 5");
    assert_eq!(line("nokey"), "nokey NoSuchKey");
    assert_eq!(line("nobucket"), "nobucket NoSuchBucket");
    assert_eq!(line("notempty"), "notempty BucketNotEmpty");
    assert_eq!(line("presigned"), "presigned b'1'");
    assert_eq!(line("badsecret"), "badsecret SignatureDoesNotMatch");
    assert_eq!(line("badkey"), "badkey InvalidAccessKeyId");
    assert_eq!(
        line("swiftobj"),
        "swiftobj b'written by swift' {'origin': 'swift'}"
    );
    assert_eq!(line("done"), "done");

    // What S3 stored, the Swift API reads: the same bytes and metadata.
    let (head, body) = exchange(
        proxy,
        "GET",
        &format!("{account}/photos/2024/cat%20one.jpg"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 200);
    let expected: Vec<u8> = (0..300).flat_map(|_| 0..=255u8).collect();
    assert!(body == expected, "S3's object differs through Swift");
    assert_eq!(head.header("x-object-meta-camera"), Some("x100"));
    assert!(server.terminate().success(), "{}", server.stderr());
}
