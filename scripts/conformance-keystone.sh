#!/usr/bin/env bash
# Runs Swift's own functional tests (the `swift` suite of
# ../shared/conformance) against a fresh `apus serve` that authenticates
# with a real Keystone v3 (`[proxy.keystone]`) instead of tempauth, and
# prints their count, `conformance: N passed, N failed, N skipped`.
#
# Steps: install Keystone (scripts/keystone.sh), bootstrap it on SQLite and
# serve it with gunicorn on a free loopback port, create the projects,
# users and roles Swift's functional tests expect of a Keystone cluster,
# start `apus serve` with `[proxy.keystone]` pointing at it, put apus in
# Keystone's catalog, write a v3 test.conf and run run-functests.sh -c.
# Both servers are stopped and the scratch directory removed on exit.
#
#   APUS_BIN                the apus binary (default: target/release/apus,
#                           built first)
#   APUS_SHARED             the directory holding conformance/ (default: ../shared,
#                           beside this repository)
#   FUNCTEST_SUITE_TIMEOUT  seconds for the whole suite (default 1800)
#   FUNCTEST_TEST_TIMEOUT   seconds per test (default 60)
#   CONFORMANCE_OUT         where the results go (default: a new temp dir,
#                           printed); the apus and Keystone logs are copied
#                           to its servers/ subdirectory
#   CONFORMANCE_SUITE       which suite of run-functests.sh (default swift;
#                           the S3 suites would also need EC2 credentials
#                           in test.conf, which this script does not make)
#   PYTEST_ARGS             extra pytest arguments, whitespace-separated
#                           (e.g. "-k TestAccount")
#
# Exit status: 0 when the suite ran (whatever it found), 1 when apus or
# Keystone could not start or died during the run, or the runner stopped
# before counting, 2 when the suite could not be set up.
set -euo pipefail
cd "$(dirname "$0")/.."

shared="${APUS_SHARED:-../shared}"
if [ ! -x "$shared/conformance/run-functests.sh" ]; then
  echo "conformance: not run ($shared/conformance/run-functests.sh not found; set APUS_SHARED)"
  exit 2
fi
conformance="$(cd "$shared/conformance" && pwd)"
suite="${CONFORMANCE_SUITE:-swift}"
# Logins and apus's validation of each new token go through Keystone (a
# Python server), so the suite runs slower than with tempauth and gets
# more time than scripts/conformance.sh gives it.
export FUNCTEST_SUITE_TIMEOUT="${FUNCTEST_SUITE_TIMEOUT:-1800}"
export FUNCTEST_TEST_TIMEOUT="${FUNCTEST_TEST_TIMEOUT:-60}"

if [ -z "${APUS_BIN:-}" ]; then
  echo "== cargo build --release -p apus"
  cargo build --release --locked -p apus
fi
apus="${APUS_BIN:-${CARGO_TARGET_DIR:-target}/release/apus}"
if [ ! -x "$apus" ]; then
  echo "conformance: not run ($apus is not an executable; build it or set APUS_BIN)"
  exit 2
fi
apus="$(cd "$(dirname "$apus")" && pwd)/$(basename "$apus")"

echo "== conformance suite: install"
if ! SKIP_APT=1 "$conformance/install.sh" >/dev/null; then
  echo "conformance: not run (install.sh failed)"
  exit 2
fi
echo "== Keystone: install"
if ! ks_env="$(scripts/keystone.sh)"; then
  echo "conformance: not run (scripts/keystone.sh failed)"
  exit 2
fi
eval "$ks_env"
kpy="$APUS_KEYSTONE_PYTHON"
kbin="$(dirname "$kpy")"

work="$(mktemp -d)"
out="${CONFORMANCE_OUT:-$(mktemp -d)}"
mkdir -p "$out/servers"
out="$(cd "$out" && pwd)"
ks="$work/keystone"
mkdir -p "$ks" "$work/data"
apus_pid=""
ks_pid=""
runner_pid=""
runner_sid=""

