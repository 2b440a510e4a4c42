//! Hostile clients, hostile pages and hostile metadata against the real
//! binary: each gets a clear answer, and none takes the server down for
//! others. One test per reproduction of the hardening issue.
mod assets_common;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use assets_common::*;
use common::*;
use serde_json::json;

/// A TCP connection from `source` (any 127.0.0.0/8 address is this machine).
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2_connect(source, to);
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    sock
}

/// `bind(source:0)` then `connect(to)`, with libc (std cannot bind a client socket).
fn socket2_connect(source: &str, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let src: std::net::Ipv4Addr = source.parse().unwrap();
    let SocketAddr::V4(to) = to else { panic!("IPv4 server") };
    // SAFETY: plain socket calls on a descriptor we own; it becomes the TcpStream's.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(src).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &a as *const _ as *const libc::sockaddr, len), 0, "bind {source}");
        a.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        a.sin_port = to.port().to_be();
        let rc = libc::connect(fd, &a as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect from {source}: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// One GET on `stream`, answered within `within`, or `None`.
fn get_on(mut stream: TcpStream, addr: SocketAddr, path: &str, within: Duration) -> Option<Resp> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    read_response_within(&mut stream, false, within)
}

/// The connection is closed by the server (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 408 before closing
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// #1, the figure: 10,000 silent connections from 127.0.0.1 hold at
/// most their address's share; 127.0.0.2 is answered at once, and 127.0.0.1
/// again once the header timeout has closed the silent ones.
#[test]
fn ten_thousand_silent_connections_lock_nobody_out() {
    // The default header timeout (10 s): all 10,000 are open within it.
    let s = Server::start(&[]);
    let started = Instant::now();
    let mut silent = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        silent.push(TcpStream::connect(s.addr).expect("connect"));
    }
    let made = started.elapsed();
    eprintln!("10,000 connections made in {made:?}");
    let t = Instant::now();
    let r = get_on(connect_from("127.0.0.2", s.addr), s.addr, "/v1/asset-types", Duration::from_secs(1))
        .expect("127.0.0.2 answered within 1 s while 127.0.0.1 holds its share");
    assert_eq!(r.status, 200, "{r:?}");
    eprintln!("127.0.0.2 answered in {:?}", t.elapsed());
    if made < Duration::from_secs(9) {
        // Connections past 127.0.0.1's share were told why (unless the
        // first ones had already timed out when the last was made).
        let mut over = silent.pop().unwrap();
        let r = read_response_within(&mut over, false, Duration::from_secs(5)).expect("an answer");
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.text().contains("too many connections from 127.0.0.1"), "{}", r.text());
    }
    // Once the header timeout has passed, 127.0.0.1 is served again.
    let deadline = Instant::now() + Duration::from_secs(16);
    let answered = loop {
        if let Some(r) =
            get_on(connect_from("127.0.0.1", s.addr), s.addr, "/v1/asset-types", Duration::from_secs(2))
            && r.status == 200
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(answered, "127.0.0.1 is served again after the header timeout");
    eprintln!("127.0.0.1 served again {:?} after the last silent connection", started.elapsed() - made);
    drop(silent);
}

