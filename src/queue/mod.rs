//! RabbitMQ: names, topology, connections and a confirming publisher. Nothing here knows what a
//! job means; see `worker` for that.
//!
//! Topology (every name starts with the configured prefix, default `tenant_files`):
//!
//! ```text
//! exchange {p} (direct) --"validate"--> queue {p}.validate  (x-dead-letter-exchange {p}.dead)
//!                                            | reject(requeue=false): malformed or exhausted
//!                                            v
//! exchange {p}.dead (fanout) ---------> queue {p}.validate.dead   (inspect / replay by hand)
//!
//! default exchange --"{p}.validate.retry.{ms}"--> queue {p}.validate.retry.{ms}
//!     (x-message-ttl {ms}, then dead-lettered to exchange {p} with key "validate": back to work)
//! ```
//!
//! One retry queue per delay: TTLs in a single queue only expire at its head, so mixing delays
//! in one queue would hold short retries behind long ones.
//!
//! Webhook deliveries (#27) have their own lane:
//!
//! ```text
//! exchange {p} --"webhook"--> queue {p}.webhook  (x-dead-letter-exchange {p}.webhook.dead)
//!                                  | reject(requeue=false): malformed
//!                                  v
//! exchange {p}.webhook.dead (fanout) --> queue {p}.webhook.dead
//! ```
//!
//! A failed delivery's next attempt is scheduled in the database (`due_at`, up to hours away),
//! and the relay publishes it again when it is due: no TTL queue holds a message for a day.

mod monitor;
mod publisher;

use std::time::Duration;

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};

pub use monitor::BrokerStatus;
pub use publisher::Publisher;

use crate::config::{Config, QueueType};

/// Routing key of validation jobs on the main exchange.
pub const VALIDATE_ROUTING_KEY: &str = "validate";

/// Routing key of webhook deliveries on the main exchange.
pub const WEBHOOK_ROUTING_KEY: &str = "webhook";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker operation failed")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm the message ({0})")]
    NotConfirmed(&'static str),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// Awaits a broker operation for at most `timeout`.
pub async fn bounded<T, E: Into<QueueError>>(
    timeout: Duration,
    operation: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(QueueError::Timeout(timeout)),
    }
}

/// Every exchange and queue name and argument, derived from the prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub exchange: String,
    pub dead_exchange: String,
    pub work_queue: String,
    pub dead_queue: String,
    /// `(queue name, delay in ms)`, one per configured retry delay.
    pub retry_queues: Vec<(String, u32)>,
    pub webhook_queue: String,
    pub webhook_dead_exchange: String,
    pub webhook_dead_queue: String,
    pub queue_type: QueueType,
    /// Test isolation: queues are removed after this long unused.
    pub expires_ms: Option<u32>,
}

/// A queue argument's value: the two kinds this topology uses.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Number(u32),
}

