//! Behaviour of writers, readers, tombstones, POSTs, quarantine and spills
//! on the real filesystem.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};

use apus_diskfile::{
    xattrs, DiskFileError, FallocateReserve, Metadata, OpenOptions, PutStage, DATA_CRC32_KEY,
};
use common::*;

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn write_object(
    env: &Env,
    obj: &str,
    t: &apus_core::Timestamp,
    data: &[u8],
    extra: &[(&str, &str)],
) -> std::path::PathBuf {
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", obj, 0).unwrap();
    let mut w = df.create(Some(data.len() as u64)).unwrap();
    for chunk in data.chunks(65536) {
        w.write(chunk).unwrap();
    }
    assert_eq!(w.bytes_written(), data.len() as u64);
    assert_eq!(w.etag(), Some(md5_hex(data)));
    assert_eq!(w.crc32(), crc32fast::hash(data));
    let mut md = put_metadata(t, data);
    for (k, v) in extra {
        md.insert(*k, *v);
    }
    w.put(md).unwrap()
}

#[test]
fn round_trip_streaming_and_ranges() {
    let env = Env::new();
    let data = body(300_000);
    let t = recent(10.0);
    let path = write_object(&env, "o", &t, &data, &[("X-Object-Meta-Color", "blue")]);

    let hash = hash_config().hash_path("AUTH_a", Some("c"), Some("o"));
    let expected = env
        .dev()
        .join("objects/7")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{}.data", t.internal()));
    assert_eq!(path, expected);
    assert!(path.exists());
    assert!(env.tmp_entries().is_empty());
    let part = env.dev().join("objects/7");
    assert_eq!(
        fs::read_to_string(part.join("hashes.invalid")).unwrap(),
        format!("{}\n", &hash[29..])
    );

    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let open = df.open(OpenOptions::default()).unwrap();
    assert_eq!(open.content_length(), data.len() as u64);
    assert_eq!(open.metadata().get("X-Object-Meta-Color"), Some("blue"));
    assert_eq!(open.metadata().name(), Some("/AUTH_a/c/o"));
    assert_eq!(open.timestamp(), t);
    assert_eq!(open.etag(), Some(md5_hex(&data).as_str()));
    let mut r = open.reader();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
    assert!(r.quarantined().is_none());

    // Ranges through Seek.
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    r.seek(SeekFrom::Start(1000)).unwrap();
    let mut buf = vec![0u8; 500];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, &data[1000..1500]);
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 10..]);
}

#[test]
fn older_files_cleaned() {
    let env = Env::new();
    let t1 = recent(30.0);
    let t2 = recent(20.0);
    let p1 = write_object(&env, "o", &t1, b"one", &[]);
    let p2 = write_object(&env, "o", &t2, b"two", &[]);
    assert!(!p1.exists());
    assert_eq!(
        names(p2.parent().unwrap()),
        [format!("{}.data", t2.internal())]
    );
    // An older PUT arriving late is written then cleaned away at once.
    let p0 = write_object(&env, "o", &recent(40.0), b"zero", &[]);
    assert!(!p0.exists());
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut out = String::new();
    df.open(OpenOptions::default())
        .unwrap()
        .reader()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "two");
}

#[test]
fn tombstones() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    assert!(matches!(
        df.open(OpenOptions::default()),
        Err(DiskFileError::NotFound)
    ));
    let t1 = recent(30.0);
    let t2 = recent(20.0);
    let t3 = recent(10.0);
    write_object(&env, "o", &t1, b"data", &[]);
    let ts_path = df.delete(t2).unwrap();
    assert_eq!(
        names(df.hash_dir()),
        [format!("{}.ts", t2.internal())],
        "tombstone beats older data"
    );
    assert_eq!(
        xattrs::read_metadata(&ts_path).unwrap().get("X-Timestamp"),
        Some(t2.internal().as_str())
    );
    match df.open(OpenOptions::default()) {
        Err(e @ DiskFileError::Deleted { .. }) => {
            assert_eq!(e.http_status(), 404);
            let DiskFileError::Deleted { timestamp, .. } = e else {
                unreachable!()
            };
            assert_eq!(timestamp, t2);
        }
        other => panic!("expected Deleted, got {other:?}"),
    }
    // An older delete changes nothing.
    df.delete(t1).unwrap();
    assert_eq!(names(df.hash_dir()), [format!("{}.ts", t2.internal())]);
    // Newer data beats the tombstone.
    write_object(&env, "o", &t3, b"back", &[]);
    assert_eq!(names(df.hash_dir()), [format!("{}.data", t3.internal())]);
    assert!(df.open(OpenOptions::default()).is_ok());
}

