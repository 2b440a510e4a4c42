//! Several tusk nodes as they run in production: one PostgreSQL (Debian's,
//! started by `scripts/postgres-start` as a throw-away cluster), one Garage
//! bucket, and HAProxy (Debian's) in front, round-robin, so every request of
//! one upload may land on another node. Everything is killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Server;
use super::garage::Garage;

/// A PostgreSQL cluster of its own, which a test may stop and start again.
pub struct Postgres {
    pub url: String,
    pg_bin: String,
    pgdata: String,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-start");
        let out = Command::new(&script).arg(dir.path()).output().expect("running scripts/postgres-start");
        assert!(
            out.status.success(),
            "scripts/postgres-start failed (scripts/test installs PostgreSQL): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("postgres-start printed no {name}: {text}"))
        };
        Postgres { url: var("DATABASE_URL"), pg_bin: var("PG_BIN"), pgdata: var("PGDATA"), dir }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let root = unsafe_is_root();
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(format!("{}/pg_ctl", self.pg_bin));
            c
        } else {
            Command::new(format!("{}/pg_ctl", self.pg_bin))
        };
        let out = cmd.arg("-D").arg(&self.pgdata).args(args).output().expect("pg_ctl");
        assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The database goes away at once, as a crash or a cut network would.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Back on the same port, with everything committed before the stop.
    pub fn start_again(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port(),
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.pg_ctl(&["-l", log.to_str().unwrap(), "-w", "-t", "30", "-o", &opts, "start"]);
    }

    /// Runs one SQL statement with psql, returning its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql").arg(&self.url).args(["-XAtc", sql]).output().expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-stop");
        let _ = Command::new(&script).arg(self.dir.path()).output();
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// HAProxy in front of the nodes: round-robin per request, a refused
/// connection (a dead node) retried on another.
pub struct Haproxy {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    pub fn start(nodes: &[SocketAddr]) -> Haproxy {
        let found = Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
        assert!(found, "HAProxy is not installed: apt-get install haproxy (scripts/test does)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, a)| format!("    server node{} {a} check inter 250ms fall 2 rise 1\n", i + 1))
            .collect();
        let config = format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n\
             \x20   retries 3\n    option redispatch 1\n    option forwardfor\n\
             frontend uploads\n    bind 127.0.0.1:{port}\n    default_backend tusk\n\
             backend tusk\n    balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let up = super::poll(Duration::from_secs(10), || std::net::TcpStream::connect(addr).ok());
        assert!(up.is_some(), "haproxy did not listen on {addr}");
        Haproxy { addr, child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nodes on one database and one bucket, behind HAProxy.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub proxy: Haproxy,
    pub pg: Postgres,
    pub garage: Garage,
    /// An API key made with `tusk keys create --database-url`.
    pub key: String,
}

impl Cluster {
    /// `nodes` nodes that need an API key (`key`).
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, false)
    }

    /// `nodes` nodes in open mode (`--allow-anonymous`, no key exists), for
    /// client suites written for a server without keys.
    pub fn open(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, true)
    }

    fn start_with(nodes: usize, open: bool) -> Cluster {
        let pg = Postgres::start();
        let garage = Garage::start();
        let key = if open { String::new() } else { create_key(&pg.url, "cluster") };
        let extra: &[&str] = if open { &["--allow-anonymous"] } else { &[] };
        let nodes: Vec<Server> = (0..nodes).map(|_| node(&pg, &garage, extra)).collect();
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        let proxy = Haproxy::start(&addrs);
        Cluster { nodes, proxy, pg, garage, key }
    }

    /// The balancer's URL, as clients are given it.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }
}

/// One node on the cluster's database and bucket (`extra` flags after).
pub fn node(pg: &Postgres, garage: &Garage, extra: &[&str]) -> Server {
    let mut args: Vec<String> = garage.tusk_args("5MiB");
    args.extend(["--database-url".to_string(), pg.url.clone(), "--behind-proxy".to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

/// `tusk keys ARGS --database-url URL`.
pub fn keys_cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tusk"))
        .arg("keys")
        .args(args)
        .arg("--database-url")
        .arg(url)
        .env("NO_COLOR", "1")
        .output()
        .expect("run tusk keys")
}

/// A key for `project`, made in the database by the CLI: its secret.
pub fn create_key(url: &str, project: &str) -> String {
    let out = keys_cli(url, &["create", "--project", project]);
    assert!(out.status.success(), "keys create --database-url: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
