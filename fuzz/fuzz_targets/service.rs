//! The whole server in-process: each input is a short sequence of tus 1.0
//! and IETF-draft requests against uploads the input itself creates, sent
//! over real TCP connections by a tiny blocking HTTP/1.1 client.
//!
//! Checked after every request:
//! - an answer arrives (no connection closed or stalled without a response);
//! - no 5xx other than 503 and 507;
//! - a GET's body is as long as its Content-Length says;
//! - per upload, the `Upload-Offset` a HEAD reports never goes below what an
//!   earlier HEAD reported or a 2xx PATCH/POST acknowledged (unless the
//!   upload was DELETEd or a PATCH got 409), never exceeds `Upload-Length`,
//!   and never exceeds the bytes in the upload's data file;
//! - after a DELETE answered 2xx, a HEAD is never 2xx again.
//!
//! Every upload made by an input is deleted at its end, so the data
//! directory stays small however long the fuzzer runs.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use tokio_util::sync::CancellationToken;
use tusk::digest::Algorithm;
use uuid::Uuid;

const MAX_OPS: usize = 8;
/// Requests aim at the first few uploads of an input (all are tracked).
const MAX_UPLOADS: usize = 6;
/// All request bodies of one input together.
const BODY_BUDGET: usize = 64 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- the server

struct Server {
    port: u16,
    data_dir: PathBuf,
    // Kept alive for the life of the process.
    _rt: tokio::runtime::Runtime,
    _stop: CancellationToken,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // libFuzzer's own `main` runs us, not Rust's: SIGPIPE is not ignored
        // yet, and a write to a connection the server closed early would kill
        // the process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        // Never removed (statics are not dropped and a crash skips cleanup):
        // run.sh points TMPDIR at a folder it removes afterwards.
        let data_dir = tempfile::Builder::new().prefix("tusk-fuzz-").tempdir().expect("temp data dir").keep();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().unwrap().port()
        };
        let args = tusk::config::ServeArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir: data_dir.clone(),
            // Answers (423) well within the client's read timeout.
            lock_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let stop = CancellationToken::new();
        let token = stop.clone();
        let cfg = tusk::config::Config::from(args);
        rt.spawn(async move {
            if let Err(e) = tusk::server::run(cfg, token).await {
                eprintln!("tusk::server::run failed: {e}");
                std::process::abort();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server never listened on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("service target: tusk on 127.0.0.1:{port}, data in {}", data_dir.display());
        Server { port, data_dir, _rt: rt, _stop: stop }
    })
}

// ---------------------------------------------------------------- the client

struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    chunked: bool,
    /// Sent after the last chunk (only when chunked).
    trailers: Vec<(&'static str, Vec<u8>)>,
}

