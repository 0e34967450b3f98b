use serde_json::{Value, json};

use crate::common::*;

/// Live fakes; the mapping file (if given) lives in the returned directory.
async fn live_fakes(mapping: Option<&str>) -> (Fakes, Option<tempfile::TempDir>) {
    let mut cfg = TestConfig::default();
    let dir = mapping.map(|yaml| {
        let (dir, path) = mapping_file(yaml);
        cfg.mapping = path;
        dir
    });
    let f = Fakes::start(&cfg).await;
    mount_token(&f.entra, ACCESS_TOKEN).await;
    mount_whoami(&f.dataverse).await;
    mount_metadata(&f.dataverse, 300).await;
    (f, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_config_checks_offline() {
    let config = repo_path("config/default.toml");
    let run = run_with_config(&config, &["check"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("ok: contoso -> https://contoso.crm4.dynamics.com/ (dry run), mapping "),
        "{}",
        run.stdout
    );

    let run = run_with_config(&config, &["check", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["live"], false);
    assert_eq!(v["organizations"][0]["organization"], "contoso");
    assert_eq!(v["organizations"][0]["dry_run"], true);
    assert_eq!(v["organizations"][0]["live"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_mapping_fails_with_file_key_and_reason() {
    let (_dir, mapping) =
        mapping_file("fields:\n  subject: {from: OfferTitle, transform: [shout]}\n");
    let f = Fakes::start(&TestConfig {
        mapping: mapping.clone(),
        ..Default::default()
    })
    .await;
    let run = f.cli(&["check"]).await;
    assert_eq!(run.code, Some(1));
    let expected = format!(
        "{}: fields.subject.transform[0]: unknown transform `shout`",
        mapping.display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);

    let run = f.cli(&["check", "--json"]).await;
    assert_eq!(run.code, Some(1));
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["errors"][0].as_str().unwrap().contains(&expected), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_check_of_the_shipped_mapping() {
    let (f, _dir) = live_fakes(None).await;
    let run = f.cli(&["check", "--live"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(
        out.contains(&format!(
            "  WhoAmI: user {USER_ID}, business unit {BUSINESS_UNIT_ID}, organization {ORGANIZATION_ID}; x-ms-dop-hint 4\n  entity lead: 20 columns in Dataverse's metadata\n"
        )),
        "{out}"
    );
    // The shipped mapping passes lead text through without truncate.
    assert!(
        out.contains("  warning: fields.subject: value can be any length (it comes from the lead), more than MaxLength 300; no truncation is configured, so leadbridge cuts it to 300 at delivery\n"),
        "{out}"
    );
    assert!(out.contains("  warning: fields.description: "), "{out}");
    assert!(
        out.ends_with("live check: 0 error(s), 9 warning(s)\n"),
        "{out}"
    );
    assert!(!out.contains(CLIENT_SECRET) && !out.contains(ACCESS_TOKEN));

    // WhoAmI was read with the token from Entra.
    let whoami = requests_to(&f.dataverse, WHOAMI_PATH).await;
    assert_eq!(whoami.len(), 1);
    assert_eq!(
        whoami[0].headers["authorization"],
        format!("Bearer {ACCESS_TOKEN}").as_str()
    );
    assert_eq!(
        f.create_requests().await.len(),
        0,
        "check never creates records"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn live_check_reports_every_problem_as_json() {
    let (f, _dir) = live_fakes(Some(
        r#"
fields:
  subject: {template: "{OfferTitle} for {UserDetails.Company}", transform: [{truncate: {max: 400, ellipsis: true}}]}
  firstname: {from: UserDetails.FirstName, transform: [{truncate: 50}]}
  new_offer: $offer
  fullname: UserDetails.LastName
  leadsourcecode: {from: $source, map: {AzureMarketplace: 8, SPZA: 11}, default: 10}
  ownerid@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}
  jobtitle@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}
"#,
    ))
    .await;
    let run = f.cli(&["check", "--live", "--json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("check failed: 4 error(s)"),
        "{}",
        run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let live = &v["organizations"][0]["live"];
    assert_eq!(live["status"], "checked");
    assert_eq!(
        live["who_am_i"],
        json!({"user_id": USER_ID, "business_unit_id": BUSINESS_UNIT_ID, "organization_id": ORGANIZATION_ID, "dop_hint": 4})
    );
    assert_eq!(live["entity"], "lead");
    let findings: Vec<(String, String)> = live["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_owned(),
                f["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("warning", "fields.subject"),
        ("error", "fields.new_offer"),
        ("error", "fields.fullname"),
        ("error", "fields.leadsourcecode"),
        ("note", "fields.ownerid@odata.bind"),
        ("error", "fields.jobtitle@odata.bind"),
    ];
    assert_eq!(
        findings,
        expected.map(|(s, k)| (s.to_owned(), k.to_owned())).to_vec()
    );
    let messages: Vec<&str> = live["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains("truncation is configured, but to 400 characters"),
        "{}",
        messages[0]
    );
    assert!(
        messages[3].contains("map 11 is not an option of `leadsourcecode`")
            && messages[3].contains("8 Web, 9 Word of Mouth, 10 Other"),
        "{}",
        messages[3]
    );
    assert!(
        messages[5].contains("`jobtitle` is a String column, not a lookup"),
        "{}",
        messages[5]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_secret_fails_the_live_check_with_entras_reason() {
    let f = Fakes::start(&TestConfig::default()).await;
    on_token_request()
        .respond_with(entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        ))
        .mount(&f.entra)
        .await;
    let run = f.cli(&["check", "--live"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("FAIL: contoso")
            && run.stdout.contains("  error: getting a token from Entra ID failed: Entra ID refused the credentials: invalid_client: AADSTS7000215: Invalid client secret provided."),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(CLIENT_SECRET) && !run.stderr.contains(CLIENT_SECRET));
    assert_eq!(received(&f.dataverse).await.len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_organizations_are_skipped_with_a_note() {
    let f = Fakes::start(&TestConfig {
        dry_run: true,
        ..Default::default()
    })
    .await;
    let run = f.cli(&["check", "--live"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("  live check skipped: dry run: leadbridge never calls Dataverse for this organization\n"),
        "{}",
        run.stdout
    );
    assert_eq!(
        received(&f.entra).await.len() + received(&f.dataverse).await.len(),
        0
    );
}
