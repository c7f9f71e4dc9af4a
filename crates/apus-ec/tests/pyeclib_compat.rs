//! Compatibility with pyeclib (over liberasurecode and ISA-L), the library
//! Swift's proxy and reconstructor use: for each ec_type and several k+m,
//! apus's fragments equal pyeclib's byte for byte, pyeclib decodes apus's,
//! apus decodes pyeclib's from several k-subsets (data only, parity-heavy,
//! random), and apus's reconstruction of every missing index equals
//! pyeclib's. Objects are cut into segments and the fragments of one index
//! concatenated into an archive, as Swift's proxy does.
//!
//! pyeclib comes from the reference venv that the README's test command
//! installs (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its
//! interpreter. All cases run in one Python process, exchanging data
//! through files in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use apus_ec::{split_archive, ChecksumType, EcScheme, EcType};

fn python() -> PathBuf {
    let python = match std::env::var_os("APUS_SWIFT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
        }
    };
    assert!(
        python.exists(),
        "{} not found: run scripts/swift-ref.sh (the README's test command does), \
         or set APUS_SWIFT_PYTHON",
        python.display()
    );
    python
}

/// Deterministic pseudo-random bytes (splitmix64), so failures reproduce.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A seeded shuffle of `0..n` (Fisher-Yates over splitmix output).
fn shuffled(seed: u64, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let r = random_bytes(seed, n * 8);
    for i in (1..n).rev() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i * 8..i * 8 + 8]);
        let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

struct Case {
    name: String,
    scheme: EcScheme,
    segment_size: usize,
    object: Vec<u8>,
    /// pyeclib writes liberasurecode's legacy CRC variant: its fragments
    /// then differ from apus's in the checksums only, and apus must read
    /// them.
    legacy_crc: bool,
    subsets: Vec<Vec<usize>>,
}

impl Case {
    /// The object's segments; an empty object is one empty segment, so
    /// the encoding of no data is compared too.
    fn segments(&self) -> Vec<&[u8]> {
        if self.object.is_empty() {
            vec![&[][..]]
        } else {
            self.object.chunks(self.segment_size).collect()
        }
    }

    fn checksum_name(&self) -> &'static str {
        match self.legacy_crc || self.scheme_has_crc() {
            true => "inline_crc32",
            false => "none",
        }
    }

    fn scheme_has_crc(&self) -> bool {
        // The checksum type shows in any encoded header.
        let fragments = self.scheme.encode(b"").unwrap();
        fragments[0][20] == ChecksumType::Crc32.to_byte()
    }
}

fn subsets(k: usize, m: usize, seed: u64) -> Vec<Vec<usize>> {
    let n = k + m;
    let data_only: Vec<usize> = (0..k).collect();
    // Every parity fragment first, then the last k - m data fragments: the
    // first m data fragments are missing.
    let parity_heavy: Vec<usize> = (k..n).chain(m.min(k)..k).take(k).collect();
    let random: Vec<usize> = shuffled(seed, n).into_iter().take(k).collect();
    vec![data_only, parity_heavy, random]
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 1u64;
    for ec_type in EcType::ALL {
        for (k, m) in [(4, 2), (10, 4), (8, 3)] {
            let scheme = EcScheme::new(ec_type, k, m).unwrap();
            let mut add = |segment_size: usize, len: usize, label: &str| {
                seed += 1;
                cases.push(Case {
                    name: format!("{ec_type}-{k}+{m}-seg{segment_size}-{label}"),
                    scheme: scheme.clone(),
                    segment_size,
                    object: random_bytes(seed, len),
                    legacy_crc: false,
                    subsets: subsets(k, m, seed),
                });
            };
            for seg in [4096, 1 << 20] {
                for (len, label) in [
                    (0, "empty"),
                    (1, "one"),
                    (seg - 1, "seg-1"),
                    (seg, "seg"),
                    (seg + 1, "seg+1"),
                ] {
                    add(seg, len, label);
                }
            }
            add(4096, 3 * 4096 + 1234, "3seg+tail");
            add(4096, 4 * 4096 + 3, "4seg+tiny-tail");
            add(1 << 20, 5 << 20, "5MiB");
        }
    }
    // Payload checksums: CRC-32 as apus writes it, and the legacy variant
    // old liberasurecode builds wrote.
    for (ec_type, legacy) in [
        (EcType::IsaLRsVand, false),
        (EcType::LiberasurecodeRsVand, false),
        (EcType::IsaLRsCauchy, true),
    ] {
        let scheme = EcScheme::new(ec_type, 4, 2)
            .unwrap()
            .with_checksum(ChecksumType::Crc32);
        cases.push(Case {
            name: format!("{ec_type}-4+2-crc32{}", if legacy { "-legacy" } else { "" }),
            scheme,
            segment_size: 4096,
            object: random_bytes(99 + u64::from(legacy), 2 * 4096 + 77),
            legacy_crc: legacy,
            subsets: subsets(4, 2, 7),
        });
    }
    cases
}

