//! The page's frame: document head, header with logout, the organization
//! banners (blocked, paused) with their actions, a one-time notice; the
//! login form; times shown both ways; what a lead says of its person.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::lead::Lead;
use crate::store::{Block, DeliveryStatus, Pause};

/// What every page after login shows around its content.
pub(super) struct Chrome<'a> {
    pub(super) csrf: &'a str,
    pub(super) notice: Option<&'a str>,
    pub(super) blocks: &'a [Block],
    pub(super) pauses: &'a [Pause],
    pub(super) now: OffsetDateTime,
}

/// A hidden input with the session's CSRF token: in every POST form.
pub(super) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · leadbridge" }
                link rel="stylesheet" href=(super::STYLESHEET);
            }
            body { (body) }
        }
    }
}

/// A page behind the login.
pub(super) fn page(title: &str, chrome: &Chrome<'_>, content: Markup) -> Markup {
    document(
        title,
        html! {
            a.skip href="#main" { "Skip to content" }
            header.top {
                a.brand href="/" { "leadbridge" span.sub { " delivery history" } }
                form method="post" action="/logout" {
                    (csrf_field(chrome.csrf))
                    button.link type="submit" { "Log out" }
                }
            }
            @if let Some(notice) = chrome.notice {
                p.notice role="status" { (notice) }
            }
            (banners(chrome))
            main id="main" { (content) }
        },
    )
}

fn banners(chrome: &Chrome<'_>) -> Markup {
    html! {
        @for b in chrome.blocks {
            section.banner.blocked role="alert" aria-label={ "Organization " (b.org) " blocked" } {
                p {
                    strong { (b.org) " is blocked" } " for " (b.destination) " since "
                    (when(b.since, chrome.now)) ". Its deliveries wait; none is dead-lettered for this. Reason: "
                }
                pre.reason { (b.reason) }
                form method="post" action={ "/organizations/" (b.org) "/unblock" } {
                    (csrf_field(chrome.csrf))
                    input type="hidden" name="destination" value=(b.destination);
                    button type="submit" { "Unblock " (b.org) }
                }
            }
        }
        @for p in chrome.pauses {
            section.banner.paused role="status" aria-label={ "Organization " (p.org) " paused" } {
                p {
                    strong { (p.org) " is paused" } " for " (p.destination)
                    " until " (when(p.until, chrome.now))
                    ": the destination asked to wait (Retry-After)."
                }
                form method="post" action={ "/organizations/" (p.org) "/unpause" } {
                    (csrf_field(chrome.csrf))
                    button type="submit" { "Unpause " (p.org) }
                }
            }
        }
    }
}

/// The login form; `failed` after a wrong token.
pub(super) fn login(failed: bool) -> Markup {
    document(
        "Log in",
        html! {
            main id="main" .login {
                h1 { "leadbridge delivery history" }
                @if failed {
                    p.error role="alert" id="login-error" { "That is not the admin token." }
                }
                form method="post" action="/login" {
                    label for="token" { "Admin token" }
                    input id="token" name="token" type="password" required
                        autocomplete="current-password" autofocus
                        aria-describedby=[failed.then_some("login-error")];
                    button type="submit" { "Log in" }
                }
                p.hint { "The token is the admin listener's " code { "admin.token" } "." }
            }
        },
    )
}

/// A page that reports a problem (also before login: it shows no data).
pub(super) fn problem(title: &str, message: &str) -> Markup {
    document(
        title,
        html! {
            main id="main" {
                h1 { (title) }
                p { (message) }
                p { a href="/" { "Back to the delivery history" } }
            }
        },
    )
}

/// A time, absolute in UTC, with how long ago (or until) it is.
pub(super) fn when(t: OffsetDateTime, now: OffsetDateTime) -> Markup {
    let absolute = t
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    let iso = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    html! {
        time datetime=(iso) title=(absolute) {
            span.relative { (relative(t, now)) }
            " " span.absolute { "(" (absolute) ")" }
        }
    }
}

/// "3 min ago", "in 2 h".
pub(super) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let seconds = (now - t).whole_seconds();
    let (n, future) = (seconds.unsigned_abs(), seconds < 0);
    let amount = match n {
        0..=59 => {
            return if future {
                "in a moment".into()
            } else {
                "just now".into()
            };
        }
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

pub(super) fn status_badge(status: DeliveryStatus, blocked: bool) -> Markup {
    let label = if blocked && matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
        "blocked"
    } else {
        status.as_str()
    };
    html! { span class={ "badge status-" (label) } { (label) } }
}

/// Who a lead is about, as far as its document says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Person {
    pub(super) name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) company: Option<String>,
}

impl Person {
    pub(super) fn of(payload: &str) -> Self {
        let Some(lead) = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|v| Lead::parse(&v).ok())
        else {
            return Self::default();
        };
        let user = lead.user;
        let name = [user.first_name, user.last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            name: Some(name).filter(|n| !n.is_empty()),
            email: user.email,
            company: user.company,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_both_ways() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ago = |s: i64| relative(now - time::Duration::seconds(s), now);
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(125), "2 min ago");
        assert_eq!(ago(7300), "2 h ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        assert_eq!(ago(-3600), "in 1 h");
        let shown = when(now, now).into_string();
        assert!(shown.contains("2027-01-15 08:00:00 UTC"), "{shown}");
    }

    #[test]
    fn a_person_is_read_from_any_casing_and_markup_is_escaped() {
        let p = Person::of(
            r#"{"userDetails":{"firstName":"Ada","LastName":"<b>L</b>","email":"ada@example.com","Company":" Contoso "}}"#,
        );
        assert_eq!(p.email.as_deref(), Some("ada@example.com"));
        assert_eq!(p.company.as_deref(), Some("Contoso"));
        assert_eq!(p.name.as_deref(), Some("Ada <b>L</b>"));
        let shown = html! { (p.name.unwrap_or_default()) }.into_string();
        assert_eq!(shown, "Ada &lt;b&gt;L&lt;/b&gt;");
        assert_eq!(Person::of("not json"), Person::default());
    }
}
