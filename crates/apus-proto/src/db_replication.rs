//! The account and container replication protocol: `REPLICATE
//! /<device>/<partition>/<hash>` requests between database servers.
//!
//! **Swift's RPC** (body: a JSON list, the operation name first), spoken
//! as Swift speaks it so apus and Swift replicators can talk to each other:
//! - `["sync", max_row, hash, id, created_at, put_timestamp,
//!   delete_timestamp, metadata_json(, status_changed_at, count,
//!   storage_policy_index)]`: the sender's replication info. The receiver
//!   merges metadata and status timestamps, answers 200 with its own
//!   replication info plus `point` (how far it has the sender's rows) as a
//!   [`SyncReply`], or 404 when it has no such database.
//! - `["merge_items", [rows], sender_id]`: rows with their `ROWID`, in
//!   ROWID order; the receiver records the last ROWID as its sync point
//!   with the sender. 202.
//! - `["merge_syncs", [{"remote_id", "sync_point"}]]`: the sender's
//!   incoming sync points, so the receiver learns what third copies have.
//!   202.
//!
//! **apus's whole-database copy** (Swift rsyncs the file into the peer's
//! `tmp/` and then calls `complete_rsync`; apus has no rsync, and does not
//! answer `complete_rsync` or `rsync_then_merge`): a `REPLICATE` with
//! `X-Apus-Replicate: complete-copy`, `X-Apus-Replicate-Source-Id: <id of
//! the copied database>` and a `Content-Length`, whose body is the SQLite
//! file. The receiver writes it to the device's `tmp/`, fsyncs it, opens
//! and checks it (`PRAGMA quick_check`, the right kind of database, named
//! by the hash in the path), gives it a new id that records the source as
//! synced up to its last row, and links it into place only if no database
//! exists there (201; 409 if one does). A copy that fails any check is
//! deleted and answered 400 (or 507 without room on the device).
//!
//! Request bodies are bounded: RPC bodies by [`MAX_RPC_BODY`] (413 beyond
//! it), copies by [`MAX_COPY_BYTES`]. Parsing never panics.

use apus_core::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request header selecting apus's whole-database copy.
pub const REPLICATE_MODE_HEADER: &str = "x-apus-replicate";
/// Its one value.
pub const COMPLETE_COPY: &str = "complete-copy";
/// The id of the database being copied.
pub const COPY_SOURCE_ID_HEADER: &str = "x-apus-replicate-source-id";
/// Largest RPC body a server reads: a `merge_items` batch of Swift's 1000
/// rows with maximal, fully escaped names fits several times over.
pub const MAX_RPC_BODY: usize = 16 * 1024 * 1024;
/// Largest database a server accepts as a whole copy.
pub const MAX_COPY_BYTES: u64 = 1 << 40;
/// Longest database id accepted (Swift's are a UUID and a device name).
pub const MAX_DB_ID_LEN: usize = 512;

/// Why a replication request body could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("Invalid object type")]
    NotAList,
    #[error("unknown replication operation {0:?}")]
    UnknownOp(String),
    #[error("bad arguments to {op}: {detail}")]
    BadArgs { op: &'static str, detail: String },
}

/// A sync point: how far (ROWID) one copy has another's rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPoint {
    pub remote_id: String,
    pub sync_point: i64,
}

/// The container-only tail of `sync`'s arguments, used to settle which
/// storage policy a container has when copies disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyArgs {
    pub status_changed_at: Timestamp,
    pub count: i64,
    pub storage_policy_index: i64,
}

/// The arguments of `sync`: the sender's replication info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncArgs {
    pub max_row: i64,
    pub hash: String,
    pub id: String,
    pub created_at: Timestamp,
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    /// The metadata in its stored JSON form (may be empty).
    pub metadata: String,
    pub policy: Option<PolicyArgs>,
}

/// One replication RPC, generic over the row type of the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicateOp<I> {
    Sync(SyncArgs),
    MergeItems { items: Vec<I>, source_id: String },
    MergeSyncs(Vec<SyncPoint>),
}

fn bad(op: &'static str, detail: impl Into<String>) -> RpcError {
    RpcError::BadArgs {
        op,
        detail: detail.into(),
    }
}

/// A timestamp as Swift sends it: text, or a number in old rows.
fn ts_value(v: Option<&Value>) -> Option<Timestamp> {
    match v? {
        Value::String(s) if s.is_empty() => Some(Timestamp::ZERO),
        Value::String(s) => Timestamp::parse(s).ok(),
        Value::Number(n) => n.as_f64().and_then(Timestamp::from_secs_f64),
        _ => None,
    }
}

