//! The HTTP surface of `apus images`: Glance's v2 image API, the version
//! document, the schemas, and the v1 listings (`GET /images`,
//! `GET /images/detail`).
//!
//! Who may do what follows Glance's default policy: any valid token may
//! read what it can see (its project's images, public and community ones,
//! shared ones it is a member of); members of the owning project (a
//! member role) may change and delete; only admins make images public or
//! give them to another owner. An image the caller cannot see is a 404,
//! one it can see but not change a 403.

use std::collections::BTreeMap;
use std::sync::Arc;

use apus_core::Timestamp;
use apus_http::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::catalog::{self, CatalogError, Image, Member};
use crate::data::UploadError;
use crate::{schema, AuthOutcome, Authenticator, Identity, ImagesConfig, ObjectApi, Shared};

/// The largest JSON request body (oslo's request size limit).
const MAX_JSON_BODY: usize = 114_688;
/// Custom property values are kept to what a TEXT column of Glance's
/// MySQL catalog holds.
const MAX_PROPERTY_VALUE: usize = 65_535;

/// Attributes a client may never send.
const DISALLOWED: &[&str] = &["direct_url", "self", "file", "schema", "stores"];
/// Attributes the service sets.
const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];
const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];
const RESERVED_NAMESPACE: &str = "os_glance";
const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
];
const PATCH_TYPES: &str =
    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

type Resp = Response<Body>;

/// An error answer: Glance's status and explanation.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        )
    }
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    fn read_only(attr: &str) -> Self {
        Self::forbidden(format!("Attribute '{attr}' is read-only."))
    }
    fn reserved(attr: &str) -> Self {
        Self::forbidden(format!("Attribute '{attr}' is reserved."))
    }
    fn not_permitted(action: &str) -> Self {
        Self::forbidden(format!(
            "You are not authorized to complete {action} action."
        ))
    }

    fn into_response(self) -> Resp {
        let reason = self.status.canonical_reason().unwrap_or("");
        let text = format!(
            "{} {reason}\n\n{}\n\n   ",
            self.status.as_u16(),
            self.message
        );
        let mut resp = Response::new(apus_http::full(text));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        tracing::error!(error = %e, "image catalog failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The image catalog failed; see the server's log.",
        )
    }
}

type Result<T> = std::result::Result<T, ApiError>;

