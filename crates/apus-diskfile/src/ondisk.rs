//! Which files in a hash directory make up the object's state, and which
//! are obsolete: Swift's `get_ondisk_files` / `cleanup_ondisk_files` for
//! replicated policies.

use std::io;
use std::path::Path;

use apus_core::Timestamp;

use crate::fsutil::{list_names, now_secs, remove_file};
use crate::layout::{parse_filename, FileInfo};
use crate::xattrs::spill_owner;

/// The classification of a hash directory's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnDiskFiles {
    /// The newest `.data`, unless a newer tombstone exists.
    pub data: Option<FileInfo>,
    /// The newest `.meta` newer than the chosen `.data` (only with a data file).
    pub meta: Option<FileInfo>,
    /// The `.meta` carrying the newest content-type, when that content-type
    /// is newer than the data file (may equal `meta`).
    pub ctype: Option<FileInfo>,
    /// The newest tombstone, when no data file was chosen.
    pub ts: Option<FileInfo>,
    /// Files no longer needed.
    pub obsolete: Vec<FileInfo>,
    /// Files that may be removed once older than the reclaim age (`.meta`
    /// files without a data file).
    pub possible_reclaim: Vec<FileInfo>,
    /// Names that are not object files (kept, as Swift keeps them).
    pub unexpected: Vec<String>,
}

fn sort_newest_first(v: &mut [FileInfo]) {
    // Stable, like Python's sorted(reverse=True) over the (reverse-sorted)
    // listing.
    v.sort_by_key(|f| std::cmp::Reverse(f.timestamp));
}

/// Classifies file names as Swift's replicated `DiskFileManager` does.
/// `names` should be sorted in reverse (as `cleanup_ondisk_files` sorts
/// them) for ties to resolve as in Swift.
pub fn get_ondisk_files(names: &[String]) -> OnDiskFiles {
    let mut out = OnDiskFiles::default();
    let mut datas = Vec::new();
    let mut metas = Vec::new();
    let mut tss = Vec::new();
    let mut others: Vec<Vec<FileInfo>> = Vec::new();
    let mut other_exts: Vec<String> = Vec::new();
    for name in names {
        match parse_filename(name) {
            None => out.unexpected.push(name.clone()),
            Some(info) => match info.ext.as_str() {
                ".data" => datas.push(info),
                ".meta" => metas.push(info),
                ".ts" => tss.push(info),
                ext => match other_exts.iter().position(|e| e == ext) {
                    Some(i) => others[i].push(info),
                    None => {
                        other_exts.push(ext.to_string());
                        others.push(vec![info]);
                    }
                },
            },
        }
    }
    sort_newest_first(&mut datas);
    sort_newest_first(&mut metas);
    sort_newest_first(&mut tss);
    for o in &mut others {
        sort_newest_first(o);
    }

    // Everything not newer than the newest tombstone is obsolete, as are
    // older tombstones.
    if let Some(newest_ts) = tss.first().map(|t| t.timestamp) {
        for list in [&mut datas, &mut metas]
            .into_iter()
            .chain(others.iter_mut())
        {
            let keep = list.iter().take_while(|f| f.timestamp > newest_ts).count();
            out.obsolete.extend(list.drain(keep..));
        }
        out.obsolete.extend(tss.drain(1..));
    }

    // Keep the newest .meta, plus an older one if it carries a newer
    // content-type.
    if !metas.is_empty() {
        let mut retain = 1;
        if metas.len() > 1 {
            metas[1..].sort_by_key(|f| std::cmp::Reverse(f.ctype_timestamp));
            let ct0 = metas[0].ctype_timestamp;
            let ct1 = metas[1].ctype_timestamp;
            if ct1.unwrap_or(Timestamp::ZERO) > ct0.unwrap_or(Timestamp::ZERO) {
                if metas[1].timestamp == metas[0].timestamp {
                    metas.swap(0, 1);
                } else {
                    retain = 2;
                }
            }
        }
        out.obsolete.extend(metas.drain(retain..));
    }

    // Replicated policy: the newest .data wins; older .data and anything
    // else not newer than it is obsolete.
    if let Some(data_ts) = datas.first().map(|d| d.timestamp) {
        let keep = datas.iter().take_while(|f| f.timestamp >= data_ts).count();
        out.obsolete.extend(datas.drain(keep..));
        for list in [&mut metas, &mut tss].into_iter().chain(others.iter_mut()) {
            let keep = list.iter().take_while(|f| f.timestamp > data_ts).count();
            out.obsolete.extend(list.drain(keep..));
        }
        out.data = datas.first().cloned();
    } else if !metas.is_empty() {
        out.possible_reclaim.extend(metas.iter().cloned());
    }

    if let Some(data) = &out.data {
        if let Some(first) = metas.first() {
            out.meta = Some(first.clone());
            if let Some(last) = metas.last() {
                if last.ctype_timestamp.is_some_and(|ct| ct > data.timestamp) {
                    out.ctype = Some(last.clone());
                }
            }
        }
    } else if let Some(ts) = tss.first() {
        out.ts = Some(ts.clone());
    }
    out
}

