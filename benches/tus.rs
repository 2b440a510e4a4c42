//! `cargo bench --bench tus [-- --quick] [-- --no-peers] [...]`
//!
//! End-to-end benchmark of the real `tusk` binary against the reference tus
//! servers in `../shared/peers/` (@tus/server and rustus), all measured by the
//! same harness (`peers/bench.sh`) in the same invocation:
//!
//! 1. copies `../shared/peers/` to `target/bench/peers/` (the shared folder is
//!    read-only; `.build/` (rustus) and `node/node_modules/` stay cached there;
//!    `TUSK_BENCH_PEERS=DIR` points elsewhere);
//! 2. starts `tusk serve` (the optimised binary cargo built for this bench,
//!    `CARGO_BIN_EXE_tusk`) on a loopback port with a fresh data directory
//!    and runs `bench.sh URL PID DATADIR` against it: one 1 GiB PATCH, 1 GiB
//!    as 8 MiB PATCHes, 64 concurrent uploads x 16 MiB, POST/s (wrk, hey),
//!    HEAD/s (hey), peak RSS (VmHWM), and the machine's own limits in that run
//!    (loopback TCP, loopback HTTP sink, sha256, disk, file creation). Every
//!    upload is verified byte for byte (sha256 or cmp) by bench.sh;
//! 3. unless `--no-peers`, runs the same harness against @tus/server and
//!    rustus (`peers/bench-peer.sh`), building rustus on first use;
//! 4. reads the figures back from the TSV bench.sh writes (`BENCH_TSV`) and
//!    prints one table: each figure per server, tusk/peer ratios, the limits
//!    of each run, tusk as % of the loopback sink, and the issue-4 goals.
//!
//! Options (after `--`):
//!   --quick        small sizes (128 MiB, 16 x 4 MiB, 2 s rate tests), tusk
//!                  only (add --peers to include the peers); about a minute
//!   --no-peers     tusk only          --peers     force the peers (with --quick)
//!   --only LIST    servers to run, comma list of tusk,node,rustus
//!   --bin PATH     benchmark this tusk binary instead of the one cargo built
//!   --keep-data    leave the data directories (deleted at the end otherwise)
//!   --drop-caches  `echo 1 > /proc/sys/vm/drop_caches` before each server
//!                  (same page-cache state for every server; needs root)
//!
//! Every `BENCH_*` variable of bench.sh (see its header) is passed through and
//! wins over the defaults set here. Results: stdout, plus
//! `target/bench/results/<timestamp>.{tsv,md}` and each run's raw TSV.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVERS: [&str; 3] = ["tusk", "node", "rustus"];

struct Opts {
    quick: bool,
    peers: Option<bool>,
    only: Option<Vec<String>>,
    bin: Option<PathBuf>,
    keep_data: bool,
    drop_caches: bool,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o =
        Opts { quick: false, peers: None, only: None, bin: None, keep_data: false, drop_caches: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--no-peers" => o.peers = Some(false),
            "--peers" => o.peers = Some(true),
            "--keep-data" => o.keep_data = true,
            "--drop-caches" => o.drop_caches = true,
            "--only" => {
                let v = args.next().ok_or("--only needs a list: tusk,node,rustus")?;
                let list: Vec<String> =
                    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if let Some(bad) = list.iter().find(|s| !SERVERS.contains(&s.as_str())) {
                    return Err(format!("--only: unknown server {bad:?} (tusk, node, rustus)"));
                }
                o.only = Some(list);
            }
            "--bin" => o.bin = Some(PathBuf::from(args.next().ok_or("--bin needs a path")?)),
            // `cargo bench` passes `--bench` to harness=false targets.
            "--bench" => {}
            "-h" | "--help" => {
                let src = include_str!("tus.rs");
                for line in src.lines().take_while(|l| l.starts_with("//!")) {
                    println!("{}", line.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""));
                }
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench tus: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let opts = parse_opts()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // target/bench, wherever the target directory is (CARGO_TARGET_DIR):
    // this executable is target/<profile>/deps/tus-<hash>.
    let work = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| root.join("target").join("bench"));
    let servers: Vec<String> = match &opts.only {
        Some(l) => SERVERS.iter().filter(|s| l.iter().any(|x| x == *s)).map(|s| s.to_string()).collect(),
        None if opts.peers.unwrap_or(!opts.quick) => SERVERS.iter().map(|s| s.to_string()).collect(),
        None => vec!["tusk".to_string()],
    };

