//! S3 access control lists, as Swift's s3api keeps them with `s3_acl`:
//! an owner and a list of grants (grantee, permission) per bucket and per
//! object.
//!
//! An ACL is stored as system metadata (`X-Container-Sysmeta-S3Api-Acl`,
//! `X-Object-Sysmeta-S3Api-Acl`) in the JSON form s3api writes
//! (`{"Owner":"id","Grant":[{"Permission":"READ","Grantee":"id"}]}`, with
//! non-ASCII escaped), so that data written by Swift and by apus read the
//! same either way. Clients set ACLs with the `x-amz-acl` (canned) and
//! `x-amz-grant-*` headers or an `AccessControlPolicy` document, and read
//! them back as that document.
//!
//! Everything here is pure: the proxy decides which permission an
//! operation needs and asks [`Acl::allows`].

use std::fmt::Write as _;

use crate::error::{escape, ErrorCode, S3Error};
use crate::xml::Element;

/// The S3 XML namespace.
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// The namespace of `xsi:type` on a `Grantee`.
pub const XMLNS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The largest `AccessControlPolicy` document accepted (s3api's
/// `ACL.max_xml_length`).
pub const MAX_ACL_XML: usize = 200 * 1024;
/// The user whose requests `LogDelivery` grants cover.
const LOG_DELIVERY_USER: &str = ".log_delivery";

const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The sysmeta header an ACL is stored in, for a bucket or an object.
pub fn sysmeta_header(object: bool) -> &'static str {
    if object {
        "x-object-sysmeta-s3api-acl"
    } else {
        "x-container-sysmeta-s3api-acl"
    }
}

/// Where the older swift3 middleware stored the same ACL; read when the
/// s3api header is absent.
pub fn legacy_sysmeta_header(object: bool) -> &'static str {
    if object {
        "x-object-sysmeta-swift3-acl"
    } else {
        "x-container-sysmeta-swift3-acl"
    }
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    FullControl,
    Read,
    Write,
    ReadAcp,
    WriteAcp,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::FullControl,
        Permission::Read,
        Permission::Write,
        Permission::ReadAcp,
        Permission::WriteAcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::FullControl => "FULL_CONTROL",
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
        }
    }

    /// The permission spelled exactly as S3 spells it.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// A canonical user: S3's user id, `account:user` here.
    User(String),
    /// Everyone. s3api serves signed requests only, so in effect every
    /// authenticated user, as `AuthenticatedUsers`.
    AllUsers,
    AuthenticatedUsers,
    /// The log delivery user (`.log_delivery`, in any account).
    LogDelivery,
}

impl Grantee {
    /// The group a URI names, or `InvalidArgument`.
    pub fn group_from_uri(uri: &str) -> Result<Grantee, S3Error> {
        match uri {
            ALL_USERS_URI => Ok(Grantee::AllUsers),
            AUTHENTICATED_USERS_URI => Ok(Grantee::AuthenticatedUsers),
            LOG_DELIVERY_URI => Ok(Grantee::LogDelivery),
            _ => Err(invalid_argument("uri", uri, "Invalid group uri")),
        }
    }

    /// The grantee of one item of an `x-amz-grant-*` header
    /// (`id="..."`, `uri="..."`; e-mail addresses are not supported).
    pub fn from_header(item: &str) -> Result<Grantee, S3Error> {
        let Some((kind, value)) = item.split_once('=') else {
            return Err(S3Error::new(ErrorCode::InvalidRequest));
        };
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        match kind.to_ascii_lowercase().as_str() {
            "id" => Ok(Grantee::User(value.to_string())),
            "emailaddress" => Err(S3Error::new(ErrorCode::NotImplemented)),
            "uri" => Grantee::group_from_uri(value),
            other => Err(invalid_argument(
                other,
                value,
                "Argument format not recognized",
            )),
        }
    }

    /// Whether the user `user_id` (`account:user`) is covered.
    pub fn contains(&self, user_id: &str) -> bool {
        match self {
            Grantee::User(id) => id == user_id,
            Grantee::AllUsers | Grantee::AuthenticatedUsers => true,
            Grantee::LogDelivery => {
                let user = user_id.split_once(':').map_or(user_id, |(_, u)| u);
                user == LOG_DELIVERY_USER
            }
        }
    }

