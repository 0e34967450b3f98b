//! The delivery history page on the admin listener: who may see it, what a
//! POST must carry, what it shows, and how fast with a long history.

use std::time::{Duration, Instant};

use leadbridge::store::{AttemptOutcome, DeliveryStatus};
use time::OffsetDateTime;

use crate::common::history_page::*;
use crate::common::*;

/// A lead whose delivery the store has dead-lettered, and its delivery id.
async fn dead_letter(t: &TestApp, email: &str) -> (leadbridge::ids::LeadId, String) {
    let id = t.accept_lead(&lead_json(email, "Dead Letter Inc")).await;
    let store = t.app.as_ref().expect("running").store();
    let now = OffsetDateTime::now_utc();
    let claimed = store
        .claim_due(now, Duration::from_secs(60), 10, &[])
        .await
        .expect("claim");
    let mine = claimed.iter().find(|c| c.lead_id == id).expect("claimed");
    let dead = AttemptOutcome::Dead {
        error: "HTTP 400: 0x80044331 A validation error occurred.".into(),
        http_status: Some(400),
    };
    store
        .record_attempt(mine, now, &dead)
        .await
        .expect("recorded");
    (id, mine.id.to_string())
}

#[tokio::test]
async fn without_a_session_no_page_shows_lead_data() {
    let t = TestApp::spawn().await;
    let (_, delivery) = dead_letter(&t, "private.person@example.com").await;
    let page = PageClient::new(&t.admin);
    for path in ["/", "/?status=dead", &format!("/deliveries/{delivery}")] {
        let r = page.get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("private.person"), "{path}: {body}");
    }
    let (status, body) = page.page("/login").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"<label for="token">Admin token</label>"#),
        "{body}"
    );
    assert!(!body.contains("private.person"), "{body}");
    // Every action wants a session.
    let r = page
        .post(&format!("/deliveries/{delivery}/replay"), &[("csrf", "x")])
        .await;
    assert_eq!(r.status(), 403);
    let r = page.post("/organizations/contoso/unpause", &[]).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_login_opens_a_strict_http_only_session_and_a_logout_ends_it() {
    let t = TestApp::spawn().await;
    let mut page = PageClient::new(&t.admin);
    let r = page.login("wrong-token-0123456789abcdef").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("not the admin token"));
    // Another site cannot log a browser in.
    let r = page
        .post_from(
            Some("http://evil.example"),
            "/login",
            &[("token", ADMIN_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    let r = page.login(ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN), "{cookie}");
    let (status, body) = page.page("/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<h1>Deliveries</h1>"), "{body}");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let r = page
        .http
        .post(format!("{}/login", t.admin))
        .header("origin", "https://ops.example")
        .header("x-forwarded-host", "ops.example")
        .header("x-forwarded-proto", "https")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    let csrf = page.csrf().await;
    let r = page.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = page.get("/").await;
    assert_eq!(r.status(), 303, "the old cookie no longer opens the page");
}

#[tokio::test]
async fn a_cross_site_post_or_one_without_the_session_token_is_refused() {
    let t = TestApp::spawn().await;
    let (lead, delivery) = dead_letter(&t, "x@example.com").await;
    let mut page = PageClient::new(&t.admin);
    assert_eq!(page.login(ADMIN_TOKEN).await.status(), 303);
    let csrf = page.csrf().await;
    let replay = format!("/deliveries/{delivery}/replay");
    for (origin, token) in [
        (Some("http://evil.example"), csrf.as_str()),
        (None, csrf.as_str()),
        (Some(t.admin.as_str()), "forged"),
        (Some(t.admin.as_str()), ""),
    ] {
        let r = page.post_from(origin, &replay, &[("csrf", token)]).await;
        assert_eq!(r.status(), 403, "{origin:?} {token}");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    t.delivery_in(lead, DeliveryStatus::Dead).await;
    // JSON for a client that asks for it, like every other admin error.
    let r = page
        .http
        .post(format!("{}{replay}", t.admin))
        .header("accept", "application/json")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");

    let r = page.post(&replay, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], replay.trim_end_matches("/replay"));
    t.delivery_in(lead, DeliveryStatus::Pending).await;
    let (_, body) = page.page(&format!("/deliveries/{delivery}")).await;
    assert!(body.contains("Queued for an attempt now."), "{body}");
}

