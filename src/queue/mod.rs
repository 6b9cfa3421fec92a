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

use crate::config::Config;

/// Routing key of validation jobs on the main exchange.
pub const VALIDATE_ROUTING_KEY: &str = "validate";

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
    /// Test isolation: queues are removed after this long unused.
    pub expires_ms: Option<u32>,
}

impl Topology {
    pub fn new(prefix: &str, retry_delays_ms: &[u32], expires_ms: Option<u32>) -> Self {
        let mut delays = retry_delays_ms.to_vec();
        delays.sort_unstable();
        delays.dedup();
        Self {
            exchange: prefix.to_owned(),
            dead_exchange: format!("{prefix}.dead"),
            work_queue: format!("{prefix}.validate"),
            dead_queue: format!("{prefix}.validate.dead"),
            retry_queues: delays.into_iter().map(|ms| (format!("{prefix}.validate.retry.{ms}"), ms)).collect(),
            expires_ms,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.queue_prefix, &config.job_retry_delays_ms, config.queue_expires_ms)
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

    fn queue_args(&self, extra: &[(&str, AMQPValue)]) -> FieldTable {
        let mut args = FieldTable::default();
        for (key, value) in extra {
            args.insert(ShortString::from(*key), value.clone());
        }
        if let Some(ms) = self.expires_ms {
            args.insert("x-expires".into(), AMQPValue::LongUInt(ms));
        }
        args
    }

    /// Declares everything; idempotent (same names, same arguments). Run at every start, so
    /// a fresh broker needs no manual setup, and `rabbitmq/definitions.json` is for operators.
    pub async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(self.exchange.as_str().into(), ExchangeKind::Direct, durable, FieldTable::default())
            .await?;
        channel
            .exchange_declare(self.dead_exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;

        let queue = QueueDeclareOptions { durable: true, ..Default::default() };
        let dead_letter_to = |exchange: &str| ("x-dead-letter-exchange", long_string(exchange));
        channel
            .queue_declare(
                self.work_queue.as_str().into(),
                queue,
                self.queue_args(&[dead_letter_to(&self.dead_exchange)]),
            )
            .await?;
        channel
            .queue_bind(
                self.work_queue.as_str().into(),
                self.exchange.as_str().into(),
                VALIDATE_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.queue_declare(self.dead_queue.as_str().into(), queue, self.queue_args(&[])).await?;
        channel
            .queue_bind(
                self.dead_queue.as_str().into(),
                self.dead_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for (name, delay_ms) in &self.retry_queues {
            let args = self.queue_args(&[
                ("x-message-ttl", AMQPValue::LongUInt(*delay_ms)),
                dead_letter_to(&self.exchange),
                ("x-dead-letter-routing-key", long_string(VALIDATE_ROUTING_KEY)),
            ]);
            channel.queue_declare(name.as_str().into(), queue, args).await?;
        }
        Ok(())
    }

    /// The same topology as a RabbitMQ definitions document (`rabbitmqctl import_definitions`);
    /// a test checks that `rabbitmq/definitions.json` is exactly this for the default prefix.
    pub fn definitions(&self) -> serde_json::Value {
        use serde_json::json;
        let mut queues = vec![
            json!({ "name": self.work_queue, "vhost": "/", "durable": true, "auto_delete": false,
                    "arguments": { "x-dead-letter-exchange": self.dead_exchange } }),
            json!({ "name": self.dead_queue, "vhost": "/", "durable": true, "auto_delete": false, "arguments": {} }),
        ];
        for (name, delay_ms) in &self.retry_queues {
            queues.push(json!({ "name": name, "vhost": "/", "durable": true, "auto_delete": false,
                "arguments": { "x-message-ttl": delay_ms, "x-dead-letter-exchange": self.exchange,
                               "x-dead-letter-routing-key": VALIDATE_ROUTING_KEY } }));
        }
        json!({
            "exchanges": [
                { "name": self.exchange, "vhost": "/", "type": "direct", "durable": true, "auto_delete": false, "internal": false, "arguments": {} },
                { "name": self.dead_exchange, "vhost": "/", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {} }
            ],
            "queues": queues,
            "bindings": [
                { "source": self.exchange, "vhost": "/", "destination": self.work_queue, "destination_type": "queue", "routing_key": VALIDATE_ROUTING_KEY, "arguments": {} },
                { "source": self.dead_exchange, "vhost": "/", "destination": self.dead_queue, "destination_type": "queue", "routing_key": "", "arguments": {} }
            ]
        })
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
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

    /// `rabbitmq/definitions.json` (for operators and `make run`) is the topology the binary
    /// declares, for the default configuration. Regenerate with UPDATE_DEFINITIONS=1.
    #[test]
    fn the_definitions_file_matches_the_declared_topology() {
        let defaults = Config::from_args(["tenant-files", "--queue-prefix=tenant_files"]).unwrap();
        let expected = Topology::new(&defaults.queue_prefix, &defaults.job_retry_delays_ms, None).definitions();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rabbitmq/definitions.json");
        if std::env::var_os("UPDATE_DEFINITIONS").is_some() {
            std::fs::write(path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
        }
        let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(committed, expected, "rabbitmq/definitions.json is stale: run with UPDATE_DEFINITIONS=1");
    }

    #[test]
    fn each_retry_delay_has_its_own_queue_and_unknown_delays_use_the_longest() {
        let topology = Topology::new("p", &[500, 100, 500], None);
        assert_eq!(
            topology.retry_queues,
            [("p.validate.retry.100".to_owned(), 100), ("p.validate.retry.500".to_owned(), 500)]
        );
        assert_eq!(topology.retry_queue(100), "p.validate.retry.100");
        assert_eq!(topology.retry_queue(7), "p.validate.retry.500");
    }
}