    /// The name stored in the JSON form: the user id, or the group's
    /// class name in s3api (`AllUsers`, ...).
    fn stored_name(&self) -> &str {
        match self {
            Grantee::User(id) => id,
            Grantee::AllUsers => "AllUsers",
            Grantee::AuthenticatedUsers => "AuthenticatedUsers",
            Grantee::LogDelivery => "LogDelivery",
        }
    }

    fn from_stored_name(name: &str) -> Grantee {
        match name {
            "AllUsers" => Grantee::AllUsers,
            "AuthenticatedUsers" => Grantee::AuthenticatedUsers,
            "LogDelivery" => Grantee::LogDelivery,
            _ => Grantee::User(name.to_string()),
        }
    }

    fn uri(&self) -> Option<&'static str> {
        match self {
            Grantee::User(_) => None,
            Grantee::AllUsers => Some(ALL_USERS_URI),
            Grantee::AuthenticatedUsers => Some(AUTHENTICATED_USERS_URI),
            Grantee::LogDelivery => Some(LOG_DELIVERY_URI),
        }
    }
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

impl Grant {
    pub fn new(grantee: Grantee, permission: Permission) -> Grant {
        Grant {
            grantee,
            permission,
        }
    }
}

/// The owner of a bucket or object. `id` is `None` for a resource that
/// has no ACL (created through the Swift API, or before `s3_acl`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Owner {
    /// The user `id`, displayed as itself.
    pub fn user(id: &str) -> Owner {
        Owner {
            id: Some(id.to_string()),
            name: Some(id.to_string()),
        }
    }

    fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// An ACL: the owner, who may do everything, and the grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    pub owner: Owner,
    pub grants: Vec<Grant>,
}

/// The canned ACLs of `x-amz-acl`.
pub const CANNED: [&str; 7] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

impl Acl {
    /// The canned ACL `name` for a resource of `object_owner` (a bucket
    /// when `None`) in a bucket of `bucket_owner`.
    pub fn canned(name: &str, bucket_owner: &Owner, object_owner: Option<&Owner>) -> Option<Acl> {
        let owner = object_owner.unwrap_or(bucket_owner);
        let owner_user = || Grantee::User(owner.name_or_empty().to_string());
        let bucket_user = || Grantee::User(bucket_owner.name_or_empty().to_string());
        use Permission::*;
        let grants = match name {
            "private" => vec![(FullControl, owner_user())],
            "public-read" => vec![(Read, Grantee::AllUsers), (FullControl, owner_user())],
            "public-read-write" => vec![
                (Read, Grantee::AllUsers),
                (Write, Grantee::AllUsers),
                (FullControl, owner_user()),
            ],
            "authenticated-read" => vec![
                (Read, Grantee::AuthenticatedUsers),
                (FullControl, owner_user()),
            ],
            "bucket-owner-read" => vec![(Read, bucket_user()), (FullControl, owner_user())],
            "bucket-owner-full-control" => {
                vec![(FullControl, owner_user()), (FullControl, bucket_user())]
            }
            "log-delivery-write" => vec![
                (Write, Grantee::LogDelivery),
                (ReadAcp, Grantee::LogDelivery),
                (FullControl, owner_user()),
            ],
            _ => return None,
        };
        Some(Acl {
            owner: owner.clone(),
            grants: grants.into_iter().map(|(p, g)| Grant::new(g, p)).collect(),
        })
    }

    /// The default ACL: the owner alone, with full control.
    pub fn private(bucket_owner: &Owner, object_owner: Option<&Owner>) -> Acl {
        Acl::canned("private", bucket_owner, object_owner).unwrap_or_default()
    }