fn json_response(status: StatusCode, value: &Value) -> Resp {
    let mut resp = Response::new(apus_http::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn no_content() -> Resp {
    let mut resp = Response::new(apus_http::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn now_ticks() -> i64 {
    i64::try_from(Timestamp::now().ticks()).unwrap_or(i64::MAX)
}

/// `2026-12-07T06:30:00Z`, the v2 form of a time.
fn iso_v2(ticks: i64) -> String {
    let ts = Timestamp::from_ticks(u64::try_from(ticks).unwrap_or(0), 0);
    match ts {
        Some(ts) => format!("{}Z", &ts.isoformat()[..19]),
        None => String::new(),
    }
}

/// `2026-12-07T06:30:00.123450`, the v1 form.
fn iso_v1(ticks: i64) -> String {
    Timestamp::from_ticks(u64::try_from(ticks).unwrap_or(0), 0)
        .map(|ts| ts.isoformat())
        .unwrap_or_default()
}

/// A random (version 4) UUID.
fn new_uuid() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The query string as ordered (name, value) pairs, form-decoded.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let decode = |s: &str| {
            String::from_utf8(apus_proto::path::unquote_bytes(&s.replace('+', " ")))
                .map_err(|_| ApiError::bad_request("The query string is not valid UTF-8."))
        };
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

/// The service: a `Handler` for `apus_http::serve`.
pub struct ImagesService {
    shared: Arc<Shared>,
}

impl ImagesService {
    pub fn new(
        config: ImagesConfig,
        auth: Arc<dyn Authenticator>,
        objects: Arc<dyn ObjectApi>,
    ) -> std::result::Result<Self, CatalogError> {
        let catalog = catalog::Catalog::open(&config.db_path)?;
        Ok(ImagesService {
            shared: Arc::new(Shared {
                config,
                catalog,
                auth,
                objects,
            }),
        })
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Resp
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        tracing::info!(target: "apus_images", %method, %path, status = resp.status().as_u16());
        resp
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Resp>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let method = req.method().clone();
        let allow = |methods: &'static str| -> Result<Resp> {
            let mut e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            );
            e.headers
                .push((header::ALLOW, HeaderValue::from_static(methods)));
            Err(e)
        };
        match (segs.as_slice(), &method) {
            ([] | [""], &Method::GET) => Ok(self.versions(&req, StatusCode::MULTIPLE_CHOICES)),
            (["versions"], &Method::GET) => Ok(self.versions(&req, StatusCode::OK)),
            (["v2"], &Method::GET) => Ok(self.versions(&req, StatusCode::MULTIPLE_CHOICES)),
            (["healthcheck"], &Method::GET | &Method::HEAD) => {
                Ok(Response::new(apus_http::full("OK")))
            }
            (["images"] | ["v1", "images"], &Method::GET | &Method::HEAD) => {
                self.v1_list(&req, false).await
            }
            (["images", "detail"] | ["v1", "images", "detail"], &Method::GET | &Method::HEAD) => {
                self.v1_list(&req, true).await
            }
            (["v2", "schemas", which], &Method::GET) => {
                self.identify(&req).await?;
                let doc = match *which {
                    "image" => schema::image(&self.shared.config),
                    "images" => schema::images(&self.shared.config),
                    "member" => schema::member(),
                    "members" => schema::members(),
                    _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "No such schema.")),
                };
                Ok(json_response(StatusCode::OK, &doc))
            }
            (["v2", "images"], &Method::GET) => {
                let who = self.identify(&req).await?;
                self.list(&who, req.uri().query()).await
            }
            (["v2", "images"], &Method::POST) => {
                let who = self.identify(&req).await?;
                let body = read_json(req).await?;
                self.create(&who, body).await
            }
            (["v2", "images"], _) => allow("GET, POST"),
            (["v2", "images", id], &Method::GET) => {
                let who = self.identify(&req).await?;
                let image = self.visible(&who, id).await?;
                Ok(json_response(StatusCode::OK, &image_view(&image)))
            }
            (["v2", "images", id], &Method::PATCH) => {
                let who = self.identify(&req).await?;
                let id = id.to_string();
                let draft = patch_draft(&req)?;
                let body = read_json(req).await?;
                self.update(&who, &id, draft, body).await
            }
            (["v2", "images", id], &Method::DELETE) => {
                let who = self.identify(&req).await?;
                self.delete(&who, id).await
            }
            (["v2", "images", _], _) => allow("GET, PATCH, DELETE"),
            (["v2", "images", id, "file"], &Method::PUT) => {
                let who = self.identify(&req).await?;
                let id = id.to_string();
                self.upload(&who, &id, req).await
            }
            (["v2", "images", id, "file"], &Method::GET) => {
                let who = self.identify(&req).await?;
                let id = id.to_string();
                self.download(&who, &id, req.headers().get(header::RANGE))
                    .await
            }
            (["v2", "images", _, "file"], _) => allow("GET, PUT"),
            (["v2", "images", id, "tags", tag], &Method::PUT | &Method::DELETE) => {
                let who = self.identify(&req).await?;
                let tag = apus_proto::path::percent_decode(tag)
                    .map_err(|_| ApiError::bad_request("The tag is not valid UTF-8."))?;
                self.tag(&who, id, &tag, method == Method::PUT).await
            }
            (["v2", "images", _, "tags", _], _) => allow("PUT, DELETE"),
            (["v2", "images", id, "members"], &Method::GET) => {
                let who = self.identify(&req).await?;
                self.list_members(&who, id).await
            }
            (["v2", "images", id, "members"], &Method::POST) => {
                let who = self.identify(&req).await?;
                let id = id.to_string();
                let body = read_json(req).await?;
                self.add_member(&who, &id, body).await
            }
            (["v2", "images", _, "members"], _) => allow("GET, POST"),
            (["v2", "images", id, "members", member], &Method::GET) => {
                let who = self.identify(&req).await?;
                self.show_member(&who, id, member).await
            }
            (["v2", "images", id, "members", member], &Method::PUT) => {
                let who = self.identify(&req).await?;
                let (id, member) = (id.to_string(), member.to_string());
                let body = read_json(req).await?;
                self.update_member(&who, &id, &member, body).await
            }
            (["v2", "images", id, "members", member], &Method::DELETE) => {
                let who = self.identify(&req).await?;
                self.remove_member(&who, id, member).await
            }
            (["v2", "images", _, "members", _], _) => allow("GET, PUT, DELETE"),
            (["v2", "images", id, "actions", action], &Method::POST) => {
                let who = self.identify(&req).await?;
                self.action(&who, id, action).await
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "The resource could not be found.",
            )),
        }
    }

    /// The version document: every v2 minor version apus answers.
    fn versions<B>(&self, req: &Request<B>, status: StatusCode) -> Resp {
        let base = match &self.shared.config.public_endpoint {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost:9292");
                format!("http://{host}")
            }
        };
        let href = format!("{base}/v2/");
        let mut versions = Vec::new();
        for (minor, current) in [
            (17, true),
            (15, false),
            (9, false),
            (7, false),
            (6, false),
            (5, false),
            (4, false),
            (3, false),
            (2, false),
            (1, false),
            (0, false),
        ] {
            versions.push(json!({
                "id": format!("v2.{minor}"),
                "status": if current { "CURRENT" } else { "SUPPORTED" },
                "links": [{ "rel": "self", "href": href }],
            }));
        }
        json_response(status, &json!({ "versions": versions }))
    }

    async fn identify<B>(&self, req: &Request<B>) -> Result<Identity> {
        let token = req
            .headers()
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "This server could not verify that you are authorized to access the \
                 document you requested.",
            ));
        };
        match self.shared.auth.identify(token).await {
            AuthOutcome::Valid(who) => Ok(who),
            AuthOutcome::Invalid => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "The token is not valid.",
            )),
            AuthOutcome::Unavailable => Err(ApiError::unavailable(
                "The identity service could not be reached.",
            )),
        }
    }

    async fn load(&self, id: &str) -> Result<Option<Image>> {
        let id = id.to_string();
        Ok(self
            .shared
            .catalog
            .run(move |c| catalog::get_image(c, &id))
            .await?)
    }

    /// The image if `who` may see it, else 404.
    async fn visible(&self, who: &Identity, id: &str) -> Result<Image> {
        let image = self
            .load(id)
            .await?
            .ok_or_else(|| ApiError::not_found(id))?;
        if can_see(&image, who, self.membership(who, id).await?.as_deref()) {
            Ok(image)
        } else {
            Err(ApiError::not_found(id))
        }
    }

    /// The image if `who` may change it: 404 when it cannot see it, 403
    /// when it can see but not change it.
    async fn modifiable(&self, who: &Identity, id: &str, action: &str) -> Result<Image> {
        let image = self.visible(who, id).await?;
        if who.is_admin
            || (is_owner(&image, who) && who.is_member(&self.shared.config.member_roles))
        {
            Ok(image)
        } else {
            Err(ApiError::not_permitted(action))
        }
    }

    async fn membership(&self, who: &Identity, id: &str) -> Result<Option<String>> {
        let Some(project) = who.project_id.clone() else {
            return Ok(None);
        };
        let id = id.to_string();
        Ok(self
            .shared
            .catalog
            .run(move |c| Ok(catalog::member(c, &id, &project)?.map(|m| m.status)))
            .await?)
    }

    async fn save(&self, image: Image) -> Result<Image> {
        let id = image.id.clone();
        let saved = image.clone();
        let found = self
            .shared
            .catalog
            .run(move |c| catalog::save_image(c, &saved))
            .await?;
        if found {
            Ok(image)
        } else {
            Err(ApiError::not_found(&id))
        }
    }

    async fn create(&self, who: &Identity, body: Value) -> Result<Resp> {
        let Value::Object(mut body) = body else {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            ));
        };
        let config = &self.shared.config;
        for key in DISALLOWED {
            if body.contains_key(*key) {
                return Err(ApiError::read_only(key));
            }
        }
        if !who.is_member(&config.member_roles) {
            return Err(ApiError::not_permitted("add_image"));
        }
        let now = now_ticks();
        let id = match body.remove("id") {
            Some(Value::String(id)) if is_uuid(&id) => id.to_lowercase(),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Provided object does not match schema 'image': {other} is not a valid image id"
                )))
            }
            None => new_uuid().map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("no randomness: {e}"),
                )
            })?,
        };
        let mut image = Image {
            id: id.clone(),
            status: "queued".into(),
            visibility: "shared".into(),
            owner: who.project_id.clone(),
            created_at: now,
            updated_at: now,
            ..Image::default()
        };
        let tags = body.remove("tags");
        for (key, value) in body {
            if READ_ONLY.contains(&key.as_str()) {
                return Err(ApiError::read_only(&key));
            }
            set_attribute(&mut image, &key, value, who, config)?;
        }
        if let Some(tags) = tags {
            image.tags = parse_tags(tags)?;
        }
        check_quotas(&image, config)?;
        if image.owner.is_none() && !who.is_admin {
            return Err(ApiError::not_permitted("add_image"));
        }
        let record = image.clone();
        let inserted = self
            .shared
            .catalog
            .run(move |c| catalog::insert_image(c, &record))
            .await?;
        if !inserted {
            return Err(ApiError::conflict(format!(
                "An image with identifier {id} already exists"
            )));
        }
        let mut resp = json_response(StatusCode::CREATED, &image_view(&image));
        if let Ok(v) = HeaderValue::from_str(&format!("/v2/images/{id}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    async fn update(&self, who: &Identity, id: &str, draft: u8, body: Value) -> Result<Resp> {
        let Value::Array(ops) = body else {
            return Err(ApiError::bad_request(
                "Request body must be a JSON array of operation objects.",
            ));
        };
        let changes = ops
            .into_iter()
            .map(|op| parse_change(op, draft))
            .collect::<Result<Vec<_>>>()?;
        let mut image = self.modifiable(who, id, "modify_image").await?;
        let config = &self.shared.config;
        for change in changes {
            apply_change(&mut image, change, draft, who, config)?;
        }
        check_quotas(&image, config)?;
        image.updated_at = now_ticks();
        let image = self.save(image).await?;
        Ok(json_response(StatusCode::OK, &image_view(&image)))
    }

    async fn delete(&self, who: &Identity, id: &str) -> Result<Resp> {
        let image = self.modifiable(who, id, "delete_image").await?;
        if image.protected {
            return Err(ApiError::forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        let key = id.to_string();
        let removed = self
            .shared
            .catalog
            .run(move |c| catalog::delete_image(c, &key))
            .await?;
        if !removed {
            return Err(ApiError::not_found(id));
        }
        // An upload still running finds the record gone and removes what
        // it stored itself.
        if image.status != "saving" {
            if let Err(e) = self.shared.remove_data(id, image.segments).await {
                tracing::warn!(image = id, error = %e, "data of a deleted image not removed");
            }
        }
        Ok(no_content())
    }

    async fn upload<B>(&self, who: &Identity, id: &str, req: Request<B>) -> Result<Resp>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if content_type != "application/octet-stream" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content type {content_type:?} is not supported: send application/octet-stream"
                ),
            ));
        }
        let image = self.modifiable(who, id, "upload_image").await?;
        if image.status != "queued" {
            return Err(ApiError::conflict(format!(
                "Image status transition from {} to saving is not allowed",
                image.status
            )));
        }
        let missing: Vec<&str> = [
            ("disk_format", image.disk_format.is_none()),
            ("container_format", image.container_format.is_none()),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| n)
        .collect();
        match missing.len() {
            0 => {}
            1 => {
                return Err(ApiError::bad_request(format!(
                    "Property {} must be set prior to saving data.",
                    missing[0]
                )))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Properties {} must be set prior to saving data.",
                    missing.join(", ")
                )))
            }
        }
        let config = &self.shared.config;
        let cap = config.image_size_cap;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap) {
            return Err(ApiError::too_large(format!(
                "Image exceeds the storage quota: {cap} bytes at most"
            )));
        }
        let key = id.to_string();
        let started = self
            .shared
            .catalog
            .run(move |c| catalog::transition(c, &key, "queued", "saving", now_ticks()))
            .await?;
        if !started {
            return Err(ApiError::conflict(
                "Image status transition from saving to saving is not allowed",
            ));
        }
        let stored = self.shared.store_data(id, req.into_body()).await;
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                let key = id.to_string();
                let _ = self
                    .shared
                    .catalog
                    .run(move |c| catalog::transition(c, &key, "saving", "queued", now_ticks()))
                    .await;
                return Err(match e {
                    UploadError::TooLarge(_) => ApiError::too_large(e.to_string()),
                    UploadError::Client(_) => ApiError::bad_request(e.to_string()),
                    UploadError::Store(_) => {
                        tracing::error!(image = id, error = %e, "image upload failed");
                        ApiError::unavailable("The image data could not be stored.")
                    }
                });
            }
        };
        let key = id.to_string();
        let (size, checksum, hash, segments) = (
            i64::try_from(stored.size).unwrap_or(i64::MAX),
            stored.checksum.clone(),
            stored.sha512.clone(),
            i64::try_from(stored.segments).unwrap_or(i64::MAX),
        );
        let activated = self
            .shared
            .catalog
            .run(move |c| {
                catalog::activate(
                    c,
                    &key,
                    size,
                    &checksum,
                    "sha512",
                    &hash,
                    segments,
                    now_ticks(),
                )
            })
            .await?;
        if !activated {
            let _ = self.shared.remove_data(id, segments).await;
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("Image {id} could not be found after upload. The image may have been deleted during the upload."),
            ));
        }
        Ok(no_content())
    }

    async fn download(
        &self,
        who: &Identity,
        id: &str,
        range: Option<&HeaderValue>,
    ) -> Result<Resp> {
        let image = self.visible(who, id).await?;
        if image.status == "deactivated" && !who.is_admin {
            return Err(ApiError::forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ));
        }
        if image.status != "active" && image.status != "deactivated" {
            // No data yet: Glance's 204, which carries no body.
            return Ok(no_content());
        }
        let stored = self.shared.read_data(id, range).await.map_err(|e| {
            tracing::error!(image = id, error = %e, "image data unreadable");
            ApiError::unavailable("The image data could not be read.")
        })?;
        let (parts, body) = stored.into_parts();
        let mut resp = Response::new(body);
        *resp.status_mut() = parts.status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        for name in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        if parts.status == StatusCode::OK {
            if let Some(v) = image
                .checksum
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
            {
                headers.insert("content-md5", v);
            }
        }
        Ok(resp)
    }

    async fn tag(&self, who: &Identity, id: &str, tag: &str, add: bool) -> Result<Resp> {
        let mut image = self.modifiable(who, id, "modify_image").await?;
        if add {
            if tag.chars().count() > 255 {
                return Err(ApiError::bad_request(
                    "Provided object does not match schema 'image': tags are at most 255 characters",
                ));
            }
            image.tags.insert(tag.to_string());
            check_quotas(&image, &self.shared.config)?;
        } else if !image.tags.remove(tag) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Tag {tag} not found"),
            ));
        }
        image.updated_at = now_ticks();
        self.save(image).await?;
        Ok(no_content())
    }

    async fn list_members(&self, who: &Identity, id: &str) -> Result<Resp> {
        let image = self.visible(who, id).await?;
        if image.visibility != "shared" {
            return Err(ApiError::forbidden("Only shared images have members."));
        }
        let key = id.to_string();
        let members = self
            .shared
            .catalog
            .run(move |c| catalog::members(c, &key))
            .await?;
        let owner = who.is_admin || is_owner(&image, who);
        let list: Vec<Value> = members
            .iter()
            .filter(|m| owner || who.project_id.as_deref() == Some(m.member.as_str()))
            .map(member_view)
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "members": list, "schema": "/v2/schemas/members" }),
        ))
    }

    async fn add_member(&self, who: &Identity, id: &str, body: Value) -> Result<Resp> {
        let image = self.modifiable(who, id, "add_member").await?;
        if image.visibility != "shared" {
            return Err(ApiError::forbidden("Only shared images have members."));
        }
        let member = match body.get("member") {
            Some(Value::String(m)) if !m.is_empty() && m.chars().count() <= 255 => m.clone(),
            _ => return Err(ApiError::bad_request("Member to be added not specified")),
        };
        let now = now_ticks();
        let record = Member {
            image_id: id.to_string(),
            member: member.clone(),
            status: "pending".into(),
            created_at: now,
            updated_at: now,
        };
        let quota = i64::try_from(self.shared.config.image_member_quota).unwrap_or(i64::MAX);
        let added = {
            let record = record.clone();
            self.shared
                .catalog
                .run(move |c| {
                    if catalog::count_members(c, &record.image_id)? >= quota {
                        return Ok(None);
                    }
                    Ok(Some(catalog::add_member(c, &record)?))
                })
                .await?
        };
        match added {
            None => Err(ApiError::too_large(
                "The limit has been exceeded on the number of allowed image members for this image.",
            )),
            Some(false) => Err(ApiError::conflict(format!(
                "Member {member} already associated with image {id}"
            ))),
            Some(true) => Ok(json_response(StatusCode::OK, &member_view(&record))),
        }
    }

    async fn find_member(&self, who: &Identity, id: &str, member: &str) -> Result<(Image, Member)> {
        let image = self.visible(who, id).await?;
        if image.visibility != "shared" {
            return Err(ApiError::forbidden("Only shared images have members."));
        }
        let (key, m) = (id.to_string(), member.to_string());
        let found = self
            .shared
            .catalog
            .run(move |c| catalog::member(c, &key, &m))
            .await?;
        let visible_to = |m: &Member| {
            who.is_admin || is_owner(&image, who) || who.project_id.as_deref() == Some(&m.member)
        };
        match found {
            Some(m) if visible_to(&m) => Ok((image, m)),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{member} is not a member of image {id}"),
            )),
        }
    }

    async fn show_member(&self, who: &Identity, id: &str, member: &str) -> Result<Resp> {
        let (_, m) = self.find_member(who, id, member).await?;
        Ok(json_response(StatusCode::OK, &member_view(&m)))
    }

    async fn update_member(
        &self,
        who: &Identity,
        id: &str,
        member: &str,
        body: Value,
    ) -> Result<Resp> {
        let (_, mut m) = self.find_member(who, id, member).await?;
        if who.project_id.as_deref() != Some(member) {
            return Err(ApiError::not_permitted("modify_member"));
        }
        let status = match body.get("status") {
            Some(Value::String(s)) if ["pending", "accepted", "rejected"].contains(&s.as_str()) => {
                s.clone()
            }
            _ => {
                return Err(ApiError::bad_request(
                    "Status must be one of pending, accepted, rejected",
                ))
            }
        };
        let now = now_ticks();
        let (key, mem, st) = (id.to_string(), member.to_string(), status.clone());
        self.shared
            .catalog
            .run(move |c| catalog::set_member_status(c, &key, &mem, &st, now))
            .await?;
        m.status = status;
        m.updated_at = now;
        Ok(json_response(StatusCode::OK, &member_view(&m)))
    }

    async fn remove_member(&self, who: &Identity, id: &str, member: &str) -> Result<Resp> {
        let (image, _) = self.find_member(who, id, member).await?;
        if !(who.is_admin
            || (is_owner(&image, who) && who.is_member(&self.shared.config.member_roles)))
        {
            return Err(ApiError::not_permitted("delete_member"));
        }
        let (key, mem) = (id.to_string(), member.to_string());
        self.shared
            .catalog
            .run(move |c| catalog::remove_member(c, &key, &mem))
            .await?;
        Ok(no_content())
    }

    async fn action(&self, who: &Identity, id: &str, action: &str) -> Result<Resp> {
        let (from, to, policy) = match action {
            "deactivate" => ("active", "deactivated", "deactivate"),
            "reactivate" => ("deactivated", "active", "reactivate"),
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "The resource could not be found.",
                ))
            }
        };
        let mut image = self.modifiable(who, id, policy).await?;
        if image.status == to {
            return Ok(no_content());
        }
        if image.status != from {
            return Err(ApiError::forbidden(format!(
                "Not allowed to {action} image in status '{}'",
                image.status
            )));
        }
        image.status = to.into();
        image.updated_at = now_ticks();
        self.save(image).await?;
        Ok(no_content())
    }

    /// The images `who` may list under `params`, sorted and paged, and
    /// the next page's marker.
    async fn select(
        &self,
        who: Option<&Identity>,
        params: &[(String, String)],
        v1: bool,
    ) -> Result<(Vec<Image>, Option<String>)> {
        let config = &self.shared.config;
        let mut limit = config.limit_param_default;
        let mut marker = None;
        let mut member_status = "accepted".to_string();
        let mut visibility = None;
        let mut os_hidden = false;
        let mut tags = Vec::new();
        let mut sort: Option<String> = None;
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        let mut filters: Vec<(String, String)> = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request("limit param must be an integer"))?;
                    if n < 0 {
                        return Err(ApiError::bad_request("limit param must be positive"));
                    }
                    limit = usize::try_from(n).unwrap_or(usize::MAX);
                }
                "marker" => marker = Some(v.clone()),
                "member_status" => {
                    if !["pending", "accepted", "rejected", "all"].contains(&v.as_str()) {
                        return Err(ApiError::bad_request(format!("Invalid status: {v}")));
                    }
                    member_status = v.clone();
                }
                "visibility" => {
                    if !["community", "public", "private", "shared", "all"].contains(&v.as_str()) {
                        return Err(ApiError::bad_request(format!(
                            "Invalid visibility value: {v}"
                        )));
                    }
                    visibility = Some(v.clone());
                }
                "os_hidden" => {
                    os_hidden = parse_bool_filter(v)?;
                }
                "tag" => tags.push(v.trim().to_string()),
                "sort" => sort = Some(v.clone()),
                "sort_key" => sort_keys.push(v.trim().to_string()),
                "sort_dir" => sort_dirs.push(v.trim().to_string()),
                "changes-since" => {
                    return Err(ApiError::bad_request(
                        "The \"changes-since\" filter is no longer available on v2.",
                    ))
                }
                // v1 spelled it `is_public`.
                "is_public" if v1 => {}
                _ => filters.push((k.clone(), v.clone())),
            }
        }
        limit = limit.min(config.api_limit_max);
        let order = sort_order(sort, sort_keys, sort_dirs)?;

        let project = who.and_then(|w| w.project_id.clone());
        let all = {
            let project = project.clone();
            self.shared
                .catalog
                .run(move |c| {
                    let images = catalog::all_images(c)?;
                    let memberships = match &project {
                        Some(p) => catalog::memberships(c, p)?,
                        None => BTreeMap::new(),
                    };
                    Ok((images, memberships))
                })
                .await?
        };
        let (images, memberships) = all;
        let needs_details = !tags.is_empty() || filters.iter().any(|(k, _)| !is_base_filter(k));
        let mut candidates: Vec<Image> = Vec::new();
        for image in images {
            let member_ok = memberships
                .get(&image.id)
                .is_some_and(|s| member_status == "all" || *s == member_status);
            if !listed(&image, who, visibility.as_deref(), member_ok) {
                continue;
            }
            if image.os_hidden != os_hidden {
                continue;
            }
            if v1 && image.status != "active" {
                continue;
            }
            if !base_filters_match(&image, &filters)? {
                continue;
            }
            candidates.push(image);
        }
        if needs_details {
            candidates = self
                .with_details(candidates)
                .await?
                .into_iter()
                .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
                .filter(|i| {
                    filters
                        .iter()
                        .filter(|(k, _)| !is_base_filter(k))
                        .all(|(k, v)| i.properties.get(k) == Some(v))
                })
                .collect();
        }
        candidates.sort_by(|a, b| compare(a, b, &order));
        let start = match &marker {
            None => 0,
            Some(m) => match candidates.iter().position(|i| &i.id == m) {
                Some(p) => p + 1,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Image with identifier {m} not found"
                    )))
                }
            },
        };
        let mut page: Vec<Image> = candidates.into_iter().skip(start).take(limit).collect();
        let next = (limit > 0 && page.len() == limit)
            .then(|| page.last().map(|i| i.id.clone()))
            .flatten();
        if !needs_details {
            page = self.with_details(page).await?;
        }
        Ok((page, next))
    }

    /// `images` with their properties and tags loaded.
    async fn with_details(&self, mut images: Vec<Image>) -> Result<Vec<Image>> {
        Ok(self
            .shared
            .catalog
            .run(move |c| {
                for image in &mut images {
                    catalog::fill_details(c, image)?;
                }
                Ok(images)
            })
            .await?)
    }

    async fn list(&self, who: &Identity, query: Option<&str>) -> Result<Resp> {
        let params = query_pairs(query)?;
        let (page, next) = self.select(Some(who), &params, false).await?;
        let kept: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("marker="))
            .collect();
        let mut body = json!({
            "images": page.iter().map(image_view).collect::<Vec<_>>(),
            "first": if kept.is_empty() { "/v2/images".to_string() } else { format!("/v2/images?{}", kept.join("&")) },
            "schema": "/v2/schemas/images",
        });
        if let Some(m) = next {
            let mut q = kept.clone();
            let marker = format!("marker={m}");
            q.push(&marker);
            body["next"] = Value::String(format!("/v2/images?{}", q.join("&")));
        }
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The v1 listings the seed's `curl http://localhost:9292/images`
    /// shows: active images; without a token, the public ones.
    async fn v1_list<B>(&self, req: &Request<B>, detail: bool) -> Result<Resp> {
        let who = if req.headers().contains_key("x-auth-token") {
            Some(self.identify(req).await?)
        } else {
            None
        };
        let params = query_pairs(req.uri().query())?;
        let (page, _) = self.select(who.as_ref(), &params, true).await?;
        let images: Vec<Value> = page
            .iter()
            .map(|i| {
                let mut v = json!({
                    "id": i.id,
                    "name": i.name,
                    "disk_format": i.disk_format,
                    "container_format": i.container_format,
                    "checksum": i.checksum,
                    "size": i.size,
                });
                if detail {
                    let extra = json!({
                        "status": i.status,
                        "is_public": i.visibility == "public",
                        "created_at": iso_v1(i.created_at),
                        "updated_at": iso_v1(i.updated_at),
                        "deleted_at": Value::Null,
                        "deleted": false,
                        "min_ram": i.min_ram,
                        "min_disk": i.min_disk,
                        "owner": i.owner,
                        "protected": i.protected,
                        "properties": i.properties,
                    });
                    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                        v.extend(extra.clone());
                    }
                }
                v
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({ "images": images })))
    }
}

