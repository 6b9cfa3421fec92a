//! Sends one signed delivery to an endpoint, and only to a public address: the host is resolved
//! by our resolver, which refuses loopback, private, link-local and metadata addresses (unless
//! WEBHOOK_ALLOW_PRIVATE), at every connection, so a name that changes its answer after the
//! endpoint was created (DNS rebinding) is refused at delivery; an address written in the URL
//! is checked before sending. No redirects are followed, no proxy from the environment is
//! used, and an answer's body is read only up to a small cap.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::signature::{sign, Secret};
use crate::domain::{is_public, WebhookUrl};

/// The most bytes of an answer read (the first 200 characters go to the delivery's last error).
const MAX_RESPONSE_BYTES: usize = 4096;

/// What went out and how it ended.
#[derive(Debug)]
pub struct Attempt {
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// Why it is not a success, when it is not.
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }

    /// An attempt that failed before (or instead of) an answer.
    pub fn failed(why: impl Into<String>) -> Self {
        Self { status: None, error: Some(why.into()) }
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    rule: Destinations,
}

/// Which addresses a delivery may go to, and how long resolving a name may take.
#[derive(Clone, Copy)]
struct Destinations {
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("tenant-files-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PublicOnly(Destinations { allow_private, timeout })))
            .build()?;
        Ok(Self { client, rule: Destinations { allow_private, timeout } })
    }

    /// Where `url` resolves now, refused unless every address is public (or private ones are
    /// allowed): the check at creation. The same rule holds at every delivery.
    pub async fn check_destination(&self, url: &WebhookUrl) -> Result<(), String> {
        self.rule.resolve(url.as_url()).await.map(|_| ())
    }

    /// Posts `body` signed by each of `secrets` under `message_id`; any 2xx within the timeout
    /// is a success.
    pub async fn send(&self, url: &WebhookUrl, secrets: &[&Secret], message_id: &str, body: Vec<u8>) -> Attempt {
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.as_url().host() {
            // An address in the URL never reaches the resolver.
            if let Err(why) = self.rule.resolve(url.as_url()).await {
                return Attempt::failed(why);
            }
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(secrets, message_id, timestamp, &body);
        let sent = self
            .client
            .post(url.as_url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::failed(describe(e)),
        };
        let status = response.status();
        let answer = read_capped(response).await;
        let error = if status.is_success() {
            None
        } else if status.is_redirection() {
            Some(format!("answered {status}: redirects are not followed"))
        } else {
            let answer = String::from_utf8_lossy(&answer);
            let answer: String = answer.chars().take(200).collect();
            Some(format!("answered {status}: {answer}").trim_end_matches([' ', ':']).to_owned())
        };
        Attempt { status: Some(status.as_u16()), error }
    }
}

/// At most [`MAX_RESPONSE_BYTES`] of the answer; the rest is never read (the connection is
/// dropped with the response).
async fn read_capped(response: reqwest::Response) -> Vec<u8> {
    let mut body = response.bytes_stream();
    let mut kept = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        let room = MAX_RESPONSE_BYTES - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() == MAX_RESPONSE_BYTES {
            break;
        }
    }
    kept
}

/// The error's chain in one line, without the URL (it is already the endpoint's).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Destinations {
    /// The addresses `url` reaches, refused unless all are allowed.
    async fn resolve(self, url: &url::Url) -> Result<Vec<SocketAddr>, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let lookup = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} took longer than {:?}", self.timeout))?;
        let addrs: Vec<SocketAddr> = lookup.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
        if addrs.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        if !self.allow_private {
            // The address itself is not said: a tenant's admin could map the internal network
            // by naming hosts and reading the answers.
            if addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to a loopback, private, link-local or reserved address \
                     (allowed only with WEBHOOK_ALLOW_PRIVATE)"
                ));
            }
        }
        Ok(addrs)
    }
}

/// The resolver every delivery's connection goes through.
struct PublicOnly(Destinations);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let rule = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let url = url::Url::parse(&format!("https://{host}/")).map_err(|e| e.to_string())?;
            let addrs: Addrs = Box::new(rule.resolve(&url).await?.into_iter());
            Ok(addrs)
        })
    }
}