impl Topology {
    pub fn new(prefix: &str, retry_delays_ms: &[u32], queue_type: QueueType, expires_ms: Option<u32>) -> Self {
        let mut delays = retry_delays_ms.to_vec();
        delays.sort_unstable();
        delays.dedup();
        Self {
            exchange: prefix.to_owned(),
            dead_exchange: format!("{prefix}.dead"),
            work_queue: format!("{prefix}.validate"),
            dead_queue: format!("{prefix}.validate.dead"),
            retry_queues: delays.into_iter().map(|ms| (format!("{prefix}.validate.retry.{ms}"), ms)).collect(),
            webhook_queue: format!("{prefix}.webhook"),
            webhook_dead_exchange: format!("{prefix}.webhook.dead"),
            webhook_dead_queue: format!("{prefix}.webhook.dead"),
            queue_type,
            expires_ms,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(
            &config.broker.queue_prefix,
            &config.worker.job_retry_delays_ms,
            config.broker.queue_type,
            config.broker.queue_expires_ms,
        )
    }

    /// The retry queue for a delay (the configured delay list is looked up by the caller).
    pub fn retry_queue(&self, delay_ms: u32) -> &str {
        self.retry_queues
            .iter()
            .find(|(_, ms)| *ms == delay_ms)
            .or(self.retry_queues.last())
            .map(|(name, _)| name.as_str())
            .unwrap_or(&self.work_queue)
    }

    /// Every queue with its arguments: the one source for [`Topology::declare`] and
    /// [`Topology::definitions`].
    fn queues(&self) -> Vec<(&str, Vec<(&'static str, Arg)>)> {
        let text = |value: &str| Arg::Text(value.to_owned());
        let mut queues = vec![
            (self.work_queue.as_str(), self.typed(true, vec![("x-dead-letter-exchange", text(&self.dead_exchange))])),
            (self.dead_queue.as_str(), self.typed(false, vec![])),
        ];
        for (name, delay_ms) in &self.retry_queues {
            let args = vec![
                ("x-message-ttl", Arg::Number(*delay_ms)),
                ("x-dead-letter-exchange", text(&self.exchange)),
                ("x-dead-letter-routing-key", text(VALIDATE_ROUTING_KEY)),
            ];
            queues.push((name.as_str(), self.typed(true, args)));
        }
        let webhook_dead = vec![("x-dead-letter-exchange", text(&self.webhook_dead_exchange))];
        queues.push((self.webhook_queue.as_str(), self.typed(true, webhook_dead)));
        queues.push((self.webhook_dead_queue.as_str(), self.typed(false, vec![])));
        queues
    }

    /// Adds what the queue type needs. Quorum queues dead-letter at most once by default (a
    /// message is dropped if its dead-letter target is unavailable at that moment); ours carry
    /// jobs and retries through dead-lettering, so they do it at least once, which RabbitMQ
    /// allows only with `reject-publish` overflow.
    fn typed(&self, dead_letters: bool, mut args: Vec<(&'static str, Arg)>) -> Vec<(&'static str, Arg)> {
        if self.queue_type == QueueType::Quorum {
            args.push(("x-queue-type", Arg::Text("quorum".into())));
            if dead_letters {
                args.push(("x-dead-letter-strategy", Arg::Text("at-least-once".into())));
                args.push(("x-overflow", Arg::Text("reject-publish".into())));
            }
        }
        args
    }

    /// Declares everything; idempotent (same names, same arguments). Run at every start, so
    /// a fresh broker needs no manual setup, and `rabbitmq/definitions.json` is for operators.
    pub async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        for (name, kind) in self.exchanges() {
            let kind = if kind == "direct" { ExchangeKind::Direct } else { ExchangeKind::Fanout };
            channel.exchange_declare(name.into(), kind, durable, FieldTable::default()).await?;
        }
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        for (name, args) in self.queues() {
            let mut table = FieldTable::default();
            for (key, value) in args {
                let value = match value {
                    Arg::Text(text) => AMQPValue::LongString(LongString::from(text)),
                    Arg::Number(number) => AMQPValue::LongUInt(number),
                };
                table.insert(ShortString::from(key), value);
            }
            if let Some(ms) = self.expires_ms {
                table.insert("x-expires".into(), AMQPValue::LongUInt(ms));
            }
            channel.queue_declare(name.into(), durable, table).await?;
        }
        for (queue, exchange, routing_key) in self.bindings() {
            channel
                .queue_bind(
                    queue.into(),
                    exchange.into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// `(name, type)` of every exchange.
    fn exchanges(&self) -> [(&str, &'static str); 3] {
        [(&self.exchange, "direct"), (&self.dead_exchange, "fanout"), (&self.webhook_dead_exchange, "fanout")]
    }

    /// `(queue, exchange, routing key)`: jobs and deliveries to their queues, dead letters to theirs.
    fn bindings(&self) -> [(&str, &str, &str); 4] {
        [
            (&self.work_queue, &self.exchange, VALIDATE_ROUTING_KEY),
            (&self.dead_queue, &self.dead_exchange, ""),
            (&self.webhook_queue, &self.exchange, WEBHOOK_ROUTING_KEY),
            (&self.webhook_dead_queue, &self.webhook_dead_exchange, ""),
        ]
    }

    /// The same topology as a RabbitMQ definitions document (`rabbitmqctl import_definitions`);
    /// a test checks that `rabbitmq/definitions.json` (classic) and
    /// `rabbitmq/definitions.quorum.json` are exactly this for the default prefix.
    pub fn definitions(&self) -> serde_json::Value {
        use serde_json::json;
        let queues: Vec<serde_json::Value> = self
            .queues()
            .into_iter()
            .map(|(name, args)| {
                let arguments: serde_json::Map<String, serde_json::Value> = args
                    .into_iter()
                    .map(|(key, value)| {
                        let value = match value {
                            Arg::Text(text) => json!(text),
                            Arg::Number(number) => json!(number),
                        };
                        (key.to_owned(), value)
                    })
                    .collect();
                json!({ "name": name, "vhost": "/", "durable": true, "auto_delete": false, "arguments": arguments })
            })
            .collect();
        let bindings: Vec<serde_json::Value> = self
            .bindings()
            .into_iter()
            .map(|(queue, exchange, routing_key)| {
                json!({ "source": exchange, "vhost": "/", "destination": queue, "destination_type": "queue",
                        "routing_key": routing_key, "arguments": {} })
            })
            .collect();
        let exchanges: Vec<serde_json::Value> = self
            .exchanges()
            .into_iter()
            .map(|(name, kind)| {
                json!({ "name": name, "vhost": "/", "type": kind, "durable": true, "auto_delete": false,
                        "internal": false, "arguments": {} })
            })
            .collect();
        json!({
            "exchanges": exchanges,
            "queues": queues,
            "bindings": bindings
        })
    }
}

/// Opens a connection and declares the topology on a first channel, which is returned; gives
/// up after `timeout` (a broker that accepts TCP but never answers would hang it otherwise).
pub async fn connect(
    url: &str,
    topology: &Topology,
    name: &str,
    timeout: Duration,
) -> Result<(Connection, Channel), QueueError> {
    bounded(timeout, async {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(url, properties).await?;
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        Ok::<_, QueueError>((connection, channel))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rabbitmq/definitions.json` (for operators and `make run`) and its quorum twin are the
    /// topology the binary declares, for the default configuration. Regenerate with
    /// UPDATE_DEFINITIONS=1.
    #[test]
    fn the_definitions_files_match_the_declared_topology() {
        for (queue_type, file) in [("classic", "definitions.json"), ("quorum", "definitions.quorum.json")] {
            let config = Config::from_args(["tenant-files", &format!("--queue-type={queue_type}")]).unwrap();
            let expected = Topology::from_config(&config).definitions();
            let path = format!("{}/rabbitmq/{file}", env!("CARGO_MANIFEST_DIR"));
            if std::env::var_os("UPDATE_DEFINITIONS").is_some() {
                std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
            }
            let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(committed, expected, "rabbitmq/{file} is stale: run with UPDATE_DEFINITIONS=1");
        }
    }

    #[test]
    fn each_retry_delay_has_its_own_queue_and_unknown_delays_use_the_longest() {
        let topology = Topology::new("p", &[500, 100, 500], QueueType::Classic, None);
        assert_eq!(
            topology.retry_queues,
            [("p.validate.retry.100".to_owned(), 100), ("p.validate.retry.500".to_owned(), 500)]
        );
        assert_eq!(topology.retry_queue(100), "p.validate.retry.100");
        assert_eq!(topology.retry_queue(7), "p.validate.retry.500");
    }
}
