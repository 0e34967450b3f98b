//! The delivery history page in a real browser: headless Chromium through
//! chromedriver. An operator logs in, finds the dead letter among delivered
//! leads, opens it, reads its error and payload, presses Replay and, once
//! the worker has run, sees it delivered. Screenshots of the list and the
//! detail page go to `target/screenshots/`.

// The harness is shared with the other suites; not all of it is used here.
#[allow(unused_imports)]
#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use common::history_page::lead_json;
use common::webdriver::{Browser, Chromedriver};
use common::*;
use leadbridge::store::DeliveryStatus;

fn screenshot_dir() -> PathBuf {
    // Integration tests run from the package root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

#[tokio::test]
async fn an_operator_finds_a_dead_letter_and_replays_it_in_a_browser() {
    let Some(driver) = Chromedriver::start().await else {
        return;
    };
    let t = TestApp::spawn_with(TestConfig::retry_at_once()).await;
    mount_token(&t.entra, "token-1").await;
    let refused = dataverse_error(
        400,
        "0x80044331",
        "A validation error occurred. The length of the 'companyname' attribute exceeded the maximum.",
    );
    let fake = first_create_answered(&t.dataverse, refused).await;
    let dead = t
        .accept_lead(&lead_json("dora.dead@example.com", "Dead Letter Inc"))
        .await;
    assert_eq!(t.run_worker_once().await, 1);
    let dead_delivery = t.delivery_in(dead, DeliveryStatus::Dead).await;
    let mut delivered = Vec::new();
    for n in 0..4 {
        let id = t
            .accept_lead(&lead_json(
                &format!("buyer{n}@example.com"),
                &format!("Buyer {n} Ltd"),
            ))
            .await;
        delivered.push(id);
    }
    t.deliver_due().await;
    for id in &delivered {
        t.delivery_in(*id, DeliveryStatus::Delivered).await;
    }

    let browser = Browser::open(&driver, 1280, 1000).await;
    browser.goto(&format!("{}/", t.admin)).await;
    assert!(
        browser.current_url().await.ends_with("/login"),
        "sent to the login"
    );
    let token = browser.find("input#token").await;
    browser.type_into(&token, ADMIN_TOKEN).await;
    browser
        .click_and_wait(&browser.find("form[action='/login'] button").await)
        .await;
    assert_eq!(browser.current_url().await, format!("{}/", t.admin));

    // The list: five deliveries, one of them dead, with its error.
    let rows = browser.find_all("table.deliveries tbody tr").await;
    assert_eq!(rows.len(), 5);
    let dead_rows = browser.find_all("tr.row-dead").await;
    assert_eq!(
        dead_rows.len(),
        1,
        "one dead letter among the delivered leads"
    );
    let row_text = browser.text(&dead_rows[0]).await;
    assert!(row_text.contains("dora.dead@example.com"), "{row_text}");
    assert!(row_text.contains("0x80044331"), "{row_text}");
    assert_eq!(browser.find_all("tr.row-delivered").await.len(), 4);
    browser
        .screenshot(&screenshot_dir().join("history-list.png"))
        .await;

    // Filtered to dead letters, the one is all there is.
    let status = browser.find("select#status option[value='dead']").await;
    browser.click(&status).await;
    browser
        .click_and_wait(&browser.find("form.filters button[type='submit']").await)
        .await;
    assert!(browser.current_url().await.contains("status=dead"));
    assert_eq!(browser.find_all("table.deliveries tbody tr").await.len(), 1);

    // Open it: the error and the payload as received.
    let open = browser
        .find_in(&browser.find("tr.row-dead").await, "a")
        .await;
    browser.click_and_wait(&open[0]).await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with(&format!("/deliveries/{}", dead_delivery.id))
    );
    let error = browser.text(&browser.find("pre.error").await).await;
    assert!(
        error.contains("0x80044331") && error.contains("companyname"),
        "{error}"
    );
    let page = browser.page_text().await;
    assert!(
        page.contains(r#""Email": "dora.dead@example.com""#),
        "the payload: {page}"
    );
    assert!(
        page.contains(r#""companyname": "Dead Letter Inc""#),
        "the record now: {page}"
    );
    browser
        .screenshot(&screenshot_dir().join("history-detail.png"))
        .await;

    // Replay; the worker runs once; the page shows it delivered.
    browser
        .click_and_wait(&browser.find("form.replay button").await)
        .await;
    assert!(
        browser
            .page_text()
            .await
            .contains("Queued for an attempt now.")
    );
    t.delivery_in(dead, DeliveryStatus::Pending).await;
    assert_eq!(t.run_worker_once().await, 1);
    browser
        .goto(&format!("{}/deliveries/{}", t.admin, dead_delivery.id))
        .await;
    let status = browser.text(&browser.find("dl.facts .badge").await).await;
    assert_eq!(status, "delivered");
    let record = browser
        .find("dl.facts a[href*='/api/data/v9.2/leads(']")
        .await;
    assert!(
        browser
            .text(&record)
            .await
            .contains(&dead_delivery.record_id.to_string())
    );
    assert_eq!(fake.record_count(), 5, "every lead is in Dataverse once");
    browser
        .screenshot(&screenshot_dir().join("history-detail-delivered.png"))
        .await;

    // On a phone the list still reads, a card per delivery.
    let phone = Browser::open(&driver, 390, 844).await;
    phone.goto(&format!("{}/login", t.admin)).await;
    phone
        .type_into(&phone.find("input#token").await, ADMIN_TOKEN)
        .await;
    phone
        .click_and_wait(&phone.find("form[action='/login'] button").await)
        .await;
    assert!(phone.page_text().await.contains("dora.dead@example.com"));
    phone
        .screenshot(&screenshot_dir().join("history-list-phone.png"))
        .await;

    phone.quit().await;
    browser.quit().await;
}