fn int_value(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Whether `id` is acceptable as a database id from a peer (bounded,
/// printable, no path separators: it becomes part of a sync table row and
/// is logged).
pub fn valid_db_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DB_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

impl SyncArgs {
    fn parse(args: &[Value]) -> Result<Self, RpcError> {
        const OP: &str = "sync";
        if args.len() < 7 {
            return Err(bad(OP, format!("{} arguments, need 7", args.len())));
        }
        let ts = |i: usize, name: &str| {
            ts_value(args.get(i)).ok_or_else(|| bad(OP, format!("invalid {name}")))
        };
        let id = str_value(args.get(2)).ok_or_else(|| bad(OP, "invalid id"))?;
        if !valid_db_id(&id) {
            return Err(bad(OP, "invalid id"));
        }
        let policy = if args.len() > 9 {
            Some(PolicyArgs {
                status_changed_at: ts(7, "status_changed_at")?,
                count: int_value(args.get(8)).ok_or_else(|| bad(OP, "invalid count"))?,
                storage_policy_index: int_value(args.get(9))
                    .ok_or_else(|| bad(OP, "invalid storage_policy_index"))?,
            })
        } else {
            None
        };
        Ok(SyncArgs {
            max_row: int_value(args.first()).ok_or_else(|| bad(OP, "invalid max_row"))?,
            hash: str_value(args.get(1)).ok_or_else(|| bad(OP, "invalid hash"))?,
            id,
            created_at: ts(3, "created_at")?,
            put_timestamp: ts(4, "put_timestamp")?,
            delete_timestamp: ts(5, "delete_timestamp")?,
            metadata: str_value(args.get(6)).ok_or_else(|| bad(OP, "invalid metadata"))?,
            policy,
        })
    }

    fn to_values(&self) -> Vec<Value> {
        let mut out = vec![
            Value::from(self.max_row),
            Value::from(self.hash.clone()),
            Value::from(self.id.clone()),
            Value::from(self.created_at.internal()),
            Value::from(self.put_timestamp.internal()),
            Value::from(self.delete_timestamp.internal()),
            Value::from(self.metadata.clone()),
        ];
        if let Some(p) = &self.policy {
            out.push(Value::from(p.status_changed_at.internal()));
            out.push(Value::from(p.count));
            out.push(Value::from(p.storage_policy_index));
        }
        out
    }
}

impl<I: DeserializeOwned> ReplicateOp<I> {
    /// Parses a request body (at most [`MAX_RPC_BODY`] bytes; the caller
    /// enforces the bound before reading it whole).
    pub fn parse(body: &[u8]) -> Result<Self, RpcError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| RpcError::Json(e.to_string()))?;
        let Value::Array(mut list) = value else {
            return Err(RpcError::NotAList);
        };
        if list.is_empty() {
            return Err(RpcError::NotAList);
        }
        let op = match list.remove(0) {
            Value::String(s) => s,
            other => return Err(RpcError::UnknownOp(other.to_string())),
        };
        match op.as_str() {
            "sync" => SyncArgs::parse(&list).map(ReplicateOp::Sync),
            "merge_items" => {
                const OP: &str = "merge_items";
                let mut it = list.into_iter();
                let items = it.next().ok_or_else(|| bad(OP, "no rows"))?;
                let items: Vec<I> =
                    serde_json::from_value(items).map_err(|e| bad(OP, e.to_string()))?;
                let source_id = match it.next() {
                    Some(Value::String(s)) if valid_db_id(&s) => s,
                    _ => return Err(bad(OP, "invalid sender id")),
                };
                Ok(ReplicateOp::MergeItems { items, source_id })
            }
            "merge_syncs" => {
                const OP: &str = "merge_syncs";
                let points = list
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad(OP, "no sync points"))?;
                let points: Vec<SyncPoint> =
                    serde_json::from_value(points).map_err(|e| bad(OP, e.to_string()))?;
                if points.iter().any(|p| !valid_db_id(&p.remote_id)) {
                    return Err(bad(OP, "invalid remote_id"));
                }
                Ok(ReplicateOp::MergeSyncs(points))
            }
            _ => Err(RpcError::UnknownOp(op)),
        }
    }
}

impl<I: Serialize> ReplicateOp<I> {
    /// The request body.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let list = match self {
            ReplicateOp::Sync(args) => {
                let mut v = vec![Value::from("sync")];
                v.extend(args.to_values());
                v
            }
            ReplicateOp::MergeItems { items, source_id } => vec![
                Value::from("merge_items"),
                serde_json::to_value(items)?,
                Value::from(source_id.clone()),
            ],
            ReplicateOp::MergeSyncs(points) => {
                vec![Value::from("merge_syncs"), serde_json::to_value(points)?]
            }
        };
        serde_json::to_vec(&Value::Array(list))
    }
}

/// Timestamps in replies: written in internal text form, read from text or
/// numbers.
mod ts_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.internal())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let v = Value::deserialize(d)?;
        ts_value(Some(&v)).ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

fn zero() -> Timestamp {
    Timestamp::ZERO
}