#[test]
fn old_tombstone_reclaimed() {
    let env = Env::with(|c| c.reclaim_age = 100.0);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    df.delete(recent(1000.0)).unwrap();
    // The delete's own cleanup reclaims the old tombstone and the dir.
    assert!(!df.hash_dir().exists());
    df.delete(recent(10.0)).unwrap();
    assert_eq!(names(df.hash_dir()).len(), 1);
}

#[test]
fn post_semantics() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let t1 = recent(40.0);
    let t2 = recent(30.0);
    let t3 = recent(20.0);
    let t4 = recent(10.0);
    write_object(
        &env,
        "o",
        &t1,
        b"body",
        &[
            ("Content-Type", "text/plain"),
            ("X-Object-Meta-A", "1"),
            ("X-Object-Sysmeta-S", "sys"),
            ("X-Static-Large-Object", "True"),
        ],
    );

    // POST without content-type: user metadata replaced, sysmeta kept.
    let mut m2 = Metadata::new();
    m2.insert("X-Timestamp", t2.internal());
    m2.insert("X-Object-Meta-B", "2");
    df.write_metadata(m2).unwrap();
    let o = df.open(OpenOptions::default()).unwrap();
    assert_eq!(o.metadata().get("X-Object-Meta-A"), None);
    assert_eq!(o.metadata().get("X-Object-Meta-B"), Some("2"));
    assert_eq!(o.metadata().get("X-Object-Sysmeta-S"), Some("sys"));
    assert_eq!(o.metadata().get("X-Static-Large-Object"), Some("True"));
    assert_eq!(o.metadata().get("ETag"), Some(md5_hex(b"body").as_str()));
    assert_eq!(o.content_type(), Some("text/plain"));
    assert_eq!(o.timestamp(), t2);
    assert_eq!(o.data_timestamp(), t1);
    assert_eq!(o.content_type_timestamp(), t1);
    assert_eq!(o.metafile_metadata().unwrap().get("name"), None);
    assert_eq!(o.datafile_metadata().get("X-Object-Meta-A"), Some("1"));
    drop(o);

    // POST with a content-type.
    let mut m3 = Metadata::new();
    m3.insert("X-Timestamp", t3.internal());
    m3.insert("X-Object-Meta-C", "3");
    m3.insert("Content-Type", "image/png");
    m3.insert("Content-Type-Timestamp", t3.internal());
    df.write_metadata(m3).unwrap();
    assert_eq!(
        names(df.hash_dir()),
        [
            format!("{}.data", t1.internal()),
            format!("{}+0.meta", t3.internal())
        ]
    );
    let o = df.open(OpenOptions::default()).unwrap();
    assert_eq!(o.content_type(), Some("image/png"));
    assert_eq!(o.content_type_timestamp(), t3);
    assert_eq!(o.metadata().get("X-Object-Meta-B"), None);
    drop(o);

    // A later POST without content-type keeps the older .meta for its
    // content-type.
    let mut m4 = Metadata::new();
    m4.insert("X-Timestamp", t4.internal());
    m4.insert("X-Object-Meta-D", "4");
    df.write_metadata(m4).unwrap();
    assert_eq!(names(df.hash_dir()).len(), 3);
    let o = df.open(OpenOptions::default()).unwrap();
    assert_eq!(o.metadata().get("X-Object-Meta-D"), Some("4"));
    assert_eq!(o.metadata().get("X-Object-Meta-C"), None);
    assert_eq!(o.content_type(), Some("image/png"));
    assert_eq!(o.content_type_timestamp(), t3);
    assert_eq!(o.timestamp(), t4);

    // A new PUT makes every .meta obsolete.
    write_object(&env, "o", &recent(5.0), b"new", &[]);
    assert_eq!(names(df.hash_dir()).len(), 1);
}

