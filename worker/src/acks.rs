//! Acknowledgements, batched off the job's slot.
//!
//! A delivery is acknowledged only once its job's outcome is durable; after that, nothing about
//! the job waits on the ack, so a run's slot is given back at once and the ack is handed to one
//! task that acknowledges whatever has gathered meanwhile in one `XACK` and `XDEL` per stream. A
//! worker dying before it does leaves those entries pending, as a worker dying between settle
//! and ack always did: whoever takes them over finds the job finished and acknowledges them.

use std::time::Instant;

use shoal_jobs::{with_retries, Delivery, ShardQueue};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::phases::{observe, Phase};

/// Acknowledged in one go at most; a batch this large means Redis is the slow part.
const MAX_BATCH: usize = 256;

/// Hands settled deliveries to the task acknowledging them.
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    settled: mpsc::UnboundedSender<Delivery>,
}

impl Acks {
    /// Starts the task acknowledging on `queue`; it ends, every delivery handed to it
    /// acknowledged (or given up on), once every [`Acks`] is dropped.
    pub(crate) fn start(queue: ShardQueue) -> (Acks, JoinHandle<()>) {
        let (settled, received) = mpsc::unbounded_channel();
        (Acks { settled }, tokio::spawn(acknowledge(queue, received)))
    }

    /// Acknowledges `delivery`, whose job's outcome is durable, soon.
    pub(crate) fn settled(&self, delivery: Delivery) {
        // Unbounded, yet bounded by the jobs that settle: each gives one and is gone.
        if self.settled.send(delivery).is_err() {
            warn!("the acknowledging task has stopped; the entry stays pending and is taken over");
        }
    }
}

/// Acknowledges what arrives on `received`, all that has gathered at once, until it closes.
async fn acknowledge(queue: ShardQueue, mut received: mpsc::UnboundedReceiver<Delivery>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while received.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        if let Err(e) = with_retries("ack", || queue.ack_many(&batch)).await {
            warn!(count = batch.len(), error = %e, "ack failed; the entries stay pending until taken over, which finds their jobs finished");
        }
        observe(Phase::Ack, started.elapsed());
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_jobs::{keys, Fsync, RedisServer, ShardReader};

    use super::*;

    #[tokio::test]
    async fn every_delivery_handed_over_is_acknowledged_before_the_task_ends() {
        let dir = tempfile::tempdir().unwrap();
        let server = RedisServer::start(&dir.path().join("redis"), Fsync::EverySec).unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let queue = ShardQueue::new(client.get_connection_manager().await.unwrap());
        queue.ensure_groups(2).await.unwrap();
        for i in 0..40 {
            queue.enqueue(i % 2, &format!("job-{i}")).await.unwrap();
        }
        let mut reader = ShardReader::connect(&client, &[0, 1], "w1", Duration::from_millis(200)).await.unwrap();
        let deliveries = reader.next(64).await.unwrap();
        assert_eq!(deliveries.len(), 40);

        let (acks, acker) = Acks::start(queue.clone());
        // Handed over from many tasks at once, as settling runs do, then every handle dropped.
        let handing: Vec<_> = deliveries
            .into_iter()
            .map(|delivery| {
                let acks = acks.clone();
                tokio::spawn(async move { acks.settled(delivery) })
            })
            .collect();
        drop(acks);
        for task in handing {
            task.await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), acker).await.expect("the task ends").unwrap();

        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for shard in [0, 1] {
            let pending: redis::streams::StreamPendingReply =
                redis::AsyncCommands::xpending(&mut conn, keys::shard_stream(shard), keys::WORKER_GROUP).await.unwrap();
            assert_eq!((pending.count(), queue.len(shard).await.unwrap()), (0, 0), "shard {shard}");
        }
    }
}
