//! The REST server: routes Kubernetes API paths to the verbs, negotiates content types,
//! streams watches, applies fault injection, and records every request in the audit log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

use super::api::{Propagation, Subresource};
use super::auth;
use super::cluster::Shared;
use super::controllers::reconcile_after_write;
use super::error::{ApiError, ApiResult};
use super::patch::PatchKind;
use super::registry::{ResourceKey, ResourceType};
use super::selector::Selector;
use super::state::{RequestRecord, State};
use super::store::{EventType, WatchEvent};

type ResponseBody = BoxBody<Bytes, Infallible>;
/// Largest request body accepted (objects are small; this stops runaway clients).
const MAX_BODY: usize = 64 << 20;

/// Accepts connections until `stopped` flips.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), stopped.clone(), req));
            // Connection errors (client went away) concern only that connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// A parsed request path.
#[derive(Debug, PartialEq)]
enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList { group: String, version: String },
    Resource(ResourcePath),
    ClaimData { namespace: String, claim: String },
    OpenApiV3Root,
    OpenApiV3(String),
    NotFound,
}

#[derive(Debug, PartialEq)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::ResourceList { group: String::new(), version: version.to_string() },
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::ResourceList { group: group.to_string(), version: version.to_string() },
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["sim", "v1", "namespaces", ns, "persistentvolumeclaims", claim, "data"] => {
            Route::ClaimData { namespace: ns.to_string(), claim: claim.to_string() }
        }
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let path = |namespace: Option<&str>, parts: &[&str]| {
        if parts.is_empty() || parts.len() > 3 {
            return Route::NotFound;
        }
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.map(str::to_string),
            plural: parts[0].to_string(),
            name: parts.get(1).map(|s| s.to_string()),
            subresource: parts.get(2).map(|s| s.to_string()),
        })
    };
    match rest {
        // `namespaces/NAME` and `namespaces/NAME/status|finalize` address the Namespace itself.
        ["namespaces", _] | ["namespaces", _, "status" | "finalize"] => path(None, rest),
        ["namespaces", ns, parts @ ..] => path(Some(ns), parts),
        parts => path(None, parts),
    }
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: u16, body: &Value) -> Response<ResponseBody> {
    bytes_response(code, "application/json", Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

fn bytes_response(code: u16, content_type: &str, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let retry_after = (error.code == 429).then_some(1);
    error_response_retry_after(error, retry_after)
}

/// An error answer; with `retry_after` (seconds), a `Retry-After` header as the API
/// server sends with 429 (and sometimes 503).
fn error_response_retry_after(error: &ApiError, retry_after: Option<u64>) -> Response<ResponseBody> {
    let mut response = json_response(error.code, &error.to_status());
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(seconds));
    }
    response
}

/// The answer to a request a fault rule fails.
fn injected_response(error: &ApiError, faults: &FaultDecision) -> Response<ResponseBody> {
    match faults.retry_after {
        Some(seconds) => error_response_retry_after(error, Some(seconds)),
        None => error_response(error),
    }
}

/// What the request does, for faults and the audit log.
struct Intent {
    verb: &'static str,
    watch: bool,
}

fn intent(method: &Method, path: &ResourcePath, params: &HashMap<String, String>) -> ApiResult<Intent> {
    let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), path.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (method, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {method}"
            )));
        }
    };
    Ok(Intent { verb, watch })
}

