//! Write slots and quorum gathering on virtual time: attempts are fake
//! tasks that answer a status after a delay, so the waits are exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_http::{BackendClient, ClientConfig};
use apus_ring::Device;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use http::HeaderMap;
use tokio::time::Instant;

use super::*;

/// A device of the tests (shared with the limiter's).
pub(super) fn dev(name: &str) -> Device {
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

fn backend() -> Backend {
    Backend {
        client: BackendClient::new(ClientConfig::default()),
        uploads: apus_http::expect::UploadPool::new(4, Duration::from_secs(30)),
        limiter: Arc::new(ErrorLimiter::new(LimiterConfig {
            limit: 10,
            interval: Duration::from_secs(60),
            probe_interval: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(1),
        })),
        timing: Timing::default(),
    }
}

fn response(status: u16) -> NodeResponse {
    NodeResponse {
        status,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// Fake nodes: each answers its status after its delay (in ms); which
/// nodes were asked, in order.
struct Nodes {
    answers: HashMap<String, (u16, u64)>,
    asked: Mutex<Vec<String>>,
}

impl Nodes {
    fn new(answers: &[(&str, u16, u64)]) -> Self {
        Nodes {
            answers: answers
                .iter()
                .map(|(n, s, ms)| (n.to_string(), (*s, *ms)))
                .collect(),
            asked: Mutex::new(Vec::new()),
        }
    }

    fn attempt(&self, dev: &Device) -> Attempt<NodeResponse> {
        self.asked.lock().unwrap().push(dev.device.clone());
        let (status, ms) = self.answers[&dev.device];
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response(status)
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// Runs one slot whose own node is `p` with stand-ins `h1`, `h2`: its
/// answer and how long it took.
async fn slot(nodes: &Nodes) -> (u16, Duration) {
    let b = backend();
    let primary = dev("p");
    let stand_ins = [dev("h1"), dev("h2")];
    let mut iter = stand_ins.iter();
    let started = Instant::now();
    let answer = b
        .hedged_slot(Some(&primary), || iter.next(), |d| nodes.attempt(d))
        .await;
    (answer.status, started.elapsed())
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn a_slot_takes_its_own_nodes_answer() {
    let nodes = Nodes::new(&[("p", 201, 100), ("h1", 201, 10), ("h2", 201, 10)]);
    assert_eq!(slot(&nodes).await, (201, MS(100)));
    assert_eq!(nodes.asked(), ["p"]);
    // Its own node's refusal is the slot's answer too.
    let nodes = Nodes::new(&[("p", 404, 100), ("h1", 201, 10), ("h2", 201, 10)]);
    assert_eq!(slot(&nodes).await, (404, MS(100)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_node_hands_its_turn_to_a_stand_in_at_once() {
    let nodes = Nodes::new(&[("p", 503, 10), ("h1", 507, 10), ("h2", 201, 10)]);
    assert_eq!(slot(&nodes).await, (201, MS(30)));
    assert_eq!(nodes.asked(), ["p", "h1", "h2"]);
    // Every node failing: the last failure.
    let nodes = Nodes::new(&[("p", 503, 10), ("h1", 503, 10), ("h2", 507, 10)]);
    assert_eq!(slot(&nodes).await, (507, MS(30)));
}

#[tokio::test(start_paused = true)]
async fn a_slow_node_is_joined_by_a_stand_in_after_the_concurrency_timeout() {
    // The node would answer after 10 s (a stall); the stand-in started at
    // 500 ms answers 20 ms later.
    let nodes = Nodes::new(&[("p", 201, 10_000), ("h1", 201, 20), ("h2", 201, 20)]);
    assert_eq!(slot(&nodes).await, (201, MS(520)));
    assert_eq!(nodes.asked(), ["p", "h1"]);
}

#[tokio::test(start_paused = true)]
async fn a_stand_ins_refusal_does_not_beat_a_slow_node_that_succeeds() {
    // A handoff answers 404 (it never had the object) while the slow node
    // is still working: the node's 202 is the slot's answer.
    let nodes = Nodes::new(&[("p", 202, 800), ("h1", 404, 10), ("h2", 404, 10)]);
    assert_eq!(slot(&nodes).await, (202, MS(800)));
    assert_eq!(nodes.asked(), ["p", "h1"]);
    // When the node fails after all, the stand-in's answer stands.
    let nodes = Nodes::new(&[("p", 503, 800), ("h1", 404, 10), ("h2", 404, 10)]);
    assert_eq!(slot(&nodes).await, (404, MS(800)));
}

#[tokio::test(start_paused = true)]
async fn a_quorum_gets_the_post_quorum_timeout_and_no_more() {
    let b = backend();
    let delays = [(0usize, 201u16, 10u64), (1, 201, 20), (2, 201, 10_000)];
    let pending: FuturesUnordered<_> = delays
        .iter()
        .map(|&(i, status, ms)| async move {
            tokio::time::sleep(MS(ms)).await;
            (i, response(status))
        })
        .collect();
    let started = Instant::now();
    let answers = b.gather(pending, 3, 2).await;
    // The quorum came at 20 ms; the third had until 520 ms.
    assert_eq!(started.elapsed(), MS(520));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [201, 201, 503]);

    // Without a quorum of one class, every answer is waited for.
    let delays = [(0usize, 201u16, 10u64), (1, 404, 20), (2, 201, 3_000)];
    let pending: FuturesUnordered<_> = delays
        .iter()
        .map(|&(i, status, ms)| async move {
            tokio::time::sleep(MS(ms)).await;
            (i, response(status))
        })
        .collect();
    let started = Instant::now();
    let answers = b.gather(pending, 3, 2).await;
    assert_eq!(started.elapsed(), MS(3_000));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [201, 404, 201]);
}

#[test]
fn have_quorum_needs_a_quorum_of_one_class() {
    assert!(!have_quorum(&[201], 2));
    assert!(have_quorum(&[201, 202], 2));
    assert!(!have_quorum(&[201, 404], 2));
    assert!(have_quorum(&[503, 507], 2));
    assert!(have_quorum(&[201, 404, 204], 2));
}

fn answers(statuses: &[u16]) -> Vec<NodeResponse> {
    statuses.iter().map(|&s| response(s)).collect()
}

#[test]
fn best_index_takes_the_first_class_with_a_quorum() {
    assert_eq!(best_index(&answers(&[201, 201, 503]), 2), Some(1));
    assert_eq!(best_index(&answers(&[404, 202, 404]), 2), Some(2));
    assert_eq!(best_index(&answers(&[202, 404, 503]), 2), None);
    assert_eq!(best_index(&answers(&[503, 503, 503]), 2), None);
}

#[test]
fn overrides_count_only_without_a_quorum() {
    let delete = &[(404, 204)];
    // One primary deleted, the handoff wrote a tombstone and said 404,
    // the third timed out: Swift answers the real 204.
    assert_eq!(
        best_index_with_overrides(&answers(&[204, 404, 503]), 2, delete),
        Some(0)
    );
    // A quorum of 404s stands (nothing to delete anywhere).
    assert_eq!(
        best_index_with_overrides(&answers(&[404, 404, 204]), 2, delete),
        Some(1)
    );
    // One tombstone is no quorum, counted as a 204 or not.
    assert_eq!(
        best_index_with_overrides(&answers(&[404, 503, 503]), 2, delete),
        None
    );
    // Without overrides the mixed answer is a 503.
    assert_eq!(best_index(&answers(&[204, 404, 503]), 2), None);
}
