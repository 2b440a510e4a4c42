//! Running external programs from tests: the real-client and browser suites.
//! Installs are idempotent and serialised; scripts run with a timeout in
//! their own process group, and failures show the script's output beside
//! the server's log.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Server;

pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Each script finishes in seconds; this only catches a hang.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Serializes installs across test threads and concurrent `cargo test`
/// processes: an exclusive lock on a file in Cargo's target folder.
pub struct InstallLock(File);

impl InstallLock {
    pub fn take(name: &str) -> InstallLock {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{name}.lock"));
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

/// Fails the test with what to install when `tool` does not run.
pub fn require(tool: &str, what: &str) {
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

/// `npm ci` in `dir` when node_modules is missing or was installed from
/// another package-lock.json (a stamp file records which).
pub fn install_npm(dir: &Path) {
    let lockfile = fs::read(dir.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join("node_modules").join(".tusk-installed");
    let ready = || fs::read(&stamp).ok().as_deref() == Some(&lockfile[..]);
    if ready() {
        return;
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("npm");
    let _lock = InstallLock::take(&format!("npm-{name}"));
    // Another test or process may have installed while we waited.
    if ready() {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    must_succeed(&format!("npm ci in {}", dir.display()), cmd, INSTALL_TIMEOUT);
    fs::write(&stamp, &lockfile).expect("write the node_modules stamp");
}

/// A virtualenv at `dir/.venv` with `dir/requirements.txt` installed,
/// rebuilt when requirements.txt changes. Returns its python.
pub fn install_venv(dir: &Path) -> std::path::PathBuf {
    let reqs = fs::read(dir.join("requirements.txt")).expect("requirements.txt");
    let venv = dir.join(".venv");
    let stamp = venv.join(".tusk-installed");
    let python = venv.join("bin").join("python");
    let ready = || fs::read(&stamp).ok().as_deref() == Some(&reqs[..]) && python.exists();
    if ready() {
        return python;
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("py");
    let _lock = InstallLock::take(&format!("venv-{name}"));
    if ready() {
        return python;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("remove the stale .venv");
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
    must_succeed(&format!("pip install -r {}/requirements.txt", dir.display()), cmd, INSTALL_TIMEOUT);
    fs::write(&stamp, &reqs).expect("write the .venv stamp");
    python
}

pub fn must_succeed(what: &str, cmd: Command, timeout: Duration) {
    match run(cmd, timeout) {
        Ok((st, _)) if st.success() => {}
        Ok((st, out)) => panic!("{what} failed ({st}):\n{out}"),
        Err(out) => panic!("{what} did not finish:\n{out}"),
    }
}

/// Runs a test script against `s`; on failure shows its output and the server's log.
pub fn run_script(name: &str, cmd: Command, s: &Server) {
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
/// output so far when it could not start or outlived `timeout` (then its
/// whole process group is killed, so a hung script goes with its browser).
pub fn run(mut cmd: Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let shown = format!("{cmd:?}");
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

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
