//! The S3 calls tusk makes, over hyper's client.
//!
//! rusty-s3 signs each call sans-IO: it turns an action into a presigned URL
//! (SigV4 in the query string, `UNSIGNED-PAYLOAD`), so a body can stream
//! without being hashed first and the same hyper client that serves also
//! sends. The handful of calls rusty-s3 has no action for
//! (ListMultipartUploads, UploadPartCopy) are signed with its `sign` or
//! through `UploadPart` with a copy-source header.
//!
//! Every failure is one of three [`S3Error`] cases, so callers above can
//! answer 503 (the store is away) or say what the store refused, never a
//! bare 500.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

/// An object's bytes as they arrive. The same type as the byte store port's
/// `ByteStream`, spelled here because backends import nothing above them.
pub type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// How long a presigned call stays valid: it is sent at once, so this only
/// has to outlast clock skew and a slow first byte.
const SIGN_TTL: Duration = Duration::from_secs(15 * 60);
/// A call without a large body that takes longer than this counts as the
/// store being away.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A body is allowed this long plus a second per MiB (1 MiB/s at least).
const BODY_GRACE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Body = BoxBody<Bytes, io::Error>;

/// Where the bucket is and who we are to it.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Settings {
    /// Without the secret: settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub enum S3Error {
    /// No answer: connection refused or cut, DNS, TLS, timeout.
    Unreachable(String),
    /// The store answered with an error.
    Refused { status: StatusCode, code: String, message: String },
    /// The store answered something this client cannot read.
    Garbled(String),
}

impl S3Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, S3Error::Refused { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::Unreachable(e) => write!(f, "object storage unreachable: {e}"),
            S3Error::Refused { status, code, message } if message.is_empty() => {
                write!(f, "object storage refused the request: {} {code}", status.as_u16())
            }
            S3Error::Refused { status, code, message } => {
                write!(f, "object storage refused the request: {} {code}: {message}", status.as_u16())
            }
            S3Error::Garbled(e) => write!(f, "object storage answered something unreadable: {e}"),
        }
    }
}

impl std::error::Error for S3Error {}

impl From<S3Error> for io::Error {
    fn from(e: S3Error) -> io::Error {
        let kind = match &e {
            S3Error::Unreachable(_) => io::ErrorKind::NotConnected,
            // The store is there but failing (500, 503 SlowDown): retry later.
            S3Error::Refused { status, .. } if status.is_server_error() => io::ErrorKind::NotConnected,
            // Too many requests: the same, after a pause.
            S3Error::Refused { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                io::ErrorKind::NotConnected
            }
            S3Error::Refused { status, .. } if *status == StatusCode::NOT_FOUND => io::ErrorKind::NotFound,
            // Credentials revoked or the bucket's grant withdrawn while tusk
            // runs: the operator's to fix, and the client's retry then works.
            S3Error::Refused { status, .. } if *status == StatusCode::FORBIDDEN => {
                io::ErrorKind::PermissionDenied
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// A part already in the multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub number: u16,
    pub etag: String,
    pub size: u64,
}

/// A multipart upload the bucket holds (for the sweeper).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub key: String,
    pub upload_id: String,
    /// As the store wrote it (RFC 3339).
    pub initiated: String,
}

/// Why the bucket check at start failed, worded for the operator.
#[derive(Debug)]
pub enum BucketProblem {
    Unreachable(String),
    NoSuchBucket,
    Credentials(String),
    Other(S3Error),
}

pub struct S3Client {
    bucket: Bucket,
    credentials: Credentials,
    http: HyperClient<HttpsConnector<HttpConnector>, Body>,
    endpoint: String,
}

impl S3Client {
    pub fn new(settings: &S3Settings) -> Result<S3Client, String> {
        let endpoint: Url = settings
            .endpoint
            .parse()
            .map_err(|e| format!("--s3-endpoint {:?} is not a URL: {e}", settings.endpoint))?;
        let style = if settings.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint, style, settings.bucket.clone(), settings.region.clone())
            .map_err(|e| format!("--s3-endpoint {:?}: {e}", settings.endpoint))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(S3Client {
            bucket,
            credentials: Credentials::new(&settings.access_key_id, &settings.secret_access_key),
            http,
            endpoint: settings.endpoint.clone(),
        })
    }

    /// Lists one key: unlike HeadBucket, an error comes with a body that
    /// says whether the bucket or the key is wrong.
    pub async fn check_bucket(&self) -> Result<(), BucketProblem> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_max_keys(1);
        let url = action.sign(SIGN_TTL);
        match self.call(Method::GET, url, &[], empty(), CALL_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(S3Error::Unreachable(e)) => {
                Err(BucketProblem::Unreachable(format!("{}: {e}", self.endpoint)))
            }
            Err(S3Error::Refused { code, .. }) if code == "NoSuchBucket" => Err(BucketProblem::NoSuchBucket),
            Err(S3Error::Refused { status, code, message })
                if status == StatusCode::FORBIDDEN
                    || matches!(
                        code.as_str(),
                        "InvalidAccessKeyId"
                            | "SignatureDoesNotMatch"
                            | "AccessDenied"
                            | "AuthorizationHeaderMalformed"
                    ) =>
            {
                Err(BucketProblem::Credentials(format!("{} {code}: {message}", status.as_u16())))
            }
            Err(S3Error::Refused { status, .. }) if status == StatusCode::NOT_FOUND => {
                Err(BucketProblem::NoSuchBucket)
            }
            Err(e) => Err(BucketProblem::Other(e)),
        }
    }

