//! Draft errors as RFC 9457 problem details (`application/problem+json`),
//! with the draft's problem types, mapped to HTTP in one place.

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use crate::http::{Response, full, set};
use crate::ports::StoreError;

const TYPES: &str = "https://iana.org/assignments/http-problem-types#";

#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: Option<&'static str>,
    title: &'static str,
    detail: String,
    members: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            kind: None,
            title,
            detail: detail.into(),
            members: Map::new(),
            headers: HeaderMap::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", "no active upload exists at this URL")
    }

    /// No lock for the upload: its holder did not let go, or the database
    /// the locks live in is away.
    pub fn from_lock(e: crate::ports::locks::LockError) -> Self {
        match e {
            crate::ports::locks::LockError::Busy => Self::locked(),
            crate::ports::locks::LockError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable",
                "the server's database cannot be reached right now; retry in a moment",
            ),
        }
    }

    pub fn locked() -> Self {
        Self::new(
            StatusCode::LOCKED,
            "upload busy",
            "another request for this upload is still finishing; retry",
        )
    }

    pub fn mismatch(expected: u64, provided: u64) -> Self {
        let mut p = Self::new(
            StatusCode::CONFLICT,
            "mismatching upload offset",
            format!("the upload is at offset {expected}, not {provided}; resume from {expected}"),
        );
        p.kind = Some("mismatching-upload-offset");
        p.members.insert("expected-offset".into(), json!(expected));
        p.members.insert("provided-offset".into(), json!(provided));
        p.with_offset(expected)
    }

    pub fn completed(offset: u64) -> Self {
        let mut p = Self::new(StatusCode::BAD_REQUEST, "completed upload", "this upload is already complete");
        p.kind = Some("completed-upload");
        p.with_offset(offset)
    }

    pub fn inconsistent_length(detail: String) -> Self {
        let mut p = Self::new(StatusCode::BAD_REQUEST, "inconsistent upload length", detail);
        p.kind = Some("inconsistent-upload-length");
        p
    }

    pub fn digest_mismatch(offset: u64) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "content digest mismatch",
            "the body does not match Content-Digest; it was discarded, resend it",
        );
        p.kind = Some("content-digest-mismatch");
        p.with_offset(offset)
    }

    pub fn with_offset(self, offset: u64) -> Self {
        self.with_header(HeaderName::from_static("upload-offset"), offset)
    }

    pub fn with_header(mut self, name: HeaderName, value: impl ToString) -> Self {
        set(&mut self.headers, name, value);
        self
    }

    pub fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(self.kind.map(|k| format!("{TYPES}{k}")).unwrap_or("about:blank".into())),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.members);
        let mut resp = http::Response::new(full(serde_json::to_vec(&Value::Object(body)).expect("json")));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        resp.headers_mut().extend(self.headers);
        resp
    }
}

impl From<crate::limits::Refusal> for Problem {
    fn from(r: crate::limits::Refusal) -> Self {
        use crate::limits::Refusal;
        let title = match &r {
            Refusal::TooLarge(_) => "upload too large",
            Refusal::TypeNotAllowed(_) => "type not allowed",
            Refusal::QuotaExceeded(_) => "quota exceeded",
            Refusal::UploadsUsedUp(_) => "upload limit reached",
            Refusal::Forbidden(_) => "forbidden",
        };
        let mut p = Problem::new(r.status(), title, r.message());
        // The same code as the tus answer, for clients that speak both.
        p.members.insert("code".into(), Value::String(r.tus_code().into()));
        p
    }
}

impl From<crate::uploads::UploadError> for Problem {
    fn from(e: crate::uploads::UploadError) -> Self {
        match e {
            crate::uploads::UploadError::Refused(r) => r.into(),
            crate::uploads::UploadError::Store(e) => e.into(),
            crate::uploads::UploadError::StorageFull(m) => {
                Problem::new(StatusCode::INSUFFICIENT_STORAGE, "storage full", m)
            }
            crate::uploads::UploadError::Busy => Problem::new(
                StatusCode::LOCKED,
                "upload locked",
                "another request for this upload is still finishing; retry in a moment",
            ),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        if e.is_unavailable() {
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable",
                "the server's storage is unavailable right now (out of reach, refusing the server, or busy); retry in a moment",
            );
        }
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage failure",
            "the server could not read or write its storage",
        )
    }
}
