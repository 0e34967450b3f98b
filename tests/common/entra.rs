//! A fake of the Entra ID v2.0 token endpoint: the answers and error bodies
//! the real service sends. Needs nothing else from `tests/common`, so that
//! `benches/drain.rs` can include it too.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const CLIENT_SECRET: &str = "client-secret-value-do-not-log";
pub const TOKEN_PATH: &str = "/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token";
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-access-token.sig";

/// A mock of `POST …/oauth2/v2.0/token`, still to be given its answer.
pub fn on_token_request() -> MockBuilder {
    Mock::given(method("POST")).and(path(TOKEN_PATH))
}

/// The body of a successful client-credentials answer.
pub fn token_body(token: &str, expires_in: u64) -> Value {
    json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    })
}

/// A successful client-credentials answer.
pub fn token_ok(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_body(token, expires_in))
}

/// An Entra error body as the v2.0 endpoint sends it.
pub fn entra_error(status: u16, error: &str, code: u32, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description}\r\nTrace ID: 0f1c2d3e-0000-4000-8000-000000000000\r\nCorrelation ID: 9a8b7c6d-0000-4000-8000-000000000000\r\nTimestamp: 2026-11-22 10:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2026-11-22 10:00:00Z",
        "trace_id": "0f1c2d3e-0000-4000-8000-000000000000",
        "correlation_id": "9a8b7c6d-0000-4000-8000-000000000000",
        "error_uri": "https://login.microsoftonline.com/error?code=".to_owned() + &code.to_string(),
    }))
}

/// Every token request answered with `token`, good for an hour.
pub async fn mount_token(server: &MockServer, token: &str) {
    on_token_request()
        .respond_with(token_ok(token, 3599))
        .mount(server)
        .await;
}
