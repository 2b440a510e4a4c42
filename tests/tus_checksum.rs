//! checksum and checksum-trailer on PATCH (and POST with a body).
mod common;
use common::*;

fn digest(algo: &str, data: &[u8]) -> String {
    use sha2::Digest;
    match algo {
        "sha1" => b64(&sha1::Sha1::digest(data)),
        "sha256" => b64(&sha2::Sha256::digest(data)),
        "sha512" => b64(&sha2::Sha512::digest(data)),
        "md5" => b64(&md5::Md5::digest(data)),
        _ => unreachable!(),
    }
}

#[test]
fn good_and_bad_checksums() {
    let s = Server::start(&[]);
    let data = bytes(40_000, 21);
    for algo in ["sha1", "sha256", "sha512", "md5"] {
        let path = s.create(40_000, &[]);
        let good = format!("{algo} {}", digest(algo, &data[..20_000]));
        let r = s.patch(&path, 0, &data[..20_000], &[("Upload-Checksum", &good)]);
        assert_eq!(r.status, 204, "{algo}: {r:?}");
        assert_eq!(r.header("upload-offset"), Some("20000"));

        // Mismatch: 460, offset unchanged, bytes not stored.
        let wrong = format!("{algo} {}", digest(algo, b"something else"));
        let r = s.patch(&path, 20_000, &data[20_000..], &[("Upload-Checksum", &wrong)]);
        assert_eq!(r.status, 460, "{algo}: {r:?}");
        assert_eq!(r.header("upload-offset"), Some("20000"));
        assert_eq!(s.offset(&path), Some(20_000));
        assert_eq!(s.get(&path).body, &data[..20_000], "{algo}: the bad chunk is not visible");

        // The right chunk afterwards completes the upload with the right bytes.
        let good = format!("{algo} {}", digest(algo, &data[20_000..]));
        let r = s.patch(&path, 20_000, &data[20_000..], &[("Upload-Checksum", &good)]);
        assert_eq!(r.status, 204, "{algo}: {r:?}");
        assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data), "{algo}");
    }
}

#[test]
fn unknown_or_malformed_checksum() {
    let s = Server::start(&[]);
    let path = s.create(10, &[]);
    for v in ["crc32 AAAAAA==", "SHA1 ", "sha1", "sha1 !!!notbase64", "blake3 AAAA"] {
        let r = s.patch(&path, 0, b"abcde", &[("Upload-Checksum", v)]);
        assert_eq!(r.status, 400, "{v:?}: {r:?}");
        assert_eq!(s.offset(&path), Some(0), "{v:?}");
    }
    assert!(s.get(&path).body.is_empty());
}

#[test]
fn checksum_on_creation_with_upload() {
    let s = Server::start(&[]);
    let data = b"hello world";
    let bad = format!("sha1 {}", digest("sha1", b"nope"));
    let r =
        s.request("POST", "/files/", &[TUS, ("Upload-Length", "11"), OCTET, ("Upload-Checksum", &bad)], data);
    assert_eq!(r.status, 460, "{r:?}");
    let path = Server::path_of(r.header("location").expect("Location on 460"));
    assert_eq!(s.offset(&path), Some(0));
    // An unknown algorithm: 400, the upload exists at offset 0 and its Location is sent.
    let r = s.request(
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", "11"), OCTET, ("Upload-Checksum", "crc32 AAAAAA==")],
        data,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    let path = Server::path_of(r.header("location").expect("Location on 400"));
    assert_eq!(s.offset(&path), Some(0));
    let good = format!("sha1 {}", digest("sha1", data));
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "11"), OCTET, ("Upload-Checksum", &good)], data);
    assert_eq!(r.header("upload-offset"), Some("11"));
    assert_eq!(s.get(&path).body, data);
}

#[test]
fn checksum_trailer() {
    let s = Server::start(&[]);
    let data = bytes(30_000, 22);
    let path = s.create(30_000, &[]);
    let h = patch_headers("0", &[("Transfer-Encoding", "chunked"), ("Trailer", "Upload-Checksum")]);

    let bad = format!("sha256 {}", digest("sha256", b"other"));
    let r = s.request("PATCH", &path, &h, &chunked(&data[..10_000], 4096, &[("Upload-Checksum", &bad)]));
    assert_eq!(r.status, 460, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(s.offset(&path), Some(0));
    assert!(s.get(&path).body.is_empty());

    for (i, algo) in ["sha1", "md5", "sha512"].iter().enumerate() {
        let (a, b) = (i * 10_000, (i + 1) * 10_000);
        let good = format!("{algo} {}", digest(algo, &data[a..b]));
        let off = a.to_string();
        let h = patch_headers(&off, &[("Transfer-Encoding", "chunked"), ("Trailer", "Upload-Checksum")]);
        let r = s.request("PATCH", &path, &h, &chunked(&data[a..b], 3000, &[("Upload-Checksum", &good)]));
        assert_eq!(r.status, 204, "{algo}: {r:?}");
        assert_eq!(r.header("upload-offset"), Some(b.to_string().as_str()));
    }
    assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data));
}

#[test]
fn checksum_trailer_announced_but_missing() {
    let s = Server::start(&[]);
    let path = s.create(10, &[]);
    let h = patch_headers("0", &[("Transfer-Encoding", "chunked"), ("Trailer", "Upload-Checksum")]);
    let r = s.request("PATCH", &path, &h, &chunked(b"abcde", 2, &[]));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(s.offset(&path), Some(0));
    // An unknown algorithm in the trailer: 400, discarded.
    let r = s.request("PATCH", &path, &h, &chunked(b"abcde", 2, &[("Upload-Checksum", "crc32 AAAAAA==")]));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(s.offset(&path), Some(0));
}
