//! The image service against an in-memory object store and fixed
//! tokens: Glance's validation and status codes, who may see and change
//! what, listings, and the data path (segments, hashes, caps, failures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apus_http::Body;
use apus_images::{
    AuthOutcome, Authenticator, BoxFuture, Identity, ImagesConfig, ImagesService, ObjectApi,
};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha512;

/// What the fake store keeps under a path.
#[derive(Clone, Debug)]
enum Stored {
    Plain(Bytes),
    /// An SLO manifest: its segments' full paths.
    Manifest(Vec<String>),
}

/// A Swift API in memory: containers always exist, SLO manifests are
/// resolved on GET and deleted with their segments.
#[derive(Default)]
struct FakeStore {
    objects: Mutex<BTreeMap<String, Stored>>,
}

fn response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(apus_http::full(body.into()));
    *r.status_mut() = status;
    r
}

impl FakeStore {
    fn paths(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        // /v1/<account>/<container> alone: a container request.
        let is_container = path.split('/').count() == 4;
        match *req.method() {
            Method::PUT if is_container => response(StatusCode::CREATED, ""),
            Method::PUT => {
                let body = req.into_body().collect().await;
                let Ok(body) = body else {
                    return response(StatusCode::from_u16(499).unwrap(), "client gone");
                };
                let body = body.to_bytes();
                let account = path.split('/').take(3).collect::<Vec<_>>().join("/");
                if query == "multipart-manifest=put" {
                    let doc: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    let segs = doc
                        .iter()
                        .map(|e| format!("{account}{}", e["path"].as_str().unwrap()))
                        .collect::<Vec<_>>();
                    for s in &segs {
                        assert!(self.objects.lock().unwrap().contains_key(s), "{s}");
                    }
                    self.objects
                        .lock()
                        .unwrap()
                        .insert(path, Stored::Manifest(segs));
                    return response(StatusCode::CREATED, "");
                }
                let etag = format!("{:x}", Md5::digest(&body));
                self.objects
                    .lock()
                    .unwrap()
                    .insert(path, Stored::Plain(body));
                let mut r = response(StatusCode::CREATED, "");
                r.headers_mut().insert("etag", etag.parse().unwrap());
                r
            }
            Method::GET => {
                let objects = self.objects.lock().unwrap();
                match objects.get(&path) {
                    Some(Stored::Plain(b)) => response(StatusCode::OK, b.clone()),
                    Some(Stored::Manifest(segs)) => {
                        let mut all = Vec::new();
                        for s in segs {
                            match objects.get(s) {
                                Some(Stored::Plain(b)) => all.extend_from_slice(b),
                                _ => return response(StatusCode::CONFLICT, "segment missing"),
                            }
                        }
                        response(StatusCode::OK, all)
                    }
                    None => response(StatusCode::NOT_FOUND, ""),
                }
            }
            Method::DELETE => {
                let mut objects = self.objects.lock().unwrap();
                match objects.remove(&path) {
                    Some(Stored::Manifest(segs)) if query == "multipart-manifest=delete" => {
                        for s in segs {
                            objects.remove(&s);
                        }
                        response(StatusCode::OK, "")
                    }
                    Some(_) => response(StatusCode::NO_CONTENT, ""),
                    None => response(StatusCode::NOT_FOUND, ""),
                }
            }
            _ => response(StatusCode::METHOD_NOT_ALLOWED, ""),
        }
    }
}

struct Store(Arc<FakeStore>);

impl ObjectApi for Store {
    fn call(&self, req: Request<Body>) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.0.serve(req))
    }
}

/// Tokens are `<role>-<project>` (`member-p1`, `reader-p1`) or `admin`.
struct Tokens;