    // ---- the harness: ../shared/peers, copied somewhere writable
    let shared = std::env::var_os("TUSK_BENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared").join("peers"));
    if !shared.join("bench.sh").is_file() {
        return Err(format!(
            "{}/bench.sh not found: the benchmark needs the shared peers folder (../shared/peers/ beside \
             the repository, or TUSK_BENCH_PEERS=DIR)",
            shared.display()
        ));
    }
    let peers = work.join("peers");
    sync_dir(&shared, &peers)
        .map_err(|e| format!("copying {} to {}: {e}", shared.display(), peers.display()))?;
    let missing: Vec<&str> =
        ["curl", "wrk", "hey", "socat", "python3"].into_iter().filter(|t| !on_path(t)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing tools: {} (run {}/install-tools.sh as root)",
            missing.join(" "),
            peers.display()
        ));
    }
    for s in &servers {
        if s == "node" && !on_path("node") {
            return Err("node not found (the @tus/server peer needs Node.js >= 20.19); use --no-peers".into());
        }
    }

    let ts = timestamp();
    let results = work.join("results");
    fs::create_dir_all(&results).map_err(|e| e.to_string())?;
    let data_root = peers.join(".data");
    fs::create_dir_all(&data_root).map_err(|e| e.to_string())?;

    // ---- bench.sh knobs: quick sizes, bounded quiet wait; the caller's BENCH_* win
    let mut knobs: Vec<(&str, &str)> = Vec::new();
    if opts.quick {
        knobs.extend([
            ("BENCH_BIG_MIB", "128"),
            ("BENCH_CONC", "16"),
            ("BENCH_CONC_MIB", "4"),
            ("BENCH_RATE_SECS", "2"),
            ("BENCH_QUIET_WAIT", "0"),
        ]);
    } else {
        // bench.sh waits up to 300 s for a quiet machine; on a shared box that is
        // often never: cap it and let the per-figure "other cpu-s" tell the noise.
        knobs.push(("BENCH_QUIET_WAIT", "90"));
    }
    let knobs: Vec<(String, String)> = knobs
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let knob_note: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BENCH_"))
        .chain(knobs.iter().cloned())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    // ---- prerequisites first, so no build runs between measurements
    let tusk_bin = match &opts.bin {
        Some(b) => b.clone(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_tusk")),
    };
    if servers.iter().any(|s| s == "tusk") && !tusk_bin.is_file() {
        return Err(format!("tusk binary {} not found", tusk_bin.display()));
    }
    if servers.iter().any(|s| s == "rustus") {
        ensure_rustus(&peers)?;
    }

    let started = Instant::now();
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let mut all_ok = true;
    for s in &servers {
        if opts.drop_caches {
            drop_caches();
        }
        let tsv = results.join(format!("{ts}-{s}.tsv"));
        let _ = fs::remove_file(&tsv);
        eprintln!("\n=== bench tus: {s} ({}) ===", if opts.quick { "quick" } else { "full" });
        let rc = if s == "tusk" {
            run_tusk(&tusk_bin, &peers, &data_root, &ts, &tsv, &knobs)?
        } else {
            run_peer(s, &peers, &tsv, &knobs)?
        };
        if rc != 0 {
            all_ok = false;
            eprintln!("bench tus: bench.sh against {s} exited {rc} (a figure FAILED; see above)");
        }
        let run = Run::load(&tsv).map_err(|e| format!("reading {}: {e}", tsv.display()))?;
        runs.insert(s.clone(), run);
    }

    // ---- report
    let machine = machine();
    let mut out = String::new();
    out.push_str(&format!(
        "# cargo bench --bench tus{}\n{}, {} cpus ({}), kernel {}, {} UTC, {:.0} s\nknobs: {}\n\n",
        {
            let a: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
            if a.is_empty() { String::new() } else { format!(" -- {}", a.join(" ")) }
        },
        machine.cpu,
        machine.nproc,
        machine.mem,
        machine.kernel,
        ts,
        started.elapsed().as_secs_f64(),
        if knob_note.is_empty() { "bench.sh defaults".to_string() } else { knob_note.join(" ") }
    ));
    out.push_str(&report(&servers, &runs));
    println!("\n{out}");
    let md = results.join(format!("{ts}.md"));
    let _ = fs::write(&md, &out);
    let summary = results.join(format!("{ts}.tsv"));
    let _ = fs::write(&summary, summary_tsv(&servers, &runs));
    println!("results: {} and {} (raw: {}/{ts}-*.tsv)", md.display(), summary.display(), results.display());

    if !opts.keep_data {
        // Deleted only now: on ext4 without a journal, mass deletes slow file
        // creation for minutes, which would hit the next server's POST rate.
        for d in list_dirs(&data_root) {
            if d.file_name().is_some_and(|n| n != "results") {
                let _ = fs::remove_dir_all(&d);
            }
        }
    }
    Ok(all_ok)
}

