//! The workspace's structural rules, as `ARCHITECTURE.md` states them,
//! checked over `cargo metadata` and the sources: which crate may use
//! which, what no crate may use, that every crate opens with a `//!`
//! header, and that no declared dependency goes unused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One crate's rule: the apus crates it may depend on (normal
/// dependencies), the outside crates it must never use, and why.
struct Rule {
    krate: &'static str,
    may_use: &'static [&'static str],
    never: &'static [&'static str],
    because: &'static str,
}

/// What a pure crate must not pull in: a runtime, HTTP serving, SQLite.
const IMPURE: &[&str] = &["tokio", "hyper", "hyper-util", "rusqlite", "futures-util"];

const RULES: &[Rule] = &[
    Rule {
        krate: "apus-core",
        may_use: &[],
        never: &[
            "tokio",
            "hyper",
            "hyper-util",
            "rusqlite",
            "futures-util",
            "http",
        ],
        because: "apus-core is the pure vocabulary every crate shares: no I/O, no runtime, \
                  no HTTP, no SQLite, no other apus crate",
    },
    Rule {
        krate: "apus-ec",
        may_use: &[],
        never: &[
            "tokio",
            "hyper",
            "hyper-util",
            "rusqlite",
            "futures-util",
            "http",
        ],
        because: "apus-ec is the erasure codec and fragment format: pure computation on \
                  byte slices, no I/O, no runtime, no HTTP, no other apus crate",
    },
    Rule {
        krate: "apus-ring",
        may_use: &["apus-core"],
        never: IMPURE,
        because: "servers link the ring's lookup half cheaply: no runtime, HTTP or SQLite",
    },
    Rule {
        krate: "apus-proto",
        may_use: &["apus-core"],
        never: IMPURE,
        because: "the backend protocol is pure: every difference from Swift's wire \
                  protocol is defined there, apart from any I/O",
    },
    Rule {
        krate: "apus-http",
        may_use: &[],
        never: &["rusqlite"],
        because: "the HTTP plumbing knows no storage and no protocol semantics",
    },
    Rule {
        krate: "apus-diskfile",
        may_use: &["apus-core"],
        never: &["tokio", "hyper", "hyper-util", "http", "rusqlite"],
        because: "object files are blocking I/O only, below HTTP and the servers",
    },
    Rule {
        krate: "apus-db",
        may_use: &["apus-core"],
        never: &["tokio", "hyper", "hyper-util", "http"],
        because: "the databases are blocking SQLite only, below HTTP and the servers",
    },
    Rule {
        krate: "apus-server",
        may_use: &[
            "apus-core",
            "apus-diskfile",
            "apus-db",
            "apus-proto",
            "apus-http",
            "apus-ec",
        ],
        never: &[],
        because: "the storage servers never depend on the proxy or the daemons",
    },
    Rule {
        krate: "apus-proxy",
        may_use: &[
            "apus-core",
            "apus-ring",
            "apus-proto",
            "apus-http",
            "apus-ec",
            "apus-s3",
        ],
        never: &["rusqlite"],
        because: "the proxy reaches storage only over HTTP: never the servers, \
                  the databases or the object files",
    },
    Rule {
        krate: "apus-s3",
        may_use: &["apus-core", "apus-proto", "apus-http"],
        never: &[
            "tokio",
            "hyper",
            "hyper-util",
            "rusqlite",
            "futures-util",
            "rustix",
            "xattr",
            "tempfile",
        ],
        because: "S3's wire vocabulary is pure: it reaches storage only through the \
                  proxy's pipeline, never the servers, daemons, databases or object files, \
                  and does no disk I/O",
    },
    Rule {
        krate: "apus-daemons",
        may_use: &[
            "apus-core",
            "apus-ec",
            "apus-ring",
            "apus-proto",
            "apus-http",
            "apus-diskfile",
            "apus-db",
        ],
        never: &[],
        because: "the daemons work on local files and talk HTTP; they never embed \
                  the servers or the proxy",
    },
    Rule {
        krate: "apus",
        may_use: &[
            "apus-core",
            "apus-ring",
            "apus-proto",
            "apus-http",
            "apus-diskfile",
            "apus-db",
            "apus-server",
            "apus-proxy",
            "apus-daemons",
            "apus-ec",
            "apus-bench",
            "apus-images",
        ],
        never: &[],
        because: "the binary wires the libraries together",
    },
    Rule {
        krate: "apus-testkit",
        may_use: &[
            "apus-core",
            "apus-ring",
            "apus-proto",
            "apus-http",
            "apus-diskfile",
            "apus-db",
            "apus-server",
            "apus-proxy",
        ],
        never: &[],
        because: "the in-process test cluster is built from the libraries",
    },
    Rule {
        krate: "apus-bench",
        may_use: &["apus-http"],
        never: &[],
        because: "the load tool measures any Swift or S3 endpoint, apus or another store, \
                  the same way: from outside, as an HTTP client",
    },
    Rule {
        krate: "apus-images",
        may_use: &["apus-core", "apus-proto", "apus-http"],
        never: &["apus-proxy", "apus-server", "apus-db", "apus-diskfile"],
        because: "the image service keeps its data through a Swift API it is handed \
                  (ObjectApi), as any Swift client would, and never reaches into the \
                  proxy or the storage layers",
    },
];

