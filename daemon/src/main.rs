//! `chatd`: parses flags, loads the configuration, starts logging and the runtime, runs the
//! daemon until SIGTERM or Ctrl-C, and maps the outcome to an exit code. Under systemd it
//! reports its state through `notify` (ready, reloading, stopping, watchdog pings).
//!
//! Run with `chatd` (embedded default: SQLite in the current directory, WebSocket on
//! 127.0.0.1:7878) or `chatd --config /etc/chatd/chatd.toml`. `chatd config check` prints
//! the effective configuration with secrets redacted. SIGTERM and SIGINT drain and stop;
//! SIGHUP reloads the configuration (`log_level` and the `[tls]` files take effect without a
//! restart; the certificate files are read again even when the configuration is unchanged).

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
    /// QUIC listen address (UDP), overriding `listen.quic`.
    #[arg(long)]
    quic: Option<SocketAddr>,
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
    // One process-wide crypto provider, ring: rustls picks it when a configuration does not
    // name one. Err only means one was installed already, which is then the one in use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let overrides = chatd_config::Overrides {
        config_file: cli.config.clone(),
        listen_websocket: cli.listen,
        listen_quic: cli.quic,
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
        // The certificate files are part of the configuration an operator checks before a
        // reload: load them as the daemon would (and as the user it runs as must be able to).
        if let Some(files) = config.tls_files()
            && let Err(error) = chatd::tls::ServerTls::load(&files)
        {
            eprintln!("chatd: configuration error:\n{error}");
            return ExitCode::from(2);
        }
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
        let scheme = daemon.websocket_scheme();
        println!(
            "chatd listening on {scheme}://{} (store: {}, admin socket: {})",
            daemon.websocket_addr,
            daemon.store_backend,
            daemon.admin_socket.display()
        );
        if let (Some(address), Some(certificate)) = (daemon.quic_addr, &daemon.quic_certificate) {
            // The fingerprint is what a client pins to trust a self-signed certificate.
            println!(
                "chatd listening on quic://{address} (certificate sha256 {})",
                certificate.sha256
            );
        }
        tracing::info!(websocket = %format!("{scheme}://{}", daemon.websocket_addr), "ready");
        let serving = format!(
            "serving on {scheme}://{} (store: {}), admin socket {}",
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
                    let outcome = reload(&daemon, &mut running, overrides, &log_level);
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

/// SIGHUP: loads the configuration again and applies the reloadable keys (the log level and
/// the TLS files), and reads the TLS certificate files again. Other changes are reported, not
/// half-applied: they take effect at the next restart. Returns the outcome in a few words,
/// for `systemctl status`.
fn reload<S>(
    daemon: &chatd::Daemon,
    running: &mut chatd_config::Config,
    overrides: &chatd_config::Overrides,
    log_level: &tracing_subscriber::reload::Handle<EnvFilter, S>,
) -> String {
    let fresh = chatd_config::load(overrides);
    // Certificates are renewed on their own schedule (certbot's deploy hook runs `systemctl
    // reload chatd`), so they are read again even when the configuration file is broken.
    let tls = reload_tls(daemon, running, fresh.as_ref().ok());
    let outcome = match fresh {
        Ok(fresh) => apply(daemon, running, &fresh, log_level),
        Err(error) => {
            tracing::error!(%error, "reload failed; the running configuration is unchanged");
            format!("reload failed, running configuration unchanged: {error}")
        }
    };
    match tls {
        Some(tls) => format!("{outcome}; {tls}"),
        None => outcome,
    }
}

/// Reads the TLS files again: those of `fresh` when it loaded and configures TLS, else those
/// in use. `None` when TLS is off and stays off. On failure the certificate in use stays.
/// Turning TLS on or off takes a restart: the listener's scheme is fixed at start-up.
fn reload_tls(
    daemon: &chatd::Daemon,
    running: &mut chatd_config::Config,
    fresh: Option<&chatd_config::Config>,
) -> Option<String> {
    let fresh_files = fresh.and_then(chatd_config::Config::tls_files);
    let Some(in_use) = running.tls_files() else {
        return fresh_files.map(|_| {
            tracing::warn!("[tls] was added; restart chatd to serve wss://");
            "turning TLS on waits for a restart".to_owned()
        });
    };
    let removed = fresh.is_some() && fresh_files.is_none();
    let files = fresh_files.clone().unwrap_or(in_use);
    let mut outcome = match daemon.reload_tls(&files) {
        Ok(certificate) => {
            tracing::info!(
                cert_file = %files.cert_file.display(),
                sha256 = %certificate.sha256,
                chain = certificate.chain_len,
                "TLS certificate reloaded"
            );
            if let Some(fresh) = fresh.filter(|_| fresh_files.is_some()) {
                running.tls.clone_from(&fresh.tls);
            }
            format!("TLS certificate reloaded (sha256 {})", certificate.sha256)
        }
        Err(error) => {
            tracing::error!(%error, "TLS reload failed; the certificate in use is unchanged");
            format!("TLS reload failed, certificate unchanged: {error}")
        }
    };
    if removed {
        tracing::warn!("[tls] was removed; chatd serves wss:// until it is restarted");
        outcome.push_str("; turning TLS off waits for a restart");
    }
    Some(outcome)
}

/// Applies the log level of a freshly loaded configuration, and says whether keys that are
/// not reloadable changed.
fn apply<S>(
    daemon: &chatd::Daemon,
    running: &mut chatd_config::Config,
    fresh: &chatd_config::Config,
    log_level: &tracing_subscriber::reload::Handle<EnvFilter, S>,
) -> String {
    if fresh.log_level != running.log_level {
        match EnvFilter::try_new(&fresh.log_level).map(|filter| log_level.reload(filter)) {
            Ok(Ok(())) => tracing::info!(log_level = %fresh.log_level, "log level reloaded"),
            Ok(Err(error)) => tracing::error!(%error, "cannot apply the new log level"),
            Err(error) => tracing::error!(%error, "invalid log_level; keeping the old one"),
        }
        running.log_level.clone_from(&fresh.log_level);
    }
    // `[tls]` is left out here: `reload_tls` applied it or said why not.
    let others = chatd_config::Config {
        tls: running.tls.clone(),
        ..fresh.clone()
    };
    let pending = chatd_config::changed_keys(running, &others);
    daemon.set_pending_restart(pending.clone());
    if !pending.is_empty() {
        tracing::warn!(
            keys = %pending.join(", "),
            "configuration changed in keys that are not reloadable; restart chatd to apply them"
        );
        format!(
            "configuration reloaded; waiting for a restart: {}",
            pending.join(", ")
        )
    } else {
        tracing::info!("configuration reloaded");
        "configuration reloaded".to_owned()
    }
}
