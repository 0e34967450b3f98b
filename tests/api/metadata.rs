//! The worker cuts values to the real MaxLength from Dataverse's metadata.

use leadbridge::store::DeliveryStatus;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

fn lead_with_title(title: &str) -> String {
    json!({"OfferTitle": title, "UserDetails": {"LastName": "One"}}).to_string()
}

#[tokio::test]
async fn a_value_longer_than_max_length_is_cut_to_it() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    mount_metadata(&t.dataverse, 300).await;
    mount_created(&t.dataverse).await;
    let title = "Contoso CRM ".repeat(30); // 360 characters
    let id = t.accept_lead(&lead_with_title(&title)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::Delivered).await;
    let sent = t.last_create_body().await;
    let subject = sent["subject"].as_str().unwrap();
    assert_eq!(
        subject,
        &title[..300],
        "a plain cut: the mapping has no truncate"
    );
    assert_eq!(sent["lastname"], "One");
    // The metadata was read once, with the token of the deliveries.
    let string_path = format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.StringAttributeMetadata");
    let string_reqs = requests_to(&t.dataverse, &string_path).await;
    assert_eq!(string_reqs.len(), 1);
    assert_eq!(string_reqs[0].headers["authorization"], "Bearer token-1");
    assert_eq!(t.token_requests().await.len(), 1);
}

#[tokio::test]
async fn the_mappings_ellipsis_choice_is_kept() {
    let (_dir, mapping) = mapping_file(
        "fields:\n  subject: {from: OfferTitle, transform: [{truncate: {max: 400, ellipsis: true}}]}\n",
    );
    let t = TestApp::spawn_with_mapping(&mapping).await;
    mount_token(&t.entra, "token-1").await;
    // An organization whose administrator shortened the column.
    mount_metadata(&t.dataverse, 20).await;
    mount_created(&t.dataverse).await;
    let id = t
        .accept_lead(&lead_with_title("An offer title of forty characters long!"))
        .await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(
        t.last_create_body().await["subject"],
        "An offer title of f…"
    );
}

#[tokio::test]
async fn metadata_failures_never_block_delivery() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    Mock::given(method("GET"))
        .and(path_regex("^/api/data/v9.2/EntityDefinitions"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .mount(&t.dataverse)
        .await;
    mount_created(&t.dataverse).await;
    let title = "x".repeat(310);
    let first = t.accept_lead(&lead_with_title(&title)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(first, DeliveryStatus::Delivered).await;
    assert_eq!(
        t.last_create_body().await["subject"],
        title.as_str(),
        "sent as rendered"
    );
    let second = t.accept_lead(&lead_with_title("short")).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(second, DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts, 1);
    // A failed fetch is not repeated for every delivery.
    let all = received(&t.dataverse)
        .await
        .into_iter()
        .filter(|r| r.url.path().starts_with("/api/data/v9.2/EntityDefinitions"))
        .count();
    assert_eq!(all, 1);
}

#[tokio::test]
async fn dry_run_organizations_fetch_no_metadata() {
    let t = TestApp::spawn_dry_run().await;
    let id = t.accept_lead(&lead_with_title(&"y".repeat(400))).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::DryRun).await;
    assert!(received(&t.dataverse).await.is_empty());
}

#[tokio::test]
async fn other_entity_sets_are_resolved_to_their_logical_name() {
    use leadbridge::auth::TokenProvider;
    use leadbridge::auth::{Credentials, EntraApp};
    use leadbridge::dataverse::{DataverseClient, ErrorKind};
    use wiremock::MockServer;
    use wiremock::matchers::{path, query_param};

    let entra = MockServer::start().await;
    let dataverse = MockServer::start().await;
    mount_token(&entra, "token-1").await;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/EntityDefinitions"))
        .and(query_param("$filter", "EntitySetName eq 'contacts'"))
        .respond_with(ok(json!({
            "@odata.context": "…/$metadata#EntityDefinitions(LogicalName)",
            "value": [{"LogicalName": "contact", "MetadataId": "608861bc-50a4-4c5f-a02c-21fe1943e2cf"}],
        })))
        .mount(&dataverse)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/EntityDefinitions"))
        .respond_with(ok(json!({"value": []})))
        .mount(&dataverse)
        .await;
    let contact = "/api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes";
    let answers = [
        (
            contact.to_owned(),
            json!({"value": [
                {"LogicalName": "contactid", "AttributeType": "Uniqueidentifier", "IsValidForCreate": true},
                {"LogicalName": "emailaddress1", "AttributeType": "String", "IsValidForCreate": true},
            ]}),
        ),
        (
            format!("{contact}/Microsoft.Dynamics.CRM.StringAttributeMetadata"),
            json!({"value": [{"LogicalName": "emailaddress1", "MaxLength": 100}]}),
        ),
        (
            format!("{contact}/Microsoft.Dynamics.CRM.MemoAttributeMetadata"),
            json!({"value": []}),
        ),
        (
            format!("{contact}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"),
            json!({"value": []}),
        ),
    ];
    for (p, body) in answers {
        Mock::given(method("GET"))
            .and(path(p.as_str()))
            .respond_with(ok(body))
            .mount(&dataverse)
            .await;
    }

    let http = reqwest::Client::new();
    let creds = Credentials::ClientSecret {
        app: EntraApp {
            authority_host: url::Url::parse(&entra.uri()).unwrap(),
            tenant_id: TENANT.into(),
            client_id: CLIENT_ID.into(),
            scope: format!("{}/.default", dataverse.uri()),
        },
        secret: secrecy::SecretString::from(CLIENT_SECRET),
    };
    let token = TokenProvider::new(http.clone())
        .token(&creds)
        .await
        .unwrap();
    let client = DataverseClient::new(http);
    let org_url = url::Url::parse(&dataverse.uri()).unwrap();
    let meta = client
        .entity_metadata(&org_url, "contacts", &token)
        .await
        .unwrap();
    assert_eq!(meta.logical_name, "contact");
    assert_eq!(meta.max_length("emailaddress1"), Some(100));
    assert_eq!(meta.attributes.len(), 2);

    let err = client
        .entity_metadata(&org_url, "nosuchthings", &token)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message
            .contains("no entity has the entity set name `nosuchthings`"),
        "{err}"
    );
}
