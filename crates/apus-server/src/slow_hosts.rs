//! Container servers an object server has found slow or unreachable, so
//! that its PUTs, POSTs and DELETEs stop waiting for them.
//!
//! Swift's object server waits up to `container_update_timeout` for every
//! container update, so a stalled container server adds that wait to every
//! write whose container it holds. apus marks a host whose update did not
//! finish in time, or could not reach it, as slow. Updates for a slow host
//! are still sent, in the background, without the write waiting for them;
//! beyond [`MAX_IN_FLIGHT`] of them at once they are saved straight to
//! async pendings, which the object updater delivers later. The first
//! update that reaches the host clears the mark.

use std::collections::HashMap;
use std::sync::Mutex;

/// Updates in flight to one slow host at most; a stalled host holds each
/// for up to the node timeout.
pub const MAX_IN_FLIGHT: usize = 32;

/// What to do with one container update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdatePlan {
    /// Send it, and let the write wait for it (up to the timeout).
    Wait,
    /// Send it without the write waiting.
    Background,
    /// Save it as an async pending without sending.
    Save,
}

#[derive(Debug, Default)]
struct HostState {
    slow: bool,
    in_flight: usize,
}

#[derive(Debug, Default)]
pub struct SlowHosts {
    hosts: Mutex<HashMap<String, HostState>>,
}

impl SlowHosts {
    /// Decides an update for `host`; for `Wait` and `Background` the
    /// caller must report the send's end with [`SlowHosts::done`].
    pub fn plan(&self, host: &str) -> UpdatePlan {
        let Ok(mut hosts) = self.hosts.lock() else {
            return UpdatePlan::Wait;
        };
        let state = hosts.entry(host.to_string()).or_default();
        let plan = match (state.slow, state.in_flight < MAX_IN_FLIGHT) {
            (false, _) => UpdatePlan::Wait,
            (true, true) => UpdatePlan::Background,
            (true, false) => return UpdatePlan::Save,
        };
        state.in_flight += 1;
        plan
    }

    /// A write stopped waiting for an update to `host`.
    pub fn timed_out(&self, host: &str) {
        if let Ok(mut hosts) = self.hosts.lock() {
            hosts.entry(host.to_string()).or_default().slow = true;
        }
    }

    /// A send planned by [`SlowHosts::plan`] ended; `reached` whether the
    /// host answered at all.
    pub fn done(&self, host: &str, reached: bool) {
        if let Ok(mut hosts) = self.hosts.lock() {
            let state = hosts.entry(host.to_string()).or_default();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.slow = !reached;
            if !state.slow && state.in_flight == 0 {
                hosts.remove(host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "10.0.0.1:6201";

    #[test]
    fn a_host_that_times_out_is_sent_to_in_the_background_until_it_answers() {
        let s = SlowHosts::default();
        assert_eq!(s.plan(HOST), UpdatePlan::Wait);
        s.timed_out(HOST);
        assert_eq!(s.plan(HOST), UpdatePlan::Background);
        assert_eq!(s.plan("10.0.0.2:6201"), UpdatePlan::Wait);
        s.done(HOST, true);
        assert_eq!(s.plan(HOST), UpdatePlan::Wait);
    }

    #[test]
    fn an_unreachable_host_is_slow() {
        let s = SlowHosts::default();
        assert_eq!(s.plan(HOST), UpdatePlan::Wait);
        s.done(HOST, false);
        assert_eq!(s.plan(HOST), UpdatePlan::Background);
    }

    #[test]
    fn beyond_the_in_flight_limit_updates_are_saved() {
        let s = SlowHosts::default();
        s.timed_out(HOST);
        for _ in 0..MAX_IN_FLIGHT {
            assert_eq!(s.plan(HOST), UpdatePlan::Background);
        }
        assert_eq!(s.plan(HOST), UpdatePlan::Save);
        s.done(HOST, false);
        assert_eq!(s.plan(HOST), UpdatePlan::Background);
    }
}
