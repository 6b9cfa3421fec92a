//! The worker and the broker, as tests drive and inspect them.

use serde_json::Value;
use tenant_files::config::Config;
use uuid::Uuid;

use super::*;

/// A worker running in this test process (for tests about the running worker: retries with
/// their delays, sweeps, outages), told to stop when dropped. Tests about what a job does use
/// `drain_jobs` instead.
pub struct RunningWorker {
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestApp {
    pub fn start_worker(&self) -> RunningWorker {
        self.start_worker_with(self.config.clone())
    }

    pub fn start_worker_with(&self, config: Config) -> RunningWorker {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(tenant_files::worker::run_worker_until_stopped(config, stop.clone(), self.metrics.clone()));
        RunningWorker { stop }
    }

    /// Publishes the outbox and processes every waiting job, as a worker would, then returns how
    /// many it processed: for tests about what a job does, not about the running worker.
    pub async fn drain_jobs(&self) -> usize {
        tenant_files::worker::drain(self.config.clone(), self.metrics.clone()).await.expect("drain")
    }

    /// Polls the file's detail until its status is `status` and returns it.
    pub async fn wait_for_status(&self, user: &TestUser, id: &str, status: &str) -> Value {
        let what = format!("file {id} becomes {status}");
        eventually(&what, || async {
            let detail: Value = user.get_file(id).await.json().await.expect("detail");
            (detail["status"] == status).then_some(detail)
        })
        .await
    }

    /// A channel on the test broker, for publishing forged messages and counting queues.
    pub async fn broker(&self) -> (lapin::Connection, lapin::Channel) {
        let connection = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("test broker is up");
        let channel = connection.create_channel().await.expect("channel");
        (connection, channel)
    }

    pub fn topology(&self) -> tenant_files::queue::Topology {
        tenant_files::queue::Topology::from_config(&self.config)
    }

    /// Messages waiting (not delivered) in a queue of this test.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let (_connection, channel) = self.broker().await;
        let queue = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists");
        queue.message_count()
    }

    /// Publishes a raw body onto the work queue, as anyone with broker access could.
    pub async fn publish_raw(&self, body: &[u8]) {
        let (_connection, channel) = self.broker().await;
        let topology = self.topology();
        topology.declare(&channel).await.expect("declare");
        let publisher =
            tenant_files::queue::Publisher::new(channel, std::time::Duration::from_secs(10)).await.expect("publisher");
        publisher
            .publish_confirmed(
                &topology.exchange,
                tenant_files::queue::VALIDATE_ROUTING_KEY,
                &[(Uuid::new_v4().to_string(), body.to_vec())],
            )
            .await
            .expect("publish");
    }

    /// Removes a file's outbox job, as if the message had been lost after upload.
    pub async fn lose_job(&self, file_id: &str) {
        self.superuser()
            .await
            .execute("delete from app.outbox where file_id = $1::text::uuid", &[&file_id])
            .await
            .expect("delete outbox row");
    }
}