    /// The ACL a request's `x-amz-acl` or `x-amz-grant-*` headers give
    /// (s3api's `ACL.from_headers`). Without either: the private ACL when
    /// `as_private`, else `None`. Header names must be lowercase.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        bucket_owner: &Owner,
        object_owner: Option<&Owner>,
        as_private: bool,
    ) -> Result<Option<Acl>, S3Error> {
        let mut grants = Vec::new();
        let mut canned: Option<&str> = None;
        for (name, value) in headers {
            if name == "x-amz-acl" {
                canned = Some(value);
                continue;
            }
            let Some(perm) = name.strip_prefix("x-amz-grant-") else {
                continue;
            };
            let Some(permission) = Permission::parse(&perm.to_ascii_uppercase().replace('-', "_"))
            else {
                continue;
            };
            for item in value.split(',') {
                grants.push(Grant::new(Grantee::from_header(item)?, permission));
            }
        }
        if let Some(name) = canned {
            if !grants.is_empty() {
                return Err(S3Error::with_message(
                    ErrorCode::InvalidRequest,
                    "Specifying both Canned ACLs and Header Grants is not allowed",
                ));
            }
            return match Acl::canned(name, bucket_owner, object_owner) {
                Some(acl) => Ok(Some(acl)),
                None => Err(S3Error::invalid_argument("x-amz-acl", name)),
            };
        }
        if grants.is_empty() {
            return Ok(as_private.then(|| Acl::private(bucket_owner, object_owner)));
        }
        Ok(Some(Acl {
            owner: object_owner.unwrap_or(bucket_owner).clone(),
            grants,
        }))
    }

    /// Whether `user_id` owns the resource. A resource without an owner
    /// is nobody's.
    pub fn is_owner(&self, user_id: &str) -> bool {
        matches!(self.owner.id.as_deref(), Some(id) if !id.is_empty() && id == user_id)
    }

    /// Whether `user_id` has `permission`: the owner has every one, and
    /// a grant of it or of `FULL_CONTROL` to a grantee covering the user.
    pub fn allows(&self, user_id: &str, permission: Permission) -> bool {
        self.is_owner(user_id)
            || self.grants.iter().any(|g| {
                (g.permission == permission || g.permission == Permission::FullControl)
                    && g.grantee.contains(user_id)
            })
    }

    /// The stored form (s3api's `encode_acl`): compact JSON, non-ASCII
    /// escaped as Python's `json.dumps` does.
    pub fn encode(&self) -> String {
        let mut out = String::from("{\"Owner\":");
        match &self.owner.id {
            Some(id) => apus_core::pyjson::push_json_str(&mut out, id),
            None => out.push_str("null"),
        }
        out.push_str(",\"Grant\":[");
        for (i, g) in self.grants.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"Permission\":");
            apus_core::pyjson::push_json_str(&mut out, g.permission.as_str());
            out.push_str(",\"Grantee\":");
            apus_core::pyjson::push_json_str(&mut out, g.grantee.stored_name());
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// The ACL in a stored value (s3api's `decode_acl`). An empty or
    /// non-object value is an ACL without an owner; a value that is not
    /// JSON, or whose grants are not well-formed, is an error.
    pub fn decode(value: &str) -> Result<Acl, DecodeError> {
        if value.is_empty() {
            return Ok(Acl::default());
        }
        let v: serde_json::Value = serde_json::from_str(value).map_err(|_| DecodeError)?;
        let Some(map) = v.as_object() else {
            return Ok(Acl::default());
        };
        let mut acl = Acl::default();
        if let Some(owner) = map.get("Owner") {
            match owner {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => acl.owner = Owner::user(s),
                _ => return Err(DecodeError),
            }
        }
        if let Some(grants) = map.get("Grant") {
            for g in grants.as_array().ok_or(DecodeError)? {
                let grantee = g["Grantee"].as_str().ok_or(DecodeError)?;
                let permission = g["Permission"]
                    .as_str()
                    .and_then(|p| Permission::parse(&p.to_ascii_uppercase()))
                    .ok_or(DecodeError)?;
                acl.grants
                    .push(Grant::new(Grantee::from_stored_name(grantee), permission));
            }
        }
        Ok(acl)
    }

    /// The `AccessControlPolicy` document.
    pub fn to_xml(&self) -> String {
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AccessControlPolicy xmlns=\"{XMLNS}\"><Owner>"
        );
        text_element(&mut out, "ID", self.owner.id.as_deref());
        text_element(&mut out, "DisplayName", self.owner.name.as_deref());
        out.push_str("</Owner><AccessControlList>");
        for g in &self.grants {
            let _ = write!(out, "<Grant><Grantee xmlns:xsi=\"{XMLNS_XSI}\" ");
            match &g.grantee {
                Grantee::User(id) => {
                    out.push_str("xsi:type=\"CanonicalUser\">");
                    text_element(&mut out, "ID", Some(id));
                    text_element(&mut out, "DisplayName", Some(id));
                }
                group => {
                    out.push_str("xsi:type=\"Group\">");
                    text_element(&mut out, "URI", group.uri());
                }
            }
            let _ = write!(
                out,
                "</Grantee><Permission>{}</Permission></Grant>",
                g.permission.as_str()
            );
        }
        out.push_str("</AccessControlList></AccessControlPolicy>");
        out
    }

    /// The ACL of an `AccessControlPolicy` document already parsed
    /// (s3api's schema check, then `ACL.from_elem`): a document that does
    /// not follow the schema is `MalformedACLError`.
    pub fn from_xml(root: &Element) -> Result<Acl, S3Error> {
        validate_policy(root).ok_or_else(|| S3Error::new(ErrorCode::MalformedACLError))?;
        let owner_el = root.child("Owner").ok_or_else(malformed_acl)?;
        let id = nonempty(owner_el.child_text("ID"));
        let name = match owner_el.child("DisplayName") {
            Some(d) => nonempty(Some(&d.text)),
            None => id.clone(),
        };
        let mut grants = Vec::new();
        let list = root.child("AccessControlList").ok_or_else(malformed_acl)?;
        for g in list.children_named("Grant") {
            let grantee_el = g.child("Grantee").ok_or_else(malformed_acl)?;
            let grantee = match grantee_el.attribute("type") {
                Some("CanonicalUser") => {
                    Grantee::User(grantee_el.child_text("ID").unwrap_or_default().to_string())
                }
                Some("Group") => {
                    Grantee::group_from_uri(grantee_el.child_text("URI").unwrap_or_default())?
                }
                Some("AmazonCustomerByEmail") => {
                    return Err(S3Error::new(ErrorCode::NotImplemented))
                }
                _ => return Err(malformed_acl()),
            };
            // The schema compares the permission with its spaces folded;
            // s3api then takes the text as written.
            let text = g.child_text("Permission").unwrap_or_default();
            let permission =
                Permission::parse(text).ok_or_else(|| S3Error::new(ErrorCode::NotImplemented))?;
            grants.push(Grant::new(grantee, permission));
        }
        Ok(Acl {
            owner: Owner { id, name },
            grants,
        })
    }
}

