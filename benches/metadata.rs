//! `cargo bench --bench metadata [-- --records N] [-- --bin PATH]`
//!
//! Issue 14's figures: what the server costs with a million uploads stored,
//! against the same figures on a fresh data directory in the same run.
//!
//! 1. Seeds a data directory with N records (default 1,000,000) through the
//!    store's own API (`Store::put`, so the indexes are the server's):
//!    several projects, 2 % of uploads in flight (each with its first 4 KiB
//!    in a file, which start-up checks), the rest ready or failed,
//!    of every type, one asset in 1,000 an archive (and never a failed one).
//! 2. Starts the real `tusk serve` on it twice (the second is the restart)
//!    and times spawn → first answered request; reads RSS (VmRSS, VmHWM).
//! 3. `GET /v1/assets` filtered with no match (`state=failed&type=archive`)
//!    and with one match in 1,000 (`state=ready&type=archive`), 200 each:
//!    p50 / p99 latency; then a pass of 100 unfiltered pages of 100
//!    following the cursor, and RSS again.
//! 4. HEAD/s and POST/s (tus, 2 keep-alive clients, a few seconds each) on
//!    the seeded directory and on a fresh one: the ratio is the figure.
//!
//! Goals (issue 14): list p99 ≤ 20 ms each; restart ≤ 1 s; peak RSS ≤ 64 MiB
//! after start and after the list pass; HEAD/s and POST/s ≥ 90 % of fresh.
//! Results: stdout and `target/bench/results/metadata-<timestamp>.md`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use tusk::asset::sniff::Sniffed;
use tusk::asset::{AssetInfo, AssetState, AssetType};
use tusk::backends::files::Files;
use tusk::backends::sled_meta::SledMeta as Store;
use tusk::record::{Concat, Offset, UploadRecord};
use uuid::Uuid;

struct Opts {
    records: u64,
    bin: PathBuf,
    rate_secs: u64,
    /// Seed here, or reuse what an earlier run seeded here (`--data DIR`).
    data: Option<PathBuf>,
}

