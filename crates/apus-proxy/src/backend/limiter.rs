//! Error limiting: which storage nodes the proxy leaves out for a while.
//!
//! As Swift's `ErrorLimiter`: a node with more than `limit` errors (a
//! timeout, a connection failure, a 5xx), the last within `interval`, is
//! left out of node plans until `interval` has passed since that last
//! error; a 507 limits it at once. Unlike Swift, a limited node is not
//! left alone for the whole interval: once every `probe_interval` one
//! request is let through to it, and the first answer it gives (anything
//! but a 5xx) readmits it. A node back from a restart serves again within
//! a probe interval instead of a minute, and a node still down costs one
//! request per probe interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apus_ring::Device;

/// Whether a request may go to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not limited.
    Open,
    /// Limited, and this request is the probe of its probe interval.
    Probe,
    /// Limited: leave it out.
    Limited,
}

#[derive(Debug)]
struct NodeErrors {
    count: u32,
    last_error: Instant,
    last_probe: Option<Instant>,
}

pub struct ErrorLimiter {
    limit: u32,
    interval: Duration,
    probe_interval: Duration,
    nodes: Mutex<HashMap<String, NodeErrors>>,
}

impl ErrorLimiter {
    pub fn new(limit: u32, interval: Duration, probe_interval: Duration) -> Self {
        ErrorLimiter {
            limit,
            interval,
            probe_interval,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn key(dev: &Device) -> String {
        format!("{}:{}/{}", dev.ip, dev.port, dev.device)
    }

    /// Whether `dev` is limited, without taking a probe turn.
    pub fn is_limited(&self, dev: &Device) -> bool {
        let Ok(mut nodes) = self.nodes.lock() else {
            return false;
        };
        self.limited_entry(&mut nodes, &Self::key(dev)).is_some()
    }

    /// Decides whether a request may go to `dev`, taking the probe turn of
    /// a limited node whose last probe is older than the probe interval.
    pub fn admit(&self, dev: &Device) -> Admission {
        let Ok(mut nodes) = self.nodes.lock() else {
            return Admission::Open;
        };
        let probe_interval = self.probe_interval;
        match self.limited_entry(&mut nodes, &Self::key(dev)) {
            None => Admission::Open,
            Some(entry) => {
                let now = Instant::now();
                let due = match entry.last_probe {
                    None => true,
                    Some(at) => now.duration_since(at) >= probe_interval,
                };
                if due {
                    entry.last_probe = Some(now);
                    Admission::Probe
                } else {
                    Admission::Limited
                }
            }
        }
    }

    /// The entry of a node that is limited now; forgets one whose last
    /// error is older than the interval.
    fn limited_entry<'a>(
        &self,
        nodes: &'a mut HashMap<String, NodeErrors>,
        key: &str,
    ) -> Option<&'a mut NodeErrors> {
        let expired = nodes
            .get(key)
            .is_some_and(|e| e.last_error.elapsed() > self.interval);
        if expired {
            nodes.remove(key);
            return None;
        }
        nodes.get_mut(key).filter(|e| e.count > self.limit)
    }

    /// One more error for `dev` (a timeout, a connection failure, a 5xx).
    pub fn error(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let now = Instant::now();
            let entry = nodes.entry(Self::key(dev)).or_insert(NodeErrors {
                count: 0,
                last_error: now,
                last_probe: None,
            });
            entry.count = entry.count.saturating_add(1);
            entry.last_error = now;
        }
    }

    /// Takes `dev` out of use at once (507: the drive is gone).
    pub fn limit_now(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let now = Instant::now();
            let entry = nodes.entry(Self::key(dev)).or_insert(NodeErrors {
                count: 0,
                last_error: now,
                last_probe: Some(now),
            });
            entry.count = self.limit.saturating_add(1);
            entry.last_error = now;
            entry.last_probe = Some(now);
        }
    }

    /// `dev` answered (with anything but a 5xx): a limited node is
    /// readmitted. Errors of a node that is not limited are kept, as in
    /// Swift, so that a flapping node still reaches the limit.
    pub fn answered(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let key = Self::key(dev);
            if self.limited_entry(&mut nodes, &key).is_some() {
                nodes.remove(&key);
                tracing::info!(node = %key, "node answers again: no longer error-limited");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> Device {
        Device {
            id: 0,
            region: 1,
            zone: 1,
            ip: "127.0.0.1".into(),
            port: 6200,
            replication_ip: "127.0.0.1".into(),
            replication_port: 6200,
            device: name.into(),
            weight: 1.0,
            meta: String::new(),
        }
    }

    #[test]
    fn more_errors_than_the_limit_limit_a_node() {
        let l = ErrorLimiter::new(2, Duration::from_secs(60), Duration::from_secs(60));
        let d = dev("d1");
        l.error(&d);
        l.error(&d);
        assert_eq!(l.admit(&d), Admission::Open);
        l.error(&d);
        assert!(l.is_limited(&d));
        // The first request after limiting is the probe; the next waits.
        assert_eq!(l.admit(&d), Admission::Probe);
        assert_eq!(l.admit(&d), Admission::Limited);
        assert_eq!(l.admit(&dev("d2")), Admission::Open);
    }

    #[test]
    fn an_answer_readmits_a_limited_node_only() {
        let l = ErrorLimiter::new(1, Duration::from_secs(60), Duration::from_secs(60));
        let d = dev("d1");
        l.error(&d);
        l.answered(&d);
        l.error(&d);
        // Not limited when it answered: its first error still counts.
        assert!(l.is_limited(&d));
        l.answered(&d);
        assert!(!l.is_limited(&d));
        assert_eq!(l.admit(&d), Admission::Open);
    }

    #[test]
    fn probes_come_once_per_probe_interval() {
        let l = ErrorLimiter::new(0, Duration::from_secs(60), Duration::from_millis(30));
        let d = dev("d1");
        l.limit_now(&d);
        // limit_now counts as a probe just made.
        assert_eq!(l.admit(&d), Admission::Limited);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(l.admit(&d), Admission::Probe);
        assert_eq!(l.admit(&d), Admission::Limited);
    }

    #[test]
    fn limits_end_an_interval_after_the_last_error() {
        let l = ErrorLimiter::new(0, Duration::from_millis(30), Duration::from_secs(60));
        let d = dev("d1");
        l.error(&d);
        assert!(l.is_limited(&d));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_limited(&d));
        assert_eq!(l.admit(&d), Admission::Open);
    }
}
