#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Erasure-coded object files judged by Swift 2.38.3 itself: many random
//! hash directories (fragments durable or not, several indexes at one
//! timestamp, `.meta` with and without content-type timestamps,
//! tombstones, legacy `.durable` files, odd names) classified, cleaned and
//! hashed by apus and by Swift's `ECDiskFileManager`, run in one Python
//! process, must give the same answers.
//!
//! Needs Swift's Python: env `APUS_SWIFT_PYTHON`, by default the venv
//! `scripts/swift-ref.sh` installs. `APUS_EC_ORACLE_SEED` picks another
//! random sequence.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use apus_core::Timestamp;
use apus_diskfile::ec_ondisk::{
    cleanup_ondisk_files_ec, get_ondisk_files_ec, EcOnDiskFiles, FragPref, FragSelect,
};
use apus_diskfile::hashes::{get_hashes_ec, hash_suffix_ec, read_hashes, EcSuffixHash};
use apus_diskfile::layout::{make_filename, EcPolicy, FileKind};
use common::{swift_python, HASH_SUFFIX};
use serde_json::{json, Value as Json};

const RECLAIM_AGE: f64 = 1000.0;
const COMMIT_WINDOW: f64 = 60.0;
const NDATA: u32 = 4;
const NPARITY: u32 = 2;

fn policy() -> EcPolicy {
    EcPolicy::new(1, NDATA, NPARITY)
}

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// A few timestamps for one hash directory: some older than the reclaim
/// age, some recent, some with offsets, some equal.
fn timestamp_pool(rng: &mut Rng, now: f64) -> Vec<Timestamp> {
    let base = if rng.chance(50) {
        now - 2.0 * RECLAIM_AGE
    } else {
        now - RECLAIM_AGE / 10.0
    };
    let mut pool = Vec::new();
    for _ in 0..4 {
        let secs = if rng.chance(30) {
            // Straddle the reclaim age within one directory.
            now - 2.0 * RECLAIM_AGE + rng.below(3) as f64
        } else {
            base + rng.below(5) as f64 + rng.below(3) as f64 * 0.25
        };
        let t =
            Timestamp::from_secs_f64(secs.floor() + (secs.fract() * 4.0).round() / 4.0).unwrap();
        pool.push(if rng.chance(10) { t.with_offset(1) } else { t });
    }
    pool
}