impl apus_http::Handler for ImagesService {
    async fn call(&self, req: Request<hyper::body::Incoming>) -> Resp {
        self.handle(req).await
    }
}

async fn read_json<B>(req: Request<B>) -> Result<Value>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_JSON_BODY as u64) {
        return Err(ApiError::too_large("Request is too large."));
    }
    let body = apus_http::body::collect_limited(
        http_body_util::BodyExt::map_err(req.into_body(), |e| std::io::Error::other(e.to_string())),
        MAX_JSON_BODY,
    )
    .await
    .map_err(|_| ApiError::too_large("Request is too large."))?;
    if body.is_empty() {
        return Err(ApiError::bad_request("Body expected in request."));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON in request body: {e}")))
}

/// Which JSON-patch dialect a PATCH speaks (draft 4 or draft 10), from
/// its content type; 415 for any other.
fn patch_draft<B>(req: &Request<B>) -> Result<u8> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    match ct {
        "application/openstack-images-v2.0-json-patch" => Ok(4),
        "application/openstack-images-v2.1-json-patch" => Ok(10),
        _ => {
            let mut e = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Image PATCH expects Content-Type one of: {PATCH_TYPES}"),
            );
            e.headers.push((
                header::HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(PATCH_TYPES),
            ));
            Err(e)
        }
    }
}

