//! `cargo bench --bench tus -- --storage s3`: issue 16's figures, in one run
//! on one fresh Garage (started here by `scripts/garage-start`):
//!
//! - `direct`: the limit. The same number of bytes sent straight to Garage as
//!   one multipart upload, parts in sequence, with the part size and the S3
//!   client tusk uses (`tusk::backends::s3::client`), from memory (nothing to
//!   read, nothing to hash). Measured before tusk's run and after the peer's
//!   (`direct.multipart_*`, for the table), and in alternating pairs with
//!   one PATCH into tusk from the same process (`pairs.*`): the goal
//!   against the limit is taken from the pairs.
//! - `tusk`: `tusk serve --storage s3` measured by `peers/bench.sh` (upload
//!   phases; every upload verified by GET), then two fresh servers for the
//!   peak RSS of one 16 MiB and one 4 GiB PATCH (1 GiB with --quick).
//! - `node-s3`: @tus/server with @tus/s3-store (`peers/start-node-s3.sh`), the
//!   same part size, the same bucket, the same harness.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tusk::backends::s3::client::{S3Client, S3Settings};

use super::{Run, Tusk, append_line, bench_sh, fmt_num, free_port, md_table, memory_by_size, ratio};

/// The part size both servers and the direct upload use, MiB.
const PART_MIB: u64 = 16;
/// tusk's default `--s3-buffer`, MiB: the goal allows it on top of 64 MiB.
const BUFFER_MIB: f64 = 256.0;

/// A single-node Garage for this run; killed on drop.
pub(super) struct Garage {
    pid: u32,
    vars: BTreeMap<String, String>,
}

impl Garage {
    pub(super) fn start(root: &Path, dir: &Path) -> Result<Garage, String> {
        let out = Command::new(root.join("scripts/garage-start"))
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running scripts/garage-start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/garage-start failed (install Garage: cargo install garage --version 2.5.0 --locked): {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let vars: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let pid = vars
            .get("GARAGE_PID")
            .and_then(|p| p.parse().ok())
            .ok_or("garage-start printed no GARAGE_PID")?;
        Ok(Garage { pid, vars })
    }

    fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or("")
    }

    /// S3_ENDPOINT, S3_BUCKET, S3_REGION and the key, for the peer's script.
    fn env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(k, _)| k.as_str() != "GARAGE_PID")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn tusk_args(&self) -> Vec<String> {
        [
            "--storage",
            "s3",
            "--s3-endpoint",
            self.var("S3_ENDPOINT"),
            "--s3-bucket",
            self.var("S3_BUCKET"),
            "--s3-region",
            self.var("S3_REGION"),
            "--s3-path-style",
            "--s3-prefix",
            "tusk/",
            "--s3-part-size",
            &format!("{PART_MIB}MiB"),
            "--s3-access-key-id",
            self.var("AWS_ACCESS_KEY_ID"),
            "--s3-secret-access-key",
            self.var("AWS_SECRET_ACCESS_KEY"),
        ]
        .into_iter()
        .map(str::to_string)
        .collect()
    }

    fn client(&self) -> Result<S3Client, String> {
        S3Client::new(&S3Settings {
            endpoint: self.var("S3_ENDPOINT").to_string(),
            bucket: self.var("S3_BUCKET").to_string(),
            region: self.var("S3_REGION").to_string(),
            path_style: true,
            access_key_id: self.var("AWS_ACCESS_KEY_ID").to_string(),
            secret_access_key: self.var("AWS_SECRET_ACCESS_KEY").to_string(),
        })
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// What `run` needs from the main bench.
pub(super) struct Ctx<'a> {
    pub root: &'a Path,
    pub peers: &'a Path,
    pub data_root: &'a Path,
    pub results: &'a Path,
    pub ts: &'a str,
    pub tusk_bin: &'a Path,
    pub knobs: &'a [(String, String)],
    pub with_peer: bool,
    pub quick: bool,
}