impl Request {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Request { method, path: path.into(), headers: vec![], body: vec![], chunked: false, trailers: vec![] }
    }

    fn header(&mut self, name: &'static str, value: impl AsRef<[u8]>) -> &mut Self {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!("\n  {k}: {}", String::from_utf8_lossy(v)));
        }
        if self.chunked {
            s.push_str("\n  (chunked)");
            for (k, v) in &self.trailers {
                s.push_str(&format!("\n  trailer {k}: {}", String::from_utf8_lossy(v)));
            }
        }
        s.push_str(&format!("\n  ({} body bytes)", self.body.len()));
        s
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn offset(&self) -> Option<u64> {
        self.get("upload-offset").and_then(|v| v.trim().parse().ok())
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `TUSK_FUZZ_TRACE=1`: one line per request (to see what inputs do).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("TUSK_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Sends one request on a new connection and reads the whole answer; panics
/// (a finding) when none arrives or the status is a 5xx other than 503/507.
fn send(req: &Request) -> Response {
    let port = server().port;
    let mut raw = Vec::with_capacity(req.body.len() + 512);
    raw.extend_from_slice(format!("{} {} HTTP/1.1\r\n", req.method, req.path).as_bytes());
    raw.extend_from_slice(format!("Host: 127.0.0.1:{port}\r\nConnection: close\r\n").as_bytes());
    for (k, v) in &req.headers {
        raw.extend_from_slice(k.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(v);
        raw.extend_from_slice(b"\r\n");
    }
    if req.chunked {
        raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        if !req.trailers.is_empty() {
            let names: Vec<&str> = req.trailers.iter().map(|(k, _)| *k).collect();
            raw.extend_from_slice(format!("Trailer: {}\r\n", names.join(", ")).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        if !req.body.is_empty() {
            raw.extend_from_slice(format!("{:x}\r\n", req.body.len()).as_bytes());
            raw.extend_from_slice(&req.body);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n");
        for (k, v) in &req.trailers {
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(v);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
    } else {
        if !req.body.is_empty() || matches!(req.method, "POST" | "PATCH") {
            raw.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&req.body);
    }

    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to the server: {e}\nrequest: {}", req.describe()));
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    // The server may answer (and close) before reading the whole body; what
    // counts is that an answer arrives, so a failed write is not a finding.
    let write_err = stream.write_all(&raw).err();

    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let started = Instant::now();
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "no complete answer within {:?} ({} bytes so far: {:?})\nrequest: {}",
                    started.elapsed(),
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(300)]),
                    req.describe()
                );
            }
            // A reset after the answer was sent (the server closed with
            // request bytes unread) still leaves the answer in `buf`.
            Err(_) => break,
        }
    }
    let Some(head_end) = find_head_end(&buf) else {
        panic!(
            "connection closed without a response (write error: {write_err:?}; got {:?})\nrequest: {}",
            String::from_utf8_lossy(&buf),
            req.describe()
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}\nrequest: {}", req.describe()));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let resp = Response { status, headers, body: buf[head_end..].to_vec() };
    if trace() {
        let h: Vec<String> =
            req.headers.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))).collect();
        eprintln!(
            "{} {} [{}] body={} -> {status} {:?}",
            req.method,
            req.path,
            h.join(" "),
            req.body.len(),
            resp.get("upload-offset")
        );
    }
    if status >= 500 && status != 503 && status != 507 {
        panic!(
            "server error {status}\nrequest: {}\nresponse: {head}{}",
            req.describe(),
            String::from_utf8_lossy(&resp.body)
        );
    }
    if req.method == "GET"
        && resp.ok()
        && resp.get("transfer-encoding").is_none()
        && let Some(cl) = resp.get("content-length").and_then(|v| v.parse::<usize>().ok())
    {
        assert_eq!(
            resp.body.len(),
            cl,
            "GET body length differs from Content-Length\nrequest: {}",
            req.describe()
        );
    }
    resp
}

// ---------------------------------------------------------------- the input

/// A header value the fuzzer chose, made sendable: no CR, LF or NUL (those
/// would be a different request, not a different value).
#[derive(Arbitrary, Debug)]
struct Text(Vec<u8>);

