//! Which files in an erasure-coded object's hash directory make up its
//! state, and which are obsolete: Swift's `ECDiskFileManager`
//! `get_ondisk_files` / `cleanup_ondisk_files`.
//!
//! An EC hash directory holds fragment archives `<ts>#<frag_index>.data`
//! (non-durable: written, not yet committed) and `<ts>#<frag_index>#d.data`
//! (durable), possibly several indexes at one timestamp (a handoff holding
//! fragments for more than one primary), older nodes' legacy
//! `<ts>.durable` markers, `.meta` files and tombstones. Unlike a
//! replicated object, the newest data file does not win: the newest
//! *durable* timestamp defines the object, newer non-durable fragments are
//! kept (their commit may be on its way) until they are older than the
//! reclaim age, and a reader may ask for a fragment index or give
//! fragment preferences (the proxy's `X-Backend-Fragment-Preferences`),
//! which may select non-durable fragments.

use std::io;
use std::path::Path;

use apus_core::Timestamp;

use crate::fsutil::{list_names, now_secs, remove_file};
use crate::layout::{parse_ec_filename, EcPolicy, FileInfo};
use crate::ondisk::{remove_spills, OnDiskFiles};
use crate::pyset::set_difference_list;

/// One entry of the fragment preferences: fragments at `timestamp` are
/// acceptable unless their index is in `exclude`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragPref {
    pub timestamp: Timestamp,
    pub exclude: Vec<u32>,
}

/// The indexes of `available` not in `exclude`, in the order Swift lists
/// them (`list(set(available) - set(exclude))`, CPython's set order); under
/// fragment preferences Swift serves the last one.
pub fn acceptable_frag_indexes(available: &[u32], exclude: &[u32]) -> Vec<u32> {
    set_difference_list(available, exclude)
}

/// Which fragment a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FragSelect {
    /// A specific fragment index (the object server's
    /// `X-Backend-Ssync-Frag-Index`, the reconstructor's own index).
    pub frag_index: Option<u32>,
    /// Per-timestamp preferences in descending order of preference. Any
    /// `Some`, even empty, means a durable fragment is not required.
    pub frag_prefs: Option<Vec<FragPref>>,
}

impl FragSelect {
    /// Any fragment of the durable timestamp (the highest index).
    pub fn any() -> Self {
        FragSelect::default()
    }

    /// The fragment with this index at the durable timestamp.
    pub fn index(frag_index: u32) -> Self {
        FragSelect {
            frag_index: Some(frag_index),
            frag_prefs: None,
        }
    }

    /// A fragment chosen by preferences (durable or not).
    pub fn prefs(frag_prefs: Vec<FragPref>) -> Self {
        FragSelect {
            frag_index: None,
            frag_prefs: Some(frag_prefs),
        }
    }
}

/// The classification of an EC hash directory's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcOnDiskFiles {
    /// The chosen fragment archive.
    pub data: Option<FileInfo>,
    /// The newest `.meta`, reported only with a chosen fragment.
    pub meta: Option<FileInfo>,
    /// The `.meta` carrying the newest content-type, when newer than the
    /// chosen fragment.
    pub ctype: Option<FileInfo>,
    /// The newest tombstone, when no fragment was chosen.
    pub ts: Option<FileInfo>,
    /// Files no longer needed.
    pub obsolete: Vec<FileInfo>,
    /// Files that may go once older than the reclaim age: fragments of
    /// timestamps that are neither durable nor chosen, and `.meta` files
    /// without durable data. (As in Swift, a fragment set older than a
    /// legacy `.durable` without fragments of its own is listed here and
    /// in `obsolete`.)
    pub possible_reclaim: Vec<FileInfo>,
    /// Names that are not object files of this policy (kept).
    pub unexpected: Vec<String>,
    /// The fragments at each timestamp down to the durable one, newest
    /// timestamp first, each in ascending fragment index order.
    pub frag_sets: Vec<(Timestamp, Vec<FileInfo>)>,
    /// The durable timestamp, reported as Swift reports it: only when a
    /// fragment was chosen.
    pub durable_frag_set: Option<Timestamp>,
    /// The timestamp of the chosen fragment's set.
    pub chosen_frag_set: Option<Timestamp>,
}

