//! The container-update message (apus-proto `update`) as it travels: the
//! target lists an object server reads from the proxy's headers, the
//! update's quoted request path and headers, and the async pending it is
//! saved as (apus-diskfile). Nothing panics; the path decodes and splits
//! back into the names it was made of; headers survive the trip through
//! an `http::HeaderMap` and through the pickled async pending.
#![no_main]

use apus_diskfile::AsyncUpdate;
use apus_proto::path::{percent_decode, split_path};
use apus_proto::update::{
    container_targets, delete_at_targets, normalize_delete_at, ContainerUpdate,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines: op, account, container, object, device, partition, the
    // target headers (hosts, partition, devices), then `name: value` lines.
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or("");
    let (op, account, container, obj) = (next(), next(), next(), next());
    let (device, partition) = (next(), next());
    let (hosts, target_part, devices) = (next(), next(), next());

    if let Ok(targets) = container_targets(Some(hosts), Some(target_part), Some(devices)) {
        if !target_part.is_empty() {
            assert_eq!(targets.len(), hosts.split(',').count());
        }
    }
    for t in delete_at_targets(hosts, Some(target_part), Some(devices)).unwrap_or_default() {
        assert!(!t.host.is_empty() && !t.device.is_empty() && !t.partition.is_empty());
    }
    let secs = f64::from_bits(
        data.iter()
            .fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b)),
    );
    let delete_at = normalize_delete_at(secs);
    assert!(delete_at.len() == 10 && delete_at.bytes().all(|b| b.is_ascii_digit()));

    let mut update = ContainerUpdate::new(op, account, container, obj);
    for line in lines {
        // Names are header names as they come off the wire.
        if let Some((name, value)) = line.split_once(':') {
            if http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok() {
                update.set_header(name.trim(), value.trim());
            }
        }
    }

    let path = update.request_path(device, partition);
    let unquoted = format!("/{device}/{partition}/{account}/{container}/{obj}");
    if !unquoted.contains('\0') {
        assert_eq!(percent_decode(&path).as_deref(), Ok(unquoted.as_str()));
        let names = [device, partition, account, container];
        if names.iter().all(|n| !n.is_empty() && !n.contains('/')) && !obj.is_empty() {
            let segs = split_path(&unquoted, 5, 5, true).expect("an update path splits");
            let got: Vec<&str> = segs.iter().map(|s| s.as_deref().unwrap_or("")).collect();
            assert_eq!(got, [device, partition, account, container, obj]);
        }
    }

    let map = update.to_header_map();
    let back = ContainerUpdate::from_header_map(op, account, container, obj, &map);
    for (name, value) in &back.headers {
        assert_eq!(update.header(name), Some(value.as_str()), "{name}");
    }
    assert_eq!(back.to_header_map(), map);

    let pending = AsyncUpdate {
        op: update.op.clone(),
        account: update.account.clone(),
        container: update.container.clone(),
        obj: update.obj.clone(),
        headers: update.headers.clone(),
        db_state: None,
        container_path: update.container_path.clone(),
        successes: Vec::new(),
    };
    let read = AsyncUpdate::from_pickle(&pending.to_pickle()).expect("a saved update reads");
    assert_eq!(read, pending);
});
