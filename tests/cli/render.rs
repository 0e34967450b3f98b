use serde_json::Value;

use crate::common::*;

/// `render --org <org> --lead <lead>` with the fakes' config.
async fn render(f: &Fakes, org: &str, lead: &std::path::Path) -> Run {
    let lead = lead.to_str().unwrap();
    f.cli(&["render", "--org", org, "--lead", lead]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn render_prints_the_exact_request_without_sending_it() {
    let f = Fakes::start(&TestConfig::default()).await;
    let lead = f.write_file("lead.json", sample_2020());
    let run = render(&f, "contoso", &lead).await;
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
    assert_eq!(without_id, seed_sample_record(sample_2020()));
    assert!(received(&f.entra).await.is_empty());
    assert!(received(&f.dataverse).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn render_names_what_is_wrong() {
    let f = Fakes::start(&TestConfig::default()).await;
    let lead = f.write_file("lead.json", sample_2020());

    let run = render(&f, "fabrikam", &lead).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no organization fabrikam in ")
            && run.stderr.contains("configured: contoso"),
        "{}",
        run.stderr
    );

    let not_a_lead = f.write_file("list.json", "[1, 2]");
    let run = render(&f, "contoso", &not_a_lead).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("list.json is not a lead: the lead must be a JSON object, got an array"),
        "{}",
        run.stderr
    );
}