/// A stored ACL value that is not one s3api could have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

fn malformed_acl() -> S3Error {
    S3Error::new(ErrorCode::MalformedACLError)
}

fn invalid_argument(name: &str, value: &str, message: &'static str) -> S3Error {
    S3Error::with_message(ErrorCode::InvalidArgument, message)
        .detail("ArgumentName", name)
        .detail("ArgumentValue", value)
}

fn nonempty(text: Option<&str>) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(str::to_string)
}

fn text_element(out: &mut String, tag: &str, text: Option<&str>) {
    match text {
        Some(t) if !t.is_empty() => {
            let _ = write!(out, "<{tag}>{}</{tag}>", escape(t));
        }
        _ => {
            let _ = write!(out, "<{tag}/>");
        }
    }
}

/// Whether the element's own text is only whitespace (the schema allows
/// no text between elements).
fn no_text(el: &Element) -> bool {
    el.text.trim().is_empty()
}

/// Whether `el` has exactly the children `required` (once each) plus at
/// most one of each `optional`, in any order, and nothing else.
fn has_exactly(el: &Element, required: &[&str], optional: &[&str]) -> bool {
    let count = |n: &str| el.children.iter().filter(|c| c.name == n).count();
    required.iter().all(|n| count(n) == 1)
        && optional.iter().all(|n| count(n) <= 1)
        && el
            .children
            .iter()
            .all(|c| required.contains(&c.name.as_str()) || optional.contains(&c.name.as_str()))
        && no_text(el)
}

