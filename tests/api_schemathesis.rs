//! schemathesis (PyPI, pinned in tests/schemathesis/requirements.txt) against
//! `GET /v1/openapi.json` with an API key and every check on: no 5xx, every
//! response as documented, schema-valid requests accepted, invalid ones
//! refused. The test installs its own virtualenv on first run.
mod assets_common;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use assets_common::create_key;
use common::Server;
use common::external::{install_venv, require, run, tail};

#[test]
fn schemathesis_finds_no_failure() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("schemathesis");
    require("python3", "Python 3.9 or later with venv (Debian: apt-get install python3 python3-venv)");
    install_venv(&dir);
    let data = tempfile::tempdir().unwrap();
    let key = create_key(data.path(), "schemathesis");
    let s = Server::start_in(data.path(), &[]);
    let mut cmd = Command::new(dir.join(".venv").join("bin").join("schemathesis"));
    cmd.arg("run")
        .arg(s.url("/v1/openapi.json"))
        .args(["--checks", "all", "--max-examples", "20"])
        // `/v1/events` never ends: each of its cases reads for this long.
        .args(["--request-timeout", "2"])
        // A fixed seed keeps CI repeatable; run it by hand without one to explore.
        .args(["--seed", "20261201"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {key}"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(&dir);
    let t = Instant::now();
    match run(cmd, Duration::from_secs(600)) {
        Ok((st, out)) if st.success() => {
            println!("schemathesis passed in {:.1?}:\n{}", t.elapsed(), tail(&out, 40))
        }
        Ok((st, out)) => panic!(
            "schemathesis failed ({st}):\n{out}\n--- server log (last 40 lines) ---\n{}",
            tail(&s.logs(), 40)
        ),
        Err(out) => panic!("schemathesis did not finish:\n{out}"),
    }
}
