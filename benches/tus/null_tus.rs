//! A tus server that stores nothing: the ceiling any real server can reach
//! under the same client, on the same machine, in the same run.
//!
//! Why it exists: in the concurrency figure the 64 `curl` processes (and the
//! `bash` around each) use as much CPU as the server, on a 2-core machine. A
//! ratio goal against a peer ("3x rustus") can be beyond what any server could
//! reach there; running bench.sh against this sink measures that ceiling
//! instead of estimating it from CPU seconds.
//!
//! It speaks just enough tus 1.0.0 for bench.sh's ingest and concurrency
//! phases: OPTIONS, POST (creation), PATCH (offset checked, body read frame by
//! frame and dropped, offset advanced), HEAD. GET answers 404, so bench.sh
//! reports the bytes as unverified (run it with `BENCH_ALLOW_UNVERIFIED=1`).
//! It runs on one tokio thread inside the bench process, so bench.sh's
//! per-process CPU accounting (the bench's PID) counts it as the server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

/// Offset and length of each upload, by id.
#[derive(Default)]
struct Uploads {
    next_id: u64,
    by_id: HashMap<u64, (u64, u64)>,
}

/// A running null server; it lives until the bench process exits.
pub struct NullTus {
    pub addr: std::net::SocketAddr,
}

impl NullTus {
    pub fn start() -> Result<NullTus, String> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("null tus: bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let uploads = Arc::new(Mutex::new(Uploads::default()));
        std::thread::Builder::new()
            .name("null-tus".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let uploads = uploads.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| handle(req, uploads.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(NullTus { addr })
    }
}

type Answer = Response<Empty<Bytes>>;

fn answer(status: StatusCode, headers: &[(&str, String)]) -> Answer {
    let mut b = Response::builder().status(status).header("Tus-Resumable", "1.0.0");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Empty::new()).expect("valid response")
}

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn upload_id(req: &Request<Incoming>) -> Option<u64> {
    req.uri().path().strip_prefix("/files/")?.parse().ok()
}

async fn handle(mut req: Request<Incoming>, uploads: Arc<Mutex<Uploads>>) -> Result<Answer, Infallible> {
    let bad = |msg: &str| answer(StatusCode::BAD_REQUEST, &[("X-Error", msg.to_string())]);
    Ok(match *req.method() {
        Method::OPTIONS => answer(
            StatusCode::NO_CONTENT,
            &[("Tus-Version", "1.0.0".into()), ("Tus-Extension", "creation".into())],
        ),
        Method::POST => match header_u64(&req, "upload-length") {
            Some(len) => {
                let mut u = uploads.lock().unwrap();
                u.next_id += 1;
                let id = u.next_id;
                u.by_id.insert(id, (0, len));
                answer(StatusCode::CREATED, &[("Location", format!("/files/{id}"))])
            }
            None => bad("Upload-Length missing"),
        },
        Method::HEAD => {
            match upload_id(&req).and_then(|id| uploads.lock().unwrap().by_id.get(&id).copied()) {
                Some((off, len)) => answer(
                    StatusCode::OK,
                    &[
                        ("Upload-Offset", off.to_string()),
                        ("Upload-Length", len.to_string()),
                        ("Cache-Control", "no-store".into()),
                    ],
                ),
                None => answer(StatusCode::NOT_FOUND, &[]),
            }
        }
        Method::PATCH => {
            let Some(id) = upload_id(&req) else { return Ok(answer(StatusCode::NOT_FOUND, &[])) };
            let Some((off, len)) = uploads.lock().unwrap().by_id.get(&id).copied() else {
                return Ok(answer(StatusCode::NOT_FOUND, &[]));
            };
            if header_u64(&req, "upload-offset") != Some(off) {
                return Ok(answer(StatusCode::CONFLICT, &[("Upload-Offset", off.to_string())]));
            }
            let mut got = 0u64;
            let body = req.body_mut();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => got += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => return Ok(bad("body interrupted")),
                }
            }
            if off + got > len {
                return Ok(bad("body past Upload-Length"));
            }
            let new = off + got;
            uploads.lock().unwrap().by_id.insert(id, (new, len));
            answer(StatusCode::NO_CONTENT, &[("Upload-Offset", new.to_string())])
        }
        _ => answer(StatusCode::NOT_FOUND, &[]),
    })
}
