//! AWS errors as step errors. Throttling, server errors and lost connections are worth
//! retrying; everything else (IncorrectState, ReplicationNotFound, access denied, missing
//! credentials) stops the step with the step id, the API call, the region and the
//! provider's code and message, never a Rust debug dump.

use aws_sdk_efs::config::http::HttpResponse;
use aws_sdk_efs::error::{ProvideErrorMetadata, SdkError};

use crate::exec::StepError;

/// Error codes AWS uses for throttling (the SDK's own list, plus EC2's).
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Where an error happened: `step`, `Service Operation`, region.
pub struct Call<'a> {
    pub step: &'a str,
    pub operation: &'a str,
    pub region: &'a str,
}

impl Call<'_> {
    fn prefix(&self) -> String {
        format!("step `{}`: {} in {}", self.step, self.operation, self.region)
    }
}

/// The provider's error code, if the call got an answer with one.
pub fn code_of<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

pub fn classify<E>(call: &Call<'_>, error: SdkError<E, HttpResponse>) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError");
            let message = e.message().unwrap_or("no message");
            let text = format!("{}: {code}: {message}", call.prefix());
            if THROTTLING.contains(&code) || status >= 500 || status == 429 {
                StepError::transient(text)
            } else {
                StepError::failed(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StepError::transient(format!("{}: {}", call.prefix(), causes(&error)))
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            StepError::transient(format!("{}: {}", call.prefix(), causes(&error)))
        }
        _ if causes(&error).contains("credential") => StepError::failed(format!(
            "{}: no AWS credentials ({}); provide them through the environment, a profile or IRSA web identity",
            call.prefix(),
            causes(&error)
        )),
        _ => StepError::failed(format!("{}: {}", call.prefix(), causes(&error))),
    }
}

/// The error and its sources, each as displayed (the SDK's own context rendering
/// appends a debug dump), without empty or repeated parts.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