fn encode_archives(case: &Case) -> Vec<Vec<u8>> {
    let mut archives = vec![Vec::new(); case.scheme.fragment_count()];
    for segment in case.segments() {
        for (archive, fragment) in archives
            .iter_mut()
            .zip(case.scheme.encode(segment).unwrap())
        {
            archive.extend_from_slice(&fragment);
        }
    }
    archives
}

fn join(list: &[usize]) -> String {
    list.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The fragments of segment `seg` at the subset's indexes, in its order.
fn pick<'a>(archives: &[Vec<&'a [u8]>], subset: &[usize], seg: usize) -> Vec<&'a [u8]> {
    subset.iter().map(|&i| archives[i][seg]).collect()
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn apus_and_pyeclib_agree_byte_for_byte() {
    let python = python();
    let work = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut jobs = String::new();
    for case in &cases {
        let dir = work.path().join(&case.name);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("object.bin"), &case.object).unwrap();
        for (i, archive) in encode_archives(case).iter().enumerate() {
            fs::write(dir.join(format!("apus_{i}.bin")), archive).unwrap();
        }
        jobs.push_str(&format!(
            "{} {} {} {} {} {} {} {}\n",
            case.name,
            case.scheme.ec_type(),
            case.scheme.k(),
            case.scheme.m(),
            case.segment_size,
            case.checksum_name(),
            u8::from(case.legacy_crc),
            case.subsets
                .iter()
                .map(|s| join(s))
                .collect::<Vec<_>>()
                .join(";"),
        ));
    }
    let jobs_file = work.path().join("jobs.txt");
    fs::write(&jobs_file, jobs).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyeclib_oracle.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&jobs_file)
        .arg(work.path())
        .output()
        .expect("run the pyeclib oracle");
    assert!(
        out.status.success(),
        "pyeclib oracle failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, verdict)| (name.to_owned(), verdict.to_owned()))
        .collect();

    let mut checks = 0usize;
    for case in &cases {
        let dir = work.path().join(&case.name);
        let name = &case.name;
        // 1. pyeclib decoded apus's fragments from every subset.
        assert_eq!(verdicts.get(name).map(String::as_str), Some("ok"), "{name}");
        let n = case.scheme.fragment_count();
        let py: Vec<Vec<u8>> = (0..n)
            .map(|i| read(&dir.join(format!("py_{i}.bin"))))
            .collect();
        // 2. Same bytes as pyeclib (legacy-CRC fragments differ in their
        //    checksums by design).
        if !case.legacy_crc {
            for (i, archive) in encode_archives(case).iter().enumerate() {
                assert!(
                    archive == &py[i],
                    "{name}: archive {i} differs from pyeclib's"
                );
            }
            checks += 1;
        }
        let py_fragments: Vec<Vec<&[u8]>> = py.iter().map(|a| split_archive(a).unwrap()).collect();
        let segments = py_fragments[0].len();
        assert_eq!(segments, case.segments().len(), "{name}");
        for (s, subset) in case.subsets.iter().enumerate() {
            // 3. apus decodes pyeclib's fragments from this subset.
            let mut decoded = Vec::new();
            for seg in 0..segments {
                let frags = pick(&py_fragments, subset, seg);
                decoded.extend(case.scheme.decode(&frags).unwrap());
            }
            assert!(decoded == case.object, "{name}: decoding subset {subset:?}");
            checks += 1;
            // 4. apus rebuilds each missing index as pyeclib does.
            for target in (0..n).filter(|i| !subset.contains(i)) {
                let mut rebuilt = Vec::new();
                for seg in 0..segments {
                    let frags = pick(&py_fragments, subset, seg);
                    rebuilt.extend(case.scheme.reconstruct(&frags, target).unwrap());
                }
                let expected = read(&dir.join(format!("rec_{s}_{target}.bin")));
                assert!(
                    rebuilt == expected,
                    "{name}: rebuilding {target} from {subset:?} differs from pyeclib"
                );
                checks += 1;
            }
        }
    }
    eprintln!("{} cases, {checks} comparisons with pyeclib", cases.len());
}
