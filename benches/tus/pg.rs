//! `cargo bench --bench tus -- --database`: issue 17's figures, in one run on
//! one fresh PostgreSQL (started here by `scripts/postgres-start`):
//!
//! - POST/s (wrk and hey) and HEAD/s (hey) of one node with its metadata in
//!   sled and of the same node with `--database-url`, each measured by
//!   `peers/bench.sh` (rate phase), in alternating pairs (sled then
//!   PostgreSQL, PostgreSQL then sled) on fresh data directories and fresh
//!   databases, so the machine's drift falls on both alike. The goal: each
//!   PostgreSQL figure at least half its sled pair's.
//! - For the throughput model in `benches/RESULTS.md`: the database
//!   transactions one POST and one HEAD cost (each statement outside a
//!   transaction counts one; PostgreSQL's own counters), and what this
//!   PostgreSQL sustains on this machine (pgbench, select-only and
//!   simple-update), measured in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Run, Tusk, bench_sh, fmt_num, md_table};

pub(super) struct Ctx<'a> {
    pub root: &'a Path,
    pub peers: &'a Path,
    pub data_root: &'a Path,
    pub results: &'a Path,
    pub ts: &'a str,
    pub tusk_bin: &'a Path,
    pub knobs: &'a [(String, String)],
    pub quick: bool,
}

/// The figures compared, with their labels.
const FIGURES: [(&str, &str); 3] = [
    ("rate.post_create_wrk", "POST/s (wrk, 16 conns)"),
    ("rate.post_create_hey", "POST/s (hey, 16 conns)"),
    ("rate.head", "HEAD/s (hey, 16 conns)"),
];

/// A throw-away PostgreSQL cluster; stopped on drop.
struct Postgres {
    dir: PathBuf,
    root: PathBuf,
    /// `postgresql://tusk@127.0.0.1:PORT/` (a database name goes after it).
    base: String,
    pg_bin: String,
}

impl Postgres {
    fn start(root: &Path, dir: &Path) -> Result<Postgres, String> {
        let out = Command::new(root.join("scripts/postgres-start"))
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running scripts/postgres-start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/postgres-start failed (apt-get install postgresql): {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
                .ok_or(format!("postgres-start printed no {name}"))
        };
        let url = var("DATABASE_URL")?;
        let base = url.trim_end_matches("postgres").to_string();
        Ok(Postgres { dir: dir.to_path_buf(), root: root.to_path_buf(), base, pg_bin: var("PG_BIN")? })
    }

