//! boto3 against `apus serve` on S3 versioning (on Swift's object
//! versioning) and DeleteObjects: versions listed, read back by id and
//! deleted, delete markers, suspended versioning, a multi-object delete
//! with a missing key in verbose and quiet mode, and the sub-resources
//! answered without state (object lock, tagging, logging). boto3 comes
//! from the reference venv (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON`
//! names its interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{run_python_script, Server};

/// The client side: every step prints one line the test checks. Version
/// ids are timestamps, so the lines say which one was seen.
const SCRIPT: &str = r#"
import sys, boto3, botocore
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
def versions(prefix=''):
    r = s3.list_object_versions(Bucket='ver', Prefix=prefix)
    return ([(v['Key'], v['VersionId'], v['IsLatest'], v.get('Size')) for v in r.get('Versions', [])],
            [(m['Key'], m['VersionId'], m['IsLatest']) for m in r.get('DeleteMarkers', [])])
s3.create_bucket(Bucket='ver')
print('status0', s3.get_bucket_versioning(Bucket='ver').get('Status'))
s3.put_object(Bucket='ver', Key='k', Body=b'zero')
s3.put_bucket_versioning(Bucket='ver', VersioningConfiguration={'Status': 'Enabled'})
print('status1', s3.get_bucket_versioning(Bucket='ver').get('Status'))
v1 = s3.put_object(Bucket='ver', Key='k', Body=b'one')['VersionId']
v2 = s3.put_object(Bucket='ver', Key='k', Body=b'two')['VersionId']
vs, ms = versions()
print('list1', [(k, i == v2, i == v1, l, s) for k, i, l, s in vs], ms)
print('getold', s3.get_object(Bucket='ver', Key='k', VersionId=v1)['Body'].read())
print('nonull', code(lambda: s3.get_object(Bucket='ver', Key='k', VersionId='null')))
print('head', s3.head_object(Bucket='ver', Key='k')['VersionId'] == v2)
d = s3.delete_object(Bucket='ver', Key='k')
marker = d['VersionId']
print('delete', d['DeleteMarker'], marker not in (v1, v2, 'null'))
print('gone', code(lambda: s3.get_object(Bucket='ver', Key='k')))
vs, ms = versions()
print('list2', [(l, s) for k, i, l, s in vs], [(k, i == marker, l) for k, i, l in ms])
d = s3.delete_object(Bucket='ver', Key='k', VersionId=marker)
print('unmark', d['VersionId'] == marker)
print('back', s3.get_object(Bucket='ver', Key='k')['Body'].read())
d = s3.delete_object(Bucket='ver', Key='k', VersionId=v2)
print('popped', s3.get_object(Bucket='ver', Key='k')['Body'].read())
p = s3.list_object_versions(Bucket='ver', MaxKeys=1)
print('page', p['IsTruncated'], p['NextKeyMarker'], p['NextVersionIdMarker'] == v1, len(p['Versions']))
p = s3.list_object_versions(Bucket='ver', MaxKeys=1, KeyMarker=p['NextKeyMarker'], VersionIdMarker=p['NextVersionIdMarker'])
print('page2', p['IsTruncated'], [v['VersionId'] not in (v1, v2, 'null') for v in p['Versions']])
s3.put_bucket_versioning(Bucket='ver', VersioningConfiguration={'Status': 'Suspended'})
print('status2', s3.get_bucket_versioning(Bucket='ver').get('Status'))
s3.put_object(Bucket='ver', Key='k', Body=b'three')
vs, ms = versions()
print('list3', [(i if i == 'null' else i == v1, l, s) for k, i, l, s in vs])
print('getnull', s3.get_object(Bucket='ver', Key='k', VersionId='null')['Body'].read())
print('bogus', code(lambda: s3.put_bucket_versioning(Bucket='ver', VersioningConfiguration={'Status': 'Disabled'})))
s3.create_bucket(Bucket='plain')
print('nosuchversion', code(lambda: s3.get_object(Bucket='plain', Key='x', VersionId='1700000000.00000')))
for k in ('a', 'b', 'c'):
    s3.put_object(Bucket='plain', Key=k, Body=k.encode())
r = s3.delete_objects(Bucket='plain', Delete={'Objects': [{'Key': 'a'}, {'Key': 'missing'}, {'Key': 'b'}]})
print('multi', sorted(d['Key'] for d in r.get('Deleted', [])), r.get('Errors', []))
r = s3.delete_objects(Bucket='plain', Delete={'Objects': [{'Key': 'c'}, {'Key': 'missing'}, {'Key': 'a'}], 'Quiet': True})
print('quiet', r.get('Deleted', []), r.get('Errors', []))
print('left', [o['Key'] for o in s3.list_objects(Bucket='plain').get('Contents', [])])
print('lock', code(lambda: s3.get_object_lock_configuration(Bucket='plain')))
print('tags', s3.get_bucket_tagging(Bucket='plain')['TagSet'])
print('logging', 'LoggingEnabled' in s3.get_bucket_logging(Bucket='plain'))
print('putlogging', code(lambda: s3.put_bucket_logging(Bucket='plain', BucketLoggingStatus={})))
print('done')
"#;

#[test]
fn boto3_versions_delete_markers_and_multi_object_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let out = run_python_script(SCRIPT, proxy, &server);
    let line = |key: &str| out.line(key);
    let expect = [
        // Never configured: no status; then enabled.
        "status0 None",
        "status1 Enabled",
        // The object written before versioning became a version of its
        // own; the two PUTs are the newest two, the last one current.
        "list1 [('k', True, False, True, 3), ('k', False, True, False, 3), \
         ('k', False, False, False, 4)] []",
        "getold b'one'",
        "nonull NoSuchKey",
        "head True",
        // A plain DELETE writes a delete marker, which becomes latest.
        "delete True True",
        "gone NoSuchKey",
        "list2 [(False, 3), (False, 3), (False, 4)] [('k', True, True)]",
        // Deleting the marker brings the object back; deleting the
        // current version makes the one before it current.
        "unmark True",
        "back b'two'",
        "popped b'one'",
        "page True k True 1",
        "page2 False [True]",
        "status2 Suspended",
        // Written while suspended: the null version, current.
        "list3 [('null', True, 5), (True, False, 3), (False, False, 4)]",
        "getnull b'three'",
        "bogus MalformedXML",
        "nosuchversion NoSuchVersion",
        // A missing key counts as deleted.
        "multi ['a', 'b', 'missing'] []",
        "quiet [] []",
        "left []",
        "lock ObjectLockConfigurationNotFoundError",
        "tags []",
        "logging False",
        "putlogging NotImplemented",
        "done",
    ];
    for e in expect {
        let key = e.split(' ').next().unwrap();
        assert_eq!(line(key), e);
    }
    assert!(server.terminate().success(), "{}", server.stderr());
}
