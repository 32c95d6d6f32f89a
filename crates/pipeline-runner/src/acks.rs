//! The runner's acks, gathered: every delivery that finishes while an ack call is on its way
//! is acked by the next call, all in one script (`ack_many`).
//!
//! One ack per message costs Redis a script call and both ends a round trip each; under
//! load most of the work of a no-op message is that call. Gathering needs no timer and adds
//! no wait: a lone ack goes out at once, and only acks that arrive while one is in flight
//! are held, for as long as that call takes.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use work_queue::{AckOutcome, Delivery, WorkQueue};

/// Most acks one call carries (the queue's own script batch).
const MAX_GATHERED: usize = work_queue::MAX_BATCH;

/// An ack's outcome, or why the call failed.
pub(crate) type AckResult = Result<AckOutcome, String>;

type Request = (Delivery, oneshot::Sender<AckResult>);

/// Sends acks to a background task that gathers them; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Acker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Acker {
    /// Starts the gathering task for `queue`; it ends when every [`Acker`] is dropped and
    /// the acks sent before are done.
    pub(crate) fn start(queue: WorkQueue) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, tokio::spawn(gather(queue, rx)))
    }

    /// Acks `delivery` with whichever call goes out next.
    pub(crate) async fn ack(&self, delivery: Delivery) -> AckResult {
        let (done, outcome) = oneshot::channel();
        if self.tx.send((delivery, done)).is_err() {
            return Err(closed());
        }
        outcome.await.unwrap_or_else(|_| Err(closed()))
    }
}

fn closed() -> String {
    "the ack task has stopped".to_owned()
}

async fn gather(queue: WorkQueue, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while rx.recv_many(&mut batch, MAX_GATHERED).await > 0 {
        let deliveries: Vec<&Delivery> = batch.iter().map(|(d, _)| d).collect();
        match queue.ack_many(&deliveries).await {
            Ok(outcomes) => {
                for ((_, done), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = done.send(Ok(outcome));
                }
            }
            Err(err) => {
                // The error is not Clone: every waiter gets its text, with the cause chain.
                let text = error_chain(&err);
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(text.clone()));
                }
            }
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
