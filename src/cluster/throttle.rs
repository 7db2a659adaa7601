//! Client-side rate limiting of every request to an API server, and respect for the
//! server's own throttling: a token bucket like client-go's (`QPS`/`Burst`, the limiter
//! kubectl and controllers use), and a 429 answered with `Retry-After` waited out before
//! the request is sent again, as client-go does. Both sit in one tower layer on the
//! `kube::Client`, so watches, lists and writes of every step pass through them.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests per second and burst allowed to one API server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns client-side limiting off.
    pub qps: f64,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// The kubelet's defaults (`kubeAPIQPS: 50`, `kubeAPIBurst: 100`): one busy client an
    /// API server is configured to expect; client-go's bare 5/10 would make a fleet
    /// restore wait on the client, and no limit at all hammers the server.
    pub const DEFAULT: RateLimit = RateLimit { qps: 50.0, burst: 100 };

    fn is_unlimited(&self) -> bool {
        self.qps.is_nan() || self.qps <= 0.0 || self.qps.is_infinite()
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::DEFAULT
    }
}

/// The longest `Retry-After` waited out in the client; a server asking for longer gets
/// its 429 passed to the step (which fails or retries it as a step).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Retries of one request after 429s (client-go's `maxRetries`).
pub const MAX_THROTTLED_RETRIES: u32 = 10;

/// A token bucket: `burst` tokens, refilled at `qps` a second. Taking a token never fails;
/// it says how long to wait first (a reservation, as golang.org/x/time/rate, which
/// client-go's limiter is built on), so waiting requests go in the order they asked.
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<BucketState>,
}

struct BucketState {
    /// May go negative: tokens promised to requests still waiting.
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> TokenBucket {
        let state = BucketState { tokens: f64::from(limit.burst.max(1)), refilled_at: Instant::now() };
        TokenBucket { limit, state: Mutex::new(state) }
    }

    /// Takes one token at `now`; returns how long its holder must wait before sending.
    pub fn reserve(&self, now: Instant) -> Duration {
        if self.limit.is_unlimited() {
            return Duration::ZERO;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(self.limit.burst.max(1));
        let elapsed = now.saturating_duration_since(state.refilled_at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.limit.qps).min(burst);
        state.refilled_at = state.refilled_at.max(now);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-state.tokens / self.limit.qps) }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The layer: one bucket per client (per API server).
#[derive(Clone)]
pub struct ThrottleLayer {
    bucket: Arc<TokenBucket>,
}

impl ThrottleLayer {
    pub fn new(limit: RateLimit) -> ThrottleLayer {
        ThrottleLayer { bucket: Arc::new(TokenBucket::new(limit)) }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle { inner: Arc::new(tokio::sync::Mutex::new(inner)), bucket: self.bucket.clone() }
    }
}

/// The service: takes a token before every request (retries included) and waits out a
/// 429's `Retry-After` before sending the request again.
pub struct Throttle<S> {
    /// Shared so the returned future can send retries; held only while a request is
    /// handed over, never while its answer is awaited.
    inner: Arc<tokio::sync::Mutex<S>>,
    bucket: Arc<TokenBucket>,
}

impl<S, B> Service<Request<Body>> for Throttle<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<B>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service's readiness is awaited per request, under the lock.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (inner, bucket) = (self.inner.clone(), self.bucket.clone());
        Box::pin(async move {
            let mut request = request;
            let mut retries = 0;
            loop {
                let again = if retries < MAX_THROTTLED_RETRIES { clone_request(&request) } else { None };
                bucket.acquire().await;
                let sent = {
                    let mut service = inner.lock().await;
                    poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
                    service.call(request)
                };
                let response = sent.await.map_err(Into::into)?;
                match (server_asks_to_wait(&response), again) {
                    (Some(wait), Some(again)) => {
                        tokio::time::sleep(wait).await;
                        request = again;
                        retries += 1;
                    }
                    _ => return Ok(response),
                }
            }
        })
    }
}

/// How long a 429 asks the client to wait, when it says and the wait is bounded.
fn server_asks_to_wait<B>(response: &Response<B>) -> Option<Duration> {
    if response.status() != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let text = response.headers().get(http::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after_seconds(text).filter(|wait| *wait <= MAX_RETRY_AFTER)
}

/// `Retry-After` in whole seconds (the form API servers send; an HTTP date is not).
pub fn retry_after_seconds(text: &str) -> Option<Duration> {
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A copy of a request whose body is in memory (every request kube's `Api` makes).
fn clone_request(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(qps: f64, burst: u32) -> (TokenBucket, Instant) {
        let bucket = TokenBucket::new(RateLimit { qps, burst });
        let start = bucket.state.lock().unwrap().refilled_at;
        (bucket, start)
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let (bucket, start) = bucket(10.0, 5);
        let waits: Vec<Duration> = (0..8).map(|_| bucket.reserve(start)).collect();
        assert!(waits[..5].iter().all(Duration::is_zero), "{waits:?}");
        let millis: Vec<u128> = waits[5..].iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 300], "each request past the burst waits one more 1/qps");
    }

    #[test]
    fn tokens_come_back_with_time_up_to_the_burst() {
        let (bucket, start) = bucket(10.0, 2);
        assert!(bucket.reserve(start).is_zero());
        assert!(bucket.reserve(start).is_zero());
        assert_eq!(bucket.reserve(start).as_millis(), 100);
        // A long quiet spell refills only up to the burst.
        let later = start + Duration::from_secs(60);
        assert!(bucket.reserve(later).is_zero());
        assert!(bucket.reserve(later).is_zero());
        assert!(!bucket.reserve(later).is_zero());
    }

    #[test]
    fn qps_zero_means_no_client_side_limit() {
        let (bucket, start) = bucket(0.0, 1);
        assert!((0..1000).all(|_| bucket.reserve(start).is_zero()));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_bounded() {
        let answer = |status: u16, header: Option<&str>| {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(h) = header {
                response.headers_mut().insert(http::header::RETRY_AFTER, h.parse().unwrap());
            }
            server_asks_to_wait(&response)
        };
        assert_eq!(answer(429, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(answer(429, None), None, "no header: the step's own retry decides");
        assert_eq!(answer(429, Some("3600")), None, "longer than the bound: passed to the step");
        assert_eq!(answer(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(answer(500, Some("2")), None);
    }
}