impl Text {
    fn bytes(&self) -> Vec<u8> {
        self.0
            .iter()
            .copied()
            .filter(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
            .take(512)
            .collect()
    }

    /// For a request target: visible ASCII only.
    fn path(&self) -> String {
        self.0.iter().copied().filter(|b| b.is_ascii_graphic()).take(200).map(char::from).collect()
    }
}

#[derive(Arbitrary, Debug)]
enum Target {
    /// One of this input's uploads (one is made first if there is none).
    Upload(u8),
    Odd(OddTarget),
}

#[derive(Arbitrary, Debug)]
enum OddTarget {
    /// An id nobody created.
    Unknown,
    /// Anything below the base path.
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Version {
    Correct,
    Missing,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Empty,
    Bytes(Vec<u8>),
    Fill { len: u16, byte: u8 },
}

// Enums list the well-formed choice first: where the input runs out,
// `arbitrary` picks the first variant, so short inputs make valid requests.

#[derive(Arbitrary, Debug)]
enum Length {
    Known(u16),
    Deferred,
    Value(u64),
    Both(u16),
    None,
    Raw(Text),
    RawDefer(Text),
}

#[derive(Arbitrary, Debug)]
enum Checksum {
    None,
    Good(u8),
    Bad(u8),
    Raw(Text),
    /// Sent as a trailer (only with a chunked body; a header otherwise).
    Trailer {
        alg: u8,
        good: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum UrlForm {
    Absolute,
    Path,
    Bare,
}

#[derive(Arbitrary, Debug)]
enum Concat {
    None,
    Partial,
    /// Parts picked among this input's uploads (partial ones are made if
    /// there is none); `Upload-Length` and the body are only sent if asked,
    /// since a final upload must have neither.
    Final {
        parts: Vec<(u8, UrlForm)>,
        with_length: bool,
        with_body: bool,
    },
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    Correct,
    Missing,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum OffsetSpec {
    True,
    Delta(i8),
    Value(u64),
    Missing,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Complete {
    No,
    Yes,
    Missing,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Interop {
    V6,
    V5,
    V8,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Digest {
    None,
    Sha256,
    Sha512,
    Wrong,
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
enum Range {
    From(u16),
    FromTo(u16, u16),
    Suffix(u16),
    /// `bytes=` and anything.
    Raw(Text),
}

#[derive(Arbitrary, Debug)]
struct Create {
    length: Length,
    metadata: Option<Text>,
    concat: Concat,
    body: Body,
    chunked: bool,
    checksum: Checksum,
    version: Version,
    content_type: ContentType,
}

#[derive(Arbitrary, Debug)]
struct Patch {
    target: Target,
    offset: OffsetSpec,
    body: Body,
    chunked: bool,
    checksum: Checksum,
    /// `Upload-Length` on an append (declares a deferred length).
    length: Option<Length>,
    content_type: ContentType,
    version: Version,
    /// tus-js-client's `overridePatchMethod`: POST + X-HTTP-Method-Override.
    via_post: bool,
}

#[derive(Arbitrary, Debug)]
struct DraftCreate {
    interop: Interop,
    complete: Complete,
    length: Option<u32>,
    body: Body,
    chunked: bool,
    digest: Digest,
    content_type: Option<Text>,
    disposition: Option<Text>,
    metadata: Option<Text>,
}

#[derive(Arbitrary, Debug)]
struct DraftPatch {
    target: Target,
    interop: Interop,
    offset: OffsetSpec,
    complete: Complete,
    length: Option<u32>,
    body: Body,
    chunked: bool,
    digest: Digest,
    content_type: ContentType,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create(Create),
    Head { target: Target, version: Version },
    Patch(Patch),
    Delete { target: Target, version: Version },
    Get { target: Target, range: Option<Range> },
    Options,
    DraftCreate(DraftCreate),
    DraftHead { target: Target, interop: Interop, with_offset: bool },
    DraftPatch(DraftPatch),
    DraftDelete { target: Target, interop: Interop },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

// ---------------------------------------------------------------- the state

struct Upload {
    id: Uuid,
    location: String,
    /// Last offset the server reported in any answer: what `OffsetSpec::True` sends.
    current: u64,
    /// The least offset a HEAD may report now (see the module comment).
    floor: u64,
    deleted: bool,
    /// What its first `current` bytes must be.
    content: Content,
}

enum Content {
    /// Exactly the upload's bytes so far, from the bodies we sent and the
    /// offsets the server acknowledged.
    Known(Vec<u8>),
    /// A final upload: its parts' bytes, in order, once assembled.
    Final(Vec<usize>),
    /// Something happened that we cannot account for byte by byte.
    Unknown,
}

struct Run {
    uploads: Vec<Upload>,
    budget: usize,
}

const BASE: &str = "/files/";

impl Run {
    fn body(&mut self, b: &Body) -> Vec<u8> {
        let v = match b {
            Body::Empty => vec![],
            Body::Bytes(v) => v.iter().copied().take(self.budget).collect(),
            Body::Fill { len, byte } => vec![*byte; (*len as usize).min(self.budget)],
        };
        self.budget -= v.len();
        v
    }

    fn pick(&mut self, t: &Target) -> (String, Option<usize>) {
        match t {
            Target::Upload(i) => {
                if self.uploads.is_empty() {
                    self.make_upload(*i);
                }
                if self.uploads.is_empty() {
                    return (format!("{BASE}{}", Uuid::nil()), None);
                }
                let i = *i as usize % self.uploads.len().min(MAX_UPLOADS);
                (format!("{BASE}{}", self.uploads[i].id), Some(i))
            }
            Target::Odd(OddTarget::Unknown) => (format!("{BASE}{}", Uuid::nil()), None),
            Target::Odd(OddTarget::Raw(t)) => (format!("{BASE}{}", t.path()), None),
        }
    }

    /// An upload to aim at when the input made none yet: tus with a deferred
    /// or a known length, or the draft's `Upload-Complete: ?0`.
    fn make_upload(&mut self, kind: u8) {
        let mut r = Request::new("POST", BASE);
        // A small length, so that bodies the fuzzer makes can complete it.
        let len = (kind / 4).to_string();
        match kind % 4 {
            0 => {
                r.header("Tus-Resumable", "1.0.0").header("Upload-Defer-Length", "1");
            }
            1 => {
                r.header("Tus-Resumable", "1.0.0").header("Upload-Length", &len);
            }
            2 => {
                r.header("Tus-Resumable", "1.0.0").header("Upload-Length", &len);
                r.header("Upload-Concat", "partial");
            }
            _ => {
                r.header("Upload-Draft-Interop-Version", "6").header("Upload-Complete", "?0");
            }
        }
        let resp = send(&r);
        assert!(
            matches!(resp.status, 201 | 503 | 507),
            "plain creation refused\nrequest: {}\nresponse: {resp:?}",
            r.describe()
        );
        self.created(&r, &resp, None);
    }

    fn offset_value(&self, spec: &OffsetSpec, idx: Option<usize>) -> Option<Vec<u8>> {
        let cur = idx.map(|i| self.uploads[i].current).unwrap_or(0);
        match spec {
            OffsetSpec::True => Some(cur.to_string().into_bytes()),
            OffsetSpec::Delta(d) => Some(cur.saturating_add_signed(*d as i64).to_string().into_bytes()),
            OffsetSpec::Value(v) => Some(v.to_string().into_bytes()),
            OffsetSpec::Missing => None,
            OffsetSpec::Raw(t) => Some(t.bytes()),
        }
    }

    /// A creation's answer with a Location: a new upload to aim later
    /// requests at. Not only 201: the draft keeps an upload whose first
    /// body failed (and says where it is). All are deleted at the end.
    /// `content`: what the upload holds, if not the creation's body (finals).
    fn created(&mut self, req: &Request, resp: &Response, content: Option<Content>) {
        let Some(loc) = resp.get("location") else { return };
        let Some(id) = tusk::tus::headers::id_from_url(loc, BASE) else {
            panic!("{} with a Location that names no upload: {loc:?}", resp.status);
        };
        if self.uploads.iter().any(|u| u.id == id) {
            return;
        }
        let off = resp.offset().unwrap_or(0);
        let content = match content {
            Some(c) => c,
            None => {
                assert!(
                    off <= req.body.len() as u64,
                    "a new upload holds {off} bytes but its creation sent {}\nrequest: {}",
                    req.body.len(),
                    req.describe()
                );
                Content::Known(req.body[..off as usize].to_vec())
            }
        };
        self.uploads.push(Upload {
            id,
            location: loc.to_string(),
            current: off,
            floor: off,
            deleted: false,
            content,
        });
    }

    /// The bytes upload `i` must hold when it holds `len` bytes, if we know them.
    fn expected(&self, i: usize) -> Option<Vec<u8>> {
        match &self.uploads[i].content {
            Content::Known(c) => Some(c.clone()),
            Content::Final(parts) => {
                let mut all = Vec::new();
                for &p in parts {
                    match &self.uploads[p].content {
                        Content::Known(c) => all.extend_from_slice(c),
                        _ => return None,
                    }
                }
                Some(all)
            }
            Content::Unknown => None,
        }
    }

    /// What any answer about upload `idx` tells us. `method` is what the
    /// request meant (PATCH for a POST with X-HTTP-Method-Override).
    fn observe(&mut self, idx: Option<usize>, method: &str, req: &Request, resp: &Response) {
        let Some(i) = idx else { return };
        let u = &mut self.uploads[i];
        if let Some(off) = resp.offset() {
            u.current = off;
        }
        if method == "PATCH"
            && let Some(n) = resp.offset()
            && let Content::Known(c) = &mut u.content
        {
            let have = c.len() as u64;
            let sent = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("upload-offset"))
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
            let body = req.body.len() as u64;
            if n == have {
                // Nothing stored (or nothing new).
            } else if sent == Some(have) && n > have && n - have <= body {
                c.extend_from_slice(&req.body[..(n - have) as usize]);
            } else if resp.ok() && sent == Some(have) && n > have + body {
                panic!(
                    "upload {}: {} bytes at offset {have} acknowledged as offset {n}\nrequest: {}",
                    u.id,
                    body,
                    req.describe()
                );
            } else {
                u.content = Content::Unknown;
            }
        }
        match method {
            "DELETE" if resp.ok() => {
                u.deleted = true;
                u.floor = 0;
                let path = data_file(u.id);
                assert!(
                    !path.exists(),
                    "upload {} answered DELETE {} but {} is still there",
                    u.id,
                    resp.status,
                    path.display()
                );
            }
            "PATCH" if resp.status == 409 => u.floor = 0,
            "PATCH" | "POST" if resp.ok() => {
                if let Some(off) = resp.offset() {
                    u.floor = u.floor.max(off);
                }
            }
            _ => {}
        }
    }

    /// A HEAD's answer about upload `idx`, checked against what we know.
    fn check_head(&mut self, idx: Option<usize>, req: &Request, resp: &Response) {
        let Some(i) = idx else { return };
        let u = &mut self.uploads[i];
        if u.deleted {
            assert!(
                !resp.ok(),
                "HEAD of deleted upload {} answered {}\nrequest: {}",
                u.id,
                resp.status,
                req.describe()
            );
            return;
        }
        if !resp.ok() {
            return;
        }
        let Some(off) = resp.offset() else { return };
        assert!(
            off >= u.floor,
            "upload {} went back from offset {} to {off}\nrequest: {}\nresponse: {resp:?}",
            u.id,
            u.floor,
            req.describe()
        );
        if let Some(len) = resp.get("upload-length").and_then(|v| v.parse::<u64>().ok()) {
            assert!(off <= len, "upload {}: offset {off} past its length {len}", u.id);
        }
        let path = data_file(u.id);
        let stored = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            stored >= off,
            "upload {}: HEAD reports offset {off} but {} holds {stored} bytes\nrequest: {}",
            u.id,
            path.display(),
            req.describe()
        );
        u.floor = off;
        u.current = off;
        let id = u.id;
        if let Some(want) = self.expected(i) {
            if want.len() as u64 == off {
                let stored = std::fs::read(&path).unwrap_or_default();
                assert!(
                    stored.len() >= want.len() && stored[..want.len()] == want[..],
                    "upload {id}: the first {off} bytes of {} are not the bytes acknowledged\nrequest: {}",
                    path.display(),
                    req.describe()
                );
                if trace() {
                    eprintln!("   verified {off} stored bytes of {id}");
                }
            } else if let Content::Known(_) = self.uploads[i].content {
                self.uploads[i].content = Content::Unknown;
            }
        }
    }

    /// A GET's body against the bytes we know the upload holds.
    fn check_get(&mut self, idx: Option<usize>, req: &Request, resp: &Response) {
        let Some(i) = idx else { return };
        let want = self.expected(i);
        let id = self.uploads[i].id;
        match resp.status {
            200 => {
                if let Some(want) = want
                    && want.len() == resp.body.len()
                {
                    assert!(
                        want == resp.body,
                        "upload {id}: GET served other bytes\nrequest: {}",
                        req.describe()
                    );
                    if trace() {
                        eprintln!("   verified {} served bytes of {id}", want.len());
                    }
                }
            }
            206 => {
                let cr = resp.get("content-range").unwrap_or("");
                let parsed = cr.strip_prefix("bytes ").and_then(|r| {
                    let (range, total) = r.split_once('/')?;
                    let (s, e) = range.split_once('-')?;
                    Some((s.parse::<u64>().ok()?, e.parse::<u64>().ok()?, total.parse::<u64>().ok()?))
                });
                let Some((s, e, total)) = parsed else {
                    panic!("206 with Content-Range {cr:?}\nrequest: {}", req.describe());
                };
                assert!(s <= e && e < total, "206 with Content-Range {cr:?}\nrequest: {}", req.describe());
                assert_eq!(
                    resp.body.len() as u64,
                    e - s + 1,
                    "206 body vs {cr:?}\nrequest: {}",
                    req.describe()
                );
                if let Some(want) = want
                    && want.len() as u64 == total
                {
                    assert!(
                        want[s as usize..=e as usize] == resp.body[..],
                        "upload {id}: GET {cr} served other bytes\nrequest: {}",
                        req.describe()
                    );
                    if trace() {
                        eprintln!("   verified {cr} served of {id}");
                    }
                }
            }
            _ => {}
        }
    }
}

/// `<data_dir>/uploads/<hex[30..32]>/<hex[29..30]>/<uuid>`, as `Store::file_path`.
fn data_file(id: Uuid) -> PathBuf {
    let hex = id.simple().to_string();
    server().data_dir.join("uploads").join(&hex[30..32]).join(&hex[29..30]).join(id.to_string())
}

fn tus_version(r: &mut Request, v: &Version) {
    match v {
        Version::Correct => {
            r.header("Tus-Resumable", "1.0.0");
        }
        Version::Missing => {}
        Version::Raw(t) => {
            r.header("Tus-Resumable", t.bytes());
        }
    }
}

fn interop(r: &mut Request, v: &Interop) {
    match v {
        Interop::V6 => r.header("Upload-Draft-Interop-Version", "6"),
        Interop::V5 => r.header("Upload-Draft-Interop-Version", "5"),
        Interop::V8 => r.header("Upload-Draft-Interop-Version", "8"),
        Interop::Raw(t) => r.header("Upload-Draft-Interop-Version", t.bytes()),
    };
}

fn complete(r: &mut Request, c: &Complete) {
    match c {
        Complete::Yes => {
            r.header("Upload-Complete", "?1");
        }
        Complete::No => {
            r.header("Upload-Complete", "?0");
        }
        Complete::Missing => {}
        Complete::Raw(t) => {
            r.header("Upload-Complete", t.bytes());
        }
    }
}

const ALGS: [&str; 4] = ["sha1", "sha256", "sha512", "md5"];

fn digest_of(alg: &str, body: &[u8]) -> String {
    let mut h = Algorithm::from_tus_name(alg).unwrap().hasher();
    h.update(body);
    STANDARD.encode(h.finalize())
}

fn checksum(r: &mut Request, c: &Checksum) {
    let value = |alg: u8, good: bool, body: &[u8]| {
        let name = ALGS[alg as usize % ALGS.len()];
        let b64 = if good { digest_of(name, body) } else { digest_of(name, b"not the body") };
        format!("{name} {b64}")
    };
    match c {
        Checksum::None => {}
        Checksum::Good(a) => {
            let v = value(*a, true, &r.body);
            r.header("Upload-Checksum", v);
        }
        Checksum::Bad(a) => {
            let v = value(*a, false, &r.body);
            r.header("Upload-Checksum", v);
        }
        Checksum::Raw(t) => {
            r.header("Upload-Checksum", t.bytes());
        }
        Checksum::Trailer { alg, good } => {
            let v = value(*alg, *good, &r.body);
            if r.chunked {
                r.trailers.push(("Upload-Checksum", v.into_bytes()));
            } else {
                r.header("Upload-Checksum", v);
            }
        }
    }
}

fn content_digest(r: &mut Request, d: &Digest) {
    let v = match d {
        Digest::None => return,
        Digest::Sha256 => format!("sha-256=:{}:", digest_of("sha256", &r.body)),
        Digest::Sha512 => format!("sha-512=:{}:", digest_of("sha512", &r.body)),
        Digest::Wrong => format!("sha-256=:{}:", digest_of("sha256", b"not the body")),
        Digest::Raw(t) => {
            r.header("Content-Digest", t.bytes());
            return;
        }
    };
    r.header("Content-Digest", v);
}

fn length(r: &mut Request, l: &Length) {
    match l {
        Length::None => {}
        Length::Known(n) => {
            r.header("Upload-Length", n.to_string());
        }
        Length::Value(n) => {
            r.header("Upload-Length", n.to_string());
        }
        Length::Deferred => {
            r.header("Upload-Defer-Length", "1");
        }
        Length::Both(n) => {
            r.header("Upload-Length", n.to_string());
            r.header("Upload-Defer-Length", "1");
        }
        Length::Raw(t) => {
            r.header("Upload-Length", t.bytes());
        }
        Length::RawDefer(t) => {
            r.header("Upload-Defer-Length", t.bytes());
        }
    }
}

fn content_type(r: &mut Request, c: &ContentType, correct: &str) {
    match c {
        ContentType::Correct => {
            r.header("Content-Type", correct);
        }
        ContentType::Missing => {}
        ContentType::Raw(t) => {
            r.header("Content-Type", t.bytes());
        }
    }
}

fn run_op(run: &mut Run, op: &Op) {
    match op {
        Op::Create(c) => {
            let mut r = Request::new("POST", BASE);
            tus_version(&mut r, &c.version);
            let (with_length, with_body) = match &c.concat {
                Concat::Final { with_length, with_body, .. } => (*with_length, *with_body),
                _ => (true, true),
            };
            if with_length {
                length(&mut r, &c.length);
            }
            if let Some(m) = &c.metadata {
                r.header("Upload-Metadata", m.bytes());
            }
            let mut final_content = None;
            match &c.concat {
                Concat::None => {}
                Concat::Partial => {
                    r.header("Upload-Concat", "partial");
                }
                Concat::Final { parts, .. } => {
                    if run.uploads.is_empty() {
                        for (i, _) in parts.iter().take(3) {
                            run.make_upload(i & !3 | 2);
                        }
                    }
                    let mut picked = Some(Vec::new());
                    let mut urls = Vec::new();
                    for (i, form) in parts.iter().take(8) {
                        let idx = *i as usize % run.uploads.len().max(1);
                        urls.push(match run.uploads.get(idx) {
                            None => {
                                picked = None;
                                format!("{BASE}{}", Uuid::nil())
                            }
                            Some(u) => {
                                if let Some(p) = &mut picked {
                                    p.push(idx);
                                }
                                match form {
                                    UrlForm::Absolute => u.location.clone(),
                                    UrlForm::Path => format!("{BASE}{}", u.id),
                                    UrlForm::Bare => u.id.to_string(),
                                }
                            }
                        });
                    }
                    final_content = Some(picked.map_or(Content::Unknown, Content::Final));
                    r.header("Upload-Concat", format!("final;{}", urls.join(" ")));
                }
                Concat::Raw(t) => {
                    r.header("Upload-Concat", t.bytes());
                }
            }
            if with_body {
                r.body = run.body(&c.body);
            }
            r.chunked = c.chunked;
            if !r.body.is_empty() || c.chunked {
                content_type(&mut r, &c.content_type, "application/offset+octet-stream");
            }
            checksum(&mut r, &c.checksum);
            let resp = send(&r);
            run.created(&r, &resp, final_content);
        }
        Op::Head { target, version } => {
            let (path, idx) = run.pick(target);
            let mut r = Request::new("HEAD", path);
            tus_version(&mut r, version);
            let resp = send(&r);
            run.check_head(idx, &r, &resp);
            run.observe(idx, "HEAD", &r, &resp);
        }
        Op::Patch(p) => {
            let (path, idx) = run.pick(&p.target);
            let mut r = if p.via_post {
                let mut r = Request::new("POST", path);
                r.header("X-HTTP-Method-Override", "PATCH");
                r
            } else {
                Request::new("PATCH", path)
            };
            tus_version(&mut r, &p.version);
            content_type(&mut r, &p.content_type, "application/offset+octet-stream");
            if let Some(v) = run.offset_value(&p.offset, idx) {
                r.header("Upload-Offset", v);
            }
            if let Some(l) = &p.length {
                length(&mut r, l);
            }
            r.body = run.body(&p.body);
            r.chunked = p.chunked;
            checksum(&mut r, &p.checksum);
            let resp = send(&r);
            run.observe(idx, "PATCH", &r, &resp);
        }
        Op::Delete { target, version } => {
            let (path, idx) = run.pick(target);
            let mut r = Request::new("DELETE", path);
            tus_version(&mut r, version);
            let resp = send(&r);
            run.observe(idx, "DELETE", &r, &resp);
        }
        Op::Get { target, range } => {
            let (path, idx) = run.pick(target);
            let mut r = Request::new("GET", path);
            if let Some(range) = range {
                let mut v = b"bytes=".to_vec();
                match range {
                    Range::From(a) => v.extend(format!("{a}-").bytes()),
                    Range::FromTo(a, b) => v.extend(format!("{a}-{b}").bytes()),
                    Range::Suffix(n) => v.extend(format!("-{n}").bytes()),
                    Range::Raw(t) => v.extend(t.bytes()),
                }
                r.header("Range", v);
            }
            let resp = send(&r);
            run.check_get(idx, &r, &resp);
            run.observe(idx, "GET", &r, &resp);
        }
        Op::Options => {
            let mut r = Request::new("OPTIONS", BASE);
            r.header("Tus-Resumable", "1.0.0");
            send(&r);
        }
        Op::DraftCreate(c) => {
            let mut r = Request::new("POST", BASE);
            interop(&mut r, &c.interop);
            complete(&mut r, &c.complete);
            if let Some(n) = c.length {
                r.header("Upload-Length", n.to_string());
            }
            if let Some(t) = &c.content_type {
                r.header("Content-Type", t.bytes());
            }
            if let Some(t) = &c.disposition {
                r.header("Content-Disposition", t.bytes());
            }
            if let Some(t) = &c.metadata {
                r.header("Upload-Metadata", t.bytes());
            }
            r.body = run.body(&c.body);
            r.chunked = c.chunked;
            content_digest(&mut r, &c.digest);
            let resp = send(&r);
            run.created(&r, &resp, None);
        }
        Op::DraftHead { target, interop: v, with_offset } => {
            let (path, idx) = run.pick(target);
            let mut r = Request::new("HEAD", path);
            interop(&mut r, v);
            if *with_offset {
                r.header("Upload-Offset", "0");
            }
            let resp = send(&r);
            run.check_head(idx, &r, &resp);
            run.observe(idx, "HEAD", &r, &resp);
        }
        Op::DraftPatch(p) => {
            let (path, idx) = run.pick(&p.target);
            let mut r = Request::new("PATCH", path);
            interop(&mut r, &p.interop);
            content_type(&mut r, &p.content_type, "application/partial-upload");
            if let Some(v) = run.offset_value(&p.offset, idx) {
                r.header("Upload-Offset", v);
            }
            complete(&mut r, &p.complete);
            if let Some(n) = p.length {
                r.header("Upload-Length", n.to_string());
            }
            r.body = run.body(&p.body);
            r.chunked = p.chunked;
            content_digest(&mut r, &p.digest);
            let resp = send(&r);
            run.observe(idx, "PATCH", &r, &resp);
        }
        Op::DraftDelete { target, interop: v } => {
            let (path, idx) = run.pick(target);
            let mut r = Request::new("DELETE", path);
            interop(&mut r, v);
            let resp = send(&r);
            run.observe(idx, "DELETE", &r, &resp);
        }
    }
}

fuzz_target!(|input: Input| {
    server();
    let mut run = Run { uploads: Vec::new(), budget: BODY_BUDGET };
    for op in input.ops.iter().take(MAX_OPS) {
        run_op(&mut run, op);
    }
    // A last look at every upload, then it goes: the next input starts clean.
    for i in 0..run.uploads.len() {
        let path = format!("{BASE}{}", run.uploads[i].id);
        let mut head = Request::new("HEAD", path.clone());
        head.header("Tus-Resumable", "1.0.0");
        let resp = send(&head);
        run.check_head(Some(i), &head, &resp);
        if !run.uploads[i].deleted {
            let mut del = Request::new("DELETE", path);
            del.header("Tus-Resumable", "1.0.0");
            let resp = send(&del);
            run.observe(Some(i), "DELETE", &del, &resp);
        }
    }
});