/// The result of cleaning a hash directory.
#[derive(Clone, Debug, Default)]
pub struct Cleaned {
    pub files: OnDiskFiles,
    /// The names left in the directory, reverse-sorted.
    pub remaining: Vec<String>,
}

/// Seconds a spill file without its owner is given before it counts as an
/// orphan (covers the moment between renaming the spill and its owner).
const SPILL_GRACE_SECS: f64 = 60.0;

/// Removes the spill files that go with the object files in `removed`
/// and orphaned ones: spill files whose owner is gone, once the owner is
/// older than `newest` (the object's current data or tombstone timestamp,
/// by `owner_ts`) or the spill is older than a short grace period (the
/// moment between renaming a spill and its owner). `names` is the
/// directory listing before `removed` went; returns `removed` plus the
/// spill files removed.
pub(crate) fn remove_spills(
    hash_dir: &Path,
    names: &[String],
    mut removed: Vec<String>,
    newest: Option<Timestamp>,
    owner_ts: impl Fn(&str) -> Option<Timestamp>,
) -> Vec<String> {
    // A removed file's spill goes with it.
    for name in removed.clone() {
        let spill = format!("{name}{}", crate::xattrs::SPILL_SUFFIX);
        if names.contains(&spill) {
            remove_file(&hash_dir.join(&spill));
            removed.push(spill);
        }
    }
    // Spill files go with their owners; an orphan (owner never renamed in,
    // or removed by a cleaner that does not know spills) goes once it is
    // older than a short grace period.
    for name in names {
        let Some(owner) = spill_owner(name) else {
            continue;
        };
        if removed.iter().any(|n| n == name)
            || names.iter().any(|n| n == owner) && !removed.iter().any(|n| n == owner)
        {
            continue;
        }
        let path = hash_dir.join(name);
        let owner_obsolete = match (owner_ts(owner), newest) {
            (Some(t), Some(newest)) => t < newest,
            _ => false,
        };
        let old = std::fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age.as_secs_f64() > SPILL_GRACE_SECS);
        if owner_obsolete || old {
            remove_file(&path);
            removed.push(name.clone());
        }
    }
    removed
}

