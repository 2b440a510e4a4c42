use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tusk::asset::rfc3339;
use tusk::auth;
use tusk::backends::pg_docs::PgDocs;
use tusk::backends::pg_meta::PgMeta;
use tusk::config::{
    Cli, Command, Config, KeysCommand, ProjectsCommand, ServeArgs, StoreArgs, UploadLinkArgs,
};
use tusk::ports::docs::Docs;
use tusk::projects::{self, PolicyChange};
use tusk::usage::UsageFigures;

fn main() -> ExitCode {
    // Upload bytes, the metadata database and key files are for this user
    // only (folders 0700, files 0600), whatever umask the server inherits.
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped. By default the
        // subscriber reports the failure with `eprintln!`, which panics when
        // stderr is a closed pipe (a log collector that died): every task
        // that logged, such as a PATCH completing an upload or the SIGTERM
        // handler, died with it.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Keys(cmd)) => manage(keys(cmd)),
        Some(Command::Projects(cmd)) => manage(projects(cmd)),
        Some(Command::UploadLink(args)) => manage(upload_link(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics if stderr is gone.
            let _ = writeln!(std::io::stderr(), "tusk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> std::io::Result<()> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(1)).enable_all().build()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        tusk::server::run(Config::from(args), stop).await
    })
}

/// SIGTERM or SIGINT: stop accepting, let requests finish, flush, exit 0.
async fn stop_on_signal(stop: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    stop.cancel();
}

/// Runs a management command (keys, projects, upload links) to its end.
fn manage(command: impl std::future::Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(command)
}

/// Where the management commands find keys, tokens and projects: the data
/// directory's files, or the servers' database (whose schema this makes or
/// migrates, as a server would).
async fn open_store(store: &StoreArgs) -> std::io::Result<(Docs, Option<PgMeta>)> {
    match &store.database_url {
        Some(url) if !url.trim().is_empty() => {
            let meta = PgMeta::connect(url)
                .await
                .map_err(|e| std::io::Error::other(format!("cannot use the database: {e}")))?;
            Ok((Docs::Postgres(Arc::new(PgDocs::new(meta.pool()))), Some(meta)))
        }
        _ => Ok((Docs::Dir(store.data_dir.clone()), None)),
    }
}

/// `tusk keys ...`: plain files under the data directory (or rows of the
/// database), so these work whether or not a server is running.
async fn keys(cmd: KeysCommand) -> std::io::Result<()> {
    match cmd {
        KeysCommand::Create { project, store } => {
            let (docs, _) = open_store(&store).await?;
            let (key, secret) = auth::create_key(&docs, &project).await?;
            eprintln!(
                "created {} for project {:?}; the secret below is shown only once",
                key.key_id, key.project
            );
            println!("{secret}");
        }
        KeysCommand::List { store } => {
            let (docs, _) = open_store(&store).await?;
            for k in auth::list_keys(&docs).await? {
                let status = match k.revoked_at {
                    Some(t) => format!("revoked {}", rfc3339(t)),
                    None => "active".to_string(),
                };
                println!("{}\t{}\t{}\t{}", k.key_id, k.project, rfc3339(k.created_at), status);
            }
        }
        KeysCommand::Revoke { key, store } => {
            let (docs, _) = open_store(&store).await?;
            let k = auth::revoke_key(&docs, &key).await?;
            eprintln!("revoked {} (project {:?})", k.key_id, k.project);
        }
    }
    Ok(())
}

/// `tusk projects ...`: policy documents, like keys.
async fn projects(cmd: ProjectsCommand) -> std::io::Result<()> {
    match cmd {
        ProjectsCommand::Set { name, max_size, allowed_types, quota, max_duration, store } => {
            let (docs, _) = open_store(&store).await?;
            let change = PolicyChange {
                max_size: max_size.unwrap_or_default(),
                allowed_types: allowed_types.unwrap_or_default(),
                quota: quota.unwrap_or_default(),
                max_duration: max_duration.unwrap_or_default(),
            };
            let p = projects::set_policy(&docs, &name, &change).await?;
            eprintln!("project {:?} updated; a running server applies it within a second", p.name);
            print_project(&p, None, false);
        }
        ProjectsCommand::List { store } => {
            let (docs, meta) = open_store(&store).await?;
            let (usage, _) = usage_of(&store, meta.as_ref()).await?;
            let policies = projects::list_policies(&docs).await?;
            let mut names: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
            names.extend(auth::list_keys(&docs).await?.into_iter().map(|k| k.project));
            names.sort();
            names.dedup();
            println!("project\tquota_bytes\tbytes_stored\tassets\tuploads_in_flight");
            for name in names {
                let quota = policies.iter().find(|p| p.name == name).and_then(|p| p.quota);
                let u = usage.get(&auth::project_id(&name)).copied().unwrap_or_default();
                println!(
                    "{name}\t{}\t{}\t{}\t{}",
                    quota.map_or("unlimited".to_string(), |q| q.to_string()),
                    u.bytes_stored,
                    u.assets,
                    u.uploads_in_flight
                );
            }
        }
        ProjectsCommand::Show { name, json, store } => {
            if !auth::valid_project_name(&name) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("no project {name:?}"),
                ));
            }
            let (docs, meta) = open_store(&store).await?;
            let p = projects::read_policy(&docs, &name).await?.unwrap_or_else(|| projects::Policy {
                name: name.clone(),
                project_id: auth::project_id(&name),
                ..Default::default()
            });
            let (usage, source) = usage_of(&store, meta.as_ref()).await?;
            let u = usage.get(&p.project_id).copied().unwrap_or_default();
            if !json {
                eprintln!("usage {source}");
            }
            print_project(&p, Some(u), json);
        }
    }
    Ok(())
}

