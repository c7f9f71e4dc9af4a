//! Bad S3 input against `apus serve`, sent raw so nothing smooths it:
//! aws-chunked bodies with a wrong chunk signature (first or later
//! chunk), chunks that stop short of the declared length, and a body cut
//! off mid-chunk by a client that stops sending — each answered with S3's
//! error, never a hang, and nothing stored; and multi-object delete
//! documents with an external entity, entity expansion or past the size
//! limit, refused as MalformedXML with nothing deleted. The client side
//! signs with botocore from the reference venv (`scripts/swift-ref.sh`;
//! `APUS_SWIFT_PYTHON` names its interpreter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{run_python_script, Server};

/// Every case prints `name (status, code) stored`; a socket that stays
/// silent for 20 s prints `timeout`.
const SCRIPT: &str = r#"
import sys, socket, hashlib, hmac, base64
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
import boto3, botocore
from botocore.config import Config

ep = sys.argv[1]
host = ep.split('//', 1)[1]
creds = Credentials('test:tester', 'testing')
s3 = boto3.client('s3', endpoint_url=ep, aws_access_key_id='test:tester',
                  aws_secret_access_key='testing', region_name='us-east-1',
                  config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))

def sign(method, path, headers):
    req = AWSRequest(method=method, url=ep + path, headers=headers)
    SigV4Auth(creds, 's3', 'us-east-1').add_auth(req)
    return req

def raw(method, path, headers, body, shut=False):
    h = {'Host': host}
    h.update(headers)
    s = socket.create_connection(tuple(host.rsplit(':', 1)[:1]) + (int(host.rsplit(':', 1)[1]),), timeout=20)
    head = '%s %s HTTP/1.1\r\n' % (method, path) + ''.join('%s: %s\r\n' % kv for kv in h.items()) + '\r\n'
    s.sendall(head.encode() + body)
    if shut:
        s.shutdown(socket.SHUT_WR)
    data = b''
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b'\r\n\r\n' in data:
                hdr, _, rest = data.partition(b'\r\n\r\n')
                cl = [l for l in hdr.split(b'\r\n') if l.lower().startswith(b'content-length:')]
                if cl and len(rest) >= int(cl[0].split(b':')[1]):
                    break
    except socket.timeout:
        return 'timeout', b''
    s.close()
    status = data.split(b' ', 2)[1].decode() if data else 'closed'
    code = data.split(b'<Code>')[1].split(b'</Code>')[0].decode() if b'<Code>' in data else ''
    return status, code

def exists(key):
    try:
        s3.head_object(Bucket='bad', Key=key)
        return True
    except botocore.exceptions.ClientError:
        return False

s3.create_bucket(Bucket='bad')

def streaming(path, chunks, decoded, bad_sig_at=None, declared_cl=None):
    req = sign('PUT', path, {'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
                             'x-amz-decoded-content-length': str(decoded),
                             'content-encoding': 'aws-chunked'})
    auth = req.headers['Authorization']
    seed = auth.split('Signature=')[1]
    amz_date = req.headers['X-Amz-Date']
    scope = '%s/us-east-1/s3/aws4_request' % amz_date[:8]
    k = ('AWS4testing').encode()
    for part in (amz_date[:8], 'us-east-1', 's3', 'aws4_request'):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    prev = seed
    body = b''
    for i, c in enumerate(chunks + [b'']):
        sts = '\n'.join(['AWS4-HMAC-SHA256-PAYLOAD', amz_date, scope, prev,
                         hashlib.sha256(b'').hexdigest(), hashlib.sha256(c).hexdigest()])
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if bad_sig_at == i:
            sig = '0' * 64
        prev = sig
        body += b'%x;chunk-signature=%s\r\n' % (len(c), sig.encode()) + c + b'\r\n'
    headers = dict(req.headers.items())
    headers['Content-Length'] = str(declared_cl if declared_cl is not None else len(body))
    return headers, body

good = [b'a' * 8192, b'b' * 100]
h, b = streaming('/bad/good', good, 8292)
print('good', raw('PUT', '/bad/good', h, b), exists('good'))
h, b = streaming('/bad/badsig', good, 8292, bad_sig_at=1)
print('badsig', raw('PUT', '/bad/badsig', h, b), exists('badsig'))
h, b = streaming('/bad/badfirst', good, 8292, bad_sig_at=0)
print('badfirst', raw('PUT', '/bad/badfirst', h, b), exists('badfirst'))
# The chunks stop before the declared payload; the body itself is whole.
h, b = streaming('/bad/short', [b'a' * 8192], 8292)
print('short', raw('PUT', '/bad/short', h, b), exists('short'))
# The body is cut in the middle of a chunk and the client stops sending.
h, b = streaming('/bad/cut', good, 8292)
print('cut', raw('PUT', '/bad/cut', h, b[:5000], shut=True), exists('cut'))

def multi_delete(doc):
    md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
    req = sign('POST', '/bad?delete', {'Content-MD5': md5, 'Content-Type': 'application/xml',
                                       'x-amz-content-sha256': hashlib.sha256(doc).hexdigest()})
    headers = dict(req.headers.items())
    headers['Content-Length'] = str(len(doc))
    return raw('POST', '/bad?delete', headers, doc)

s3.put_object(Bucket='bad', Key='keep', Body=b'kept')
xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>'
print('xxe', multi_delete(xxe), exists('keep'))
laughs = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "keep"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&a;</Key></Object></Delete>'
print('laughs', multi_delete(laughs), exists('keep'))
big = b'<Delete>' + b'<Object><Key>k</Key></Object>' * 80000 + b'</Delete>'
print('oversized', multi_delete(big), exists('keep'))
ok = b'<Delete><Object><Key>keep</Key></Object></Delete>'
print('plain', multi_delete(ok), exists('keep'))
"#;

#[test]
fn refused_bodies_and_documents_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let out = run_python_script(SCRIPT, proxy, &server);
    let expected = [
        "good ('200', '') True",
        "badsig ('403', 'SignatureDoesNotMatch') False",
        "badfirst ('403', 'SignatureDoesNotMatch') False",
        "short ('400', 'IncompleteBody') False",
        "cut ('400', 'RequestTimeout') False",
        "xxe ('400', 'MalformedXML') True",
        "laughs ('400', 'MalformedXML') True",
        "oversized ('400', 'MalformedXML') True",
        "plain ('200', '') False",
    ];
    let lines: Vec<&str> = out.0.lines().collect();
    assert_eq!(lines, expected, "{}", out.0);
    assert!(server.terminate().success(), "{}", server.stderr());
}
