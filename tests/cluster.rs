//! Several tusk nodes on one PostgreSQL and one Garage bucket, behind
//! HAProxy (round-robin), as `--database-url` with `--storage s3` runs in
//! production: every request of an upload may land on another node.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, create_key, keys_cli, node};
use common::*;

const MIB: usize = 1 << 20;

fn auth(c: &Cluster) -> (String, String) {
    ("Authorization".to_string(), c.auth())
}

/// A request to `addr` with the cluster's key.
fn call(
    c: &Cluster,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let (k, v) = auth(c);
    let mut h: Vec<(&str, &str)> = vec![(k.as_str(), v.as_str())];
    h.extend_from_slice(headers);
    request(addr, method, path, &h, body)
}

fn create(c: &Cluster, addr: SocketAddr, len: usize) -> String {
    let len = len.to_string();
    let r = call(c, addr, "POST", "/files/", &[TUS, ("Upload-Length", &len)], b"");
    assert_eq!(r.status, 201, "create: {r:?}");
    Server::path_of(r.header("location").unwrap())
}

fn patch(c: &Cluster, addr: SocketAddr, path: &str, offset: usize, data: &[u8]) -> Resp {
    let off = offset.to_string();
    call(c, addr, "PATCH", path, &patch_headers(&off, &[]), data)
}

fn offset(c: &Cluster, addr: SocketAddr, path: &str) -> Resp {
    call(c, addr, "HEAD", path, &[TUS], b"")
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_string()
}

/// The asset once it is `ready` (or whatever it ends as), read through `addr`.
fn settled(c: &Cluster, addr: SocketAddr, id: &str) -> serde_json::Value {
    poll(Duration::from_secs(60), || {
        let r = call(c, addr, "GET", &format!("/v1/assets/{id}"), &[], b"");
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        (v["state"] == "ready" || v["state"] == "failed").then_some(v)
    })
    .unwrap_or_else(|| panic!("asset {id} never settled"))
}

/// The asset's bytes by its signed download URL, through `addr`.
fn download(addr: SocketAddr, asset: &serde_json::Value) -> Vec<u8> {
    let url = asset["download_url"].as_str().expect("download_url");
    let r = request(addr, "GET", &Server::path_of(url), &[], b"");
    assert_eq!(r.status, 200, "download: {}", r.text());
    r.body
}

#[test]
fn an_upload_spread_over_three_nodes_completes_once_with_its_bytes() {
    let c = Cluster::start(3);
    let lb = c.proxy.addr;
    let data = bytes(12 * MIB + 4321, 7);
    let path = create(&c, lb, data.len());
    // 5 MiB parts: a whole part, a part and a tail, then the rest, each
    // through the balancer (so through another node each time).
    let mut at = 0;
    for chunk in [5 * MIB, 5 * MIB + 1000, data.len() - 10 * MIB - 1000] {
        let r = patch(&c, lb, &path, at, &data[at..at + chunk]);
        assert_eq!(r.status, 204, "PATCH at {at}: {}", r.text());
        at += chunk;
        // Every node sees the same offset at once.
        for n in &c.nodes {
            let h = offset(&c, n.addr, &path);
            assert_eq!(h.status, 200, "HEAD on {}: {h:?}", n.addr);
            assert_eq!(h.header("upload-offset"), Some(at.to_string().as_str()), "HEAD on {}", n.addr);
        }
    }
    let asset = settled(&c, c.nodes[1].addr, &id_of(&path));
    assert_eq!(asset["state"], "ready", "{asset}");
    assert_eq!(asset["sha256"], sha256_hex(&data));
    assert_eq!(asset["size_bytes"], data.len());
    let got = download(lb, &asset);
    assert_eq!(sha256_hex(&got), sha256_hex(&data), "the bytes served from the bucket");
}

