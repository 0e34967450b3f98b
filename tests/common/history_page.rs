//! A client of the delivery history page that behaves like a browser where
//! it matters (its own cookie, `Origin` on POSTs, no automatic redirects),
//! and leads and histories to show on it.

use std::time::Duration;

use leadbridge::ids::LeadId;
use leadbridge::lead::OrgName;
use leadbridge::store::{Destination, NewLead, Store};
use time::OffsetDateTime;

/// The history page as a browser with its own session cookie sees it.
pub struct PageClient {
    pub http: reqwest::Client,
    /// `http://<admin listener>`.
    pub base: String,
    /// `leadbridge_session=…` once logged in.
    pub cookie: Option<String>,
}

impl PageClient {
    pub fn new(admin: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: admin.to_owned(),
            cookie: None,
        }
    }

    /// Posts the login form; on success keeps the session cookie.
    pub async fn login(&mut self, token: &str) -> reqwest::Response {
        let r = self
            .post_from(Some(&self.base.clone()), "/login", &[("token", token)])
            .await;
        if let Some(set) = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        r
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("page answers")
    }

    /// Status and body of a GET.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// A form POST from a page of this site.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_from(Some(&self.base.clone()), path, fields).await
    }

    /// A form POST claiming to come from `origin` (`None`: no Origin header).
    pub async fn post_from(
        &self,
        origin: Option<&str>,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("accept", "text/html")
            .form(fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("page answers")
    }

    /// The session's CSRF token, read from the list's forms.
    pub async fn csrf(&self) -> String {
        let (status, body) = self.page("/").await;
        assert_eq!(status, 200, "{body}");
        csrf_in(&body).expect("a CSRF token in the page")
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    let rest = html.get(at..)?;
    Some(rest.get(..rest.find('"')?)?.to_owned())
}

/// A marketplace lead about `email` at `company`.
pub fn lead_json(email: &str, company: &str) -> String {
    serde_json::json!({
        "UserDetails": {
            "FirstName": "Some", "LastName": "One", "Email": email,
            "Phone": "16175555555", "Country": "USA", "Company": company, "Title": "Buyer"
        },
        "LeadSource": "AzureMarketplace",
        "ActionCode": "INS",
        "OfferTitle": "Test Microsoft",
        "Description": "A lead for the history page"
    })
    .to_string()
}

/// Stores `n` leads straight through the store, one a second back from
/// now, every tenth for `fabrikam`, the rest for `contoso`: a long history
/// in seconds rather than minutes.
pub async fn fill_history(store: &dyn Store, n: usize) {
    const BATCH: usize = 1000;
    let now = OffsetDateTime::now_utc();
    let contoso = OrgName::parse("contoso").expect("name");
    let fabrikam = OrgName::parse("fabrikam").expect("name");
    let mut i = 0;
    while i < n {
        let batch: Vec<NewLead> = (i..n.min(i + BATCH))
            .map(|k| {
                let email = format!("person{k}@example{}.com", k % 97);
                NewLead {
                    id: LeadId::generate(),
                    org: if k % 10 == 0 {
                        fabrikam.clone()
                    } else {
                        contoso.clone()
                    },
                    received_at: now - Duration::from_secs(k as u64),
                    request_id: format!("fill-{k}"),
                    is_test: false,
                    payload: lead_json(&email, &format!("Company {}", k % 1000)),
                    fingerprint: format!("fill-{k}"),
                    destinations: vec![Destination::Dataverse],
                }
            })
            .collect();
        store.insert_leads(&batch, None).await.expect("stored");
        i += BATCH;
    }
}
