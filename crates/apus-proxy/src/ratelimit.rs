//! Rate limits (Swift's `ratelimit` middleware): writes to an account's
//! containers, writes to a container's objects and container listings
//! are slowed to a configured rate by making requests wait, and refused
//! `498 Rate Limited` (`Slow down`) once the wait would reach
//! `max_sleep_time_seconds`.
//!
//! - `account_ratelimit`: container PUT and DELETE per account, per second.
//! - `container_ratelimits` and `container_listing_ratelimits`: object
//!   writes (PUT, DELETE, POST, COPY) and container GETs, as a function of
//!   the container's object count: (count, rate) points, the rate drawn as
//!   a line between them and flat after the last; no limit below the
//!   first point (or for an empty container).
//! - An account's `X-Account-Sysmeta-Global-Write-Ratelimit` (set by an
//!   operator through an internal client): `WHITELIST` exempts it,
//!   `BLACKLIST` refuses it `497 Blacklisted` after a second, a number
//!   limits all its writes together. `account_whitelist` and
//!   `account_blacklist` do the same from configuration.
//!
//! Swift keeps each limit's "next free time" in memcache, shared by the
//! proxies; apus keeps it in the proxy's memory, so with several proxies
//! each allows the rate (a cluster-wide limit divides it by the proxies).
//! Entries older than `rate_buffer_seconds` mean the same as none and are
//! dropped; past [`MAX_TRACKED`] keys, new keys are not limited rather
//! than letting anyone grow the table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode};

use crate::info::InfoLookup;
use crate::service::{
    env, error_response, header_str, BoxFuture, Req, Resp, Service, SharedService,
};

/// Keys tracked at most (each is an account or a container written to
/// within the last `rate_buffer_seconds`).
pub const MAX_TRACKED: usize = 65_536;

/// How long a blacklisted account's request waits before its 497.
const BLACKLIST_SLEEP: Duration = Duration::from_secs(1);

/// Swift's `[filter:ratelimit]` settings (its defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Container PUTs and DELETEs per second per account; 0 is none.
    pub account_ratelimit: f64,
    pub max_sleep_time_seconds: f64,
    /// Waits longer than this are logged; 0 logs none.
    pub log_sleep_time_seconds: f64,
    /// Ticks per second of the limiter's clock.
    pub clock_accuracy: u32,
    /// How far back an unused rate may be caught up on, in seconds.
    pub rate_buffer_seconds: u32,
    pub account_whitelist: Vec<String>,
    pub account_blacklist: Vec<String>,
    /// (object count, rate) points for object writes, by count.
    pub container_ratelimits: Vec<(u64, f64)>,
    /// (object count, rate) points for container listings, by count.
    pub container_listing_ratelimits: Vec<(u64, f64)>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            account_ratelimit: 0.0,
            max_sleep_time_seconds: 60.0,
            log_sleep_time_seconds: 0.0,
            clock_accuracy: 1000,
            rate_buffer_seconds: 5,
            account_whitelist: Vec::new(),
            account_blacklist: Vec::new(),
            container_ratelimits: Vec::new(),
            container_listing_ratelimits: Vec::new(),
        }
    }
}

/// The `/info` entry (Swift shows only these settings).
pub fn info(config: &RateLimitConfig) -> serde_json::Value {
    let points = |p: &[(u64, f64)]| {
        let mut p = p.to_vec();
        p.sort_by_key(|point| point.0);
        p.iter()
            .map(|(size, rate)| serde_json::json!([size, rate]))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "account_ratelimit": config.account_ratelimit,
        "max_sleep_time_seconds": config.max_sleep_time_seconds,
        "container_ratelimits": points(&config.container_ratelimits),
        "container_listing_ratelimits": points(&config.container_listing_ratelimits),
    })
}

/// The rate for a container of `count` objects, by Swift's
/// `get_maxrate`: `None` below the first point and for an empty one.
pub fn max_rate(points: &[(u64, f64)], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|point| point.0);
    let at = sorted.iter().rposition(|(size, _)| *size <= count)?;
    let (size, rate) = sorted[at];
    Some(match sorted.get(at + 1) {
        Some(&(next_size, next_rate)) => {
            let slope = (next_rate - rate) / (next_size - size) as f64;
            (count - size) as f64 * slope + rate
        }
        None => rate,
    })
}

