//! A webhook receiver on loopback (`tests/webhooks/receiver.py`) that verifies every delivery
//! with the Standard Webhooks reference library: the signature check is theirs, not ours.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub struct Receiver {
    pub port: u16,
    client: reqwest::Client,
    _process: Child,
}

impl Receiver {
    pub async fn start() -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut process = Command::new(root.join(".dev/venv/bin/python"))
            .arg(root.join("tests/webhooks/receiver.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the webhook receiver (make test-tools installs standardwebhooks)");
        let stdout = process.stdout.take().expect("receiver stdout");
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).await.expect("the receiver's port");
        let port = first.trim().parse().unwrap_or_else(|_| panic!("the receiver printed {first:?}, not its port"));
        Self { port, client: reqwest::Client::new(), _process: process }
    }

    /// Where deliveries to `path` arrive.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn control(&self, key: &str, value: Value) {
        let url = self.url(&format!("/_control/{key}"));
        let response = self.client.put(url).json(&value).send().await.expect("receiver control");
        assert!(response.status().is_success());
    }

    /// The secrets a signature may verify with (`verified_with` names them by index).
    pub async fn trust(&self, secrets: &[&str]) {
        self.control("secrets", json!(secrets)).await;
    }

    /// The statuses to answer the next deliveries with, in order (then 200).
    pub async fn answer(&self, statuses: &[u16]) {
        self.control("responses", json!(statuses)).await;
    }

    /// How long to wait before answering each delivery.
    pub async fn delay(&self, seconds: f64) {
        self.control("delay", json!(seconds)).await;
    }

    /// Every delivery so far, oldest first: `webhook_id`, `verified_with`, `payload`, `answered`...
    pub async fn received(&self) -> Vec<Value> {
        let response = self.client.get(self.url("/_control/received")).send().await.expect("receiver");
        response.json().await.expect("received deliveries")
    }

    /// Waits until `count` deliveries arrived and returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        super::eventually(&format!("{count} deliveries arrive"), || async {
            let received = self.received().await;
            (received.len() >= count).then_some(received)
        })
        .await
    }
}
