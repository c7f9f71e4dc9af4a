//! The JSON schemas Glance publishes under `/v2/schemas/`: clients read
//! them to learn which attributes are base ones, their types and which
//! are read-only (python-glanceclient builds its models and its
//! `image-create` options from `image`).

use serde_json::{json, Value};

use crate::ImagesConfig;

/// One base attribute's schema: its JSON type(s), then extra keywords.
fn attr(kind: Value, description: &str, extra: Value) -> Value {
    let mut v = json!({ "type": kind, "description": description });
    if let (Some(map), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, e) in extra {
            map.insert(k.clone(), e.clone());
        }
    }
    v
}

fn nullable_enum(values: &[String]) -> Value {
    let mut list = vec![Value::Null];
    list.extend(values.iter().map(|s| Value::String(s.clone())));
    Value::Array(list)
}

/// The image schema (`/v2/schemas/image`).
pub fn image(config: &ImagesConfig) -> Value {
    let ro = json!({ "readOnly": true });
    let properties = json!({
        "id": attr(json!("string"), "The image's identifier (a UUID)", json!({
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
        })),
        "name": attr(json!(["null", "string"]), "A name for people", json!({ "maxLength": 255 })),
        "status": attr(json!("string"), "Where the image is in its life", json!({
            "readOnly": true,
            "enum": ["queued", "saving", "active", "killed", "deleted", "uploading",
                     "importing", "pending_delete", "deactivated"]
        })),
        "visibility": attr(json!("string"), "Who can see the image", json!({
            "enum": ["community", "public", "private", "shared"]
        })),
        "protected": attr(json!("boolean"), "Whether deletion is refused", json!({})),
        "os_hidden": attr(json!("boolean"), "Whether default listings leave the image out", json!({})),
        "checksum": attr(json!(["null", "string"]), "MD5 of the data", json!({ "readOnly": true, "maxLength": 32 })),
        "os_hash_algo": attr(json!(["null", "string"]), "The algorithm of os_hash_value", json!({ "readOnly": true, "maxLength": 64 })),
        "os_hash_value": attr(json!(["null", "string"]), "Hex digest of the data by os_hash_algo", json!({ "readOnly": true, "maxLength": 128 })),
        "owner": attr(json!(["null", "string"]), "The owning project", json!({ "maxLength": 255 })),
        "size": attr(json!(["null", "integer"]), "Bytes of data", ro.clone()),
        "virtual_size": attr(json!(["null", "integer"]), "Bytes of the virtual disk", ro.clone()),
        "container_format": attr(json!(["null", "string"]), "The container format", json!({
            "enum": nullable_enum(&config.container_formats)
        })),
        "disk_format": attr(json!(["null", "string"]), "The disk format", json!({
            "enum": nullable_enum(&config.disk_formats)
        })),
        "created_at": attr(json!("string"), "When the image was registered", ro.clone()),
        "updated_at": attr(json!("string"), "When the image last changed", ro.clone()),
        "tags": attr(json!("array"), "Labels", json!({ "items": { "type": "string", "maxLength": 255 } })),
        "direct_url": attr(json!("string"), "Where the data is kept", ro.clone()),
        "min_ram": attr(json!("integer"), "MB of RAM needed to boot", json!({})),
        "min_disk": attr(json!("integer"), "GB of disk needed to boot", json!({})),
        "self": attr(json!("string"), "The image's URL", ro.clone()),
        "file": attr(json!("string"), "The URL of the image's data", ro.clone()),
        "stores": attr(json!("string"), "The stores holding the data", ro.clone()),
        "schema": attr(json!("string"), "The URL of this schema", ro.clone()),
        "locations": attr(json!("array"), "Where the data is kept", json!({
            "items": {
                "type": "object",
                "properties": {
                    "url": { "type": "string", "maxLength": 255 },
                    "metadata": { "type": "object" }
                },
                "required": ["url", "metadata"]
            }
        })),
    });
    json!({
        "name": "image",
        "properties": properties,
        "additionalProperties": { "type": "string" },
        "links": [
            { "rel": "self", "href": "{self}" },
            { "rel": "enclosure", "href": "{file}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

/// A collection schema (`/v2/schemas/images`, `/v2/schemas/members`).
fn collection(name: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            name: { "type": "array", "items": item },
            "first": { "type": "string" },
            "next": { "type": "string" },
            "schema": { "type": "string" }
        },
        "links": [
            { "rel": "first", "href": "{first}" },
            { "rel": "next", "href": "{next}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

pub fn images(config: &ImagesConfig) -> Value {
    collection("images", image(config))
}

pub fn member() -> Value {
    json!({
        "name": "member",
        "properties": {
            "created_at": { "type": "string", "description": "When the member was added" },
            "image_id": { "type": "string", "description": "The shared image" },
            "member_id": { "type": "string", "description": "The project the image is shared with" },
            "schema": { "type": "string", "readOnly": true },
            "status": {
                "type": "string",
                "description": "Whether the member took the image",
                "enum": ["pending", "accepted", "rejected"]
            },
            "updated_at": { "type": "string", "description": "When the member last changed" }
        },
        "additionalProperties": false
    })
}

pub fn members() -> Value {
    collection("members", member())
}
