//! Real tus clients against the real server: tus-js-client 4.3.1 in Node and
//! tuspy 1.1.0 in a virtualenv. Each test installs what its suite needs (once,
//! idempotently, under a lock), starts tusk on an ephemeral port, and runs the
//! suite's script, which verifies every upload by sha256 through the asset's
//! signed download URL. Each suite runs on both byte stores: the data
//! directory, and a bucket in a real Garage (`--storage s3`). Missing Node,
//! npm or Python fail the test with what to install: these suites are part
//! of `cargo test`, never skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use common::cluster::Cluster;
use common::external::{install_npm, install_venv, require, run_script};
use common::garage::{Garage, Store};

/// tusk on `dir` (a fresh one if `None`) with its bytes in `store`; the
/// Garage, if any, lives as long as the returned value.
fn serve(store: Store, dir: Option<&Path>) -> (Server, Option<Garage>) {
    let garage = store.garage();
    (Store::serve_with(&garage, dir, &[]), garage)
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

#[test]
fn tus_js_client() {
    tus_js_client_on(Store::Files);
}

#[test]
fn tus_js_client_on_s3() {
    tus_js_client_on(Store::S3);
}

fn tus_js_client_on(store: Store) {
    let dir = clients_dir().join("js");
    require("node", "Node.js 18 or later (Debian: apt-get install nodejs npm)");
    require("npm", "npm (Debian: apt-get install npm)");
    install_npm(&dir);

    let (s, garage) = serve(store, None);
    let mut cmd = Command::new("node");
    cmd.arg("suite.mjs")
        .arg(s.url(""))
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_FIXTURES", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media"));
    run_script("tus-js-client suite", cmd, &s);
    if let Some(g) = &garage {
        assert!(g.check_objects(&s, None) > 5, "the suite's assets are in the bucket");
    }
}

/// The same suite through HAProxy to three nodes on one PostgreSQL and one
/// bucket: every request of an upload (each chunk, each of the four
/// parallel parts, the resume after an abort) may land on another node.
#[test]
fn tus_js_client_through_a_balancer_to_three_nodes() {
    let dir = clients_dir().join("js");
    require("node", "Node.js 18 or later (Debian: apt-get install nodejs npm)");
    require("npm", "npm (Debian: apt-get install npm)");
    install_npm(&dir);
    let c = Cluster::open(3);
    let mut cmd = Command::new("node");
    cmd.arg("suite.mjs")
        .arg(c.url())
        .current_dir(&dir)
        .env("TUSK_URL", c.url())
        .env("TUSK_FIXTURES", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media"));
    run_script("tus-js-client suite through HAProxy", cmd, &c.nodes[0]);
    assert!(c.garage.check_objects(&c.nodes[0], None) > 5, "the suite's assets are in the bucket");
}

/// tuspy's suite through HAProxy to three nodes.
#[test]
fn tuspy_through_a_balancer_to_three_nodes() {
    let dir = clients_dir().join("py");
    require("python3", "Python 3.8 or later with venv (Debian: apt-get install python3 python3-venv)");
    install_venv(&dir);
    let c = Cluster::open(3);
    let mut cmd = Command::new(dir.join(".venv").join("bin").join("python"));
    cmd.arg("suite.py")
        .arg(c.url())
        .current_dir(&dir)
        .env("TUSK_URL", c.url())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_script("tuspy suite through HAProxy", cmd, &c.nodes[0]);
    assert!(c.garage.check_objects(&c.nodes[0], None) > 2, "the suite's assets are in the bucket");
}

#[test]
fn tuspy() {
    tuspy_on(Store::Files);
}

#[test]
fn tuspy_on_s3() {
    tuspy_on(Store::S3);
}

fn tuspy_on(store: Store) {
    let dir = clients_dir().join("py");
    require("python3", "Python 3.8 or later with venv (Debian: apt-get install python3 python3-venv)");
    install_venv(&dir);

    let (s, garage) = serve(store, None);
    let mut cmd = Command::new(dir.join(".venv").join("bin").join("python"));
    cmd.arg("suite.py")
        .arg(s.url(""))
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_script("tuspy suite", cmd, &s);
    if let Some(g) = &garage {
        assert!(g.check_objects(&s, None) > 2, "the suite's assets are in the bucket");
    }
}

/// A backend creates the asset with its key; tus-js-client then uploads with
/// only the asset's signed `upload_url` (no key), is aborted mid-way and
/// resumes from the stored URL; the URL is refused once tampered, on another
/// upload, after it expired, and past its size limit.
#[test]
fn tus_js_client_with_an_upload_url() {
    tus_js_client_with_an_upload_url_on(Store::Files);
}

#[test]
fn tus_js_client_with_an_upload_url_on_s3() {
    tus_js_client_with_an_upload_url_on(Store::S3);
}

fn tus_js_client_with_an_upload_url_on(store: Store) {
    let dir = clients_dir().join("js");
    require("node", "Node.js 18 or later (Debian: apt-get install nodejs npm)");
    require("npm", "npm (Debian: apt-get install npm)");
    install_npm(&dir);

    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["keys", "create", "--project", "backend", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run tusk keys create");
    assert!(out.status.success(), "tusk keys create: {}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (s, garage) = serve(store, Some(data.path()));
    let mut cmd = Command::new("node");
    cmd.arg("upload_url.mjs").current_dir(&dir).env("TUSK_URL", s.url("")).env("TUSK_KEY", &key);
    run_script("tus-js-client with an upload URL", cmd, &s);
    if let Some(g) = &garage {
        assert!(g.check_objects(&s, Some(&key)) > 0, "the uploads are in the bucket");
    }
}
