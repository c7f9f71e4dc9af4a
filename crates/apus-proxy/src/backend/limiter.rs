//! Error limiting: which storage nodes the proxy leaves out for a while.
//!
//! As Swift's `ErrorLimiter`: a node with more than `limit` errors (a
//! timeout, a connection failure, a 5xx), the last within `interval`, is
//! left out of node plans until `interval` has passed since that last
//! error; a 507 limits it at once. Two differences, so that a node that
//! hangs costs little and a node that is back serves again at once:
//! - **Stalls.** A node with requests waiting on it that has answered
//!   nothing for `stall_timeout` is left out too, without waiting for
//!   those requests to reach their node timeout (errors are counted only
//!   then). A node that is merely slow under load keeps answering
//!   something and is never taken for stalled. The first answer it gives
//!   ends the stall.
//! - **Probes.** A limited node is not left alone for the whole interval:
//!   once every `probe_interval` one request is let through to it, and the
//!   first answer it gives (anything but a 5xx) readmits it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apus_ring::Device;

use crate::metrics::{BackendFailure, BackendFigures, NodeType};

/// Whether a request may go to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not limited.
    Open,
    /// Limited, and this request is the probe of its probe interval.
    Probe,
    /// Limited or stalled: leave it out.
    Limited,
}

#[derive(Debug)]
struct NodeState {
    errors: u32,
    last_error: Option<Instant>,
    last_probe: Option<Instant>,
    /// Requests sent and not yet answered.
    in_flight: u32,
    /// The last answer, or when the node last went from idle to busy.
    progress_at: Instant,
}

impl NodeState {
    fn new(now: Instant) -> Self {
        NodeState {
            errors: 0,
            last_error: None,
            last_probe: None,
            in_flight: 0,
            progress_at: now,
        }
    }
}

pub struct ErrorLimiter {
    limit: u32,
    interval: Duration,
    probe_interval: Duration,
    stall_timeout: Duration,
    nodes: Mutex<HashMap<String, NodeState>>,
    figures: BackendFigures,
}

/// Settings of an [`ErrorLimiter`].
#[derive(Clone, Copy, Debug)]
pub struct LimiterConfig {
    /// `error_suppression_limit`.
    pub limit: u32,
    /// `error_suppression_interval`.
    pub interval: Duration,
    /// `error_suppression_probe_interval`.
    pub probe_interval: Duration,
    /// How long a node with requests waiting may answer nothing before it
    /// is taken for stalled.
    pub stall_timeout: Duration,
}

/// One request waiting on a node; dropping it without
/// [`InFlight::answered`] means no answer came.
pub struct InFlight {
    limiter: Arc<ErrorLimiter>,
    key: String,
}

impl InFlight {
    /// The node answered (anything at all, its 5xx included).
    pub fn answered(self) {
        self.answered_at(Instant::now());
    }

    fn answered_at(self, now: Instant) {
        if let Ok(mut nodes) = self.limiter.nodes.lock() {
            if let Some(state) = nodes.get_mut(&self.key) {
                state.progress_at = now;
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut nodes) = self.limiter.nodes.lock() {
            if let Some(state) = nodes.get_mut(&self.key) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
    }
}

impl ErrorLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        ErrorLimiter {
            limit: config.limit,
            interval: config.interval,
            probe_interval: config.probe_interval,
            stall_timeout: config.stall_timeout,
            nodes: Mutex::new(HashMap::new()),
            figures: BackendFigures::default(),
        }
    }

    fn key(dev: &Device) -> String {
        format!("{}:{}/{}", dev.ip, dev.port, dev.device)
    }

    /// Forgets errors older than the interval.
    fn expire(&self, state: &mut NodeState, now: Instant) {
        if state
            .last_error
            .is_some_and(|at| now.duration_since(at) > self.interval)
        {
            state.errors = 0;
            state.last_error = None;
            state.last_probe = None;
        }
    }

    fn over_limit(&self, state: &NodeState) -> bool {
        state.errors > self.limit
    }

    fn stalled(&self, state: &NodeState, now: Instant) -> bool {
        state.in_flight > 0 && now.duration_since(state.progress_at) > self.stall_timeout
    }

    /// Whether `dev` is limited or stalled, without taking a probe turn.
    pub fn is_limited(&self, dev: &Device) -> bool {
        self.is_limited_at(dev, Instant::now())
    }

    fn is_limited_at(&self, dev: &Device, now: Instant) -> bool {
        let Ok(mut nodes) = self.nodes.lock() else {
            return false;
        };
        match nodes.get_mut(&Self::key(dev)) {
            None => false,
            Some(state) => {
                self.expire(state, now);
                self.over_limit(state) || self.stalled(state, now)
            }
        }
    }

    /// Decides whether a request may go to `dev`, taking the probe turn of
    /// a limited node whose last probe is older than the probe interval.
    /// A stalled node gets no probe: the requests it holds are probes
    /// enough.
    pub fn admit(&self, dev: &Device) -> Admission {
        self.admit_at(dev, Instant::now())
    }

