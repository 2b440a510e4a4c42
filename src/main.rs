use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tusk::asset::rfc3339;
use tusk::auth;
use tusk::config::{Cli, Command, Config, KeysCommand, ServeArgs};

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
        Some(Command::Keys(cmd)) => keys(cmd),
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

/// `tusk keys ...`: plain files under the data directory, so these work
/// whether or not a server is running there.
fn keys(cmd: KeysCommand) -> std::io::Result<()> {
    match cmd {
        KeysCommand::Create { project, data_dir } => {
            let (key, secret) = auth::create_key(&data_dir, &project)?;
            eprintln!(
                "created {} for project {:?}; the secret below is shown only once",
                key.key_id, key.project
            );
            println!("{secret}");
        }
        KeysCommand::List { data_dir } => {
            for k in auth::list_keys(&data_dir)? {
                let status = match k.revoked_at {
                    Some(t) => format!("revoked {}", rfc3339(t)),
                    None => "active".to_string(),
                };
                println!("{}\t{}\t{}\t{}", k.key_id, k.project, rfc3339(k.created_at), status);
            }
        }
        KeysCommand::Revoke { key, data_dir } => {
            let k = auth::revoke_key(&data_dir, &key)?;
            eprintln!("revoked {} (project {:?})", k.key_id, k.project);
        }
    }
    Ok(())
}
