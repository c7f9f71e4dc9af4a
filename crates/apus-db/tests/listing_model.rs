//! Listings checked against a plain in-memory model of Swift's semantics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use apus_db::{ContainerRecord, ListParams, Listing, ObjectRecord};
use common::*;
use proptest::prelude::*;

/// Entries as "name" or "name (dir)", like `common::names`.
fn model(all: &BTreeSet<String>, p: &ListParams) -> Vec<String> {
    let (prefix, delim, path_mode) = match &p.path {
        Some(path) => {
            let pfx = if path.is_empty() {
                String::new()
            } else {
                format!("{}/", path.trim_end_matches('/'))
            };
            (pfx, "/".to_string(), true)
        }
        None => (
            p.prefix.clone().unwrap_or_default(),
            p.delimiter.clone().unwrap_or_default(),
            false,
        ),
    };
    let (lo, hi) = if p.reverse {
        (&p.end_marker, &p.marker)
    } else {
        (&p.marker, &p.end_marker)
    };
    let names: Vec<&String> = all
        .iter()
        .filter(|n| lo.is_empty() || n.as_str() > lo.as_str())
        .filter(|n| hi.is_empty() || n.as_str() < hi.as_str())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut entries: BTreeSet<(String, bool)> = BTreeSet::new();
    for n in &names {
        let rest = &n[prefix.len()..];
        if path_mode {
            if n.as_str() == prefix {
                continue;
            }
            match rest.find('/') {
                Some(i) if rest.len() > i + 1 => continue, // deeper: left out
                Some(_) if p.reverse => {
                    // Swift's reverse walk steps past a "dir/" object when
                    // it has already seen a deeper name under it.
                    let deeper = names
                        .iter()
                        .any(|m| m.len() > n.len() && m.starts_with(n.as_str()));
                    if deeper {
                        continue;
                    }
                    entries.insert((n.to_string(), false));
                }
                _ => {
                    entries.insert((n.to_string(), false));
                }
            }
        } else if !delim.is_empty() {
            match rest.find(&delim) {
                Some(i) => {
                    let dir = n[..prefix.len() + i + delim.len()].to_string();
                    if dir != *lo {
                        entries.insert((dir, true));
                    }
                }
                None => {
                    entries.insert((n.to_string(), false));
                }
            }
        } else {
            entries.insert((n.to_string(), false));
        }
    }
    let mut out: Vec<String> = entries
        .into_iter()
        .map(|(n, dir)| if dir { format!("{n} (dir)") } else { n })
        .collect();
    if p.reverse {
        out.reverse();
    }
    out.truncate(p.limit);
    out
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', '/', '-', 'é', '😀']),
        1..5,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn maybe(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), Just(Some(String::new())), s.prop_map(Some)]
}

fn params(with_path: bool) -> impl Strategy<Value = ListParams> {
    (
        1usize..25,
        prop_oneof![Just(String::new()), name()],
        prop_oneof![Just(String::new()), name()],
        maybe(name()),
        prop_oneof![
            Just(None),
            Just(Some("/".to_string())),
            Just(Some("-".to_string())),
            Just(Some("é".to_string()))
        ],
        if with_path {
            maybe(name()).boxed()
        } else {
            Just(None).boxed()
        },
        any::<bool>(),
    )
        .prop_map(
            |(limit, marker, end_marker, prefix, delimiter, path, reverse)| ListParams {
                limit,
                marker,
                end_marker,
                prefix,
                delimiter,
                path,
                reverse,
                allow_reserved: false,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn container_listing_matches_model(
        names in prop::collection::btree_set(name(), 0..30),
        deleted in prop::collection::btree_set(name(), 0..6),
        queries in prop::collection::vec(params(true), 12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let b = container(&dir);
        let mut items: Vec<ObjectRecord> = names
            .iter()
            .map(|n| ObjectRecord::put(n, ts(10), 1, "t/p", "e", 0))
            .collect();
        items.extend(deleted.iter().map(|n| ObjectRecord::delete(n, ts(11), 0)));
        b.merge_items(items, None).unwrap();
        let live: BTreeSet<String> = names.difference(&deleted).cloned().collect();
        for q in &queries {
            let got = obj_names(&b.list_objects(q, 0).unwrap());
            prop_assert_eq!(got, model(&live, q), "{:?}", q);
        }
    }

    #[test]
    fn account_listing_matches_model(
        names in prop::collection::btree_set(name(), 0..30),
        queries in prop::collection::vec(params(false), 12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let b = account(&dir);
        let items = names
            .iter()
            .map(|n| ContainerRecord::new(n, ts(10), ts(0), 1, 1, 0))
            .collect();
        b.merge_items(items, None).unwrap();
        for q in &queries {
            let got = names_of(&b.list_containers(q).unwrap());
            prop_assert_eq!(got, model(&names, q), "{:?}", q);
        }
    }
}

fn names_of(rows: &[Listing<apus_db::ContainerEntry>]) -> Vec<String> {
    names(rows, |c| c.name.clone())
}