/// The next free time of each limit, in clock ticks (what Swift keeps
/// in memcache under the same keys).
#[derive(Debug, Default)]
struct Ledger {
    next_free: HashMap<String, i64>,
}

/// Why a request may not wait its turn.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MaxSleepHit {
    /// The wait it would have had, in seconds.
    wait: f64,
}

pub struct RateLimit {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: RateLimitConfig,
    ledger: Mutex<Ledger>,
}

impl RateLimit {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: RateLimitConfig) -> Self {
        RateLimit {
            next,
            info,
            config,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    fn now_ticks(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        (now * f64::from(self.config.clock_accuracy)).round() as i64
    }

    /// Books the next slot of `key` at `rate` per second and says how
    /// long to wait for it (Swift's `_get_sleep_time`, one step under a
    /// lock instead of memcache's incr/set/decr).
    fn book(&self, key: &str, rate: f64, now: i64) -> Result<Duration, MaxSleepHit> {
        let accuracy = f64::from(self.config.clock_accuracy);
        let per_request = (accuracy / rate).round() as i64;
        let buffer =
            i64::from(self.config.rate_buffer_seconds) * i64::from(self.config.clock_accuracy);
        let Ok(mut ledger) = self.ledger.lock() else {
            return Ok(Duration::ZERO);
        };
        if !ledger.next_free.contains_key(key) && ledger.next_free.len() >= MAX_TRACKED {
            // Stale entries are as good as none: drop them to make room.
            ledger.next_free.retain(|_, next| now - *next <= buffer);
            if ledger.next_free.len() >= MAX_TRACKED {
                return Ok(Duration::ZERO);
            }
        }
        let slot = ledger.next_free.entry(key.to_string()).or_insert(0);
        *slot = slot.saturating_add(per_request);
        let running = *slot;
        let mut wait = 0;
        if now - running > buffer {
            *slot = now + per_request;
        } else {
            wait = (running - now - per_request).max(0);
        }
        let max_sleep = self.config.max_sleep_time_seconds * accuracy;
        if max_sleep - wait as f64 <= accuracy * 0.01 {
            // Not taken: give the slot back.
            *slot = (*slot - per_request).max(0);
            return Err(MaxSleepHit {
                wait: wait as f64 / accuracy,
            });
        }
        Ok(Duration::from_secs_f64(wait as f64 / accuracy))
    }

    /// The (key, rate) limits that apply, in Swift's order.
    async fn limits(
        &self,
        req: &Req,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
        global_write: Option<&str>,
    ) -> Vec<(String, f64)> {
        let method = req.method();
        let write = [Method::PUT, Method::DELETE, Method::POST].contains(method)
            || method.as_str() == "COPY";
        let mut keys = Vec::new();
        if let (Some(c), None) = (container, object) {
            if self.config.account_ratelimit > 0.0
                && (method == Method::PUT || method == Method::DELETE)
            {
                keys.push((
                    format!("ratelimit/{account}"),
                    self.config.account_ratelimit,
                ));
            }
            if method == Method::GET && !self.config.container_listing_ratelimits.is_empty() {
                let count = self.object_count(req, account, c).await;
                if let Some(rate) = max_rate(&self.config.container_listing_ratelimits, count) {
                    keys.push((format!("ratelimit_listing/{account}/{c}"), rate));
                }
            }
        }
        if let (Some(c), Some(_)) = (container, object) {
            if write && !self.config.container_ratelimits.is_empty() {
                let count = self.object_count(req, account, c).await;
                if let Some(rate) = max_rate(&self.config.container_ratelimits, count) {
                    keys.push((format!("ratelimit/{account}/{c}"), rate));
                }
            }
        }
        if write {
            if let Some(rate) = global_write.and_then(|v| v.trim().parse::<f64>().ok()) {
                if rate > 0.0 && rate.is_finite() {
                    keys.push((format!("ratelimit/global-write/{account}"), rate));
                }
            }
        }
        keys
    }

    async fn object_count(&self, req: &Req, account: &str, container: &str) -> u64 {
        let env = env(req).subrequest("RL");
        self.info
            .container_info(&env, account, container)
            .await
            .object_count
    }

    /// The answer that stops `req`, after any wait it must have.
    async fn check(&self, req: &Req) -> Option<Resp> {
        let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
        let parts = apus_proto::split_path(&decoded, 1, 4, true).ok()?;
        let part = |i: usize| parts.get(i).cloned().flatten().filter(|s| !s.is_empty());
        let version = part(0)?;
        if version != "v1" && version != "v1.0" {
            return None;
        }
        let account = part(1)?;
        let (container, object) = (part(2), part(3));
        let env = env(req).subrequest("RL");
        let account_info = self.info.account_info(&env, &account).await;
        let global_write = header_str(
            &account_info.headers,
            "x-account-sysmeta-global-write-ratelimit",
        )
        .map(str::to_string);
        let listed = |list: &[String]| list.contains(&account);
        if listed(&self.config.account_whitelist) || global_write.as_deref() == Some("WHITELIST") {
            return None;
        }
        if listed(&self.config.account_blacklist) || global_write.as_deref() == Some("BLACKLIST") {
            tracing::error!(%account, "returning 497 because of blacklisting");
            tokio::time::sleep(BLACKLIST_SLEEP).await;
            return Some(refusal(
                497,
                "Blacklisted",
                "Your account has been blacklisted",
            ));
        }
        let limits = self
            .limits(
                req,
                &account,
                container.as_deref(),
                object.as_deref(),
                global_write.as_deref(),
            )
            .await;
        for (key, rate) in limits {
            match self.book(&key, rate, self.now_ticks()) {
                Ok(wait) => {
                    let logged = self.config.log_sleep_time_seconds;
                    if logged > 0.0 && wait.as_secs_f64() > logged {
                        tracing::warn!(
                            wait = wait.as_secs_f64(),
                            %account,
                            container = container.as_deref().unwrap_or(""),
                            object = object.as_deref().unwrap_or(""),
                            "ratelimit sleep"
                        );
                    }
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(hit) => {
                    tracing::error!(
                        method = %req.method(),
                        path = %decoded,
                        wait = hit.wait,
                        "returning 498: ratelimit (max sleep) exceeded"
                    );
                    return Some(refusal(498, "Rate Limited", "Slow down"));
                }
            }
        }
        None
    }
}

/// Swift's 497 and 498, with their reason phrases (hyper knows neither).
fn refusal(status: u16, reason: &'static str, body: &str) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut resp = error_response(status, Some(body));
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    resp
}

impl Service for RateLimit {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(async move {
            match self.check(&req).await {
                Some(refused) => refused,
                None => self.next.call(req).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_follow_swifts_lines_between_points() {
        let points = [(100, 10.0), (10, 50.0), (1000, 10.0)];
        assert_eq!(max_rate(&points, 0), None);
        assert_eq!(max_rate(&points, 9), None);
        assert_eq!(max_rate(&points, 10), Some(50.0));
        // Halfway from (10, 50) to (100, 10).
        assert_eq!(max_rate(&points, 55), Some(30.0));
        assert_eq!(max_rate(&points, 100), Some(10.0));
        assert_eq!(max_rate(&points, 500), Some(10.0));
        assert_eq!(max_rate(&points, 5000), Some(10.0));
        assert_eq!(max_rate(&[], 5), None);
    }

    /// Info with the given account headers; containers hold 5 objects.
    struct Info(http::HeaderMap);
    impl InfoLookup for Info {
        fn account_info<'a>(
            &'a self,
            _: &'a crate::service::Env,
            _: &'a str,
        ) -> BoxFuture<'a, crate::info::AccountInfo> {
            Box::pin(async { crate::info::AccountInfo::from_headers(204, &self.0) })
        }
        fn container_info<'a>(
            &'a self,
            _: &'a crate::service::Env,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, crate::info::ContainerInfo> {
            let mut h = http::HeaderMap::new();
            h.insert("x-container-object-count", HeaderValue::from_static("5"));
            Box::pin(async move { crate::info::ContainerInfo::from_headers(204, &h) })
        }
    }

    struct Ok200;
    impl Service for Ok200 {
        fn call(&self, _: Req) -> BoxFuture<'_, Resp> {
            Box::pin(async { error_response(StatusCode::OK, Some("")) })
        }
    }

    fn with_sysmeta(config: RateLimitConfig, global: Option<&'static str>) -> RateLimit {
        let mut h = http::HeaderMap::new();
        if let Some(v) = global {
            h.insert(
                "x-account-sysmeta-global-write-ratelimit",
                HeaderValue::from_static(v),
            );
        }
        RateLimit::new(Arc::new(Ok200), Arc::new(Info(h)), config)
    }

    async fn status(rl: &RateLimit, method: Method, path: &str) -> (u16, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(apus_http::empty())
            .unwrap();
        let resp = rl.call(req).await;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A rate so low (one per 100 s) that the second request would wait
    /// far past the one-second max sleep, however slow the machine.
    fn strict() -> RateLimitConfig {
        RateLimitConfig {
            max_sleep_time_seconds: 1.0,
            ..RateLimitConfig::default()
        }
    }

    #[tokio::test]
    async fn an_accounts_global_write_rate_limits_all_its_writes() {
        let rl = with_sysmeta(strict(), Some("0.01"));
        assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_a/c/o").await.0, 200);
        assert_eq!(
            status(&rl, Method::POST, "/v1/AUTH_a/other/o2").await,
            (498, "Slow down".to_string())
        );
        assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_a/c").await.0, 498);
        // Reads are not writes; another account has its own ledger.
        assert_eq!(status(&rl, Method::GET, "/v1/AUTH_a/c/o").await.0, 200);
        assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_b/c/o").await.0, 200);
        // Paths that are not the API's pass.
        assert_eq!(status(&rl, Method::PUT, "/v2/AUTH_a/c/o").await.0, 200);
        assert_eq!(status(&rl, Method::PUT, "/info").await.0, 200);
    }

    #[tokio::test]
    async fn whitelisted_accounts_pass_and_blacklisted_ones_get_497() {
        let config = RateLimitConfig {
            container_ratelimits: vec![(1, 0.01)],
            ..strict()
        };
        let rl = with_sysmeta(config.clone(), Some("WHITELIST"));
        for _ in 0..3 {
            assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_a/c/o").await.0, 200);
        }
        let rl = with_sysmeta(config.clone(), None);
        assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_a/c/o").await.0, 200);
        assert_eq!(status(&rl, Method::PUT, "/v1/AUTH_a/c/o").await.0, 498);
        let rl = with_sysmeta(config, Some("BLACKLIST"));
        assert_eq!(
            status(&rl, Method::GET, "/v1/AUTH_a").await,
            (497, "Your account has been blacklisted".to_string())
        );
    }

    fn limiter(config: RateLimitConfig) -> RateLimit {
        with_sysmeta(config, None)
    }

    #[test]
    fn slots_are_spaced_by_the_rate_and_refused_past_the_max_sleep() {
        let rl = limiter(RateLimitConfig {
            max_sleep_time_seconds: 1.0,
            ..RateLimitConfig::default()
        });
        let now = 1_000_000;
        // 10 per second: each slot 100 ticks after the last.
        let waits: Vec<_> = (0..10)
            .map(|_| rl.book("k", 10.0, now).map(|d| d.as_millis()))
            .collect();
        let want: Vec<Result<u128, MaxSleepHit>> = (0..10).map(|i| Ok(i * 100)).collect();
        assert_eq!(waits, want);
        // The next would wait a whole second: refused, and not booked.
        assert_eq!(rl.book("k", 10.0, now), Err(MaxSleepHit { wait: 1.0 }));
        assert_eq!(rl.book("k", 10.0, now), Err(MaxSleepHit { wait: 1.0 }));
        // Half a second later there is room again.
        assert_eq!(
            rl.book("k", 10.0, now + 500),
            Ok(Duration::from_millis(500))
        );
        // Other keys are independent; a long-idle key starts afresh.
        assert_eq!(rl.book("other", 10.0, now), Ok(Duration::ZERO));
        assert_eq!(rl.book("k", 10.0, now + 60_000), Ok(Duration::ZERO));
    }

    #[test]
    fn the_ledger_stays_bounded() {
        let rl = limiter(RateLimitConfig::default());
        let now = 1_000_000;
        for i in 0..MAX_TRACKED {
            assert!(rl.book(&format!("k{i}"), 1.0, now).is_ok());
        }
        // Full of fresh keys: a new one is not tracked (not limited).
        assert_eq!(rl.book("new", 1.0, now), Ok(Duration::ZERO));
        assert_eq!(rl.book("new", 1.0, now), Ok(Duration::ZERO));
        assert_eq!(rl.ledger.lock().unwrap().next_free.len(), MAX_TRACKED);
        // Once the old ones are stale they make room.
        assert_eq!(rl.book("new", 1.0, now + 10_000), Ok(Duration::ZERO));
        assert_eq!(
            rl.book("new", 1.0, now + 10_000),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(rl.ledger.lock().unwrap().next_free.len(), 1);
    }
}