async fn handle(
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let params = query_params(req.uri().query());
    let authorization = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let identity = match auth::authenticate(&shared.lock(), authorization) {
        Ok(identity) => identity,
        Err(e) => return Ok(error_response(&e)),
    };
    // Discovery, version and health are open to every authenticated user (as the
    // `system:discovery` and `system:public-info-viewer` roles make them).
    let response = match route(req.uri().path()) {
        Route::Version => json_response(200, &version()),
        Route::Health => bytes_response(200, "text/plain", Bytes::from_static(b"ok")),
        Route::CoreVersions => json_response(200, &shared.lock().registry.api_versions()),
        Route::Groups => json_response(200, &shared.lock().registry.api_group_list()),
        Route::Group(group) => match shared.lock().registry.api_group(&group) {
            Some(body) => json_response(200, &body),
            None => error_response(&ApiError::not_found("", "groups", &group)),
        },
        Route::ResourceList { group, version } => match shared.lock().registry.resource_list(&group, &version) {
            Some(body) => json_response(200, &body),
            None => error_response(&ApiError::not_found(&group, "versions", &version)),
        },
        Route::OpenApiV3Root => json_response(200, &shared.lock().registry.openapi_v3_root()),
        Route::OpenApiV3(path) => match shared.lock().registry.openapi_v3_document(&path) {
            Some(body) => json_response(200, &body),
            None => error_response(&ApiError::not_found("", "openapi", &path)),
        },
        Route::ClaimData { namespace, claim } => claim_data(&shared, req, &namespace, &claim).await,
        Route::Resource(path) if path.plural == "pods" && path.subresource.as_deref() == Some("exec") => {
            exec_request(&shared, &identity, req, path).await
        }
        Route::Resource(path)
            if path.plural == "serviceaccounts"
                && path.subresource.as_deref() == Some("token")
                && req.method() == Method::POST =>
        {
            token_request(&shared, &identity, &path)
        }
        Route::Resource(path) => resource_request(&shared, stopped, &identity, req, path, params).await,
        Route::NotFound => error_response(&ApiError::no_route()),
    };
    Ok(response)
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-drplan-sim", "gitCommit": "sim",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

/// Reads the body, with the request's Accept and Content-Type headers.
async fn read_body(req: Request<Incoming>) -> ApiResult<(String, String, Bytes)> {
    let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    Ok((accept, content_type, body))
}

fn parse_json(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::unsupported_media_type(media));
    }
    if media.ends_with("yaml") {
        let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let parsed = crate::lang::yaml::parse_str("request", text, crate::lang::yaml::Limits::MANIFEST)
            .map_err(|d| ApiError::bad_request(d.message))?;
        return Ok(parsed.documents.first().map(|d| d.to_json()).unwrap_or(Value::Null));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

async fn claim_data(shared: &Shared, req: Request<Incoming>, ns: &str, claim: &str) -> Response<ResponseBody> {
    let method = req.method().clone();
    let result = match method {
        Method::GET => shared
            .lock()
            .read_claim_data(ns, claim)
            .map(|bytes| bytes_response(200, "application/octet-stream", Bytes::from(bytes))),
        Method::PUT => match read_body(req).await {
            Ok((_, _, body)) => shared.lock().write_claim_data(ns, claim, body.to_vec()).map(|()| {
                json_response(200, &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}))
            }),
            Err(e) => Err(e),
        },
        other => Err(ApiError::method_not_allowed(format!("{other} is not supported on volume data"))),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Faults matching the request: latency to add, an error to answer with, watch cut-offs.
#[derive(Default)]
struct FaultDecision {
    latency: Duration,
    response_latency: Duration,
    error: Option<ApiError>,
    cut_after_events: Option<usize>,
    cut_after: Option<Duration>,
    /// `Retry-After` seconds of the injected error.
    retry_after: Option<u64>,
}

fn decide_faults(state: &mut State, verb: &str, resource: &str) -> FaultDecision {
    let mut decision = FaultDecision::default();
    let State { config, rng, .. } = state;
    for rule in config.faults.rules.iter_mut().filter(|r| r.matches(verb, resource)) {
        decision.latency += rule.latency.unwrap_or_default();
        decision.response_latency += rule.response_latency.unwrap_or_default();
        decision.cut_after_events = decision.cut_after_events.or(rule.watch_cut_after_events);
        decision.cut_after = decision.cut_after.or(rule.watch_cut_after);
        if decision.error.is_none()
            && let Some(code) = rule.fires(rng)
        {
            decision.error = Some(ApiError::injected(code));
            decision.retry_after = rule.retry_after.map(whole_seconds_up);
        }
    }
    decision
}

/// `Retry-After` carries whole seconds; a fraction rounds up so a client never comes back early.
fn whole_seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

async fn resource_request(
    shared: &Arc<Shared>,
    stopped: watch::Receiver<bool>,
    identity: &auth::Identity,
    req: Request<Incoming>,
    path: ResourcePath,
    params: HashMap<String, String>,
) -> Response<ResponseBody> {
    let intent = match intent(req.method(), &path, &params) {
        Ok(intent) => intent,
        Err(e) => return error_response(&e),
    };
    if let Some(denied) = refusal(shared, identity, &path, intent.verb, &params) {
        return denied;
    }
    let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let faults = decide_faults(&mut shared.lock(), intent.verb, &path.plural);
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let response = match faults.error.clone() {
        Some(error) => injected_response(&error, &faults),
        None if intent.watch => start_watch(shared, stopped, &path, &params, &faults, &accept),
        None => match read_body(req).await {
            Ok((accept, content_type, body)) => {
                let request = VerbRequest {
                    path: &path,
                    params: &params,
                    verb: intent.verb,
                    accept: &accept,
                    content_type: &content_type,
                };
                serve_verb(shared, &request, &body)
            }
            Err(e) => error_response(&e),
        },
    };
    audit(shared, &path, intent.verb, response.status().as_u16());
    if !faults.response_latency.is_zero() && !intent.watch {
        tokio::time::sleep(faults.response_latency).await;
    }
    response
}

/// `pods/NAME/exec`: audited as `create` (as the API server does); faults delay or fail it,
/// and a response latency holds the answer back after the command ran.
async fn exec_request(
    shared: &Arc<Shared>,
    identity: &auth::Identity,
    req: Request<Incoming>,
    path: ResourcePath,
) -> Response<ResponseBody> {
    // Kubernetes (1.30+) authorises an exec over WebSocket as `create` on `pods/exec`.
    if let Some(denied) = refusal(shared, identity, &path, "create", &HashMap::new()) {
        return denied;
    }
    let faults = decide_faults(&mut shared.lock(), "create", &path.plural);
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let (ns, name) = (path.namespace.clone().unwrap_or_default(), path.name.clone().unwrap_or_default());
    let response = match faults.error.clone() {
        Some(error) => injected_response(&error, &faults),
        None => match super::exec::serve(shared, req, &ns, &name).await {
            Ok(upgrade) => upgrade.map(|()| Full::new(Bytes::new()).boxed()),
            Err(e) => error_response(&e),
        },
    };
    audit(shared, &path, "create", response.status().as_u16());
    if !faults.response_latency.is_zero() {
        tokio::time::sleep(faults.response_latency).await;
    }
    response
}

/// Checks a resource request against RBAC: the 403 answer (audited) when refused.
fn refusal(
    shared: &Shared,
    identity: &auth::Identity,
    path: &ResourcePath,
    verb: &str,
    params: &HashMap<String, String>,
) -> Option<Response<ResponseBody>> {
    if *identity == auth::Identity::Admin {
        return None;
    }
    let named_by_selector = matches!(verb, "list" | "watch").then(|| name_in_field_selector(params)).flatten();
    let request = auth::Attributes {
        verb,
        group: &path.group,
        resource: &path.plural,
        subresource: path.subresource.as_deref().unwrap_or_default(),
        namespace: path.namespace.as_deref().unwrap_or_default(),
        name: path.name.as_deref().or(named_by_selector.as_deref()).unwrap_or_default(),
    };
    let decided = auth::authorize(&shared.lock(), identity, &request);
    decided.err().map(|e| {
        audit(shared, path, verb, e.code);
        error_response(&e)
    })
}

/// `metadata.name=X` in a list's field selector: the API server takes it as the
/// request's object name, so `resourceNames` rules can allow the list or watch.
fn name_in_field_selector(params: &HashMap<String, String>) -> Option<String> {
    let selector = params.get("fieldSelector")?;
    selector.split(',').find_map(|term| {
        let (key, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (key.trim() == "metadata.name").then(|| value.trim().to_string())
    })
}

/// `POST .../serviceaccounts/NAME/token` (TokenRequest, what `kubectl create token`
/// sends): a bearer token acting as that ServiceAccount.
fn token_request(shared: &Shared, identity: &auth::Identity, path: &ResourcePath) -> Response<ResponseBody> {
    if let Some(denied) = refusal(shared, identity, path, "create", &HashMap::new()) {
        return denied;
    }
    let (ns, name) = (path.namespace.clone().unwrap_or_default(), path.name.clone().unwrap_or_default());
    let issued = {
        let mut state = shared.lock();
        let now = state.now();
        let expires = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
        let times = (super::clock::format_time(now), super::clock::format_time(expires));
        auth::issue_token(&mut state, &ns, &name).map(|token| (token, times))
    };
    let response = match issued {
        Ok((token, (now, expires))) => json_response(
            201,
            &json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": { "name": name, "namespace": ns, "creationTimestamp": now },
                "spec": { "audiences": ["https://kubernetes.default.svc"] },
                "status": { "token": token, "expirationTimestamp": expires },
            }),
        ),
        Err(e) => error_response(&e),
    };
    audit(shared, path, "create", response.status().as_u16());
    response
}