#[test]
fn expiry() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let t = recent(100.0);
    let past = (t.secs() + 50).to_string();
    write_object(&env, "o", &t, b"x", &[("X-Delete-At", &past)]);
    match df.open(OpenOptions::default()) {
        Err(DiskFileError::Expired { x_delete_at, .. }) => {
            assert_eq!(x_delete_at.to_string(), past)
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let o = df
        .open(OpenOptions {
            open_expired: true,
            now: None,
        })
        .unwrap();
    assert_eq!(o.metadata().get("X-Delete-At"), Some(past.as_str()));
    // Judged at an earlier time it is still alive.
    assert!(df
        .open(OpenOptions {
            open_expired: false,
            now: Some(t.as_secs_f64()),
        })
        .is_ok());
}

#[test]
fn quarantine_on_size_mismatch() {
    let env = Env::new();
    let t = recent(10.0);
    let path = write_object(&env, "o", &t, b"hello world", &[]);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    match df.open(OpenOptions::default()) {
        Err(DiskFileError::Quarantined { to, .. }) => {
            assert_eq!(to, env.dev().join("quarantined/objects").join(df.hash()));
            assert!(to.join(format!("{}.data", t.internal())).exists());
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }
    assert!(!df.hash_dir().exists());
    assert!(matches!(
        df.open(OpenOptions::default()),
        Err(DiskFileError::NotFound)
    ));
    let inv = fs::read_to_string(env.dev().join("objects/7/hashes.invalid")).unwrap();
    assert_eq!(inv.lines().last(), Some(&df.hash()[29..]));
}

#[test]
fn quarantine_on_md5_mismatch() {
    let env = Env::new();
    let data = body(200_000);
    let t = recent(10.0);
    let path = write_object(&env, "o", &t, &data, &[]);
    // Flip one byte in place: same size, wrong content.
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(150_000)).unwrap();
    f.write_all(&[data[150_000] ^ 0xff]).unwrap();
    drop(f);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();

    // A range read does not check (and must not quarantine).
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    r.seek(SeekFrom::Start(10)).unwrap();
    let mut sink = Vec::new();
    r.read_to_end(&mut sink).unwrap();
    assert!(r.quarantined().is_none());

    // A partial read abandoned early does not either.
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    let mut buf = [0u8; 1000];
    r.read_exact(&mut buf).unwrap();
    drop(r);
    assert!(df.hash_dir().exists());

    // A full read fails on the final chunk instead of ending cleanly.
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    let err = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("reached EOF without detecting corruption"),
            Ok(n) => total += n,
            Err(e) => break e,
        }
    };
    assert!(total < data.len(), "the last bytes must not be handed out");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let q = r.quarantined().unwrap().to_path_buf();
    assert!(q.join(format!("{}.data", t.internal())).exists());
    assert!(r.read(&mut buf).is_err());
    assert!(!df.hash_dir().exists());
}

/// Reads `r` to the end; the error that ended it, or `None` at a clean EOF.
fn read_through(mut r: impl Read) -> Option<std::io::Error> {
    let mut buf = vec![0u8; 65536];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(e),
        }
    }
}

/// Rewrites one key of a published file's metadata (`None` removes it).
fn set_stored_key(path: &std::path::Path, key: &str, value: Option<&str>) {
    let mut md = xattrs::read_metadata(path).unwrap();
    match value {
        Some(v) => md.insert(key, v),
        None => md.remove(key),
    };
    xattrs::write_metadata_xattrs(path, &md).unwrap();
}

