//! `leadbridge send-test-lead --url URL [--lead FILE]`: what Partner Center's
//! Validate button does, from a terminal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use leadbridge::lead::SAMPLE_LEAD_2020;

use super::ConfigArg;

/// Partner Center's own timeout is not documented; a slower answer is a problem anyway.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
#[command(mut_arg("config", |config| config.hide(true)))]
pub struct Args {
    /// The full endpoint URL, `?code=` included.
    #[arg(long)]
    url: String,
    /// The lead to send (default: Microsoft's 2020 sample lead).
    #[arg(long)]
    lead: Option<PathBuf>,
    // Accepted like every verb's, so that a script passing --config to all of
    // them works here too; not used.
    #[command(flatten)]
    _config: ConfigArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    send(&args.url, args.lead.as_deref())
}

fn send(url: &str, lead_file: Option<&Path>) -> anyhow::Result<()> {
    let body = match lead_file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => SAMPLE_LEAD_2020.as_bytes().to_vec(),
    };
    let parsed = url::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    let shown = without_secret(&parsed);
    let http = leadbridge::outbound::build(TIMEOUT)?;
    println!("POST {shown}");
    let answer = super::runtime()?.block_on(async {
        let response = http
            .post(parsed.clone())
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    });
    // reqwest's messages carry the URL, and the URL carries the secret.
    let (status, text) = answer.map_err(|e| {
        let e = e.without_url();
        let reason = if e.is_connect() {
            "cannot connect".to_owned()
        } else if e.is_timeout() {
            format!("no answer within {TIMEOUT:?}")
        } else {
            e.to_string()
        };
        anyhow::anyhow!("{shown}: {reason}: {}", source_chain(&e))
    })?;
    println!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    println!("{text}");
    if !status.is_success() {
        anyhow::bail!(
            "the endpoint answered {}: Partner Center would report the validation as failed",
            status.as_u16()
        );
    }
    Ok(())
}

/// The URL with the value of `code=` replaced, for printing.
fn without_secret(url: &url::Url) -> String {
    let mut shown = url.clone();
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "code" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let causes = leadbridge::outbound::causes(e);
    if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    }
}
