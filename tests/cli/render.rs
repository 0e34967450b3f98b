use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn render_prints_the_exact_request_without_sending_it() {
    let f = Fakes::start(&TestConfig::default()).await;
    let lead = f.dir.path().join("lead.json");
    std::fs::write(&lead, sample_2020()).unwrap();
    let run = run_binary(&[
        "render",
        "--org",
        "contoso",
        "--lead",
        lead.to_str().unwrap(),
        "--config",
        f.config_path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    let expected_head = format!(
        "POST {}/api/data/v9.2/leads\nAuthorization: Bearer <access token from Entra ID, not shown>\nAccept: application/json\nOData-MaxVersion: 4.0\nOData-Version: 4.0\nContent-Type: application/json; charset=utf-8\n\n{{",
        f.dataverse.uri()
    );
    assert!(out.contains(&expected_head), "{out}");
    assert!(
        out.contains(
            "# leadid is a fresh random id for this preview: each delivery generates its own\n"
        ),
        "{out}"
    );
    let body: Value = serde_json::from_str(&out[out.find("\n{").unwrap()..]).unwrap();
    let leadid = body["leadid"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(leadid).is_ok(), "{leadid}");
    let mut without_id = body.clone();
    without_id.as_object_mut().unwrap().remove("leadid");
    assert_eq!(
        without_id,
        json!({
            "firstname": "Some",
            "lastname": "One",
            "emailaddress1": "someone@contoso.com",
            "telephone1": "16175555555",
            "address1_country": "USA",
            "companyname": "Contoso",
            "jobtitle": "Esquire",
            "subject": "Test Microsoft",
            "description": "Test run through Power Automate",
        })
    );
    assert!(f.entra.received_requests().await.unwrap().is_empty());
    assert!(f.dataverse.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn render_names_what_is_wrong() {
    let f = Fakes::start(&TestConfig::default()).await;
    let config = f.config_path.to_str().unwrap();
    let lead = f.dir.path().join("lead.json");
    std::fs::write(&lead, sample_2020()).unwrap();
    let lead = lead.to_str().unwrap();

    let run = run_binary(&[
        "render", "--org", "fabrikam", "--lead", lead, "--config", config,
    ])
    .await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no organization fabrikam in ")
            && run.stderr.contains("configured: contoso"),
        "{}",
        run.stderr
    );

    let not_a_lead = f.dir.path().join("list.json");
    std::fs::write(&not_a_lead, "[1, 2]").unwrap();
    let run = run_binary(&[
        "render",
        "--org",
        "contoso",
        "--lead",
        not_a_lead.to_str().unwrap(),
        "--config",
        config,
    ])
    .await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("list.json is not a lead: the lead must be a JSON object, got an array"),
        "{}",
        run.stderr
    );
}
