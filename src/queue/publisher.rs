//! Publishing with publisher confirms: a message counts as sent only once the broker said it
//! has it (persisted, for durable queues), and `mandatory` makes an unroutable message come back
//! as an error instead of vanishing.

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::FieldTable,
    BasicProperties, Channel,
};

use std::time::Duration;

use super::{bounded, QueueError};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

pub struct Publisher {
    channel: Channel,
    /// The longest a batch may wait for its confirms (the relay holds row locks meanwhile).
    timeout: Duration,
}

impl Publisher {
    /// Puts the channel in confirm mode (all later publishes on it are confirmed).
    pub async fn new(channel: Channel, timeout: Duration) -> Result<Self, QueueError> {
        bounded(timeout, channel.confirm_select(ConfirmSelectOptions::default())).await?;
        Ok(Self { channel, timeout })
    }

    /// Sends persistent JSON messages and waits until the broker confirmed every one of them,
    /// for at most the publisher's timeout ([`QueueError::Timeout`]: then nothing counts as
    /// sent, and the caller tries again later). The messages are all sent before the first
    /// confirm is awaited (one round trip for many).
    pub async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[(String, Vec<u8>)],
    ) -> Result<(), QueueError> {
        bounded(self.timeout, self.publish_all(exchange, routing_key, messages)).await
    }

    /// Messages ready in `queue` (not yet delivered to a consumer), as the broker counts them.
    pub async fn ready(&self, queue: &str) -> Result<u32, QueueError> {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let queue =
            bounded(self.timeout, self.channel.queue_declare(queue.into(), passive, FieldTable::default())).await?;
        Ok(queue.message_count())
    }

    async fn publish_all(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[(String, Vec<u8>)],
    ) -> Result<(), QueueError> {
        let mut confirms = Vec::with_capacity(messages.len());
        for (message_id, body) in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type("application/json".into())
                .with_message_id(message_id.as_str().into());
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    body,
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await?;
            if confirmation.is_nack() {
                return Err(QueueError::NotConfirmed("nacked"));
            }
            if confirmation.take_message().is_some() {
                return Err(QueueError::NotConfirmed("unroutable"));
            }
        }
        Ok(())
    }
}
