//! Certificate, workload-identity and managed-identity credentials, end to end.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leadbridge::store::DeliveryStatus;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `openssl x509 -in tests/fixtures/client-cert.pem -noout -fingerprint -sha256` / `-sha1`.
const CERT_SHA256: &str = "C130FC87E26B207A9221C0BE3EEA688146C6DFB1230D975C1F6F7A4212CD94BB";
const CERT_SHA1: &str = "C8653D121DB767794B09A3CA72FDC43E8C94A0BD";

fn hex_to_base64url(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_certificate_signs_the_client_assertion_and_the_lead_is_delivered() {
    for (alg, thumbprint_header, thumbprint, verifier) in [
        (
            "PS256",
            "x5t#S256",
            hex_to_base64url(CERT_SHA256),
            webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        ),
        (
            "RS256",
            "x5t",
            hex_to_base64url(CERT_SHA1),
            webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        ),
    ] {
        let t = TestApp::spawn_with(TestConfig {
            credential: Some(format!(
                "method = \"certificate\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\nassertion_alg = \"{alg}\"",
                fixture("client-cert.pem").display(),
                fixture("client-key.pem").display(),
            )),
            ..TestConfig::default()
        })
        .await;
        mount_token(&t.entra, "cert-token").await;
        on_lead_create()
            .and(header("authorization", "Bearer cert-token"))
            .respond_with(FakeDataverse::new(&t.dataverse))
            .mount(&t.dataverse)
            .await;
        let before = now_secs();
        let id = t.accept_lead(sample_2020()).await;
        assert_eq!(t.deliver_due().await, 1);
        let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
        assert_eq!(
            t.sent_record(d.record_id).await["emailaddress1"],
            "someone@contoso.com"
        );

        let reqs = t.token_requests().await;
        assert_eq!(reqs.len(), 1);
        let form = form_fields(&reqs[0].body);
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], CLIENT_ID);
        assert_eq!(form["client_assertion_type"], JWT_BEARER);
        assert_eq!(form["scope"], format!("{}/.default", t.dataverse.uri()));
        assert!(!form.contains_key("client_secret"), "{form:?}");
        assert!(
            reqs[0].headers.get("authorization").is_none(),
            "no HTTP Basic auth either"
        );

        let jwt = &form["client_assertion"];
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{alg}: header.claims.signature");
        let head = decode_part(parts[0]);
        assert_eq!(head["alg"], alg);
        assert_eq!(head["typ"], "JWT");
        assert_eq!(head[thumbprint_header], json!(thumbprint), "{head}");
        let other = if thumbprint_header == "x5t" {
            "x5t#S256"
        } else {
            "x5t"
        };
        assert!(head.get(other).is_none(), "{head}");

        let claims = decode_part(parts[1]);
        assert_eq!(claims["aud"], format!("{}{TOKEN_PATH}", t.entra.uri()));
        assert_eq!(claims["iss"], CLIENT_ID);
        assert_eq!(claims["sub"], CLIENT_ID);
        assert!(
            claims["jti"]
                .as_str()
                .is_some_and(|j| j.parse::<uuid::Uuid>().is_ok()),
            "{claims}"
        );
        let (nbf, iat, exp) = (
            claims["nbf"].as_i64().unwrap(),
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(nbf >= before - 1 && nbf <= now_secs() + 1, "nbf is now");
        assert_eq!(iat, nbf);
        assert!(
            exp > nbf && exp - nbf <= 600,
            "at most 10 minutes: {claims}"
        );

        // Verified with the certificate's public key, by webpki, not by our code.
        let cert = CertificateDer::from_pem_file(fixture("client-cert.pem")).unwrap();
        let cert = webpki::EndEntityCert::try_from(&cert).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        cert.verify_signature(verifier, signed.as_bytes(), &signature)
            .unwrap_or_else(|e| panic!("{alg} signature does not verify: {e:?}"));
        let tampered = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(b"{}"));
        assert!(
            cert.verify_signature(verifier, tampered.as_bytes(), &signature)
                .is_err()
        );
    }
}

#[tokio::test]
async fn each_assertion_is_new_and_a_refused_certificate_blocks_the_organization() {
    let t = TestApp::spawn_with(TestConfig {
        credential: Some(format!(
            "method = \"certificate\"\ncertificate_file = \"{}\"",
            fixture("client-combined.pem").display(),
        )),
        ..TestConfig::default()
    })
    .await;
    // 300 s of life is inside the refresh margin: every delivery asks again.
    on_token_request()
        .respond_with(token_ok("short", 300))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&t.entra)
        .await;
    on_token_request()
        .respond_with(entra_error(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ))
        .with_priority(2)
        .mount(&t.entra)
        .await;
    mount_created(&t.dataverse).await;
    for _ in 0..2 {
        let id = t.accept_lead(&next_lead()).await;
        assert_eq!(t.deliver_due().await, 1);
        t.delivery_in(id, DeliveryStatus::Delivered).await;
    }
    let id = t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(d.blocked, "a refused certificate blocks the organization");
    assert_eq!(d.attempts, 1, "a blocked organization's lead waits");
    let err = d.last_error.unwrap_or_default();
    assert!(
        err.starts_with("organization blocked: ")
            && err.contains("invalid_client")
            && err.contains("AADSTS700027"),
        "{err}"
    );

    let assertions: Vec<String> = t
        .token_requests()
        .await
        .iter()
        .map(|r| form_fields(&r.body)["client_assertion"].clone())
        .collect();
    assert_eq!(assertions.len(), 3);
    assert!(!err.contains(&assertions[2]), "no assertion in errors");
    let jtis: Vec<Value> = assertions
        .iter()
        .map(|a| decode_part(a.split('.').nth(1).unwrap())["jti"].clone())
        .collect();
    assert!(
        jtis[0] != jtis[1] && jtis[1] != jtis[2] && jtis[0] != jtis[2],
        "{jtis:?}"
    );
}