fn opts() -> Opts {
    let mut o =
        Opts { records: 1_000_000, bin: PathBuf::from(env!("CARGO_BIN_EXE_tusk")), rate_secs: 4, data: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => o.records = args.next().and_then(|v| v.parse().ok()).expect("--records N"),
            "--bin" => o.bin = PathBuf::from(args.next().expect("--bin PATH")),
            "--rate-secs" => o.rate_secs = args.next().and_then(|v| v.parse().ok()).expect("--rate-secs N"),
            "--data" => o.data = Some(PathBuf::from(args.next().expect("--data DIR"))),
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn main() {
    let o = opts();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-metadata");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    let big = o.data.clone().unwrap_or_else(|| root.join("big"));
    let fresh = root.join("fresh");
    let mut out = Vec::<String>::new();
    let mut say = |line: String| {
        println!("{line}");
        out.push(line);
    };
    say(format!("# metadata bench: {} records, {}", o.records, o.bin.display()));

    let t = Instant::now();
    let seeded = big.join("seeded.json");
    let ids: Vec<Uuid> = match fs::read(&seeded) {
        Ok(raw) => {
            say(format!("reusing the records seeded in {}", big.display()));
            serde_json::from_slice(&raw).unwrap()
        }
        Err(_) => {
            let ids = seed(&big, o.records);
            fs::write(&seeded, serde_json::to_vec(&ids).unwrap()).unwrap();
            say(format!("seeded {} records in {:.1} s", o.records, t.elapsed().as_secs_f64()));
            ids
        }
    };

    // First start after seeding, then the restart that counts.
    let first = Server::start(&o.bin, &big);
    say(format!("first start to first answer: {:.0} ms", first.started_ms));
    drop(first);
    let s = Server::start(&o.bin, &big);
    let (rss0, hwm0) = s.rss();
    say(format!(
        "restart to first answer: {:.0} ms (goal ≤ 1000); RSS after start {rss0:.1} MiB, peak {hwm0:.1} MiB (goal ≤ 64)",
        s.started_ms
    ));

    let none = latencies(&s.addr, "/v1/assets?state=failed&type=archive&limit=20", 200, |b| {
        assert!(b.contains("\"data\":[]"), "expected no match: {b}");
    });
    let one = latencies(&s.addr, "/v1/assets?state=ready&type=archive&limit=20", 200, |b| {
        assert!(
            b.matches("\"type\":\"archive\"").count() >= 1,
            "expected archives: {}",
            &b[..b.len().min(300)]
        );
    });
    let unfiltered = latencies(&s.addr, "/v1/assets?limit=20", 200, |_| {});
    for (name, l) in [
        ("state=failed&type=archive (no match)", &none),
        ("state=ready&type=archive (1 in 1000)", &one),
        ("unfiltered", &unfiltered),
    ] {
        say(format!("GET /v1/assets?{name}: p50 {:.2} ms, p99 {:.2} ms (goal p99 ≤ 20)", l.0, l.1));
    }
    let t = Instant::now();
    let pages = list_pass(&s.addr, 100);
    let (rss1, hwm1) = s.rss();
    say(format!(
        "{pages} unfiltered pages of 100 in {:.2} s; RSS after {rss1:.1} MiB, peak {hwm1:.1} MiB (goal ≤ 64)",
        t.elapsed().as_secs_f64()
    ));
    let rate = Duration::from_secs(o.rate_secs);
    let head_big = rate_of(&s.addr, rate, |i| head_request(ids[i % ids.len()]));
    let post_big = rate_of(&s.addr, rate, |_| post_request());
    drop(s);

    let s = Server::start(&o.bin, &fresh);
    let fresh_ids: Vec<Uuid> = (0..200).map(|_| create(&s.addr)).collect();
    let head_fresh = rate_of(&s.addr, rate, |i| head_request(fresh_ids[i % fresh_ids.len()]));
    let post_fresh = rate_of(&s.addr, rate, |_| post_request());
    drop(s);
    say(format!(
        "HEAD/s: {head_big:.0} at {} records, {head_fresh:.0} fresh ({:.0} %; goal ≥ 90)",
        o.records,
        100.0 * head_big / head_fresh
    ));
    say(format!(
        "POST/s: {post_big:.0} at {} records, {post_fresh:.0} fresh ({:.0} %; goal ≥ 90)",
        o.records,
        100.0 * post_big / post_fresh
    ));

    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/results");
    fs::create_dir_all(&results).unwrap();
    let ts = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let path = results.join(format!("metadata-{ts}.md"));
    fs::write(&path, out.join("\n") + "\n").unwrap();
    println!("written to {}", path.display());
    let _ = fs::remove_dir_all(&root);
}

// ---------------------------------------------------------------- seeding

/// Fills `dir` with `n` records (two threads); returns some ids to HEAD
/// (uploads in flight).
fn seed(dir: &Path, n: u64) -> Vec<Uuid> {
    let store = Store::open(dir).unwrap();
    let files = Files::open(dir).unwrap();
    let heads = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let (store, files) = (&store, &files);
                s.spawn(move || seed_part(store, files, w, n))
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    store.flush_blocking().unwrap();
    heads
}

fn seed_part(store: &Store, files: &Files, worker: u64, n: u64) -> Vec<Uuid> {
    let default = tusk::auth::project_id("default");
    let others: Vec<Uuid> = (0..3).map(|i| tusk::auth::project_id(&format!("p{i}"))).collect();
    let mut heads = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64 + worker;
    for i in (worker..n).step_by(2) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let r = rng % 1000;
        // Half in the project the bench lists (open mode's `default`).
        let project = if (i / 2) % 2 == 0 { default } else { others[(i as usize / 4) % 3] };
        let mut rec = UploadRecord::new(Uuid::now_v7(), project, Some(1 << 20), None, Concat::None);
        rec.metadata = Some("filename cGhvdG8uanBn,filetype aW1hZ2UvanBlZw==".into());
        let mut asset = AssetInfo::new(Some("photo.jpg".into()), None, Default::default());
        let kind = match r {
            0 => AssetType::Archive,
            1..=400 => AssetType::Image,
            401..=700 => AssetType::Video,
            701..=900 => AssetType::Audio,
            901..=990 => AssetType::Document,
            _ => AssetType::Other,
        };
        asset.sniffed =
            Some(Sniffed { kind, extension: None, content_type: "application/octet-stream".into() });
        if i % 50 == 0 {
            // In flight: its first page stored (start-up checks each file).
            rec.offset = Offset(4096);
            fs::write(files.path(rec.id), [7u8; 4096]).unwrap();
            if heads.len() < 500 && project == default {
                heads.push(rec.id);
            }
        } else {
            rec.offset = Offset(1 << 20);
            asset.transition(AssetState::Processing).unwrap();
            if i % 13 == 0 && kind != AssetType::Archive {
                asset.fail("bench", "failed for the bench").unwrap();
            } else {
                asset.width = Some(1920);
                asset.height = Some(1080);
                asset.transition(AssetState::Ready).unwrap();
            }
        }
        rec.asset = Some(asset);
        store.put(&rec).unwrap();
    }
    heads
}

// ---------------------------------------------------------------- the server

struct Server {
    child: Child,
    addr: String,
    started_ms: f64,
}

impl Server {
    fn start(bin: &Path, data: &Path) -> Server {
        let t = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tusk");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let addr = line[i + 20..].split('/').next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(120)).expect("tusk did not start");
        // The first answered request, not the log line.
        loop {
            if let Ok(mut c) = TcpStream::connect(&addr)
                && let Ok((200, _)) =
                    exchange(&mut c, "GET /v1/assets?limit=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Server { child, addr, started_ms: t.elapsed().as_secs_f64() * 1000.0 }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> (f64, f64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> f64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- HTTP

/// Sends one request and reads its answer: (status, body).
fn exchange(c: &mut TcpStream, req: &str) -> std::io::Result<(u16, String)> {
    c.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = c.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let len = if req.starts_with("HEAD") {
        0
    } else {
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0usize)
    };
    while buf.len() < head_end + len {
        let n = c.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    if head.to_ascii_lowercase().contains("location:") {
        let loc = head.lines().find(|l| l.to_ascii_lowercase().starts_with("location:")).unwrap();
        return Ok((status, loc[9..].trim().to_string()));
    }
    Ok((status, body))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

fn head_request(id: Uuid) -> String {
    format!("HEAD /files/{id} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\r\n")
}

fn post_request() -> String {
    "POST /files/ HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 100\r\nContent-Length: 0\r\n\r\n"
        .to_string()
}

fn create(addr: &str) -> Uuid {
    let mut c = TcpStream::connect(addr).unwrap();
    let (status, loc) = exchange(&mut c, &post_request()).unwrap();
    assert_eq!(status, 201, "{loc}");
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

/// (p50, p99) in ms of `n` GETs of `path` on one keep-alive connection.
fn latencies(addr: &str, path: &str, n: usize, check: impl Fn(&str)) -> (f64, f64) {
    let mut c = TcpStream::connect(addr).unwrap();
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, body) = exchange(&mut c, &get(path)).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{path}: {body}");
        check(&body);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (ms[n / 2], ms[(n * 99) / 100])
}

/// Follows the unfiltered list's cursor for up to `pages` pages of 100.
fn list_pass(addr: &str, pages: usize) -> usize {
    let mut c = TcpStream::connect(addr).unwrap();
    let mut cursor: Option<String> = None;
    for n in 0..pages {
        let path = match &cursor {
            Some(cur) => format!("/v1/assets?limit=100&cursor={cur}"),
            None => "/v1/assets?limit=100".into(),
        };
        let (status, body) = exchange(&mut c, &get(&path)).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        match v["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return n + 1,
        }
    }
    pages
}

/// Requests per second of 2 keep-alive clients sending `req(i)` for `time`.
fn rate_of(addr: &str, time: Duration, req: impl Fn(usize) -> String + Sync) -> f64 {
    let deadline = Instant::now() + time;
    let t = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let req = &req;
                s.spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let (status, _) = exchange(&mut c, &req(w + 2 * n)).unwrap();
                        assert!(status == 200 || status == 201, "status {status}");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / t.elapsed().as_secs_f64()
}
