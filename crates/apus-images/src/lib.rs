//! apus-images: `apus images`, an image catalog that answers Glance's v2
//! image API (and the v1 listings older tools call) the way
//! python-glanceclient and openstacksdk use it.
//!
//! It owns:
//! - [`catalog`]: the image records (base attributes, custom properties,
//!   tags, members) in one SQLite file;
//! - [`api`]: the HTTP surface: routing, who may do what (owner, member,
//!   admin, visibility), validation with Glance's status codes, JSON
//!   patches, paging and filters, the schemas clients fetch;
//! - [`data`]: image data streamed to and from the object store as SLO
//!   segments, hashed on the way in (MD5 `checksum`, SHA-512
//!   `os_hash_value`);
//! - the two seams the binary fills in: [`Authenticator`] (who a token
//!   belongs to: Keystone or tempauth) and [`ObjectApi`] (a Swift API to
//!   keep the data in, normally the proxy's pipeline in process).
//!
//! Invariant: it never depends on the proxy, the storage servers or their
//! on-disk crates; it reaches stored data only through [`ObjectApi`]
//! requests, as any Swift client would. Memory per request is bounded:
//! bodies stream through bounded channels.

pub mod api;
pub mod catalog;
pub mod data;
mod schema;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use apus_http::Body;
use http::{Request, Response};

pub use api::ImagesService;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a token belongs to, as the image API needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    /// The project (tenant) the token is scoped to; images are owned by
    /// projects.
    pub project_id: Option<String>,
    /// Lowercased role names.
    pub roles: Vec<String>,
    /// Glance's `context_is_admin`: may see and change every image.
    pub is_admin: bool,
}

impl Identity {
    /// Whether the identity may create and change images of its project
    /// (Glance's `project_member` rule); readers may only look.
    pub fn is_member(&self, member_roles: &[String]) -> bool {
        self.is_admin || self.roles.iter().any(|r| member_roles.contains(r))
    }
}

/// What validating a token gave.
#[derive(Clone, Debug)]
pub enum AuthOutcome {
    Valid(Identity),
    /// Unknown, expired or revoked.
    Invalid,
    /// The identity service could not be asked.
    Unavailable,
}

/// Resolves `X-Auth-Token`s.
pub trait Authenticator: Send + Sync + 'static {
    fn identify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, AuthOutcome>;
}

/// A Swift API the image data is kept in (paths `/v1/<account>/...`),
/// called with the service's own authority.
pub trait ObjectApi: Send + Sync + 'static {
    fn call(&self, req: Request<Body>) -> BoxFuture<'_, Response<Body>>;
}

/// Settings of `apus images` (`[images]` in a node configuration).
#[derive(Clone, Debug)]
pub struct ImagesConfig {
    /// The SQLite file of the image records.
    pub db_path: PathBuf,
    /// The account image data lives in (its containers are `container`
    /// and `<container>_segments`).
    pub account: String,
    pub container: String,
    /// Bytes per SLO segment of image data.
    pub segment_size: u64,
    /// The largest image accepted (Glance's `image_size_cap`).
    pub image_size_cap: u64,
    /// At most this many segments per image (the proxy's
    /// `max_manifest_segments`).
    pub max_segments: u64,
    pub image_property_quota: usize,
    pub image_tag_quota: usize,
    pub image_member_quota: usize,
    /// Paging: the default and the largest `limit`.
    pub limit_param_default: usize,
    pub api_limit_max: usize,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    /// Roles that may create and change images (besides admins).
    pub member_roles: Vec<String>,
    /// The base URL the version document names (`None`: the request's
    /// Host).
    pub public_endpoint: Option<String>,
}

impl ImagesConfig {
    /// Glance's defaults, with the records in `db_path`.
    pub fn new(db_path: PathBuf) -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        ImagesConfig {
            db_path,
            account: ".images".to_string(),
            container: "images".to_string(),
            segment_size: 1 << 30,
            image_size_cap: 1 << 40,
            max_segments: 1000,
            image_property_quota: 128,
            image_tag_quota: 128,
            image_member_quota: 128,
            limit_param_default: 25,
            api_limit_max: 1000,
            disk_formats: strings(&[
                "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
            ]),
            container_formats: strings(&[
                "ami",
                "ari",
                "aki",
                "bare",
                "ovf",
                "ova",
                "docker",
                "compressed",
            ]),
            member_roles: strings(&["member", "admin"]),
            public_endpoint: None,
        }
    }
}

/// Everything a running service shares.
pub(crate) struct Shared {
    pub config: ImagesConfig,
    pub catalog: catalog::Catalog,
    pub auth: Arc<dyn Authenticator>,
    pub objects: Arc<dyn ObjectApi>,
}