#[test]
fn data_files_carry_the_crc32_of_the_bytes_written() {
    let env = Env::new();
    let data = body(100_000);
    // A value arriving with the metadata is replaced by the writer's own.
    let path = write_object(
        &env,
        "o",
        &recent(10.0),
        &data,
        &[(DATA_CRC32_KEY, "00000000")],
    );
    let md = xattrs::read_metadata(&path).unwrap();
    let want = format!("{:08x}", crc32fast::hash(&data));
    assert_eq!(md.get(DATA_CRC32_KEY), Some(want.as_str()));
    // Tombstones and .meta files hold no data and get no checksum.
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut post = Metadata::new();
    post.insert("X-Timestamp", recent(5.0).internal());
    let meta_path = df.write_metadata(post).unwrap();
    assert_eq!(
        xattrs::read_metadata(&meta_path)
            .unwrap()
            .get(DATA_CRC32_KEY),
        None
    );
    // With a .meta beside it, reads still check the data file's CRC.
    let open = df.open(OpenOptions::default()).unwrap();
    assert!(read_through(open.reader()).is_none());
    let ts_path = df.delete(recent(1.0)).unwrap();
    assert_eq!(
        xattrs::read_metadata(&ts_path).unwrap().get(DATA_CRC32_KEY),
        None
    );
}

#[test]
fn a_full_read_with_the_crc32_quarantines_a_flipped_byte_even_after_a_post() {
    let env = Env::new();
    let data = body(200_000);
    let path = write_object(&env, "o", &recent(10.0), &data, &[]);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut post = Metadata::new();
    post.insert("X-Timestamp", recent(5.0).internal());
    df.write_metadata(post).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(199_999)).unwrap();
    f.write_all(&[data[199_999] ^ 0x01]).unwrap();
    drop(f);
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    let err = read_through(&mut r).expect("the flipped bit must be found");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("CRC-32"), "{err}");
    assert!(r.quarantined().is_some());
}

#[test]
fn a_data_file_without_a_crc32_is_checked_by_md5() {
    // As Swift (or an older apus) wrote it.
    let env = Env::new();
    let data = body(200_000);
    let path = write_object(&env, "o", &recent(10.0), &data, &[]);
    set_stored_key(&path, DATA_CRC32_KEY, None);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    assert!(read_through(df.open(OpenOptions::default()).unwrap().reader()).is_none());
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(7)).unwrap();
    f.write_all(&[data[7] ^ 0x80]).unwrap();
    drop(f);
    let mut r = df.open(OpenOptions::default()).unwrap().reader();
    let err = read_through(&mut r).expect("MD5 must catch it");
    assert!(err.to_string().contains("md5"), "{err}");
    assert!(r.quarantined().is_some());
}

#[test]
fn the_auditing_reader_also_checks_the_etag_the_crc32_does_not_cover() {
    let env = Env::new();
    let data = body(50_000);
    let path = write_object(&env, "o", &recent(10.0), &data, &[]);
    // The bytes are what the CRC says, but not what the ETag says.
    set_stored_key(&path, "ETag", Some(&md5_hex(b"something else")));
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    assert!(read_through(df.open(OpenOptions::default()).unwrap().reader()).is_none());
    let mut r = df.open(OpenOptions::default()).unwrap().auditing_reader();
    let err = read_through(&mut r).expect("the ETag mismatch must be found");
    assert!(err.to_string().contains("md5"), "{err}");
    assert!(r.quarantined().is_some());

    // And the CRC: a stored value that disagrees with good bytes.
    let path = write_object(&env, "p", &recent(10.0), &data, &[]);
    set_stored_key(&path, DATA_CRC32_KEY, Some("0badc0de"));
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "p", 0).unwrap();
    let mut r = df.open(OpenOptions::default()).unwrap().auditing_reader();
    assert!(read_through(&mut r).is_some());
}

