//! A real OpenStack Keystone on loopback, for tests of Keystone auth:
//! the release `scripts/keystone.sh` installs (and names in
//! `APUS_KEYSTONE_PYTHON`), served by gunicorn from that venv.
//!
//! [`Keystone::start`] keeps everything in the test's directory: the
//! config, a SQLite database, the fernet and credential key repositories
//! and the logs (`keystone.log`, Keystone's own; `gunicorn.err`, the
//! server's). It binds 127.0.0.1:0 itself and hands the socket to gunicorn
//! (`fd://N`), so the port is known before anything starts and nothing can
//! take it in between. `keystone-manage bootstrap` makes the `admin` user,
//! project and role and the identity endpoints (region `RegionOne`); then
//! the API makes the users and projects Swift's Keystone functional tests
//! expect, each a [`User`] here:
//!
//! | user       | project   | roles                 |
//! |------------|-----------|-----------------------|
//! | `admin`    | `admin`   | `admin`               |
//! | `swift`    | `service` | `admin`, `service`    |
//! | `tester`   | `test`    | `swiftoperator`       |
//! | `tester2`  | `test2`   | `swiftoperator`       |
//! | `tester3`  | `test`    | `member`              |
//! | `reseller` | `admin`   | `ResellerAdmin`       |
//!
//! All in domain `default`. [`Keystone::token`] logs a user in;
//! [`Keystone::request`] is any other API call; and
//! [`Keystone::register_service`] puts an endpoint in the catalog (a
//! Swift one with [`Keystone::register_object_store`]). Passwords hash
//! with bcrypt's fewest rounds, to keep logins fast. A start takes some
//! 6 s on two busy cores, nearly all of it Python
//! starting `keystone-manage` four times and gunicorn's worker once; the
//! first three steps run at once. Dropping the [`Keystone`] stops the
//! server and its worker.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{exchange, Head, Server};

/// How long Keystone may take to answer `GET /v3` once gunicorn runs.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long gunicorn may take to stop its worker and exit on SIGQUIT
/// before the whole group is killed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One of the fixture's users, with the project it is assigned to.
#[derive(Clone, Debug)]
pub struct User {
    pub name: &'static str,
    pub password: &'static str,
    pub id: String,
    pub project: &'static str,
    pub project_id: String,
}

/// A running Keystone: gunicorn's master (leading its own process group)
/// and what the fixture made.
pub struct Keystone {
    server: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/v3`, for `--os-auth-url` and friends.
    pub auth_url: String,
    pub admin: User,
    /// The service user a Swift proxy validates tokens as.
    pub swift: User,
    pub tester: User,
    pub tester2: User,
    /// In `test` with `member` only: no operator role.
    pub tester3: User,
    pub reseller: User,
}

/// `APUS_KEYSTONE_PYTHON`, which must exist: the tests that need Keystone
/// fail rather than skip without it.
pub fn keystone_python() -> PathBuf {
    let python = std::env::var_os("APUS_KEYSTONE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "APUS_KEYSTONE_PYTHON is not set: run `eval \"$(scripts/keystone.sh)\"` \
                 and export it"
            )
        });
    assert!(
        python.exists(),
        "APUS_KEYSTONE_PYTHON={} does not exist: run scripts/keystone.sh",
        python.display()
    );
    python
}