impl EcOnDiskFiles {
    /// Swift's `ECDiskFile.fragments`: the fragment indexes found at each
    /// timestamp (newest first), durable or not.
    pub fn fragments(&self) -> Vec<(Timestamp, Vec<u32>)> {
        self.frag_sets
            .iter()
            .map(|(t, set)| (*t, set.iter().filter_map(|f| f.frag_index).collect()))
            .collect()
    }

    /// Swift's `ECDiskFile.durable_timestamp`.
    pub fn durable_timestamp(&self) -> Option<Timestamp> {
        self.durable_frag_set
    }

    /// The chosen files as the replicated classification reports them
    /// (what opening the object reads).
    pub fn base(&self) -> OnDiskFiles {
        OnDiskFiles {
            data: self.data.clone(),
            meta: self.meta.clone(),
            ctype: self.ctype.clone(),
            ts: self.ts.clone(),
            ..OnDiskFiles::default()
        }
    }

    fn frag_set(&self, ts: Timestamp) -> Option<&[FileInfo]> {
        self.frag_sets
            .iter()
            .find(|(t, _)| *t == ts)
            .map(|(_, s)| s.as_slice())
    }
}

/// Files grouped by extension, in first-seen order (Swift's `exts`).
#[derive(Default)]
struct Exts(Vec<(String, Vec<FileInfo>)>);