#[tokio::test]
async fn the_page_is_off_without_an_admin_token() {
    let t = TestApp::spawn_with(TestConfig {
        admin_token: None,
        ..Default::default()
    })
    .await;
    let page = PageClient::new(&t.admin);
    for path in ["/", "/login", "/assets/history.css"] {
        assert_eq!(page.get(path).await.status(), 404, "{path}");
    }
    let r = page.post("/login", &[("token", "")]).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_list_filters_searches_by_post_and_replays_what_it_shows() {
    let t = TestApp::spawn().await;
    let (dead, delivery) = dead_letter(&t, "dora.dead@example.com").await;
    let alive = t
        .accept_lead(&lead_json("ada.alive@example.com", "Alive Ltd"))
        .await;
    let mut page = PageClient::new(&t.admin);
    page.login(ADMIN_TOKEN).await;

    let r = page.get("/").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let body = r.text().await.unwrap();
    assert!(body.contains("dora.dead@example.com") && body.contains("ada.alive@example.com"));
    assert!(body.contains("Dead Letter Inc"), "the company is shown");
    assert!(body.contains("0x80044331"), "the last error is shown");

    let (_, dead_only) = page
        .page("/?status=dead&org=contoso&destination=dataverse")
        .await;
    assert!(dead_only.contains("dora.dead@example.com"), "{dead_only}");
    assert!(!dead_only.contains("ada.alive@example.com"), "{dead_only}");
    let (status, bad) = page.page("/?status=lost").await;
    assert_eq!(status, 400);
    assert!(bad.contains("status must be one of pending, retrying, delivered, dead, dry_run"));

    // The search goes in a POST body; the page it leads to has no e-mail in its URL.
    let csrf = page.csrf().await;
    let r = page
        .post(
            "/search",
            &[("csrf", &csrf), ("q", "ADA.alive@"), ("status", "pending")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/?status=pending");
    let (_, found) = page.page(&location).await;
    assert!(found.contains("ada.alive@example.com"), "{found}");
    assert!(!found.contains("dora.dead@example.com"), "{found}");
    let r = page
        .post("/search", &[("csrf", &csrf), ("clear", "1")])
        .await;
    assert_eq!(r.headers()["location"], "/");
    let (_, all) = page.page("/").await;
    assert!(all.contains("dora.dead@example.com"));

    // "Replay all shown" sends the dead and dry-run rows it shows.
    assert!(
        all.contains(&format!(r#"name="id" value="{delivery}""#)),
        "{all}"
    );
    let r = page
        .post(
            "/replay",
            &[
                ("csrf", &csrf),
                ("id", &delivery),
                ("back", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/", "never to another site");
    t.delivery_in(dead, DeliveryStatus::Pending).await;
    t.delivery_in(alive, DeliveryStatus::Pending).await;
    let (_, after) = page.page("/").await;
    assert!(after.contains("1 queued for an attempt now."), "{after}");
}

#[tokio::test]
async fn the_detail_shows_the_lead_the_rendered_record_and_every_attempt() {
    let t = TestApp::spawn().await;
    let (_, delivery) = dead_letter(&t, "dora.dead@example.com").await;
    let mut page = PageClient::new(&t.admin);
    page.login(ADMIN_TOKEN).await;
    let (status, body) = page.page(&format!("/deliveries/{delivery}")).await;
    assert_eq!(status, 200, "{body}");
    for shown in [
        "Lead as received",
        "&quot;Email&quot;: &quot;dora.dead@example.com&quot;",
        "What a replay would send now",
        "POST leads",
        "&quot;emailaddress1&quot;: &quot;dora.dead@example.com&quot;",
        "0x80044331 A validation error occurred.",
        ">400<",
        "Replay</button>",
    ] {
        assert!(body.contains(shown), "{shown:?} missing: {body}");
    }
    let (status, _) = page.page("/deliveries/not-an-id").await;
    assert_eq!(status, 400);
    let (status, _) = page
        .page(&format!(
            "/deliveries/{}",
            leadbridge::ids::DeliveryId::generate()
        ))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_paused_or_blocked_organization_has_a_banner_and_its_action() {
    let t = TestApp::spawn().await;
    let store = t.app.as_ref().unwrap().store();
    let contoso = leadbridge::lead::OrgName::parse("contoso").unwrap();
    let now = OffsetDateTime::now_utc();
    let dataverse = leadbridge::store::Destination::Dataverse;
    store
        .block(
            &contoso,
            dataverse,
            "HTTP 401: the client secret expired",
            now,
            now,
        )
        .await
        .unwrap();
    let mut page = PageClient::new(&t.admin);
    page.login(ADMIN_TOKEN).await;
    let (_, body) = page.page("/").await;
    assert!(body.contains("contoso is blocked"), "{body}");
    assert!(
        body.contains("HTTP 401: the client secret expired"),
        "{body}"
    );
    let csrf = page.csrf().await;
    let r = page
        .post(
            "/organizations/contoso/unblock",
            &[("csrf", &csrf), ("destination", "dataverse")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(store.blocks().await.unwrap().is_empty(), "unblocked");

    store
        .pause(&contoso, dataverse, now + Duration::from_secs(3600))
        .await
        .unwrap();
    let (_, body) = page.page("/").await;
    assert!(body.contains("contoso is paused"), "{body}");
    assert!(
        body.contains("unblocked for dataverse"),
        "the notice of the unblock: {body}"
    );
    let r = page
        .post("/organizations/contoso/unpause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 303);
    assert!(store.pauses(now).await.unwrap().is_empty(), "unpaused");
}

/// 100,000 deliveries: the first page and filtered pages come in well under
/// a second (the figures are in BENCHMARKS.md, `cargo bench --bench history`).
#[tokio::test]
async fn a_hundred_thousand_deliveries_page_in_well_under_a_second() {
    const N: usize = 100_000;
    let t = TestApp::spawn().await;
    let store = t.app.as_ref().unwrap().store();
    fill_history(store.as_ref(), N).await;
    // Some dead letters and delivered ones, spread over the history.
    let db = t.db().await;
    sqlx::query(
        "UPDATE deliveries SET status = 'dead', last_error = 'HTTP 400' \
         WHERE created_at % 97 = 0",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("UPDATE deliveries SET status = 'delivered' WHERE created_at % 3 = 0 AND status = 'pending'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(t.count("deliveries").await, N as i64);

    let mut page = PageClient::new(&t.admin);
    page.login(ADMIN_TOKEN).await;
    for path in [
        "/",
        "/?status=dead",
        "/?org=fabrikam&status=delivered",
        "/?destination=dataverse",
    ] {
        let started = Instant::now();
        let (status, body) = page.page(path).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body.matches("<tr class=").count(),
            50,
            "{path}: a full page"
        );
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        // And the next page from there.
        let older = body
            .split(r#"rel="next" href=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|s| s.replace("&amp;", "&"))
            .expect("a link to older deliveries");
        let started = Instant::now();
        let (status, _) = page.page(&older).await;
        assert_eq!(status, 200, "{older}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{older} took {:?}",
            started.elapsed()
        );
    }
}

/// A destination is one more filter value and one more row: the
/// notification mail shows up like the Dynamics record, with its preview.
#[tokio::test]
async fn email_deliveries_are_listed_filtered_and_previewed_like_any_other() {
    let t = TestApp::spawn_with(TestConfig {
        extra_toml: r#"
[organizations.contoso.email]
to = ["sales@contoso.com"]
from = "Contoso Leads <leads@contoso.com>"
smtp_url = "smtp://127.0.0.1:9"
"#
        .into(),
        ..Default::default()
    })
    .await;
    let lead = t
        .accept_lead(&lead_json("mia.mail@example.com", "Mail Co"))
        .await;
    let deliveries = t.deliveries(lead).await;
    let mail = deliveries
        .iter()
        .find(|d| d.destination == leadbridge::store::Destination::Email)
        .expect("a mail delivery");
    let mut page = PageClient::new(&t.admin);
    page.login(ADMIN_TOKEN).await;
    let (_, all) = page.page("/").await;
    assert_eq!(all.matches("<tr class=").count(), 2, "{all}");
    assert!(
        all.contains(r#"<option value="email">email</option>"#),
        "{all}"
    );
    let (status, only) = page.page("/?destination=email").await;
    assert_eq!(status, 200);
    assert_eq!(only.matches("<tr class=").count(), 1, "{only}");
    assert!(only.contains(&format!("/deliveries/{}", mail.id)), "{only}");
    let (_, detail) = page.page(&format!("/deliveries/{}", mail.id)).await;
    assert!(detail.contains("Delivery to email for contoso"), "{detail}");
    assert!(
        detail.contains("To: sales@contoso.com"),
        "the mail it would send: {detail}"
    );
}
