//! The simulated AWS endpoint: one loopback listener for every region and service. The
//! SDK signs each request with SigV4, whose credential scope
//! (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`) says which region and service it
//! is for; the signature itself is not checked (the endpoint is loopback-only and the
//! credentials are dummies). Fault rules of the sim config apply here too, matched with
//! `verb` = the operation name (e.g. `DeleteReplicationConfiguration`, `CreateSnapshot`)
//! and `resource` = the service (`elasticfilesystem`, `ec2`). EC2 answers an injected
//! 429 the way it throttles: HTTP 503 with `RequestLimitExceeded`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::AwsWorld;
use super::ec2;
use super::efs;
use super::model::{AwsError, AwsRequest, AwsState};

const MAX_BODY: usize = 1 << 20;

pub async fn serve(listener: TcpListener, world: Arc<AwsWorld>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let world = world.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(world.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Region and service from the SigV4 credential scope.
pub fn scope_of(authorization: &str) -> Option<(String, String)> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    let parts: Vec<&str> = scope.split('/').collect();
    match parts.as_slice() {
        [_, _, region, service, "aws4_request"] => Some((region.to_string(), service.to_string())),
        _ => None,
    }
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    url_form(query.unwrap_or_default())
}

/// `a=b&c=d`, percent-decoded.
pub fn url_form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Answer = Response<Full<Bytes>>;

fn answer(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = "sim-00000000-0000-4000-8000-000000000000".parse() {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// A REST-JSON error: the code in `x-amzn-ErrorType` and in the body, as EFS sends it.
fn json_error(error: &AwsError) -> Answer {
    let body = json!({ "ErrorCode": error.code, "Message": error.message });
    let mut response = answer(error.status, "application/json", serde_json::to_vec(&body).unwrap_or_default());
    if let Ok(value) = error.code.parse() {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

/// Faults for one request: latency before, latency after, an injected error.
struct Faults {
    latency: Duration,
    response_latency: Duration,
    error: Option<AwsError>,
}

fn decide_faults(state: &mut AwsState, operation: &str, service: &str) -> Faults {
    let mut faults = Faults { latency: Duration::ZERO, response_latency: Duration::ZERO, error: None };
    let AwsState { faults: rules, rng, .. } = state;
    for rule in rules.rules.iter_mut().filter(|r| r.matches(operation, service)) {
        faults.latency += rule.latency.unwrap_or_default();
        faults.response_latency += rule.response_latency.unwrap_or_default();
        if faults.error.is_none()
            && let Some(status) = rule.fires(rng)
        {
            faults.error = Some(injected(service, status));
        }
    }
    faults
}

fn injected(service: &str, status: u16) -> AwsError {
    match (service, status) {
        ("ec2", 429) => {
            return AwsError::new(503, "RequestLimitExceeded", "Request limit exceeded. (injected by the sim)");
        }
        ("ec2", 503) => return AwsError::new(503, "Unavailable", "The server is overloaded (injected by the sim)"),
        ("ec2", code) if code >= 500 => {
            return AwsError::new(code, "InternalError", "An internal error has occurred (injected by the sim)");
        }
        _ => {}
    }
    match status {
        429 => AwsError::new(429, "ThrottlingException", "Rate exceeded (injected by the sim)"),
        503 => AwsError::new(503, "ServiceUnavailable", "Service unavailable (injected by the sim)"),
        code => AwsError::new(code, "InternalServerError", "Internal failure (injected by the sim)"),
    }
}

async fn handle(world: Arc<AwsWorld>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let authorization =
        req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some((region, service)) = scope_of(authorization) else {
        let error = AwsError::new(403, "MissingAuthenticationTokenException", "the request is not signed (SigV4)");
        return Ok(json_error(&error));
    };
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = query_params(req.uri().query());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(json_error(&AwsError::bad_request(format!("reading the request body: {e}")))),
    };
    let response = match service.as_str() {
        "elasticfilesystem" => serve_efs(&world, &region, &method, &path, &query, &body).await,
        "ec2" => serve_ec2(&world, &region, &body).await,
        other => {
            let error = AwsError::new(400, "UnknownService", format!("the simulated AWS does not serve `{other}`"));
            json_error(&error)
        }
    };
    Ok(response)
}

/// One call as the sim serves it, whatever the protocol: the fault rules decide on
/// `(operation, service)`; latency before; `call` runs unless a fault answers for it
/// (`error_answer` renders that fault in the protocol's shape); the request is audited;
/// a response latency holds the answer back after the change was made.
async fn served(
    world: &AwsWorld,
    service: &str,
    region: &str,
    operation: &str,
    error_answer: fn(&AwsError) -> Answer,
    call: impl FnOnce(&mut AwsState) -> Answer,
) -> Answer {
    let faults = decide_faults(&mut world.lock(), operation, service);
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let response = match &faults.error {
        Some(error) => error_answer(error),
        None => call(&mut world.lock()),
    };
    let at = world.clock.now();
    world.lock().requests.push(AwsRequest {
        at,
        service: service.into(),
        region: region.to_string(),
        operation: operation.to_string(),
        status: response.status().as_u16(),
    });
    if !faults.response_latency.is_zero() {
        tokio::time::sleep(faults.response_latency).await;
    }
    response
}

async fn serve_efs(
    world: &AwsWorld,
    region: &str,
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Answer {
    let Some(operation) = efs::operation(method, path) else {
        return json_error(&AwsError::new(404, "UnknownOperationException", format!("{method} {path}")));
    };
    served(world, "elasticfilesystem", region, operation.name(), json_error, |state| {
        match efs::execute(state, world.clock.now(), region, &operation, query, body) {
            Ok((status, Some(value))) => {
                answer(status, "application/json", serde_json::to_vec(&value).unwrap_or_default())
            }
            Ok((status, None)) => answer(status, "application/json", Vec::new()),
            Err(error) => json_error(&error),
        }
    })
    .await
}

/// An EC2 error: XML in EC2's `<Response><Errors>` shape.
fn ec2_error(error: &AwsError) -> Answer {
    answer(error.status, "text/xml;charset=UTF-8", ec2::error_xml(error).into_bytes())
}

/// EC2's Query protocol: the form-encoded body names the `Action`.
async fn serve_ec2(world: &AwsWorld, region: &str, body: &[u8]) -> Answer {
    let params = url_form(&String::from_utf8_lossy(body));
    let operation = params.get("Action").cloned().unwrap_or_default();
    served(world, "ec2", region, &operation, ec2_error, |state| {
        let account = state.settings.account.clone();
        match ec2::execute(&mut state.ebs, &account, world.clock.now(), region, &params) {
            Ok(xml) => answer(200, "text/xml;charset=UTF-8", xml.into_bytes()),
            Err(error) => ec2_error(&error),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_scope_names_region_and_service() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-west-2/elasticfilesystem/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(scope_of(header), Some(("us-west-2".into(), "elasticfilesystem".into())));
        assert_eq!(scope_of("Bearer x"), None);
    }
}
