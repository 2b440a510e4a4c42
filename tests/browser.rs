//! Browser tests: headless Debian Chromium driven by playwright-core against
//! the real server.
//!
//! - `upload_page`: tusk's own page at `/` (Uppy Dashboard + live asset list
//!   from /v1/events), with an API key: a PNG and a WAV made by the test are
//!   uploaded through the Dashboard, reach `ready` on the page, one is
//!   downloaded through its link and compared, a screenshot is saved, and a
//!   dropped event stream resumes with Last-Event-ID.
//!   `upload_page_open_mode` does the same on a server without keys.
//! - `upload_page_resume`: a throttled upload cut by a reload continues from
//!   the server's offset when the file is added again.
//! - `cross_origin`: a page on another origin (a static server on another
//!   port) uploads to tusk with tus-js-client, so CORS is exercised as in
//!   production, errors included: a 413 and a 401 must reach the page as such.
//!
//! Each test installs tests/browser's Node packages when needed (`npm ci`,
//! once, under a lock) and fails, never skips, when Chromium is missing.
//! Output (screenshots, the files made, the download) goes to
//! target/browser-out/<test>/.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Each script finishes in seconds; this only catches a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser")
}

/// target/browser-out/<test>/, emptied.
fn out_dir(test: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf();
    let dir = target.join("browser-out").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the output folder");
    dir
}

/// A data directory with one API key, so the page must send it.
fn keyed_data_dir() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["keys", "create", "--project", "browser", "--data-dir"])
        .arg(tmp.path())
        .output()
        .expect("run tusk keys create");
    assert!(out.status.success(), "tusk keys create: {}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("sk_"), "unexpected key {key:?}");
    (tmp, key)
}

#[test]
fn upload_page() {
    let dir = prepare();
    let out = out_dir("upload_page");
    let (data, key) = keyed_data_dir();
    let s = Server::start_in(data.path(), &[]);
    let mut cmd = Command::new("node");
    cmd.arg("upload_page.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_KEY", &key)
        .env("OUT_DIR", &out);
    run_script("upload page", cmd, &s);
    println!("screenshot: {}", out.join("upload-page.png").display());
}

/// The same page on a server without keys (open mode, as on loopback by
/// default): no key is asked for and uploads work without one.
#[test]
fn upload_page_open_mode() {
    let dir = prepare();
    let out = out_dir("upload_page_open_mode");
    let s = Server::start(&[]);
    let mut cmd = Command::new("node");
    cmd.arg("upload_page.mjs").current_dir(&dir).env("TUSK_URL", s.url("")).env("OUT_DIR", &out);
    run_script("upload page (open mode)", cmd, &s);
    println!("screenshot: {}", out.join("upload-page.png").display());
}

/// An upload through the page, slowed down and cut by a reload, resumes from
/// the server's offset into the same asset.
#[test]
fn upload_page_resume() {
    let dir = prepare();
    let out = out_dir("upload_page_resume");
    let s = Server::start(&[]);
    let mut cmd = Command::new("node");
    cmd.arg("resume.mjs").current_dir(&dir).env("TUSK_URL", s.url("")).env("OUT_DIR", &out);
    run_script("upload page resume", cmd, &s);
}

#[test]
fn cross_origin() {
    let dir = prepare();
    let out = out_dir("cross_origin");
    let (data, key) = keyed_data_dir();
    let s = Server::start_in(data.path(), &["--max-size", "1000"]);
    let mut cmd = Command::new("node");
    cmd.arg("cross_origin.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_KEY", &key)
        .env("OUT_DIR", &out);
    run_script("cross-origin tus-js-client", cmd, &s);
    println!("screenshot: {}", out.join("cross-origin.png").display());
}

/// Chromium, Node and the Node packages, or a clear failure.
fn prepare() -> PathBuf {
    if !Path::new(CHROMIUM).exists() {
        panic!(
            "{CHROMIUM} is missing: the browser tests need Debian's Chromium. \
             Install it with `apt-get install -y chromium` (as root); nothing is downloaded by the tests."
        );
    }
    require("node", "Node.js 18 or later (Debian: apt-get install nodejs npm)");
    require("npm", "npm (Debian: apt-get install npm)");
    let dir = browser_dir();
    install_js(&dir);
    dir
}

/// `npm ci` when node_modules is missing or was installed from another lock file.
fn install_js(dir: &Path) {
    let lockfile = fs::read(dir.join("package-lock.json")).expect("tests/browser/package-lock.json");
    let stamp = dir.join("node_modules").join(".tusk-installed");
    let ready = || fs::read(&stamp).ok().as_deref() == Some(&lockfile[..]);
    if ready() {
        return;
    }
    let _lock = InstallLock::take();
    // Another test or process may have installed while we waited.
    if ready() {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    match run(cmd, INSTALL_TIMEOUT) {
        Ok((st, _)) if st.success() => {}
        Ok((st, out)) => panic!("npm ci (tests/browser) failed ({st}):\n{out}"),
        Err(out) => panic!("npm ci (tests/browser) did not finish:\n{out}"),
    }
    fs::write(&stamp, &lockfile).expect("write the node_modules stamp");
}

/// Serializes installs across test threads and concurrent `cargo test`
/// processes: an exclusive lock on a file in Cargo's target folder.
struct InstallLock(File);

impl InstallLock {
    fn take() -> InstallLock {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-install.lock");
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

fn run_script(name: &str, cmd: Command, s: &Server) {
    let t0 = Instant::now();
    let result = run(cmd, SCRIPT_TIMEOUT);
    let took = t0.elapsed();
    match result {
        Ok((st, out)) if st.success() => println!("{name} passed in {took:.1?}:\n{out}"),
        Ok((st, out)) => panic!(
            "{name} failed ({st}) after {took:.1?}:\n{out}\n--- server log (last 60 lines) ---\n{}",
            tail(&s.logs(), 60)
        ),
        Err(out) => panic!(
            "{name} timed out after {took:.1?}:\n{out}\n--- server log (last 60 lines) ---\n{}",
            tail(&s.logs(), 60)
        ),
    }
}

/// Runs a command with stdout and stderr collected together. `Err` with the
/// output so far when it could not start or outlived `timeout` (then it is killed).
fn run(mut cmd: Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    use std::os::unix::process::CommandExt;
    let shown = format!("{cmd:?}");
    // Its own process group, so a hung script goes together with its Chromium.
    cmd.process_group(0);
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
                let _ = Command::new("kill").arg("-KILL").arg(format!("-{}", child.id())).status();
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
        // A grandchild that escaped the group may still hold the pipes.
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
