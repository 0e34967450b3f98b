//! `leadbridge deliveries list | show | retry | unpause`: the delivery
//! history, the dead-letter list and the organization's pause, straight from
//! the store (works while `serve` runs).

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::Subcommand;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use leadbridge::config::Settings;
use leadbridge::ids::DeliveryId;
use leadbridge::lead::OrgName;
use leadbridge::store::{
    AttemptView, DeliveryFilter, DeliveryStatus, DeliveryView, RetryResult, Store,
};

use super::ConfigArg;

// Global, so that `deliveries list --config FILE` works as well as
// `deliveries --config FILE list`.
#[derive(clap::Args)]
#[command(mut_arg("config", |config| config.global(true)))]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Newest first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<DeliveryStatus>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One delivery with its attempt history.
    Show {
        id: DeliveryId,
        #[arg(long)]
        json: bool,
    },
    /// Queue deliveries for another attempt now, with the mapping in force.
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<DeliveryId>,
        /// Every dead delivery (of --org).
        #[arg(long, group = "all")]
        all_dead: bool,
        /// Every delivery a dry run recorded (of --org): sends them for real,
        /// once the organization is live.
        #[arg(long, group = "all")]
        all_dry_run: bool,
        #[arg(long, requires = "all")]
        org: Option<String>,
    },
    /// Clear an organization's Retry-After pause and make its retrying
    /// deliveries due now.
    Unpause {
        #[arg(long)]
        org: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(&args.config.path)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = leadbridge::store::connect(&settings.store.url).await?;
        match args.command {
            Command::List {
                status,
                org,
                limit,
                json,
            } => {
                let filter = DeliveryFilter {
                    status,
                    org: parse_org(org)?,
                    limit,
                };
                list(store.as_ref(), &filter, json).await
            }
            Command::Show { id, json } => show(store.as_ref(), id, json).await,
            Command::Retry {
                ids,
                all_dead,
                all_dry_run,
                org,
            } => {
                let all = match (all_dead, all_dry_run) {
                    (true, _) => Some(DeliveryStatus::Dead),
                    (_, true) => Some(DeliveryStatus::DryRun),
                    _ => None,
                };
                retry(store.as_ref(), &ids, all, parse_org(org)?.as_ref()).await
            }
            Command::Unpause { org } => {
                let org = OrgName::parse(&org)?;
                let done = store.unpause(&org, OffsetDateTime::now_utc()).await?;
                println!(
                    "organization {org}: {} pause(s) and {} block(s) cleared, {} retrying deliveries due now",
                    done.pauses, done.blocks, done.deliveries
                );
                Ok(())
            }
        }
    })
}

/// Checked here rather than by a clap value parser, so that a bad name
/// exits 1 with the library's message, like every other refusal.
fn parse_org(org: Option<String>) -> anyhow::Result<Option<OrgName>> {
    Ok(org.as_deref().map(OrgName::parse).transpose()?)
}

async fn list(store: &dyn Store, filter: &DeliveryFilter, json: bool) -> anyhow::Result<()> {
    let rows = store.list_deliveries(filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    // Blocked organizations first: they explain why their deliveries wait.
    for b in store.blocks().await? {
        if filter.org.as_ref().is_none_or(|o| o == &b.org) {
            println!(
                "organization {} BLOCKED since {} ({}); its deliveries wait, none is dead-lettered for this: {}",
                b.org,
                short_time(b.since),
                b.destination.as_str(),
                one_line(&b.reason, 200)
            );
        }
    }
    if rows.is_empty() {
        println!("no deliveries");
        return Ok(());
    }
    println!(
        "{:<36}  {:<9}  {:<12}  {:>8}  {:<20}  LAST ERROR",
        "ID", "STATUS", "ORG", "ATTEMPTS", "RECEIVED"
    );
    for d in &rows {
        let status = if d.blocked && d.status == DeliveryStatus::Retrying {
            "blocked".to_owned()
        } else {
            d.status.to_string()
        };
        println!(
            "{:<36}  {:<9}  {:<12}  {:>8}  {:<20}  {}",
            d.id,
            status,
            d.org,
            d.attempts,
            short_time(d.received_at),
            one_line(d.last_error.as_deref().unwrap_or(""), 80)
        );
    }
    Ok(())
}

async fn show(store: &dyn Store, id: DeliveryId, json: bool) -> anyhow::Result<()> {
    let Some(d) = store.delivery(id).await? else {
        bail!("no delivery {id}");
    };
    let attempts = store.attempts(id).await?;
    if json {
        let mut v = serde_json::to_value(&d)?;
        v["history"] = serde_json::to_value(&attempts)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", describe(&d, &attempts));
    }
    Ok(())
}

fn describe(d: &DeliveryView, attempts: &[AttemptView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "delivery     {}", d.id);
    let _ = writeln!(out, "lead         {}", d.lead_id);
    let _ = writeln!(out, "organization {}", d.org);
    let _ = writeln!(out, "destination  {}", d.destination.as_str());
    let _ = writeln!(out, "status       {}", d.status);
    let _ = writeln!(out, "record id    {}", d.record_id);
    if let Some(r) = &d.remote_ref {
        let _ = writeln!(out, "record       {r}");
    }
    let _ = writeln!(out, "received     {}", short_time(d.received_at));
    if matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
        let _ = writeln!(out, "next attempt {}", short_time(d.next_attempt_at));
    }
    if d.blocked {
        let _ = writeln!(
            out,
            "blocked      its organization is blocked: `deliveries list` says why"
        );
    }
    if let Some(e) = &d.last_error {
        let _ = writeln!(out, "last error   {e}");
    }
    let _ = writeln!(out, "attempts     {}", d.attempts);
    for a in attempts {
        let status = a.http_status.map(|s| s.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {:<9} {:>3}  {}",
            short_time(a.at),
            a.outcome,
            status,
            a.error.as_deref().unwrap_or("")
        );
    }
    out
}

async fn retry(
    store: &dyn Store,
    ids: &[DeliveryId],
    all: Option<DeliveryStatus>,
    org: Option<&OrgName>,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    if let Some(status) = all {
        let n = store.retry_all(status, org, now).await?;
        let scope = org.map(|o| format!(" of {o}")).unwrap_or_default();
        let what = match status {
            DeliveryStatus::DryRun => "dry-run",
            _ => "dead",
        };
        println!("queued {n} {what} deliveries{scope} for another attempt");
        return Ok(());
    }
    if ids.is_empty() {
        bail!("name delivery ids, or --all-dead");
    }
    let mut missing = 0;
    for (id, result) in store.retry(ids, now).await? {
        let what = match result {
            RetryResult::Queued => "queued",
            RetryResult::AlreadyDelivered => "already delivered; not sent again",
            RetryResult::NotFound => {
                missing += 1;
                "not found"
            }
        };
        println!("{id}  {what}");
    }
    if missing > 0 {
        bail!("{missing} delivery id(s) not found");
    }
    Ok(())
}

fn parse_status(s: &str) -> anyhow::Result<DeliveryStatus> {
    s.parse::<DeliveryStatus>().ok().with_context(|| {
        format!("unknown status {s:?}: pending, retrying, delivered, dead or dry_run")
    })
}

fn short_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.replace(['\n', '\r'], " ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
