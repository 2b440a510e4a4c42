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
//! - `upload_link`: the page from `tusk upload-link` (`/?token=ut_…`) uploads
//!   without a key and shows only what was uploaded with the link.
//! - `uppy_with_an_upload_token`: Uppy on another origin with an upload
//!   token: limits, a type refused at its first bytes, `max_uploads`.
//!
//! Each test installs tests/browser's Node packages when needed (`npm ci`,
//! once, under a lock) and fails, never skips, when Chromium is missing.
//! Output (screenshots, the files made, the download) goes to
//! target/browser-out/<test>/.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use common::external::{install_npm, require, run_script};
use common::garage::Store;

const CHROMIUM: &str = "/usr/bin/chromium";

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
    upload_page_on(Store::Files);
}

#[test]
fn upload_page_on_s3() {
    upload_page_on(Store::S3);
}

fn upload_page_on(store: Store) {
    let dir = prepare();
    let out = out_dir(&format!("upload_page_{store:?}"));
    let (data, key) = keyed_data_dir();
    let garage = store.garage();
    let s = Store::serve_with(&garage, Some(data.path()), &[]);
    let mut cmd = Command::new("node");
    cmd.arg("upload_page.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_KEY", &key)
        .env("OUT_DIR", &out);
    run_script("upload page", cmd, &s);
    if let Some(g) = &garage {
        assert!(g.check_objects(&s, Some(&key)) > 0, "Uppy's uploads are in the bucket");
    }
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
    upload_page_resume_on(Store::Files);
}

#[test]
fn upload_page_resume_on_s3() {
    upload_page_resume_on(Store::S3);
}

fn upload_page_resume_on(store: Store) {
    let dir = prepare();
    let out = out_dir(&format!("upload_page_resume_{store:?}"));
    let (s, _garage) = store.serve(&[]);
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

/// tusk's page opened from `tusk upload-link` (`/?token=ut_…`): a PNG goes
/// up through the Dashboard with no key, and the page never shows (or asks
/// /v1 for) the project's other assets.
#[test]
fn upload_link() {
    let dir = prepare();
    let out = out_dir("upload_link");
    let (data, key) = keyed_data_dir();
    let s = Server::start_in(data.path(), &[]);
    // Another asset of the same project, uploaded with the key.
    let other = "uploaded-by-the-backend.bin";
    let meta = format!("filename {}", common::b64(other.as_bytes()));
    let auth = format!("Bearer {key}");
    let r = s.request(
        "POST",
        "/files/",
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", "3"),
            ("Upload-Metadata", &meta),
            ("Authorization", &auth),
        ],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let link = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["upload-link", "--project", "browser", "--expires", "1h", "--url", &s.url("")])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("run tusk upload-link");
    assert!(link.status.success(), "tusk upload-link: {}", String::from_utf8_lossy(&link.stderr));
    let link = String::from_utf8(link.stdout).unwrap().trim().to_string();
    let mut cmd = Command::new("node");
    cmd.arg("upload_link.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_KEY", &key)
        .env("LINK", &link)
        .env("OTHER_ASSET_NAME", other)
        .env("OUT_DIR", &out);
    run_script("upload link page", cmd, &s);
    println!("screenshot: {}", out.join("upload-link.png").display());
}

/// Uppy on another origin with an upload token and no key: two files go up,
/// a disallowed one stops after its first chunk (415, `type_not_allowed`),
/// and one beyond `max_uploads` is refused with the server's message.
#[test]
fn uppy_with_an_upload_token() {
    let dir = prepare();
    let out = out_dir("uppy_token");
    let (data, key) = keyed_data_dir();
    let s = Server::start_in(data.path(), &[]);
    let mut cmd = Command::new("node");
    cmd.arg("uppy_token.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", s.url(""))
        .env("TUSK_KEY", &key)
        .env("OUT_DIR", &out);
    run_script("Uppy with an upload token", cmd, &s);
    println!("screenshot: {}", out.join("uppy-token.png").display());
}

/// The same Uppy page through HAProxy to three nodes on one PostgreSQL and
/// one Garage bucket: the token made through one node, its uploads' chunks
/// and its use count spread over all three.
#[test]
fn uppy_with_an_upload_token_through_a_balancer_to_three_nodes() {
    let dir = prepare();
    let out = out_dir("uppy_token_cluster");
    let c = common::cluster::Cluster::start(3);
    let mut cmd = Command::new("node");
    cmd.arg("uppy_token.mjs")
        .current_dir(&dir)
        .env("TUSK_URL", c.url())
        .env("TUSK_KEY", &c.key)
        .env("OUT_DIR", &out);
    run_script("Uppy with an upload token through HAProxy", cmd, &c.nodes[0]);
    assert!(c.garage.check_objects(&c.nodes[0], Some(&c.key)) >= 2, "the page's uploads are in the bucket");
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
    install_npm(&dir);
    dir
}
