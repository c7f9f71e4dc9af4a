//! S3 ACLs through boto3 against `apus serve` (s3api with `s3_acl` and
//! `check_bucket_owner`): a user without account rights (test:tester3)
//! gets exactly what the bucket's and object's ACLs grant, canned and
//! explicit grants open buckets and objects to other users, and the ACLs
//! read back with their owner and grants. boto3 comes from the reference
//! venv (`APUS_SWIFT_PYTHON` names its interpreter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{run_python_script, Server};

/// Every step prints one line `name result` the test checks.
const SCRIPT: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
ep = sys.argv[1]
cfg = Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1})
def client(user, key):
    return boto3.client('s3', endpoint_url=ep, aws_access_key_id=user,
                        aws_secret_access_key=key, region_name='us-east-1', config=cfg)
owner = client('test:tester', 'testing')
other = client('test:tester2', 'testing2')
plain = client('test:tester3', 'testing3')
far = client('test2:tester2', 'testing2')
def code(f):
    try:
        f()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
def grants(acl):
    return sorted((g['Grantee'].get('ID') or g['Grantee'].get('URI').rsplit('/', 1)[1],
                   g['Permission']) for g in acl['Grants'])

owner.create_bucket(Bucket='private')
owner.put_object(Bucket='private', Key='o', Body=b'secret')
print('p-list', code(lambda: plain.list_objects(Bucket='private')))
print('p-head', code(lambda: plain.head_bucket(Bucket='private')))
print('p-get', code(lambda: plain.get_object(Bucket='private', Key='o')))
print('p-put', code(lambda: plain.put_object(Bucket='private', Key='n', Body=b'x')))
print('p-del', code(lambda: plain.delete_object(Bucket='private', Key='o')))
print('p-getacl', code(lambda: plain.get_bucket_acl(Bucket='private')))
print('p-putacl', code(lambda: plain.put_bucket_acl(Bucket='private', ACL='public-read')))
print('p-create', code(lambda: plain.create_bucket(Bucket='mine')))
print('p-delbucket', code(lambda: other.delete_bucket(Bucket='private')))
acl = owner.get_bucket_acl(Bucket='private')
print('acl', acl['Owner']['ID'], acl['Owner']['DisplayName'], grants(acl))
oacl = owner.get_object_acl(Bucket='private', Key='o')
print('oacl', oacl['Owner']['ID'], grants(oacl))

# Grants to tester3: READ on the bucket lists it, the object stays
# private until its own ACL grants READ too.
owner.put_bucket_acl(Bucket='private', GrantRead='id=test:tester3',
                     GrantFullControl='id=test:tester')
print('g-list', [o['Key'] for o in plain.list_objects(Bucket='private')['Contents']])
print('g-get', code(lambda: plain.get_object(Bucket='private', Key='o')))
print('g-put', code(lambda: plain.put_object(Bucket='private', Key='n', Body=b'x')))
owner.put_object_acl(Bucket='private', Key='o', GrantRead='id=test:tester3')
print('g-oget', plain.get_object(Bucket='private', Key='o')['Body'].read())
print('g-oacl', grants(owner.get_object_acl(Bucket='private', Key='o')))
print('g-oputacl', code(lambda: plain.put_object_acl(Bucket='private', Key='o', ACL='private')))
# WRITE on the bucket: tester3 writes and owns what it writes.
owner.put_bucket_acl(Bucket='private', GrantWrite='id=test:tester3',
                     GrantFullControl='id=test:tester')
plain.put_object(Bucket='private', Key='by3', Body=b'three')
print('w-owner', plain.get_object_acl(Bucket='private', Key='by3')['Owner']['ID'])
print('w-ownerget', code(lambda: owner.get_object(Bucket='private', Key='by3')))
print('w-del', code(lambda: plain.delete_object(Bucket='private', Key='o')))
print('w-list', code(lambda: plain.list_objects(Bucket='private')))
# The owner cannot be changed by a new ACL.
bad = {'Owner': {'ID': 'test:tester3'}, 'Grants': []}
print('chown', code(lambda: owner.put_bucket_acl(Bucket='private', AccessControlPolicy=bad)))