fn audit(shared: &Shared, path: &ResourcePath, verb: &str, code: u16) {
    let mut state = shared.lock();
    let record = RequestRecord {
        seq: state.requests.len() as u64 + 1,
        time: state.now_text(),
        verb: verb.to_string(),
        group: path.group.clone(),
        resource: path.plural.clone(),
        namespace: path.namespace.clone().unwrap_or_default(),
        name: path.name.clone().unwrap_or_default(),
        subresource: path.subresource.clone().unwrap_or_default(),
        code,
    };
    state.requests.push(record);
}

fn resolve(state: &State, path: &ResourcePath) -> ApiResult<ResourceType> {
    let rt =
        state.registry.by_path(&path.group, &path.version, &path.plural).cloned().ok_or_else(ApiError::no_route)?;
    if path.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::not_found(&path.group, &path.plural, path.name.as_deref().unwrap_or_default()));
    }
    Ok(rt)
}

fn selectors(params: &HashMap<String, String>) -> ApiResult<(Selector, Selector)> {
    let labels = Selector::parse_labels(params.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let fields = Selector::parse_fields(params.get("fieldSelector").map(String::as_str).unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

/// A resource request, parsed.
struct VerbRequest<'a> {
    path: &'a ResourcePath,
    params: &'a HashMap<String, String>,
    verb: &'a str,
    accept: &'a str,
    content_type: &'a str,
}

fn serve_verb(shared: &Shared, request: &VerbRequest<'_>, body: &[u8]) -> Response<ResponseBody> {
    let (path, params, verb) = (request.path, request.params, request.verb);
    let mut state = shared.lock();
    let rt = match resolve(&state, path) {
        Ok(rt) => rt,
        Err(e) => return error_response(&e),
    };
    let as_table = super::table::wants_table(request.accept);
    if verb == "list" && !as_table {
        return list_response(state, &rt, path, params);
    }
    if as_table && matches!(verb, "list" | "get") && path.subresource.is_none() {
        return table_response(&state, &rt, path, params, verb);
    }
    let result = run_verb(&mut state, &rt, path, params, verb, request.content_type, body);
    if verb != "get" && result.is_ok() {
        reconcile_after_write(&mut state);
    }
    match result {
        Ok((code, object)) => json_response(code, &object),
        Err(e) => error_response(&e),
    }
}

/// `kubectl get` output: the listed or fetched objects as a Table.
fn table_response(
    state: &State,
    rt: &ResourceType,
    path: &ResourcePath,
    params: &HashMap<String, String>,
    verb: &str,
) -> Response<ResponseBody> {
    let items = if verb == "get" {
        let name = path.name.as_deref().unwrap_or_default();
        match state.get_object(rt, path.namespace.as_deref().unwrap_or_default(), name, Subresource::Main) {
            Ok(object) => vec![object],
            Err(e) => return error_response(&e),
        }
    } else {
        match selectors(params) {
            Ok((labels, fields)) => state.list_objects(rt, path.namespace.as_deref(), &labels, &fields).0,
            Err(e) => return error_response(&e),
        }
    };
    json_response(200, &super::table::table(rt, &items, state.store.resource_version(), state.now()))
}

fn run_verb(
    state: &mut State,
    rt: &ResourceType,
    path: &ResourcePath,
    params: &HashMap<String, String>,
    verb: &str,
    content_type: &str,
    body: &[u8],
) -> ApiResult<(u16, Value)> {
    let ns = path.namespace.as_deref().unwrap_or_default();
    let name = path.name.as_deref().unwrap_or_default();
    let sub = Subresource::parse(path.subresource.as_deref())?;
    let dry_run = params.contains_key("dryRun");
    match verb {
        "get" => state.get_object(rt, ns, name, sub).map(|o| (200, (*o).clone())),
        "create" => {
            let object = parse_json(content_type, body)?;
            if dry_run {
                return Ok((201, object));
            }
            state.create_object(rt, ns, object).map(|o| (201, (*o).clone()))
        }
        "update" => {
            let object = parse_json(content_type, body)?;
            state.update_object(rt, ns, name, object, sub).map(|o| (200, (*o).clone()))
        }
        "patch" => {
            let kind = PatchKind::from_content_type(content_type)?;
            let patch = parse_json(if kind == PatchKind::Apply { content_type } else { "application/json" }, body)?;
            state.patch_object(rt, ns, name, kind, &patch, sub).map(|o| (200, (*o).clone()))
        }
        "delete" => {
            let (propagation, uid) = delete_options(params, body)?;
            state.delete_with(rt, ns, name, propagation, uid.as_deref()).map(|o| (200, (*o).clone()))
        }
        "deletecollection" => {
            let (propagation, _) = delete_options(params, body)?;
            let (labels, fields) = selectors(params)?;
            let (items, _) = state.list_objects(rt, path.namespace.as_deref(), &labels, &fields);
            let mut deleted = Vec::new();
            for item in items {
                let (item_ns, item_name) = super::store::identity(&item);
                deleted.push((*state.delete_with(rt, &item_ns, &item_name, propagation, None)?).clone());
            }
            Ok((
                200,
                json!({ "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted }),
            ))
        }
        other => Err(ApiError::method_not_allowed(format!("verb {other} is not supported"))),
    }
}

fn delete_options(params: &HashMap<String, String>, body: &[u8]) -> ApiResult<(Propagation, Option<String>)> {
    let options: Value = if body.is_empty() { Value::Null } else { parse_json("application/json", body)? };
    let policy = params
        .get("propagationPolicy")
        .cloned()
        .or_else(|| options["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| (options["orphanDependents"] == true).then(|| "Orphan".to_string()));
    let propagation = policy.as_deref().map(Propagation::parse).transpose()?.unwrap_or_default();
    Ok((propagation, options["preconditions"]["uid"].as_str().map(str::to_string)))
}

/// Lists are assembled from the stored encodings under the lock (reference-counted, no
/// copies) and concatenated after it.
fn list_response(
    state: MutexGuard<'_, State>,
    rt: &ResourceType,
    path: &ResourcePath,
    params: &HashMap<String, String>,
) -> Response<ResponseBody> {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let (items, rv) = state.list_encoded(rt, path.namespace.as_deref(), &labels, &fields);
    drop(state);
    let header = json!({ "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": { "resourceVersion": rv.to_string() } });
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.reserve(items.iter().map(|i| i.len() + 1).sum::<usize>() + 16);
    out.pop(); // reopen the object to append `items`
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    bytes_response(200, "application/json", Bytes::from(out))
}

/// A watch: replays history after `resourceVersion` (or the current objects as ADDED), then
/// follows live changes until the client leaves, `timeoutSeconds` passes, or a fault cuts it.
fn start_watch(
    shared: &Arc<Shared>,
    stopped: watch::Receiver<bool>,
    path: &ResourcePath,
    params: &HashMap<String, String>,
    faults: &FaultDecision,
    accept: &str,
) -> Response<ResponseBody> {
    let state = shared.lock();
    let rt = match resolve(&state, path) {
        Ok(rt) => rt,
        Err(e) => return error_response(&e),
    };
    let encoding = if super::table::wants_table(accept) {
        WatchEncoding::Table(Box::new(rt.clone()), shared.clock.clone())
    } else {
        WatchEncoding::Object
    };
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let from = params.get("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let live = match from {
        Some(rv) => match rv
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))
            .and_then(|rv| state.store.watch_from(&rt.key(), rv).map_err(ApiError::expired))
        {
            Ok((replay, live)) => {
                initial.extend(
                    replay
                        .iter()
                        .filter(|e| in_scope(e, path, &labels, &fields))
                        .map(|e| encoding.line(e.event_type.as_str(), &e.object)),
                );
                Some(live)
            }
            Err(e) => {
                initial.push(watch_line("ERROR", &e.to_status()));
                None
            }
        },
        None => {
            let (items, rv) = state.list_objects(&rt, path.namespace.as_deref(), &labels, &fields);
            initial.extend(items.iter().map(|o| encoding.line("ADDED", o)));
            state.store.watch_from(&rt.key(), rv).ok().map(|(_, live)| live)
        }
    };
    drop(state);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let limit = WatchLimit {
        timeout: faults.cut_after.map_or(timeout, |cut| cut.min(timeout)),
        max_events: faults.cut_after_events,
    };
    tokio::spawn(pump_watch(
        tx,
        initial,
        live,
        WatchFilter { key: rt.key(), labels, fields, namespace: path.namespace.clone(), encoding },
        limit,
        stopped,
    ));
    let mut response = Response::new(ChannelBody { rx }.boxed());
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

struct WatchFilter {
    key: ResourceKey,
    labels: Selector,
    fields: Selector,
    namespace: Option<String>,
    encoding: WatchEncoding,
}

/// How watch events carry objects: as themselves, or as one-row Tables (`kubectl get -w`).
enum WatchEncoding {
    Object,
    Table(Box<ResourceType>, super::clock::SimClock),
}

impl WatchEncoding {
    fn line(&self, event_type: &str, object: &Value) -> Bytes {
        match self {
            WatchEncoding::Table(rt, clock) => {
                let rv = object["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse().ok()).unwrap_or(0);
                let table = super::table::table(rt, &[Arc::new(object.clone())], rv, clock.now());
                watch_line(event_type, &table)
            }
            WatchEncoding::Object => watch_line(event_type, object),
        }
    }
}

struct WatchLimit {
    timeout: Duration,
    max_events: Option<usize>,
}

fn in_scope(event: &WatchEvent, path: &ResourcePath, labels: &Selector, fields: &Selector) -> bool {
    let ns_ok = path.namespace.as_deref().is_none_or(|ns| event.object["metadata"]["namespace"] == ns);
    ns_ok && labels.matches_labels(&event.object) && fields.matches_fields(&event.object)
}

fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": event_type, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn pump_watch(
    tx: mpsc::Sender<Bytes>,
    initial: Vec<Bytes>,
    live: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    filter: WatchFilter,
    limit: WatchLimit,
    mut stopped: watch::Receiver<bool>,
) {
    let mut sent = 0usize;
    let cut = |sent: usize| limit.max_events.is_some_and(|max| sent >= max);
    for line in initial {
        if cut(sent) || tx.send(line).await.is_err() {
            return;
        }
        sent += 1;
    }
    let Some(mut live) = live else { return };
    let deadline = tokio::time::sleep(limit.timeout);
    tokio::pin!(deadline);
    loop {
        if cut(sent) {
            return;
        }
        let event = tokio::select! {
            event = live.recv() => event,
            _ = &mut deadline => return,
            _ = stopped.changed() => return,
            _ = tx.closed() => return,
        };
        // A lagging watcher is closed; the client re-watches from its last resourceVersion.
        let Ok(event) = event else { return };
        let ns_ok = filter.namespace.as_deref().is_none_or(|ns| event.object["metadata"]["namespace"] == ns);
        if event.resource != filter.key
            || !ns_ok
            || !filter.labels.matches_labels(&event.object)
            || !filter.fields.matches_fields(&event.object)
        {
            continue;
        }
        let event_type = if event.event_type == EventType::Deleted { "DELETED" } else { event.event_type.as_str() };
        if tx.send(filter.encoding.line(event_type, &event.object)).await.is_err() {
            return;
        }
        sent += 1;
    }
}

/// A response body fed by a channel: one chunk per watch event.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_core_named_group_and_namespace_paths() {
        assert_eq!(route("/api/v1"), Route::ResourceList { group: "".into(), version: "v1".into() });
        let Route::Resource(p) = route("/apis/apps/v1/namespaces/db/statefulsets/cassandra/scale") else { panic!() };
        assert_eq!(
            (p.namespace.as_deref(), p.plural.as_str(), p.name.as_deref(), p.subresource.as_deref()),
            (Some("db"), "statefulsets", Some("cassandra"), Some("scale"))
        );
        let Route::Resource(p) = route("/api/v1/namespaces/db") else { panic!() };
        assert_eq!((p.namespace, p.plural.as_str(), p.name.as_deref()), (None, "namespaces", Some("db")));
        let Route::Resource(p) = route("/api/v1/persistentvolumes") else { panic!() };
        assert_eq!((p.namespace, p.name), (None, None));
        assert_eq!(route("/nope"), Route::NotFound);
        assert_eq!(
            route("/sim/v1/namespaces/db/persistentvolumeclaims/c/data"),
            Route::ClaimData { namespace: "db".into(), claim: "c".into() }
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let params = query_params(Some("labelSelector=app%3Dcassandra%2Ctier+in+%28db%29&watch=1"));
        assert_eq!(params["labelSelector"], "app=cassandra,tier in (db)");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
