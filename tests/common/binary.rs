//! The `leadbridge` binary as a child process: one command builder that
//! keeps the test's own environment out of the child, verbs run to
//! completion, and `serve` running beside the test.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `leadbridge` without the test's `RUST_LOG`, `LEADBRIDGE_CONFIG` or any
/// `LEADBRIDGE__*`: the child sees only what the test sets on the command.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leadbridge"));
    c.env_remove("RUST_LOG").env_remove("LEADBRIDGE_CONFIG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEADBRIDGE__") {
            c.env_remove(k);
        }
    }
    c
}

/// Output of a finished run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` to completion off the async runtime, so that the fakes and
/// the application in this process keep answering it.
pub async fn run(mut cmd: Command) -> Run {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("leadbridge runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `leadbridge <args>` to completion.
pub async fn run_binary(args: &[&str]) -> Run {
    let mut c = command();
    c.args(args);
    run(c).await
}

/// `leadbridge <args> --config <config>` to completion.
pub async fn run_with_config(config: &Path, args: &[&str]) -> Run {
    let mut c = command();
    c.args(args).arg("--config").arg(config);
    run(c).await
}

/// `leadbridge serve` as a child process, every line it writes collected.
pub struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    http: reqwest::Client,
    /// `http://<public listener>`.
    pub base: String,
    /// `http://<admin listener>`.
    pub admin: String,
}

impl Served {
    /// `serve --config config` (which must log JSON), once it listens and
    /// answers `/healthz`.
    pub async fn start(config: &Path) -> Self {
        let mut c = command();
        c.args(["serve", "--config"]).arg(config);
        Self::spawn(c).await
    }

    /// Starts `cmd`, a `serve` command from [`command`] with whatever the
    /// test adds, and waits until it listens and answers `/healthz`.
    pub async fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let readers = [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ]
        .into_iter()
        .map(|stream| {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
        })
        .collect();
        let mut me = Self {
            child,
            lines,
            readers,
            http: reqwest::Client::new(),
            base: String::new(),
            admin: String::new(),
        };
        let ready = me
            .wait_for_log(
                |v| v["message"] == "leadbridge listening",
                Duration::from_secs(30),
            )
            .await;
        me.base = format!("http://{}", ready["addr"].as_str().expect("addr"));
        me.admin = format!(
            "http://{}",
            ready["admin_addr"].as_str().expect("admin_addr")
        );
        me.wait_healthy(Duration::from_secs(20)).await;
        me
    }

    pub fn lead_url(&self, org: &str, code: &str) -> String {
        super::lead_url(&self.base, org, code)
    }

    /// Posts a lead for `contoso` with its right secret.
    pub async fn post_lead(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let url = self.lead_url("contoso", super::SECRET);
        super::post_lead_to(&self.http, &url, body)
            .send()
            .await
            .expect("request sent")
    }

    /// Every line written so far, stdout and stderr.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The first JSON log line matching `pred`.
    pub async fn wait_for_log(&mut self, pred: impl Fn(&Value) -> bool, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| pred(v));
            if let Some(v) = found {
                return v;
            }
            if let Some(status) = self.exited() {
                panic!("serve exited with {status}:\n{}", self.lines().join("\n"));
            }
            if Instant::now() > deadline {
                panic!(
                    "no such log line within {within:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_healthy(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.exited() {
                panic!("serve exited with {status}:\n{}", self.lines().join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "leadbridge did not become healthy:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status once the process has finished (within
    /// 15 s) and everything it wrote has been read.
    pub async fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() > deadline {
                panic!(
                    "serve still running 15 s after SIGTERM:\n{}",
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        // The pipes are closed: the readers finish with the last lines.
        for reader in self.readers.drain(..) {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        status
    }

    /// SIGTERM, wait for the process to finish, and return everything it wrote.
    pub async fn stop(mut self) -> Vec<String> {
        self.terminate().await;
        self.lines()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}