#[derive(Debug)]
struct Change {
    op: String,
    path: String,
    value: Option<Value>,
}

fn parse_change(raw: Value, draft: u8) -> Result<Change> {
    let Value::Object(raw) = raw else {
        return Err(ApiError::bad_request("Operations must be JSON objects."));
    };
    let ops = ["add", "remove", "replace"];
    let (op, pointer) = if draft == 10 {
        let op = match raw.get("op") {
            Some(Value::String(op)) if ops.contains(&op.as_str()) => op.clone(),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid operation: `{}`. It must be one of the following: add, remove, replace.",
                    other.as_str().unwrap_or("")
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                ))
            }
        };
        let path = match raw.get("path") {
            Some(Value::String(p)) => p.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "Unable to find 'path' in JSON Schema change",
                ))
            }
        };
        (op, path)
    } else {
        let present: Vec<&&str> = ops.iter().filter(|o| raw.contains_key(**o)).collect();
        if present.len() != 1 {
            return Err(ApiError::bad_request(
                "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
            ));
        }
        let op = present[0].to_string();
        let path = raw
            .get(&op)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (op, path)
    };
    let path = decode_pointer(&pointer)?;
    if path.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "Invalid JSON pointer for this resource: '/{}'",
            path.join("/")
        )));
    }
    let path = path.into_iter().next().unwrap_or_default();
    if READ_ONLY.contains(&path.as_str()) {
        return Err(ApiError::read_only(&path));
    }
    if RESERVED.contains(&path.as_str()) || path.starts_with(RESERVED_NAMESPACE) {
        return Err(ApiError::reserved(&path));
    }
    if path == "locations" {
        return Err(ApiError::forbidden(
            "It's not allowed to update locations if locations are invisible.",
        ));
    }
    let value = if op == "remove" {
        None
    } else {
        match raw.get("value") {
            Some(v) => Some(v.clone()),
            None => {
                return Err(ApiError::bad_request(format!(
                    "Operation \"{op}\" requires a member named \"value\"."
                )))
            }
        }
    };
    Ok(Change { op, path, value })
}

