//! The list: filters, search, one page of deliveries, paging, "replay all
//! shown".

use maud::{Markup, html};
use strum::VariantArray as _;
use time::OffsetDateTime;

use super::filters::Filters;
use super::views::{Chrome, Person, csrf_field, page, status_badge, when};
use crate::lead::OrgName;
use crate::store::{DeliveryStatus, Destination, HistoryEntry, HistoryPage};

/// Errors longer than this are cut in the list (the detail page has all).
const ERROR_CHARS: usize = 160;

pub(super) struct ListPage<'a> {
    pub(super) filters: &'a Filters,
    pub(super) search: Option<&'a str>,
    pub(super) orgs: &'a [OrgName],
    pub(super) entries: &'a [HistoryEntry],
    /// Links to the neighbouring pages, when there are any.
    pub(super) newer: Option<HistoryPage>,
    pub(super) older: Option<HistoryPage>,
    pub(super) now: OffsetDateTime,
}

/// Whether "Replay" applies: what `deliveries retry --all-dead` and
/// `--all-dry-run` pick.
pub(super) fn replayable(status: DeliveryStatus) -> bool {
    matches!(status, DeliveryStatus::Dead | DeliveryStatus::DryRun)
}

fn cut(s: &str) -> String {
    let flat = s.replace(['\n', '\r'], " ");
    if flat.chars().count() > ERROR_CHARS {
        let mut out: String = flat.chars().take(ERROR_CHARS - 1).collect();
        out.push('…');
        out
    } else {
        flat
    }
}

fn select<T: Copy + PartialEq + Into<&'static str>>(
    id: &str,
    label: &str,
    all: &[T],
    chosen: Option<T>,
) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(id) {
                option value="" selected[chosen.is_none()] { "any" }
                @for v in all {
                    @let name: &'static str = (*v).into();
                    option value=(name) selected[chosen == Some(*v)] { (name) }
                }
            }
        }
    }
}

fn filter_form(p: &ListPage<'_>) -> Markup {
    let f = p.filters;
    html! {
        form.filters method="get" action="/" aria-label="Filters" {
            div.field {
                label for="org" { "Organization" }
                select id="org" name="org" {
                    option value="" selected[f.org.is_none()] { "any" }
                    @for org in p.orgs {
                        option value=(org) selected[f.org.as_ref() == Some(org)] { (org) }
                    }
                    // A filter on an organization no longer configured still shows.
                    @if let Some(org) = f.org.as_ref().filter(|o| !p.orgs.contains(o)) {
                        option value=(org) selected { (org) }
                    }
                }
            }
            (select("status", "Status", DeliveryStatus::VARIANTS, f.status))
            (select("destination", "Destination", Destination::VARIANTS, f.destination))
            div.field {
                label for="from" { "Received from (UTC)" }
                input id="from" name="from" type="datetime-local" value=(Filters::input_time(f.from));
            }
            div.field {
                label for="to" { "Received before (UTC)" }
                input id="to" name="to" type="datetime-local" value=(Filters::input_time(f.to));
            }
            div.actions {
                button type="submit" { "Apply filters" }
                a href="/" { "Clear" }
            }
        }
    }
}

fn search_form(p: &ListPage<'_>, csrf: &str) -> Markup {
    html! {
        // POST: the search (an e-mail address, a company) stays out of URLs,
        // browser history and access logs; the session remembers it.
        form.search method="post" action="/search" role="search" {
            (csrf_field(csrf))
            @for (k, v) in p.filters.pairs() {
                input type="hidden" name=(k) value=(v);
            }
            div.field {
                label for="q" { "Search e-mail or company" }
                input id="q" name="q" type="search" value=(p.search.unwrap_or_default())
                    autocomplete="off";
            }
            div.actions {
                button type="submit" { "Search" }
                @if p.search.is_some() {
                    button type="submit" name="clear" value="1" { "Clear search" }
                }
            }
        }
    }
}

fn row(e: &HistoryEntry, now: OffsetDateTime) -> Markup {
    let d = &e.delivery;
    let who = Person::of(&e.payload);
    html! {
        tr class={ "row-" (d.status) } {
            td data-label="Received" { (when(d.received_at, now)) }
            td data-label="Organization" { (d.org) }
            td data-label="Destination" { (d.destination) }
            td data-label="Status" { (status_badge(d.status, d.blocked)) }
            td data-label="Attempts" .num { (d.attempts) }
            td data-label="Company" { (who.company.unwrap_or_default()) }
            td data-label="E-mail" .email { (who.email.unwrap_or_default()) }
            td data-label="Last error" .error { (d.last_error.as_deref().map(cut).unwrap_or_default()) }
            td data-label="Details" {
                a href={ "/deliveries/" (d.id) } aria-label={ "Open delivery " (d.id) } { "Open" }
            }
        }
    }
}

pub(super) fn render(p: &ListPage<'_>, chrome: &Chrome<'_>) -> Markup {
    let replay: Vec<&HistoryEntry> = p
        .entries
        .iter()
        .filter(|e| replayable(e.delivery.status))
        .collect();
    page(
        "Deliveries",
        chrome,
        html! {
            h1 { "Deliveries" }
            (filter_form(p))
            (search_form(p, chrome.csrf))
            @if let Some(q) = p.search {
                p.searching { "Showing deliveries whose lead contains “" (q) "”." }
            }
            @if p.entries.is_empty() {
                p.empty { "No deliveries match." }
            } @else {
                table.deliveries {
                    caption { "Deliveries, newest first" }
                    thead {
                        tr {
                            @for h in ["Received", "Organization", "Destination", "Status", "Attempts",
                                       "Company", "E-mail", "Last error", "Details"] {
                                th scope="col" { (h) }
                            }
                        }
                    }
                    tbody {
                        @for e in p.entries { (row(e, p.now)) }
                    }
                }
            }
            nav.pages aria-label="Pages" {
                @if let Some(newer) = p.newer {
                    a rel="prev" href=(p.filters.link(newer)) { "← Newer" }
                }
                @if let Some(older) = p.older {
                    a rel="next" href=(p.filters.link(older)) { "Older →" }
                }
            }
            @if !replay.is_empty() {
                form.replay-all method="post" action="/replay" {
                    (csrf_field(chrome.csrf))
                    @for e in &replay {
                        input type="hidden" name="id" value=(e.delivery.id);
                    }
                    input type="hidden" name="back" value=(p.filters.link(HistoryPage::First));
                    button type="submit" {
                        "Replay the " (replay.len()) " dead or dry-run deliveries shown"
                    }
                }
            }
        },
    )
}
