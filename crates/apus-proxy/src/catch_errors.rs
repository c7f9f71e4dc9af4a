//! The outermost stage (Swift's `catch_errors` and `proxy-logging`): gives
//! each request its transaction id, turns a panic below into a 500 instead
//! of a dropped connection, and logs one line per request, with the reason
//! of an error answer (see [`ErrorDetail`]): the one place errors are
//! logged.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use http::{HeaderValue, StatusCode};

use crate::service::{
    env_mut, error_response, BoxFuture, ErrorDetail, RelativeLocation, Req, Resp, Service,
    SharedService,
};

pub struct CatchErrors {
    next: SharedService,
    /// Distinguishes transaction ids made within the same microsecond.
    counter: AtomicU64,
    /// Per-process random part, so ids from two proxies do not collide.
    salt: u64,
}

impl CatchErrors {
    pub fn new(next: SharedService) -> Self {
        CatchErrors {
            next,
            counter: AtomicU64::new(0),
            salt: process_salt(),
        }
    }

    /// `tx` + 21 hex digits + `-` + the time in 10 hex digits, Swift's shape.
    fn trans_id(&self, extra: Option<&str>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mixed = (self.salt ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & ((1u64 << 52) - 1);
        let low = (now.subsec_nanos() as u64) & 0x1_ffff;
        let mut id = format!(
            "tx{:013x}{:08x}-{:010x}",
            mixed,
            low as u32 ^ (n as u32),
            now.as_secs()
        );
        id.truncate(2 + 21 + 1 + 10);
        if let Some(extra) = extra {
            id.push_str(extra);
        }
        id
    }
}

/// swob's `absolute_location`: a `Location` that is a path gets
/// `http://<Host>` in front, unless the response asked to keep it.
fn absolute_location(resp: &mut Resp, host: Option<&str>) {
    if resp.extensions().get::<RelativeLocation>().is_some() {
        return;
    }
    let Some(host) = host else {
        return;
    };
    let Some(location) = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.starts_with('/'))
    else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&format!("http://{host}{location}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
}

fn process_salt() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes) ^ u64::from(std::process::id())
}

impl Service for CatchErrors {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        let extra = req
            .headers()
            .get("x-trans-id-extra")
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                let s: String = s
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(32)
                    .collect();
                format!("-{s}")
            });
        let trans_id = self.trans_id(extra.as_deref());
        env_mut(&mut req).trans_id = trans_id.clone();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let keep_alive = req
            .headers()
            .get(http::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
        let start = Instant::now();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            let result = AssertUnwindSafe(self.next.call(req)).catch_unwind().await;
            let mut resp = match result {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::error!(%trans_id, %method, %path, "request handler panicked");
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, None)
                }
            };
            absolute_location(&mut resp, host.as_deref());
            if let Ok(v) = HeaderValue::from_str(&trans_id) {
                resp.headers_mut().insert("x-trans-id", v.clone());
                resp.headers_mut().insert("x-openstack-request-id", v);
            }
            if keep_alive && !resp.headers().contains_key(http::header::CONNECTION) {
                // Echoed as Swift's server does for clients that ask.
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    HeaderValue::from_static("keep-alive"),
                );
            }
            let status = resp.status().as_u16();
            let micros = start.elapsed().as_micros() as u64;
            match resp.extensions().get::<ErrorDetail>() {
                // A server error is the operator's business: its reason
                // goes with the request's line, louder.
                Some(ErrorDetail(detail)) if status >= 500 => tracing::warn!(
                    %trans_id, %method, %path, status, micros, %detail, "request"
                ),
                Some(ErrorDetail(detail)) => tracing::info!(
                    %trans_id, %method, %path, status, micros, %detail, "request"
                ),
                None => tracing::info!(%trans_id, %method, %path, status, micros, "request"),
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails;

    impl Service for Fails {
        fn call(&self, _req: Req) -> BoxFuture<'_, Resp> {
            Box::pin(async { error_response(StatusCode::SERVICE_UNAVAILABLE, Some("no quorum")) })
        }
    }

    struct Panics;

    impl Service for Panics {
        fn call(&self, _req: Req) -> BoxFuture<'_, Resp> {
            Box::pin(async { panic!("bug below") })
        }
    }

    #[tokio::test]
    async fn errors_reach_the_log_line_with_their_reason() {
        let outer = CatchErrors::new(std::sync::Arc::new(Fails));
        let resp = outer.call(Req::new(apus_http::empty())).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let detail = resp.extensions().get::<ErrorDetail>().map(|d| d.0.clone());
        assert_eq!(detail.as_deref(), Some("no quorum"));
        assert!(resp.headers().contains_key("x-trans-id"));
        // A panic below is a 500 with Swift's body, not a dropped
        // connection.
        let outer = CatchErrors::new(std::sync::Arc::new(Panics));
        let resp = outer.call(Req::new(apus_http::empty())).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.extensions().get::<ErrorDetail>().map(|d| d.0.as_str()),
            Some("Internal Server Error")
        );
    }
}
