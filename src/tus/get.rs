//! GET on an upload URL: the bytes received so far (not part of tus, but
//! what tusd users expect), with Range support.

use http::{HeaderMap, Method};
use uuid::Uuid;

use super::error::TusError;
use super::find;
use crate::app::App;
use crate::auth::Caller;
use crate::download::{self, Download};
use crate::http::Response;
use crate::ports::bytes::Loc;
use crate::protocol::Metadata;

pub async fn download(app: &App, caller: &Caller, id: Uuid, req: &HeaderMap) -> Result<Response, TusError> {
    // No lock: only committed bytes are served, and those never change.
    let rec = find(app, caller, id).await?;
    let len = rec.offset.0;
    if !rec.is_complete() && !app.bytes.reads_unfinished() {
        return Err(TusError::new(
            http::StatusCode::CONFLICT,
            "ERR_UPLOAD_NOT_FINISHED",
            format!(
                "this server keeps upload bytes in object storage, which serves an upload once it is \
                 complete; {len} bytes are stored so far"
            ),
        ));
    }
    let content_type = match rec.asset.as_ref().and_then(|a| a.sniffed.as_ref()) {
        Some(s) => s.content_type.clone(),
        None => match app.bytes.read_prefix(Loc::of(&rec), len.min(8192) as usize).await {
            Ok(head) if !head.is_empty() => crate::asset::sniff::sniff(&head).content_type,
            _ => "application/octet-stream".to_string(),
        },
    };
    let filename = rec
        .metadata
        .as_deref()
        .and_then(|m| Metadata::parse(m).ok())
        .and_then(|m| m.get_str("filename").or(m.get_str("name")).map(str::to_string));
    let etag = if rec.is_complete() { rec.sha256.finalize_hex() } else { format!("{}-{}", id.simple(), len) };
    let d = Download { bytes: &app.bytes, loc: Loc::of(&rec), len, etag, content_type, filename };
    download::serve(&Method::GET, req, d).await.map_err(|e| crate::ports::StoreError::Io(e).into())
}