# Stops apus if it still runs: SIGTERM, then SIGKILL after 30 s.
stop_apus() {
  [ -n "$apus_pid" ] || return 0
  if kill -0 "$apus_pid" 2>/dev/null; then
    kill -TERM "$apus_pid" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$apus_pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$apus_pid" 2>/dev/null; then
      echo "apus serve did not stop within 30 s of SIGTERM; killing it"
      kill -KILL "$apus_pid" 2>/dev/null || true
    fi
  fi
  local code=0
  wait "$apus_pid" 2>/dev/null || code=$?
  apus_pid=""
  [ "$code" = 0 ] || echo "apus serve exited with status $code on SIGTERM"
}
# Stops gunicorn, which leads its own process group (the launcher below
# makes it so): SIGQUIT makes it stop its worker at once; whatever of the
# group is left after 5 s is killed.
stop_keystone() {
  [ -n "$ks_pid" ] || return 0
  kill -QUIT "$ks_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$ks_pid" 2>/dev/null || break
    sleep 0.1
  done
  # Until it is waited for, the master (even exited) holds its group id,
  # so this reaches only its own group.
  kill -KILL -- "-$ks_pid" 2>/dev/null || true
  wait "$ks_pid" 2>/dev/null || true
  ks_pid=""
}
# Ends an unfinished conformance run: every process of the session it was
# started in (see below), else the runner alone.
stop_runner() {
  [ -n "$runner_pid" ] || return 0
  if [ -n "$runner_sid" ]; then
    pkill -TERM -s "$runner_sid" 2>/dev/null || true
    for _ in $(seq 100); do
      pgrep -s "$runner_sid" >/dev/null 2>&1 || break
      sleep 0.1
    done
    pkill -KILL -s "$runner_sid" 2>/dev/null || true
  else
    kill -TERM "$runner_pid" 2>/dev/null || true
  fi
  wait "$runner_pid" 2>/dev/null || true
  runner_pid=""
}
cleanup() {
  stop_runner
  stop_apus
  stop_keystone
  # The logs are kept with the results; the data, Keystone's database and
  # keys, and the configs (with the test passwords) go.
  cp "$work/apus.out" "$work/apus.log" "$out/servers/" 2>/dev/null || true
  cp "$ks"/keystone.log "$ks"/gunicorn.err "$out/servers/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints that a server died and the end of its log; returns 1 if it did.
check_alive() {
  if [ -n "$apus_pid" ] && ! kill -0 "$apus_pid" 2>/dev/null; then
    local code=0
    wait "$apus_pid" 2>/dev/null || code=$?
    apus_pid=""
    echo "apus serve DIED $1 (exit status $code); the end of its log:"
    tail -n 40 "$work/apus.log"
    return 1
  fi
  if [ -n "$ks_pid" ] && ! kill -0 "$ks_pid" 2>/dev/null; then
    ks_pid=""
    echo "Keystone (gunicorn) DIED $1; the end of its logs:"
    tail -n 20 "$ks/gunicorn.err" "$ks/keystone.log" 2>/dev/null || true
    return 1
  fi
}

# ------------------------------------------------------------ Keystone
# As crates/apus/tests/support/keystone.rs does it: SQLite, fernet tokens,
# the policy Keystone ships with, bcrypt's fewest rounds (logins are the
# bulk of Keystone's work here), all under $ks.
echo "== Keystone: set up in $ks"
cat >"$ks/keystone.conf" <<EOF
[DEFAULT]
log_file = $ks/keystone.log
use_stderr = false
[database]
connection = sqlite:///$ks/keystone.db
[fernet_tokens]
key_repository = $ks/fernet-keys
[fernet_receipts]
key_repository = $ks/fernet-receipts
[credential]
key_repository = $ks/credential-keys
[identity]
password_hash_rounds = 4
[oslo_policy]
policy_file = $ks/policy.yaml
[oslo_concurrency]
lock_path = $ks/locks
EOF
echo '{}' >"$ks/policy.yaml"
manage() {
  local step="$1"
  shift
  timeout 300 "$kbin/keystone-manage" --config-file "$ks/keystone.conf" "$step" "$@" \
    </dev/null >"$ks/$step.out" 2>"$ks/$step.err"
}
# The database and the two key repositories are independent.
manage db_sync & p1=$!
manage fernet_setup --keystone-user "$(id -u)" --keystone-group "$(id -g)" & p2=$!
manage credential_setup --keystone-user "$(id -u)" --keystone-group "$(id -g)" & p3=$!
for p in $p1 $p2 $p3; do
  if ! wait "$p"; then
    echo "keystone-manage failed:"
    tail -n 20 "$ks"/*.err "$ks/keystone.log" 2>/dev/null || true
    echo "conformance: not run (Keystone setup failed)"
    exit 1
  fi
done

# gunicorn reads its settings from gunicorn.conf.py in its working
# directory (Keystone parses the process's arguments as its own, so there
# must be none). The launcher binds 127.0.0.1:0 itself and hands the
# socket to gunicorn (fd://N), so the port is known before anything starts
# and nothing can take it in between; it also makes gunicorn lead its own
# process group, so that its worker can be stopped with it.
: >"$ks/port"
(
  cd "$ks"
  exec env OS_KEYSTONE_CONFIG_FILES="$ks/keystone.conf" "$kpy" -c '
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
os.set_inheritable(s.fileno(), True)
with open("gunicorn.conf.py", "w") as f:
    f.write("bind = [%r]\n" % ("fd://%d" % s.fileno()))
    f.write("wsgi_app = \"keystone.wsgi.api:application\"\n")
    f.write("workers = 1\nthreads = 4\n")
    # Not gunicorn'"'"'s control socket in $HOME.
    f.write("control_socket_disable = True\n")
with open("port", "w") as f:
    f.write("%d\n" % s.getsockname()[1])
os.setpgid(0, 0)
os.execv(sys.argv[1], [sys.argv[1]])
' "$kbin/gunicorn" </dev/null >"$ks/gunicorn.out" 2>"$ks/gunicorn.err"
) &
ks_pid=$!
ks_port=""
for _ in $(seq 100); do
  ks_port="$(cat "$ks/port")"
  [ -n "$ks_port" ] && break
  check_alive "at start" || exit 1
  sleep 0.1
done
if [ -z "$ks_port" ]; then
  echo "conformance: not run (the Keystone launcher did not bind a port within 10 s)"
  exit 1
fi
auth_url="http://127.0.0.1:$ks_port/v3"
echo "== Keystone on $auth_url (gunicorn pid $ks_pid)"

# bootstrap makes the admin user, project and role (and member, reader)
# and the identity endpoints; it runs while gunicorn's worker loads.
if ! manage bootstrap --bootstrap-password secrete --bootstrap-username admin \
    --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-region-id RegionOne --bootstrap-admin-url "$auth_url" \
    --bootstrap-internal-url "$auth_url" --bootstrap-public-url "$auth_url"; then
  tail -n 20 "$ks/bootstrap.err" "$ks/keystone.log" 2>/dev/null || true
  echo "conformance: not run (keystone-manage bootstrap failed)"
  exit 1
fi

# The REST calls, with the venv's python (standard library only).
cat >"$work/ks.py" <<'PY'
"""Keystone v3 calls for conformance-keystone.sh: ks.py AUTH_URL COMMAND ARGS."""
import json
import sys
import time
import urllib.error
import urllib.request

AUTH = sys.argv[1].rstrip('/')


def call(method, path, token=None, body=None, base=AUTH):
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header('X-Auth-Token', token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(req, data, timeout=60) as r:
            raw = r.read()
            return r.status, r.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors='replace')


def token(user, password, project, domain='default'):
    status, headers, body = call('POST', '/auth/tokens', body={'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': user, 'domain': {'id': domain}, 'password': password}}},
        'scope': {'project': {'name': project, 'domain': {'id': domain}}}}})
    if status != 201:
        sys.exit('token for %s in %s: %s %s' % (user, project, status, body))
    return headers['X-Subject-Token'], body['token']['project']['id']


def must(expect, what, result):
    status, _, body = result
    if status != expect:
        sys.exit('%s: %s %s' % (what, status, body))
    return body


def wait_ready(seconds):
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(AUTH, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        if time.time() > deadline:
            sys.exit('Keystone did not answer GET %s within %ss' % (AUTH, seconds))
        time.sleep(0.2)


# Swift's functional tests with Keystone (test/sample.conf and the table
# in test/functional/test_access_control.py), plus the proxy's own user.
# (user, password, project, domain, roles)
USERS = [
    ('swift', 'swiftpass', 'service', 'default', ['admin', 'service']),
    ('tester', 'testing', 'test', 'default', ['admin']),
    ('tester2', 'testing2', 'test2', 'default', ['admin']),
    ('tester3', 'testing3', 'test', 'default', ['member']),
    ('tester4', 'testing4', 'test4', 'test-domain', ['admin']),
    ('tester5', 'testing5', 'test5', 'default', ['service']),
    ('tester6', 'testing6', 'test', 'default', ['ResellerAdmin']),
]


def populate():
    t, _ = token('admin', 'secrete', 'admin')
    roles = {}
    for name in ('admin', 'member', 'service', 'ResellerAdmin', 'swiftoperator'):
        body = must(200, 'list roles', call('GET', '/roles?name=' + name, t))
        if body['roles']:
            roles[name] = body['roles'][0]['id']
        else:
            body = must(201, 'create role ' + name,
                        call('POST', '/roles', t, {'role': {'name': name}}))
            roles[name] = body['role']['id']
    body = must(201, 'create domain test-domain', call(
        'POST', '/domains', t, {'domain': {'name': 'test-domain'}}))
    domains = {'default': 'default', 'test-domain': body['domain']['id']}
    projects = {}
    for _, _, project, domain, _ in USERS:
        if project in projects:
            continue
        body = must(201, 'create project ' + project, call(
            'POST', '/projects', t,
            {'project': {'name': project, 'domain_id': domains[domain]}}))
        projects[project] = body['project']['id']
    for user, password, project, domain, user_roles in USERS:
        body = must(201, 'create user ' + user, call('POST', '/users', t, {'user': {
            'name': user, 'password': password, 'domain_id': domains[domain],
            'default_project_id': projects[project]}}))
        uid = body['user']['id']
        for role in user_roles:
            must(204, 'grant %s to %s' % (role, user), call(
                'PUT', '/projects/%s/users/%s/roles/%s'
                % (projects[project], uid, roles[role]), t))
    # The test user in the non-default domain logs in with the domain's
    # name; print its id for the record.
    print('test-domain id %s' % domains['test-domain'])


def register(url):
    """Puts apus in the catalog as object-store: where clients logging in
    with Keystone learn their storage URL."""
    t, _ = token('admin', 'secrete', 'admin')
    body = must(201, 'create service', call('POST', '/services', t, {
        'service': {'type': 'object-store', 'name': 'swift'}}))
    sid = body['service']['id']
    for interface in ('public', 'internal', 'admin'):
        must(201, 'create %s endpoint' % interface, call('POST', '/endpoints', t, {
            'endpoint': {'service_id': sid, 'interface': interface,
                         'region_id': 'RegionOne', 'url': url}}))


def create_accounts(endpoint):
    """POSTs to the two admin test accounts (which autocreates them), as
    the runner's preclean step does with v1.0 auth: a brand-new account
    answers HEAD with 200, not 204."""
    for user, password, project in (('tester', 'testing', 'test'),
                                    ('tester2', 'testing2', 'test2')):
        t, pid = token(user, password, project)
        status, _, body = call('POST', '/v1/AUTH_' + pid, t,
                               base=endpoint.rstrip('/'))
        if status // 100 != 2:
            sys.exit('POST account of %s: %s %s' % (user, status, body))


cmd = sys.argv[2]
if cmd == 'wait':
    wait_ready(float(sys.argv[3]))
elif cmd == 'populate':
    populate()
elif cmd == 'register':
    register(sys.argv[3])
elif cmd == 'accounts':
    create_accounts(sys.argv[3])
else:
    sys.exit('unknown command ' + cmd)
PY
ks_py() {
  NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 timeout 120 "$kpy" "$work/ks.py" "$auth_url" "$@"
}
if ! ks_py wait 60; then
  check_alive "at start" || true
  tail -n 20 "$ks/gunicorn.err" "$ks/keystone.log" 2>/dev/null || true
  echo "conformance: not run (Keystone did not answer)"
  exit 1
fi
echo "== Keystone: projects, users and roles"
if ! ks_py populate; then
  tail -n 20 "$ks/keystone.log" 2>/dev/null || true
  echo "conformance: not run (creating Keystone's test users failed)"
  exit 1
fi

# ------------------------------------------------------------ apus
# A one-process cluster (the same layout scripts/conformance.sh tests with
# tempauth) with Keystone in tempauth's place. The roles follow Swift's
# functional-test setup for keystoneauth: `admin` owns its project's
# account, `member` alone does not; `ResellerAdmin` owns every account;
# `SERVICE_` accounts also need an X-Service-Token with role `service`.
cat >"$work/apus.toml" <<EOF
[proxy.keystone]
auth_url = "http://127.0.0.1:$ks_port"
username = "swift"
password = "swiftpass"
project_name = "service"
reseller_prefixes = ["AUTH", "SERVICE"]
operator_roles = ["admin", "swiftoperator"]
reseller_admin_role = "ResellerAdmin"

[proxy.keystone.prefix_roles.SERVICE]
service_roles = ["service"]
EOF
echo "== apus serve (data in $work/data, log in $work/apus.log)"
# The files exist before apus starts: the loop below may read them before
# the background process has opened them.
: >"$work/apus.out"
: >"$work/apus.log"
"$apus" serve --config "$work/apus.toml" --data "$work/data" --bind 127.0.0.1:0 --images-bind 127.0.0.1:0 \
  </dev/null >"$work/apus.out" 2>"$work/apus.log" &
apus_pid=$!
# The proxy binds a port the kernel picks; the banner, printed once every
# server is bound, says which.
endpoint=""
for _ in $(seq 120); do
  check_alive "at start" || exit 1
  endpoint="$(sed -n 's|^ *proxy *\(http://[0-9.:]*\)$|\1|p' "$work/apus.out" | head -n 1 || true)"
  if [ -n "$endpoint" ] && "$kpy" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$endpoint/healthcheck" 2>/dev/null; then
    break
  fi
  endpoint=""
  sleep 0.5
done
if [ -z "$endpoint" ]; then
  echo "apus serve did not answer /healthcheck within 60 s; the end of its log:"
  tail -n 40 "$work/apus.log"
  exit 1
fi
echo "== apus serve on $endpoint"
if ! ks_py register "$endpoint/v1/AUTH_\$(project_id)s" || ! ks_py accounts "$endpoint"; then
  check_alive "at start" || true
  echo "conformance: not run (registering apus in Keystone or creating the test accounts failed)"
  exit 1
fi

# ------------------------------------------------------------ the suite
# Swift's functional tests log in with v3 credentials through swiftclient
# and keystoneclient (scripts/keystone.sh put those in the reference
# venv). Users by index, as test/functional/__init__.py reads them:
# 1 tester (test), 2 tester2 (test2), 3 tester3 (test, no operator role),
# 4 tester4 (test4 in test-domain: the v3-only tests), 5 tester5 (test5,
# role service: the service-token tests), 6 tester6 (test, ResellerAdmin).
# Domains are names, as swiftclient passes them: Keystone's default domain
# is named `Default`.
cat >"$out/test.conf" <<EOF
[func_test]
auth_version = 3
auth_uri = $auth_url
account = test
username = tester
password = testing
domain = Default
account2 = test2
username2 = tester2
password2 = testing2
domain2 = Default
username3 = tester3
password3 = testing3
domain3 = Default
account4 = test4
username4 = tester4
password4 = testing4
domain4 = test-domain
account5 = test5
username5 = tester5
password5 = testing5
domain5 = Default
service_prefix = SERVICE
account6 = test
username6 = tester6
password6 = testing6
domain6 = Default
collate = C
insecure = no
# apus's one-process cluster has domain_remap for this domain.
storage_domain = example.com

[unit_test]
fake_syslog = False

[swift-constraints]
# empty: constraints come from the endpoint's /info
EOF
# The runner reads /info from auth_uri's host, which is Keystone here; the
# summary takes the capabilities from info.json, so it is written first.
"$kpy" -c 'import sys, urllib.request; open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=15).read())' \
  "$endpoint/info" "$out/info.json"

# FUNCTEST_FORCE: the runner's auth probe speaks v1.0 only; against
# Keystone's /v3 it passes or fails by accident (a GET of the version
# document), so its verdict is not wanted either way.
# FUNCTEST_PRECLEAN=0: its preclean logs in with v1.0 only; the Keystone
# projects are new and their accounts were made above.
echo "== run-functests.sh -c $out/test.conf -s $suite (suite timeout ${FUNCTEST_SUITE_TIMEOUT} s, test timeout ${FUNCTEST_TEST_TIMEOUT} s)"
rc=0
read -r -a pytest_args <<<"${PYTEST_ARGS:-}"
# The runner gets a session of its own, so that an interrupted run can end
# all of it: pytest runs under a `timeout` of the runner's that leads its
# own process group, and left alone it would go on retrying against the
# stopped servers for hours. setsid does not fork here (a background job of
# a script without job control is no group leader), so its pid is the
# session's id.
: >"$out/functests.log"
FUNCTEST_FORCE=1 FUNCTEST_PRECLEAN=0 setsid timeout --kill-after=30 "$((FUNCTEST_SUITE_TIMEOUT + 600))" \
  "$conformance/run-functests.sh" -c "$out/test.conf" -s "$suite" -o "$out" \
  ${pytest_args[@]+-- "${pytest_args[@]}"} </dev/null >"$out/functests.log" 2>&1 &
runner_pid=$!
for _ in $(seq 50); do
  [ "$(ps -o sid= -p "$runner_pid" 2>/dev/null | tr -d ' ')" = "$runner_pid" ] && { runner_sid=$runner_pid; break; }
  kill -0 "$runner_pid" 2>/dev/null || break
  sleep 0.1
done
# The console shows the log as it grows; tail ends with the runner.
tail -n +1 -f --pid="$runner_pid" "$out/functests.log" &
tail_pid=$!
wait "$runner_pid" || rc=$?
runner_pid=""
runner_sid=""
wait "$tail_pid" 2>/dev/null || true
alive=0
check_alive "during the conformance run" || alive=1
echo "conformance results: $out"
if ! grep -q '^conformance:' "$out/functests.log"; then
  echo "conformance: not run (run-functests.sh ended with status $rc before counting; see above)"
  exit 1
fi
exit "$alive"
