//! Execution slots: the worker loop reads no more deliveries than it has free slots, and each
//! delivery holds one while it runs. A delivery that only waits for content no source has yet
//! gives its slot back for the wait ([`released`]), so jobs naming content that never comes do
//! not keep a worker from jobs whose content is at hand; how many may wait so at once is
//! bounded ([`crate::WorkerConfig::max_waiting_for_content`]), beyond which they wait holding
//! their slot.
//!
//! The slot travels with the delivery's task (a task-local) rather than through
//! [`crate::Execute::execute`], so executors that never wait for content (the simulation, the
//! adversaries) need not know of it, and a run outside the worker loop (the verifier's) has none.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    /// The slot of the delivery the current task runs.
    static SLOT: Arc<Slot>;
}

/// The slot one delivery holds, and where to take one again after giving it back.
pub(crate) struct Slot {
    /// The worker's slots.
    slots: Arc<Semaphore>,
    /// Places for deliveries waiting for content without a slot.
    waiting: Arc<Semaphore>,
    /// The slot, while held.
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    /// Runs `delivery` holding `permit`, one of `slots`; it may wait for content in one of the
    /// `waiting` places instead. The slot is given back when `delivery` completes.
    pub(crate) fn hold<F: Future>(
        permit: OwnedSemaphorePermit,
        slots: Arc<Semaphore>,
        waiting: Arc<Semaphore>,
        delivery: F,
    ) -> impl Future<Output = F::Output> {
        let slot = Arc::new(Slot { slots, waiting, held: Mutex::new(Some(permit)) });
        SLOT.scope(slot, delivery)
    }
}

/// Runs `wait` without the current delivery's slot, when it has one and a waiting place is
/// free; then takes a slot again (waiting for one if need be) before returning. Outside a
/// delivery, or with every waiting place taken, `wait` runs as it is.
pub(crate) async fn released<F: Future>(wait: F) -> F::Output {
    let Ok(slot) = SLOT.try_with(Arc::clone) else { return wait.await };
    let Ok(place) = slot.waiting.clone().try_acquire_owned() else { return wait.await };
    drop(slot.held.lock().expect("slot lock is never poisoned").take());
    let output = wait.await;
    let permit = slot.slots.clone().acquire_owned().await.expect("the slots are never closed");
    *slot.held.lock().expect("slot lock is never poisoned") = Some(permit);
    // The place is kept until the slot is back: a delivery queueing for a slot again still
    // counts among the waiting, so a worker never holds more deliveries than its slots and
    // waiting places together.
    drop(place);
    output
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiting_delivery_lends_its_slot_and_takes_one_back() {
        let slots = Arc::new(Semaphore::new(1));
        let waiting = Arc::new(Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let (observed_tx, observed) = tokio::sync::oneshot::channel();
        let watcher = slots.clone();
        let delivery = Slot::hold(permit, slots.clone(), waiting.clone(), async move {
            let during = watcher.clone();
            released(async move {
                // While it waits, the slot is free for another delivery.
                observed_tx.send(during.available_permits()).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            })
            .await;
            watcher.available_permits()
        });
        let held_after = delivery.await;
        assert_eq!(observed.await.unwrap(), 1, "the slot is free while the delivery waits");
        assert_eq!(held_after, 0, "the delivery holds a slot again once the wait is over");
        assert_eq!(slots.available_permits(), 1, "and gives it back when it completes");
        assert_eq!(waiting.available_permits(), 1);
    }

    #[tokio::test]
    async fn with_no_waiting_place_or_outside_a_delivery_the_wait_keeps_the_slot() {
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let watcher = slots.clone();
        let no_place = Arc::new(Semaphore::new(0));
        let during = Slot::hold(permit, slots.clone(), no_place, async move {
            released(async move { watcher.available_permits() }).await
        })
        .await;
        assert_eq!(during, 0);
        assert_eq!(released(async { 7 }).await, 7);
    }
}