/// #1 as reported: `--max-connections 64` and 64 sockets that send nothing.
/// Every slot is taken, but only until the header timeout closes them.
#[test]
fn silent_sockets_are_closed_after_the_header_timeout() {
    let s = Server::start(&["--max-connections", "64", "--header-timeout", "2s"]);
    let mut silent: Vec<TcpStream> = (0..64).map(|_| connect_from("127.0.0.1", s.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let r = get_on(connect_from("127.0.0.1", s.addr), s.addr, "/v1/asset-types", Duration::from_secs(10))
        .expect("answered once the silent sockets are closed");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(10));
    for sock in &mut silent {
        assert!(closed_within(sock, Duration::from_secs(5)), "a silent socket was left open");
    }
}

/// A head sent one byte at a time never completes: the connection is closed
/// once the header timeout has passed, whatever trickles in.
#[test]
fn a_head_sent_byte_by_byte_is_cut_at_the_header_timeout() {
    let s = Server::start(&["--header-timeout", "2s"]);
    let mut c = connect_from("127.0.0.1", s.addr);
    let head = format!(
        "POST /files/ HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\nX-Pad: {}\r\n\r\n",
        s.addr,
        "a".repeat(200)
    );
    let t = Instant::now();
    let mut cut = false;
    for b in head.bytes() {
        if c.write_all(&[b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if t.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    cut = cut || closed_within(&mut c, Duration::from_secs(1));
    assert!(cut, "the trickling head was not cut");
    assert!(t.elapsed() < Duration::from_secs(6), "cut after {:?}", t.elapsed());
    // Nothing was created.
    let r = s.request("GET", "/v1/assets", &[], b"");
    assert_eq!(json(&r)["data"].as_array().unwrap().len(), 0);
}

/// An idle keep-alive connection is closed after the header timeout.
#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let s = Server::start(&["--header-timeout", "1s"]);
    let mut c = connect_from("127.0.0.1", s.addr);
    let head = format!("GET /v1/asset-types HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    c.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    // Drain the rest of the answer, then wait for the close.
    assert!(closed_within(&mut c, Duration::from_secs(5)), "idle connection left open");
    assert!(t.elapsed() >= Duration::from_millis(500), "closed before it was idle: {:?}", t.elapsed());
}

/// A slow body keeps its connection only while bytes come: silence for
/// `--read-timeout` cuts it, and what arrived is kept.
#[test]
fn a_stalled_body_is_cut_and_keeps_what_arrived() {
    let s = Server::start(&["--read-timeout", "1s"]);
    let path = s.create(100, &[]);
    let mut c = s.open("PATCH", &path, &[TUS, OCTET, ("Upload-Offset", "0"), ("Content-Length", "100")]);
    c.write_all(&[7u8; 10]).unwrap();
    let r = read_response_within(&mut c, false, Duration::from_secs(10))
        .expect("an answer after the read timeout");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text().contains("ERR_READ_TIMEOUT"), "{}", r.text());
    assert_eq!(s.offset(&path), Some(10));
}

/// The per-address cap: the fifth connection of an address is refused with
/// a message, another address is not affected, and a freed slot is reused.
#[test]
fn one_address_holds_at_most_its_connections() {
    let s = Server::start(&["--max-connections-per-ip", "4"]);
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from("127.0.0.1", s.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = read_response_within(&mut connect_from("127.0.0.1", s.addr), false, Duration::from_secs(5))
        .expect("refused with an answer");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("--max-connections-per-ip"), "{}", r.text());
    let r =
        get_on(connect_from("127.0.0.3", s.addr), s.addr, "/v1/asset-types", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r =
        get_on(connect_from("127.0.0.1", s.addr), s.addr, "/v1/asset-types", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
}

/// Behind a proxy every connection comes from the proxy: the cap counts the
/// forwarded client's requests in flight instead (the last X-Forwarded-For hop).
#[test]
fn behind_a_proxy_the_cap_counts_forwarded_clients() {
    let s = Server::start(&["--behind-proxy", "--allow-anonymous", "--max-connections-per-ip", "2"]);
    let path = s.create(1000, &[]);
    let other = s.create(1000, &[]);
    // Two slow PATCHes of client 10.0.0.1 (bodies still coming).
    let slow: Vec<TcpStream> = [&path, &other]
        .iter()
        .map(|p| {
            let mut c = s.open(
                "PATCH",
                p,
                &[
                    TUS,
                    OCTET,
                    ("Upload-Offset", "0"),
                    ("Content-Length", "1000"),
                    ("X-Forwarded-For", "6.6.6.6, 10.0.0.1"),
                ],
            );
            c.write_all(b"x").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = s.request("GET", "/v1/asset-types", &[("X-Forwarded-For", "10.0.0.1")], b"");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.text().contains("too many requests from 10.0.0.1"), "{}", r.text());
    // A spoofed first hop does not make another client of it.
    let r = s.request("GET", "/v1/asset-types", &[("X-Forwarded-For", "1.2.3.4, 10.0.0.1")], b"");
    assert_eq!(r.status, 429);
    let r = s.request("GET", "/v1/asset-types", &[("X-Forwarded-For", "10.0.0.2")], b"");
    assert_eq!(r.status, 200);
    drop(slow);
}

/// h2c is off unless asked for; with `--h2c` prior-knowledge HTTP/2 works
/// and a silent connection is still closed by the header timeout.
#[test]
fn h2c_only_with_the_flag() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let off = Server::start(&[]);
    let mut c = connect_from("127.0.0.1", off.addr);
    c.write_all(PREFACE).unwrap();
    c.write_all(SETTINGS).unwrap();
    let mut buf = [0u8; 64];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = c.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[..n].starts_with(b"HTTP/1.1 "), "answered HTTP/2 without --h2c: {:?}", &buf[..n]);

    let on = Server::start(&["--h2c", "--header-timeout", "1s"]);
    let mut c = connect_from("127.0.0.1", on.addr);
    c.write_all(PREFACE).unwrap();
    c.write_all(SETTINGS).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(n >= 9 && buf[3] == 4, "expected the server's SETTINGS frame, got {:?}", &buf[..n]);
    // HTTP/1.1 still works with --h2c.
    assert_eq!(on.request("GET", "/v1/asset-types", &[], b"").status, 200);
    let mut quiet = connect_from("127.0.0.1", on.addr);
    assert!(
        closed_within(&mut quiet, Duration::from_secs(5)),
        "a silent h2c-enabled connection was left open"
    );
}

const EVIL: &str = "https://evil.example";

/// #2a: in open mode another web site gets no CORS answer (so no reading)
/// and cannot act (403); `Origin: null` neither. No Allow-Credentials ever.
#[test]
fn open_mode_is_closed_to_other_origins() {
    let s = Server::start(&[]);
    let id = tus_upload(&s, None, b"secret", None);
    let id = id.rsplit('/').next().unwrap().to_string();
    for origin in [EVIL, "null", "http://localhost.evil.example"] {
        let r = s.request("GET", "/v1/assets", &[("Origin", origin)], b"");
        assert_eq!(r.status, 403, "{origin}: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), None, "{origin}");
        let r = s.request("DELETE", &format!("/v1/assets/{id}"), &[("Origin", origin)], b"");
        assert_eq!(r.status, 403, "{origin}");
        let r = s.request(
            "OPTIONS",
            "/files/",
            &[("Origin", origin), ("Access-Control-Request-Method", "DELETE")],
            b"",
        );
        assert_eq!(r.header("access-control-allow-origin"), None, "{origin} preflight");
    }
    assert_eq!(get_asset(&s, None, &id)["state"], "ready", "not deleted");
    // Pages on this machine (a dev server) may, without credentials.
    let r = s.request("GET", "/v1/assets", &[("Origin", "http://localhost:3000")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // Named origins may.
    let s = Server::start(&["--cors-origins", EVIL]);
    let r = s.request("GET", "/v1/assets", &[("Origin", EVIL)], b"");
    assert_eq!(r.header("access-control-allow-origin"), Some(EVIL));
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

/// Credentials only with the flag and an explicit list; the flag alone does not start.
#[test]
fn cors_credentials_need_the_flag_and_a_list() {
    let s = Server::start(&["--cors-origins", EVIL, "--cors-allow-credentials"]);
    let r = s.request("GET", "/v1/assets", &[("Origin", EVIL)], b"");
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cors-allow-credentials", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("explicit list of origins"));
}

/// #2b: DNS rebinding. A Host that is not this machine's name gets 421 in
/// open mode, so no page and no download URL names the attacker's host.
#[test]
fn open_mode_answers_only_loopback_hosts() {
    let s = Server::start(&[]);
    let port = s.addr.port();
    for host in [format!("rebind.attacker.example:{port}"), "10.0.0.1".into(), "127.0.0.1.nip.io".into()] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        write!(c, "GET /v1/assets HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let r = read_response(&mut c, false);
        assert_eq!(r.status, 421, "{host}: {r:?}");
        assert!(r.text().contains("open mode"), "{}", r.text());
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        write!(c, "GET /v1/assets HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).status, 200, "{host}");
    }
    // With keys, any Host is served (a key is needed anyway).
    let key = create_key(&s.dir, "p");
    std::thread::sleep(Duration::from_millis(1500));
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(
        c,
        "GET /v1/assets HTTP/1.1\r\nHost: uploads.example.com\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).status, 200);
}

/// #2c: `--behind-proxy` on loopback does not start in open mode.
#[test]
fn open_mode_refuses_to_run_behind_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--behind-proxy", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("behind a proxy") && err.contains("tusk keys create"), "{err}");
    // With a key it starts.
    create_key(dir.path(), "p");
    let s = Server::start_in(dir.path(), &["--behind-proxy"]);
    assert_eq!(s.request("GET", "/v1/assets", &[], b"").status, 401);
}

fn pairs(n: usize, value: &str) -> String {
    (0..n).map(|i| format!("k{i} {}", b64s(value))).collect::<Vec<_>>().join(",")
}

/// #3: Upload-Metadata is bounded (256 pairs, 16 KiB) and refused over it
/// with a message saying the limit, on tus and on the draft.
#[test]
fn upload_metadata_is_bounded() {
    let s = Server::start(&[]);
    let ok = pairs(256, "v");
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "1"), ("Upload-Metadata", &ok)], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let many = pairs(257, "v");
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "1"), ("Upload-Metadata", &many)], b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("ERR_INVALID_METADATA") && r.text().contains("256 pairs"), "{}", r.text());
    // The 33,708 pairs (126 KB): refused at once.
    let huge = (0..33_708).map(|i| format!("{i:x}")).collect::<Vec<_>>().join(",");
    let t = Instant::now();
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "1"), ("Upload-Metadata", &huge)], b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("at most 16384"), "{}", r.text());
    eprintln!("126 KB of Upload-Metadata refused in {:?}", t.elapsed());
    let big = format!("name {}", b64s(&"x".repeat(13_000)));
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "1"), ("Upload-Metadata", &big)], b"");
    assert_eq!(r.status, 400);
    // The draft shares the parser.
    let r = s.request(
        "POST",
        "/files/",
        &[("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?0"), ("Upload-Metadata", &many)],
        b"",
    );
    assert_eq!(r.status, 400, "{r:?}");
    // A file name in Content-Disposition counts toward the same bound.
    let cd = format!("attachment; filename=\"{}.bin\"", "n".repeat(20_000));
    let r = s.request(
        "POST",
        "/files/",
        &[("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?0"), ("Content-Disposition", &cd)],
        b"",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("at most 16384"), "{}", r.text());
}