/// A JSON pointer's parts (`~1` is `/`, `~0` is `~`), with Glance's
/// restrictions on the forms it accepts.
fn decode_pointer(pointer: &str) -> Result<Vec<String>> {
    let bad = |why: &str| ApiError::bad_request(format!("Pointer `{pointer}` {why}"));
    if !pointer.starts_with('/') {
        return Err(bad("does not start with \"/\"."));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(bad("end with \"/\"."));
    }
    if pointer[1..].contains("//") {
        return Err(bad("contains adjacent \"/\"."));
    }
    let tildes_ok = pointer
        .match_indices('~')
        .all(|(i, _)| matches!(pointer.as_bytes().get(i + 1), Some(b'0' | b'1')));
    if !tildes_ok {
        return Err(bad(
            "contains \"~\" not part of a recognized escape sequence.",
        ));
    }
    Ok(pointer[1..]
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect())
}

fn is_base_attribute(name: &str) -> bool {
    matches!(
        name,
        "name"
            | "visibility"
            | "protected"
            | "os_hidden"
            | "owner"
            | "container_format"
            | "disk_format"
            | "min_ram"
            | "min_disk"
            | "tags"
    ) || READ_ONLY.contains(&name)
}

fn schema_error(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "Provided object does not match schema 'image': {detail}"
    ))
}

