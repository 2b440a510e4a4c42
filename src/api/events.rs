//! `GET /v1/events`: the caller's project's asset changes as Server-Sent Events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::assets::View;
use super::error::ApiError;
use crate::app::App;
use crate::auth::Caller;
use crate::events::{Event, Resume};
use crate::http::{Response, header_str};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn stream(app: &Arc<App>, caller: &Caller, req: &Request<Incoming>) -> Result<Response, ApiError> {
    // Subscribe before reading history so nothing falls between the two.
    let mut live = app.events.subscribe();
    let resume = match header_str(req.headers(), "last-event-id") {
        Some(id) if !id.is_empty() => app.events.resume(id),
        _ => Resume::From(Vec::new()),
    };
    let origin = View::new(app, req.headers(), req.uri()).origin;
    let project = caller.project_id;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let app = app.clone();

    tokio::spawn(async move {
        let view = View { app: &app, origin };
        let render = |ev: &Event| {
            let data = json!({ "type": ev.kind.as_str(), "asset": view.asset(&ev.record) });
            Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {data}\n\n",
                app.events.event_id(ev.seq),
                ev.kind.as_str()
            ))
        };
        let gap = |message: &str| {
            let data = json!({ "code": "history_gap", "message": message });
            Bytes::from(format!("event: stream.gap\ndata: {data}\n\n"))
        };
        if tx.send(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
            return;
        }
        let mut last = 0;
        match resume {
            Resume::Gap => {
                let msg = "events since Last-Event-ID can no longer be replayed; refetch GET /v1/assets";
                if tx.send(gap(msg)).await.is_err() {
                    return;
                }
            }
            Resume::Ahead(seq) => last = seq,
            Resume::From(events) => {
                for ev in events.iter().filter(|e| e.project == project) {
                    last = ev.seq;
                    if tx.send(render(ev)).await.is_err() {
                        return;
                    }
                }
            }
        }
        loop {
            let msg = tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) if ev.seq > last && ev.project == project => {
                        last = ev.seq;
                        render(&ev)
                    }
                    Ok(_) => continue,
                    // This reader fell behind; producers never wait for it.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        gap(&format!("this stream fell behind and {n} events were dropped; refetch GET /v1/assets"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(b": keep-alive\n\n"),
                _ = tx.closed() => return,
                _ = app.shutdown.cancelled() => return,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });

    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    }));
    let mut resp = http::Response::new(body.boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}
