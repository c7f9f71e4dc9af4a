//! boto3 against `apus serve` through S3: a multipart upload in 5 MiB
//! parts read back whole, by part and through the Swift API; the upload
//! bookkeeping (list uploads and parts, abort, the errors of a bad
//! completion); CopyObject within and across buckets; and a deleted
//! multipart object taking its segments with it. boto3 comes from the
//! reference venv (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its
//! interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{exchange, login, run_python_script, swift_python as python, Server};

/// The 12 MiB the upload sends, the same in the script and the test.
fn big_body() -> Vec<u8> {
    (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The client side: every step prints one line the test checks.
const SCRIPT: &str = r#"
import io, sys, hashlib, boto3, botocore
def meta(h):
    return {k.lower(): v for k, v in h['Metadata'].items()}
from boto3.s3.transfer import TransferConfig
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
MiB = 1024 * 1024
body = bytes(((i * 2654435761) % 2**32 >> 13) & 0xff for i in range(12 * MiB))
chunks = [body[i:i + 5 * MiB] for i in range(0, len(body), 5 * MiB)]
want = hashlib.md5(b''.join(hashlib.md5(c).digest() for c in chunks)).hexdigest()
want = '"%s-%d"' % (want, len(chunks))
s3.create_bucket(Bucket='mpu')
s3.create_bucket(Bucket='other')

# A 12 MiB upload in 5 MiB parts.
tc = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, use_threads=False)
s3.upload_fileobj(io.BytesIO(body), 'mpu', 'big', Config=tc,
                  ExtraArgs={'Metadata': {'color': 'blue'}, 'ContentType': 'app/x-big'})
h = s3.head_object(Bucket='mpu', Key='big')
print('head', h['ETag'] == want, h['ContentLength'], h['ContentType'], meta(h))
r = s3.get_object(Bucket='mpu', Key='big')
print('get', r['Body'].read() == body, r['ETag'] == want)
p = s3.get_object(Bucket='mpu', Key='big', PartNumber=2)
print('part2', p['Body'].read() == chunks[1], p['PartsCount'], p['ContentRange'])
print('part4', code(lambda: s3.get_object(Bucket='mpu', Key='big', PartNumber=4)))
print('listing', [(o['Key'], o['ETag'] == want, o['Size']) for o in s3.list_objects_v2(Bucket='mpu')['Contents']])

# The bookkeeping of an upload in progress.
u = s3.create_multipart_upload(Bucket='mpu', Key='pending')['UploadId']
e1 = s3.upload_part(Bucket='mpu', Key='pending', UploadId=u, PartNumber=1, Body=b'x' * 100)['ETag']
e2 = s3.upload_part(Bucket='mpu', Key='pending', UploadId=u, PartNumber=2, Body=b'y' * 100)['ETag']
print('uploads', [(x['Key'], x['UploadId'] == u) for x in s3.list_multipart_uploads(Bucket='mpu').get('Uploads', [])])
print('parts', [(x['PartNumber'], x['Size'], x['ETag'] in (e1, e2)) for x in s3.list_parts(Bucket='mpu', Key='pending', UploadId=u)['Parts']])
print('badpart', code(lambda: s3.upload_part(Bucket='mpu', Key='pending', UploadId=u, PartNumber=1001, Body=b'z')))
wrong = '"%s"' % ('0' * 32)
print('wrongetag', code(lambda: s3.complete_multipart_upload(
    Bucket='mpu', Key='pending', UploadId=u,
    MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': wrong}]})))
print('toosmall', code(lambda: s3.complete_multipart_upload(
    Bucket='mpu', Key='pending', UploadId=u,
    MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': e1}, {'PartNumber': 2, 'ETag': e2}]})))
print('misordered', code(lambda: s3.complete_multipart_upload(
    Bucket='mpu', Key='pending', UploadId=u,
    MultipartUpload={'Parts': [{'PartNumber': 2, 'ETag': e2}, {'PartNumber': 1, 'ETag': e1}]})))
print('abort', s3.abort_multipart_upload(Bucket='mpu', Key='pending', UploadId=u)['ResponseMetadata']['HTTPStatusCode'])
print('afterabort', s3.list_multipart_uploads(Bucket='mpu').get('Uploads', []),
      code(lambda: s3.list_parts(Bucket='mpu', Key='pending', UploadId=u)))
print('nosuchupload', code(lambda: s3.abort_multipart_upload(Bucket='mpu', Key='pending', UploadId='nope')))

# A one-part upload completed twice answers the same both times.
u = s3.create_multipart_upload(Bucket='mpu', Key='one')['UploadId']
e = s3.upload_part(Bucket='mpu', Key='one', UploadId=u, PartNumber=1, Body=b'one part')['ETag']
parts = {'Parts': [{'PartNumber': 1, 'ETag': e}]}
c1 = s3.complete_multipart_upload(Bucket='mpu', Key='one', UploadId=u, MultipartUpload=parts)['ETag']
c2 = s3.complete_multipart_upload(Bucket='mpu', Key='one', UploadId=u, MultipartUpload=parts)['ETag']
print('twice', c1 == c2, c1.endswith('-1"'), s3.get_object(Bucket='mpu', Key='one')['Body'].read())

# CopyObject.
s3.put_object(Bucket='mpu', Key='small', Body=b'small body', Metadata={'k': 'src'}, ContentType='text/x-src')
r = s3.copy_object(Bucket='mpu', Key='big-copy', CopySource={'Bucket': 'mpu', 'Key': 'big'},
                   MetadataDirective='REPLACE', Metadata={'k': 'dst'}, ContentType='text/x-dst')
print('copyresult', bool(r['CopyObjectResult']['ETag']), bool(r['CopyObjectResult']['LastModified']))
h = s3.head_object(Bucket='mpu', Key='big-copy')
print('copyhead', h['ContentLength'], h['ContentType'], meta(h))
print('copyget', s3.get_object(Bucket='mpu', Key='big-copy')['Body'].read() == body)
s3.copy_object(Bucket='other', Key='small-copy', CopySource={'Bucket': 'mpu', 'Key': 'small'})
h = s3.get_object(Bucket='other', Key='small-copy')
print('crosscopy', h['Body'].read(), h['ContentType'], meta(h))
s3.copy_object(Bucket='other', Key='small-replaced', CopySource='mpu/small',
               MetadataDirective='REPLACE', Metadata={'n': '1'})
h = s3.head_object(Bucket='other', Key='small-replaced')
print('crossreplace', h['ContentLength'], meta(h))
print('self', code(lambda: s3.copy_object(Bucket='mpu', Key='small', CopySource='mpu/small')))
print('selfreplace', code(lambda: s3.copy_object(Bucket='mpu', Key='small', CopySource='mpu/small',
                                                 MetadataDirective='REPLACE', Metadata={'k': 'new'})))
print('nosrckey', code(lambda: s3.copy_object(Bucket='mpu', Key='x', CopySource='mpu/missing')))
print('nosrcbucket', code(lambda: s3.copy_object(Bucket='mpu', Key='x', CopySource='missing/small')))
print('ifmatch', code(lambda: s3.copy_object(Bucket='mpu', Key='x', CopySource='mpu/small',
                                             CopySourceIfMatch='"%s"' % ('0' * 32))))
print('done')
"#;

#[test]
fn boto3_multipart_uploads_and_copies() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let (token, account) = login(proxy, "test:tester", "testing");

    let out = run_python_script(SCRIPT, proxy, &server);
    let line = |key: &str| out.line(key);
    assert_eq!(
        line("head"),
        "head True 12582912 app/x-big {'color': 'blue'}"
    );
    assert_eq!(line("get"), "get True True");
    assert_eq!(
        line("part2"),
        "part2 True 3 bytes 5242880-10485759/12582912"
    );
    assert_eq!(line("part4"), "part4 InvalidPartNumber");
    assert_eq!(line("listing"), "listing [('big', True, 12582912)]");
    assert_eq!(line("uploads"), "uploads [('pending', True)]");
    assert_eq!(line("parts"), "parts [(1, 100, True), (2, 100, True)]");
    assert_eq!(line("badpart"), "badpart InvalidArgument");
    assert_eq!(line("wrongetag"), "wrongetag InvalidPart");
    assert_eq!(line("toosmall"), "toosmall EntityTooSmall");
    assert_eq!(line("misordered"), "misordered InvalidPartOrder");
    assert_eq!(line("abort"), "abort 204");
    assert_eq!(line("afterabort"), "afterabort [] NoSuchUpload");
    assert_eq!(line("nosuchupload"), "nosuchupload NoSuchUpload");
    assert_eq!(line("twice"), "twice True True b'one part'");
    assert_eq!(line("copyresult"), "copyresult True True");
    assert_eq!(
        line("copyhead"),
        "copyhead 12582912 text/x-dst {'k': 'dst'}"
    );
    assert_eq!(line("copyget"), "copyget True");
    assert_eq!(
        line("crosscopy"),
        "crosscopy b'small body' text/x-src {'k': 'src'}"
    );
    assert_eq!(line("crossreplace"), "crossreplace 10 {'n': '1'}");
    assert_eq!(line("self"), "self InvalidRequest");
    assert_eq!(line("selfreplace"), "selfreplace ok");
    assert_eq!(line("nosrckey"), "nosrckey NoSuchKey");
    assert_eq!(line("nosrcbucket"), "nosrcbucket NoSuchBucket");
    assert_eq!(line("ifmatch"), "ifmatch PreconditionFailed");
    assert_eq!(line("done"), "done");

    // Stored as Swift's s3api stores it: an SLO over the parts in
    // `mpu+segments`, which the Swift API reads whole.
    let (head, body) = exchange(
        proxy,
        "GET",
        &format!("{account}/mpu/big"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-static-large-object"), Some("True"));
    assert!(
        body == big_body(),
        "the multipart object differs through Swift"
    );
    let (head, listing) = exchange(
        proxy,
        "GET",
        &format!("{account}/mpu%2Bsegments?format=json"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 200);
    let listing: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .filter(|n| n.starts_with("big/"))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names
        .iter()
        .all(|n| n.ends_with("/1") || n.ends_with("/2") || n.ends_with("/3")));

    // Deleting the object through S3 deletes the manifest at once and
    // leaves its segments to the expirer (`async`), as Swift's s3api does.
    let del = Command::new(python())
        .arg("-c")
        .arg(
            "import sys, boto3\nfrom botocore.config import Config\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test:tester',\n\
             aws_secret_access_key='testing', region_name='us-east-1',\n\
             config=Config(s3={'addressing_style': 'path'}))\n\
             print(s3.delete_object(Bucket='mpu', Key='big')['ResponseMetadata']['HTTPStatusCode'])",
        )
        .arg(format!("http://{proxy}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&del.stdout).trim(), "204");
    let (head, _) = exchange(
        proxy,
        "GET",
        &format!("{account}/mpu/big"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 404);
    assert!(server.terminate().success(), "{}", server.stderr());
}
