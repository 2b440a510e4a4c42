//! The client against a real Garage, started here by `scripts/garage-start`
//! (which `scripts/test` makes sure can find the binary).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use super::client::{BucketProblem, ByteStream, S3Client, S3Settings};

/// A single-node Garage with one bucket, stopped and removed on drop.
pub struct Garage {
    pid: u32,
    pub settings: S3Settings,
    _dir: tempfile::TempDir,
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-start");
        let out = Command::new(&script).arg(dir.path()).output().expect("running scripts/garage-start");
        assert!(
            out.status.success(),
            "scripts/garage-start failed (scripts/test installs Garage when it is missing): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let get = |k: &str| vars.get(k).unwrap_or_else(|| panic!("garage-start printed no {k}")).clone();
        Garage {
            pid: get("GARAGE_PID").parse().expect("a pid"),
            settings: S3Settings {
                endpoint: get("S3_ENDPOINT"),
                bucket: get("S3_BUCKET"),
                region: get("S3_REGION"),
                path_style: true,
                access_key_id: get("AWS_ACCESS_KEY_ID"),
                secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            },
            _dir: dir,
        }
    }

    pub fn client(&self) -> S3Client {
        S3Client::new(&self.settings).expect("a client")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // SAFETY: signalling the child the script started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed as u32).to_le_bytes()[1])
        .collect()
}

async fn read_all(stream: ByteStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("reading the object");
    chunks.concat()
}

#[tokio::test]
async fn the_bucket_check_tells_what_is_wrong() {
    let garage = Garage::start();
    garage.client().check_bucket().await.expect("the bucket is there");

    let mut missing = garage.settings.clone();
    missing.bucket = "no-such-bucket".into();
    let got = S3Client::new(&missing).unwrap().check_bucket().await;
    assert!(matches!(got, Err(BucketProblem::NoSuchBucket)), "{got:?}");

    let mut wrong = garage.settings.clone();
    wrong.secret_access_key = "0".repeat(64);
    let got = S3Client::new(&wrong).unwrap().check_bucket().await;
    assert!(matches!(got, Err(BucketProblem::Credentials(_))), "{got:?}");

    let mut unknown = garage.settings.clone();
    unknown.access_key_id = "GK0000000000000000000000".into();
    let got = S3Client::new(&unknown).unwrap().check_bucket().await;
    assert!(matches!(got, Err(BucketProblem::Credentials(_))), "{got:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut away = garage.settings.clone();
    away.endpoint = format!("http://127.0.0.1:{port}");
    let got = S3Client::new(&away).unwrap().check_bucket().await;
    assert!(matches!(got, Err(BucketProblem::Unreachable(_))), "{got:?}");
}

#[tokio::test]
async fn a_multipart_upload_holds_exactly_its_parts_and_copies_on_the_store() {
    let garage = Garage::start();
    let s3 = garage.client();
    let key = "p/one";
    let first = pattern(5 << 20, 1);
    let second = pattern(1000, 2);

    let id = s3.create_multipart(key, &[("content-type", "image/png".to_string())]).await.unwrap();
    // Sent in pieces, as a PATCH's blocks arrive.
    let pieces: Vec<Bytes> = first.chunks(300_001).map(Bytes::copy_from_slice).collect();
    let e1 = s3.upload_part(key, &id, 1, pieces, first.len() as u64).await.unwrap();
    let e2 =
        s3.upload_part(key, &id, 2, vec![Bytes::from(second.clone())], second.len() as u64).await.unwrap();
    let parts = s3.list_parts(key, &id).await.unwrap();
    assert_eq!(parts.iter().map(|p| (p.number, p.size)).collect::<Vec<_>>(), [(1, 5 << 20), (2, 1000)]);
    assert_eq!(parts.iter().map(|p| p.etag.clone()).collect::<Vec<_>>(), [e1.clone(), e2.clone()]);
    let pending = s3.list_multipart("p/").await.unwrap();
    assert!(pending.iter().any(|p| p.key == key && p.upload_id == id), "{pending:?}");

    s3.complete(key, &id, &[e1, e2]).await.unwrap();
    let whole = [first.clone(), second.clone()].concat();
    assert_eq!(s3.head_object(key).await.unwrap(), Some(whole.len() as u64));
    let got = read_all(s3.get_object(key, None).await.unwrap()).await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&whole));
    let range = read_all(s3.get_object(key, Some((5 << 20, (5 << 20) + 9))).await.unwrap()).await;
    assert_eq!(range, &second[..10]);
    assert!(s3.list_multipart("p/").await.unwrap().iter().all(|p| p.upload_id != id));

    // A presigned GET works for anyone holding it.
    let url = s3.presign_get(key, std::time::Duration::from_secs(60), None);
    let copy = s3.create_multipart("p/copy", &[]).await.unwrap();
    let c1 = s3.upload_part_copy("p/copy", &copy, 1, key, Some((0, (5 << 20) - 1))).await.unwrap();
    let c2 = s3.upload_part_copy("p/copy", &copy, 2, key, None).await.unwrap();
    s3.complete("p/copy", &copy, &[c1, c2]).await.unwrap();
    let copied = read_all(s3.get_object("p/copy", None).await.unwrap()).await;
    assert_eq!(copied.len(), (5 << 20) + whole.len());
    assert_eq!(&copied[..5 << 20], &first[..]);
    assert_eq!(&copied[5 << 20..], &whole[..]);

    let fetched = fetch(&url).await;
    assert_eq!(Sha256::digest(&fetched), Sha256::digest(&whole));
}

#[tokio::test]
async fn aborts_deletes_and_small_objects_are_idempotent() {
    let garage = Garage::start();
    let s3 = garage.client();
    let id = s3.create_multipart("q/open", &[]).await.unwrap();
    s3.upload_part("q/open", &id, 1, vec![Bytes::from_static(b"tail")], 4).await.unwrap();
    s3.abort("q/open", &id).await.unwrap();
    s3.abort("q/open", &id).await.expect("aborting twice");
    assert!(s3.list_multipart("q/").await.unwrap().is_empty());
    let gone = s3.list_parts("q/open", &id).await.expect_err("no parts of an aborted upload");
    assert!(gone.is_not_found(), "{gone}");

    let meta = [("x-amz-meta-sha256", "ab".repeat(32)), ("content-type", "text/plain".to_string())];
    s3.put_object("q/tail", vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")], &meta)
        .await
        .unwrap();
    assert_eq!(s3.head_object("q/tail").await.unwrap(), Some(11));
    assert_eq!(read_all(s3.get_object("q/tail", None).await.unwrap()).await, b"hello world");
    s3.delete_object("q/tail").await.unwrap();
    s3.delete_object("q/tail").await.expect("deleting twice");
    assert_eq!(s3.head_object("q/tail").await.unwrap(), None);
    let err = match s3.get_object("q/tail", None).await {
        Err(e) => e,
        Ok(_) => panic!("a deleted object was served"),
    };
    assert!(err.is_not_found(), "{err}");
}

/// A plain GET with hyper, as a browser following a download URL would.
async fn fetch(url: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.into_body().collect().await.unwrap().to_bytes().to_vec()
}
