//! `leadbridge check [--live] [--json]`.

mod email;
mod report;

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use leadbridge::config::Settings;
use leadbridge::delivery::Organizations;
use leadbridge::mapping::Severity;
use leadbridge::outbound;

use self::email::EmailCheck;
use self::report::{LiveResult, OrgReport};
use super::ConfigArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Also call Entra ID and Dataverse for every live organization.
    #[arg(long)]
    live: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        config,
        live,
        json: as_json,
    } = args;
    let config = config.path.as_path();
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => return invalid(config, as_json, vec![e.to_string()]),
    };
    let mappings = match Organizations::load(&settings) {
        Ok(m) => m,
        Err(errors) => {
            return invalid(
                config,
                as_json,
                errors.iter().map(ToString::to_string).collect(),
            );
        }
    };
    let reports = if live {
        let http = outbound::build(settings.delivery.request_timeout)?;
        super::runtime()?.block_on(report::live(&settings, &mappings, http))
    } else {
        settings
            .organizations
            .values()
            .map(OrgReport::offline)
            .collect()
    };
    let errors: usize = reports.iter().map(OrgReport::errors).sum();
    let warnings: usize = reports.iter().map(OrgReport::warnings).sum();
    if as_json {
        let out = json!({
            "ok": errors == 0,
            "config": config.display().to_string(),
            "live": live,
            "errors": [],
            "organizations": reports,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &reports {
            print_report(r);
        }
        if live {
            println!("live check: {errors} error(s), {warnings} warning(s)");
        }
    }
    if errors > 0 {
        anyhow::bail!("check failed: {errors} error(s) against Dataverse");
    }
    Ok(())
}

/// The configuration or a mapping file is invalid: nothing else to check.
fn invalid(config: &Path, as_json: bool, errors: Vec<String>) -> anyhow::Result<()> {
    if as_json {
        let out = json!({
            "ok": false,
            "config": config.display().to_string(),
            "errors": errors,
            "organizations": [],
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        anyhow::bail!(
            "invalid configuration or mapping ({} problem(s))",
            errors.len()
        );
    }
    anyhow::bail!("{}", errors.join("\n"))
}

fn print_report(r: &OrgReport) {
    println!(
        "{}: {} -> {} ({}){}",
        if r.errors() > 0 { "FAIL" } else { "ok" },
        r.organization,
        r.url.as_deref().unwrap_or("no Dynamics destination"),
        if r.dry_run { "dry run" } else { "live" },
        if r.url.is_some() {
            format!(", mapping {}", r.mapping)
        } else {
            String::new()
        }
    );
    if let Some(e) = &r.email {
        println!(
            "  email: {} via {} to {} recipient(s){}",
            e.transport,
            e.server,
            e.to,
            if e.alerts { ", alerts on" } else { "" }
        );
        match &e.live {
            None => {}
            Some(EmailCheck::Skipped { reason }) => println!("  email check skipped: {reason}"),
            Some(EmailCheck::Failed { error }) => println!("  error: email check failed: {error}"),
            Some(EmailCheck::Checked { detail }) => println!("  email: {detail}"),
        }
    }
    match &r.live {
        None => {}
        Some(LiveResult::Skipped { reason }) => println!("  live check skipped: {reason}"),
        Some(LiveResult::Failed { step, error }) => {
            println!("  error: {} failed: {error}", step.describe())
        }
        Some(LiveResult::Checked {
            who_am_i,
            entity,
            columns,
            findings,
        }) => {
            println!(
                "  WhoAmI: user {}, business unit {}, organization {}; x-ms-dop-hint {}",
                who_am_i.user_id,
                who_am_i.business_unit_id,
                who_am_i.organization_id,
                who_am_i
                    .dop_hint
                    .map_or_else(|| "not sent".to_owned(), |n| n.to_string())
            );
            println!("  entity {entity}: {columns} columns in Dataverse's metadata");
            for f in findings {
                println!("  {}: {}: {}", serde_name(&f.severity), f.key, f.message);
            }
            if findings.iter().all(|f| f.severity == Severity::Note) {
                println!("  every mapped column exists and fits");
            }
        }
    }
}

/// A unit variant's name as its serde derive spells it, so the text output
/// uses the same words as `--json`.
fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}