// ---------------------------------------------------------------- servers

fn run_tusk(
    bin: &Path,
    peers: &Path,
    data_root: &Path,
    ts: &str,
    tsv: &Path,
    knobs: &[(String, String)],
) -> Result<i32, String> {
    let data = data_root.join(format!("tusk-{ts}"));
    fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let log_path = data_root.join("results").join(format!("tusk-{ts}.server.log"));
    fs::create_dir_all(log_path.parent().unwrap()).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let guard = KillOnDrop(child.id());
    // The log goes to a file; the "listening on" line tells the port.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log_file = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut log = log_file;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if let Some(i) = line.find("listening on http://") {
                let addr =
                    line[i + "listening on http://".len()..].split('/').next().unwrap_or("").to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("tusk did not start; log {}:\n{}", log_path.display(), tail(&log_path)));
        }
    };
    let url = format!("http://{addr}/files/");
    let pid = child.id().to_string();
    println!("# server=tusk bin={} pid={pid} data={}", bin.display(), data.display());
    let rc = bench_sh(peers, &[&url, &pid, data.to_str().unwrap()], "tusk", tsv, knobs)?;
    // SIGTERM: graceful stop (flush), then make sure it is gone.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    drop(guard);
    Ok(rc)
}

fn bench_sh(
    peers: &Path,
    args: &[&str],
    label: &str,
    tsv: &Path,
    knobs: &[(String, String)],
) -> Result<i32, String> {
    let status = Command::new(peers.join("bench.sh"))
        .args(args)
        .envs(knobs.iter().map(|(k, v)| (k, v)))
        .env("BENCH_TSV", tsv)
        .env("BENCH_LABEL", label)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running bench.sh: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

fn run_peer(peer: &str, peers: &Path, tsv: &Path, knobs: &[(String, String)]) -> Result<i32, String> {
    let port = free_port()?;
    let status = Command::new(peers.join("bench-peer.sh"))
        .args([peer, &port.to_string()])
        .envs(knobs.iter().map(|(k, v)| (k, v)))
        .env("BENCH_TSV", tsv)
        .env("BENCH_LABEL", peer)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running bench-peer.sh {peer}: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

/// Builds rustus into peers/.build once (start-rustus.sh would do it too, but
/// inside bench-peer.sh's 600 s readiness window and between measurements).
fn ensure_rustus(peers: &Path) -> Result<(), String> {
    let script = fs::read_to_string(peers.join("start-rustus.sh")).map_err(|e| e.to_string())?;
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or("start-rustus.sh: no VERSION= line")?;
    let root = peers.join(".build").join("rustus");
    let bin = root.join("bin").join("rustus");
    let have = Command::new(&bin).arg("--version").output().ok().filter(|o| o.status.success());
    if have.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(&version)) {
        return Ok(());
    }
    eprintln!("bench tus: building rustus {version} into {} (first use, ~3 min)", root.display());
    let ok = Command::new("cargo")
        .args(["install", "rustus", "--version", &version, "--locked", "--root"])
        .arg(&root)
        .status()
        .map_err(|e| format!("cargo install rustus: {e}"))?
        .success();
    if !ok {
        return Err(format!("cargo install rustus {version} failed; use --no-peers or --only tusk,node"));
    }
    Ok(())
}

struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    match fs::write("/proc/sys/vm/drop_caches", "1\n") {
        Ok(()) => eprintln!("bench tus: dropped the page cache"),
        Err(e) => eprintln!("bench tus: --drop-caches: {e} (needs root); continuing"),
    }
    std::thread::sleep(Duration::from_secs(2));
}

// ---------------------------------------------------------------- figures

#[derive(Default)]
struct Run {
    /// figure name -> (value, unit, detail)
    figs: BTreeMap<String, (String, String, String)>,
}

