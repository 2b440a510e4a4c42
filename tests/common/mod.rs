//! Test harness: starts the real `tusk` binary on an ephemeral port with a
//! temporary data directory and speaks HTTP/1.1 to it over real sockets.
#![allow(dead_code)]

pub mod cluster;
pub mod external;
pub mod garage;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// A server on a fresh temporary data directory.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, args);
        s._tmp = Some(tmp);
        s
    }

    /// A server on an existing data directory (restarts).
    pub fn start_in(dir: &Path, args: &[&str]) -> Server {
        Server::spawn(dir, args, true)
    }

    /// A server whose log reader goes away once it has started: its stderr
    /// becomes a pipe nobody reads (a log collector that died).
    pub fn start_then_close_log(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::spawn(tmp.path(), args, false);
        s._tmp = Some(tmp);
        s
    }

    fn spawn(dir: &Path, args: &[&str], keep_log: bool) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tusk"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tusk");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    let addr = rest.split('/').next().unwrap().to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                    if !keep_log {
                        return; // drops the pipe's only read end
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Server { child, addr: addr.parse().unwrap(), dir: dir.to_path_buf(), _tmp: None, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The path part of an absolute upload URL.
    pub fn path_of(url: &str) -> String {
        let rest = url.split("://").nth(1).unwrap_or(url);
        rest[rest.find('/').unwrap()..].to_string()
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, method, path, headers, body)
    }

    /// POST a tus upload of `length` bytes; returns the upload's path.
    pub fn create(&self, length: u64, extra: &[(&str, &str)]) -> String {
        let len = length.to_string();
        let mut h = vec![("Tus-Resumable", "1.0.0"), ("Upload-Length", len.as_str())];
        h.extend_from_slice(extra);
        let r = self.request("POST", "/files/", &h, b"");
        assert_eq!(r.status, 201, "create: {r:?}");
        Server::path_of(r.header("location").expect("Location"))
    }

    pub fn patch(&self, path: &str, offset: u64, data: &[u8], extra: &[(&str, &str)]) -> Resp {
        let off = offset.to_string();
        let mut h = vec![
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", off.as_str()),
            ("Content-Type", "application/offset+octet-stream"),
        ];
        h.extend_from_slice(extra);
        self.request("PATCH", path, &h, data)
    }

    pub fn head(&self, path: &str) -> Resp {
        self.request("HEAD", path, &[("Tus-Resumable", "1.0.0")], b"")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        self.child.wait().unwrap()
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection (`Connection: close`), reading to EOF.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let has_cl = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    let chunked = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_cl && !chunked && (!body.is_empty() || method == "POST" || method == "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    read_response(&mut s, method == "HEAD")
}

pub fn read_response(s: &mut TcpStream, head: bool) -> Resp {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf, head)
}

pub fn parse_response(buf: &[u8], head: bool) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.entry(k.trim().to_ascii_lowercase()).or_default().push(v.trim().to_string());
        }
    }
    let mut body = buf[end + 4..].to_vec();
    if head {
        body.clear();
    } else if headers.get("transfer-encoding").is_some_and(|v| v[0].contains("chunked")) {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..nl]).unwrap().split(';').next().unwrap().trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---------------------------------------------------------------------------
// Helpers for the per-request-kind tus tests.

pub const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
pub const OCTET: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

impl Server {
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `Upload-Offset` from a HEAD, if the upload answers 200.
    pub fn offset(&self, path: &str) -> Option<u64> {
        let h = self.head(path);
        (h.status == 200)
            .then(|| h.header("upload-offset").expect("Upload-Offset on 200 HEAD").parse().unwrap())
    }

    /// POST that must answer 201; returns (path, response).
    pub fn create_resp(&self, headers: &[(&str, &str)], body: &[u8]) -> (String, Resp) {
        let r = self.request("POST", "/files/", headers, body);
        assert_eq!(r.status, 201, "create: {r:?}");
        (Server::path_of(r.header("location").expect("Location")), r)
    }

    /// Opens a connection and sends only the request head (no automatic
    /// Content-Length); the caller writes the body.
    pub fn open(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
        open(self.addr, method, path, headers)
    }

    /// Path of an upload's data file, searched under the data directory.
    pub fn upload_file(&self, upload_path: &str) -> Option<PathBuf> {
        let id = upload_path.rsplit('/').next().unwrap();
        find_file(&self.dir.join("uploads"), id)
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

pub fn open(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// Reads a response with a deadline; `None` if nothing complete arrived.
pub fn read_response_within(s: &mut TcpStream, head: bool, within: Duration) -> Option<Resp> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    buf.windows(4).any(|w| w == b"\r\n\r\n").then(|| parse_response(&buf, head))
}

/// A chunked request body with optional trailer fields after the last chunk.
pub fn chunked(data: &[u8], chunk: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Polls `f` until it yields a value or `within` passes.
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn b64s(s: &str) -> String {
    b64(s.as_bytes())
}

/// The headers a tus PATCH needs, plus `extra`.
pub fn patch_headers<'a>(offset: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![TUS, ("Upload-Offset", offset), OCTET];
    h.extend_from_slice(extra);
    h
}