struct Sse {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Ev {
    id: Option<String>,
    event: String,
    data: serde_json::Value,
}

impl Sse {
    fn open(c: &Cluster, addr: SocketAddr, last_id: Option<&str>) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!(
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: {}\r\n",
            c.auth()
        );
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l == "\r\n" {
                break;
            }
        }
        Sse { reader }
    }

    fn next(&mut self) -> Ev {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        loop {
            let mut l = String::new();
            self.reader.read_line(&mut l).expect("an event before the timeout");
            let l = l.trim_end_matches(['\r', '\n']);
            if !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()) {
                continue; // a chunk-size line
            }
            if l.is_empty() {
                if !event.is_empty() {
                    let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                    return Ev { id, event, data };
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

    /// The next events about `asset`, until one of `kind`.
    fn until(&mut self, asset: &str, kind: &str) -> Vec<Ev> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let e = self.next();
            if e.data["asset"]["id"] == asset {
                let done = e.event == kind;
                seen.push(e);
                if done {
                    return seen;
                }
            }
            assert!(Instant::now() < deadline, "no {kind} for {asset}: {seen:?}");
        }
    }
}

#[test]
fn events_made_on_one_node_stream_in_order_from_another_and_replay_on_a_third() {
    let c = Cluster::start(3);
    let (n1, n2, n3) = (c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr);
    let mut sse = Sse::open(&c, n1, None);
    let data = bytes(300_000, 3);
    let path = create(&c, n3, data.len());
    let id = id_of(&path);
    assert_eq!(patch(&c, n3, &path, 0, &data[..100_000]).status, 204);
    assert_eq!(patch(&c, n3, &path, 100_000, &data[100_000..]).status, 204);
    let events = sse.until(&id, "asset.ready");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"asset.created"), "{kinds:?}");
    assert!(kinds.contains(&"asset.progress"), "{kinds:?}");
    let processing = kinds.iter().position(|k| *k == "asset.processing").expect("processing");
    assert!(processing < kinds.len() - 1, "{kinds:?}");
    assert_eq!(events.last().unwrap().data["asset"]["sha256"], sha256_hex(&data));
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_deref().expect("an id")).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|i| i.trim_start_matches('c').parse::<u64>().unwrap());
    assert_eq!(ids, sorted, "one order");
    let last_seen = events[0].id.clone().unwrap();
    drop(sse);

    // After a reconnect elsewhere: what followed `asset.created`, replayed.
    let other = create(&c, n1, 5);
    let mut sse = Sse::open(&c, n2, Some(&last_seen));
    let replayed = sse.until(&id, "asset.ready");
    assert_eq!(replayed[0].event, "asset.progress", "{replayed:?}");
    let created = sse.until(&id_of(&other), "asset.created");
    assert_eq!(created.len(), 1);
}

