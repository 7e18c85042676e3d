//! Acknowledgements, batched off the job's slot.
//!
//! On a single Redis node the script that stores a job's outcome acknowledges its delivery too
//! ([`shoal_jobs::JobStore::finish_delivered`]); what is left comes here: entries settled
//! otherwise (found finished, a fan-out's) and every one on a cluster, where a job's record and
//! its stream are in different slots.
//!
//! A delivery is acknowledged only once its job's outcome is durable; after that, nothing about
//! the job waits on the ack, so a run's slot is given back at once and the ack is handed to one
//! task that acknowledges whatever has gathered meanwhile in one `XACK` and `XDEL` per stream. A
//! worker dying before it does leaves those entries pending, as a worker dying between settle
//! and ack always did: whoever takes them over finds the job finished and acknowledges them.
//!
//! The delivery stays in the worker's in-flight set until its ack is done, so re-reading the
//! worker's own pending entries meanwhile does not start it again.

use std::time::{Duration, Instant};

use shoal_jobs::{with_retries, Delivery, ShardQueue};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::phases::{observe, Phase};
use crate::serve::InFlight;

/// Acknowledged in one go at most; a batch this large means Redis is the slow part.
const MAX_BATCH: usize = 256;

/// Hands settled deliveries to the task acknowledging them.
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    settled: mpsc::UnboundedSender<Delivery>,
}

/// The task acknowledging, to be closed when the worker stops.
pub(crate) struct Acker {
    close: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Acks {
    /// Starts the task acknowledging on `queue`, which takes each delivery out of `in_flight`
    /// once acknowledged (or given up on).
    pub(crate) fn start(queue: ShardQueue, in_flight: InFlight) -> (Acks, Acker) {
        let (settled, received) = mpsc::unbounded_channel();
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(acknowledge(queue, in_flight, received, closed));
        (Acks { settled }, Acker { close, task })
    }

    /// Acknowledges `delivery`, whose job's outcome is durable, soon; false if the task is
    /// closed (the entry stays pending, to be taken over).
    pub(crate) fn settled(&self, delivery: Delivery) -> bool {
        // Unbounded, yet bounded by the jobs that settle: each gives one and is gone.
        let sent = self.settled.send(delivery).is_ok();
        if !sent {
            warn!("the acknowledging task has stopped; the entry stays pending and is taken over");
        }
        sent
    }
}

impl Acker {
    /// Acknowledges what was handed over until now, refusing anything later (left pending, to
    /// be taken over), and ends; waits at most `limit` for it.
    pub(crate) async fn close(self, limit: Duration) {
        self.close.send(()).ok();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            warn!("acknowledging settled jobs outlasted the drain; their entries are taken over and found finished");
        }
    }
}

/// Acknowledges what arrives on `received`, all that has gathered at once, until `closed`; then
/// what had arrived by then.
async fn acknowledge(
    queue: ShardQueue,
    in_flight: InFlight,
    mut received: mpsc::UnboundedReceiver<Delivery>,
    mut closed: oneshot::Receiver<()>,
) {
    let (mut batch, mut closing) = (Vec::with_capacity(MAX_BATCH), false);
    loop {
        tokio::select! {
            biased;
            // Closed, or the `Acker` dropped (its worker loop ended early).
            _ = &mut closed, if !closing => {
                closing = true;
                received.close();
            }
            gathered = received.recv_many(&mut batch, MAX_BATCH) => {
                if gathered == 0 {
                    return;
                }
                let started = Instant::now();
                if let Err(e) = with_retries("ack", || queue.ack_many(&batch)).await {
                    warn!(count = batch.len(), error = %e, "ack failed; the entries stay pending until taken over, which finds their jobs finished");
                }
                observe(Phase::Ack, started.elapsed());
                let mut running = in_flight.lock().expect("in-flight set is never poisoned");
                for delivery in batch.drain(..) {
                    running.remove(&(delivery.shard, delivery.entry));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_jobs::{keys, Fsync, RedisServer, ShardReader};

    use super::*;

    #[tokio::test]
    async fn what_is_handed_over_before_the_close_is_acknowledged_and_leaves_the_in_flight_set() {
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

        let in_flight = InFlight::default();
        in_flight
            .lock()
            .unwrap()
            .extend(deliveries.iter().map(|d| ((d.shard, d.entry.clone()), (d.clone(), Default::default()))));
        let (acks, acker) = Acks::start(queue.clone(), in_flight.clone());
        // Handed over from many tasks at once, as settling runs do; a handle is still held when
        // the task is closed, as by a run waiting for content when the worker stops.
        let handing: Vec<_> = deliveries
            .into_iter()
            .map(|delivery| {
                let acks = acks.clone();
                tokio::spawn(async move { assert!(acks.settled(delivery)) })
            })
            .collect();
        for task in handing {
            task.await.unwrap();
        }
        let closing = tokio::time::timeout(Duration::from_secs(10), acker.close(Duration::from_secs(10)));
        closing.await.expect("closed without waiting for the handle still held");
        assert!(in_flight.lock().unwrap().is_empty(), "each taken out of the in-flight set once acknowledged");
        // Handed over after the close: refused, left pending for whoever takes it over.
        queue.enqueue(0, "late").await.unwrap();
        let late = reader.next(4).await.unwrap();
        assert_eq!(late.len(), 1);
        assert!(!acks.settled(late[0].clone()), "refused");

        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for (shard, left) in [(0, 1), (1, 0)] {
            let pending: redis::streams::StreamPendingReply =
                redis::AsyncCommands::xpending(&mut conn, keys::shard_stream(shard), keys::WORKER_GROUP).await.unwrap();
            assert_eq!((pending.count(), queue.len(shard).await.unwrap()), (left, left as u64), "shard {shard}");
        }
    }
}
