//! `chatd`: parses flags, loads the configuration, starts logging and the runtime, runs the
//! daemon until SIGTERM or Ctrl-C, and maps the outcome to an exit code.
//!
//! Run with `chatd` (embedded default: SQLite in the current directory, WebSocket on
//! 127.0.0.1:7878) or `chatd --config /etc/chatd/chatd.toml`. `chatd config check` prints
//! the effective configuration with secrets redacted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The chatd chat daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Also read from CHATD_CONFIG.
    #[arg(long, global = true, env = "CHATD_CONFIG")]
    config: Option<PathBuf>,
    /// WebSocket listen address, overriding `listen.websocket`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory, overriding `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter, overriding `log_level` (e.g. `debug` or `chatd=trace,info`).
    #[arg(long)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, then print it with secrets redacted.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = chatd_config::Overrides {
        config_file: cli.config.clone(),
        listen_websocket: cli.listen,
        data_dir: cli.data_dir.clone(),
        log_level: cli.log_level.clone(),
    };
    let config = match chatd_config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("chatd: configuration error:\n{error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config {
        command: ConfigCommand::Check,
    }) = cli.command
    {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chatd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &chatd_config::Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log_level `{}`", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let daemon = chatd::start(config, shutdown.clone()).await?;
        println!(
            "chatd listening on ws://{} (store: {}, admin socket: {})",
            daemon.websocket_addr,
            daemon.store_backend,
            daemon.admin_socket.display()
        );
        tracing::info!(websocket = %daemon.websocket_addr, "ready");
        wait_for_signal().await?;
        tracing::info!("shutdown requested");
        shutdown.cancel();
        daemon.wait().await;
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
