//! `leadbridge render --org NAME --lead FILE`: the Dataverse request and
//! the notification mail a lead would become, without sending anything.

use std::path::{Path, PathBuf};

use anyhow::Context;
use time::OffsetDateTime;

use leadbridge::config::{MailTransport, Settings};
use leadbridge::dataverse::CreateRequest;
use leadbridge::email;
use leadbridge::ids::{LeadId, RecordId};
use leadbridge::lead::{Lead, OrgName};
use leadbridge::mail::GraphMailer;
use leadbridge::mapping::{Mapping, RenderContext};

use super::ConfigArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The organization whose mapping to use.
    #[arg(long)]
    org: String,
    /// A lead as JSON, as Partner Center sends it.
    #[arg(long)]
    lead: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    preview(&args.config.path, &args.org, &args.lead)
}

fn preview(config: &Path, org: &str, lead_file: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let name = OrgName::parse(org)?;
    let Some(org) = settings.organization(&name) else {
        let known: Vec<&str> = settings.organizations.keys().map(OrgName::as_str).collect();
        anyhow::bail!(
            "no organization {name} in {}; configured: {}",
            config.display(),
            known.join(", ")
        );
    };
    let text =
        std::fs::read(lead_file).with_context(|| format!("cannot read {}", lead_file.display()))?;
    let (lead, _) = Lead::parse_json(&text)
        .with_context(|| format!("{} is not a lead", lead_file.display()))?;

    // The service draws the ids per lead and delivery; a preview can only
    // make up its own.
    let ctx = RenderContext {
        lead: &lead,
        lead_id: LeadId::generate(),
        org: &name,
        received_at: OffsetDateTime::now_utc(),
    };
    let live = if org.dry_run {
        " (dry run: the service only logs this)"
    } else {
        ""
    };
    if let Some(org_url) = &org.url {
        let mapping = Mapping::load(&org.mapping)?;
        let record_id = RecordId::generate();
        let record = mapping.render(&ctx).with_primary_key(record_id);
        let request = CreateRequest {
            org_url,
            entity_set: &record.entity_set,
            record_id,
            body: &record.body,
        };
        println!(
            "# organization {name}{live}, mapping {}",
            org.mapping.display()
        );
        println!(
            "# {} is a fresh random id for this preview: each delivery generates its own",
            record.primary_key
        );
        println!(
            "# MaxLength cuts from Dataverse's metadata are not applied offline (see check --live)"
        );
        println!(
            "{}",
            request.preview("<access token from Entra ID, not shown>")
        );
    }
    if let Some(settings) = &org.email {
        let message = email::compose(
            &settings.templates,
            &settings.recipients,
            &ctx,
            RecordId::generate(),
        );
        let via = match &settings.transport {
            MailTransport::Smtp(s) => format!("SMTP {}", s.url),
            MailTransport::Graph { graph_url } => format!(
                "Microsoft Graph {} (its JSON message carries the HTML part)",
                GraphMailer::send_url(graph_url, &settings.recipients.from)
                    .map_or_else(|_| graph_url.to_string(), |u| u.to_string())
            ),
        };
        if org.url.is_some() {
            println!();
        }
        println!("# notification mail of organization {name}{live}, sent by {via}");
        println!("{}", message.preview());
    }
    Ok(())
}
