//! The database replication RPC (apus-proto `db_replication`): `sync`,
//! `merge_items` (with the real container and account rows of apus-db)
//! and `merge_syncs` bodies, and `sync`'s reply. Any bytes parse or are
//! refused, never a panic, and what parses encodes to a body that parses
//! to the same thing.
#![no_main]

use apus_db::{ContainerRecord, ObjectRecord};
use apus_proto::db_replication::{valid_db_id, ReplicateOp, SyncReply};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<I>(body: &[u8])
where
    I: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(op) = ReplicateOp::<I>::parse(body) else {
        return;
    };
    match &op {
        ReplicateOp::Sync(args) => assert!(valid_db_id(&args.id)),
        ReplicateOp::MergeItems { source_id, .. } => assert!(valid_db_id(source_id)),
        ReplicateOp::MergeSyncs(points) => {
            assert!(points.iter().all(|p| valid_db_id(&p.remote_id)))
        }
    }
    let json = op.to_json().expect("a parsed op encodes");
    let again = ReplicateOp::<I>::parse(&json).expect("an encoded op parses");
    assert_eq!(again, op, "{}", String::from_utf8_lossy(&json));
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ObjectRecord>(data);
    round_trip::<ContainerRecord>(data);
    if let Ok(reply) = SyncReply::parse(data) {
        let json = serde_json::to_vec(&reply).expect("a reply encodes");
        assert_eq!(SyncReply::parse(&json).as_ref(), Ok(&reply));
    }
});
