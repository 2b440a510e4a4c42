mod common;
use common::*;

#[test]
fn upload_round_trip() {
    let s = Server::start(&[]);
    let data = bytes(100_000, 1);
    let path = s.create(data.len() as u64, &[("Upload-Metadata", "filename YS5iaW4=")]);
    let r = s.patch(&path, 0, &data[..40_000], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("40000"));
    let r = s.patch(&path, 40_000, &data[40_000..], &[]);
    assert_eq!(r.status, 204);
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("100000"));
    assert_eq!(h.header("upload-metadata"), Some("filename YS5iaW4="));
    let g = s.request("GET", &path, &[], b"");
    assert_eq!(g.status, 200);
    assert_eq!(sha256_hex(&g.body), sha256_hex(&data));
}
