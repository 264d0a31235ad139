//! `chatd`: parses flags, loads the configuration, starts logging and the runtime, runs the
//! daemon until SIGTERM or Ctrl-C, and maps the outcome to an exit code. Under systemd it
//! reports its state through `notify` (ready, reloading, stopping, watchdog pings).
//!
//! Run with `chatd` (embedded default: SQLite in the current directory, WebSocket on
//! 127.0.0.1:7878) or `chatd --config /etc/chatd/chatd.toml`. `chatd config check` prints
//! the effective configuration with secrets redacted. SIGTERM and SIGINT drain and stop;
//! SIGHUP reloads the configuration (only `log_level` takes effect without a restart).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chatd::lifecycle::Tasks;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::notify::Notifier;

mod notify;

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
    match run(&config, &overrides) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chatd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &chatd_config::Config, overrides: &chatd_config::Overrides) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log_level `{}`", config.log_level))?;
    // The filter sits behind a reload handle so SIGHUP can change the log level.
    let (filter, log_level) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    tracing::info!(config = %config.to_redacted_toml(), "configuration");
    let notifier = Notifier::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        notifier.status("starting: opening the store, binding the listeners");
        let daemon = match chatd::start(config, shutdown.clone()).await {
            Ok(daemon) => daemon,
            Err(error) => {
                notifier.status(&format!("failed to start: {error}"));
                return Err(error.into());
            }
        };
        // Handlers are in place before anyone learns chatd is up, so a SIGTERM or SIGHUP
        // sent the moment systemd (or a test) sees READY=1 drains or reloads, rather than
        // meeting the default action and killing the process.
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        println!(
            "chatd listening on ws://{} (store: {}, admin socket: {})",
            daemon.websocket_addr,
            daemon.store_backend,
            daemon.admin_socket.display()
        );
        tracing::info!(websocket = %daemon.websocket_addr, "ready");
        let serving = format!(
            "serving on ws://{} (store: {}), admin socket {}",
            daemon.websocket_addr,
            daemon.store_backend,
            daemon.admin_socket.display()
        );
        // Only now: the store is migrated and every listener is bound, so a client that
        // systemd lets in (or a unit ordered After=chatd) finds chatd answering.
        notifier.ready(&serving);
        let background = Tasks::new(&shutdown);
        if let Some(interval) =
            notify::watchdog_interval_from_env().filter(|_| notifier.is_enabled())
        {
            tracing::info!(?interval, "pinging the systemd watchdog");
            background.spawn(
                "watchdog",
                notify::run_watchdog(notifier.clone(), interval, background.token().clone()),
            );
        }
        let mut running = config.clone();
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    notifier.reloading("reloading the configuration");
                    let outcome = reload(&mut running, overrides, &log_level);
                    notifier.ready(&format!("{serving}; {outcome}"));
                }
            }
        }
        tracing::info!("shutdown requested");
        notifier.stopping("draining: closing sessions, committing queued messages");
        shutdown.cancel();
        daemon.wait().await;
        background.wait().await;
        notifier.status("stopped");
        Ok(())
    })
}

/// SIGHUP: loads the configuration again and applies the reloadable keys (the log level).
/// Other changes are reported, not half-applied: they take effect at the next restart.
/// Returns the outcome in a few words, for `systemctl status`.
fn reload<S>(
    running: &mut chatd_config::Config,
    overrides: &chatd_config::Overrides,
    log_level: &tracing_subscriber::reload::Handle<EnvFilter, S>,
) -> String {
    let fresh = match chatd_config::load(overrides) {
        Ok(fresh) => fresh,
        Err(error) => {
            tracing::error!(%error, "reload failed; the running configuration is unchanged");
            return format!("reload failed, running configuration unchanged: {error}");
        }
    };
    if fresh.log_level != running.log_level {
        match EnvFilter::try_new(&fresh.log_level).map(|filter| log_level.reload(filter)) {
            Ok(Ok(())) => tracing::info!(log_level = %fresh.log_level, "log level reloaded"),
            Ok(Err(error)) => tracing::error!(%error, "cannot apply the new log level"),
            Err(error) => tracing::error!(%error, "invalid log_level; keeping the old one"),
        }
        running.log_level.clone_from(&fresh.log_level);
    }
    if fresh != *running {
        tracing::warn!(
            "configuration changed in keys that are not reloadable; restart chatd to apply them"
        );
        "configuration reloaded; changes to keys that are not reloadable wait for a restart"
            .to_owned()
    } else {
        tracing::info!("configuration reloaded");
        "configuration reloaded".to_owned()
    }
}