    fn admit_at(&self, dev: &Device, now: Instant) -> Admission {
        let Ok(mut nodes) = self.nodes.lock() else {
            return Admission::Open;
        };
        let Some(state) = nodes.get_mut(&Self::key(dev)) else {
            return Admission::Open;
        };
        self.expire(state, now);
        if self.stalled(state, now) {
            return Admission::Limited;
        }
        if !self.over_limit(state) {
            return Admission::Open;
        }
        let due = match state.last_probe {
            None => true,
            Some(at) => now.duration_since(at) >= self.probe_interval,
        };
        if due {
            state.last_probe = Some(now);
            Admission::Probe
        } else {
            Admission::Limited
        }
    }

    /// A request to `dev` starts waiting for its answer.
    pub fn begin(self: &Arc<Self>, dev: &Device) -> InFlight {
        self.begin_at(dev, Instant::now())
    }

    fn begin_at(self: &Arc<Self>, dev: &Device, now: Instant) -> InFlight {
        let key = Self::key(dev);
        if let Ok(mut nodes) = self.nodes.lock() {
            let state = nodes
                .entry(key.clone())
                .or_insert_with(|| NodeState::new(now));
            if state.in_flight == 0 {
                state.progress_at = now;
            }
            state.in_flight = state.in_flight.saturating_add(1);
        }
        InFlight {
            limiter: self.clone(),
            key,
        }
    }

    /// Failures and limiting events so far, for `/metrics`.
    pub fn figures(&self) -> &BackendFigures {
        &self.figures
    }

    /// Whether a node is limited or stalled at `now`, its expired errors
    /// disregarded, without changing its state.
    fn limited_state(&self, state: &NodeState, now: Instant) -> bool {
        let fresh = state
            .last_error
            .is_some_and(|at| now.duration_since(at) <= self.interval);
        (fresh && self.over_limit(state)) || self.stalled(state, now)
    }

    /// Nodes limited or stalled now.
    pub fn limited_count(&self) -> u64 {
        let now = Instant::now();
        let Ok(nodes) = self.nodes.lock() else {
            return 0;
        };
        nodes
            .values()
            .filter(|s| self.limited_state(s, now))
            .count() as u64
    }

    /// The nodes limited or stalled now, as `ip:port/device`, sorted. No
    /// probe turn is taken and nothing is forgotten.
    pub fn limited_nodes(&self) -> Vec<String> {
        self.limited_nodes_at(Instant::now())
    }

    fn limited_nodes_at(&self, now: Instant) -> Vec<String> {
        let Ok(nodes) = self.nodes.lock() else {
            return Vec::new();
        };
        let mut out: Vec<String> = nodes
            .iter()
            .filter(|(_, s)| self.limited_state(s, now))
            .map(|(k, _)| k.clone())
            .collect();
        out.sort();
        out
    }

    /// A request to `dev`, a node of type `node`, failed: counted, and
    /// charged to the node as an [`error`](Self::error).
    pub fn failed(&self, dev: &Device, node: NodeType, failure: BackendFailure) {
        self.figures.failed(node, failure);
        self.error(dev);
    }

    /// One more error for `dev` (a timeout, a connection failure, a 5xx).
    pub fn error(&self, dev: &Device) {
        self.error_at(dev, Instant::now());
    }

