//! The logs of a full lead flow, read from the service's stdout: ids are
//! there, secrets and personal data are not.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_lead_flow_logs_ids_but_no_secrets_and_no_personal_data() {
    let f = Fakes::start(&TestConfig::json_logs()).await;
    mount_token(&f.entra, ACCESS_TOKEN).await;
    mount_metadata(&f.dataverse, 300).await;
    // The first create fails with a message that echoes the lead, as
    // Dataverse's plug-in errors can: it ends up in a log line.
    on_lead_create()
        .respond_with(dataverse_error(
            503,
            "0x80040265",
            "Plug-in failed for lead Some One <someone@contoso.com>, phone 16175555555",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.dataverse)
        .await;
    mount_created(&f.dataverse).await;

    let mut served = Served::start(&f.config_path).await;
    let r = served.post_lead(sample_2020()).await;
    assert_eq!(r.status(), 202);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer: Value = r.json().await.unwrap();
    let lead_id = answer["id"].as_str().unwrap().to_owned();
    served
        .wait_for_log(
            |v| v["message"] == "lead delivered",
            Duration::from_secs(20),
        )
        .await;
    let lines = served.stop().await;

    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    let all = lines.join("\n");
    for secret in [
        SECRET,
        SECOND_SECRET,
        CLIENT_SECRET,
        ACCESS_TOKEN,
        ADMIN_TOKEN,
    ] {
        assert!(!all.contains(secret), "secret {secret} in the logs:\n{all}");
    }
    for pii in ["someone@contoso.com", "16175555555", "Some One"] {
        assert!(!all.contains(pii), "{pii} in the logs:\n{all}");
    }
    assert!(
        all.contains("s***@contoso.com"),
        "masked, not dropped:\n{all}"
    );

    let find = |message: &str| {
        parsed
            .iter()
            .find(|v| v["message"] == message)
            .unwrap_or_else(|| panic!("no `{message}` line:\n{all}"))
    };
    let accepted = find("lead accepted");
    assert_eq!(accepted["lead_id"], lead_id.as_str());
    assert_eq!(accepted["request_id"], request_id.as_str());
    for message in ["delivery failed; will retry", "lead delivered"] {
        let line = find(message);
        assert_eq!(line["span"]["lead_id"], lead_id.as_str(), "{line}");
        assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
    }
    let retry = find("delivery failed; will retry");
    assert_eq!(retry["span"]["attempt"], 1);
    assert_eq!(find("lead delivered")["span"]["attempt"], 2);
}