#[test]
fn quarantine_on_missing_metadata() {
    let env = Env::new();
    let t = recent(10.0);
    let path = write_object(&env, "o", &t, b"abc", &[]);
    fs::remove_file(&path).unwrap();
    fs::write(&path, b"abc").unwrap(); // no xattrs
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    assert!(matches!(
        df.open(OpenOptions::default()),
        Err(DiskFileError::Quarantined { .. })
    ));
}

#[test]
fn name_collision_and_hash_open() {
    let env = Env::new();
    let t = recent(10.0);
    write_object(&env, "o", &t, b"abc", &[]);
    let hash = hash_config().hash_path("AUTH_a", Some("c"), Some("o"));
    let df = env.mgr.diskfile_from_hash("sda", 7, &hash, 0).unwrap();
    let o = df.open(OpenOptions::default()).unwrap();
    assert_eq!(o.metadata().name(), Some("/AUTH_a/c/o"));
    assert!(df.create(None).is_err(), "no writes without a name");
}

#[test]
fn no_temp_file_left_behind() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    // Dropped without put.
    let mut w = df.create(Some(10)).unwrap();
    w.write(b"partial").unwrap();
    assert_eq!(env.tmp_entries().len(), 1);
    drop(w);
    assert!(env.tmp_entries().is_empty());
    // A failing put.
    let mut w = df.create(None).unwrap();
    w.write(b"x").unwrap();
    assert!(matches!(
        w.put(Metadata::new()),
        Err(DiskFileError::InvalidMetadata(_))
    ));
    assert!(env.tmp_entries().is_empty());
    assert!(!df.hash_dir().exists());
}

#[test]
fn put_observed_reports_each_stage() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let t = recent(10.0);
    let mut w = df.create(Some(3)).unwrap();
    w.write(b"abc").unwrap();
    let mut seen = Vec::new();
    let path = w
        .put_observed(put_metadata(&t, b"abc"), |stage| {
            // At both points the write is a temp file carrying its metadata,
            // and nothing is in the object's directory yet.
            let tmp = env.tmp_entries();
            assert_eq!(tmp.len(), 1, "{stage:?}: {tmp:?}");
            let md = xattrs::read_metadata(&env.dev().join("tmp").join(&tmp[0])).unwrap();
            assert_eq!(md.get("X-Timestamp"), Some(t.internal().as_str()));
            assert!(!df.hash_dir().exists(), "{stage:?}");
            seen.push(stage);
        })
        .unwrap();
    assert_eq!(seen, [PutStage::BeforeFsync, PutStage::BeforeRename]);
    assert!(path.exists());
    assert!(env.tmp_entries().is_empty());
}

#[test]
fn full_disk_fails_early() {
    let env = Env::with(|c| c.fallocate_reserve = FallocateReserve::Percent(100.0));
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let e = df.create(Some(1024)).unwrap_err();
    assert!(matches!(e, DiskFileError::DiskFull { .. }), "{e:?}");
    assert_eq!(e.http_status(), 507);
    assert!(matches!(
        df.create(None),
        Err(DiskFileError::DiskFull { .. })
    ));
    assert!(env.tmp_entries().is_empty());
    // Deletes bypass the reserve.
    df.delete(recent(1.0)).unwrap();
}

#[test]
fn disabled_fallocate_reserves_nothing_ahead() {
    // Swift's disable_fallocate: neither the reserve check nor the
    // preallocation; the write itself succeeds while the disk has room.
    let env = Env::with(|c| {
        c.fallocate_reserve = FallocateReserve::Percent(100.0);
        c.disable_fallocate = true;
    });
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let body = b"written without a reservation";
    let mut w = df.create(Some(1 << 40)).unwrap();
    w.write(body).unwrap();
    w.put(put_metadata(&recent(1.0), body)).unwrap();
    let mut got = Vec::new();
    df.open(OpenOptions::default())
        .unwrap()
        .reader()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, body);
}