    fn url(&self, db: &str) -> String {
        format!("{}{db}", self.base)
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(self.url(db))
            .args(["-XAtc", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Transactions committed in `db` so far, as the statistics have them.
    fn commits(&self, db: &str) -> Result<f64, String> {
        let v = self
            .psql("postgres", &format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))?;
        v.parse().map_err(|_| format!("xact_commit of {db}: {v:?}"))
    }

    /// pgbench's tps for `mode` (`-S` select-only, `-N` simple-update).
    fn pgbench(&self, mode: &str, secs: u64) -> Result<f64, String> {
        let bin = format!("{}/pgbench", self.pg_bin);
        let url = self.url("bench");
        let out = Command::new(&bin)
            .args(["-n", mode, "-c", "16", "-j", "2", "-T", &secs.to_string()])
            .arg(&url)
            .output()
            .map_err(|e| format!("pgbench: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l[6..].split_whitespace().next()?.parse().ok())
            .ok_or(format!("pgbench {mode}: {text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(self.root.join("scripts/postgres-stop")).arg(&self.dir).output();
    }
}

/// One request on its own connection; its status and `Location`.
fn request(addr: &str, head: &str) -> Result<(u16, Option<String>), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .map(|l| l.trim().to_string());
    Ok((status, location))
}

/// Database transactions per POST and per HEAD on a node of `db`: a
/// bounded loop of each, between readings of PostgreSQL's counters (which
/// backends report within ten seconds of going idle).
fn transactions_per_request(addr: &str, pg: &Postgres, db: &str) -> Result<(f64, f64), String> {
    const N: usize = 2000;
    let settle = || std::thread::sleep(Duration::from_secs(11));
    settle();
    let start = pg.commits(db)?;
    let post = format!(
        "POST /files/ HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1024\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut last = None;
    for _ in 0..N {
        let (status, location) = request(addr, &post)?;
        if status != 201 {
            return Err(format!("POST answered {status}"));
        }
        last = location;
    }
    settle();
    let mid = pg.commits(db)?;
    let location = last.ok_or("no Location")?;
    let path = location
        .split("://")
        .nth(1)
        .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
        .unwrap_or(location);
    let head =
        format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n");
    for _ in 0..N {
        let (status, _) = request(addr, &head)?;
        if status != 200 {
            return Err(format!("HEAD answered {status}"));
        }
    }
    settle();
    let end = pg.commits(db)?;
    Ok(((mid - start) / N as f64, (end - mid) / N as f64))
}

struct Measured {
    store: &'static str,
    pair: usize,
    run: Run,
    per_request: Option<(f64, f64)>,
}

/// Runs the pairs; returns (all figures ok, the report).
pub(super) fn run(cx: &Ctx) -> Result<(bool, String), String> {
    let pg = Postgres::start(cx.root, &cx.data_root.join(format!("pg-{}", cx.ts)))?;
    let pairs = if cx.quick { 1 } else { 2 };
    let mut knobs = cx.knobs.to_vec();
    if std::env::var_os("BENCH_PHASES").is_none() {
        knobs.push(("BENCH_PHASES".into(), "rate".into()));
    }
    // tusk makes an upload's data file with its first byte, not at the POST.
    knobs.retain(|(k, _)| k != "BENCH_COUNT_FILES");
    knobs.push(("BENCH_COUNT_FILES".into(), "0".into()));
    let mut ok = true;
    let mut measured = Vec::new();
    for pair in 0..pairs {
        let order = if pair % 2 == 0 { ["sled", "postgres"] } else { ["postgres", "sled"] };
        for store in order {
            let label = format!("{store}-{pair}");
            eprintln!("\n=== bench tus --database: tusk on {store} (pair {}) ===", pair + 1);
            let db = format!("tusk_{pair}");
            let mut extra = Vec::new();
            if store == "postgres" {
                pg.psql("postgres", &format!("CREATE DATABASE {db}"))?;
                extra = vec!["--database-url".to_string(), pg.url(&db)];
            }
            let data = cx.data_root.join(format!("tusk-{label}-{}", cx.ts));
            let log = cx.results.join(format!("tusk-{label}-{}.server.log", cx.ts));
            let tsv = cx.results.join(format!("{}-{label}.tsv", cx.ts));
            let _ = std::fs::remove_file(&tsv);
            let mut server = Tusk::start_with(cx.tusk_bin, &data, &log, &extra)?;
            let url = format!("http://{}/files/", server.addr);
            let pid = server.child.id().to_string();
            let rc = bench_sh(cx.peers, &[&url, &pid, data.to_str().unwrap()], &label, &tsv, &knobs)?;
            if rc != 0 {
                ok = false;
                eprintln!("bench tus --database: bench.sh against {label} exited {rc}");
            }
            let per_request = if store == "postgres" {
                Some(transactions_per_request(&server.addr, &pg, &db)?)
            } else {
                None
            };
            server.stop();
            let run = Run::load(&tsv).map_err(|e| format!("reading {}: {e}", tsv.display()))?;
            let store: &'static str = if store == "sled" { "sled" } else { "postgres" };
            measured.push(Measured { store, pair, run, per_request });
        }
    }
    eprintln!("\n=== bench tus --database: pgbench ===");
    pg.psql("postgres", "CREATE DATABASE bench")?;
    let init = Command::new(format!("{}/pgbench", pg.pg_bin))
        .args(["-i", "-q", "-s", "4"])
        .arg(pg.url("bench"))
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !init.status.success() {
        return Err(format!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr)));
    }
    let secs = if cx.quick { 3 } else { 8 };
    let select_tps = pg.pgbench("-S", secs)?;
    let update_tps = pg.pgbench("-N", secs)?;
    Ok((ok, report(&measured, select_tps, update_tps)))
}

fn report(measured: &[Measured], select_tps: f64, update_tps: f64) -> String {
    let pairs = measured.iter().map(|m| m.pair).max().map_or(0, |p| p + 1);
    let find = |store: &str, pair: usize| measured.iter().find(|m| m.store == store && m.pair == pair);
    let mut head = vec!["figure".to_string(), "unit".to_string()];
    for p in 0..pairs {
        head.push(format!("sled {}", p + 1));
        head.push(format!("postgres {}", p + 1));
        head.push(format!("ratio {}", p + 1));
    }
    head.push("ratio (median)".into());
    head.push("goal".into());
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for (name, label) in FIGURES {
        let mut row = vec![label.to_string(), "req/s".to_string()];
        let mut ratios = Vec::new();
        for p in 0..pairs {
            let (s, g) = (find("sled", p), find("postgres", p));
            let (sv, gv) = (s.and_then(|m| m.run.num(name)), g.and_then(|m| m.run.num(name)));
            row.push(sv.map_or("-".into(), fmt_num));
            row.push(gv.map_or("-".into(), fmt_num));
            match (sv, gv) {
                (Some(s), Some(g)) if s > 0.0 => {
                    ratios.push(g / s);
                    row.push(format!("{:.2}", g / s));
                }
                _ => row.push("-".into()),
            }
        }
        ratios.sort_by(|a, b| a.total_cmp(b));
        let median = match ratios.len() {
            0 => None,
            n if n % 2 == 1 => Some(ratios[n / 2]),
            n => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
        };
        row.push(median.map_or("-".into(), |m| format!("{m:.2}")));
        let met = median.is_some_and(|m| m >= 0.5);
        row.push(format!("≥ 0.50 {}", if met { "met" } else { "NOT met" }));
        goals.push((label, median, met));
        rows.push(row);
    }
    let mut out = String::from("## one node on PostgreSQL against the same node on sled (issue 17)\n\n");
    out.push_str(&md_table(&head, &rows));
    out.push('\n');
    for m in measured.iter().filter(|m| m.per_request.is_some()) {
        let (post, headr) = m.per_request.unwrap();
        out.push_str(&format!(
            "database transactions per request (pair {}): POST {post:.2}, HEAD {headr:.2}\n",
            m.pair + 1
        ));
    }
    out.push_str(&format!(
        "this PostgreSQL on this machine (pgbench, 16 clients): select-only {} tps, simple-update {} tps\n",
        fmt_num(select_tps),
        fmt_num(update_tps)
    ));
    for (label, median, met) in goals {
        out.push_str(&format!(
            "goal {label} postgres/sled ≥ 0.50: {} ({})\n",
            median.map_or("-".into(), |m| format!("{m:.2}")),
            if met { "met" } else { "NOT met" }
        ));
    }
    out
}