/// #3/#4 for `/v1`: the JSON `metadata` has the same bounds, answered 422.
#[test]
fn api_metadata_is_bounded() {
    let s = Server::start(&[]);
    let many: serde_json::Map<String, serde_json::Value> =
        (0..257).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "metadata": many })));
    let v = error(&r, 422, "validation_failed");
    assert!(v["message"].as_str().unwrap().contains("at most 256"), "{v}");
    let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "metadata": { "k": "x".repeat(16 << 10) } })));
    let v = error(&r, 422, "validation_failed");
    assert_eq!(v["errors"][0]["code"], "too_large", "{v}");
    let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "metadata": { "k": "x".repeat(15 << 10) } })));
    assert_eq!(r.status, 201, "{r:?}");
}

/// #4 and #6: a list page is bounded in bytes and in records read. Assets
/// with the largest metadata allowed come back in pages of about 1 MiB, and
/// a filter that matches nothing answers at once (issue 14's index).
#[test]
fn list_pages_are_bounded() {
    let s = Server::start(&[]);
    let meta = json!({ "k": "x".repeat(15 << 10) });
    for _ in 0..100 {
        let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "metadata": meta, "size_bytes": 10 })));
        assert_eq!(r.status, 201);
    }
    let r = api(&s, "GET", "/v1/assets?limit=100", None, None);
    let v = json(&r);
    let n = v["data"].as_array().unwrap().len();
    assert!(r.body.len() < 2 << 20, "a page of {} bytes", r.body.len());
    assert!(n < 100 && v["next_cursor"].is_string(), "{n} assets, cursor {}", v["next_cursor"]);
    // Following the cursors reaches every asset once.
    let mut seen = n;
    let mut cursor = v["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let v = json(&api(&s, "GET", &format!("/v1/assets?limit=100&cursor={c}"), None, None));
        seen += v["data"].as_array().unwrap().len();
        cursor = v["next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 100);

    // 2,500 small assets, none of them audio. A filter reads only the index
    // entries under its state and type (issue 14; it used to read up to
    // 2,000 records per request and answer with a cursor to go on from):
    // nothing matches, so the first page is empty and the last.
    let s = Server::start(&[]);
    for _ in 0..2500 {
        assert_eq!(s.request("POST", "/files/", &[TUS, ("Upload-Length", "5")], b"").status, 201);
    }
    let v = json(&api(&s, "GET", "/v1/assets?type=audio&limit=1", None, None));
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    assert!(v["next_cursor"].is_null(), "no match, no cursor: {v}");
    let v = json(&api(&s, "GET", "/v1/assets?state=pending_upload&limit=1", None, None));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert!(v["next_cursor"].is_string(), "{v}");
}

fn partial(s: &Server, len: usize, seed: u64) -> String {
    let path = s.create(len as u64, &[("Upload-Concat", "partial")]);
    assert_eq!(s.patch(&path, 0, &bytes(len, seed), &[]).status, 204);
    path
}

fn final_of(s: &Server, parts: &[&str]) -> Resp {
    let v = format!("final;{}", parts.join(" "));
    s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v)], b"")
}