fn opt_string(key: &str, value: Value, max: usize) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= max => Ok(Some(s)),
        Value::String(s) => Err(schema_error(format!(
            "'{s}' is too long for '{key}' (at most {max} characters)"
        ))),
        other => Err(schema_error(format!(
            "{other} is not of type 'null', 'string' for '{key}'"
        ))),
    }
}

fn parse_tags(value: Value) -> Result<std::collections::BTreeSet<String>> {
    let Value::Array(items) = value else {
        return Err(schema_error(format!(
            "{value} is not of type 'array' for 'tags'"
        )));
    };
    items
        .into_iter()
        .map(|t| match t {
            Value::String(s) if s.chars().count() <= 255 => Ok(s),
            other => Err(schema_error(format!(
                "{other} is not a string of at most 255 characters, in 'tags'"
            ))),
        })
        .collect()
}

/// Sets one writable attribute (base or custom) from a client's value,
/// with the schema's and the policy's checks.
fn set_attribute(
    image: &mut Image,
    key: &str,
    value: Value,
    who: &Identity,
    config: &ImagesConfig,
) -> Result<()> {
    let enum_check = |v: &Option<String>, allowed: &[String], key: &str| -> Result<()> {
        match v {
            Some(s) if !allowed.contains(s) => Err(schema_error(format!(
                "'{s}' is not one of the allowed values for '{key}': {}",
                allowed.join(", ")
            ))),
            _ => Ok(()),
        }
    };
    match key {
        "name" => image.name = opt_string(key, value, 255)?,
        "owner" => {
            let owner = opt_string(key, value, 255)?;
            if !who.is_admin && owner != who.project_id {
                return Err(ApiError::forbidden("Owner can't be updated by non admin."));
            }
            image.owner = owner;
        }
        "disk_format" | "container_format" => {
            let v = opt_string(key, value, 255)?;
            if key == "disk_format" {
                enum_check(&v, &config.disk_formats, key)?;
            } else {
                enum_check(&v, &config.container_formats, key)?;
            }
            let current = if key == "disk_format" {
                &image.disk_format
            } else {
                &image.container_format
            };
            if image.status != "queued" && *current != v {
                return Err(ApiError::forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            if key == "disk_format" {
                image.disk_format = v;
            } else {
                image.container_format = v;
            }
        }
        "visibility" => {
            let v = match value {
                Value::String(s)
                    if ["community", "public", "private", "shared"].contains(&s.as_str()) =>
                {
                    s
                }
                other => {
                    return Err(schema_error(format!(
                        "{other} is not one of ['community', 'public', 'private', 'shared']"
                    )))
                }
            };
            if v == "public" && !who.is_admin && image.visibility != "public" {
                return Err(ApiError::not_permitted("publicize_image"));
            }
            image.visibility = v;
        }
        "protected" | "os_hidden" => {
            let Value::Bool(b) = value else {
                return Err(schema_error(format!(
                    "{value} is not of type 'boolean' for '{key}'"
                )));
            };
            if key == "protected" {
                image.protected = b;
            } else {
                image.os_hidden = b;
            }
        }
        "min_ram" | "min_disk" => {
            let n = match value.as_i64() {
                Some(n) if value.is_i64() || value.is_u64() => n,
                _ => {
                    return Err(schema_error(format!(
                        "{value} is not of type 'integer' for '{key}'"
                    )))
                }
            };
            if n < 0 {
                return Err(ApiError::bad_request(format!(
                    "Cannot set {key} to a negative value"
                )));
            }
            if key == "min_ram" {
                image.min_ram = n;
            } else {
                image.min_disk = n;
            }
        }
        "tags" => image.tags = parse_tags(value)?,
        _ => {
            if key.chars().count() > 255 {
                return Err(ApiError::bad_request(
                    "Custom property should not be greater than 255 characters.",
                ));
            }
            if RESERVED.contains(&key) || key.starts_with(RESERVED_NAMESPACE) {
                return Err(ApiError::reserved(key));
            }
            let Value::String(s) = value else {
                return Err(schema_error(format!(
                    "{value} is not of type 'string' for custom property '{key}'"
                )));
            };
            if s.len() > MAX_PROPERTY_VALUE {
                return Err(ApiError::bad_request(format!(
                    "The value of property '{key}' is longer than {MAX_PROPERTY_VALUE} bytes."
                )));
            }
            image.properties.insert(key.to_string(), s);
        }
    }
    Ok(())
}

fn apply_change(
    image: &mut Image,
    change: Change,
    draft: u8,
    who: &Identity,
    config: &ImagesConfig,
) -> Result<()> {
    let key = change.path.as_str();
    let base = is_base_attribute(key);
    let exists = base || image.properties.contains_key(key);
    match change.op.as_str() {
        "remove" => {
            if base {
                return Err(ApiError::forbidden(format!(
                    "Property {key} may not be removed."
                )));
            }
            if image.properties.remove(key).is_none() {
                return Err(ApiError::conflict(format!(
                    "Property {key} does not exist."
                )));
            }
        }
        op => {
            if op == "replace" && !exists {
                return Err(ApiError::conflict(format!(
                    "Property {key} does not exist."
                )));
            }
            if op == "add" && draft == 4 && exists {
                return Err(ApiError::conflict(format!(
                    "Property {key} already present."
                )));
            }
            set_attribute(image, key, change.value.unwrap_or(Value::Null), who, config)?;
        }
    }
    Ok(())
}

fn check_quotas(image: &Image, config: &ImagesConfig) -> Result<()> {
    if image.properties.len() > config.image_property_quota {
        return Err(ApiError::too_large(format!(
            "Maximum number of image properties exceeded: {} is more than {}",
            image.properties.len(),
            config.image_property_quota
        )));
    }
    if image.tags.len() > config.image_tag_quota {
        return Err(ApiError::too_large(format!(
            "Maximum number of image tags exceeded: {} is more than {}",
            image.tags.len(),
            config.image_tag_quota
        )));
    }
    Ok(())
}

fn is_owner(image: &Image, who: &Identity) -> bool {
    who.project_id.is_some() && image.owner == who.project_id
}

/// Whether `who` may see `image` at all (`membership`: its project's
/// membership status, if any).
fn can_see(image: &Image, who: &Identity, membership: Option<&str>) -> bool {
    who.is_admin
        || is_owner(image, who)
        || image.visibility == "public"
        || image.visibility == "community"
        || (image.visibility == "shared" && membership.is_some())
}

/// Whether a listing for `who` (`None`: anonymous) with a `visibility`
/// filter shows `image`; `member_ok`: `who`'s project is a member with
/// the requested member status.
fn listed(
    image: &Image,
    who: Option<&Identity>,
    visibility: Option<&str>,
    member_ok: bool,
) -> bool {
    let admin = who.is_some_and(|w| w.is_admin);
    let owner = who.is_some_and(|w| is_owner(image, w));
    let vis = image.visibility.as_str();
    match visibility {
        None => admin || owner || vis == "public" || (vis == "shared" && member_ok),
        Some("all") => {
            admin
                || owner
                || vis == "public"
                || vis == "community"
                || (vis == "shared" && member_ok)
        }
        Some(wanted) => {
            vis == wanted
                && (admin
                    || owner
                    || vis == "public"
                    || vis == "community"
                    || (vis == "shared" && member_ok))
        }
    }
}

fn parse_bool_filter(v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::bad_request(format!("Invalid boolean value: {v}"))),
    }
}

