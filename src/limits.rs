//! What an upload may be (size, types, duration) and may take (quota).
//!
//! Four sources narrow it, the tightest winning: the server's flags, the
//! project's policy (`tusk projects set`, read live), and what the upload
//! was created with (an upload token's limits or `POST /v1/assets` fields),
//! which is kept in its record so it holds on every later request. The
//! checks run at the first moment they can: a declared length or type at
//! creation, the sniffed type as soon as the first 8 KiB are in, the quota
//! as bytes arrive.

use crate::app::App;
use crate::asset::AssetType;
use crate::auth::{Caller, Grant};
pub use crate::record::UploadLimits;
use crate::record::UploadRecord;

/// Everything that applies to one upload right now.
#[derive(Clone, Debug, Default)]
pub struct Effective {
    pub limits: UploadLimits,
    pub quota: Option<u64>,
    pub project_id: uuid::Uuid,
}

/// The server's and the project's limits, without a particular upload's.
pub fn for_project(app: &App, project_id: uuid::Uuid) -> Effective {
    let server = UploadLimits {
        max_size: app.cfg.max_size,
        allowed_types: app.cfg.allowed_types.clone(),
        max_duration: None,
    };
    let (limits, quota) = match app.projects.policy(project_id) {
        Some(p) => (server.and(&p.limits()), p.quota),
        None => (server, None),
    };
    Effective { limits, quota, project_id }
}

/// Limits of a stored upload.
pub fn for_upload(app: &App, rec: &UploadRecord) -> Effective {
    let mut e = for_project(app, rec.project_id);
    e.limits = e.limits.and(&rec.limits);
    e
}

/// Why a request was refused by a limit. Each protocol answers it in its own
/// format, with the same status and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 413: the upload is longer than a size limit.
    TooLarge(String),
    /// 415: the declared or sniffed type is not accepted.
    TypeNotAllowed(String),
    /// 413: the project's quota has no room for it.
    QuotaExceeded(String),
    /// 403: the upload token has made all the uploads it may.
    UploadsUsedUp(String),
    /// 403: this credential cannot do this.
    Forbidden(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::TooLarge(m)
            | Refusal::TypeNotAllowed(m)
            | Refusal::QuotaExceeded(m)
            | Refusal::UploadsUsedUp(m)
            | Refusal::Forbidden(m) => m,
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Refusal::TooLarge(_) | Refusal::QuotaExceeded(_) => S::PAYLOAD_TOO_LARGE,
            Refusal::TypeNotAllowed(_) => S::UNSUPPORTED_MEDIA_TYPE,
            Refusal::UploadsUsedUp(_) | Refusal::Forbidden(_) => S::FORBIDDEN,
        }
    }

    /// The tus error code (`ERR_…`).
    pub fn tus_code(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "ERR_UPLOAD_SIZE_EXCEEDED",
            Refusal::TypeNotAllowed(_) => "ERR_TYPE_NOT_ALLOWED",
            Refusal::QuotaExceeded(_) => "ERR_QUOTA_EXCEEDED",
            Refusal::UploadsUsedUp(_) => "ERR_UPLOAD_LIMIT_REACHED",
            Refusal::Forbidden(_) => "ERR_FORBIDDEN",
        }
    }

    /// The `/v1` error code.
    pub fn api_code(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "too_large",
            Refusal::TypeNotAllowed(_) => "type_not_allowed",
            Refusal::QuotaExceeded(_) => "quota_exceeded",
            Refusal::UploadsUsedUp(_) => "upload_limit_reached",
            Refusal::Forbidden(_) => "forbidden",
        }
    }
}

/// The message for bytes that do not fit the quota.
pub fn quota_message(app: &App, e: &Effective, used: u64, wanted: Option<u64>) -> String {
    let quota = e.quota.unwrap_or(u64::MAX);
    let what = match wanted {
        Some(n) => format!("this upload of {n} bytes does not fit"),
        None => "the upload cannot grow further".to_string(),
    };
    format!(
        "project {:?} has {used} of its {quota}-byte quota in use ({} bytes free); {what}; \
         the bytes already stored are kept: delete assets or raise the quota, then resume",
        app.project_name(e.project_id),
        quota.saturating_sub(used)
    )
}

/// What a creation request declares about its upload.
#[derive(Debug, Default)]
pub struct Creation<'a> {
    pub length: Option<u64>,
    /// The client's media type for the file (tus `filetype`, the draft's `Content-Type`).
    pub declared_type: Option<&'a str>,
    /// A piece of a concatenation: not an asset, not counted as one of a token's uploads.
    pub partial: bool,
    /// Limits the request itself asks for (`POST /v1/assets`).
    pub requested: UploadLimits,
}

/// What a creation that passed leaves in the new record.
#[derive(Debug, Default)]
pub struct Admitted {
    pub limits: UploadLimits,
    pub token_id: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// The upload token's id and `max_uploads`, if the creation uses one of its uploads.
    pub token_use: Option<(String, u64)>,
}

/// The refusal once an upload token has made all its uploads.
pub fn uploads_used_up(max: u64) -> Refusal {
    Refusal::UploadsUsedUp(format!(
        "this upload token allows {max} upload{} and all of them have been made",
        if max == 1 { "" } else { "s" }
    ))
}

/// Checks a creation against every limit, before anything is stored.
pub fn admit(app: &App, caller: &Caller, c: &Creation) -> Result<Admitted, Refusal> {
    let (kept, token) = match &caller.grant {
        Grant::Key => (c.requested.clone(), None),
        Grant::Upload(_) => {
            return Err(Refusal::Forbidden(
                "an upload URL continues its own upload only; it cannot create uploads".into(),
            ));
        }
        Grant::Token(t) => (t.limits().and(&c.requested), Some(t.clone())),
    };
    let mut e = for_project(app, caller.project_id);
    e.limits = e.limits.and(&kept);
    if let (Some(n), Some(max)) = (c.length, e.limits.max_size)
        && n > max
    {
        return Err(Refusal::TooLarge(format!(
            "the upload is {n} bytes, more than the limit of {max} bytes"
        )));
    }
    if let Some(declared) = c.declared_type
        && let Some(kind) = AssetType::of_media_type(declared)
        && !e.limits.allows(kind)
    {
        return Err(Refusal::TypeNotAllowed(format!(
            "{declared} files ({}) are not accepted here; accepted: {}",
            kind.as_str(),
            e.limits.types_list()
        )));
    }
    if let (Some(n), Some(quota)) = (c.length, e.quota) {
        let used = app.usage.project(caller.project_id).bytes();
        if used.saturating_add(n) > quota {
            return Err(Refusal::QuotaExceeded(quota_message(app, &e, used, Some(n))));
        }
    }
    let metadata = token.as_ref().map(|t| t.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    // Parts of a concatenation are not uploads of their own: the final counts.
    let token_use =
        token.as_ref().filter(|_| !c.partial).and_then(|t| Some((t.token_id.clone(), t.max_uploads?)));
    Ok(Admitted {
        limits: kept,
        token_id: token.map(|t| t.token_id.clone()),
        metadata: metadata.unwrap_or_default(),
        token_use,
    })
}