#[test]
fn device_checks() {
    let env = Env::new();
    let e = env
        .mgr
        .diskfile("sdz", 7, "AUTH_a", "c", "o", 0)
        .unwrap_err();
    assert!(matches!(e, DiskFileError::DeviceUnavailable { .. }));
    assert_eq!(e.http_status(), 507);
    let strict = Env::with(|c| c.mount_check = true);
    assert!(matches!(
        strict.mgr.device_path("sda"),
        Err(DiskFileError::DeviceUnavailable { .. })
    ));
    fs::write(strict.dev().join(".ismount"), b"").unwrap();
    assert!(strict.mgr.device_path("sda").is_ok());
}

/// Swift's maximal object metadata: 90 user keys with 4096 bytes of names
/// and values, on an object with a 1024-byte name.
fn maximal_metadata() -> (String, Vec<(String, String)>) {
    let obj = "o".repeat(1024);
    let mut items = Vec::new();
    let mut total = 0;
    for i in 0..90 {
        let key = format!("key-{i:02}-{}", "x".repeat(13));
        let value_len = if i == 89 {
            4096 - total - key.len()
        } else {
            25
        };
        let value = "v".repeat(value_len);
        total += key.len() + value.len();
        items.push((format!("X-Object-Meta-{key}"), value));
    }
    assert_eq!(total, 4096);
    (obj, items)
}

#[test]
fn spill_for_oversized_metadata() {
    let env = Env::new();
    let (obj, items) = maximal_metadata();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", &obj, 0).unwrap();
    let t1 = recent(30.0);
    let mut w = df.create(Some(5)).unwrap();
    w.write(b"hello").unwrap();
    let mut md = put_metadata(&t1, b"hello");
    for (k, v) in &items {
        md.insert(k.as_str(), v.as_str());
    }
    let data_path = w.put(md.clone()).unwrap();
    let spill = xattrs::spill_path(&data_path);
    let pickled_len = {
        let mut m = md.clone();
        m.insert("name", df.name().unwrap());
        m.to_pickle().len()
    };
    eprintln!("maximal metadata pickle: {pickled_len} bytes");
    // On ext4 (what these machines have) the xattrs cannot hold it.
    let fs_is_ext = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(env.dev())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("ext"))
        .unwrap_or(false);
    if fs_is_ext {
        assert!(spill.exists(), "expected a spill file on ext4");
    }
    let o = df.open(OpenOptions::default()).unwrap();
    for (k, v) in &items {
        assert_eq!(o.metadata().get(k), Some(v.as_str()));
    }
    assert_eq!(o.metadata().name(), df.name());
    drop(o);
    assert!(env.tmp_entries().is_empty());

    // A maximal POST spills too, and a newer PUT removes both spills.
    let mut m2 = Metadata::new();
    m2.insert("X-Timestamp", recent(20.0).internal());
    for (k, v) in &items {
        m2.insert(k.as_str(), v.as_str());
    }
    let meta_path = df.write_metadata(m2).unwrap();
    if fs_is_ext {
        assert!(xattrs::spill_path(&meta_path).exists());
    }
    assert_eq!(
        df.open(OpenOptions::default())
            .unwrap()
            .metadata()
            .get(&items[0].0),
        Some(items[0].1.as_str())
    );
    let mut w = df.create(None).unwrap();
    w.write(b"x").unwrap();
    let p3 = w.put(put_metadata(&recent(10.0), b"x")).unwrap();
    assert_eq!(
        names(df.hash_dir()),
        [p3.file_name().unwrap().to_string_lossy().into_owned()]
    );
}

#[test]
fn spill_above_threshold_on_any_filesystem() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "big", 0).unwrap();
    let mut w = df.create(None).unwrap();
    w.write(b"").unwrap();
    let mut md = put_metadata(&recent(10.0), b"");
    md.insert("X-Object-Sysmeta-Huge", "h".repeat(70_000));
    let p = w.put(md).unwrap();
    assert!(xattrs::spill_path(&p).exists());
    let o = df.open(OpenOptions::default()).unwrap();
    assert_eq!(
        o.metadata().get("X-Object-Sysmeta-Huge").map(str::len),
        Some(70_000)
    );
    drop(o);
    // A damaged spill file is caught by its checksum.
    fs::write(xattrs::spill_path(&p), b"garbage").unwrap();
    assert!(matches!(
        df.open(OpenOptions::default()),
        Err(DiskFileError::Quarantined { .. })
    ));
}

