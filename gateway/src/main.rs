//! The `gateway` binary: load configuration (flags, `HUBGATE_*` variables, `--config` file),
//! set up logging, bind, serve until a signal. `gateway config` prints the configuration instead.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use gateway::config::{Action, LoadError, LogFormat};
use gateway::{Config, Gateway};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loaded = match gateway::config::load(std::env::args_os(), &process_env()) {
        Ok(loaded) => loaded,
        Err(LoadError::Display(help)) => help.exit(),
        Err(error) => exit_with(error),
    };
    if loaded.action == Action::PrintConfig {
        print!("{}", loaded.to_toml());
        return Ok(());
    }
    let config = loaded.config;
    init_tracing(&config);
    let gateway = Gateway::from_config(config.clone()).await.unwrap_or_else(|error| exit_with(error));
    let shutdown = shutdown_signal();
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("--listen {}: cannot bind", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if gateway.is_tls() { "https" } else { "http" };
    // Scripts and tests read this line to learn the port when --listen ends in :0.
    println!("listening on {scheme}://{address}");
    std::io::stdout().flush()?;
    if let Some(admin) = config.admin_listen {
        let listener =
            TcpListener::bind(admin).await.with_context(|| format!("--admin-listen {admin}: cannot bind"))?;
        // Tests read this line; a closed stdout must not stop the gateway.
        let _ = writeln!(std::io::stdout(), "admin listening on {scheme}://{}", listener.local_addr()?);
        let _ = std::io::stdout().flush();
        tokio::spawn(gateway::serve_admin(listener, gateway.clone()));
    }
    #[cfg(unix)]
    if gateway.is_tls() {
        tokio::spawn(reload_tls_on_sighup(gateway.clone()));
    }
    tracing::info!(%address, node = gateway.node_id(), "gateway started; relay hub at /hubs/{{hub}}");
    let router = gateway.router();
    gateway::serve(listener, gateway, router, shutdown).await?;
    Ok(())
}

/// A configuration that cannot work: one line on stderr, exit code 2, nothing bound yet.
fn exit_with(error: impl std::fmt::Display) -> ! {
    eprintln!("gateway: {error}");
    std::process::exit(2);
}

/// The process environment as text; variables that are not UTF-8 cannot name an option's value
/// and are left out.
fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// `kill -HUP` re-reads --tls-cert and --tls-key (the outcome is logged by the gateway).
#[cfg(unix)]
async fn reload_tls_on_sighup(gateway: std::sync::Arc<Gateway>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the TLS files are still watched for changes");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the TLS certificate");
        let _ = gateway.reload_tls();
    }
}

/// Registers for SIGTERM and SIGINT at once and returns the future that completes on either.
/// Called before the `listening on` line: a signal sent as soon as that line appears must meet
/// this handler, not the default action (which kills the process without a graceful shutdown).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (term, interrupt) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => tokio::signal::ctrl_c().await.unwrap_or(()),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.unwrap_or(());
    }
}
