//! API errors as the Kubernetes API server reports them: `metav1.Status` bodies with a
//! reason, an HTTP code and, for validation failures, field causes.

use serde_json::{Value, json};

/// One field-level cause of an `Invalid` error (`details.causes[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message, e.g. `Invalid value: "object": ...`.
    pub message: String,
    /// JSON path of the field, e.g. `spec.source`.
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Cause {
        Cause { reason: reason.into(), field: field.into(), message: message.into() }
    }

    /// A `Required value` cause, phrased like the API server's field errors.
    pub fn required(field: impl Into<String>) -> Cause {
        Cause::new("FieldValueRequired", field, "Required value")
    }

    /// A `Forbidden` cause with the given explanation.
    pub fn forbidden(field: impl Into<String>, why: &str) -> Cause {
        Cause::new("FieldValueForbidden", field, format!("Forbidden: {why}"))
    }

    /// An `Invalid value` cause quoting the offending value.
    pub fn invalid(field: impl Into<String>, value: &Value, why: &str) -> Cause {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            Value::Object(_) => "\"object\"".to_string(),
            Value::Array(_) => "\"array\"".to_string(),
            other => other.to_string(),
        };
        Cause::new("FieldValueInvalid", field, format!("Invalid value: {shown}: {why}"))
    }
}

/// An error response: becomes a `Status` object with the matching HTTP code.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details`: the object concerned, when there is one.
    pub details: Option<Box<Details>>,
}

/// `Status.details`: which object the error is about and, for `Invalid`, why.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> ApiError {
        self.details =
            Some(Box::new(Details { name: name.into(), group: group.into(), kind: kind.into(), causes: Vec::new() }));
        self
    }

    /// `resource "name" not found`, e.g. `persistentvolumeclaims "data-0" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(plural, group)))
            .with_details(group, plural, name)
    }

    /// No resource is served at the path (the API server's generic 404).
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(plural, group)))
            .with_details(group, plural, name)
    }

    /// The optimistic-concurrency failure clients retry on.
    pub fn conflict(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 422 with field causes; the message lists them like the API server does.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let listed: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let summary = if listed.len() == 1 { listed[0].clone() } else { format!("[{}]", listed.join(", ")) };
        let group_suffix = if group.is_empty() { String::new() } else { format!(".{group}") };
        let mut err = ApiError::new(422, "Invalid", format!("{kind}{group_suffix} \"{name}\" is invalid: {summary}"))
            .with_details(group, kind, name);
        if let Some(details) = err.details.as_mut() {
            details.causes = causes;
        }
        err
    }

    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: {why}", qualified(plural, group)))
            .with_details(group, plural, name)
    }

    /// An authorisation refusal, worded as the API server's: `pods "p" is forbidden:
    /// User "..." cannot get resource ...` (no name for lists and creates).
    pub fn access_denied(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        let object =
            if name.is_empty() { qualified(plural, group) } else { format!("{} \"{name}\"", qualified(plural, group)) };
        ApiError::new(403, "Forbidden", format!("{object} is forbidden: {why}")).with_details(group, plural, name)
    }

    /// A bearer token the server does not know.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 410: the requested resourceVersion is older than the watch history kept.
    pub fn expired(rv: u64) -> ApiError {
        ApiError::new(410, "Expired", format!("too old resource version: {rv}"))
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// An error chosen by fault injection, with the reason the real server uses for the code.
    pub fn injected(code: u16) -> ApiError {
        let reason = match code {
            409 => "Conflict",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        ApiError::new(code, reason, format!("injected fault: {reason} (sim fault injection)"))
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut details = json!({ "name": d.name, "kind": d.kind });
            if !d.group.is_empty() {
                details["group"] = json!(d.group);
            }
            if !d.causes.is_empty() {
                details["causes"] = d
                    .causes
                    .iter()
                    .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                    .collect();
            }
            status["details"] = details;
        }
        status
    }
}

/// `plural.group` for named groups, `plural` for the core group.
fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;
