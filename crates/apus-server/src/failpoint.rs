//! Failpoints, for fault testing only: named points on the object server's
//! PUT path where the process can be made to crash, so that a test can
//! check what a crash at exactly that point leaves behind (Swift has
//! nothing like it; its tests patch functions instead).
//!
//! `APUS_FAILPOINTS=<point>=abort[,<point>=abort...]` in the environment
//! of `apus serve` arms them. The variable is read once, when the first
//! object server of the process starts; unset (always, outside tests) a
//! point costs a load of an initialized `OnceLock` and an empty-list
//! check. A list naming an unknown point or action is logged and ignored.
//!
//! The points, in the order an object PUT passes them:
//! - `object-put-before-fsync`: the body and metadata are in the temp
//!   file, not yet fsynced;
//! - `object-put-before-rename`: the temp file is fsynced, not yet renamed
//!   into the object's directory;
//! - `object-put-after-rename`: the object is in place, no container
//!   update sent;
//! - `object-put-after-container-update`: the container updates are done
//!   (or saved as async pendings, or left running after
//!   `container_update_timeout`), the client has no answer yet.
//!
//! The one action, `abort`, ends the process with `std::process::abort`
//! (as a crash would: no destructors, no flushing) after lowering its core
//! size limit to zero, so that an expected crash leaves no core file.

use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "APUS_FAILPOINTS";

pub const PUT_BEFORE_FSYNC: &str = "object-put-before-fsync";
pub const PUT_BEFORE_RENAME: &str = "object-put-before-rename";
pub const PUT_AFTER_RENAME: &str = "object-put-after-rename";
pub const PUT_AFTER_CONTAINER_UPDATE: &str = "object-put-after-container-update";

/// Every point, in the order a PUT passes them.
pub const POINTS: &[&str] = &[
    PUT_BEFORE_FSYNC,
    PUT_BEFORE_RENAME,
    PUT_AFTER_RENAME,
    PUT_AFTER_CONTAINER_UPDATE,
];

/// What an armed point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Abort,
}

static ARMED: OnceLock<Vec<(&'static str, Action)>> = OnceLock::new();

/// Parses a failpoint list: `<point>=<action>` pairs separated by commas.
pub fn parse(spec: &str) -> Result<Vec<(&'static str, Action)>, String> {
    let mut armed = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, action) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not <point>=<action>"))?;
        let point = POINTS
            .iter()
            .copied()
            .find(|p| *p == name.trim())
            .ok_or_else(|| format!("unknown failpoint {name:?}"))?;
        let action = match action.trim() {
            "abort" => Action::Abort,
            other => return Err(format!("unknown failpoint action {other:?}")),
        };
        armed.push((point, action));
    }
    Ok(armed)
}

/// The armed points, reading [`ENV`] on the first call.
pub fn armed() -> &'static [(&'static str, Action)] {
    ARMED.get_or_init(|| {
        let Ok(spec) = std::env::var(ENV) else {
            return Vec::new();
        };
        match parse(&spec) {
            Ok(armed) => {
                for (point, action) in &armed {
                    tracing::warn!(failpoint = point, ?action, "failpoint armed");
                }
                armed
            }
            Err(error) => {
                tracing::error!(%error, "{ENV} ignored");
                Vec::new()
            }
        }
    })
}

/// Passes the point `name`: crashes the process there if it is armed.
pub fn hit(name: &str) {
    let armed = armed();
    if armed.is_empty() {
        return;
    }
    if let Some((point, Action::Abort)) = armed.iter().find(|(p, _)| *p == name) {
        tracing::error!(failpoint = point, "failpoint reached: aborting");
        no_core_dump();
        std::process::abort();
    }
}

fn no_core_dump() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Core);
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: limit.maximum,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_of_points() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(
            parse("object-put-after-rename=abort"),
            Ok(vec![(PUT_AFTER_RENAME, Action::Abort)])
        );
        assert_eq!(
            parse(" object-put-before-fsync = abort , object-put-after-container-update=abort,"),
            Ok(vec![
                (PUT_BEFORE_FSYNC, Action::Abort),
                (PUT_AFTER_CONTAINER_UPDATE, Action::Abort)
            ])
        );
    }

    #[test]
    fn rejects_unknown_points_and_actions() {
        assert!(parse("object-put-sometime=abort")
            .unwrap_err()
            .contains("unknown failpoint"));
        assert!(parse("object-put-after-rename=explode")
            .unwrap_err()
            .contains("unknown failpoint action"));
        assert!(parse("object-put-after-rename").is_err());
    }

    #[test]
    fn unarmed_points_pass() {
        // The test process has no failpoints armed.
        for point in POINTS {
            hit(point);
        }
    }
}