#[test]
fn orphan_spill_removed_with_obsolete_owner() {
    let env = Env::new();
    let t1 = recent(30.0);
    let p = write_object(&env, "o", &t1, b"a", &[]);
    let dir = p.parent().unwrap().to_path_buf();
    // A spill whose owner never arrived and is older than the object.
    let orphan = dir.join(format!("{}.data.spill", recent(40.0).internal()));
    fs::write(&orphan, b"x").unwrap();
    // A fresh one of a newer owner is kept (a writer may be mid-publish).
    let fresh = dir.join(format!("{}.data.spill", recent(1.0).internal()));
    fs::write(&fresh, b"x").unwrap();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    df.cleanup().unwrap();
    assert!(!orphan.exists());
    assert!(fresh.exists());
    assert!(p.exists());
}

#[test]
fn stale_temp_files_removed_at_startup() {
    use std::time::{Duration, SystemTime};
    let env = Env::new();
    let start = SystemTime::now();
    let hour_ago = start - Duration::from_secs(3600);
    let make = |rel: &str, mtime: SystemTime| {
        let path = env.dev().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = fs::File::create(&path).unwrap();
        f.set_modified(mtime).unwrap();
        path
    };
    // What a crash leaves: temp files of policy 0 and 1, older than start.
    let stale = [make("tmp/tmpA", hour_ago), make("tmp-1/tmpB", hour_ago)];
    // Files elsewhere, or written since the start, are not the sweep's.
    let kept = [
        make("tmp/fresh", start + Duration::from_secs(1)),
        make("tmpx/tmpC", hour_ago),
        make("async_pending/abc/tmpD", hour_ago),
    ];
    // A write in progress, begun after the start, survives the sweep
    // (past the start on the filesystem's coarser clock too).
    std::thread::sleep(Duration::from_millis(50));
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut w = df.create(Some(3)).unwrap();
    w.write(b"abc").unwrap();
    // An unavailable device (a plain file) is skipped.
    fs::write(env.root.path().join("not-a-device"), b"").unwrap();

    assert_eq!(env.mgr.remove_stale_temp_files(start), 2);
    for p in &stale {
        assert!(!p.exists(), "{}", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{}", p.display());
    }
    w.put(put_metadata(&recent(1.0), b"abc")).unwrap();
    let mut body = Vec::new();
    df.open(OpenOptions::default())
        .unwrap()
        .reader()
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body, b"abc");
}

#[test]
fn a_writer_without_md5_still_stores_and_checks_the_crc32() {
    let env = Env::new();
    let data = body(200_000);
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut w = df
        .create(Some(data.len() as u64))
        .unwrap()
        .without_md5()
        .unwrap();
    for chunk in data.chunks(10_000) {
        w.write(chunk).unwrap();
    }
    // The ETag is the caller's to give; the CRC is the writer's own.
    assert_eq!(w.etag(), None);
    assert_eq!(w.crc32(), crc32fast::hash(&data));
    let path = w.put(put_metadata(&recent(1.0), &data)).unwrap();
    let want = format!("{:08x}", crc32fast::hash(&data));
    assert_eq!(
        xattrs::read_metadata(&path).unwrap().get(DATA_CRC32_KEY),
        Some(want.as_str())
    );
    let open = df.open(OpenOptions::default()).unwrap();
    assert_eq!(open.etag(), Some(md5_hex(&data).as_str()));
    assert!(read_through(open.reader()).is_none());

    // Turning MD5 off once bytes went in would leave a partial hash.
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o2", 0).unwrap();
    let mut w = df.create(None).unwrap();
    w.write(b"abc").unwrap();
    assert!(matches!(
        w.without_md5(),
        Err(DiskFileError::InvalidMetadata(_))
    ));
}