    fn error_at(&self, dev: &Device, now: Instant) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let state = nodes
                .entry(Self::key(dev))
                .or_insert_with(|| NodeState::new(now));
            self.expire(state, now);
            let was_limited = self.over_limit(state);
            state.errors = state.errors.saturating_add(1);
            state.last_error = Some(now);
            if !was_limited && self.over_limit(state) {
                self.figures.limited(false);
            }
        }
    }

    /// Takes `dev` out of use at once (507: the drive is gone).
    pub fn limit_now(&self, dev: &Device) {
        self.limit_at(dev, Instant::now());
    }

    fn limit_at(&self, dev: &Device, now: Instant) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let state = nodes
                .entry(Self::key(dev))
                .or_insert_with(|| NodeState::new(now));
            self.expire(state, now);
            if !self.over_limit(state) {
                self.figures.limited(true);
            }
            state.errors = self.limit.saturating_add(1);
            state.last_error = Some(now);
            state.last_probe = Some(now);
        }
    }

    /// `dev` answered (with anything but a 5xx): a limited node is
    /// readmitted. Errors of a node that is not limited are kept, as in
    /// Swift, so that a flapping node still reaches the limit.
    pub fn answered(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let key = Self::key(dev);
            let now = Instant::now();
            if let Some(state) = nodes.get_mut(&key) {
                self.expire(state, now);
                if self.over_limit(state) {
                    state.errors = 0;
                    state.last_error = None;
                    state.last_probe = None;
                    tracing::info!(node = %key, "node answers again: no longer error-limited");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::tests::dev;

    fn limiter(limit: u32, interval_s: u64, probe_s: u64, stall_s: u64) -> Arc<ErrorLimiter> {
        Arc::new(ErrorLimiter::new(LimiterConfig {
            limit,
            interval: Duration::from_secs(interval_s),
            probe_interval: Duration::from_secs(probe_s),
            stall_timeout: Duration::from_secs(stall_s),
        }))
    }

    /// `t0` plus `s` seconds: the tests run on explicit instants.
    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn more_errors_than_the_limit_limit_a_node() {
        let l = limiter(2, 60, 60, 60);
        let d = dev("d1");
        let t0 = Instant::now();
        l.error_at(&d, t0);
        l.error_at(&d, t0);
        assert_eq!(l.admit_at(&d, t0), Admission::Open);
        l.error_at(&d, t0);
        assert!(l.is_limited_at(&d, t0));
        // The first request after limiting is the probe; the next waits.
        assert_eq!(l.admit_at(&d, at(t0, 1)), Admission::Probe);
        assert_eq!(l.admit_at(&d, at(t0, 1)), Admission::Limited);
        assert_eq!(l.admit_at(&dev("d2"), at(t0, 1)), Admission::Open);
    }

    #[test]
    fn an_answer_readmits_a_limited_node_only() {
        let l = limiter(1, 60, 60, 60);
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
        let l = limiter(0, 60, 2, 60);
        let d = dev("d1");
        let t0 = Instant::now();
        l.limit_at(&d, t0);
        // limit_now counts as a probe just made.
        assert_eq!(l.admit_at(&d, at(t0, 1)), Admission::Limited);
        assert_eq!(l.admit_at(&d, at(t0, 3)), Admission::Probe);
        assert_eq!(l.admit_at(&d, at(t0, 4)), Admission::Limited);
        assert_eq!(l.admit_at(&d, at(t0, 5)), Admission::Probe);
    }

    #[test]
    fn limits_end_an_interval_after_the_last_error() {
        let l = limiter(0, 10, 60, 60);
        let d = dev("d1");
        let t0 = Instant::now();
        l.error_at(&d, t0);
        assert!(l.is_limited_at(&d, at(t0, 9)));
        assert!(!l.is_limited_at(&d, at(t0, 11)));
        assert_eq!(l.admit_at(&d, at(t0, 11)), Admission::Open);
    }

    #[test]
    fn a_node_that_answers_nothing_for_the_stall_timeout_is_left_out() {
        let l = limiter(10, 60, 60, 2);
        let d = dev("d1");
        let t0 = Instant::now();
        let waiting = l.begin_at(&d, t0);
        assert_eq!(l.admit_at(&d, at(t0, 1)), Admission::Open);
        assert_eq!(l.admit_at(&d, at(t0, 3)), Admission::Limited);
        assert_eq!(l.admit_at(&dev("d2"), at(t0, 3)), Admission::Open);
        // Any answer ends the stall.
        l.begin_at(&d, at(t0, 3)).answered_at(at(t0, 4));
        assert_eq!(l.admit_at(&d, at(t0, 5)), Admission::Open);
        assert_eq!(l.admit_at(&d, at(t0, 7)), Admission::Limited);
        // Once nothing waits on it, it is not stalled however long ago it
        // last answered.
        drop(waiting);
        assert_eq!(l.admit_at(&d, at(t0, 60)), Admission::Open);
    }

    #[test]
    fn limited_nodes_lists_nodes_over_the_limit_or_stalled() {
        let l = limiter(2, 10, 60, 2);
        let (d1, d2) = (dev("d1"), dev("d2"));
        let t0 = Instant::now();
        assert!(l.limited_nodes_at(t0).is_empty());
        l.error_at(&d1, t0);
        l.error_at(&d1, t0);
        assert!(l.limited_nodes_at(t0).is_empty());
        l.error_at(&d1, t0);
        assert_eq!(l.limited_nodes_at(t0), vec!["127.0.0.1:6200/d1"]);
        // Asking takes no probe turn.
        assert_eq!(l.admit_at(&d1, at(t0, 1)), Admission::Probe);
        // A stalled node is listed too, in order.
        let waiting = l.begin_at(&d2, t0);
        assert_eq!(
            l.limited_nodes_at(at(t0, 3)),
            vec!["127.0.0.1:6200/d1", "127.0.0.1:6200/d2"]
        );
        // Errors older than the interval no longer limit.
        drop(waiting);
        assert!(l.limited_nodes_at(at(t0, 11)).is_empty());
    }

    #[test]
    fn a_busy_node_that_keeps_answering_is_not_stalled() {
        let l = limiter(10, 60, 60, 2);
        let d = dev("d1");
        let t0 = Instant::now();
        let _slow = l.begin_at(&d, t0);
        for s in 1..10 {
            l.begin_at(&d, at(t0, s)).answered_at(at(t0, s));
            assert_eq!(
                l.admit_at(&d, at(t0, s) + Duration::from_millis(1500)),
                Admission::Open
            );
        }
    }
}