#[tokio::test]
async fn workload_identity_reads_the_rotated_token_file_for_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-token-one\n").unwrap();
    let t = TestApp::spawn_with(TestConfig {
        credential: Some(format!(
            "method = \"workload_identity\"\nfederated_token_file = \"{}\"",
            token_file.display()
        )),
        max_attempts: 50,
        ..TestConfig::retry_at_once()
    })
    .await;
    // Inside the refresh margin: each delivery needs a new token.
    on_token_request()
        .respond_with(token_ok("wi-token", 300))
        .mount(&t.entra)
        .await;
    mount_created(&t.dataverse).await;

    let first = t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(first, DeliveryStatus::Delivered).await;
    // The kubelet rotates the projected token by replacing the file.
    let fresh = dir.path().join(".new-token");
    std::fs::write(&fresh, "federated-token-two").unwrap();
    std::fs::rename(&fresh, &token_file).unwrap();
    let second = t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(second, DeliveryStatus::Delivered).await;

    let reqs = t.token_requests().await;
    assert_eq!(reqs.len(), 2);
    let forms: Vec<_> = reqs.iter().map(|r| form_fields(&r.body)).collect();
    for f in &forms {
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["client_id"], CLIENT_ID);
        assert_eq!(f["client_assertion_type"], JWT_BEARER);
        assert!(!f.contains_key("client_secret"));
    }
    assert_eq!(forms[0]["client_assertion"], "federated-token-one");
    assert_eq!(forms[1]["client_assertion"], "federated-token-two");

    // An unreadable token file is a temporary problem with a clear message.
    std::fs::remove_file(&token_file).unwrap();
    let third = t.accept_lead(&next_lead()).await;
    // One pass: its retry is due at once, but the file is not back yet.
    assert_eq!(t.run_worker_once().await, 1);
    let d = t.delivery_in(third, DeliveryStatus::Retrying).await;
    let err = d.last_error.unwrap_or_default();
    assert!(
        err.contains("federated token file") && err.contains("azure-identity-token"),
        "{err}"
    );
    std::fs::write(&token_file, "federated-token-three").unwrap();
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(third, DeliveryStatus::Delivered).await;
    let reqs = t.token_requests().await;
    assert_eq!(
        form_fields(&reqs.last().unwrap().body)["client_assertion"],
        "federated-token-three"
    );
}

const IMDS_PATH: &str = "/metadata/identity/oauth2/token";

/// Managed identity, with the Entra fake standing in for IMDS.
fn managed_identity() -> TestConfig {
    TestConfig {
        credential: Some(format!(
            "method = \"managed_identity\"\nimds_endpoint = \"{{entra}}{IMDS_PATH}\""
        )),
        ..TestConfig::default()
    }
}

#[tokio::test]
async fn managed_identity_asks_imds_and_reads_expires_in_as_a_string() {
    let t = TestApp::spawn_with(managed_identity()).await;
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .and(header("metadata", "true"))
        .and(query_param("api-version", "2018-02-01"))
        .and(query_param("resource", t.dataverse.uri()))
        .and(query_param("client_id", CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "mi-token",
            "client_id": CLIENT_ID,
            "expires_in": "3599",
            "expires_on": (now_secs() + 3599).to_string(),
            "ext_expires_in": "3599",
            "not_before": now_secs().to_string(),
            "resource": t.dataverse.uri(),
            "token_type": "Bearer",
        })))
        .mount(&t.entra)
        .await;
    on_lead_create()
        .and(header("authorization", "Bearer mi-token"))
        .respond_with(FakeDataverse::new(&t.dataverse))
        .mount(&t.dataverse)
        .await;
    for _ in 0..2 {
        let id = t.accept_lead(&next_lead()).await;
        assert_eq!(t.deliver_due().await, 1);
        t.delivery_in(id, DeliveryStatus::Delivered).await;
    }
    let reqs = requests_to(&t.entra, IMDS_PATH).await;
    // Read as 3599 s, the token serves both leads; misread, it would be
    // fetched again for the second.
    assert_eq!(reqs.len(), 1, "the token is cached for its lifetime");
    assert_eq!(reqs[0].headers["metadata"], "true");
    let query: std::collections::HashMap<_, _> = reqs[0].url.query_pairs().into_owned().collect();
    assert_eq!(query["resource"], t.dataverse.uri());
    assert!(t.token_requests().await.is_empty());
}

#[tokio::test]
async fn managed_identity_errors_are_classified() {
    let t = TestApp::spawn_with(TestConfig {
        backoff: RETRY_AT_ONCE,
        ..managed_identity()
    })
    .await;
    // IMDS answers 404 while it updates itself: retried.
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.entra)
        .await;
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": "Identity not found",
        })))
        .with_priority(2)
        .mount(&t.entra)
        .await;
    let id = t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 2);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert_eq!(d.attempts, 2, "404 retried; 400 blocks the organization");
    assert!(d.blocked);
    let err = d.last_error.unwrap_or_default();
    assert!(
        err.contains("invalid_request") && err.contains("Identity not found"),
        "{err}"
    );
    assert!(t.create_requests().await.is_empty());
}