# Canned public-read on a new bucket and object opens reading to others.
owner.create_bucket(Bucket='public', ACL='public-read')
owner.put_object(Bucket='public', Key='o', Body=b'hello', ACL='public-read')
print('pub-acl', grants(owner.get_bucket_acl(Bucket='public')))
print('pub-list', [o['Key'] for o in other.list_objects(Bucket='public')['Contents']])
print('pub-get', other.get_object(Bucket='public', Key='o')['Body'].read())
print('pub-get3', plain.get_object(Bucket='public', Key='o')['Body'].read())
print('pub-put', code(lambda: other.put_object(Bucket='public', Key='x', Body=b'x')))
# Each account has its own buckets: another account's user names its own.
print('far-get', code(lambda: far.get_object(Bucket='public', Key='o')))
# check_bucket_owner: each user lists only its own buckets.
other.create_bucket(Bucket='others')
print('list1', [b['Name'] for b in owner.list_buckets()['Buckets']])
print('list2', [b['Name'] for b in other.list_buckets()['Buckets']])
print('list3', [b['Name'] for b in plain.list_buckets()['Buckets']])
print('exists', code(lambda: other.create_bucket(Bucket='public')))
print('mine', code(lambda: owner.create_bucket(Bucket='public')))
# Bad ACL requests are refused as s3api refuses them.
print('bad-canned', code(lambda: owner.put_bucket_acl(Bucket='public', ACL='nope')))
print('bad-both', code(lambda: owner.put_bucket_acl(Bucket='public', ACL='private', GrantRead='id=x')))
print('bad-email', code(lambda: owner.put_bucket_acl(Bucket='public', GrantRead='emailAddress=a@b.c')))
print('bad-uri', code(lambda: owner.put_bucket_acl(Bucket='public', GrantRead='uri=http://example.com/g')))
print('done')
"#;

#[test]
fn s3_acls_grant_exactly_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let out = run_python_script(SCRIPT, proxy, &server);
    let line = |key: &str| out.after(key);
    // A private bucket and object: nothing for tester3, nor for tester2
    // (an account admin, but not the bucket's owner).
    for step in [
        "p-list", "p-get", "p-put", "p-del", "p-getacl", "p-putacl", "p-create",
    ] {
        assert_eq!(line(step), "AccessDenied", "{step}");
    }
    assert_eq!(line("p-head"), "403");
    assert_eq!(line("p-delbucket"), "AccessDenied");
    assert_eq!(
        line("acl"),
        "test:tester test:tester [('test:tester', 'FULL_CONTROL')]"
    );
    assert_eq!(
        line("oacl"),
        "test:tester [('test:tester', 'FULL_CONTROL')]"
    );
    // Grants open what they name, and nothing more.
    assert_eq!(line("g-list"), "['o']");
    assert_eq!(line("g-get"), "AccessDenied");
    assert_eq!(line("g-put"), "AccessDenied");
    assert_eq!(line("g-oget"), "b'secret'");
    assert_eq!(line("g-oacl"), "[('test:tester3', 'READ')]");
    assert_eq!(line("g-oputacl"), "AccessDenied");
    assert_eq!(line("w-owner"), "test:tester3");
    // The bucket owner has no right on an object another user owns
    // privately.
    assert_eq!(line("w-ownerget"), "AccessDenied");
    assert_eq!(line("w-del"), "ok");
    assert_eq!(line("w-list"), "AccessDenied");
    assert_eq!(line("chown"), "AccessDenied");
    // Canned public-read.
    assert_eq!(
        line("pub-acl"),
        "[('AllUsers', 'READ'), ('test:tester', 'FULL_CONTROL')]"
    );
    assert_eq!(line("pub-list"), "['o']");
    assert_eq!(line("pub-get"), "b'hello'");
    assert_eq!(line("pub-get3"), "b'hello'");
    assert_eq!(line("pub-put"), "AccessDenied");
    assert_eq!(line("far-get"), "NoSuchBucket");
    assert_eq!(line("list1"), "['private', 'public']");
    assert_eq!(line("list2"), "['others']");
    assert_eq!(line("list3"), "[]");
    assert_eq!(line("exists"), "BucketAlreadyExists");
    assert_eq!(line("mine"), "BucketAlreadyOwnedByYou");
    assert_eq!(line("bad-canned"), "InvalidArgument");
    assert_eq!(line("bad-both"), "InvalidRequest");
    assert_eq!(line("bad-email"), "NotImplemented");
    assert_eq!(line("bad-uri"), "InvalidArgument");
    assert_eq!(line("done"), "");
    assert!(server.terminate().success(), "{}", server.stderr());
}