/// Every project's usage: counted from the database, or from the data
/// directory's metadata when no server holds it, else as the running server
/// last reported it.
async fn usage_of(
    store: &StoreArgs,
    meta: Option<&PgMeta>,
) -> std::io::Result<(std::collections::HashMap<uuid::Uuid, UsageFigures>, String)> {
    if let Some(meta) = meta {
        let totals = meta.usage_totals().await.map_err(std::io::Error::other)?;
        return Ok((totals, "counted from the database".into()));
    }
    let data_dir = &store.data_dir;
    match tusk::backends::sled_meta::SledMeta::open(data_dir) {
        Ok(store) => {
            let totals = store.usage_totals().map_err(std::io::Error::other)?;
            Ok((totals, "counted from the data directory".into()))
        }
        Err(_) => match projects::read_usage(data_dir)? {
            Some((at, figures)) => {
                Ok((figures, format!("as reported by the running server at {}", rfc3339(at))))
            }
            None => Ok((Default::default(), "not reported yet by the running server".into())),
        },
    }
}
fn print_project(p: &projects::Policy, usage: Option<UsageFigures>, json: bool) {
    let types = p.allowed_types.as_ref().map(|t| t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","));
    if json {
        let v = serde_json::json!({
            "name": p.name,
            "id": p.project_id,
            "max_size_bytes": p.max_size,
            "allowed_types": p.allowed_types,
            "quota_bytes": p.quota,
            "max_duration_seconds": p.max_duration,
            "usage": usage,
        });
        println!("{v}");
        return;
    }
    let or = |v: Option<String>, none: &str| v.unwrap_or_else(|| none.to_string());
    println!("project\t{}", p.name);
    println!("id\t{}", p.project_id);
    println!("max_size\t{}", or(p.max_size.map(|v| v.to_string()), "unlimited"));
    println!("allowed_types\t{}", or(types, "any"));
    println!("quota\t{}", or(p.quota.map(|v| v.to_string()), "unlimited"));
    println!("max_duration\t{}", or(p.max_duration.map(|v| v.to_string()), "unlimited"));
    if let Some(u) = usage {
        println!("bytes_stored\t{}", u.bytes_stored);
        println!("assets\t{}", u.assets);
        println!("uploads_in_flight\t{}", u.uploads_in_flight);
    }
}

/// `tusk upload-link`: an upload token, printed as a link to the page.
async fn upload_link(a: UploadLinkArgs) -> std::io::Result<()> {
    if !auth::valid_project_name(&a.project) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "project names are 1-64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let (docs, _) = open_store(&a.store).await?;
    if !auth::list_keys(&docs).await?.iter().any(|k| k.revoked_at.is_none()) {
        return Err(std::io::Error::other(
            "upload links are for servers that use API keys (without one, anybody can upload anyway); \
             create a key first with `tusk keys create --project NAME`",
        ));
    }
    let spec = tusk::tokens::TokenSpec {
        ttl: a.expires,
        max_uploads: a.max_uploads,
        limits: tusk::record::UploadLimits {
            max_size: a.max_size,
            allowed_types: a.types.clone(),
            max_duration: a.max_duration,
        },
        metadata: Default::default(),
    };
    let (t, secret) = tusk::tokens::create(&docs, &a.project, auth::project_id(&a.project), &spec).await?;
    eprintln!(
        "upload link for project {:?} ({}), valid until {}; revoke with DELETE /v1/upload-tokens/{}",
        t.project,
        t.token_id,
        rfc3339(t.expires_at),
        t.token_id
    );
    println!("{}/?token={secret}", a.url.trim_end_matches('/'));
    Ok(())
}
