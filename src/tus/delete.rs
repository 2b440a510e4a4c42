//! DELETE: the termination extension.

use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::error::TusError;
use super::{check_owner, find, headers};
use crate::app::App;
use crate::auth::Caller;
use crate::http::{Response, empty};
use crate::record::GoneReason;

pub async fn terminate(app: &App, caller: &Caller, id: Uuid, req: &HeaderMap) -> Result<Response, TusError> {
    headers::check_version(req, false)?;
    check_owner(app, caller, id).await?;
    // Stops a running PATCH first; it commits what it has, then we remove it all.
    let _lock = app.locks.lock(id).await?;
    find(app, caller, id).await?;
    crate::uploads::remove(app, id, GoneReason::Terminated).await?;
    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}