/// Crates only tests and tools may use: no normal dependency on them.
const DEV_ONLY: &[&str] = &["apus-testkit", "apus"];

struct Dep {
    name: String,
    /// The name code refers to it by (`md-5` is `md5`).
    lib: String,
    dev: bool,
}

struct Package {
    name: String,
    dir: PathBuf,
    deps: Vec<Dep>,
    /// The crate roots (lib and bins).
    roots: Vec<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn packages() -> Vec<Package> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut packages = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let name = d["name"].as_str().unwrap().to_string();
                let lib = d["rename"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| lib_name(&name));
                Dep {
                    name,
                    lib,
                    dev: d["kind"].as_str() == Some("dev"),
                }
            })
            .collect();
        let roots = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "lib" || k == "bin")
            })
            .map(|t| PathBuf::from(t["src_path"].as_str().unwrap()))
            .collect();
        packages.push(Package {
            name: p["name"].as_str().unwrap().to_string(),
            dir: manifest.parent().unwrap().to_path_buf(),
            deps,
            roots,
        });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    packages
}

/// The crate name code uses: hyphens become underscores, and a few
/// crates publish a library under another name.
fn lib_name(package: &str) -> String {
    match package {
        "md-5" => "md5".to_string(),
        other => other.replace('-', "_"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Everything under the given subdirectories of a package, concatenated.
fn sources(pkg: &Package, subdirs: &[&str]) -> String {
    let mut files = Vec::new();
    for sub in subdirs {
        rust_files(&pkg.dir.join(sub), &mut files);
    }
    files
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `code` refers to the crate `lib` (a path, a `use`, an
/// `extern crate`, or a derive/attribute path).
fn mentions(code: &str, lib: &str) -> bool {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find(lib) {
        let at = from + i;
        let end = at + lib.len();
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = &code[end..];
        if before_ok
            && (rest.starts_with("::") || rest.starts_with(';') || rest.starts_with(" as "))
        {
            return true;
        }
        from = end;
    }
    false
}

#[test]
fn every_workspace_crate_has_a_rule() {
    let names: BTreeSet<String> = packages().into_iter().map(|p| p.name).collect();
    let ruled: BTreeSet<String> = RULES.iter().map(|r| r.krate.to_string()).collect();
    assert_eq!(
        names, ruled,
        "a crate was added or removed: give it a rule here and an entry in ARCHITECTURE.md"
    );
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let mut broken = Vec::new();
    for pkg in packages() {
        let rule = RULES.iter().find(|r| r.krate == pkg.name).unwrap();
        for dep in pkg.deps.iter().filter(|d| !d.dev) {
            if dep.name.starts_with("apus") && !rule.may_use.contains(&dep.name.as_str()) {
                broken.push(format!(
                    "{} depends on {}, because {}",
                    pkg.name, dep.name, rule.because
                ));
            }
            if rule.never.contains(&dep.name.as_str()) {
                broken.push(format!(
                    "{} depends on {}, but must not because {}",
                    pkg.name, dep.name, rule.because
                ));
            }
            if DEV_ONLY.contains(&dep.name.as_str()) {
                broken.push(format!(
                    "{} depends on {}, which only tests and tools may use",
                    pkg.name, dep.name
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn every_crate_opens_with_a_header() {
    let mut missing = Vec::new();
    for pkg in packages() {
        for root in &pkg.roots {
            let text = fs::read_to_string(root).unwrap();
            if !text.starts_with("//! ") {
                missing.push(root.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crate roots without a //! header saying what the crate owns: {missing:?}"
    );
}

#[test]
fn no_dependency_goes_unused() {
    let mut unused = Vec::new();
    for pkg in packages() {
        let normal = sources(&pkg, &["src"]);
        let all = sources(&pkg, &["src", "tests", "examples", "benches"]);
        for dep in &pkg.deps {
            let code = if dep.dev { &all } else { &normal };
            if !mentions(code, &dep.lib) {
                unused.push(format!(
                    "{} ({}) in {}",
                    dep.name,
                    if dep.dev { "dev" } else { "normal" },
                    pkg.name
                ));
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used: {unused:?}");
}

#[test]
fn the_dependency_check_sees_what_it_checks() {
    assert!(mentions("use tokio::net;", "tokio"));
    assert!(mentions("#[derive(serde::Serialize)]", "serde"));
    assert!(mentions("extern crate libc;", "libc"));
    assert!(!mentions("use tokio_util::x;", "tokio"));
    assert!(!mentions("let my_tokio::x", "tokio"));
    assert!(!mentions("// tokio is great", "tokio"));
    assert_eq!(lib_name("md-5"), "md5");
    assert_eq!(lib_name("serde-pickle"), "serde_pickle");
}

/// Every file of the source tree worth reading as text: not build output,
/// fuzzing corpora or version control.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(
                name.as_ref(),
                "target" | ".git" | "corpus" | "artifacts" | "coverage"
            ) {
                source_files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_merge_conflict_markers_are_left() {
    let mut files = Vec::new();
    source_files(&workspace_root(), &mut files);
    assert!(files.len() > 50, "the source tree was not found");
    let mut found = Vec::new();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else {
            continue; // not text
        };
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") {
                found.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    assert!(found.is_empty(), "merge conflict markers: {found:?}");
}