    /// Starts a multipart upload; the object's `Content-Type` and metadata
    /// (`headers`) are fixed here.
    pub async fn create_multipart(&self, key: &str, headers: &[(&str, String)]) -> Result<String, S3Error> {
        let mut action = self.bucket.create_multipart_upload(Some(&self.credentials), key);
        let headers = sign_headers(&mut action, headers.to_vec());
        let url = action.sign(SIGN_TTL);
        let (_, body) = self.call(Method::POST, url, &headers, empty(), CALL_TIMEOUT).await?;
        let text = utf8(&body)?;
        let parsed = rusty_s3::actions::CreateMultipartUpload::parse_response(text)
            .map_err(|e| S3Error::Garbled(format!("CreateMultipartUpload: {e}")))?;
        Ok(parsed.upload_id().to_string())
    }

    /// Uploads one part from `chunks` (`len` bytes in all) and returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        chunks: Vec<Bytes>,
        len: u64,
    ) -> Result<String, S3Error> {
        let url = self.bucket.upload_part(Some(&self.credentials), key, number, upload_id).sign(SIGN_TTL);
        let (headers, _) = self
            .call(
                Method::PUT,
                url,
                &[("content-length", len.to_string())],
                chunked(chunks),
                body_timeout(len),
            )
            .await?;
        etag_of(&headers)
    }

    /// Uploads one part of `len` bytes while they arrive: the body is what
    /// `frames` yields, sent as it comes (a part's upload overlaps its
    /// reception, and no part is held whole for it). No deadline while the
    /// body flows: the sender paces it and ends it with an error to abort
    /// (the store then keeps nothing of the part); the caller bounds the
    /// wait for the answer once the body is complete.
    pub async fn upload_part_streamed(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        frames: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
        len: u64,
    ) -> Result<String, S3Error> {
        let url = self.bucket.upload_part(Some(&self.credentials), key, number, upload_id).sign(SIGN_TTL);
        let frames = futures_util::stream::unfold(frames, |mut rx| async move {
            rx.recv().await.map(|item| (item.map(Frame::data), rx))
        });
        let body = BodyExt::boxed(StreamBody::new(frames));
        let request = Request::builder()
            .method(Method::PUT)
            .uri(url.as_str())
            .header("content-length", len.to_string())
            .body(body)
            .map_err(|e| S3Error::Garbled(format!("request: {e}")))?;
        let response = self.http.request(request).await.map_err(|e| S3Error::Unreachable(describe(&e)))?;
        let response = refuse_errors(response).await?;
        let headers = response.headers().clone();
        let _ = tokio::time::timeout(CALL_TIMEOUT, response.into_body().collect()).await;
        etag_of(&headers)
    }

    /// Makes part `number` a copy of `source`'s bytes `range` (inclusive), on the store's side.
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        source: &str,
        range: Option<(u64, u64)>,
    ) -> Result<String, S3Error> {
        let mut action = self.bucket.upload_part(Some(&self.credentials), key, number, upload_id);
        let mut headers = vec![("x-amz-copy-source", format!("/{}/{}", self.bucket.name(), source))];
        if let Some((first, last)) = range {
            headers.push(("x-amz-copy-source-range", format!("bytes={first}-{last}")));
        }
        let headers = sign_headers(&mut action, headers);
        let url = action.sign(SIGN_TTL);
        let (_, body) = self.call(Method::PUT, url, &headers, empty(), CALL_TIMEOUT * 4).await?;
        let text = utf8(&body)?;
        if text.contains("<Error>") {
            return Err(refusal_in_body(text));
        }
        tag(text, "ETag")
            .map(|e| unescape(e).trim_matches('"').to_string())
            .ok_or_else(|| S3Error::Garbled(format!("UploadPartCopy without an ETag: {}", snippet(text))))
    }

    /// Every part of a multipart upload, in order (all pages).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, S3Error> {
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(Some(&self.credentials), key, upload_id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let url = action.sign(SIGN_TTL);
            let (_, body) = self.call(Method::GET, url, &[], empty(), CALL_TIMEOUT).await?;
            let page = rusty_s3::actions::ListParts::parse_response(utf8(&body)?)
                .map_err(|e| S3Error::Garbled(format!("ListParts: {e}")))?;
            parts.extend(page.parts.into_iter().map(|p| Part {
                number: p.number,
                etag: p.etag.trim_matches('"').to_string(),
                size: p.size,
            }));
            match page.next_part_number_marker {
                Some(m) if marker != Some(m) && m != 0 => marker = Some(m),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Joins the parts into the object. A 200 can still carry an error.
    pub async fn complete(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), S3Error> {
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGN_TTL);
        let xml = action.body();
        let len = xml.len().to_string();
        let (_, body) = self
            .call(Method::POST, url, &[("content-length", len)], full(Bytes::from(xml)), CALL_TIMEOUT * 4)
            .await?;
        let text = utf8(&body)?;
        if text.contains("<Error>") {
            return Err(refusal_in_body(text));
        }
        Ok(())
    }

    /// Gone already counts as done: an abort is retried after crashes.
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let url = self.bucket.abort_multipart_upload(Some(&self.credentials), key, upload_id).sign(SIGN_TTL);
        match self.call(Method::DELETE, url, &[], empty(), CALL_TIMEOUT).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Stores a whole (small) object; `headers` are signed with it
    /// (`content-type`, `x-amz-meta-…`).
    pub async fn put_object(
        &self,
        key: &str,
        body: Vec<Bytes>,
        headers: &[(&str, String)],
    ) -> Result<(), S3Error> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        let mut all = sign_headers(&mut action, headers.to_vec());
        let url = action.sign(SIGN_TTL);
        let len: u64 = body.iter().map(|b| b.len() as u64).sum();
        all.push(("content-length", len.to_string()));
        self.call(Method::PUT, url, &all, chunked(body), body_timeout(len)).await?;
        Ok(())
    }

    /// The object's length, or `None` when there is none.
    pub async fn head_object(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(SIGN_TTL);
        match self.call(Method::HEAD, url, &[], empty(), CALL_TIMEOUT).await {
            Ok((headers, _)) => Ok(Some(content_length(&headers)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams the object, or bytes `first..=last` of it.
    pub async fn get_object(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream, S3Error> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGN_TTL);
        let headers: Vec<(&str, String)> =
            range.map(|(first, last)| vec![("range", format!("bytes={first}-{last}"))]).unwrap_or_default();
        let response = self.send(Method::GET, url, &headers, empty(), CALL_TIMEOUT).await?;
        let response = refuse_errors(response).await?;
        Ok(Box::pin(response.into_body().into_data_stream().map_err(io::Error::other)))
    }

    /// A presigned GET the client can follow itself.
    pub fn presign_get(&self, key: &str, ttl: Duration, disposition: Option<&str>) -> String {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        if let Some(d) = disposition {
            action.query_mut().insert("response-content-disposition", d.to_string());
        }
        action.sign(ttl).to_string()
    }

    /// Gone already counts as done.
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(SIGN_TTL);
        match self.call(Method::DELETE, url, &[], empty(), CALL_TIMEOUT).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Copies `source` onto `key` on the store's side, replacing its
    /// metadata with `headers` (`content-type`, `x-amz-meta-…`). One call
    /// copies at most 5 GiB.
    pub async fn copy_object(
        &self,
        source: &str,
        key: &str,
        headers: &[(&str, String)],
    ) -> Result<(), S3Error> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        let mut all = vec![
            ("x-amz-copy-source", format!("/{}/{}", self.bucket.name(), source)),
            ("x-amz-metadata-directive", "REPLACE".to_string()),
        ];
        all.extend(headers.iter().cloned());
        let all = sign_headers(&mut action, all);
        let url = action.sign(SIGN_TTL);
        let (_, body) = self.call(Method::PUT, url, &all, empty(), CALL_TIMEOUT * 4).await?;
        let text = utf8(&body)?;
        if text.contains("<Error>") {
            return Err(refusal_in_body(text));
        }
        Ok(())
    }

    /// The keys (and sizes) of every object under `prefix` (all pages).
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_TTL);
            let (_, body) = self.call(Method::GET, url, &[], empty(), CALL_TIMEOUT).await?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(utf8(&body)?)
                .map_err(|e| S3Error::Garbled(format!("ListObjectsV2: {e}")))?;
            found.extend(page.contents.into_iter().map(|c| (c.key, c.size)));
            match page.next_continuation_token {
                Some(t) if token.as_ref() != Some(&t) => token = Some(t),
                _ => break,
            }
        }
        Ok(found)
    }

    /// The object's headers (length, type, `x-amz-meta-…`), or `None` when there is none.
    pub async fn head_headers(&self, key: &str) -> Result<Option<HeaderMap>, S3Error> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(SIGN_TTL);
        match self.call(Method::HEAD, url, &[], empty(), CALL_TIMEOUT).await {
            Ok((headers, _)) => Ok(Some(headers)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every multipart upload under `prefix` (all pages).
    pub async fn list_multipart(&self, prefix: &str) -> Result<Vec<Pending>, S3Error> {
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", String::new()), ("prefix", prefix.to_string())];
            if let Some((key, id)) = &markers {
                query.push(("key-marker", key.clone()));
                query.push(("upload-id-marker", id.clone()));
            }
            // `sign` merges these with its own parameters and needs them sorted.
            query.sort();
            let url = rusty_s3::signing::sign(
                &jiff::Timestamp::now(),
                rusty_s3::Method::Get,
                self.bucket.base_url().clone(),
                self.credentials.key(),
                self.credentials.secret(),
                self.credentials.token(),
                self.bucket.region(),
                SIGN_TTL.as_secs(),
                query.iter().map(|(k, v)| (*k, v.as_str())),
                std::iter::empty(),
            );
            let (_, body) = self.call(Method::GET, url, &[], empty(), CALL_TIMEOUT).await?;
            let text = utf8(&body)?;
            for upload in text.split("<Upload>").skip(1) {
                let (Some(key), Some(upload_id)) = (tag(upload, "Key"), tag(upload, "UploadId")) else {
                    return Err(S3Error::Garbled(format!("ListMultipartUploads: {}", snippet(upload))));
                };
                found.push(Pending {
                    key: unescape(key),
                    upload_id: unescape(upload_id),
                    initiated: tag(upload, "Initiated").map(unescape).unwrap_or_default(),
                });
            }
            let truncated = tag(text, "IsTruncated") == Some("true");
            let next =
                (tag(text, "NextKeyMarker").map(unescape), tag(text, "NextUploadIdMarker").map(unescape));
            match next {
                (Some(k), Some(u)) if truncated && markers.as_ref() != Some(&(k.clone(), u.clone())) => {
                    markers = Some((k, u))
                }
                _ => break,
            }
        }
        Ok(found)
    }

    /// Sends and reads the whole answer; an error status becomes [`S3Error::Refused`].
    async fn call(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, String)],
        body: Body,
        timeout: Duration,
    ) -> Result<(HeaderMap, Bytes), S3Error> {
        let response = self.send(method, url, headers, body, timeout).await?;
        let response = refuse_errors(response).await?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, body.collect())
            .await
            .map_err(|_| S3Error::Unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| S3Error::Unreachable(e.to_string()))?
            .to_bytes();
        Ok((parts.headers, body))
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, String)],
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>, S3Error> {
        let mut request = Request::builder().method(method).uri(url.as_str());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let request = request.body(body).map_err(|e| S3Error::Garbled(format!("request: {e}")))?;
        match tokio::time::timeout(timeout, self.http.request(request)).await {
            Err(_) => Err(S3Error::Unreachable(format!("no answer within {timeout:?}"))),
            Ok(Err(e)) => Err(S3Error::Unreachable(describe(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// The error's chain of causes, which hyper keeps out of its own message.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn refuse_errors(response: Response<Incoming>) -> Result<Response<Incoming>, S3Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = tokio::time::timeout(CALL_TIMEOUT, response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    Err(S3Error::Refused {
        status,
        code: tag(&text, "Code")
            .map(unescape)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").into()),
        message: tag(&text, "Message").map(unescape).unwrap_or_default(),
    })
}

fn refusal_in_body(text: &str) -> S3Error {
    S3Error::Refused {
        status: StatusCode::OK,
        code: tag(text, "Code").map(unescape).unwrap_or_default(),
        message: tag(text, "Message").map(unescape).unwrap_or_default(),
    }
}

/// Signs `headers` into `action` and returns them, to be sent as signed.
fn sign_headers<'a, A: S3Action<'a>>(
    action: &mut A,
    headers: Vec<(&'a str, String)>,
) -> Vec<(&'a str, String)> {
    for (k, v) in &headers {
        action.headers_mut().insert(*k, v.clone());
    }
    headers
}

fn body_timeout(len: u64) -> Duration {
    BODY_GRACE + Duration::from_secs(len >> 20)
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// The chunks as they are, without joining them into one buffer.
fn chunked(chunks: Vec<Bytes>) -> Body {
    let frames = futures_util::stream::iter(chunks.into_iter().map(|b| Ok::<_, io::Error>(Frame::data(b))));
    BodyExt::boxed(StreamBody::new(frames))
}

fn utf8(body: &Bytes) -> Result<&str, S3Error> {
    std::str::from_utf8(body).map_err(|_| S3Error::Garbled("an answer that is not UTF-8".into()))
}

fn etag_of(headers: &HeaderMap) -> Result<String, S3Error> {
    headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string())
        .ok_or_else(|| S3Error::Garbled("an answer without an ETag".into()))
}

fn content_length(headers: &HeaderMap) -> Result<u64, S3Error> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| S3Error::Garbled("HeadObject without a Content-Length".into()))
}

/// The text of the first `<name>…</name>` in `xml`: the answers read here
/// are flat enough that this is all the XML they need.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect()
}