/// #5: a final may not list a part twice, nor more than 1,000 parts, nor
/// add up past `--max-size`.
#[test]
fn concatenation_cannot_multiply_bytes() {
    let s = Server::start(&["--max-size", "100000"]);
    let p = partial(&s, 60_000, 1);
    let q = partial(&s, 30_000, 2);
    let r = final_of(&s, &[&p, &q, &p]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("listed twice"), "{}", r.text());
    let copies = vec![q.as_str(); 3000];
    let r = final_of(&s, &copies);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("at most 1000 parts"), "{}", r.text());
    let p2 = partial(&s, 50_000, 3);
    let r = final_of(&s, &[&p, &p2]);
    assert_eq!(r.status, 413, "110,000 bytes past --max-size: {r:?}");
    let r = final_of(&s, &[&p, &q]);
    assert_eq!(r.status, 201, "{r:?}");
    // Deferred partials cannot dodge the limit.
    let d = s.create(0, &[]);
    let _ = d;
    let r =
        s.request("POST", "/files/", &[TUS, ("Upload-Defer-Length", "1"), ("Upload-Concat", "partial")], b"");
    let dp = Server::path_of(r.header("location").unwrap());
    let r = final_of(&s, &[&p, &dp]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("length must be known"), "{}", r.text());
}

