//! Just enough of the W3C WebDriver protocol to drive headless Chromium
//! through Debian's `chromedriver`: sessions, navigation, elements, clicks,
//! typing, text and screenshots. A few JSON requests over loopback with the
//! HTTP client the tests already use; the WebDriver crates bring a second
//! `http` and older ICU crates into the tree for the same handful of calls.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a step waits for the page it expects; CI machines are slower
/// and busier than a developer's.
const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// A `chromedriver` child process on a free loopback port, killed on drop.
pub struct Chromedriver {
    child: Child,
    pub url: String,
}

/// Where Debian puts the browser and its driver.
fn installed(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

impl Chromedriver {
    /// Starts chromedriver. Without Chromium installed: `None` on a
    /// developer's machine (the test says so and passes), a failure in CI
    /// (`CI` set), where `.ci/run` installs it.
    pub async fn start() -> Option<Self> {
        let driver = installed(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let browser = installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let (Some(driver), Some(_)) = (driver, browser) else {
            let why = "chromium and chromium-driver are not installed \
                       (apt-get install chromium chromium-driver)";
            if std::env::var_os("CI").is_some() {
                panic!("the browser test cannot run in CI: {why}");
            }
            eprintln!("browser test skipped: {why}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let me = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/status", me.url))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = ready
                && let Ok(v) = body.await
                && v["value"]["ready"] == true
            {
                return Some(me);
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks `probe` every [`POLL`] until it answers, for [`PATIENCE`] at most;
/// then fails the test, saying what it waited for.
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// One headless Chromium window.
pub struct Browser {
    http: reqwest::Client,
    /// `<driver>/session/<id>`.
    session: String,
}

impl Browser {
    pub async fn open(driver: &Chromedriver, width: u32, height: u32) -> Self {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", format!("--window-size={width},{height}")]
            }
        }}});
        let r: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .expect("session request")
            .json()
            .await
            .expect("session answer");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"));
        Self {
            session: format!("{}/session/{id}", driver.url),
            http,
        }
    }

    /// One WebDriver command; a WebDriver error comes back as its JSON
    /// `value` (`{"error": "stale element reference", ...}`).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("webdriver answers");
        let status = r.status();
        let v: Value = r.json().await.expect("webdriver JSON");
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The element matching the CSS selector, waiting a while for it to
    /// appear; fails the test if none does.
    pub async fn find(&self, css: &str) -> Element {
        let what = format!("an element {css:?} on the page");
        wait_for(&what, || async {
            self.find_all(css).await.into_iter().next()
        })
        .await
    }

    /// Within `parent`, the elements matching the CSS selector.
    pub async fn find_in(&self, parent: &Element, css: &str) -> Vec<Element> {
        let v = self
            .post(
                &format!("/element/{}/elements", parent.0),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clicks something that does not leave the page (an `<option>`).
    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Clicks a link or a submit button and waits for the next page: the
    /// clicked element goes stale once the old document is gone, then the
    /// new one loads. A click alone may answer while the browser is still
    /// between the two pages, where even `body` is missing.
    pub async fn click_and_wait(&self, e: &Element) {
        self.click(e).await;
        let tag = format!("/element/{}/name", e.0);
        wait_for("the click to leave the page", || async {
            match self.try_call(reqwest::Method::GET, &tag, None).await {
                Ok(_) => None,
                Err(v) => matches!(
                    v["error"].as_str(),
                    Some("stale element reference" | "no such element")
                )
                .then_some(()),
            }
        })
        .await;
        let ready = json!({"script": "return document.readyState", "args": []});
        wait_for("the next page to load", || async {
            let state = self
                .try_call(reqwest::Method::POST, "/execute/sync", Some(ready.clone()))
                .await;
            state.is_ok_and(|s| s == "complete").then_some(())
        })
        .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    /// The element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's text as a person reads it.
    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.text(&body).await
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