#[test]
fn a_request_on_another_node_takes_the_upload_over_from_a_half_open_patch() {
    let c = Cluster::start(2);
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    let data = bytes(3 * MIB, 11);
    let path = create(&c, a, data.len());
    // On node A: a PATCH announcing every byte, sending a third, then silent.
    let total = data.len().to_string();
    let auth = c.auth();
    let mut stream = open(
        a,
        "PATCH",
        &path,
        &[("Authorization", &auth), TUS, ("Upload-Offset", "0"), OCTET, ("Content-Length", &total)],
    );
    stream.write_all(&data[..MIB]).unwrap();
    std::thread::sleep(Duration::from_millis(700));

    // On node B: HEAD asks A to let go and gets the bytes A stored.
    let started = Instant::now();
    let h = offset(&c, b, &path);
    assert_eq!(h.status, 200, "{h:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "hand-over took {:?}", started.elapsed());
    assert_eq!(h.header("upload-offset"), Some(MIB.to_string().as_str()));
    let answer = read_response_within(&mut stream, false, Duration::from_secs(5));
    assert!(answer.is_some_and(|r| r.status != 500), "node A's PATCH is answered, not cut");

    let r = patch(&c, b, &path, MIB, &data[MIB..]);
    assert_eq!(r.status, 204, "{}", r.text());
    let asset = settled(&c, a, &id_of(&path));
    assert_eq!(asset["sha256"], sha256_hex(&data));
}

#[test]
fn a_node_killed_mid_patch_leaves_a_true_offset_that_another_node_resumes() {
    let mut c = Cluster::start(3);
    let lb = c.proxy.addr;
    let data = bytes(12 * MIB, 5);
    let path = create(&c, lb, data.len());
    let victim = c.nodes[1].addr;
    let total = data.len().to_string();
    let auth = c.auth();
    let mut stream = open(
        victim,
        "PATCH",
        &path,
        &[("Authorization", &auth), TUS, ("Upload-Offset", "0"), OCTET, ("Content-Length", &total)],
    );
    stream.write_all(&data[..7 * MIB]).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.nodes[1].kill9();
    drop(stream);

    // Through the balancer (which skips the dead node): a true offset.
    let at = poll(Duration::from_secs(15), || {
        let h = offset(&c, lb, &path);
        (h.status == 200).then(|| h.header("upload-offset").unwrap().parse::<usize>().unwrap())
    })
    .expect("a HEAD through the balancer");
    assert!(at <= 7 * MIB, "offset {at} past the bytes sent");
    let r = patch(&c, lb, &path, at, &data[at..]);
    assert_eq!(r.status, 204, "resume from {at}: {}", r.text());
    let asset = settled(&c, lb, &id_of(&path));
    assert_eq!(asset["state"], "ready", "{asset}");
    assert_eq!(asset["sha256"], sha256_hex(&data));
    assert_eq!(sha256_hex(&download(lb, &asset)), sha256_hex(&data));
}

#[test]
fn keys_and_tokens_made_anywhere_count_on_every_node_at_once() {
    let c = Cluster::start(2);
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    // A key made by the CLI in the database: both nodes take it within a second.
    let key = create_key(&c.pg.url, "second");
    let bearer = format!("Bearer {key}");
    for n in [a, b] {
        let ok = poll(Duration::from_secs(1), || {
            (request(n, "GET", "/v1/assets", &[("Authorization", &bearer)], b"").status == 200).then_some(())
        });
        assert!(ok.is_some(), "node {n} did not take the new key within a second");
    }
    // Revoked by the CLI: refused everywhere within a second.
    let list = keys_cli(&c.pg.url, &["list"]);
    let line = String::from_utf8(list.stdout).unwrap();
    let key_id =
        line.lines().find(|l| l.contains("\tsecond\t")).unwrap().split('\t').next().unwrap().to_string();
    assert!(keys_cli(&c.pg.url, &["revoke", &key_id]).status.success());
    for n in [a, b] {
        let refused = poll(Duration::from_secs(1), || {
            (request(n, "GET", "/v1/assets", &[("Authorization", &bearer)], b"").status == 401).then_some(())
        });
        assert!(refused.is_some(), "node {n} still took the revoked key");
    }
    // An upload token made through node A works on node B straight away.
    let r = call(&c, a, "POST", "/v1/upload-tokens", &[("Content-Type", "application/json")], b"{}");
    assert_eq!(r.status, 201, "{}", r.text());
    let token: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let secret = format!("Bearer {}", token["token"].as_str().expect("the token's secret"));
    let r = request(b, "POST", "/files/", &[("Authorization", &secret), TUS, ("Upload-Length", "3")], b"");
    assert_eq!(r.status, 201, "token on the other node: {}", r.text());
    // Revoked through node B: node A refuses it.
    let token_id = token["id"].as_str().unwrap();
    assert_eq!(call(&c, b, "DELETE", &format!("/v1/upload-tokens/{token_id}"), &[], b"").status, 204);
    let refused = poll(Duration::from_secs(1), || {
        let r =
            request(a, "POST", "/files/", &[("Authorization", &secret), TUS, ("Upload-Length", "3")], b"");
        (r.status == 401).then_some(())
    });
    assert!(refused.is_some(), "node A still took the revoked token");
}

#[test]
fn the_database_away_for_ten_seconds_answers_503_then_every_upload_completes() {
    let c = Cluster::start(2);
    let lb = c.proxy.addr;
    let uploads: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let data = bytes(2 * MIB + i * 1000, 20 + i as u64);
            let path = create(&c, lb, data.len());
            assert_eq!(patch(&c, lb, &path, 0, &data[..MIB]).status, 204);
            (path, data)
        })
        .collect();
    c.pg.stop();
    let down = Instant::now();
    let (path, data) = &uploads[0];
    let r = patch(&c, lb, path, MIB, &data[MIB..]);
    assert_eq!(r.status, 503, "PATCH with the database away: {r:?}");
    assert!(!r.text().is_empty(), "a message says why");
    let r = call(&c, lb, "POST", "/files/", &[TUS, ("Upload-Length", "5")], b"");
    assert_eq!(r.status, 503, "creation with the database away: {r:?}");
    assert_eq!(offset(&c, lb, path).status, 503);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    c.pg.start_again();

    for (path, data) in &uploads {
        // The nodes reconnect by themselves; clients retry as they do.
        let at = poll(Duration::from_secs(20), || {
            let h = offset(&c, lb, path);
            (h.status == 200).then(|| h.header("upload-offset").unwrap().parse::<usize>().unwrap())
        })
        .expect("HEAD answers again once the database is back");
        assert_eq!(at, MIB, "nothing acknowledged was lost");
        let r = patch(&c, lb, path, at, &data[at..]);
        assert_eq!(r.status, 204, "{}", r.text());
    }
    for (path, data) in &uploads {
        let asset = settled(&c, lb, &id_of(path));
        assert_eq!(asset["sha256"], sha256_hex(data));
    }
    // Creations work again, and a third node can join.
    let n3 = node(&c.pg, &c.garage, &[]);
    let r = call(&c, n3.addr, "GET", &format!("/v1/assets/{}", id_of(&uploads[0].0)), &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn a_project_quota_counts_what_every_node_stored() {
    let c = Cluster::start(2);
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["projects", "set", "cluster", "--quota", "3MiB", "--database-url", &c.pg.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for n in [a, b] {
        let applied = poll(Duration::from_secs(2), || {
            let r = call(&c, n, "GET", "/v1/project", &[], b"");
            let p: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            (p["quota_bytes"] == 3 * MIB).then_some(())
        });
        assert!(applied.is_some(), "node {n} did not take the policy");
    }
    // 2 MiB stored through node A...
    let data = bytes(2 * MIB, 31);
    let path = create(&c, a, data.len());
    assert_eq!(patch(&c, a, &path, 0, &data).status, 204);
    // ...count on node B: 2 MiB more do not fit.
    let refused = poll(Duration::from_secs(3), || {
        let len = (2 * MIB).to_string();
        let r = call(&c, b, "POST", "/files/", &[TUS, ("Upload-Length", &len)], b"");
        (r.status == 413).then_some(r)
    })
    .expect("node B refuses what would cross the quota with node A's bytes");
    assert!(refused.text().contains("quota"), "{}", refused.text());
    let r = call(&c, b, "GET", "/v1/project", &[], b"");
    let p: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(p["usage"]["bytes_stored"], 2 * MIB, "{p}");
    // What still fits is taken anywhere.
    let len = MIB.to_string();
    assert_eq!(call(&c, b, "POST", "/files/", &[TUS, ("Upload-Length", &len)], b"").status, 201);
}

#[test]
fn processing_left_by_a_dead_node_is_taken_over_by_another() {
    let mut c = Cluster::start(2);
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    // Every byte stored, the length not yet declared.
    let data = bytes(200_000, 41);
    let r = call(&c, a, "POST", "/files/", &[TUS, ("Upload-Defer-Length", "1")], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let path = Server::path_of(r.header("location").unwrap());
    assert_eq!(patch(&c, a, &path, 0, &data).status, 204);
    // The bucket refuses reads for now: the PATCH declaring the length
    // completes the upload, and node A's processing waits for the bucket,
    // holding the asset's claim.
    c.garage.cli(&["bucket", "deny", "--read", "tusk", "--key", "tusk-key"]);
    let len = data.len().to_string();
    let r = call(&c, a, "PATCH", &path, &patch_headers(&len, &[("Upload-Length", &len)]), b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let id = id_of(&path);
    std::thread::sleep(Duration::from_secs(6));
    let r = call(&c, b, "GET", &format!("/v1/assets/{id}"), &[], b"");
    let asset: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(asset["state"], "processing", "node B leaves A's claim alone: {asset}");
    // Node A dies with the claim; the bucket reads again.
    c.nodes[0].kill9();
    c.garage.cli(&["bucket", "allow", "--read", "tusk", "--key", "tusk-key"]);
    let asset = settled(&c, b, &id);
    assert_eq!(asset["state"], "ready", "{asset}");
    assert_eq!(asset["sha256"], sha256_hex(&data));
}