impl Run {
    fn load(path: &Path) -> io::Result<Run> {
        let mut run = Run::default();
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(run),
            Err(e) => return Err(e),
        };
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(5, '\t').collect();
            if f.len() < 4 {
                continue;
            }
            // The chunked figure is named after BENCH_CHUNK_MIB: normalise.
            let name = if f[1].starts_with("ingest.chunked_") { "ingest.chunked" } else { f[1] };
            run.figs.insert(
                name.to_string(),
                (f[2].to_string(), f[3].to_string(), f.get(4).unwrap_or(&"").to_string()),
            );
        }
        Ok(run)
    }
    fn num(&self, name: &str) -> Option<f64> {
        self.figs.get(name).and_then(|(v, _, _)| v.parse().ok())
    }
    fn cell(&self, name: &str) -> String {
        match self.figs.get(name) {
            Some((v, _, _)) if v.parse::<f64>().is_ok() => fmt_num(v.parse().unwrap()),
            Some((v, _, _)) => v.clone(),
            None => "-".into(),
        }
    }
    /// CPU seconds other processes used during a figure (noise), from its detail.
    fn other_cpu(&self, name: &str) -> Option<f64> {
        let d = &self.figs.get(name)?.2;
        let i = d.find("other ")?;
        d[i + 6..].split_whitespace().next()?.parse().ok()
    }
    fn server_cpu(&self, name: &str) -> Option<f64> {
        let d = &self.figs.get(name)?.2;
        let i = d.find("cpu server ")?;
        d[i + 11..].split_whitespace().next()?.parse().ok()
    }
    fn detail_field(&self, name: &str, key: &str) -> Option<String> {
        let d = &self.figs.get(name)?.2;
        let i = d.find(key)?;
        Some(d[i + key.len()..].split([',', ';']).next()?.trim().to_string())
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// (figure, label, unit, higher is better)
const FIGURES: [(&str, &str, &str, bool); 9] = [
    ("ingest.single_patch", "one big PATCH (1 GiB full / 128 MiB quick)", "MB/s", true),
    ("ingest.chunked", "same size as 8 MiB PATCHes, one connection", "MB/s", true),
    ("concurrency.aggregate", "concurrent uploads, aggregate", "MB/s", true),
    ("concurrency.wall", "concurrent uploads, wall", "s", false),
    ("rate.post_create_wrk", "POST creations/s, wrk 16 conns", "req/s", true),
    ("rate.post_create_hey", "POST creations/s, hey 16 conns", "req/s", true),
    ("rate.head", "HEAD/s, hey 16 conns", "req/s", true),
    ("server.peak_rss", "server peak RSS (VmHWM)", "MiB", false),
    ("server.rss_start", "server RSS at start", "MiB", false),
];

const LIMITS: [(&str, &str, &str); 8] = [
    ("limit.loopback_http_sink", "loopback HTTP PATCH -> null sink", "MB/s"),
    ("limit.loopback_tcp", "loopback TCP socat -> socat", "MB/s"),
    ("limit.sha256_openssl", "sha256, openssl (SHA-NI if present), 1 core", "MB/s"),
    ("limit.sha256sum", "sha256sum (coreutils), 1 core", "MB/s"),
    ("limit.disk_write_cached", "dd into data dir, page cache (new pages)", "MB/s"),
    ("limit.disk_write_cached_reuse", "same, reusing just-freed pages", "MB/s"),
    ("limit.disk_write_fdatasync", "dd conv=fdatasync", "MB/s"),
    ("limit.fs_create", "file create+write+close, 1 core", "files/s"),
];

fn ratio(t: Option<f64>, p: Option<f64>) -> String {
    match (t, p) {
        (Some(t), Some(p)) if p > 0.0 => format!("{:.2}x", t / p),
        _ => "-".into(),
    }
}

fn report(servers: &[String], runs: &BTreeMap<String, Run>) -> String {
    let empty = Run::default();
    let get = |s: &str| runs.get(s).unwrap_or(&empty);
    let tusk = get("tusk");
    let peers: Vec<&String> = servers.iter().filter(|s| *s != "tusk").collect();
    let has_tusk = servers.iter().any(|s| s == "tusk");
    let mut o = String::new();

    // main table
    let mut head = vec!["figure".to_string(), "unit".to_string()];
    head.extend(servers.iter().cloned());
    if has_tusk {
        head.extend(peers.iter().map(|p| format!("tusk/{p}")));
    }
    let mut rows = Vec::new();
    for (name, label, unit, _) in FIGURES {
        let mut r = vec![format!("{label} (`{name}`)"), unit.to_string()];
        r.extend(servers.iter().map(|s| get(s).cell(name)));
        if has_tusk {
            r.extend(peers.iter().map(|p| ratio(tusk.num(name), get(p).num(name))));
        }
        rows.push(r);
    }
    o.push_str(&md_table(&head, &rows));
    o.push_str("\nRatios are tusk/peer: above 1 is better for throughput and rates, below 1 for wall time and RSS.\n");

    // limits of each run
    o.push_str("\nMachine limits measured in each server's run (same invocation):\n\n");
    let mut head = vec!["limit".to_string(), "unit".to_string()];
    head.extend(servers.iter().map(|s| format!("{s} run")));
    let mut rows = Vec::new();
    for (name, label, unit) in LIMITS {
        let mut r = vec![format!("{label} (`{name}`)"), unit.to_string()];
        r.extend(servers.iter().map(|s| get(s).cell(name)));
        rows.push(r);
    }
    let mut r = vec!["MemFree at start of run".to_string(), "GiB".to_string()];
    r.extend(servers.iter().map(|s| {
        get(s)
            .detail_field("host.quiet_check", "MemFree ")
            .map_or("-".into(), |v| v.trim_end_matches(" GiB").to_string())
    }));
    rows.push(r);
    o.push_str(&md_table(&head, &rows));

    if has_tusk {
        let single = tusk.num("ingest.single_patch");
        o.push_str("\ntusk against the limits of its own run:\n\n");
        let pct = |limit: &str| match (single, tusk.num(limit)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0} %", 100.0 * a / b),
            _ => "-".into(),
        };
        let rows = vec![
            vec!["one big PATCH / loopback HTTP sink".into(), pct("limit.loopback_http_sink")],
            vec!["one big PATCH / sha256 (openssl, 1 core)".into(), pct("limit.sha256_openssl")],
            vec!["one big PATCH / dd into page cache (new pages)".into(), pct("limit.disk_write_cached")],
            vec!["one big PATCH / dd conv=fdatasync".into(), pct("limit.disk_write_fdatasync")],
            vec![
                "POST/s (wrk) / file creation rate".into(),
                match (tusk.num("rate.post_create_wrk"), tusk.num("limit.fs_create")) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.0} %", 100.0 * a / b),
                    _ => "-".into(),
                },
            ],
        ];
        o.push_str(&md_table(&["ratio".into(), "tusk".into()], &rows));
    }

    // noise: CPU of other processes during each figure, and server CPU
    o.push_str("\nCPU seconds per figure, server / other processes (noise; the client is not counted):\n\n");
    let mut head = vec!["figure".to_string()];
    head.extend(servers.iter().cloned());
    let mut rows = Vec::new();
    for (name, _, _, _) in FIGURES.iter().filter(|f| !f.0.starts_with("server.") && f.0 != "concurrency.wall")
    {
        let mut r = vec![format!("`{name}`")];
        r.extend(servers.iter().map(|s| {
            let run = get(s);
            match (run.server_cpu(name), run.other_cpu(name)) {
                (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
                _ => "-".into(),
            }
        }));
        rows.push(r);
    }
    o.push_str(&md_table(&head, &rows));

    // goals of issue 4
    if has_tusk {
        o.push_str("\nGoals (issue 4), this run:\n\n");
        let mut rows = Vec::new();
        let mut goal = |what: &str, have: Option<f64>, want: f64, unit: &str, higher: bool| {
            let (h, verdict) = match have {
                Some(h) => {
                    let ok = if higher { h >= want } else { h <= want };
                    (format!("{h:.2}{unit}"), if ok { "MET" } else { "missed" })
                }
                None => ("-".into(), "n/a"),
            };
            let w = format!("{}{want}{unit}", if higher { ">= " } else { "<= " });
            rows.push(vec![what.to_string(), h, w, verdict.to_string()]);
        };
        let r = |name: &str, peer: &str| match (tusk.num(name), runs.get(peer).and_then(|p| p.num(name))) {
            (Some(t), Some(p)) if p > 0.0 => Some(t / p),
            _ => None,
        };
        goal("one big PATCH vs @tus/server", r("ingest.single_patch", "node"), 4.0, "x", true);
        goal(
            "one big PATCH vs loopback HTTP sink",
            match (tusk.num("ingest.single_patch"), tusk.num("limit.loopback_http_sink")) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
            0.40,
            "",
            true,
        );
        goal("8 MiB PATCHes vs rustus", r("ingest.chunked", "rustus"), 3.0, "x", true);
        goal("concurrent aggregate vs @tus/server", r("concurrency.aggregate", "node"), 3.0, "x", true);
        goal("concurrent aggregate vs rustus", r("concurrency.aggregate", "rustus"), 3.0, "x", true);
        goal("POST/s (wrk) vs rustus", r("rate.post_create_wrk", "rustus"), 1.0, "x", true);
        goal("POST/s (hey) vs rustus", r("rate.post_create_hey", "rustus"), 1.0, "x", true);
        goal("HEAD/s vs rustus", r("rate.head", "rustus"), 1.5, "x", true);
        goal("peak RSS", tusk.num("server.peak_rss"), 64.0, " MiB", false);
        o.push_str(&md_table(&["goal".into(), "this run".into(), "target".into(), "".into()], &rows));
    }
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|(s, r)| {
            r.figs.iter().filter(|(_, v)| v.0 == "FAILED").map(move |(n, v)| format!("{s} {n}: {}", v.2))
        })
        .collect();
    if !failed.is_empty() {
        o.push_str("\nFAILED figures (wrong answer, unverified bytes or tool error):\n");
        for f in failed {
            o.push_str(&format!("- {f}\n"));
        }
    }
    o
}