/// `sync`'s answer: the receiver's replication info and its sync point
/// with the sender. Fields Swift's replicator does not need default when
/// absent; unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    #[serde(default)]
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(with = "ts_serde", default = "zero")]
    pub created_at: Timestamp,
    #[serde(with = "ts_serde", default = "zero")]
    pub put_timestamp: Timestamp,
    #[serde(with = "ts_serde", default = "zero")]
    pub delete_timestamp: Timestamp,
    #[serde(with = "ts_serde", default = "zero")]
    pub status_changed_at: Timestamp,
    #[serde(default)]
    pub count: i64,
    #[serde(default)]
    pub object_count: i64,
    #[serde(default)]
    pub bytes_used: i64,
    pub hash: String,
    pub id: String,
    /// Stored metadata JSON (may be empty).
    #[serde(default)]
    pub metadata: String,
    pub max_row: i64,
    /// How far the receiver has the sender's rows.
    pub point: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_policy_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_max_row: Option<i64>,
}

impl SyncReply {
    pub fn parse(body: &[u8]) -> Result<Self, RpcError> {
        serde_json::from_slice(body).map_err(|e| RpcError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        #[serde(rename = "ROWID")]
        rowid: i64,
        name: String,
    }

    type Op = ReplicateOp<Row>;

    #[test]
    fn parses_swift_sync_with_and_without_the_policy_tail() {
        let body = br#"["sync", 12, "abc", "id-1", "1700000000.00000", "1700000001.00000", "0", "{\"X-Container-Meta-A\": [\"b\", \"1700000002.00000\"]}"]"#;
        let Op::Sync(args) = Op::parse(body).unwrap() else {
            panic!("not sync")
        };
        assert_eq!(args.max_row, 12);
        assert_eq!(args.id, "id-1");
        assert_eq!(args.delete_timestamp, Timestamp::ZERO);
        assert!(args.metadata.contains("Meta-A"));
        assert_eq!(args.policy, None);
        let body = br#"["sync", -1, "", "id-2", "1", "2", "0", "", "3", 5, 1]"#;
        let Op::Sync(args) = Op::parse(body).unwrap() else {
            panic!("not sync")
        };
        let p = args.policy.clone().unwrap();
        assert_eq!((p.count, p.storage_policy_index), (5, 1));
        // Round trip through our encoding.
        let again = Op::parse(&Op::Sync(args.clone()).to_json().unwrap()).unwrap();
        assert_eq!(again, Op::Sync(args));
    }

    #[test]
    fn merge_items_and_merge_syncs_round_trip() {
        let op = Op::MergeItems {
            items: vec![Row {
                rowid: 4,
                name: "o".into(),
            }],
            source_id: "src".into(),
        };
        let json = op.to_json().unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"["merge_items",[{"ROWID":4,"name":"o"}],"src"]"#
        );
        assert_eq!(Op::parse(&json).unwrap(), op);
        let op = Op::MergeSyncs(vec![SyncPoint {
            remote_id: "r".into(),
            sync_point: 9,
        }]);
        assert_eq!(Op::parse(&op.to_json().unwrap()).unwrap(), op);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for body in [
            &b""[..],
            b"{}",
            b"[]",
            b"[1]",
            b"[\"sync\"]",
            b"[\"sync\", 1, 2, 3, 4, 5, 6, 7]",
            b"[\"sync\", \"x\", \"h\", \"id\", \"a\", \"1\", \"1\", \"\"]",
            b"[\"sync\", 1, \"h\", \"../x\", \"1\", \"1\", \"1\", \"\"]",
            b"[\"merge_items\"]",
            b"[\"merge_items\", [{\"name\": 1}], \"s\"]",
            b"[\"merge_items\", [], 5]",
            b"[\"merge_syncs\", {}]",
            b"[\"merge_syncs\", [{\"remote_id\": \"\", \"sync_point\": 1}]]",
            b"[\"complete_rsync\", \"x\"]",
            b"[\"sync\", 1e400]",
            b"\xff\xfe",
        ] {
            assert!(
                Op::parse(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn sync_reply_reads_swift_info() {
        let swift = br#"{"account": "a", "container": "c", "created_at": "1700000000.00000",
            "put_timestamp": "1700000000.00000", "delete_timestamp": "0",
            "status_changed_at": "1700000000.00000", "count": 3, "object_count": 3,
            "bytes_used": 10, "reported_put_timestamp": "0", "hash": "h", "id": "i",
            "metadata": "", "max_row": 7, "point": -1, "storage_policy_index": 0,
            "shard_max_row": -1, "x_container_sync_point1": -1}"#;
        let r = SyncReply::parse(swift).unwrap();
        assert_eq!((r.max_row, r.point, r.count), (7, -1, 3));
        assert_eq!(r.container.as_deref(), Some("c"));
        let back = SyncReply::parse(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(SyncReply::parse(b"{\"id\": 1}").is_err());
    }
}
