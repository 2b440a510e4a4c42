//! Real tus clients against the real server: tus-js-client 4.3.1 in Node and
//! tuspy 1.1.0 in a virtualenv. Each test installs what its suite needs (once,
//! idempotently, under a lock), starts tusk on an ephemeral port, and runs the
//! suite's script, which verifies every upload by sha256 through the asset's
//! signed download URL. Missing Node, npm or Python fail the test with what to
//! install: these suites are part of `cargo test`, never skipped.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;

/// Each suite finishes in seconds; this only catches a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

#[test]
fn tus_js_client() {
    let dir = clients_dir().join("js");
    require("node", "Node.js 18 or later (Debian: apt-get install nodejs npm)");
    require("npm", "npm (Debian: apt-get install npm)");
    install_js(&dir);

    let s = Server::start(&[]);
    let mut cmd = Command::new("node");
    cmd.arg("suite.mjs")
        .arg(s.url(""))
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_FIXTURES", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media"));
    run_suite("tus-js-client", cmd, &s);
}

#[test]
fn tuspy() {
    let dir = clients_dir().join("py");
    require("python3", "Python 3.8 or later with venv (Debian: apt-get install python3 python3-venv)");
    install_py(&dir);

    let s = Server::start(&[]);
    let mut cmd = Command::new(dir.join(".venv").join("bin").join("python"));
    cmd.arg("suite.py")
        .arg(s.url(""))
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_suite("tuspy", cmd, &s);
}

/// `npm ci` when node_modules is missing or older than package-lock.json.
fn install_js(dir: &Path) {
    let lockfile = fs::read(dir.join("package-lock.json")).expect("tests/clients/js/package-lock.json");
    let stamp = dir.join("node_modules").join(".tusk-installed");
    if fs::read(&stamp).ok().as_deref() == Some(&lockfile[..]) {
        return;
    }
    let _lock = InstallLock::take("js");
    // Another process may have installed while we waited for the lock.
    if fs::read(&stamp).ok().as_deref() == Some(&lockfile[..]) {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    must_succeed("npm ci (tests/clients/js)", cmd, INSTALL_TIMEOUT);
    fs::write(&stamp, &lockfile).expect("write the node_modules stamp");
}

/// A virtualenv at tests/clients/py/.venv with requirements.txt installed,
/// rebuilt when requirements.txt changes.
fn install_py(dir: &Path) {
    let reqs = fs::read(dir.join("requirements.txt")).expect("tests/clients/py/requirements.txt");
    let venv = dir.join(".venv");
    let stamp = venv.join(".tusk-installed");
    let python = venv.join("bin").join("python");
    let ready = || fs::read(&stamp).ok().as_deref() == Some(&reqs[..]) && python.exists();
    if ready() {
        return;
    }
    let _lock = InstallLock::take("py");
    if ready() {
        return;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("remove the stale tests/clients/py/.venv");
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv", ".venv"]).current_dir(dir);
    if let Err(out) =
        run(cmd, INSTALL_TIMEOUT).and_then(|(st, out)| if st.success() { Ok(()) } else { Err(out) })
    {
        let _ = fs::remove_dir_all(&venv);
        panic!(
            "`python3 -m venv` failed; install Python's venv module (Debian: apt-get install python3-venv):\n{out}"
        );
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r", "requirements.txt"])
        .current_dir(dir);
    must_succeed("pip install -r tests/clients/py/requirements.txt", cmd, INSTALL_TIMEOUT);
    fs::write(&stamp, &reqs).expect("write the .venv stamp");
}

/// Serializes installs across test threads and concurrent `cargo test`
/// processes: an exclusive lock on a file in Cargo's target folder.
struct InstallLock(File);

impl InstallLock {
    fn take(name: &str) -> InstallLock {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("clients-install-{name}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the install lock");
        f.lock().expect("take the install lock");
        InstallLock(f)
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn require(tool: &str, what: &str) {
    match Command::new(tool).arg("--version").stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{tool} --version` failed ({}): install {what}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("`{tool}` is not available ({e}): install {what}"),
    }
}

fn must_succeed(what: &str, cmd: Command, timeout: Duration) {
    match run(cmd, timeout) {
        Ok((st, _)) if st.success() => {}
        Ok((st, out)) => panic!("{what} failed ({st}):\n{out}"),
        Err(out) => panic!("{what} did not finish:\n{out}"),
    }
}

fn run_suite(name: &str, cmd: Command, s: &Server) {
    let t0 = Instant::now();
    let result = run(cmd, SUITE_TIMEOUT);
    let took = t0.elapsed();
    match result {
        Ok((st, out)) if st.success() => println!("{name} suite passed in {took:.1?}:\n{out}"),
        Ok((st, out)) => panic!(
            "{name} suite failed ({st}) after {took:.1?}:\n{out}\n--- server log (last 60 lines) ---\n{}",
            tail(&s.logs(), 60)
        ),
        Err(out) => panic!(
            "{name} suite timed out after {took:.1?}:\n{out}\n--- server log (last 60 lines) ---\n{}",
            tail(&s.logs(), 60)
        ),
    }
}

/// Runs a command with stdout and stderr collected together. `Err` with the
/// output so far when it could not start or outlived `timeout` (then it is killed).
fn run(mut cmd: Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let shown = format!("{cmd:?}");
    let mut child = match cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return Err(format!("could not start {shown}: {e}")),
    };
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    if status.is_some() {
        for r in readers {
            let _ = r.join();
        }
    } else {
        // A killed child's own children may still hold the pipes: do not wait for them.
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    match status {
        Some(st) => Ok((st, format!("$ {shown}\n{text}"))),
        None => Err(format!("$ {shown}\n{text}\n(killed after {timeout:?})")),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