fn summary_tsv(servers: &[String], runs: &BTreeMap<String, Run>) -> String {
    let mut o = String::from("server\tfigure\tvalue\tunit\n");
    for s in servers {
        if let Some(r) = runs.get(s) {
            for (n, (v, u, _)) in &r.figs {
                o.push_str(&format!("{s}\t{n}\t{v}\t{u}\n"));
            }
        }
    }
    o
}

#[allow(clippy::needless_range_loop)]
fn md_table(head: &[String], rows: &[Vec<String>]) -> String {
    let n = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for i in 0..n {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = w[i] - c.chars().count();
            if i < 2 {
                s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            } else {
                s.push_str(&format!(" {}{c} |", " ".repeat(pad)));
            }
        }
        s.push('\n');
        s
    };
    let mut o = line(head);
    o.push('|');
    for (i, wi) in w.iter().enumerate() {
        o.push_str(&format!(" {}{} |", "-".repeat(*wi - usize::from(i >= 2)), if i >= 2 { ":" } else { "" }));
    }
    o.push('\n');
    for r in rows {
        o.push_str(&line(r));
    }
    o
}

// ---------------------------------------------------------------- helpers

/// Mirrors `src` into `dst`, rewriting only files whose bytes changed (so
/// node_modules is not reinstalled: start-node.sh compares mtimes) and never
/// touching `.build`, `.data` or `node_modules` in `dst`.
fn sync_dir(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        if name == ".build" || name == ".data" || name == "node_modules" {
            continue;
        }
        let (s, d) = (e.path(), dst.join(&name));
        if e.file_type()?.is_dir() {
            sync_dir(&s, &d)?;
        } else {
            let bytes = fs::read(&s)?;
            if fs::read(&d).ok().as_deref() != Some(&bytes[..]) {
                let _ = fs::remove_file(&d); // may be read-only from an earlier copy
                fs::write(&d, &bytes)?;
            }
            let mode = fs::metadata(&s)?.permissions();
            let mut p = mode.clone();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            use std::os::unix::fs::PermissionsExt;
            p.set_mode(mode.mode() | 0o200);
            fs::set_permissions(&d, p)?;
        }
    }
    Ok(())
}

fn list_dirs(p: &Path) -> Vec<PathBuf> {
    fs::read_dir(p)
        .map(|rd| rd.filter_map(Result::ok).filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn tail(p: &Path) -> String {
    let t = fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

struct Machine {
    cpu: String,
    nproc: String,
    kernel: String,
    mem: String,
}

fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let sha_ni = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
    let nproc = std::thread::available_parallelism().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok())
        })
        .map(|k| format!("{:.0} GiB RAM", k / 1048576.0))
        .unwrap_or_default();
    Machine { cpu: format!("{cpu}{}", if sha_ni { " (sha_ni)" } else { " (no sha_ni)" }), nproc, kernel, mem }
}
