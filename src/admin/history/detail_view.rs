//! One delivery: what was received, what it would be sent as now, every
//! attempt, where the record is, and Replay.

use maud::{Markup, html};
use time::OffsetDateTime;

use super::list_view::replayable;
use super::views::{Chrome, Person, csrf_field, page, status_badge, when};
use crate::store::{AttemptView, DeliveryStatus, DeliveryView};

pub(super) struct DetailPage<'a> {
    pub(super) delivery: &'a DeliveryView,
    pub(super) attempts: &'a [AttemptView],
    /// The stored lead, pretty-printed when it is JSON.
    pub(super) payload: Option<String>,
    /// The record the mapping in force renders from it, or why there is none.
    pub(super) rendered: Result<String, String>,
    pub(super) now: OffsetDateTime,
}

/// A link only to a web address: a stored reference is never made into a
/// `javascript:` or other link.
fn record_link(remote_ref: &str) -> Markup {
    let web = url::Url::parse(remote_ref)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"));
    html! {
        @if let Some(u) = web {
            a href=(u) rel="noreferrer noopener" { (remote_ref) }
        } @else {
            code { (remote_ref) }
        }
    }
}

pub(super) fn render(p: &DetailPage<'_>, chrome: &Chrome<'_>) -> Markup {
    let d = p.delivery;
    let who = p.payload.as_deref().map(Person::of).unwrap_or_default();
    page(
        "Delivery",
        chrome,
        html! {
            p { a href="/" { "← All deliveries" } }
            h1 { "Delivery to " (d.destination) " for " (d.org) }
            dl.facts {
                dt { "Status" } dd { (status_badge(d.status, d.blocked)) }
                @if let Some(name) = &who.name { dt { "Name" } dd { (name) } }
                @if let Some(email) = &who.email { dt { "E-mail" } dd.email { (email) } }
                @if let Some(company) = &who.company { dt { "Company" } dd { (company) } }
                dt { "Received" } dd { (when(d.received_at, p.now)) }
                dt { "Attempts" } dd { (d.attempts) }
                @if matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
                    dt { "Next attempt" } dd { (when(d.next_attempt_at, p.now)) }
                }
                @if d.blocked {
                    dt { "Blocked" } dd { "Its organization is blocked: the banner above says why." }
                }
                @if let Some(r) = &d.remote_ref {
                    dt { @if d.status == DeliveryStatus::Delivered { "Record" } @else { "Record it would be" } }
                    dd { (record_link(r)) }
                }
                dt { "Delivery id" } dd { code { (d.id) } }
                dt { "Lead id" } dd { code { (d.lead_id) } }
                dt { "Record id" } dd { code { (d.record_id) } }
            }
            @if let Some(e) = &d.last_error {
                section.last-error aria-labelledby="last-error" {
                    h2 id="last-error" { "Last error" }
                    pre.error { (e) }
                }
            }
            @if replayable(d.status) {
                form.replay method="post" action={ "/deliveries/" (d.id) "/replay" } {
                    (csrf_field(chrome.csrf))
                    button type="submit" { "Replay" }
                    " "
                    span.hint { "Queues it for an attempt now, with the mapping in force and a fresh retry budget." }
                }
            }
            section aria-labelledby="attempts" {
                h2 id="attempts" { "Attempts" }
                @if p.attempts.is_empty() {
                    p { "None yet." }
                } @else {
                    table.attempts {
                        thead { tr {
                            th scope="col" { "Time" } th scope="col" { "Outcome" }
                            th scope="col" { "HTTP" } th scope="col" { "Error" }
                        } }
                        tbody {
                            @for a in p.attempts {
                                tr {
                                    td data-label="Time" { (when(a.at, p.now)) }
                                    td data-label="Outcome" { (a.outcome) }
                                    td data-label="HTTP" .num {
                                        (a.http_status.map(|s| s.to_string()).unwrap_or_default())
                                    }
                                    td data-label="Error" .error { (a.error.as_deref().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="payload" {
                h2 id="payload" { "Lead as received" }
                @match &p.payload {
                    Some(text) => pre.payload tabindex="0" { (text) },
                    None => p { "The lead is no longer stored." },
                }
            }
            section aria-labelledby="rendered" {
                h2 id="rendered" { "What a replay would send now" }
                @match &p.rendered {
                    Ok(text) => pre.payload tabindex="0" { (text) },
                    Err(why) => p { (why) },
                }
            }
        },
    )
}
