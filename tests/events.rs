//! `/v1/events`: live asset changes over Server-Sent Events.
mod common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

struct Sse {
    reader: BufReader<TcpStream>,
}

#[derive(Debug, Clone)]
struct Ev {
    id: Option<String>,
    event: String,
    data: serde_json::Value,
}

impl Sse {
    fn open(s: &Server, headers: &[(&str, &str)]) -> Sse {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("GET /v1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n", s.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(c);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l == "\r\n" {
                break;
            }
            if l.to_ascii_lowercase().starts_with("content-type") {
                assert!(l.contains("text/event-stream"), "{l}");
            }
        }
        Sse { reader }
    }

    /// Next event (skipping comments and retry lines), de-chunking as it goes.
    fn next(&mut self) -> Ev {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        loop {
            let mut l = String::new();
            self.reader.read_line(&mut l).expect("event before timeout");
            let l = l.trim_end_matches(['\r', '\n']);
            // chunk-size lines of the chunked encoding are hex-only
            if !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()) && !l.contains(':') {
                continue;
            }
            if l.is_empty() {
                if !event.is_empty() {
                    return Ev {
                        id,
                        event,
                        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    };
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    fn until(&mut self, kind: &str) -> Ev {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let e = self.next();
            if e.event == kind {
                return e;
            }
            assert!(Instant::now() < deadline, "no {kind}");
        }
    }
}

#[test]
fn lifecycle_events_in_order() {
    let s = Server::start(&[]);
    let mut sse = Sse::open(&s, &[]);
    let data = bytes(200_000, 1);
    let path = s.create(data.len() as u64, &[("Upload-Metadata", "filename ZS5iaW4=")]);
    let id = path.rsplit('/').next().unwrap().to_string();
    let created = sse.until("asset.created");
    assert_eq!(created.data["type"], "asset.created");
    assert_eq!(created.data["asset"]["id"], id);
    assert_eq!(created.data["asset"]["name"], "e.bin");
    assert_eq!(s.patch(&path, 0, &data[..100_000], &[]).status, 204);
    let progress = sse.until("asset.progress");
    assert_eq!(progress.data["asset"]["received_bytes"], 100_000);
    assert_eq!(s.patch(&path, 100_000, &data[100_000..], &[]).status, 204);
    sse.until("asset.processing");
    let ready = sse.until("asset.ready");
    assert_eq!(ready.data["asset"]["sha256"], sha256_hex(&data));
    assert!(ready.data["asset"]["download_url"].is_string());
    assert_eq!(s.request("DELETE", &format!("/v1/assets/{id}"), &[], b"").status, 204);
    let deleted = sse.until("asset.deleted");
    assert_eq!(deleted.data["asset"]["id"], id);
}

#[test]
fn last_event_id_replays_missed_events_and_old_ids_get_a_gap() {
    let s = Server::start(&[]);
    let mut sse = Sse::open(&s, &[]);
    let a = s.create(10, &[]);
    let first = sse.until("asset.created");
    let first_id = first.id.clone().unwrap();
    drop(sse);
    // While the stream is away: another asset is created and the first finishes.
    let b = s.create(5, &[]);
    assert_eq!(s.patch(&a, 0, b"0123456789", &[]).status, 204);
    let mut sse = Sse::open(&s, &[("Last-Event-ID", &first_id)]);
    let replayed = sse.until("asset.created");
    assert_eq!(replayed.data["asset"]["id"], b.rsplit('/').next().unwrap());
    let ready = sse.until("asset.ready");
    assert_eq!(ready.data["asset"]["id"], a.rsplit('/').next().unwrap());

    // An id from another server start (or far too old) is reported as a gap.
    let mut sse = Sse::open(&s, &[("Last-Event-ID", "deadbeef-1")]);
    let gap = sse.until("stream.gap");
    assert_eq!(gap.data["code"], "history_gap");
}

#[test]
fn events_stay_within_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let key = |p: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
            .args(["keys", "create", "--project", p, "--data-dir"])
            .arg(tmp.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (ka, kb) = (key("alpha"), key("beta"));
    let s = Server::start_in(tmp.path(), &[]);
    let auth_a = format!("Bearer {ka}");
    let auth_b = format!("Bearer {kb}");
    let r = s.request("GET", "/v1/events", &[], b"");
    assert_eq!(r.status, 401, "events need a key once keys exist");
    let mut sse_b = Sse::open(&s, &[("Authorization", &auth_b)]);
    let r = s.request(
        "POST",
        "/files/",
        &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "3"), ("Authorization", &auth_a)],
        b"",
    );
    assert_eq!(r.status, 201);
    let r = s.request(
        "POST",
        "/files/",
        &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "4"), ("Authorization", &auth_b)],
        b"",
    );
    let b_id = Server::path_of(r.header("location").unwrap()).rsplit('/').next().unwrap().to_string();
    let ev = sse_b.until("asset.created");
    assert_eq!(ev.data["asset"]["id"], b_id, "project beta sees only its own asset");
}

#[test]
fn progress_flows_during_one_long_patch() {
    let s = Server::start(&[]);
    let mut sse = Sse::open(&s, &[]);
    let data = bytes(4 << 20, 2);
    let path = s.create(data.len() as u64, &[]);
    sse.until("asset.created");
    // One PATCH for the whole file, sent in two halves with a pause between.
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(
        c,
        "PATCH {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    c.write_all(&data[..2 << 20]).unwrap();
    let ev = sse.until("asset.progress");
    let got = ev.data["asset"]["received_bytes"].as_u64().unwrap();
    assert!(got > 0 && got <= 2 << 20, "progress while the body streams: {got}");
    c.write_all(&data[2 << 20..]).unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 204);
    assert_eq!(sse.until("asset.ready").data["asset"]["sha256"], sha256_hex(&data));
}
