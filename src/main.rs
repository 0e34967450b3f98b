//! The `leadbridge` binary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use leadbridge::config::{DEFAULT_CONFIG_PATH, Settings};
use leadbridge::lead::OrgName;
use leadbridge::startup::Application;

mod cli;

#[derive(Parser)]
#[command(
    version,
    about = "Microsoft marketplace leads into Dynamics 365, durably."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the lead endpoint, the admin listener and the delivery worker.
    Serve {
        #[arg(long, env = "LEADBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration and every mapping file; with --live, also
    /// against each organization's Dataverse (token, WhoAmI, column metadata).
    Check {
        #[arg(long, env = "LEADBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Also call Entra ID and Dataverse for every live organization.
        #[arg(long)]
        live: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the Dataverse request a lead would become. No network.
    Render {
        #[arg(long, env = "LEADBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The organization whose mapping to use.
        #[arg(long)]
        org: String,
        /// A lead as JSON, as Partner Center sends it.
        #[arg(long)]
        lead: PathBuf,
    },
    /// POST a test lead to an endpoint, as Partner Center's Validate button
    /// does, and print the answer.
    SendTestLead {
        /// The full endpoint URL, `?code=` included.
        #[arg(long)]
        url: String,
        /// The lead to send (default: Microsoft's 2020 sample lead).
        #[arg(long)]
        lead: Option<PathBuf>,
        /// Accepted like every verb's; not used.
        #[arg(long, env = "LEADBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH, hide = true)]
        config: PathBuf,
    },
    /// Delivery history, dead letters and replay.
    Deliveries {
        #[arg(long, env = "LEADBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// Newest first.
    List {
        #[arg(long, value_parser = cli::deliveries::parse_status)]
        status: Option<leadbridge::store::DeliveryStatus>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One delivery with its attempt history.
    Show {
        id: leadbridge::ids::DeliveryId,
        #[arg(long)]
        json: bool,
    },
    /// Queue deliveries for another attempt now, with the mapping in force.
    Retry {
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        ids: Vec<leadbridge::ids::DeliveryId>,
        /// Every dead delivery (of --org).
        #[arg(long)]
        all_dead: bool,
        #[arg(long, requires = "all_dead")]
        org: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config, live, json } => cli::check::run(&config, live, json),
        Command::Render { config, org, lead } => cli::render::run(&config, &org, &lead),
        Command::SendTestLead {
            url,
            lead,
            config: _,
        } => cli::send_test_lead::run(&url, lead.as_deref()),
        Command::Deliveries { config, command } => deliveries(&config, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    leadbridge::telemetry::init(&settings.log);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = Application::build(settings).await?;
        print_endpoints(app.settings());
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new leads, finishing deliveries in flight");
            shutdown.cancel();
        });
        app.run_until_stopped().await;
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
            org = %org.name,
            dry_run = org.dry_run,
            endpoint = %format!("{url}?code=<organizations.{}.endpoint_secrets>", org.name),
            "endpoint for Partner Center"
        );
    }
    if !base.starts_with("https://") {
        tracing::warn!(
            "Partner Center only calls https:// endpoints: set server.public_url to your Ingress URL"
        );
    }
}

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

fn deliveries(config: &Path, command: DeliveriesCommand) -> anyhow::Result<()> {
    use cli::deliveries;
    let settings = Settings::load(config)?;
    let org = |o: Option<String>| -> anyhow::Result<Option<OrgName>> {
        Ok(o.as_deref().map(OrgName::parse).transpose()?)
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = leadbridge::store::connect(&settings.store.url).await?;
        match command {
            DeliveriesCommand::List {
                status,
                org: o,
                limit,
                json,
            } => {
                let args = deliveries::ListArgs {
                    status,
                    org: org(o)?,
                    limit,
                    json,
                };
                deliveries::list(store.as_ref(), args).await
            }
            DeliveriesCommand::Show { id, json } => {
                deliveries::show(store.as_ref(), id, json).await
            }
            DeliveriesCommand::Retry {
                ids,
                all_dead,
                org: o,
            } => deliveries::retry(store.as_ref(), &ids, all_dead, org(o)?.as_ref()).await,
        }
    })
}