/// #5: assembly checks the free-space reserve first (507, nothing written).
#[test]
fn concatenation_respects_the_free_space_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED concatenation_respects_the_free_space_reserve: cannot mount a tmpfs here (needs root)"
        );
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let s = Server::start_in(&dir.path().join("data"), &["--min-free-space", "6MiB"]);
    let p = partial(&s, 3 << 20, 4);
    let q = partial(&s, 3 << 20, 5);
    // ~10 MiB free: 6 MiB to join plus 6 MiB in reserve do not fit.
    let r = final_of(&s, &[&p, &q]);
    assert_eq!(r.status, 507, "{r:?}");
    assert!(r.text().contains("ERR_STORAGE_FULL"), "{}", r.text());
    let files = walk_files(&dir.path().join("data/uploads"));
    assert_eq!(files, 2, "only the two partials' files exist");
}

fn walk_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += walk_files(&p);
        } else {
            n += 1;
        }
    }
    n
}

/// #7: once a key has existed, deleting the key files locks everyone out
/// (401, logged), also after a restart; it never reopens by itself.
#[test]
fn deleting_the_key_files_does_not_reopen_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "p");
    let mut s = Server::start_in(dir.path(), &[]);
    assert_eq!(api(&s, "GET", "/v1/assets", Some(&key), None).status, 200);
    for e in std::fs::read_dir(dir.path().join("keys")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.request("GET", "/v1/assets", &[], b"").status, 401);
    assert_eq!(s.request("POST", "/files/", &[TUS, ("Upload-Length", "1")], b"").status, 401);
    assert!(s.logs().contains("every API key file is gone"), "{}", s.logs());
    s.kill9();
    let s = Server::start_in(dir.path(), &[]);
    assert_eq!(s.request("GET", "/v1/assets", &[], b"").status, 401);
    assert!(!s.logs().contains("OPEN MODE"), "{}", s.logs());
}

/// A server with two projects' keys and an upload of 10 bytes made by the
/// first: (data dir, server, upload path, "Bearer" of a, key of b).
fn two_projects() -> (tempfile::TempDir, Server, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let a = create_key(dir.path(), "a");
    let b = create_key(dir.path(), "b");
    let s = Server::start_in(dir.path(), &[]);
    let auth_a = format!("Bearer {a}");
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "10"), ("Authorization", &auth_a)], b"");
    let path = Server::path_of(r.header("location").unwrap());
    (dir, s, path, auth_a, b)
}