impl Exts {
    fn get_mut(&mut self, ext: &str) -> &mut Vec<FileInfo> {
        let i = match self.0.iter().position(|(e, _)| e == ext) {
            Some(i) => i,
            None => {
                self.0.push((ext.to_string(), Vec::new()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn get(&self, ext: &str) -> &[FileInfo] {
        self.0
            .iter()
            .find(|(e, _)| e == ext)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }
}

/// Keeps the leading items for which `keep` holds; returns the rest.
fn split_off_tail(list: &mut Vec<FileInfo>, keep: impl Fn(&FileInfo) -> bool) -> Vec<FileInfo> {
    let n = list.iter().take_while(|f| keep(f)).count();
    list.split_off(n)
}

/// Classifies file names as Swift's `ECDiskFileManager.get_ondisk_files`
/// does. `policy` checks fragment indexes (an index beyond its width makes
/// the name unexpected); `names` should be sorted in reverse (as cleanup
/// sorts them) for ties to resolve as in Swift.
pub fn get_ondisk_files_ec(
    names: &[String],
    policy: Option<&EcPolicy>,
    select: &FragSelect,
) -> EcOnDiskFiles {
    let mut out = EcOnDiskFiles::default();
    let mut exts = Exts::default();
    for name in names {
        match parse_ec_filename(name, policy) {
            None => out.unexpected.push(name.clone()),
            Some(info) => exts.get_mut(&info.ext.clone()).push(info),
        }
    }
    for (_, list) in &mut exts.0 {
        // Stable: ties keep the listing's order, as Python's sorted does.
        list.sort_by_key(|f| std::cmp::Reverse(f.timestamp));
    }

    // Everything not newer than the newest tombstone is obsolete, as are
    // older tombstones.
    if let Some(newest_ts) = exts.get(".ts").first().map(|t| t.timestamp) {
        for (ext, list) in &mut exts.0 {
            if ext != ".ts" {
                out.obsolete
                    .extend(split_off_tail(list, |f| f.timestamp > newest_ts));
            }
        }
        let tss = exts.get_mut(".ts");
        out.obsolete.extend(tss.split_off(1));
    }

    // Keep the newest .meta, plus an older one carrying a newer
    // content-type.
    {
        let metas = exts.get_mut(".meta");
        if !metas.is_empty() {
            let mut retain = 1;
            if metas.len() > 1 {
                metas[1..].sort_by_key(|f| std::cmp::Reverse(f.ctype_timestamp));
                let ct0 = metas[0].ctype_timestamp.unwrap_or(Timestamp::ZERO);
                let ct1 = metas[1].ctype_timestamp.unwrap_or(Timestamp::ZERO);
                if ct1 > ct0 {
                    if metas[1].timestamp == metas[0].timestamp {
                        metas.swap(0, 1);
                    } else {
                        retain = 2;
                    }
                }
            }
            out.obsolete.extend(metas.split_off(retain));
        }
    }

    process_ec(&mut exts, &mut out, select);

    if let Some(data) = &out.data {
        let metas = exts.get(".meta");
        if let (Some(first), Some(last)) = (metas.first(), metas.last()) {
            out.meta = Some(first.clone());
            if last.ctype_timestamp.is_some_and(|ct| ct > data.timestamp) {
                out.ctype = Some(last.clone());
            }
        }
    } else if let Some(ts) = exts.get(".ts").first() {
        out.ts = Some(ts.clone());
    }
    out
}

/// Swift's `ECDiskFileManager._process_ondisk_files`.
fn process_ec(exts: &mut Exts, out: &mut EcOnDiskFiles, select: &FragSelect) {
    // Older nodes marked durability with a separate <ts>.durable file.
    let mut durable_info: Option<FileInfo> = exts.get(".durable").first().cloned();

    // Split the .data files into per-timestamp sets, newest first, down to
    // the durable one.
    let mut all_frags: Vec<FileInfo> = exts.get(".data").to_vec();
    let mut durable_ts: Option<Timestamp> = None;
    while let Some(first_ts) = all_frags.first().map(|f| f.timestamp) {
        let rest = split_off_tail(&mut all_frags, |f| f.timestamp >= first_ts);
        let mut set = std::mem::replace(&mut all_frags, rest);
        set.sort_by_key(|f| f.frag_index);
        if let Some(frag) = set.iter().find(|f| f.durable) {
            // A durable-marked fragment supersedes an older legacy marker.
            if !durable_info
                .as_ref()
                .is_some_and(|d| d.timestamp >= first_ts)
            {
                durable_info = Some(frag.clone());
            }
        }
        let is_durable = durable_info
            .as_ref()
            .is_some_and(|d| d.timestamp == first_ts);
        if is_durable {
            // Durability may come from a legacy .durable: mark them all.
            for f in &mut set {
                f.durable = true;
            }
            for f in exts.get_mut(".data") {
                if f.timestamp == first_ts {
                    f.durable = true;
                }
            }
            durable_ts = Some(first_ts);
        }
        out.frag_sets.push((first_ts, set));
        if is_durable {
            break;
        }
    }

    // Choose the set, then the fragment.
    let mut frag_index = select.frag_index;
    let chosen_ts: Option<Timestamp> = match &select.frag_prefs {
        Some(prefs) => {
            let mut candidates: Vec<Timestamp> = out.frag_sets.iter().map(|(t, _)| *t).collect();
            // Which preferences cite a timestamp present is decided once,
            // before any candidate is dropped.
            let cited: Vec<&FragPref> = prefs
                .iter()
                .filter(|p| candidates.contains(&p.timestamp))
                .collect();
            let mut chosen = None;
            for pref in cited {
                let Some(pos) = candidates.iter().position(|t| *t == pref.timestamp) else {
                    // Cited twice and dropped already (Swift fails here).
                    continue;
                };
                let available: Vec<u32> = out
                    .frag_set(pref.timestamp)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|f| f.frag_index)
                    .collect();
                let acceptable = acceptable_frag_indexes(&available, &pref.exclude);
                if let Some(&last) = acceptable.last() {
                    chosen = Some(pref.timestamp);
                    frag_index = Some(last);
                    break;
                }
                candidates.remove(pos);
            }
            // Otherwise the newest remaining candidate: the proxy decides
            // whether it wants a fragment of that time.
            chosen.or_else(|| candidates.iter().max().copied())
        }
        None => durable_ts,
    };
    let chosen_frag = chosen_ts
        .and_then(|t| out.frag_set(t))
        .and_then(|set| match frag_index {
            Some(i) => set.iter().find(|f| f.frag_index == Some(i)),
            None => set.last(),
        })
        .cloned();
    if let Some(chosen) = chosen_frag {
        out.durable_frag_set = durable_ts;
        out.chosen_frag_set = chosen_ts;
        if chosen_ts != durable_ts {
            // Hide .meta files not newer than the chosen fragment (they are
            // newer than the durable data, so not obsolete either).
            let metas = exts.get_mut(".meta");
            let _hidden = split_off_tail(metas, |f| f.timestamp > chosen.timestamp);
        }
        out.data = Some(chosen);
    }

    // Everything older than the durable timestamp is obsolete.
    if let Some(d) = &durable_info {
        let d_ts = d.timestamp;
        for (_, list) in &mut exts.0 {
            out.obsolete
                .extend(split_off_tail(list, |f| f.timestamp >= d_ts));
        }
    }

    // A legacy .durable without fragments of its timestamp is obsolete.
    if durable_ts.is_none() {
        let durables = std::mem::take(exts.get_mut(".durable"));
        out.obsolete.extend(durables);
    }

    // Fragments neither durable nor chosen may be reclaimed.
    for (t, set) in &out.frag_sets {
        if Some(*t) == durable_ts || Some(*t) == chosen_ts {
            continue;
        }
        out.possible_reclaim.extend(set.iter().cloned());
    }

    // So may .meta files without durable data.
    if durable_ts.is_none() {
        out.possible_reclaim
            .extend(exts.get(".meta").iter().cloned());
    }
}

/// The result of cleaning an EC hash directory.
#[derive(Clone, Debug, Default)]
pub struct EcCleaned {
    /// The classification the cleaning was based on, minus a reclaimed
    /// tombstone (`files.frag_sets` still lists reclaimed fragments, as
    /// Swift's does: suffix hashes are computed from it).
    pub files: EcOnDiskFiles,
    /// The names left in the directory, reverse-sorted.
    pub remaining: Vec<String>,
}

/// Removes obsolete files from an EC hash directory (and the directory
/// when nothing is left): Swift's `cleanup_ondisk_files` for an EC policy.
/// Tombstones, `.meta` files and fragments in `possible_reclaim` go once
/// older than `reclaim_age` seconds, a non-durable fragment only when its
/// file is also older than `commit_window` seconds (its commit may still
/// be coming). Spill files go with their owners, as for replicated
/// objects.
pub fn cleanup_ondisk_files_ec(
    hash_dir: &Path,
    policy: Option<&EcPolicy>,
    select: &FragSelect,
    reclaim_age: f64,
    commit_window: f64,
) -> io::Result<EcCleaned> {
    let Some(mut names) = list_names(hash_dir)? else {
        return Ok(EcCleaned {
            files: get_ondisk_files_ec(&[], policy, select),
            remaining: Vec::new(),
        });
    };
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut files = get_ondisk_files_ec(&names, policy, select);
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
    let mut to_remove: Vec<String> = files.obsolete.iter().map(|f| f.filename.clone()).collect();
    for f in &files.possible_reclaim {
        let nondurable_data = f.ext == ".data" && !f.durable;
        if reclaimable(&f.timestamp)
            && (!nondurable_data
                || commit_window <= 0.0
                || file_older(&hash_dir.join(&f.filename), commit_window))
        {
            to_remove.push(f.filename.clone());
            files.obsolete.push(f.clone());
        }
    }
    for name in to_remove {
        // A file may be listed twice (see `possible_reclaim`).
        if !removed.contains(&name) {
            remove_file(&hash_dir.join(&name));
            removed.push(name);
        }
    }
    let newest = files
        .data
        .as_ref()
        .or(files.ts.as_ref())
        .map(|f| f.timestamp);
    let removed = remove_spills(hash_dir, &names, removed, newest, |owner| {
        parse_ec_filename(owner, None).map(|i| i.timestamp)
    });
    names.retain(|n| !removed.contains(n));
    files.unexpected.retain(|n| !removed.contains(n));
    if names.is_empty() {
        let _ = std::fs::remove_dir(hash_dir);
    }
    Ok(EcCleaned {
        files,
        remaining: names,
    })
}

/// Swift's `is_file_older`: modified more than `age` seconds ago by the
/// system clock; false when it cannot be checked.
pub(crate) fn file_older(path: &Path, age: f64) -> bool {
    if age <= 0.0 {
        return true;
    }
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|e| e.as_secs_f64() > age)
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

    fn policy() -> EcPolicy {
        EcPolicy::new(1, 4, 2)
    }

    fn get(v: &[&str], select: &FragSelect) -> EcOnDiskFiles {
        get_ondisk_files_ec(&names(v), Some(&policy()), select)
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn durable_fragment_wins_over_newer_nondurable() {
        let r = get(
            &[
                "0000000001.00000#1#d.data",
                "0000000001.00000#3#d.data",
                "0000000002.00000#2.data",
                "0000000000.50000#1#d.data",
            ],
            &FragSelect::any(),
        );
        assert_eq!(
            r.data.as_ref().unwrap().filename,
            "0000000001.00000#3#d.data"
        );
        assert_eq!(r.durable_frag_set, Some(ts("1")));
        assert_eq!(fnames(&r.obsolete), ["0000000000.50000#1#d.data"]);
        assert_eq!(fnames(&r.possible_reclaim), ["0000000002.00000#2.data"]);
        assert_eq!(
            r.fragments(),
            vec![(ts("2"), vec![2]), (ts("1"), vec![1, 3])]
        );
    }

    #[test]
    fn nondurable_only_is_not_found_unless_prefs() {
        let files = ["0000000002.00000#2.data", "0000000002.00000#0.data"];
        let r = get(&files, &FragSelect::any());
        assert!(r.data.is_none());
        assert_eq!(r.possible_reclaim.len(), 2);
        let r = get(&files, &FragSelect::prefs(vec![]));
        assert_eq!(r.data.unwrap().filename, "0000000002.00000#2.data");
        assert_eq!(r.durable_frag_set, None);
        assert!(r.possible_reclaim.is_empty());
        let pref = FragPref {
            timestamp: ts("2"),
            exclude: vec![2],
        };
        let r = get(&files, &FragSelect::prefs(vec![pref]));
        assert_eq!(r.data.unwrap().filename, "0000000002.00000#0.data");
    }

    #[test]
    fn legacy_durable_file() {
        let r = get(
            &[
                "0000000001.00000#1.data",
                "0000000001.00000.durable",
                "0000000000.00000#1.data",
                "0000000000.00000.durable",
            ],
            &FragSelect::index(1),
        );
        let data = r.data.unwrap();
        assert_eq!(data.filename, "0000000001.00000#1.data");
        assert!(data.durable);
        assert_eq!(
            fnames(&r.obsolete),
            ["0000000000.00000#1.data", "0000000000.00000.durable"]
        );
    }

    #[test]
    fn tombstone_and_odd_names() {
        let r = get(
            &[
                "0000000001.00000#1#d.data",
                "0000000002.00000.ts",
                "0000000003.00000#9.data",
                "0000000003.00000.data",
                "0000000003.00000#x.data",
                "0000000003.00000#-1.data",
            ],
            &FragSelect::any(),
        );
        assert!(r.data.is_none());
        assert_eq!(r.ts.unwrap().filename, "0000000002.00000.ts");
        assert_eq!(fnames(&r.obsolete), ["0000000001.00000#1#d.data"]);
        assert_eq!(r.unexpected.len(), 4);
    }
}
