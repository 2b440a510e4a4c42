//! Command line and environment configuration.
//!
//! Every flag has a matching `TUSK_*` environment variable so the same binary
//! can be configured by a process manager or by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::asset::AssetType;
use crate::backends::s3::client::S3Settings;
use crate::backends::s3::store::Layout;

#[derive(Debug, Parser)]
#[command(name = "tusk", version, about = "Resumable uploads (tus 1.0 + IETF draft) with asset metadata")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` is the default subcommand, so its flags are accepted at the top level too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the upload server (the default).
    Serve(Box<ServeArgs>),
    /// Create, list and revoke API keys (works while a server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Per-project limits and quotas, and what each project stores.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Print a link to the upload page that lets whoever opens it upload
    /// into a project, without a key, until it expires (an upload token).
    UploadLink(UploadLinkArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Set a project's limits (each flag changes one; `none` clears it).
    /// A running server applies them within a second.
    Set {
        name: String,
        /// Largest upload, in bytes (KiB/MiB/GiB suffixes), or `none`.
        #[arg(long, value_parser = parse_setting_size)]
        max_size: Option<Setting<u64>>,
        /// Comma list of asset types accepted (audio,video,image,document,archive,other), or `none` for any.
        #[arg(long, value_parser = parse_setting_types)]
        allowed_types: Option<Setting<Vec<AssetType>>>,
        /// Bytes the project may store in all, or `none`.
        #[arg(long, value_parser = parse_setting_size)]
        quota: Option<Setting<u64>>,
        /// Longest audio or video accepted, in seconds, or `none`.
        #[arg(long, value_parser = parse_setting_u64)]
        max_duration: Option<Setting<u64>>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One line per project: name, quota, bytes stored, assets, uploads in flight.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A project's limits and usage.
    Show {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct UploadLinkArgs {
    /// Project the uploads go into.
    #[arg(long)]
    pub project: String,
    /// How long the link works, e.g. `7d`, `12h`.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub expires: Duration,
    /// Largest file, in bytes (KiB/MiB/GiB suffixes).
    #[arg(long, value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Comma list of asset types accepted.
    #[arg(long, value_delimiter = ',', value_parser = parse_type)]
    pub types: Option<Vec<AssetType>>,
    /// Most files that may be uploaded with the link.
    #[arg(long)]
    pub max_uploads: Option<u64>,
    /// Longest audio or video, in seconds.
    #[arg(long)]
    pub max_duration: Option<u64>,
    /// The server's public address, as people will open it.
    #[arg(long, env = "TUSK_PUBLIC_URL", default_value = "http://127.0.0.1:1080")]
    pub url: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where the commands that manage keys, tokens and projects find them.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The server's data directory (where keys live without a database).
    #[arg(long, env = "TUSK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The servers' PostgreSQL database (`postgres://…`), if they use one:
    /// keys, tokens and projects are then read and written there.
    #[arg(long, env = "TUSK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

pub use crate::projects::Setting;

fn is_none_word(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "none" | "unlimited" | "any")
}

fn parse_setting_size(s: &str) -> Result<Setting<u64>, String> {
    if is_none_word(s) { Ok(Setting::Clear) } else { parse_size(s).map(Setting::Set) }
}

fn parse_setting_u64(s: &str) -> Result<Setting<u64>, String> {
    if is_none_word(s) {
        return Ok(Setting::Clear);
    }
    s.trim().parse().map(Setting::Set).map_err(|_| format!("invalid number {s:?}"))
}

fn parse_setting_types(s: &str) -> Result<Setting<Vec<AssetType>>, String> {
    if is_none_word(s) {
        return Ok(Setting::Clear);
    }
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(parse_type)
        .collect::<Result<Vec<_>, _>>()
        .map(Setting::Set)
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a project; prints its secret (shown only once).
    Create {
        /// Project the key's uploads belong to (created on first use).
        #[arg(long)]
        project: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One line per key: id, project, created, revoked or active. Never secrets.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id (from `keys list`) or by its secret.
    Revoke {
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TUSK_LISTEN", default_value = "127.0.0.1:1080")]
    pub listen: SocketAddr,

    /// Directory for upload bytes and the metadata database.
    #[arg(long, env = "TUSK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// URL path of the tus creation endpoint; uploads live below it.
    #[arg(long, env = "TUSK_BASE_PATH", default_value = "/files/")]
    pub base_path: String,

    /// Largest upload accepted, in bytes (advertised as Tus-Max-Size). Unlimited if unset.
    #[arg(long, env = "TUSK_MAX_SIZE")]
    pub max_size: Option<u64>,

    /// Unfinished uploads untouched for this long are removed, e.g. `24h`, `90m`, `30s`.
    #[arg(long, env = "TUSK_EXPIRE_AFTER", default_value = "24h", value_parser = parse_duration)]
    pub expire_after: Duration,

    /// A request body that sends nothing for this long is cut; bytes received are kept.
    #[arg(long, env = "TUSK_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Trust `Forwarded`, `X-Forwarded-Host` and `X-Forwarded-Proto` when building URLs.
    #[arg(long, env = "TUSK_BEHIND_PROXY", default_value_t = false)]
    pub behind_proxy: bool,

    /// Comma-separated origins allowed by CORS, or `*` for any origin.
    /// Default: any origin once API keys are in use; in open mode (no key)
    /// only pages on this machine (localhost, 127.0.0.0/8, [::1]).
    #[arg(long, env = "TUSK_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Send `Access-Control-Allow-Credentials: true` to the origins of
    /// `--cors-origins` (an explicit list only). tusk authenticates with
    /// headers, never cookies, so only a page that also needs cookies for a
    /// proxy in front of tusk needs this.
    #[arg(long, env = "TUSK_CORS_ALLOW_CREDENTIALS", default_value_t = false)]
    pub cors_allow_credentials: bool,

    /// A connection must deliver a complete request head within this long:
    /// from its first byte on, and again while idle between requests
    /// (keep-alive). Silent and byte-by-byte clients are closed after it.
    #[arg(long, env = "TUSK_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Most connections served at once from one client address (the
    /// forwarded client address with `--behind-proxy`, counted per request).
    #[arg(long, env = "TUSK_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Also speak HTTP/2 without TLS (h2c, prior knowledge), as tusd's `-enable-h2c`.
    #[arg(long, env = "TUSK_H2C", default_value_t = false)]
    pub h2c: bool,

    /// How long a request for an upload waits for an older request on the same
    /// upload to let go (it is asked to stop at once) before answering 423.
    #[arg(long, env = "TUSK_LOCK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Most connections served at once; more wait in the accept queue.
    #[arg(long, env = "TUSK_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Threads that run requests. Default: one fewer than the CPUs, at least
    /// one, because every upload also keeps a hashing and a disk thread busy;
    /// on 2 CPUs a second request thread cost more in cross-thread wakeups
    /// than it gave (benches/RESULTS.md).
    #[arg(long, env = "TUSK_WORKERS")]
    pub workers: Option<usize>,

    /// Default lifetime of signed upload URLs and upload tokens (`expires_in`
    /// overrides it per request), e.g. `1h`.
    #[arg(long, env = "TUSK_UPLOAD_URL_TTL", default_value = "1h", value_parser = parse_duration)]
    pub upload_url_ttl: Duration,

    /// Lifetime of signed download URLs, e.g. `15m`.
    #[arg(long, env = "TUSK_DOWNLOAD_TTL", default_value = "15m", value_parser = parse_duration)]
    pub download_ttl: Duration,

    /// Asset types accepted (comma list of audio,video,image,document,archive,other);
    /// other uploads end `failed` with `type_not_allowed`. Default: all.
    #[arg(long, env = "TUSK_ALLOWED_TYPES", value_delimiter = ',', value_parser = parse_type)]
    pub allowed_types: Option<Vec<AssetType>>,

    /// Free space kept on the data directory's file system, in bytes (or with
    /// a KiB/MiB/GiB suffix). Below it, creations and PATCHes answer 507 and a
    /// PATCH stops after storing what it received, so the metadata database
    /// never meets a full disk (sled then fails every write until a restart).
    /// 0 turns the check off.
    #[arg(long, env = "TUSK_MIN_FREE_SPACE", default_value = "64MiB", value_parser = parse_size)]
    pub min_free_space: u64,

    /// Serve without API keys on a non-loopback address while no key exists.
    #[arg(long, env = "TUSK_ALLOW_ANONYMOUS", default_value_t = false)]
    pub allow_anonymous: bool,

    /// PostgreSQL for the metadata, keys, tokens, project policies, locks
    /// and events (`postgres://user:password@host:port/db`), so that several
    /// nodes (with `--storage s3`) serve one set of uploads. Without it,
    /// everything lives in the data directory (sled).
    #[arg(long, env = "TUSK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where upload bytes live: `files` (the data directory) or `s3` (a
    /// bucket; the metadata stays in the data directory or the database).
    #[arg(long, env = "TUSK_STORAGE", value_enum, default_value = "files")]
    pub storage: StorageKind,

    /// S3 endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:3900`.
    #[arg(long, env = "TUSK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Bucket for upload bytes (it must exist).
    #[arg(long, env = "TUSK_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Region the requests are signed for. Default: `AWS_REGION`, else `us-east-1`.
    #[arg(long, env = "TUSK_S3_REGION")]
    pub s3_region: Option<String>,

    /// Put before every object key (`{prefix}{project_id}/{upload_id}`), e.g. `uploads/`.
    #[arg(long, env = "TUSK_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// Address the bucket as `endpoint/bucket/key` instead of `bucket.endpoint/key`
    /// (MinIO, Garage and most self-hosted stores need this).
    #[arg(long, env = "TUSK_S3_PATH_STYLE", default_value_t = false)]
    pub s3_path_style: bool,

    /// Bytes per part of a multipart upload (5 MiB to 5 GiB, a multiple of
    /// 4 KiB); every part but the last has this size.
    #[arg(long, env = "TUSK_S3_PART_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub s3_part_size: u64,

    /// Memory all uploads' part buffers may use together; past it, uploads
    /// wait for a buffer rather than grow memory.
    #[arg(long, env = "TUSK_S3_BUFFER", default_value = "256MiB", value_parser = parse_size)]
    pub s3_buffer: u64,

    /// Access key id. Default: `AWS_ACCESS_KEY_ID`.
    #[arg(long, env = "TUSK_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "TUSK_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Make an asset's `download_url` a presigned GET of its object (valid
    /// `--download-ttl`) instead of a signed tusk URL.
    #[arg(long, env = "TUSK_S3_PRESIGN_DOWNLOADS", default_value_t = false)]
    pub s3_presign_downloads: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Files,
    S3,
}

/// Where upload bytes live, as configured.
#[derive(Debug, Clone)]
pub enum Storage {
    Files,
    S3 { settings: S3Settings, layout: Layout, presign_downloads: bool },
}

/// `--storage s3` with its flags checked, or what is wrong with them.
fn storage(a: &ServeArgs) -> Result<Storage, String> {
    if a.storage == StorageKind::Files {
        return Ok(Storage::Files);
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let need = |v: &Option<String>, flag: &str, var: &str| {
        v.clone().or_else(|| env(var)).ok_or_else(|| format!("--storage s3 needs {flag} (or {var})"))
    };
    let endpoint = need(&a.s3_endpoint, "--s3-endpoint", "TUSK_S3_ENDPOINT")?;
    let bucket = need(&a.s3_bucket, "--s3-bucket", "TUSK_S3_BUCKET")?;
    let access_key_id = need(&a.s3_access_key_id, "--s3-access-key-id", "AWS_ACCESS_KEY_ID")?;
    let secret_access_key = need(&a.s3_secret_access_key, "--s3-secret-access-key", "AWS_SECRET_ACCESS_KEY")?;
    let region = a.s3_region.clone().or_else(|| env("AWS_REGION")).unwrap_or_else(|| "us-east-1".into());
    let ps = a.s3_part_size;
    if !(5 << 20..=5 << 30).contains(&ps) || !ps.is_multiple_of(4096) {
        return Err(format!(
            "--s3-part-size {ps} is not allowed: object storage takes parts of 5 MiB to 5 GiB, and tusk needs a \
             multiple of 4 KiB"
        ));
    }
    if a.s3_buffer < ps {
        return Err(format!("--s3-buffer ({} bytes) must hold at least one part ({ps} bytes)", a.s3_buffer));
    }
    Ok(Storage::S3 {
        settings: S3Settings {
            endpoint,
            bucket,
            region,
            path_style: a.s3_path_style,
            access_key_id,
            secret_access_key,
        },
        layout: Layout { prefix: a.s3_prefix.clone(), part_size: ps, buffer: a.s3_buffer },
        presign_downloads: a.s3_presign_downloads,
    })
}

fn parse_type(t: &str) -> Result<AssetType, String> {
    AssetType::parse(t.trim()).ok_or_else(|| {
        format!("unknown asset type {t:?}; use audio, video, image, document, archive or other")
    })
}

impl Default for ServeArgs {
    fn default() -> Self {
        // Parsing an empty command line yields exactly the documented defaults.
        let cli = Cli::parse_from(["tusk"]);
        cli.serve
    }
}

/// Bytes: a bare number, or one with a K/KiB, M/MiB or G/GiB suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("invalid size {s:?}: expected a number of bytes, e.g. 64MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => return Err(format!("invalid size {s:?}: unit must be KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Accepts `humantime` durations (`24h`, `1m30s`) and bare seconds (`90`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// The configuration the server runs with, normalised once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Always starts and ends with `/`.
    pub base_path: String,
    pub max_size: Option<u64>,
    pub expire_after: Duration,
    pub read_timeout: Duration,
    pub behind_proxy: bool,
    /// `None`: not configured (any origin with keys, this machine's in open mode).
    pub cors: Option<CorsOrigins>,
    pub cors_allow_credentials: bool,
    pub header_timeout: Duration,
    pub max_connections_per_ip: usize,
    pub h2c: bool,
    pub lock_timeout: Duration,
    pub max_connections: usize,
    pub download_ttl: Duration,
    pub upload_url_ttl: Duration,
    pub allowed_types: Option<Vec<AssetType>>,
    pub allow_anonymous: bool,
    /// Bytes kept free on the data directory's file system (0: no check).
    pub min_free_space: u64,
    /// Where upload bytes live; `Err` says what is wrong with the flags
    /// (reported at start, as the bucket check is).
    pub storage: Result<Storage, String>,
    /// `--database-url`: metadata, documents, locks and events in PostgreSQL.
    pub database_url: Option<String>,
}

impl Config {
    /// `--s3-presign-downloads`: download URLs point at the bucket.
    pub fn presign_downloads(&self) -> bool {
        matches!(self.storage, Ok(Storage::S3 { presign_downloads: true, .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

impl CorsOrigins {
    pub fn parse(s: &str) -> Self {
        let list: Vec<String> = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if list.iter().any(|o| o == "*") { CorsOrigins::Any } else { CorsOrigins::List(list) }
    }

    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => {
                let origin = origin.trim_end_matches('/').to_ascii_lowercase();
                list.contains(&origin)
            }
        }
    }
}

impl From<ServeArgs> for Config {
    fn from(a: ServeArgs) -> Self {
        let mut base = a.base_path.trim().to_string();
        if !base.starts_with('/') {
            base.insert(0, '/');
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        let storage = storage(&a);
        Config {
            listen: a.listen,
            data_dir: a.data_dir,
            base_path: base,
            max_size: a.max_size,
            expire_after: a.expire_after,
            read_timeout: a.read_timeout,
            behind_proxy: a.behind_proxy,
            cors: a.cors_origins.as_deref().map(CorsOrigins::parse),
            cors_allow_credentials: a.cors_allow_credentials,
            header_timeout: a.header_timeout.max(Duration::from_millis(100)),
            max_connections_per_ip: a.max_connections_per_ip.max(1),
            h2c: a.h2c,
            lock_timeout: a.lock_timeout,
            max_connections: a.max_connections.max(1),
            download_ttl: a.download_ttl,
            upload_url_ttl: a.upload_url_ttl.max(Duration::from_secs(1)),
            allowed_types: a.allowed_types,
            allow_anonymous: a.allow_anonymous,
            min_free_space: a.min_free_space,
            storage,
            database_url: a.database_url.filter(|u| !u.trim().is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_types_are_a_comma_list() {
        let cli = Cli::parse_from(["tusk", "serve", "--allowed-types", "image, audio"]);
        let Some(Command::Serve(args)) = cli.command else { panic!("serve") };
        assert_eq!(args.allowed_types, Some(vec![AssetType::Image, AssetType::Audio]));
        assert_eq!(Cli::parse_from(["tusk"]).serve.allowed_types, None);
        assert!(Cli::try_parse_from(["tusk", "--allowed-types", "image,movie"]).is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(Cli::parse_from(["tusk"]).serve.min_free_space, 64 << 20);
    }
}
