//! tus errors and their one mapping to HTTP.

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::http::{Response, empty, full};
use crate::ports::StoreError;
use crate::ports::locks::LockError;
use crate::record::{GoneReason, Offset};

/// An answer other than success. Bodies are `text/plain` `CODE: message`
/// (tusd's convention); tus-js-client puts that text in its error message.
#[derive(Debug)]
pub struct TusError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: HeaderMap,
}

impl TusError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        TusError { status, code, message: message.into(), headers: HeaderMap::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "ERR_UPLOAD_NOT_FOUND", "no upload exists at this URL")
    }

    pub fn gone(reason: GoneReason) -> Self {
        let message = match reason {
            GoneReason::Expired => "this upload expired before it was finished and its bytes were removed",
            GoneReason::Terminated => "this upload was terminated and its bytes were removed",
        };
        Self::new(StatusCode::GONE, "ERR_UPLOAD_GONE", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "ERR_UPLOAD_SIZE_EXCEEDED", message)
    }

    /// 507: the disk (or the reserve kept on it) is full; retrying later may work.
    pub fn storage_full(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "ERR_STORAGE_FULL", message)
    }

    pub fn with_header(mut self, name: impl Into<HeaderName>, value: impl ToString) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.headers.insert(name.into(), v);
        }
        self
    }

    /// Tells the client where the upload stands, so it can resume correctly.
    pub fn with_offset(self, offset: Offset) -> Self {
        self.with_header(HeaderName::from_static("upload-offset"), offset)
    }

    pub fn into_response(self, head: bool) -> Response {
        let body = if head || self.status == StatusCode::NOT_MODIFIED {
            empty()
        } else {
            full(format!("{}: {}\n", self.code, self.message))
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if !head {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        }
        h.extend(self.headers);
        resp
    }
}

impl From<StoreError> for TusError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        if e.is_unavailable() {
            return TusError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_STORAGE_UNAVAILABLE",
                "the server's storage is unavailable right now (out of reach, refusing the server, or busy); retry in a moment",
            );
        }
        TusError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_INTERNAL_SERVER_ERROR",
            "the server could not read or write its storage; try again later",
        )
    }
}

impl From<crate::limits::Refusal> for TusError {
    fn from(r: crate::limits::Refusal) -> Self {
        Self::new(r.status(), r.tus_code(), r.message())
    }
}

impl From<crate::uploads::UploadError> for TusError {
    fn from(e: crate::uploads::UploadError) -> Self {
        match e {
            crate::uploads::UploadError::Refused(r) => r.into(),
            crate::uploads::UploadError::Store(e) => e.into(),
            crate::uploads::UploadError::StorageFull(m) => TusError::storage_full(m),
            crate::uploads::UploadError::Busy => LockError::Busy.into(),
        }
    }
}

impl From<LockError> for TusError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Busy => TusError::new(
                StatusCode::LOCKED,
                "ERR_UPLOAD_LOCKED",
                "another request for this upload is still finishing; retry in a moment",
            ),
            LockError::Unavailable => TusError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_STORAGE_UNAVAILABLE",
                "the server's database cannot be reached right now; retry in a moment",
            ),
        }
    }
}
