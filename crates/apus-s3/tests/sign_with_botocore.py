# Signs the requests described on stdin (a JSON list) with botocore, at a
# fixed time, and writes what it sent (method, path and query, headers) and
# what it signed (canonical request or string to sign) to stdout as JSON.
#
# A case: {"sig": "v4" | "v4-query" | "v2" | "v2-query", "method": ...,
#          "path": already-encoded path, "query": raw query or "",
#          "params": {name: value} added by botocore, "headers": {...},
#          "body": text, "unsigned_payload": bool, "expires": seconds,
#          "auth_path": SigV2 resource when the bucket is in the host}
import datetime
import email.utils
import json
import sys
import time
import types
import urllib.parse

import botocore.auth
from botocore.auth import (HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth,
                           S3SigV4QueryAuth)
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

NOW = int(sys.argv[1])
REGION = sys.argv[2]
ACCESS, SECRET = sys.argv[3], sys.argv[4]

botocore.auth.get_current_datetime = lambda: datetime.datetime.fromtimestamp(
    NOW, datetime.timezone.utc).replace(tzinfo=None)
botocore.auth.formatdate = lambda *a, **kw: email.utils.formatdate(
    NOW, usegmt=True)
time.time = lambda: NOW


def recording(cls, hook):
    class Recording(cls):
        def _record(self, value):
            self.recorded = value
            return value
    if hook == 'v4':
        def string_to_sign(self, request, canonical_request):
            self.recorded = canonical_request
            return cls.string_to_sign(self, request, canonical_request)
        Recording.string_to_sign = string_to_sign
    else:
        def canonical_string(self, *args, **kwargs):
            return self._record(cls.canonical_string(self, *args, **kwargs))
        Recording.canonical_string = canonical_string
    return Recording


def sign(case):
    creds = Credentials(ACCESS, SECRET)
    url = 'http://%s%s' % (case.get('host', 'localhost:8080'), case['path'])
    query = case.get('query', '')
    params = case.get('params') or {}
    if params and case['sig'].startswith('v2'):
        # botocore's SigV2 signs only what is in the URL when it signs.
        extra = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        query = '&'.join(q for q in (query, extra) if q)
        params = {}
    if query:
        url += '?' + query
    req = AWSRequest(method=case['method'], url=url,
                     headers=dict(case.get('headers', {})),
                     # A presigned URL signs no body.
                     data=(b'' if case['sig'].endswith('query')
                           else case.get('body', '').encode('utf-8')),
                     params=params)
    if case.get('unsigned_payload'):
        req.context['client_config'] = types.SimpleNamespace(
            s3={'payload_signing_enabled': False})
    if case.get('auth_path'):
        req.auth_path = case['auth_path']
    sig = case['sig']
    if sig == 'v4':
        signer = recording(S3SigV4Auth, 'v4')(creds, 's3', REGION)
    elif sig == 'v4-query':
        signer = recording(S3SigV4QueryAuth, 'v4')(
            creds, 's3', REGION, expires=case.get('expires', 3600))
    elif sig == 'v2':
        signer = recording(HmacV1Auth, 'v2')(creds)
    else:
        signer = recording(HmacV1QueryAuth, 'v2')(
            creds, expires=case.get('expires', 3600))
    signer.add_auth(req)
    prepared = req.prepare()
    rest = prepared.url.split('://', 1)[1]
    host, _, target = rest.partition('/')
    headers = [[k, v] for k, v in prepared.headers.items()]
    if not any(k.lower() == 'host' for k, _ in headers):
        headers.append(['host', host])
    recorded = signer.recorded
    if isinstance(recorded, bytes):
        recorded = recorded.decode('utf-8')
    return {'method': prepared.method, 'target': '/' + target,
            'headers': headers, 'signed': recorded}


cases = json.load(sys.stdin)
json.dump([sign(c) for c in cases], sys.stdout)