/// #8: another project's HEAD, PATCH or DELETE on an upload answers 404 and
/// does not interrupt the owner's PATCH in flight.
#[test]
fn another_project_cannot_interrupt_an_upload() {
    let (_dir, s, path, auth_a, b) = two_projects();
    let auth_b = format!("Bearer {b}");
    let mut running = s.open(
        "PATCH",
        &path,
        &[TUS, OCTET, ("Upload-Offset", "0"), ("Content-Length", "10"), ("Authorization", &auth_a)],
    );
    running.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let theirs = [("Authorization", auth_b.as_str())];
    assert_eq!(s.request("HEAD", &path, &[TUS, theirs[0]], b"").status, 404);
    assert_eq!(s.patch(&path, 0, b"x", &theirs).status, 404);
    assert_eq!(s.request("DELETE", &path, &[TUS, theirs[0]], b"").status, 404);
    let draft = [("Upload-Draft-Interop-Version", "6"), theirs[0]];
    assert_eq!(s.request("HEAD", &path, &draft, b"").status, 404);
    let id = path.rsplit('/').next().unwrap();
    assert_eq!(api(&s, "DELETE", &format!("/v1/assets/{id}"), Some(&b), None).status, 404);
    running.write_all(b"world").unwrap();
    let r = read_response(&mut running, false);
    assert_eq!(r.status, 204, "the owner's PATCH ran to its end: {r:?}");
}

/// #10: a removed upload is 410 to its project and 404 to every other.
#[test]
fn removed_uploads_are_not_confirmed_to_outsiders() {
    let (_dir, s, path, auth_a, b) = two_projects();
    let auth_b = format!("Bearer {b}");
    assert_eq!(s.request("DELETE", &path, &[TUS, ("Authorization", &auth_a)], b"").status, 204);
    assert_eq!(s.request("HEAD", &path, &[TUS, ("Authorization", &auth_a)], b"").status, 410);
    let r = s.request("HEAD", &path, &[TUS, ("Authorization", &auth_b)], b"");
    assert_eq!(r.status, 404);
    let r = s.request("GET", &path, &[TUS, ("Authorization", &auth_b)], b"");
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("terminated"), "{}", r.text());
}

/// #11: the draft caps lengths like tus (i64), Content-Length included.
#[test]
fn the_draft_caps_content_length() {
    let s = Server::start(&[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(
        c,
        "POST /files/ HTTP/1.1\r\nHost: {}\r\nUpload-Draft-Interop-Version: 6\r\nUpload-Complete: ?1\r\n\
         Content-Length: 18446744073709551613\r\nConnection: close\r\n\r\nabc",
        s.addr
    )
    .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        json(&r)["detail"].as_str().map(|d| d.contains("largest upload length")),
        Some(true),
        "{}",
        r.text()
    );
    let r = s.request("GET", "/v1/assets", &[], b"");
    assert_eq!(json(&r)["data"].as_array().unwrap().len(), 0, "nothing was created");
}

/// #12: the data directory is 0700 and what the server writes is 0600,
/// whatever the umask it was started with.
#[test]
fn files_are_private_to_the_server_user() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask swaps the test process's creation mask; the children inherit it.
    let old = unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = create_key(&data, "p");
    let s = Server::start_in(&data, &[]);
    let up = tus_upload(&s, Some(&key), b"private bytes", None);
    let _ = up;
    unsafe { libc::umask(old) };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if d != data || p.file_name().is_some_and(|n| n != "uploads") {
                    assert_eq!(mode(&p) & 0o077, 0, "{} is open to others", p.display());
                }
                stack.push(p);
            } else {
                assert_eq!(mode(&p) & 0o077, 0, "{} is open to others ({:o})", p.display(), mode(&p));
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "upload file, key, sled files: {checked}");
}

/// Hostile requests never crash the server: after all of the above kinds
/// of input it still answers (a smoke check over a mix on one server).
#[test]
fn the_server_survives_a_mix_of_garbage() {
    let s = Server::start(&["--header-timeout", "2s"]);
    let garbage: [&[u8]; 6] = [
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"PATCH /files/../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n",
        b"HEAD /files/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Concat: final;;;\r\n\r\n",
    ];
    for g in garbage {
        let mut c = TcpStream::connect(s.addr).unwrap();
        let _ = c.write_all(g);
        let _ = closed_within(&mut c, Duration::from_secs(5));
    }
    assert_eq!(s.request("GET", "/v1/asset-types", &[], b"").status, 200);
}
