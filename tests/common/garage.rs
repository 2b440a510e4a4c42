//! A real Garage (S3-compatible object store) for the tests that run tusk
//! with `--storage s3`, started by `scripts/garage-start` (which
//! `scripts/test` makes sure can find the binary). Killed on drop.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Garage {
    pid: Option<u32>,
    pub vars: HashMap<String, String>,
    dir: tempfile::TempDir,
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut g = Garage { pid: None, vars: HashMap::new(), dir };
        g.run_script();
        g
    }

    fn run_script(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-start");
        let out = Command::new(&script).arg(self.dir.path()).output().expect("running scripts/garage-start");
        assert!(
            out.status.success(),
            "scripts/garage-start failed (scripts/test installs Garage when it is missing): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        self.pid = Some(self.var("GARAGE_PID").parse().expect("a pid"));
    }

    pub fn var(&self, name: &str) -> String {
        self.vars.get(name).unwrap_or_else(|| panic!("garage-start printed no {name}")).clone()
    }

    /// The object store goes away at once (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            super::unsafe_kill(pid, 9);
            // Gone once its S3 port refuses connections.
            let addr = self.var("S3_ENDPOINT").trim_start_matches("http://").to_string();
            for _ in 0..100 {
                if std::net::TcpStream::connect(&addr).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The same store back, with everything it held.
    pub fn restart(&mut self) {
        self.stop();
        self.run_script();
    }

    /// Runs `garage ARGS` against this store (its administration CLI), as
    /// an operator would: e.g. withdrawing the key's grant on the bucket.
    pub fn cli(&self, args: &[&str]) {
        let bin = std::env::var("GARAGE_BIN").ok().unwrap_or_else(|| {
            let on_path = Command::new("sh").args(["-c", "command -v garage"]).output().ok();
            match on_path.filter(|o| o.status.success()) {
                Some(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
                None => format!("{}/.cargo/bin/garage", std::env::var("HOME").unwrap_or_default()),
            }
        });
        let config = self.dir.path().join("garage.toml");
        let out = Command::new(&bin).arg("-c").arg(&config).args(args).output().expect("running garage");
        assert!(out.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The bucket's settings, for a client of the tests' own.
    pub fn settings(&self) -> tusk::backends::s3::client::S3Settings {
        tusk::backends::s3::client::S3Settings {
            endpoint: self.var("S3_ENDPOINT"),
            bucket: self.var("S3_BUCKET"),
            region: self.var("S3_REGION"),
            path_style: true,
            access_key_id: self.var("AWS_ACCESS_KEY_ID"),
            secret_access_key: self.var("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// tusk's flags for this bucket (`extra` after them).
    pub fn tusk_args(&self, part_size: &str) -> Vec<String> {
        vec![
            "--storage".into(),
            "s3".into(),
            "--s3-endpoint".into(),
            self.var("S3_ENDPOINT"),
            "--s3-bucket".into(),
            self.var("S3_BUCKET"),
            "--s3-region".into(),
            self.var("S3_REGION"),
            "--s3-path-style".into(),
            "--s3-part-size".into(),
            part_size.into(),
            "--s3-access-key-id".into(),
            self.var("AWS_ACCESS_KEY_ID"),
            "--s3-secret-access-key".into(),
            self.var("AWS_SECRET_ACCESS_KEY"),
        ]
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            super::unsafe_kill(pid, 9);
        }
    }
}

/// Where a test's server keeps upload bytes: tests that must hold on both
/// run once per store.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    Files,
    S3,
}

impl Store {
    /// A Garage for this store, if it needs one (kept alive by the caller).
    pub fn garage(self) -> Option<Garage> {
        matches!(self, Store::S3).then(Garage::start)
    }

    /// tusk on `dir` (a fresh directory if `None`) with `extra` flags and
    /// its bytes in `garage`'s bucket if there is one.
    pub fn serve_with(garage: &Option<Garage>, dir: Option<&Path>, extra: &[&str]) -> super::Server {
        let mut args: Vec<String> = garage.as_ref().map(|g| g.tusk_args("5MiB")).unwrap_or_default();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match dir {
            Some(d) => super::Server::start_in(d, &args),
            None => super::Server::start(&args),
        }
    }

    /// tusk on a fresh directory; the Garage lives as long as the returned value.
    pub fn serve(self, extra: &[&str]) -> (super::Server, Option<Garage>) {
        let garage = self.garage();
        (Store::serve_with(&garage, None, extra), garage)
    }
}

impl Garage {
    /// Every ready asset of `s` (seen with `key`, if any) read back from
    /// the bucket itself, not through tusk: the object's bytes hash to the
    /// asset's sha256, its metadata carries the same digest and its type,
    /// and no multipart upload or tail is left of it. Returns how many.
    pub fn check_objects(&self, s: &super::Server, key: Option<&str>) -> usize {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut assets = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = format!("/v1/assets?state=ready&limit=100{cursor}");
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let r = s.request("GET", &path, &headers, b"");
            assert_eq!(r.status, 200, "{r:?}");
            let page: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assets.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let settings = self.settings();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use futures_util::StreamExt;
            use sha2::Digest;
            let client = tusk::backends::s3::client::S3Client::new(&settings).unwrap();
            let pending = client.list_multipart("").await.unwrap();
            let objects = client.list_objects("").await.unwrap();
            for a in &assets {
                let (id, project) = (a["id"].as_str().unwrap(), a["project_id"].as_str().unwrap());
                let key = format!("{project}/{id}");
                let mine: Vec<_> = objects.iter().filter(|o| o.0.contains(id)).map(|o| o.0.clone()).collect();
                assert_eq!(mine, vec![key.clone()], "asset {id}: one object, no tails");
                assert!(
                    !pending.iter().any(|p| p.key.contains(id)),
                    "asset {id}: a multipart upload is left"
                );
                let headers = client.head_headers(&key).await.unwrap().expect("the object");
                let sha = a["sha256"].as_str().unwrap();
                assert_eq!(headers["x-amz-meta-sha256"].to_str().unwrap(), sha, "asset {id}: metadata");
                if let Some(ct) = a["content_type"].as_str() {
                    assert_eq!(headers["content-type"].to_str().unwrap(), ct, "asset {id}: type");
                }
                let mut stream = client.get_object(&key, None).await.unwrap();
                let (mut h, mut n) = (sha2::Sha256::new(), 0u64);
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.unwrap();
                    n += chunk.len() as u64;
                    h.update(&chunk);
                }
                assert_eq!(n, a["size_bytes"].as_u64().unwrap(), "asset {id}: size in the bucket");
                let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(got, sha, "asset {id}: the bytes in the bucket");
            }
        });
        assets.len()
    }
}
