//! Container updates the object server could not deliver, saved for the
//! object updater: `<device>/async_pending[-N]/<suffix>/<hash>-<timestamp>`,
//! each a pickled dict `{'op', 'account', 'container', 'obj', 'headers',
//! 'db_state'[, 'container_path']}` as Swift's object server writes it
//! (apus writes pickle protocol 2; Swift writes protocol 0; both read
//! either). Header names and values are stored as Swift keeps them (WSGI
//! strings); account, container and object names as plain text.

use std::fs;
use std::path::{Path, PathBuf};

use apus_core::Timestamp;

use crate::diskfile::DiskFileManager;
use crate::error::{DiskFileError, IoContext, Result};
use crate::fsutil::list_names;
use crate::hashes::write_pickle_file;
use crate::layout::{async_dir, tmp_dir, valid_suffix};
use crate::metadata::{to_text, wsgi_str};
use crate::pickle::{self, Value};

/// One saved container update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncUpdate {
    /// `PUT` or `DELETE`.
    pub op: String,
    pub account: String,
    pub container: String,
    pub obj: String,
    /// The headers of the container request (`X-Size`, `X-Etag`, …).
    pub headers: Vec<(String, String)>,
    /// The container DB state the proxy reported (`unsharded`, …), if any.
    pub db_state: Option<String>,
    /// A redirect target `account/container` for sharded containers.
    pub container_path: Option<String>,
    /// Ids (in the container ring) of the devices that already took this
    /// update; the updater records them so a retry skips them.
    pub successes: Vec<u32>,
}

impl AsyncUpdate {
    pub fn to_pickle(&self) -> Vec<u8> {
        let s = |v: &str| Value::Str(v.to_string());
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| (Value::Str(wsgi_str(k)), Value::Str(wsgi_str(v))))
            .collect();
        let mut items = vec![
            (s("op"), s(&self.op)),
            (s("account"), s(&self.account)),
            (s("container"), s(&self.container)),
            (s("obj"), s(&self.obj)),
            (s("headers"), Value::Dict(headers)),
            (
                s("db_state"),
                self.db_state.as_deref().map_or(Value::None, s),
            ),
        ];
        if let Some(cp) = &self.container_path {
            items.push((s("container_path"), s(cp)));
        }
        if !self.successes.is_empty() {
            let ids = self
                .successes
                .iter()
                .map(|&id| Value::Int(i64::from(id)))
                .collect();
            items.push((s("successes"), Value::List(ids)));
        }
        pickle::dumps(&Value::Dict(items))
    }

    pub fn from_pickle(data: &[u8]) -> Result<AsyncUpdate> {
        let bad = |what: &str| DiskFileError::InvalidMetadata(format!("async pending: {what}"));
        let v = pickle::loads(data).map_err(|e| bad(&e.to_string()))?;
        let text = |key: &str| -> Option<String> {
            match v.dict_get(key) {
                None | Some(Value::None) => None,
                Some(x) => Some(to_text(x, false)),
            }
        };
        let headers = match v.dict_get("headers") {
            Some(Value::Dict(items)) => items
                .iter()
                .map(|(k, val)| (to_text(k, true), to_text(val, true)))
                .collect(),
            Some(Value::None) | None => Vec::new(),
            Some(_) => return Err(bad("headers is not a dict")),
        };
        let successes = match v.dict_get("successes") {
            Some(Value::List(ids)) | Some(Value::Tuple(ids)) => ids
                .iter()
                .filter_map(|id| match id {
                    Value::Int(n) => u32::try_from(*n).ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(AsyncUpdate {
            successes,
            op: text("op").ok_or_else(|| bad("no op"))?,
            account: text("account").ok_or_else(|| bad("no account"))?,
            container: text("container").ok_or_else(|| bad("no container"))?,
            obj: text("obj").ok_or_else(|| bad("no obj"))?,
            headers,
            db_state: text("db_state"),
            container_path: text("container_path"),
        })
    }
}

/// A saved update found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncPendingEntry {
    pub path: PathBuf,
    pub policy: u32,
    pub hash: String,
    /// The timestamp part of the file name, as written.
    pub timestamp: String,
}

impl DiskFileManager {
    /// Saves a container update for the updater (Swift's
    /// `pickle_async_update`); the device is not mount-checked, as in Swift.
    pub fn write_async_pending(
        &self,
        device: &str,
        policy: u32,
        update: &AsyncUpdate,
        timestamp: Timestamp,
    ) -> Result<PathBuf> {
        let device_path = self.config().devices.join(device);
        let hash = self.config().hash.hash_path(
            &update.account,
            Some(&update.container),
            Some(&update.obj),
        );
        let dest = device_path
            .join(async_dir(policy))
            .join(crate::layout::suffix_of(&hash))
            .join(format!("{hash}-{}", timestamp.internal()));
        write_pickle_file(
            &update.to_pickle(),
            &dest,
            &device_path.join(tmp_dir(policy)),
        )?;
        Ok(dest)
    }

    /// Rewrites a saved update in place (atomically), as the updater does
    /// to record the container servers that took it.
    pub fn rewrite_async_pending(
        &self,
        device: &str,
        policy: u32,
        path: &Path,
        update: &AsyncUpdate,
    ) -> Result<()> {
        let device_path = self.config().devices.join(device);
        write_pickle_file(
            &update.to_pickle(),
            path,
            &device_path.join(tmp_dir(policy)),
        )
    }

    /// Every saved update on a device, all policies, newest first within
    /// each suffix (so the first entry of an object is its newest update).
    pub fn list_async_pendings(&self, device: &str) -> Result<Vec<AsyncPendingEntry>> {
        let device_path = self.device_path(device)?;
        let mut out = Vec::new();
        let mut dirs = list_names(&device_path)
            .at(&device_path)?
            .unwrap_or_default();
        dirs.sort();
        for dir in dirs {
            let policy = if dir == "async_pending" {
                0
            } else if let Some(n) = dir.strip_prefix("async_pending-") {
                match n.parse::<u32>() {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            } else {
                continue;
            };
            let apath = device_path.join(&dir);
            if !apath.is_dir() {
                continue;
            }
            let mut suffixes = list_names(&apath).at(&apath)?.unwrap_or_default();
            suffixes.sort();
            for suffix in suffixes.into_iter().filter(|s| valid_suffix(s)) {
                let spath = apath.join(&suffix);
                if !spath.is_dir() {
                    continue;
                }
                let mut names = list_names(&spath).at(&spath)?.unwrap_or_default();
                names.sort_unstable_by(|a, b| b.cmp(a));
                for name in names {
                    let Some((hash, ts)) = name.split_once('-') else {
                        continue;
                    };
                    if ts.contains('-') || hash.len() != 32 {
                        continue;
                    }
                    out.push(AsyncPendingEntry {
                        path: spath.join(&name),
                        policy,
                        hash: hash.to_string(),
                        timestamp: ts.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Reads a saved update.
pub fn read_async_pending(path: &Path) -> Result<AsyncUpdate> {
    let data = fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DiskFileError::NotFound
        } else {
            DiskFileError::io(path, e)
        }
    })?;
    AsyncUpdate::from_pickle(&data)
}

/// Removes a delivered (or obsolete) update, and its suffix directory when
/// that is left empty.
pub fn remove_async_pending(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DiskFileError::io(path, e)),
    }
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}