/// Random file names for one hash directory; `legacy` allows legacy
/// `.durable` files.
fn gen_names(rng: &mut Rng, pool: &[Timestamp], legacy: bool) -> Vec<String> {
    let n = rng.below(9);
    let mut names: Vec<String> = Vec::new();
    for _ in 0..n {
        let t = *rng.pick(pool);
        let ti = t.internal();
        let fi = if rng.chance(8) {
            NDATA + NPARITY + rng.below(3) as u32
        } else {
            rng.below(u64::from(NDATA + NPARITY)) as u32
        };
        let name = match rng.below(100) {
            0..=32 => format!("{ti}#{fi}.data"),
            33..=54 => format!("{ti}#{fi}#d.data"),
            55..=63 => format!("{ti}.meta"),
            64..=71 => make_filename(&t, FileKind::Meta, Some(rng.pick(pool))),
            72..=79 => format!("{ti}.ts"),
            80..=87 if legacy => format!("{ti}.durable"),
            80..=87 => format!("{ti}#{fi}#d.data"),
            _ => {
                let junk = [
                    ".lock",
                    "{t}.data",
                    "{t}#x.data",
                    "{t}#1#x.data",
                    "{t}#01.data",
                    "{t}#-1.data",
                    "{t}#-0.data",
                    "{t}# 2.data",
                    "{t}#1_0.data",
                    "{t}#0_1.data",
                    "{t}#1__0.data",
                    "{t}#+3.data",
                    "{t}#.data",
                    "{t}#2#D.data",
                    "{t}#2#d#x.data",
                    "{t}.foo",
                    "junk",
                    "{t}#1.meta",
                    "{t}#1.ts",
                ];
                rng.pick(&junk).replace("{t}", &ti)
            }
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn gen_select(rng: &mut Rng, pool: &[Timestamp]) -> FragSelect {
    let frag_index = rng
        .chance(35)
        .then(|| rng.below(u64::from(NDATA + NPARITY)) as u32);
    let frag_prefs = rng.chance(40).then(|| {
        let mut prefs: Vec<FragPref> = Vec::new();
        for _ in 0..rng.below(4) {
            let timestamp = *rng.pick(pool);
            if prefs.iter().any(|p| p.timestamp == timestamp) {
                continue;
            }
            let exclude = (0..NDATA + NPARITY).filter(|_| rng.chance(40)).collect();
            prefs.push(FragPref { timestamp, exclude });
        }
        prefs
    });
    FragSelect {
        frag_index,
        frag_prefs,
    }
}

fn select_json(s: &FragSelect) -> Json {
    json!({
        "frag_index": s.frag_index,
        "frag_prefs": s.frag_prefs.as_ref().map(|prefs| prefs
            .iter()
            .map(|p| json!({"timestamp": p.timestamp.internal(), "exclude": p.exclude}))
            .collect::<Vec<_>>()),
    })
}

/// apus's classification in the shape the Python side reports Swift's.
fn summary(r: &EcOnDiskFiles) -> Json {
    let name = |f: &Option<apus_diskfile::layout::FileInfo>| f.as_ref().map(|f| f.filename.clone());
    let mut obsolete: Vec<String> = r.obsolete.iter().map(|f| f.filename.clone()).collect();
    obsolete.sort();
    let mut reclaim: Vec<Json> = r
        .possible_reclaim
        .iter()
        .map(|f| json!([f.filename, f.ext == ".data" && !f.durable]))
        .collect();
    reclaim.sort_by_key(|v| v.to_string());
    let mut unexpected = r.unexpected.clone();
    unexpected.sort();
    let frag_sets: Vec<Json> = r
        .frag_sets
        .iter()
        .map(|(t, set)| {
            let names: Vec<&str> = set.iter().map(|f| f.filename.as_str()).collect();
            json!([t.internal(), names])
        })
        .collect();
    json!({
        "data": name(&r.data),
        "data_durable": r.data.as_ref().map(|f| f.durable),
        "meta": name(&r.meta),
        "ctype": name(&r.ctype),
        "ts": name(&r.ts),
        "obsolete": obsolete,
        "possible_reclaim": reclaim,
        "unexpected": unexpected,
        "frag_sets": frag_sets,
        "durable_frag_set": r.durable_frag_set.map(|t| t.internal()),
        "chosen_frag_set": r.chosen_frag_set.map(|t| t.internal()),
    })
}

const SCRIPT: &str = r#"
import sys, json, os, logging
from swift.common import utils
from swift.common.utils import Timestamp
from swift.common.storage_policy import ECStoragePolicy
from swift.obj import diskfile
from swift.obj.diskfile import ECDiskFileManager, read_hashes

inp = json.load(open(sys.argv[1]))
utils.HASH_PATH_PREFIX = b''
utils.HASH_PATH_SUFFIX = inp['hash_suffix'].encode()
logging.disable(logging.CRITICAL)
policy = ECStoragePolicy(1, 'ec', ec_type='liberasurecode_rs_vand',
                         ec_ndata=inp['ndata'], ec_nparity=inp['nparity'])
mgr = ECDiskFileManager({'devices': inp['devices'], 'mount_check': 'false',
                         'reclaim_age': str(int(inp['reclaim_age'])),
                         'commit_window': str(inp['commit_window'])},
                        logging.getLogger('oracle'))

def prefs_of(sel):
    p = sel['frag_prefs']
    if p is None:
        return None
    return [{'timestamp': Timestamp(x['timestamp']), 'exclude': x['exclude']} for x in p]

def name(r, key):
    i = r.get(key)
    return i['filename'] if i else None

def summary(r):
    dfs = r.get('durable_frag_set')
    cfs = r.get('chosen_frag_set')
    return {
        'data': name(r, 'data_info'),
        'data_durable': r['data_info']['durable'] if r.get('data_info') else None,
        'meta': name(r, 'meta_info'),
        'ctype': name(r, 'ctype_info'),
        'ts': name(r, 'ts_info'),
        'obsolete': sorted(i['filename'] for i in r.get('obsolete', [])),
        'possible_reclaim': sorted(
            ([i['filename'], i['ext'] == '.data' and not i.get('durable', True)]
             for i in r.get('possible_reclaim', [])),
            key=lambda v: json.dumps(v, separators=(',', ':'))),
        'unexpected': sorted(os.path.basename(u) for u in r.get('unexpected', [])),
        'frag_sets': [[t.internal, [i['filename'] for i in s]]
                      for t, s in r.get('frag_sets', {}).items()],
        'durable_frag_set': dfs[0]['timestamp'].internal if dfs else None,
        'chosen_frag_set': cfs[0]['timestamp'].internal if cfs else None,
    }

out = {'classify': [], 'cleanup': [], 'sets': [], 'suffix': [], 'partitions': []}
for case in inp['classify']:
    sel = case['select']
    try:
        r = mgr.get_ondisk_files(case['names'], '', policy=policy,
                                 frag_index=sel['frag_index'],
                                 frag_prefs=prefs_of(sel))
        out['classify'].append(summary(r))
    except Exception as e:
        out['classify'].append({'error': repr(e)})

for case in inp['cleanup']:
    sel = case['select']
    try:
        r = mgr.cleanup_ondisk_files(case['dir'], policy=policy,
                                     frag_index=sel['frag_index'],
                                     frag_prefs=prefs_of(sel))
        res = summary(r)
    except Exception as e:
        res = {'error': repr(e)}
    res['remaining'] = (sorted(os.listdir(case['dir']))
                        if os.path.isdir(case['dir']) else None)
    out['cleanup'].append(res)

for a, b in inp['sets']:
    out['sets'].append(list(set(a) - set(b)))

def hash_json(h):
    if isinstance(h, dict):
        return {('null' if k is None else str(k)): v for k, v in h.items()}
    return h

for path in inp['suffix']:
    try:
        out['suffix'].append({'hash': hash_json(mgr._hash_suffix(path, policy=policy))})
    except diskfile.PathNotDir:
        out['suffix'].append({'gone': True})
    except Exception as e:
        out['suffix'].append({'error': repr(e)})

def pkl_json(part_dir):
    h = read_hashes(part_dir)
    return {k: (v if k == 'valid' else hash_json(v))
            for k, v in h.items() if k != 'updated'}

for case in inp['partitions']:
    try:
        got = mgr.get_hashes(case['device'], case['partition'], [], policy)
        res = {'hashes': {s: hash_json(h) for s, h in got.items()}}
    except Exception as e:
        res = {'error': repr(e)}
    res['swift_pkl'] = pkl_json(case['swift_dir'])
    res['apus_pkl'] = pkl_json(case['apus_dir'])
    out['partitions'].append(res)

json.dump(out, sys.stdout)
"#;

fn run_swift(input: &Json, dir: &Path) -> Json {
    let path = dir.join("oracle-input.json");
    fs::write(&path, input.to_string()).unwrap();
    let out = Command::new(swift_python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .expect("running Swift's python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates `names` in `dir`, each modified either long ago or just now.
fn populate(rng: &mut Rng, dir: &Path, names: &[String]) -> Vec<(String, bool)> {
    fs::create_dir_all(dir).unwrap();
    let mut made = Vec::new();
    for n in names {
        let old = rng.chance(50);
        made.push((n.clone(), old));
    }
    write_files(dir, &made);
    made
}

fn write_files(dir: &Path, files: &[(String, bool)]) {
    fs::create_dir_all(dir).unwrap();
    for (n, old) in files {
        let f = fs::File::create(dir.join(n)).unwrap();
        if *old {
            let when = SystemTime::now() - Duration::from_secs_f64(COMMIT_WINDOW * 8.0);
            f.set_modified(when).unwrap();
        }
    }
}

fn listing(dir: &Path) -> Json {
    if !dir.is_dir() {
        return Json::Null;
    }
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    json!(v)
}

/// `hash/file` names under a suffix directory.
fn tree(dir: &Path) -> String {
    let mut out = Vec::new();
    for h in listing(dir).as_array().cloned().unwrap_or_default() {
        let h = h.as_str().unwrap().to_string();
        for f in listing(&dir.join(&h))
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            out.push(format!("{h}/{}", f.as_str().unwrap()));
        }
    }
    out.join(" ")
}

fn hash_json(h: &EcSuffixHash) -> Json {
    let m: serde_json::Map<String, Json> = h
        .iter()
        .map(|(k, v)| {
            let key = k.map_or("null".to_string(), |i| i.to_string());
            (key, Json::String(v.clone()))
        })
        .collect();
    Json::Object(m)
}

fn hashes_json(h: &BTreeMap<String, Option<EcSuffixHash>>) -> Json {
    let m: serde_json::Map<String, Json> = h
        .iter()
        .map(|(s, v)| (s.clone(), v.as_ref().map_or(Json::Null, hash_json)))
        .collect();
    Json::Object(m)
}

fn random_hash(rng: &mut Rng, suffix: &str) -> String {
    let mut h: String = (0..29)
        .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap())
        .collect();
    h.push_str(suffix);
    h
}

fn random_suffix(rng: &mut Rng) -> String {
    (0..3)
        .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap())
        .collect()
}

#[test]
fn ec_files_are_classified_cleaned_and_hashed_as_swift_does() {
    let seed = std::env::var("APUS_EC_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_ec00_u64);
    let mut rng = Rng(seed);
    let now = Timestamp::now().as_secs_f64();
    let root = tempfile::tempdir().unwrap();
    let devices = root.path().join("devices");
    let (sda, sdb) = (devices.join("sda"), devices.join("sdb"));
    let policy = policy();

    // Classification of name lists.
    let mut classify_in = Vec::new();
    let mut classify_ours = Vec::new();
    for _ in 0..4000 {
        let pool = timestamp_pool(&mut rng, now);
        let mut names = gen_names(&mut rng, &pool, true);
        if rng.chance(50) {
            names.sort_by(|a, b| b.cmp(a));
        } else {
            rng.shuffle(&mut names);
        }
        let select = gen_select(&mut rng, &pool);
        classify_ours.push(summary(&get_ondisk_files_ec(
            &names,
            Some(&policy),
            &select,
        )));
        classify_in.push(json!({"names": names, "select": select_json(&select)}));
    }

    // Cleanup of hash directories: the same files in an apus copy and a
    // Swift copy.
    let mut cleanup_in = Vec::new();
    let mut cleanup_dirs: Vec<(PathBuf, FragSelect)> = Vec::new();
    for i in 0..800 {
        let pool = timestamp_pool(&mut rng, now);
        let names = gen_names(&mut rng, &pool, true);
        let select = if rng.chance(60) {
            FragSelect::any()
        } else {
            gen_select(&mut rng, &pool)
        };
        let ours = root.path().join("cleanup-apus").join(i.to_string());
        let theirs = root.path().join("cleanup-swift").join(i.to_string());
        let files = populate(&mut rng, &ours, &names);
        write_files(&theirs, &files);
        cleanup_in.push(json!({"dir": theirs, "select": select_json(&select)}));
        cleanup_dirs.push((ours, select));
    }

    // CPython's set order, which picks the fragment under preferences.
    let mut sets_in: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
    for _ in 0..2000 {
        let a = (0..rng.below(12))
            .map(|_| rng.below(24) as u32)
            .collect::<Vec<_>>();
        let b = (0..rng.below(6))
            .map(|_| rng.below(24) as u32)
            .collect::<Vec<_>>();
        sets_in.push((a, b));
    }

    // Suffix directories: several hash dirs each, hashed one by one.
    let mut suffix_in = Vec::new();
    let mut suffix_ours = Vec::new();
    let mut used = std::collections::HashSet::new();
    for _ in 0..300 {
        let suffix = random_suffix(&mut rng);
        let rel = Path::new("objects-1").join("0").join(&suffix);
        if !used.insert(suffix.clone()) {
            continue;
        }
        for _ in 0..1 + rng.below(4) {
            let hash = random_hash(&mut rng, &suffix);
            let pool = timestamp_pool(&mut rng, now);
            let names = gen_names(&mut rng, &pool, true);
            let files = populate(&mut rng, &sda.join(&rel).join(&hash), &names);
            write_files(&sdb.join(&rel).join(&hash), &files);
        }
        let ours = hash_suffix_ec(&sda.join(&rel), RECLAIM_AGE, COMMIT_WINDOW, &policy)
            .unwrap()
            .map_or(json!({"gone": true}), |h| json!({"hash": hash_json(&h)}));
        suffix_ours.push(ours);
        suffix_in.push(json!(sdb.join(&rel)));
    }

    // Whole partitions through get_hashes and hashes.pkl.
    let mut partitions_in = Vec::new();
    let mut partitions_ours = Vec::new();
    for part in 1..6u32 {
        let rel = Path::new("objects-1").join(part.to_string());
        for _ in 0..8 {
            let suffix = random_suffix(&mut rng);
            for _ in 0..1 + rng.below(3) {
                let hash = random_hash(&mut rng, &suffix);
                let pool = timestamp_pool(&mut rng, now);
                let names = gen_names(&mut rng, &pool, false);
                let files = populate(&mut rng, &sda.join(&rel).join(&suffix).join(&hash), &names);
                write_files(&sdb.join(&rel).join(&suffix).join(&hash), &files);
            }
        }
        let ours = get_hashes_ec(&sda.join(&rel), &[], RECLAIM_AGE, COMMIT_WINDOW, &policy);
        partitions_ours.push(ours.unwrap());
        partitions_in.push(json!({
            "device": "sdb",
            "partition": part.to_string(),
            "swift_dir": sdb.join(&rel),
            "apus_dir": sda.join(&rel),
        }));
    }

    // apus cleans its copies now, just before Swift cleans its own.
    let cleanup_ours: Vec<Json> = cleanup_dirs
        .iter()
        .map(|(dir, select)| {
            let cleaned =
                cleanup_ondisk_files_ec(dir, Some(&policy), select, RECLAIM_AGE, COMMIT_WINDOW)
                    .unwrap();
            let mut s = summary(&cleaned.files);
            s["remaining"] = listing(dir);
            s
        })
        .collect();

    let input = json!({
        "hash_suffix": HASH_SUFFIX,
        "ndata": NDATA,
        "nparity": NPARITY,
        "devices": devices,
        "reclaim_age": RECLAIM_AGE,
        "commit_window": COMMIT_WINDOW,
        "classify": classify_in,
        "cleanup": cleanup_in,
        "sets": sets_in,
        "suffix": suffix_in,
        "partitions": partitions_in,
    });
    let theirs = run_swift(&input, root.path());

    let mut failures = Vec::new();
    let mut swift_errors = 0;
    let classify = theirs["classify"].as_array().unwrap();
    for (i, (ours, t)) in classify_ours.iter().zip(classify).enumerate() {
        if ours != t {
            failures.push(format!(
                "classify {}:\n  in    {}\n  apus  {ours}\n  swift {t}",
                i, input["classify"][i]
            ));
        }
    }
    let cleanup = theirs["cleanup"].as_array().unwrap();
    for (i, (ours, t)) in cleanup_ours.iter().zip(cleanup).enumerate() {
        if t.get("error").is_some() {
            // Swift fails on a file listed both obsolete and reclaimable
            // (see EcOnDiskFiles::possible_reclaim); apus removes it once.
            eprintln!("Swift failed on cleanup {i}: {}", t["error"]);
            swift_errors += 1;
            continue;
        }
        if ours != t {
            failures.push(format!(
                "cleanup {i}:\n  in    {}\n  apus  {ours}\n  swift {t}",
                input["cleanup"][i]
            ));
        }
    }
    for ((a, b), t) in sets_in.iter().zip(theirs["sets"].as_array().unwrap()) {
        let ours = apus_diskfile::ec_ondisk::acceptable_frag_indexes(a, b);
        if json!(ours) != *t {
            failures.push(format!("set({a:?}) - set({b:?}): apus {ours:?} swift {t}"));
        }
    }
    let suffixes = theirs["suffix"].as_array().unwrap();
    for (i, (ours, t)) in suffix_ours.iter().zip(suffixes).enumerate() {
        if t.get("error").is_some() {
            eprintln!("Swift failed on suffix {i}: {}", t["error"]);
            swift_errors += 1;
            continue;
        }
        if ours != t {
            let theirs = PathBuf::from(input["suffix"][i].as_str().unwrap());
            let ours_dir = sda.join(theirs.strip_prefix(&sdb).unwrap());
            failures.push(format!(
                "suffix {}: apus {ours} swift {t}\n  apus left {}\n  swift left {}",
                input["suffix"][i],
                tree(&ours_dir),
                tree(&theirs)
            ));
        }
    }
    let parts = theirs["partitions"].as_array().unwrap();
    for (i, (ours, t)) in partitions_ours.iter().zip(parts).enumerate() {
        if t.get("error").is_some() {
            eprintln!("Swift failed on partition {i}: {}", t["error"]);
            swift_errors += 1;
            continue;
        }
        let ours = hashes_json(ours);
        if ours != t["hashes"] {
            failures.push(format!(
                "partition {i}: apus {ours}\n  swift {}",
                t["hashes"]
            ));
        }
        // Each side reads the other's hashes.pkl as its own.
        let mut swift_pkl = t["swift_pkl"].clone();
        let mut apus_pkl = t["apus_pkl"].clone();
        assert_eq!(swift_pkl["valid"], json!(true));
        assert_eq!(apus_pkl["valid"], json!(true));
        swift_pkl.as_object_mut().unwrap().remove("valid");
        apus_pkl.as_object_mut().unwrap().remove("valid");
        if apus_pkl != ours || swift_pkl != ours {
            failures.push(format!(
                "partition {i} hashes.pkl: apus wrote {apus_pkl}\n  swift wrote {swift_pkl}"
            ));
        }
        let swift_dir = input["partitions"][i]["swift_dir"].as_str().unwrap();
        let read_back = read_hashes::<EcSuffixHash>(Path::new(swift_dir));
        if hashes_json(&read_back.suffixes) != ours {
            failures.push(format!(
                "partition {i}: apus reads Swift's hashes.pkl as {}\n  apus computed {ours}",
                hashes_json(&read_back.suffixes)
            ));
        }
    }
    let total = classify.len() + cleanup.len() + sets_in.len() + suffixes.len() + parts.len();
    eprintln!(
        "compared {} classifications, {} cleanups, {} sets, {} suffixes, {} partitions \
         ({total} cases, {swift_errors} where Swift failed)",
        classify.len(),
        cleanup.len(),
        sets_in.len(),
        suffixes.len(),
        parts.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} differ from Swift (seed {seed}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        swift_errors * 20 < total,
        "Swift failed too often: {swift_errors}"
    );
}