fn is_base_filter(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "status"
            | "owner"
            | "disk_format"
            | "container_format"
            | "size_min"
            | "size_max"
            | "protected"
            | "id"
            | "checksum"
            | "os_hash_value"
            | "min_ram"
            | "min_disk"
    )
}

/// A filter's accepted values: `in:a,b` or one value.
fn filter_values(v: &str) -> Vec<String> {
    match v.strip_prefix("in:") {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .collect(),
        None => vec![v.to_string()],
    }
}

fn base_filters_match(image: &Image, filters: &[(String, String)]) -> Result<bool> {
    for (k, v) in filters {
        let text = |field: &Option<String>| {
            let values = filter_values(v);
            field.as_ref().is_some_and(|f| values.contains(f))
        };
        let size_bound = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid {k} filter value: {v}")))
        };
        let ok = match k.as_str() {
            "name" => text(&image.name),
            "status" => text(&Some(image.status.clone())),
            "owner" => text(&image.owner),
            "disk_format" => text(&image.disk_format),
            "container_format" => text(&image.container_format),
            "id" => text(&Some(image.id.clone())),
            "checksum" => text(&image.checksum),
            "os_hash_value" => text(&image.os_hash_value),
            "size_min" => image.size.is_some_and(|s| s >= 0) && image.size >= Some(size_bound(v)?),
            "size_max" => image
                .size
                .is_some_and(|s| s <= size_bound(v).unwrap_or(i64::MAX)),
            "protected" => image.protected == parse_bool_filter(v)?,
            "min_ram" => image.min_ram == size_bound(v)?,
            "min_disk" => image.min_disk == size_bound(v)?,
            _ => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The sort keys with their directions (`true`: ascending), with
/// `created_at` and `id` appended as Glance does so pages are stable.
fn sort_order(
    sort: Option<String>,
    keys: Vec<String>,
    dirs: Vec<String>,
) -> Result<Vec<(String, bool)>> {
    let check_key = |k: &str| {
        if SORT_KEYS.contains(&k) {
            Ok(k.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "Invalid sort key: {k}. It must be one of the following: {}.",
                SORT_KEYS.join(", ")
            )))
        }
    };
    let check_dir = |d: &str| match d {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "Invalid sort direction: {d}"
        ))),
    };
    let mut order = Vec::new();
    if let Some(sort) = sort {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(ApiError::bad_request(
                "Old and new sorting syntax cannot be combined",
            ));
        }
        for part in sort.trim().split(',') {
            let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
            order.push((check_key(k.trim())?, check_dir(d.trim())?));
        }
    } else {
        if dirs.len() > 1 && dirs.len() != keys.len() {
            return Err(ApiError::bad_request(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
        let dirs = dirs
            .iter()
            .map(|d| check_dir(d))
            .collect::<Result<Vec<bool>>>()?;
        let keys = if keys.is_empty() {
            vec!["created_at".to_string()]
        } else {
            keys
        };
        for (i, k) in keys.iter().enumerate() {
            let asc = dirs.get(i).or(dirs.first()).copied().unwrap_or(false);
            order.push((check_key(k)?, asc));
        }
    }
    for tie in ["created_at", "id"] {
        if !order.iter().any(|(k, _)| k == tie) {
            let asc = order.first().map(|(_, a)| *a).unwrap_or(false);
            order.push((tie.to_string(), asc));
        }
    }
    Ok(order)
}

fn compare(a: &Image, b: &Image, order: &[(String, bool)]) -> std::cmp::Ordering {
    for (key, asc) in order {
        let ord = match key.as_str() {
            "name" => a.name.cmp(&b.name),
            "status" => a.status.cmp(&b.status),
            "container_format" => a.container_format.cmp(&b.container_format),
            "disk_format" => a.disk_format.cmp(&b.disk_format),
            "size" => a.size.cmp(&b.size),
            "id" => a.id.cmp(&b.id),
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            _ => std::cmp::Ordering::Equal,
        };
        let ord = if *asc { ord } else { ord.reverse() };
        if ord.is_ne() {
            return ord;
        }
    }
    std::cmp::Ordering::Equal
}

/// An image as v2 shows it: custom properties beside the base attributes.
pub fn image_view(image: &Image) -> Value {
    let mut v = Map::new();
    for (k, val) in &image.properties {
        v.insert(k.clone(), Value::String(val.clone()));
    }
    let base = json!({
        "id": image.id,
        "name": image.name,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "visibility": image.visibility,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "status": image.status,
        "checksum": image.checksum,
        "protected": image.protected,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "owner": image.owner,
        "os_hidden": image.os_hidden,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "created_at": iso_v2(image.created_at),
        "updated_at": iso_v2(image.updated_at),
        "tags": image.tags.iter().collect::<Vec<_>>(),
        "self": format!("/v2/images/{}", image.id),
        "file": format!("/v2/images/{}/file", image.id),
        "schema": "/v2/schemas/image",
    });
    if let Some(base) = base.as_object() {
        v.extend(base.clone());
    }
    Value::Object(v)
}

fn member_view(m: &Member) -> Value {
    json!({
        "created_at": iso_v2(m.created_at),
        "updated_at": iso_v2(m.updated_at),
        "image_id": m.image_id,
        "member_id": m.member,
        "status": m.status,
        "schema": "/v2/schemas/member",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pointers_decode_escapes_and_refuse_odd_forms() {
        assert_eq!(decode_pointer("/a~1b~0c").unwrap(), vec!["a/b~c"]);
        assert!(decode_pointer("name").is_err());
        assert!(decode_pointer("/a//b").is_err());
        assert!(decode_pointer("/a/").is_err());
        assert!(decode_pointer("/a~2").is_err());
    }

    #[test]
    fn sort_order_defaults_and_ties() {
        let o = sort_order(None, vec![], vec![]).unwrap();
        assert_eq!(
            o,
            vec![("created_at".to_string(), false), ("id".to_string(), false)]
        );
        let o = sort_order(Some("name:asc,size".into()), vec![], vec![]).unwrap();
        assert_eq!(o[0], ("name".to_string(), true));
        assert_eq!(o[1], ("size".to_string(), false));
        assert!(sort_order(Some("name".into()), vec!["size".into()], vec![]).is_err());
        assert!(sort_order(None, vec!["bogus".into()], vec![]).is_err());
    }

    #[test]
    fn uuids_are_version_4_and_recognised() {
        let id = new_uuid().unwrap();
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn listing_visibility_follows_glance() {
        let who = Identity {
            project_id: Some("p".into()),
            ..Identity::default()
        };
        let image = |vis: &str, owner: &str| Image {
            visibility: vis.into(),
            owner: Some(owner.into()),
            ..Image::default()
        };
        assert!(listed(&image("private", "p"), Some(&who), None, false));
        assert!(!listed(&image("private", "q"), Some(&who), None, false));
        assert!(!listed(&image("community", "q"), Some(&who), None, false));
        assert!(listed(
            &image("community", "q"),
            Some(&who),
            Some("community"),
            false
        ));
        assert!(listed(&image("shared", "q"), Some(&who), None, true));
        assert!(!listed(&image("shared", "q"), Some(&who), None, false));
        assert!(listed(&image("public", "q"), None, None, false));
        assert!(!listed(&image("private", "q"), None, None, false));
    }
}
