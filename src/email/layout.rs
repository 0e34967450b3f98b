//! The built-in subject and bodies: every field of the lead, the parsed
//! LeadSource, and a label no one can miss on Partner Center's test leads.

use time::format_description::well_known::Rfc3339;

use super::text::escape_html;
use crate::mapping::RenderContext;

const TEST_LABEL: &str = "[TEST LEAD]";
const TEST_NOTE: &str = "This is a test lead from Partner Center (MSFT_TEST), not a customer.";

/// `New lead from AzureMarketplace: Some One, Contoso`.
pub(super) fn subject(ctx: &RenderContext<'_>) -> String {
    let lead = ctx.lead;
    let name = [&lead.user.first_name, &lead.user.last_name]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let who = [Some(name.as_str()), lead.user.company.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let who = if who.is_empty() {
        "(no name given)"
    } else {
        &who
    };
    let from = lead
        .lead_source
        .as_ref()
        .map(|s| format!(" from {}", s.raw))
        .unwrap_or_default();
    let label = if lead.is_test {
        format!("{TEST_LABEL} ")
    } else {
        String::new()
    };
    format!("{label}New lead{from}: {who}")
}

/// Every field as sent, then the summary of what leadbridge made of it.
struct Rows {
    fields: Vec<(String, String)>,
    summary: Vec<(&'static str, String)>,
}

fn rows(ctx: &RenderContext<'_>) -> Rows {
    let lead = ctx.lead;
    let mut summary = Vec::new();
    let mut add = |label: &'static str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            summary.push((label, v));
        }
    };
    add("Offer", lead.offer_title.clone());
    if let Some(s) = &lead.lead_source {
        add("Source", Some(s.source.clone()));
        add("Offer id", s.offer.clone());
    }
    add(
        "Action",
        lead.action_code
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .or_else(|| lead.lead_source.as_ref().and_then(|s| s.action.clone())),
    );
    add("Organization", Some(ctx.org.to_string()));
    add("Lead id", Some(ctx.lead_id.to_string()));
    add("Received", ctx.received_at.format(&Rfc3339).ok());
    Rows {
        fields: lead.fields(),
        summary,
    }
}

pub(super) fn text(ctx: &RenderContext<'_>) -> String {
    let Rows { fields, summary } = rows(ctx);
    let mut out = String::new();
    if ctx.lead.is_test {
        out.push_str(TEST_LABEL);
        out.push(' ');
        out.push_str(TEST_NOTE);
        out.push_str("\n\n");
    }
    out.push_str("A new lead from the Microsoft commercial marketplace.\n\n");
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain(summary.iter().map(|(k, _)| k.chars().count()))
        .max()
        .unwrap_or(0);
    for (k, v) in &fields {
        out.push_str(&format!("{k:width$}  {v}\n"));
    }
    out.push('\n');
    for (k, v) in &summary {
        out.push_str(&format!("{k:width$}  {v}\n"));
    }
    out
}

pub(super) fn html(ctx: &RenderContext<'_>) -> String {
    let Rows { fields, summary } = rows(ctx);
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family:Segoe UI,Helvetica,Arial,sans-serif\">\n",
    );
    if ctx.lead.is_test {
        out.push_str(&format!(
            "<p style=\"background:#fff4ce;padding:8px\"><strong>{TEST_LABEL}</strong> {TEST_NOTE}</p>\n"
        ));
    }
    out.push_str("<p>A new lead from the Microsoft commercial marketplace.</p>\n<table>\n");
    let row = |out: &mut String, k: &str, v: &str| {
        out.push_str(&format!(
            "<tr><th align=\"left\" valign=\"top\">{}</th><td>{}</td></tr>\n",
            escape_html(k),
            escape_html(v)
        ));
    };
    for (k, v) in &fields {
        row(&mut out, k, v);
    }
    out.push_str("</table>\n<table style=\"margin-top:1em;color:#555\">\n");
    for (k, v) in &summary {
        row(&mut out, k, v);
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