/// Removes obsolete files from a hash directory (and the directory itself
/// when nothing is left), reclaiming tombstones and stray `.meta` files
/// older than `reclaim_age` seconds. Mirrors Swift's
/// `cleanup_ondisk_files`; additionally removes apus spill files whose
/// owner is gone.
pub fn cleanup_ondisk_files(hash_dir: &Path, reclaim_age: f64) -> io::Result<Cleaned> {
    let Some(mut names) = list_names(hash_dir)? else {
        return Ok(Cleaned::default());
    };
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut files = get_ondisk_files(&names);
    let now = now_secs();
    let reclaimable = |t: &Timestamp| now - t.as_secs_f64() > reclaim_age;
    let mut removed: Vec<String> = Vec::new();
    if let Some(ts) = files.ts.take() {
        if reclaimable(&ts.timestamp) {
            remove_file(&hash_dir.join(&ts.filename));
            removed.push(ts.filename);
        } else {
            files.ts = Some(ts);
        }
    }
    let reclaim: Vec<FileInfo> = files
        .possible_reclaim
        .iter()
        .filter(|f| reclaimable(&f.timestamp))
        .cloned()
        .collect();
    files.obsolete.extend(reclaim);
    for f in &files.obsolete {
        remove_file(&hash_dir.join(&f.filename));
        removed.push(f.filename.clone());
    }
    let newest = files
        .data
        .as_ref()
        .or(files.ts.as_ref())
        .map(|f| f.timestamp);
    let removed = remove_spills(hash_dir, &names, removed, newest, |owner| {
        parse_filename(owner).map(|i| i.timestamp)
    });
    names.retain(|n| !removed.contains(n));
    files.unexpected.retain(|n| !removed.contains(n));

    if names.is_empty() {
        let _ = std::fs::remove_dir(hash_dir);
    }
    Ok(Cleaned {
        files,
        remaining: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    fn fnames(v: &[FileInfo]) -> Vec<&str> {
        let mut out: Vec<&str> = v.iter().map(|f| f.filename.as_str()).collect();
        out.sort();
        out
    }

    #[test]
    fn newest_data_wins() {
        let r = get_ondisk_files(&names(&["0000000001.00000.data", "0000000002.00000.data"]));
        assert_eq!(r.data.unwrap().filename, "0000000002.00000.data");
        assert_eq!(fnames(&r.obsolete), ["0000000001.00000.data"]);
    }

    #[test]
    fn tombstone_beats_older_data() {
        let r = get_ondisk_files(&names(&[
            "0000000001.00000.data",
            "0000000002.00000.ts",
            "0000000001.50000.ts",
            "0000000003.00000.meta",
        ]));
        assert!(r.data.is_none());
        assert_eq!(r.ts.unwrap().filename, "0000000002.00000.ts");
        assert_eq!(
            fnames(&r.obsolete),
            ["0000000001.00000.data", "0000000001.50000.ts"]
        );
        assert!(r.meta.is_none());
        assert_eq!(fnames(&r.possible_reclaim), ["0000000003.00000.meta"]);
    }

    #[test]
    fn newer_data_beats_tombstone() {
        let r = get_ondisk_files(&names(&["0000000003.00000.data", "0000000002.00000.ts"]));
        assert_eq!(r.data.unwrap().filename, "0000000003.00000.data");
        assert_eq!(fnames(&r.obsolete), ["0000000002.00000.ts"]);
        assert!(r.ts.is_none());
    }

    #[test]
    fn meta_newer_than_data_kept() {
        let r = get_ondisk_files(&names(&[
            "0000000001.00000.data",
            "0000000000.50000.meta",
            "0000000002.00000.meta",
            "0000000003.00000.meta",
        ]));
        assert_eq!(r.meta.as_ref().unwrap().filename, "0000000003.00000.meta");
        assert!(r.ctype.is_none());
        assert_eq!(
            fnames(&r.obsolete),
            ["0000000000.50000.meta", "0000000002.00000.meta"]
        );
    }

    #[test]
    fn older_meta_with_newer_ctype_retained() {
        // t3 meta has no content-type; t2 meta carries ctype at t2.
        let r = get_ondisk_files(&names(&[
            "0000000001.00000.data",
            "0000000002.00000+0.meta",
            "0000000003.00000.meta",
        ]));
        assert_eq!(r.meta.as_ref().unwrap().filename, "0000000003.00000.meta");
        assert_eq!(
            r.ctype.as_ref().unwrap().filename,
            "0000000002.00000+0.meta"
        );
        assert!(r.obsolete.is_empty());
    }

    #[test]
    fn unexpected_names_kept() {
        let r = get_ondisk_files(&names(&[
            "0000000001.00000.data",
            "0000000001.00000.data.spill",
            ".lock",
        ]));
        assert_eq!(r.unexpected.len(), 2);
        assert!(r.obsolete.is_empty());
    }
}
