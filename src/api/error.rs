//! `/v1` errors: one envelope, `{code, message, errors}`, mapped to HTTP here.

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;

use crate::auth::AuthError;
use crate::http::{Response, full};
use crate::ports::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), code: code.into(), message: message.into() }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: None }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no asset with this id exists in your project")
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let message =
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message,
            errors: Some(errors),
        }
    }

    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            code: &'a str,
            message: &'a str,
            errors: &'a Option<Vec<FieldError>>,
        }
        let body =
            serde_json::to_vec(&Envelope { code: self.code, message: &self.message, errors: &self.errors })
                .expect("serialisable");
        let mut resp = http::Response::new(full(body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        if e.is_unavailable() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the server's storage is unavailable right now (out of reach, refusing the server, or busy); retry in a moment",
            );
        }
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server could not read or write its storage; try again later",
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = if e.status() == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" };
        ApiError::new(e.status(), code, e.message())
    }
}

impl From<crate::limits::Refusal> for ApiError {
    fn from(r: crate::limits::Refusal) -> Self {
        ApiError::new(r.status(), r.api_code(), r.message())
    }
}

impl From<crate::uploads::UploadError> for ApiError {
    fn from(e: crate::uploads::UploadError) -> Self {
        match e {
            crate::uploads::UploadError::Refused(r) => r.into(),
            crate::uploads::UploadError::Store(e) => e.into(),
            crate::uploads::UploadError::StorageFull(m) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", m)
            }
            crate::uploads::UploadError::Busy => crate::ports::locks::LockError::Busy.into(),
        }
    }
}

impl From<crate::ports::locks::LockError> for ApiError {
    fn from(e: crate::ports::locks::LockError) -> Self {
        match e {
            crate::ports::locks::LockError::Busy => ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                "the asset is being written by another request; retry shortly",
            ),
            crate::ports::locks::LockError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the server's database cannot be reached right now; retry in a moment",
            ),
        }
    }
}