impl Authenticator for Tokens {
    fn identify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, AuthOutcome> {
        let outcome = match token {
            "admin" => AuthOutcome::Valid(Identity {
                user_id: "root".into(),
                project_id: Some("adminproject".into()),
                roles: vec!["admin".into()],
                is_admin: true,
            }),
            "down" => AuthOutcome::Unavailable,
            t => match t.split_once('-') {
                Some((role @ ("member" | "reader"), project)) => AuthOutcome::Valid(Identity {
                    user_id: format!("{role}-user-{project}"),
                    project_id: Some(project.into()),
                    roles: vec![role.into()],
                    is_admin: false,
                }),
                _ => AuthOutcome::Invalid,
            },
        };
        Box::pin(async move { outcome })
    }
}

struct Harness {
    service: ImagesService,
    store: Arc<FakeStore>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn harness_with(adjust: impl FnOnce(&mut ImagesConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ImagesConfig::new(dir.path().join("images.db"));
    config.segment_size = 1000;
    adjust(&mut config);
    let store = Arc::new(FakeStore::default());
    let service =
        ImagesService::new(config, Arc::new(Tokens), Arc::new(Store(store.clone()))).unwrap();
    Harness {
        service,
        store,
        _dir: dir,
    }
}

fn harness() -> Harness {
    harness_with(|_| {})
}

impl Harness {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Body,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = self.service.handle(req.body(body).unwrap()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn json(&self, method: &str, path: &str, token: &str, doc: Value) -> Answer {
        self.send(
            method,
            path,
            Some(token),
            Some("application/json"),
            apus_http::full(doc.to_string()),
        )
        .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send("GET", path, token, None, apus_http::empty())
            .await
    }

    async fn patch(&self, id: &str, token: &str, ops: Value) -> Answer {
        self.send(
            "PATCH",
            &format!("/v2/images/{id}"),
            Some(token),
            Some("application/openstack-images-v2.1-json-patch"),
            apus_http::full(ops.to_string()),
        )
        .await
    }

    async fn upload(&self, id: &str, token: &str, data: &[u8]) -> Answer {
        self.send(
            "PUT",
            &format!("/v2/images/{id}/file"),
            Some(token),
            Some("application/octet-stream"),
            apus_http::full(Bytes::copy_from_slice(data)),
        )
        .await
    }

    /// Creates an image as `token` and returns its id.
    async fn create(&self, token: &str, doc: Value) -> String {
        let a = self.json("POST", "/v2/images", token, doc).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        a.json()["id"].as_str().unwrap().to_string()
    }

    fn segment_paths(&self) -> Vec<String> {
        self.store
            .paths()
            .into_iter()
            .filter(|p| p.contains("images_segments/"))
            .collect()
    }
}

fn raw_image() -> Value {
    json!({"name": "cirros", "disk_format": "raw", "container_format": "bare"})
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn upload_is_segmented_hashed_and_read_back_whole() {
    let h = harness();
    let id = h.create("member-p1", raw_image()).await;
    let blob = data(4500);
    let a = h.upload(&id, "member-p1", &blob).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(
        h.segment_paths().len(),
        5,
        "1000-byte segments of 4500 bytes"
    );

    let image = h
        .get(&format!("/v2/images/{id}"), Some("member-p1"))
        .await
        .json();
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 4500);
    assert_eq!(image["checksum"], format!("{:x}", Md5::digest(&blob)));
    assert_eq!(image["os_hash_algo"], "sha512");
    assert_eq!(
        image["os_hash_value"],
        format!("{:x}", Sha512::digest(&blob))
    );

    let file = h
        .get(&format!("/v2/images/{id}/file"), Some("member-p1"))
        .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body.as_ref(), blob.as_slice());
    assert_eq!(
        file.headers["content-md5"].to_str().unwrap(),
        image["checksum"].as_str().unwrap()
    );
    assert_eq!(file.headers["content-type"], "application/octet-stream");

    // A second upload is a state error; the first data stays.
    let again = h.upload(&id, "member-p1", b"other").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert!(
        again.text().contains("from active to saving"),
        "{}",
        again.text()
    );

    // Deleting takes the manifest and every segment.
    let del = h
        .send(
            "DELETE",
            &format!("/v2/images/{id}"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert!(h.store.paths().is_empty(), "{:?}", h.store.paths());
    let gone = h.get(&format!("/v2/images/{id}"), Some("member-p1")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn empty_images_and_queued_downloads() {
    let h = harness();
    let id = h.create("member-p1", raw_image()).await;
    let queued = h
        .get(&format!("/v2/images/{id}/file"), Some("member-p1"))
        .await;
    assert_eq!(queued.status, StatusCode::NO_CONTENT, "no data yet");
    assert!(queued.body.is_empty(), "a 204 has no body");
    assert_eq!(
        h.upload(&id, "member-p1", b"").await.status,
        StatusCode::NO_CONTENT
    );
    let image = h
        .get(&format!("/v2/images/{id}"), Some("member-p1"))
        .await
        .json();
    assert_eq!(
        (image["status"].as_str(), image["size"].as_i64()),
        (Some("active"), Some(0))
    );
    assert_eq!(image["checksum"], "d41d8cd98f00b204e9800998ecf8427e");
    let file = h
        .get(&format!("/v2/images/{id}/file"), Some("member-p1"))
        .await;
    assert_eq!((file.status, file.body.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn uploads_are_refused_before_any_byte_is_stored_when_they_cannot_succeed() {
    let h = harness();
    // No formats yet.
    let id = h.create("member-p1", json!({"name": "x"})).await;
    let a = h.upload(&id, "member-p1", b"abc").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(
        a.text()
            .contains("disk_format, container_format must be set"),
        "{}",
        a.text()
    );
    // The wrong media type.
    let id = h.create("member-p1", raw_image()).await;
    let a = h
        .send(
            "PUT",
            &format!("/v2/images/{id}/file"),
            Some("member-p1"),
            Some("text/plain"),
            apus_http::full("abc"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Someone else's project, or a reader of the owner's.
    assert_eq!(
        h.upload(&id, "member-p2", b"abc").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.upload(&id, "reader-p1", b"abc").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(h.store.paths().is_empty());
}

#[tokio::test]
async fn an_image_over_the_cap_is_413_and_leaves_nothing_behind() {
    let h = harness_with(|c| c.image_size_cap = 2500);
    let id = h.create("member-p1", raw_image()).await;
    let a = h.upload(&id, "member-p1", &data(3000)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert!(h.segment_paths().is_empty(), "{:?}", h.store.paths());
    let image = h
        .get(&format!("/v2/images/{id}"), Some("member-p1"))
        .await
        .json();
    assert_eq!(
        image["status"], "queued",
        "back to queued, ready for another try"
    );
    assert_eq!(
        h.upload(&id, "member-p1", &data(2500)).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_client_that_fails_mid_upload_leaves_the_image_queued_and_no_segments() {
    let h = harness();
    let id = h.create("member-p1", raw_image()).await;
    let (tx, body) = apus_http::body::channel(4, None);
    let feeder = tokio::spawn(async move {
        tx.send(Bytes::from(data(1500))).await.unwrap();
        tx.abort(std::io::Error::other("connection reset")).await;
    });
    let a = h
        .send(
            "PUT",
            &format!("/v2/images/{id}/file"),
            Some("member-p1"),
            Some("application/octet-stream"),
            body,
        )
        .await;
    feeder.await.unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(h.segment_paths().is_empty(), "{:?}", h.store.paths());
    let image = h
        .get(&format!("/v2/images/{id}"), Some("member-p1"))
        .await
        .json();
    assert_eq!(image["status"], "queued");
}

#[tokio::test]
async fn create_validates_like_glance() {
    let h = harness();
    let cases: Vec<(Value, StatusCode)> = vec![
        (json!({"disk_format": "floppy"}), StatusCode::BAD_REQUEST),
        (json!({"container_format": "zip"}), StatusCode::BAD_REQUEST),
        (json!({"name": "n".repeat(256)}), StatusCode::BAD_REQUEST),
        (json!({"status": "active"}), StatusCode::FORBIDDEN),
        (json!({"checksum": "abc"}), StatusCode::FORBIDDEN),
        (json!({"self": "/x"}), StatusCode::FORBIDDEN),
        (
            json!({"location": "file:///etc/passwd"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"os_glance_importing_to_stores": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (json!({"k".repeat(256): "v"}), StatusCode::BAD_REQUEST),
        (json!({"arch": 64}), StatusCode::BAD_REQUEST),
        (json!({"min_ram": "lots"}), StatusCode::BAD_REQUEST),
        (json!({"min_disk": -1}), StatusCode::BAD_REQUEST),
        (json!({"protected": "yes"}), StatusCode::BAD_REQUEST),
        (json!({"id": "not-a-uuid"}), StatusCode::BAD_REQUEST),
        (json!({"tags": ["t".repeat(256)]}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "everyone"}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "public"}), StatusCode::FORBIDDEN),
        (json!({"owner": "p2"}), StatusCode::FORBIDDEN),
        (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST),
    ];
    for (doc, want) in cases {
        let a = h.json("POST", "/v2/images", "member-p1", doc.clone()).await;
        assert_eq!(a.status, want, "{doc}: {}", a.text());
    }
    let many: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("p{i}"), json!("v"))).collect();
    let a = h
        .json("POST", "/v2/images", "member-p1", Value::Object(many))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    let big = h
        .json(
            "POST",
            "/v2/images",
            "member-p1",
            json!({"blob": "x".repeat(200_000)}),
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let bad_json = h
        .send(
            "POST",
            "/v2/images",
            Some("member-p1"),
            Some("application/json"),
            apus_http::full("{nope"),
        )
        .await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(h.store.paths().is_empty());

    // Tokens.
    assert_eq!(
        h.get("/v2/images", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/v2/images", Some("forged")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/v2/images", Some("down")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reader = h.json("POST", "/v2/images", "reader-p1", raw_image()).await;
    assert_eq!(
        reader.status,
        StatusCode::FORBIDDEN,
        "a reader has no right to add images"
    );

    // What is accepted, and how it is shown.
    let id = "5a8e3d5c-1d8b-4f5e-9d63-2a1c0e7b6f10";
    let a = h
        .json("POST", "/v2/images", "member-p1", json!({"id": id, "name": "n", "min_ram": 512, "tags": ["a", "b"], "os_distro": "cirros", "visibility": "private", "protected": true}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let v = a.json();
    assert_eq!(a.headers["location"], format!("/v2/images/{id}").as_str());
    assert_eq!(v["id"], id);
    assert_eq!(v["owner"], "p1");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["min_ram"], 512);
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert_eq!(v["os_distro"], "cirros");
    assert_eq!(v["file"], format!("/v2/images/{id}/file"));
    assert!(v["size"].is_null() && v["checksum"].is_null());
    let dup = h
        .json("POST", "/v2/images", "member-p1", json!({"id": id}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let public = h
        .json(
            "POST",
            "/v2/images",
            "admin",
            json!({"visibility": "public"}),
        )
        .await;
    assert_eq!(public.status, StatusCode::CREATED, "admins publicize");
}

#[tokio::test]
async fn json_patches_follow_glance() {
    let h = harness();
    let id = h.create("member-p1", json!({"name": "a", "disk_format": "raw", "container_format": "bare", "arch": "x86_64"})).await;
    let ok = h
        .patch(
            &id,
            "member-p1",
            json!([
                {"op": "replace", "path": "/name", "value": "b"},
                {"op": "add", "path": "/os_distro", "value": "cirros"},
                {"op": "remove", "path": "/arch"},
                {"op": "replace", "path": "/min_disk", "value": 2},
                {"op": "add", "path": "/tags", "value": ["x"]},
            ]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let v = ok.json();
    assert_eq!(
        (
            v["name"].as_str(),
            v["os_distro"].as_str(),
            v["min_disk"].as_i64()
        ),
        (Some("b"), Some("cirros"), Some(2))
    );
    assert!(v.get("arch").is_none());
    assert_eq!(v["tags"], json!(["x"]));

    let cases: Vec<(Value, StatusCode)> = vec![
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/checksum", "value": "0"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/size", "value": 1}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/deleted", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/nothere", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "remove", "path": "/nothere"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "move", "path": "/name"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/name"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "name", "value": "x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/a/b", "value": "x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/disk_format", "value": "floppy"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            StatusCode::FORBIDDEN,
        ),
        (json!({"op": "replace"}), StatusCode::BAD_REQUEST),
    ];
    for (ops, want) in cases {
        let a = h.patch(&id, "member-p1", ops.clone()).await;
        assert_eq!(a.status, want, "{ops}: {}", a.text());
    }
    let wrong_type = h
        .send(
            "PATCH",
            &format!("/v2/images/{id}"),
            Some("member-p1"),
            Some("application/json"),
            apus_http::full("[]"),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(wrong_type.headers.contains_key("accept-patch"));
    // Draft 4: `add` of a present attribute is a conflict.
    let d4 = h
        .send(
            "PATCH",
            &format!("/v2/images/{id}"),
            Some("member-p1"),
            Some("application/openstack-images-v2.0-json-patch"),
            apus_http::full(json!([{"add": "/os_distro", "value": "x"}]).to_string()),
        )
        .await;
    assert_eq!(d4.status, StatusCode::CONFLICT);
    // Others may not patch; formats are fixed once data is in.
    assert_eq!(
        h.patch(&id, "member-p2", json!([])).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.patch(&id, "reader-p1", json!([])).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.upload(&id, "member-p1", b"data").await.status,
        StatusCode::NO_CONTENT
    );
    let fixed = h
        .patch(
            &id,
            "member-p1",
            json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::FORBIDDEN, "{}", fixed.text());
    let admin = h
        .patch(
            &id,
            "admin",
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK);
}

#[tokio::test]
async fn visibility_members_and_protection() {
    let h = harness();
    let private = h
        .create(
            "member-p1",
            json!({"name": "private", "visibility": "private"}),
        )
        .await;
    let shared = h.create("member-p1", json!({"name": "shared"})).await;
    let community = h
        .create(
            "member-p1",
            json!({"name": "community", "visibility": "community"}),
        )
        .await;
    let names = |a: &Answer| {
        let mut n: Vec<String> = a.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&h.get("/v2/images", Some("member-p1")).await),
        ["private", "shared", "community"]
            .iter()
            .map(|s| s.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert!(names(&h.get("/v2/images", Some("member-p2")).await).is_empty());
    assert_eq!(
        names(
            &h.get("/v2/images?visibility=community", Some("member-p2"))
                .await
        ),
        ["community"]
    );
    assert_eq!(
        h.get(&format!("/v2/images/{private}"), Some("member-p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/v2/images/{community}"), Some("member-p2"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.get(&format!("/v2/images/{shared}"), Some("member-p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/v2/images/{private}"), Some("admin"))
            .await
            .status,
        StatusCode::OK
    );

    // Members: only of shared images, added by the owner, accepted by the member.
    let not_shared = h
        .json(
            "POST",
            &format!("/v2/images/{private}/members"),
            "member-p1",
            json!({"member": "p2"}),
        )
        .await;
    assert_eq!(not_shared.status, StatusCode::FORBIDDEN);
    let add = h
        .json(
            "POST",
            &format!("/v2/images/{shared}/members"),
            "member-p1",
            json!({"member": "p2"}),
        )
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.text());
    assert_eq!(add.json()["status"], "pending");
    assert_eq!(add.json()["member_id"], "p2");
    let dup = h
        .json(
            "POST",
            &format!("/v2/images/{shared}/members"),
            "member-p1",
            json!({"member": "p2"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = h
        .json(
            "POST",
            &format!("/v2/images/{shared}/members"),
            "member-p1",
            json!({"who": "p2"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Pending: visible, not listed.
    assert_eq!(
        h.get(&format!("/v2/images/{shared}"), Some("member-p2"))
            .await
            .status,
        StatusCode::OK
    );
    assert!(names(&h.get("/v2/images", Some("member-p2")).await).is_empty());
    assert_eq!(
        names(
            &h.get("/v2/images?member_status=pending", Some("member-p2"))
                .await
        ),
        ["shared"]
    );
    // The owner cannot accept for the member; the member can.
    let path = format!("/v2/images/{shared}/members/p2");
    assert_eq!(
        h.json("PUT", &path, "member-p1", json!({"status": "accepted"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.json("PUT", &path, "member-p2", json!({"status": "maybe"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let accepted = h
        .json("PUT", &path, "member-p2", json!({"status": "accepted"}))
        .await;
    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(
        names(&h.get("/v2/images", Some("member-p2")).await),
        ["shared"]
    );
    let members = h
        .get(&format!("/v2/images/{shared}/members"), Some("member-p1"))
        .await
        .json();
    assert_eq!(members["members"][0]["status"], "accepted");
    assert_eq!(
        h.get(&path, Some("member-p3")).await.status,
        StatusCode::NOT_FOUND
    );
    // A member may read but not change or delete.
    assert_eq!(
        h.patch(&shared, "member-p2", json!([])).await.status,
        StatusCode::FORBIDDEN
    );
    let del = h
        .send("DELETE", &path, Some("member-p1"), None, apus_http::empty())
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/v2/images/{shared}"), Some("member-p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Protected images are not deleted, until unprotected.
    let p = h
        .patch(
            &private,
            "member-p1",
            json!([{"op": "replace", "path": "/protected", "value": true}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let del = h
        .send(
            "DELETE",
            &format!("/v2/images/{private}"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::FORBIDDEN);
    assert!(del.text().contains("is protected"), "{}", del.text());
    h.patch(
        &private,
        "member-p1",
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
    let del = h
        .send(
            "DELETE",
            &format!("/v2/images/{private}"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);

    // Tags.
    let tag = h
        .send(
            "PUT",
            &format!("/v2/images/{shared}/tags/blue%20one"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(tag.status, StatusCode::NO_CONTENT);
    let v = h
        .get(&format!("/v2/images/{shared}"), Some("member-p1"))
        .await
        .json();
    assert_eq!(v["tags"], json!(["blue one"]));
    let untag = h
        .send(
            "DELETE",
            &format!("/v2/images/{shared}/tags/red"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(untag.status, StatusCode::NOT_FOUND);
}

async fn count(h: &Harness, q: &str) -> usize {
    let a = h
        .get(&format!("/v2/images?limit=10&{q}"), Some("member-p1"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.text());
    a.json()["images"].as_array().unwrap().len()
}

#[tokio::test]
async fn listings_filter_sort_and_page() {
    let h = harness_with(|c| c.limit_param_default = 2);
    let mut ids = Vec::new();
    for (name, format, tag) in [
        ("d", "raw", "t"),
        ("b", "qcow2", "t"),
        ("a", "raw", "u"),
        ("c", "iso", "t"),
    ] {
        ids.push(
            h.create(
                "member-p1",
                json!({"name": name, "disk_format": format, "tags": [tag], "flavor": name}),
            )
            .await,
        );
    }
    let page = h
        .get("/v2/images?sort=name:asc", Some("member-p1"))
        .await
        .json();
    let names: Vec<&str> = page["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "the default limit");
    let next = page["next"].as_str().unwrap().to_string();
    assert!(next.contains("marker="), "{next}");
    assert_eq!(page["first"], "/v2/images?sort=name:asc");
    let page2 = h.get(&next, Some("member-p1")).await.json();
    let names: Vec<&str> = page2["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "d"]);
    let page3 = h
        .get(page2["next"].as_str().unwrap(), Some("member-p1"))
        .await
        .json();
    assert!(page3["images"].as_array().unwrap().is_empty() && page3.get("next").is_none());

    assert_eq!(count(&h, "disk_format=raw").await, 2);
    assert_eq!(count(&h, "disk_format=in:raw,iso").await, 3);
    assert_eq!(count(&h, "tag=t").await, 3);
    assert_eq!(count(&h, "flavor=b").await, 1);
    assert_eq!(count(&h, "name=zz").await, 0);
    assert_eq!(count(&h, "sort_key=name&sort_dir=desc").await, 4);

    for bad in [
        "sort_key=bogus",
        "sort_dir=sideways",
        "limit=-1",
        "limit=x",
        "marker=nope",
        "visibility=odd",
        "sort=name&sort_key=size",
        "changes-since=2020",
    ] {
        let a = h.get(&format!("/v2/images?{bad}"), Some("member-p1")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.text());
    }
}

#[tokio::test]
async fn v1_listings_versions_and_schemas() {
    let h = harness();
    let public = h.create("admin", json!({"name": "natty-uec", "disk_format": "ami", "container_format": "ami", "visibility": "public", "type": "raw"})).await;
    let _queued = h
        .create("admin", json!({"name": "queued", "visibility": "public"}))
        .await;
    let mine = h.create("member-p1", raw_image()).await;
    assert_eq!(
        h.upload(&public, "admin", b"ami bytes").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.upload(&mine, "member-p1", b"mine").await.status,
        StatusCode::NO_CONTENT
    );

    // The seed's `curl http://localhost:9292/images`: active public images, briefly.
    let anon = h.get("/images", None).await;
    assert_eq!(anon.status, StatusCode::OK);
    let v = anon.json();
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
    let first = &v["images"][0];
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "checksum",
            "container_format",
            "disk_format",
            "id",
            "name",
            "size"
        ]
    );
    assert_eq!(first["name"], "natty-uec");
    assert_eq!(first["size"], 9);
    // With a token, the caller's own too; the detail adds v1's fields.
    let detail = h.get("/v1/images/detail", Some("member-p1")).await.json();
    assert_eq!(detail["images"].as_array().unwrap().len(), 2);
    let natty = detail["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "natty-uec")
        .unwrap();
    assert_eq!(natty["is_public"], true);
    assert_eq!(natty["properties"], json!({"type": "raw"}));
    assert_eq!(natty["deleted"], false);
    assert_eq!(natty["status"], "active");

    let versions = h.get("/", None).await;
    assert_eq!(versions.status, StatusCode::MULTIPLE_CHOICES);
    let v = versions.json();
    assert!(v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["status"] == "CURRENT"));
    assert_eq!(h.get("/versions", None).await.status, StatusCode::OK);

    let schema = h.get("/v2/schemas/image", Some("reader-p1")).await.json();
    assert_eq!(schema["name"], "image");
    assert_eq!(schema["properties"]["status"]["readOnly"], true);
    assert!(schema["properties"]["disk_format"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("qcow2")));
    assert_eq!(
        h.get("/v2/schemas/images", Some("reader-p1")).await.json()["name"],
        "images"
    );
    assert_eq!(
        h.get("/v2/schemas/image", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/v2/nothing", Some("reader-p1")).await.status,
        StatusCode::NOT_FOUND
    );
    let wrong = h
        .send(
            "DELETE",
            "/v2/images",
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn deactivated_images_serve_no_data_but_to_admins() {
    let h = harness();
    let id = h.create("member-p1", raw_image()).await;
    assert_eq!(
        h.upload(&id, "member-p1", b"bytes").await.status,
        StatusCode::NO_CONTENT
    );
    let act = |a: &'static str| format!("/v2/images/{id}/actions/{a}");
    let off = h
        .send(
            "POST",
            &act("deactivate"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/v2/images/{id}/file"), Some("member-p1"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get(&format!("/v2/images/{id}/file"), Some("admin"))
            .await
            .status,
        StatusCode::OK
    );
    let on = h
        .send(
            "POST",
            &act("reactivate"),
            Some("member-p1"),
            None,
            apus_http::empty(),
        )
        .await;
    assert_eq!(on.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/v2/images/{id}/file"), Some("member-p1"))
            .await
            .body
            .as_ref(),
        b"bytes"
    );
}