/// The servers of the S3 report, in order.
pub(super) fn servers(with_peer: bool) -> Vec<String> {
    let mut s = vec!["tusk".to_string()];
    if with_peer {
        s.push("node-s3".into());
    }
    s.push("direct".into());
    s
}

/// Runs every server of the S3 mode; returns (all figures ok, runs).
pub(super) fn run(cx: &Ctx) -> Result<(bool, BTreeMap<String, Run>), String> {
    let garage_dir = cx.data_root.join(format!("garage-{}", cx.ts));
    let garage = Garage::start(cx.root, &garage_dir)?;
    let big_mib: u64 = std::env::var("BENCH_BIG_MIB")
        .ok()
        .or_else(|| cx.knobs.iter().find(|(k, _)| k == "BENCH_BIG_MIB").map(|(_, v)| v.clone()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut knobs = cx.knobs.to_vec();
    if std::env::var_os("BENCH_PHASES").is_none() {
        // Creation and HEAD rates do not touch the bucket.
        knobs.push(("BENCH_PHASES".into(), "ingest,concurrency".into()));
    }
    let mut ok = true;
    let mut runs = BTreeMap::new();
    let direct_tsv = cx.results.join(format!("{}-direct.tsv", cx.ts));
    let _ = fs::remove_file(&direct_tsv);
    let mut direct = Vec::new();
    direct.push(direct_multipart(&garage, big_mib << 20, 0)?);

    // tusk
    let tsv = cx.results.join(format!("{}-tusk.tsv", cx.ts));
    let _ = fs::remove_file(&tsv);
    eprintln!("\n=== bench tus --storage s3: tusk ===");
    let args = garage.tusk_args();
    let data = cx.data_root.join(format!("tusk-s3-{}", cx.ts));
    let log = cx.results.join(format!("tusk-s3-{}.server.log", cx.ts));
    let mut server = Tusk::start_with(cx.tusk_bin, &data, &log, &args)?;
    let url = format!("http://{}/files/", server.addr);
    let pid = server.child.id().to_string();
    // No data directory: the harness checks every upload by GET.
    let rc = bench_sh(cx.peers, &[&url, &pid], "tusk", &tsv, &knobs)?;
    let pairs = one_patch_pairs(
        &garage,
        &server.addr,
        server.child.id(),
        big_mib << 20,
        if cx.quick { 2 } else { 4 },
    )?;
    server.stop();
    ok &= rc == 0;
    let (small, big) = if cx.quick { (16, 1024) } else { (16, 4096) };
    memory_by_size(cx.tusk_bin, cx.data_root, cx.ts, &tsv, small, big, &args)?;
    append_line(&tsv, &pairs.tusk_lines)?;
    runs.insert("tusk".to_string(), Run::load(&tsv).map_err(|e| e.to_string())?);

    // @tus/server with @tus/s3-store
    if cx.with_peer {
        eprintln!("\n=== bench tus --storage s3: node-s3 (@tus/s3-store) ===");
        let tsv = cx.results.join(format!("{}-node-s3.tsv", cx.ts));
        let _ = fs::remove_file(&tsv);
        let port = free_port()?;
        let log = fs::File::create(cx.results.join(format!("node-s3-{}.server.log", cx.ts)))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(cx.peers.join("start-node-s3.sh"))
            .arg(port.to_string())
            .envs(garage.env())
            .env("PART_SIZE", (PART_MIB << 20).to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting start-node-s3.sh: {e}"))?;
        let url = format!("http://127.0.0.1:{port}/files/");
        let ready = wait_ready(port, Duration::from_secs(300));
        let rc = if ready {
            bench_sh(cx.peers, &[&url, &child.id().to_string()], "node-s3", &tsv, &knobs)?
        } else {
            eprintln!("bench tus: @tus/s3-store did not answer on {url}");
            1
        };
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        ok &= rc == 0;
        runs.insert("node-s3".to_string(), Run::load(&tsv).map_err(|e| e.to_string())?);
    }

    direct.push(direct_multipart(&garage, big_mib << 20, 1)?);
    let mut lines = pairs.direct_lines;
    for (i, (secs, mbps)) in direct.iter().enumerate() {
        lines.push_str(&format!(
            "direct\tdirect.multipart_{}\t{mbps:.1}\tMB/s\t{big_mib} MiB in {secs:.3} s, {PART_MIB} MiB parts in sequence, \
             tusk's S3 client, from memory\n",
            if i == 0 { "before" } else { "after" }
        ));
    }
    let best = direct.iter().map(|d| d.1).fold(0.0, f64::max);
    lines.push_str(&format!(
        "direct\tingest.single_patch\t{best:.1}\tMB/s\tthe better of the direct multipart uploads\n"
    ));
    append_line(&direct_tsv, &lines)?;
    runs.insert("direct".to_string(), Run::load(&direct_tsv).map_err(|e| e.to_string())?);
    drop(garage);
    let _ = fs::remove_dir_all(&garage_dir);
    Ok((ok, runs))
}

/// The figures of [`one_patch_pairs`], as TSV lines for each side.
struct Pairs {
    tusk_lines: String,
    direct_lines: String,
}

/// The goal against the limit, measured in `n` alternating pairs on the
/// same Garage: a direct multipart upload, then one PATCH of as many
/// (different) bytes into tusk, both sent from memory by a client in this
/// process. Garage's speed drifts by a fifth within minutes here, so a
/// direct figure taken once, minutes away from tusk's, says more about the
/// drift than about tusk; each side's best of `n`, taken side by side, and
/// the median of the pairs' ratios do not.
fn one_patch_pairs(garage: &Garage, addr: &str, tusk_pid: u32, len: u64, n: u64) -> Result<Pairs, String> {
    let (mut tusk, mut direct, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let direct_side = || -> Result<(f64, f64), String> {
            let g0 = cpu_secs(garage.pid);
            let (_, d) = direct_multipart(garage, len, 100 + 2 * i)?;
            Ok((d, cpu_secs(garage.pid) - g0))
        };
        let tusk_side = || -> Result<(f64, f64, f64), String> {
            eprintln!("[bench tus] pair {}: one PATCH of {} MiB into tusk", i + 1, len >> 20);
            let body = generated(len, 101 + 2 * i);
            quiesce();
            let (g0, t0) = (cpu_secs(garage.pid), cpu_secs(tusk_pid));
            let (secs, verified) = super::upload_bytes(addr, len, 101 + 2 * i, Some(&body))?;
            let t = len as f64 / 1e6 / secs;
            eprintln!("[bench tus] pair {}: tusk {t:.1} MB/s ({secs:.3} s, {verified})", i + 1);
            Ok((t, cpu_secs(tusk_pid) - t0, cpu_secs(garage.pid) - g0))
        };
        // Alternating which goes first (DT, TD, ...): whatever drifts
        // during the run falls on both sides alike.
        let ((d, d_garage), (t, t_cpu, t_garage)) = if i % 2 == 0 {
            let d = direct_side()?;
            (d, tusk_side()?)
        } else {
            let t = tusk_side()?;
            (direct_side()?, t)
        };
        eprintln!(
            "[bench tus] pair {}: tusk {t:.1} MB/s (cpu tusk {t_cpu:.2} s, garage {t_garage:.2} s), direct {d:.1} MB/s \
             (cpu garage {d_garage:.2} s)",
            i + 1
        );
        tusk.push(t);
        direct.push(d);
        ratios.push(t / d);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ");
    let mib = len >> 20;
    Ok(Pairs {
        tusk_lines: format!(
            "tusk\tpairs.one_patch\t{:.1}\tMB/s\tbest of {n} PATCHes of {mib} MiB from memory, each after a direct upload: {}\n\
             tusk\tpairs.median_ratio\t{median:.3}\tx\tmedian of the {n} pairs' tusk/direct ratios\n",
            best(&tusk),
            list(&tusk)
        ),
        direct_lines: format!(
            "direct\tpairs.one_patch\t{:.1}\tMB/s\tbest of {n} direct multipart uploads of {mib} MiB, each before a tusk PATCH: {}\n",
            best(&direct),
            list(&direct)
        ),
    })
}

/// The bytes `seed` generates (as `super::for_each_generated` sends them).
fn generated(len: u64, seed: u64) -> Bytes {
    let mut data = vec![0u8; len as usize];
    for (i, chunk) in data.chunks_mut(1 << 20).enumerate() {
        super::fill_generated(chunk, (seed << 32) + i as u64);
    }
    Bytes::from(data)
}

/// Before a timed upload: the previous upload's blocks written out of the
/// page cache (`sync`), so the kernel's write-back of one side's gigabyte
/// does not run during the other side's measurement, and the clean cache
/// dropped where allowed (root): Garage's writes then land in memory the
/// guest has touched before, which costs it about a quarter less CPU here
/// than memory touched for the first time, and the same for every upload.
fn quiesce() {
    let _ = Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", "1");
}

/// User and system CPU seconds of a process so far (0 if it is gone).
fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): utime is the 12th.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

fn wait_ready(port: u16, within: Duration) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!(
                "OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n"
            );
            let mut answer = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 2")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// One multipart upload of `len` generated bytes (distinct per `seed`, so
/// Garage's block deduplication never helps), parts in sequence. Returns
/// (seconds, MB/s) from the creation to the completion, checked by HEAD.
fn direct_multipart(garage: &Garage, len: u64, seed: u64) -> Result<(f64, f64), String> {
    let client = garage.client()?;
    let ps = PART_MIB << 20;
    let data = generated(len, seed);
    quiesce();
    let key = format!("direct/{seed}-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    eprintln!("[bench tus] direct: {} MiB as one multipart upload straight to Garage", len >> 20);
    let secs = runtime.block_on(async {
        let started = Instant::now();
        let upload = client.create_multipart(&key, &[]).await.map_err(|e| format!("direct: {e}"))?;
        let mut etags = Vec::new();
        let mut at = 0u64;
        let mut number = 1u16;
        while at < len {
            let n = ps.min(len - at);
            let part = data.slice(at as usize..(at + n) as usize);
            etags.push(
                client
                    .upload_part(&key, &upload, number, vec![part], n)
                    .await
                    .map_err(|e| format!("direct: {e}"))?,
            );
            at += n;
            number += 1;
        }
        client.complete(&key, &upload, &etags).await.map_err(|e| format!("direct: {e}"))?;
        let secs = started.elapsed().as_secs_f64();
        match client.head_object(&key).await.map_err(|e| format!("direct: {e}"))? {
            Some(stored) if stored == len => {}
            other => return Err(format!("direct: the object holds {other:?} bytes, not {len}")),
        }
        // Left in place: deleting it would set Garage collecting its blocks
        // (CPU and database locks) while the next server is measured.
        Ok::<f64, String>(secs)
    })?;
    let mbps = len as f64 / 1e6 / secs;
    eprintln!("[bench tus] direct: {mbps:.1} MB/s ({secs:.3} s)");
    Ok((secs, mbps))
}

/// (figure, label, unit)
const FIGURES: [(&str, &str, &str); 6] = [
    ("ingest.single_patch", "one PATCH of the whole upload (direct: one multipart upload)", "MB/s"),
    ("ingest.chunked", "same size as 8 MiB PATCHes, one connection", "MB/s"),
    ("concurrency.aggregate", "concurrent uploads, aggregate", "MB/s"),
    ("server.peak_rss", "peak RSS over the run (VmHWM)", "MiB"),
    ("memory.rss_small_upload", "peak RSS, fresh server, one 16 MiB PATCH", "MiB"),
    ("memory.rss_big_upload", "peak RSS, fresh server, one 4 GiB PATCH (1 GiB quick)", "MiB"),
];

pub(super) fn report(servers: &[String], runs: &BTreeMap<String, Run>) -> String {
    let empty = Run::default();
    let get = |s: &str| runs.get(s).unwrap_or(&empty);
    let (tusk, peer, direct) = (get("tusk"), get("node-s3"), get("direct"));
    let mut o = String::new();
    let mut head = vec!["figure".to_string(), "unit".to_string()];
    head.extend(servers.iter().cloned());
    head.push("tusk/node-s3".into());
    let mut rows = Vec::new();
    for (name, label, unit) in FIGURES {
        let mut r = vec![format!("{label} (`{name}`)"), unit.to_string()];
        r.extend(servers.iter().map(|s| get(s).cell(name)));
        r.push(ratio(tusk.num(name), peer.num(name)));
        rows.push(r);
    }
    for (name, label) in [
        ("pairs.one_patch", "one PATCH from memory, best of the alternating pairs"),
        ("pairs.median_ratio", "median tusk/direct ratio of the pairs"),
    ] {
        let mut r = vec![
            format!("{label} (`{name}`)"),
            get("tusk").figs.get(name).map_or("", |f| f.1.as_str()).into(),
        ];
        r.extend(servers.iter().map(|s| get(s).cell(name)));
        r.push("-".into());
        rows.push(r);
    }
    for name in ["direct.multipart_before", "direct.multipart_after"] {
        let mut r = vec![format!("direct multipart upload (`{name}`)"), "MB/s".into()];
        r.extend(servers.iter().map(|s| get(s).cell(name)));
        r.push("-".into());
        rows.push(r);
    }
    o.push_str(&md_table(&head, &rows));

    // Issue 16's goals, as ratios of this run.
    let one = tusk.num("ingest.single_patch");
    let peak = tusk.num("server.peak_rss");
    let (small, big) = (tusk.num("memory.rss_small_upload"), tusk.num("memory.rss_big_upload"));
    let goal = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "-",
    };
    let frac = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
    // Against the limit: the pairs, side by side (see `one_patch_pairs`).
    let vs_direct = frac(tusk.num("pairs.one_patch"), direct.num("pairs.one_patch"));
    let median = tusk.num("pairs.median_ratio");
    let vs_peer = frac(one, peer.num("ingest.single_patch"));
    let conc_peer = frac(tusk.num("concurrency.aggregate"), peer.num("concurrency.aggregate"));
    let flat = frac(big, small);
    let show =
        |v: Option<f64>, suffix: &str| v.map_or("-".to_string(), |v| format!("{}{suffix}", fmt_num(v)));
    let rows = vec![
        vec![
            "one PATCH / direct multipart ≥ 0.90 (best of the pairs each)".into(),
            show(vs_direct, ""),
            goal(vs_direct.map(|v| v >= 0.9)).into(),
        ],
        vec![
            "the same, median of the pairs' ratios".into(),
            show(median, ""),
            goal(median.map(|v| v >= 0.9)).into(),
        ],
        vec![
            "one PATCH / @tus/s3-store ≥ 2×".into(),
            show(vs_peer, "×"),
            goal(vs_peer.map(|v| v >= 2.0)).into(),
        ],
        vec![
            "concurrent uploads / @tus/s3-store ≥ 2×".into(),
            show(conc_peer, "×"),
            goal(conc_peer.map(|v| v >= 2.0)).into(),
        ],
        vec![
            format!("peak RSS ≤ 64 MiB + the {BUFFER_MIB:.0} MiB buffer budget"),
            show(peak, " MiB"),
            goal(peak.map(|v| v <= 64.0 + BUFFER_MIB)).into(),
        ],
        vec![
            "peak RSS 4 GiB / 16 MiB PATCH within ±10 %".into(),
            show(flat, ""),
            goal(flat.map(|v| (0.9..=1.1).contains(&v))).into(),
        ],
    ];
    o.push_str("\nIssue 16's goals, from this run:\n\n");
    o.push_str(&md_table(&["goal".into(), "this run".into(), "".into()], &rows));
    o.push_str(
        "\nAll on one Garage on this machine: Garage shares the cores with the server and the client, so \
         every server's figure is bound by what Garage takes per byte.\n",
    );
    o
}