/// s3api's `access_control_policy.rng`, checked by hand.
fn validate_policy(root: &Element) -> Option<()> {
    let leaf = |el: &Element| el.children.is_empty();
    if root.name != "AccessControlPolicy"
        || !has_exactly(root, &["Owner", "AccessControlList"], &[])
    {
        return None;
    }
    let owner = root.child("Owner")?;
    if !has_exactly(owner, &["ID"], &["DisplayName"]) || !owner.children.iter().all(leaf) {
        return None;
    }
    let list = root.child("AccessControlList")?;
    if !(no_text(list) && list.children.iter().all(|c| c.name == "Grant")) {
        return None;
    }
    for grant in &list.children {
        if !has_exactly(grant, &["Grantee", "Permission"], &[]) {
            return None;
        }
        let grantee = grant.child("Grantee")?;
        let ok = match grantee.attribute("type") {
            Some("AmazonCustomerByEmail") => has_exactly(grantee, &["EmailAddress"], &[]),
            Some("CanonicalUser") => has_exactly(grantee, &["ID"], &["DisplayName"]),
            Some("Group") => has_exactly(grantee, &["URI"], &[]),
            _ => false,
        };
        if !ok || !grantee.children.iter().all(leaf) {
            return None;
        }
        let permission = grant.child("Permission")?;
        if !leaf(permission) || Permission::parse(permission.text.trim()).is_none() {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn owner(id: &str) -> Owner {
        Owner::user(id)
    }

    #[test]
    fn canned_acls_grant_what_s3_says() {
        let b = owner("test:tester");
        let o = owner("test:tester2");
        let perms = |acl: &Acl| -> Vec<(String, &'static str)> {
            acl.grants
                .iter()
                .map(|g| (g.grantee.stored_name().to_string(), g.permission.as_str()))
                .collect()
        };
        let p = |v: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
            v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
        };
        let acl = Acl::canned("private", &b, None).unwrap();
        assert_eq!(acl.owner, b);
        assert_eq!(perms(&acl), p(&[("test:tester", "FULL_CONTROL")]));
        let acl = Acl::canned("public-read-write", &b, Some(&o)).unwrap();
        assert_eq!(acl.owner, o);
        assert_eq!(
            perms(&acl),
            p(&[
                ("AllUsers", "READ"),
                ("AllUsers", "WRITE"),
                ("test:tester2", "FULL_CONTROL")
            ])
        );
        let acl = Acl::canned("bucket-owner-read", &b, Some(&o)).unwrap();
        assert_eq!(
            perms(&acl),
            p(&[("test:tester", "READ"), ("test:tester2", "FULL_CONTROL")])
        );
        let acl = Acl::canned("bucket-owner-full-control", &b, Some(&o)).unwrap();
        assert_eq!(
            perms(&acl),
            p(&[
                ("test:tester2", "FULL_CONTROL"),
                ("test:tester", "FULL_CONTROL")
            ])
        );
        let acl = Acl::canned("log-delivery-write", &b, None).unwrap();
        assert_eq!(
            perms(&acl),
            p(&[
                ("LogDelivery", "WRITE"),
                ("LogDelivery", "READ_ACP"),
                ("test:tester", "FULL_CONTROL")
            ])
        );
        let acl = Acl::canned("authenticated-read", &b, None).unwrap();
        assert!(acl.allows("other:user", Permission::Read));
        assert!(!acl.allows("other:user", Permission::Write));
        for name in CANNED {
            assert!(Acl::canned(name, &b, None).is_some());
        }
        assert!(Acl::canned("public", &b, None).is_none());
    }

    #[test]
    fn permissions_follow_owner_and_grants() {
        let b = owner("test:tester");
        let acl = Acl::private(&b, None);
        assert!(acl.is_owner("test:tester"));
        assert!(acl.allows("test:tester", Permission::WriteAcp));
        assert!(!acl.allows("test:tester3", Permission::Read));
        let acl = Acl::canned("public-read", &b, None).unwrap();
        assert!(acl.allows("test:tester3", Permission::Read));
        assert!(!acl.allows("test:tester3", Permission::ReadAcp));
        let mut acl = Acl::private(&b, None);
        acl.grants.push(Grant::new(
            Grantee::User("test:tester3".into()),
            Permission::FullControl,
        ));
        assert!(acl.allows("test:tester3", Permission::WriteAcp));
        assert!(!acl.is_owner("test:tester3"));
        let log = Acl::canned("log-delivery-write", &b, None).unwrap();
        assert!(log.allows("any:.log_delivery", Permission::Write));
        assert!(log.allows(".log_delivery", Permission::ReadAcp));
        assert!(!log.allows("test:tester3", Permission::Write));
        // No owner: nobody's, not even a user called "".
        let none = Acl::default();
        assert!(!none.is_owner(""));
        assert!(!none.allows("test:tester", Permission::Read));
    }

    #[test]
    fn headers_give_canned_or_granted_acls() {
        let b = owner("test:tester");
        let me = owner("test:tester3");
        let acl = Acl::from_headers([], &b, Some(&me), true).unwrap().unwrap();
        assert_eq!(acl, Acl::private(&b, Some(&me)));
        assert_eq!(Acl::from_headers([], &b, None, false).unwrap(), None);
        let acl = Acl::from_headers([("x-amz-acl", "public-read")], &b, None, false)
            .unwrap()
            .unwrap();
        assert_eq!(acl, Acl::canned("public-read", &b, None).unwrap());
        let acl = Acl::from_headers(
            [
                (
                    "x-amz-grant-read",
                    "id=\"a:b\",uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
                ),
                ("x-amz-grant-write-acp", "id='c:d'"),
                ("x-amz-grant-bogus", "id=x"),
                ("x-amz-meta-x", "y"),
            ],
            &b,
            Some(&me),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(acl.owner, me);
        assert_eq!(
            acl.grants,
            vec![
                Grant::new(Grantee::User("a:b".into()), Permission::Read),
                Grant::new(Grantee::AllUsers, Permission::Read),
                Grant::new(Grantee::User("c:d".into()), Permission::WriteAcp),
            ]
        );
        let err =
            |h: &[(&str, &str)]| Acl::from_headers(h.iter().copied(), &b, None, true).unwrap_err();
        let e = err(&[("x-amz-acl", "public")]);
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.detail_text("ArgumentName"), Some("x-amz-acl"));
        assert_eq!(e.detail_text("ArgumentValue"), Some("public"));
        let e = err(&[("x-amz-grant-read", "id=a"), ("x-amz-acl", "private")]);
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(
            e.message,
            "Specifying both Canned ACLs and Header Grants is not allowed"
        );
        assert_eq!(
            err(&[("x-amz-grant-read", "emailAddress=a@b")]).code,
            ErrorCode::NotImplemented
        );
        assert_eq!(
            err(&[("x-amz-grant-read", "noequals")]).code,
            ErrorCode::InvalidRequest
        );
        let e = err(&[("x-amz-grant-read", "uri=http://example.com/")]);
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, "Invalid group uri");
        let e = err(&[("x-amz-grant-read", "foo=bar")]);
        assert_eq!(e.message, "Argument format not recognized");
        assert_eq!(e.detail_text("ArgumentName"), Some("foo"));
    }

    #[test]
    fn stored_form_is_s3api_json() {
        let b = owner("test:tester");
        let acl = Acl::canned("public-read", &b, None).unwrap();
        let enc = acl.encode();
        assert_eq!(
            enc,
            r#"{"Owner":"test:tester","Grant":[{"Permission":"READ","Grantee":"AllUsers"},{"Permission":"FULL_CONTROL","Grantee":"test:tester"}]}"#
        );
        assert_eq!(Acl::decode(&enc).unwrap(), acl);
        // Python escapes everything past ASCII, astral planes as pairs.
        let odd = Acl::private(&owner("t:\u{e9}\"\u{1f600}"), None);
        let enc = odd.encode();
        assert_eq!(
            enc,
            r#"{"Owner":"t:\u00e9\"\ud83d\ude00","Grant":[{"Permission":"FULL_CONTROL","Grantee":"t:\u00e9\"\ud83d\ude00"}]}"#
        );
        assert_eq!(Acl::decode(&enc).unwrap(), odd);
        let ctl = Acl::private(&owner("a\u{7f}b\u{1}"), None).encode();
        assert!(ctl.starts_with(r#"{"Owner":"a\u007fb\u0001","#), "{ctl}");
        // What Swift stores for a resource without owner, and garbage.
        assert_eq!(Acl::decode("").unwrap(), Acl::default());
        assert_eq!(Acl::decode("[1]").unwrap(), Acl::default());
        assert_eq!(
            Acl::decode(r#"{"Owner":null,"Grant":[]}"#).unwrap(),
            Acl::default()
        );
        assert!(Acl::decode("{").is_err());
        assert!(Acl::decode(r#"{"Owner":"a","Grant":[{"Permission":"READ"}]}"#).is_err());
        assert!(
            Acl::decode(r#"{"Owner":"a","Grant":[{"Permission":"EAT","Grantee":"x"}]}"#).is_err()
        );
    }

    fn doc(acl_list: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Owner><ID>test:tester</ID><DisplayName>test:tester</DisplayName></Owner>
  <AccessControlList>{acl_list}</AccessControlList>
</AccessControlPolicy>"#
        )
    }

    fn grant(grantee: &str, perm: &str) -> String {
        format!(
            r#"<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {grantee}</Grantee><Permission>{perm}</Permission></Grant>"#
        )
    }

    fn from(doc: &str) -> Result<Acl, S3Error> {
        Acl::from_xml(&crate::xml::parse(doc.as_bytes()).unwrap())
    }

    #[test]
    fn policy_documents_round_trip() {
        let user = r#"xsi:type="CanonicalUser"><ID>test:tester3</ID><DisplayName>x</DisplayName>"#;
        let group =
            r#"xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>"#;
        let acl = from(&doc(&(grant(user, "WRITE") + &grant(group, "READ")))).unwrap();
        assert_eq!(acl.owner, owner("test:tester"));
        assert_eq!(
            acl.grants,
            vec![
                Grant::new(Grantee::User("test:tester3".into()), Permission::Write),
                Grant::new(Grantee::AllUsers, Permission::Read),
            ]
        );
        let xml = acl.to_xml();
        assert!(xml.starts_with("<?xml"));
        assert!(xml
            .contains("<Owner><ID>test:tester</ID><DisplayName>test:tester</DisplayName></Owner>"));
        assert!(xml.contains("<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>test:tester3</ID><DisplayName>test:tester3</DisplayName></Grantee><Permission>WRITE</Permission></Grant>"));
        assert_eq!(from(&xml).unwrap(), acl);
        // An owner without DisplayName is displayed by id.
        let no_name = doc("").replace("<DisplayName>test:tester</DisplayName>", "");
        assert_eq!(from(&no_name).unwrap().owner, owner("test:tester"));
        // No owner at all: nobody's, written with empty elements.
        let empty = Acl::default().to_xml();
        assert!(empty
            .contains("<Owner><ID/><DisplayName/></Owner><AccessControlList></AccessControlList>"));
    }

    #[test]
    fn policy_documents_are_checked_as_s3api_does() {
        let user = r#"xsi:type="CanonicalUser"><ID>u</ID>"#;
        let code = |d: &str| from(d).unwrap_err().code;
        use ErrorCode::*;
        // Schema: wrong root, missing or extra elements, bad permission.
        assert_eq!(code("<Foo/>"), MalformedACLError);
        assert_eq!(
            code(&doc("").replace(
                "<Owner><ID>test:tester</ID><DisplayName>test:tester</DisplayName></Owner>",
                ""
            )),
            MalformedACLError
        );
        assert_eq!(code(&doc("<Other/>")), MalformedACLError);
        assert_eq!(code(&doc(&grant(user, "EAT"))), MalformedACLError);
        assert_eq!(code(&doc(&grant(user, "read"))), MalformedACLError);
        assert_eq!(
            code(&doc(&grant(r#"xsi:type="Robot"><ID>u</ID>"#, "READ"))),
            MalformedACLError
        );
        assert_eq!(
            code(&doc(&grant(r#"xsi:type="Group"><ID>u</ID>"#, "READ"))),
            MalformedACLError
        );
        // Past the schema, s3api's own refusals.
        assert_eq!(
            code(&doc(&grant(
                r#"xsi:type="AmazonCustomerByEmail"><EmailAddress>a@b</EmailAddress>"#,
                "READ"
            ))),
            NotImplemented
        );
        let e = from(&doc(&grant(
            r#"xsi:type="Group"><URI>http://x/</URI>"#,
            "READ",
        )))
        .unwrap_err();
        assert_eq!(e.code, InvalidArgument);
        assert_eq!(e.detail_text("ArgumentName"), Some("uri"));
        assert_eq!(code(&doc(&grant(user, " READ "))), NotImplemented);
        // An empty list is fine.
        assert!(from(&doc("")).unwrap().grants.is_empty());
    }
}