/// A program beside the venv's python.
fn venv_bin(python: &Path, name: &str) -> PathBuf {
    let path = python.parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} not found: run scripts/keystone.sh",
        path.display()
    );
    path
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Keystone {
    /// Sets up and starts Keystone in `dir`, then makes the fixture's
    /// roles, projects and users; returns once all of it answers.
    pub fn start(dir: &Path) -> Keystone {
        let python = keystone_python();
        fs::create_dir_all(dir).unwrap();
        let manage = venv_bin(&python, "keystone-manage");
        let gunicorn = venv_bin(&python, "gunicorn");

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let auth_url = format!("http://{addr}/v3");

        let conf = dir.join("keystone.conf");
        let path = |name: &str| dir.join(name).display().to_string();
        fs::write(
            &conf,
            format!(
                "[DEFAULT]\n\
                 log_file = {log}\n\
                 use_stderr = false\n\
                 [database]\n\
                 connection = sqlite:///{db}\n\
                 [fernet_tokens]\n\
                 key_repository = {fernet}\n\
                 [fernet_receipts]\n\
                 key_repository = {receipts}\n\
                 [credential]\n\
                 key_repository = {credential}\n\
                 [identity]\n\
                 password_hash_rounds = 4\n\
                 [oslo_policy]\n\
                 policy_file = {policy}\n\
                 [oslo_concurrency]\n\
                 lock_path = {locks}\n",
                log = path("keystone.log"),
                db = path("keystone.db"),
                fernet = path("fernet-keys"),
                receipts = path("fernet-receipts"),
                credential = path("credential-keys"),
                policy = path("policy.yaml"),
                locks = path("locks"),
            ),
        )
        .unwrap();
        // No overrides: the policy Keystone ships with.
        fs::write(dir.join("policy.yaml"), "{}\n").unwrap();

        let manage_cmd = |step: &str| {
            let mut cmd = Command::new(&manage);
            cmd.arg("--config-file")
                .arg(&conf)
                .arg(step)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join(format!("{step}.out"))).unwrap())
                .stderr(fs::File::create(dir.join(format!("{step}.err"))).unwrap());
            cmd
        };
        let run = |step: &str, mut child: Child| {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "keystone-manage {step}: {status}\n{}\n{}",
                tail(&dir.join(format!("{step}.err"))),
                tail(&dir.join("keystone.log")),
            );
        };

        // The database and the two key repositories are independent.
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let owner = |step: &str| {
            let mut cmd = manage_cmd(step);
            cmd.args(["--keystone-user", &uid.to_string()])
                .args(["--keystone-group", &gid.to_string()]);
            cmd
        };
        let setup = [
            ("db_sync", manage_cmd("db_sync").spawn().unwrap()),
            ("fernet_setup", owner("fernet_setup").spawn().unwrap()),
            (
                "credential_setup",
                owner("credential_setup").spawn().unwrap(),
            ),
        ];
        for (step, child) in setup {
            run(step, child);
        }

        // gunicorn reads its settings from gunicorn.conf.py in its working
        // directory: Keystone parses the process's arguments as its own, so
        // there must be none.
        let fd = listener.as_raw_fd();
        fs::write(
            dir.join("gunicorn.conf.py"),
            format!(
                "bind = ['fd://{fd}']\n\
                 wsgi_app = 'keystone.wsgi.api:application'\n\
                 workers = 1\n\
                 threads = 4\n\
                 # Not gunicornc's socket in $HOME.\n\
                 control_socket_disable = True\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&gunicorn);
        cmd.current_dir(dir)
            .env("OS_KEYSTONE_CONFIG_FILES", &conf)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("gunicorn.out")).unwrap())
            .stderr(fs::File::create(dir.join("gunicorn.err")).unwrap());
        // SAFETY: between fork and exec only fcntl on a descriptor this
        // process owns; clearing close-on-exec there affects the child only.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = cmd.spawn().expect("run gunicorn");
        drop(listener);

        let placeholder = |name, password, project| User {
            name,
            password,
            id: String::new(),
            project,
            project_id: String::new(),
        };
        let mut keystone = Keystone {
            server,
            dir: dir.to_path_buf(),
            addr,
            auth_url,
            admin: placeholder("admin", "secrete", "admin"),
            swift: placeholder("swift", "swiftpass", "service"),
            tester: placeholder("tester", "testing", "test"),
            tester2: placeholder("tester2", "testing2", "test2"),
            tester3: placeholder("tester3", "testing3", "test"),
            reseller: placeholder("reseller", "resellerpass", "admin"),
        };
        // Dropping `keystone` from here on stops the server. Bootstrap runs
        // while gunicorn's worker loads Keystone (connections queue on the
        // socket meanwhile).
        let bootstrap = manage_cmd("bootstrap")
            .args(["--bootstrap-password", keystone.admin.password])
            .args(["--bootstrap-username", "admin"])
            .args(["--bootstrap-project-name", "admin"])
            .args(["--bootstrap-role-name", "admin"])
            .args(["--bootstrap-region-id", "RegionOne"])
            .args(["--bootstrap-admin-url", &keystone.auth_url])
            .args(["--bootstrap-internal-url", &keystone.auth_url])
            .args(["--bootstrap-public-url", &keystone.auth_url])
            .spawn()
            .unwrap();
        run("bootstrap", bootstrap);
        keystone.wait_ready();
        keystone.populate();
        keystone
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.server.try_wait().unwrap() {
                panic!("gunicorn exited ({status}):\n{}", self.logs());
            }
            if let Some((200, _)) = super::get(self.addr, "/v3") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Keystone did not answer GET /v3 within {READY_TIMEOUT:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tails of gunicorn's and Keystone's logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "gunicorn.err:\n{}\nkeystone.log:\n{}",
            tail(&self.dir.join("gunicorn.err")),
            tail(&self.dir.join("keystone.log"))
        )
    }

    /// Makes the fixture's roles, projects and users (the admin ones came
    /// from bootstrap).
    fn populate(&mut self) {
        let (admin_token, admin_project) = self.token_for(&self.admin);
        let t = admin_token.as_str();
        self.admin.project_id = admin_project.clone();
        self.admin.id = self.find(t, "users", "admin");

        let admin = self.find(t, "roles", "admin");
        let member = self.role(t, "member");
        let operator = self.role(t, "swiftoperator");
        let reseller = self.role(t, "ResellerAdmin");
        let service = self.role(t, "service");

        let service_project = self.project(t, "service");
        let test = self.project(t, "test");
        let test2 = self.project(t, "test2");

        for (user, project, roles) in [
            (&mut self.swift, &service_project, vec![&admin, &service]),
            (&mut self.tester, &test, vec![&operator]),
            (&mut self.tester2, &test2, vec![&operator]),
            (&mut self.tester3, &test, vec![&member]),
            (&mut self.reseller, &admin_project, vec![&reseller]),
        ] {
            let (head, body) = call(
                self.addr,
                "POST",
                "/v3/users",
                Some(t),
                Some(json!({"user": {
                    "name": user.name,
                    "password": user.password,
                    "domain_id": "default",
                    "default_project_id": project,
                }})),
            );
            assert_eq!(head.status, 201, "create user {}: {body}", user.name);
            user.id = body["user"]["id"].as_str().unwrap().to_string();
            user.project_id = project.clone();
            for role in roles {
                let path = format!("/v3/projects/{project}/users/{}/roles/{role}", user.id);
                let (head, body) = call(self.addr, "PUT", &path, Some(t), None);
                assert_eq!(head.status, 204, "grant {role} to {}: {body}", user.name);
            }
        }
    }

    /// The id of the `kind` ("users", "roles", "projects") named `name`.
    fn try_find(&self, token: &str, kind: &str, name: &str) -> Option<String> {
        let (head, body) = call(
            self.addr,
            "GET",
            &format!("/v3/{kind}?name={name}"),
            Some(token),
            None,
        );
        assert_eq!(head.status, 200, "list {kind} named {name}: {body}");
        body[kind][0]["id"].as_str().map(str::to_string)
    }

    fn find(&self, token: &str, kind: &str, name: &str) -> String {
        self.try_find(token, kind, name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }

    /// The role `name`'s id, made if bootstrap did not (it makes `member`
    /// and `reader` beside `admin`).
    fn role(&self, token: &str, name: &str) -> String {
        if let Some(id) = self.try_find(token, "roles", name) {
            return id;
        }
        let (head, body) = call(
            self.addr,
            "POST",
            "/v3/roles",
            Some(token),
            Some(json!({"role": {"name": name}})),
        );
        assert_eq!(head.status, 201, "create role {name}: {body}");
        body["role"]["id"].as_str().unwrap().to_string()
    }

    fn project(&self, token: &str, name: &str) -> String {
        let (head, body) = call(
            self.addr,
            "POST",
            "/v3/projects",
            Some(token),
            Some(json!({"project": {"name": name, "domain_id": "default"}})),
        );
        assert_eq!(head.status, 201, "create project {name}: {body}");
        body["project"]["id"].as_str().unwrap().to_string()
    }

    /// `apus serve` (a one-process cluster in `dir/data`) authenticating
    /// with this Keystone as the fixture's `swift` service user:
    /// `[proxy.keystone]` with `settings` added to it, then `tables`. The
    /// server and its proxy's address.
    pub fn start_apus(&self, dir: &Path, settings: &str, tables: &str) -> (Server, SocketAddr) {
        let conf = dir.join("apus.toml");
        fs::write(
            &conf,
            format!(
                "[proxy.keystone]\nauth_url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n\
                 project_name = \"{}\"\n{settings}\n{tables}",
                self.auth_url.trim_end_matches("/v3"),
                self.swift.name,
                self.swift.password,
                self.swift.project,
            ),
        )
        .unwrap();
        let data = dir.join("data");
        fs::create_dir_all(&data).unwrap();
        let mut server = Server::start_with(dir, &data, "apus", Some(&conf));
        let addr = server.wait_ready();
        (server, addr)
    }

    /// Adds an `object-store` service named `swift` to the catalog, with
    /// public, internal and admin endpoints in `RegionOne` at `url` (as
    /// `http://127.0.0.1:PORT/v1/AUTH_$(project_id)s`): where a client
    /// logging in with Keystone learns its storage URL.
    pub fn register_object_store(&self, url: &str) {
        self.register_service("object-store", "swift", url);
    }

    /// Adds a service of `kind` named `name` to the catalog, with public,
    /// internal and admin endpoints in `RegionOne` at `url`.
    pub fn register_service(&self, kind: &str, name: &str, url: &str) {
        let (token, _) = self.token_for(&self.admin);
        let (head, body) = call(
            self.addr,
            "POST",
            "/v3/services",
            Some(&token),
            Some(json!({"service": {"type": kind, "name": name}})),
        );
        assert_eq!(head.status, 201, "create the {kind} service: {body}");
        let service = body["service"]["id"].as_str().unwrap().to_string();
        for interface in ["public", "internal", "admin"] {
            let (head, body) = call(
                self.addr,
                "POST",
                "/v3/endpoints",
                Some(&token),
                Some(json!({"endpoint": {
                    "service_id": service,
                    "interface": interface,
                    "region_id": "RegionOne",
                    "url": url,
                }})),
            );
            assert_eq!(
                head.status, 201,
                "create the {interface} {kind} endpoint: {body}"
            );
        }
    }

    /// `POST /v3/auth/tokens` with the password method for `user` in
    /// domain `default`, scoped to `project` (also in `default`): the
    /// token (`X-Subject-Token`) and the project's id, or the status and
    /// body of a refusal.
    pub fn try_token(
        &self,
        user: &str,
        password: &str,
        project: &str,
    ) -> Result<(String, String), (u16, Value)> {
        let (head, body) = call(
            self.addr,
            "POST",
            "/v3/auth/tokens",
            None,
            Some(json!({"auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {
                        "name": user,
                        "domain": {"id": "default"},
                        "password": password,
                    }},
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }})),
        );
        if head.status != 201 {
            return Err((head.status, body));
        }
        let token = head.header("x-subject-token").unwrap().to_string();
        let project_id = body["token"]["project"]["id"].as_str().unwrap().to_string();
        Ok((token, project_id))
    }

    /// [`Keystone::try_token`], which must succeed.
    pub fn token(&self, user: &str, password: &str, project: &str) -> (String, String) {
        self.try_token(user, password, project)
            .unwrap_or_else(|(status, body)| {
                panic!(
                    "token for {user} in {project}: {status} {body}\n{}",
                    self.logs()
                )
            })
    }

    /// A token for one of the fixture's users, in its project.
    pub fn token_for(&self, user: &User) -> (String, String) {
        self.token(user.name, user.password, user.project)
    }

    /// One request to Keystone's API (`path` from the root, `/v3/...`),
    /// with `X-Auth-Token` when `token` is given and the rest of the
    /// headers as given; the head and the JSON body (null when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (Head, Value) {
        request(self.addr, method, path, headers, body)
    }
}

fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (Head, Value) {
    match token {
        Some(token) => request(addr, method, path, &[("X-Auth-Token", token)], body),
        None => request(addr, method, path, &[], body),
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (Head, Value) {
    let mut all = headers.to_vec();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        all.push(("Content-Type", "application/json"));
    }
    let (head, raw) = exchange(addr, method, path, &all, body.as_bytes());
    let value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    (head, value)
}

impl Drop for Keystone {
    fn drop(&mut self) {
        let pid = self.server.id() as libc::pid_t;
        // SIGQUIT: gunicorn stops its worker at once and reaps it. If it
        // has not exited in time, the whole group goes.
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + QUIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: the group our unreaped child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.server.wait();
    }
}
