//! `leadbridge serve`: the lead endpoint, the admin listener and the delivery
//! worker, until SIGTERM or Ctrl-C.

use std::io::IsTerminal;

use anyhow::Context;
use secrecy::ExposeSecret;

use leadbridge::config::Settings;
use leadbridge::startup::Application;

use super::ConfigArg;

/// These lines were logged from the binary's root before the verbs had
/// modules of their own; log queries and alerts may match on that target.
const LOG_TARGET: &str = "leadbridge";

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(&args.config.path)?;
    leadbridge::telemetry::init(&settings.log);
    // Multi-threaded, unlike the other verbs' runtime: intake and the worker
    // run side by side.
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = Application::build(settings).await?;
        print_endpoints(app.settings());
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                target: LOG_TARGET,
                "shutting down: no new leads, finishing deliveries in flight"
            );
            shutdown.cancel();
        });
        if let Err(stopped) = app.run_until_stopped().await {
            // Exiting non-zero gets the process restarted (Kubernetes).
            tracing::error!(
                target: LOG_TARGET,
                reason = %stopped.reason,
                "stopped because the delivery worker stopped; exiting with an error"
            );
            return Err(stopped.into());
        }
        Ok(())
    })
}

/// The URL to paste into Partner Center, per organization. The full URL holds
/// the secret, so it goes to an interactive terminal only; logs get it masked.
fn print_endpoints(settings: &Settings) {
    let base = settings.public_base_url();
    let tty = std::io::stdout().is_terminal();
    for org in settings.organizations.values() {
        let url = format!("{base}/leads/{}", org.name);
        if tty {
            let code = org
                .endpoint_secrets
                .first()
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default();
            println!(
                "Partner Center HTTPS endpoint for {}{}: {url}?code={code}",
                org.name,
                if org.dry_run { " (dry run)" } else { "" }
            );
        }
        tracing::info!(
            target: LOG_TARGET,
            org = %org.name,
            dry_run = org.dry_run,
            endpoint = %format!("{url}?code=<organizations.{}.endpoint_secrets>", org.name),
            "endpoint for Partner Center"
        );
    }
    if !base.starts_with("https://") {
        tracing::warn!(
            target: LOG_TARGET,
            "Partner Center only calls https:// endpoints: set server.public_url to your Ingress URL"
        );
    }
}

/// Kubernetes stops pods with SIGTERM; a terminal sends Ctrl-C. If SIGTERM
/// cannot be watched, Ctrl-C still works.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
