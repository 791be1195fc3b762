//! Graceful shutdown, the mini-redis way: a watch channel tells every task to
//! stop, and every task holds a clone of an mpsc sender; when the last clone
//! is dropped, the receiver wakes up and shutdown is known to be complete.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Creates the signal and the means to wait for its completion.
pub struct ShutdownController {
    notify: watch::Sender<bool>,
    guard: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
}

/// What a task holds: it learns of the shutdown from it, and dropping it says
/// the task is done.
#[derive(Debug, Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    _guard: mpsc::Sender<()>,
}

impl ShutdownController {
    pub fn new() -> ShutdownController {
        let (notify, _) = watch::channel(false);
        let (guard, done) = mpsc::channel(1);
        ShutdownController { notify, guard: Some(guard), done }
    }

    /// A handle for a task; `None` once the controller has started waiting.
    pub fn handle(&self) -> Shutdown {
        let guard = match &self.guard {
            Some(g) => g.clone(),
            // Waiting already: a fresh, closed-over sender keeps the contract
            // (the task is told at once) without delaying the wait.
            None => mpsc::channel(1).0,
        };
        Shutdown { notify: self.notify.subscribe(), _guard: guard }
    }

    /// Tells every task to stop.
    pub fn trigger(&self) {
        self.notify.send_replace(true);
    }

    /// Waits until every [`Shutdown`] handle is dropped, at most `limit`.
    /// Returns false on timeout.
    pub async fn wait(&mut self, limit: Duration) -> bool {
        self.trigger();
        drop(self.guard.take());
        tokio::time::timeout(limit, self.done.recv()).await.is_ok()
    }
}

impl Default for ShutdownController {
    fn default() -> Self {
        ShutdownController::new()
    }
}

impl Shutdown {
    /// True once shutdown has been triggered.
    pub fn is_shutdown(&self) -> bool {
        *self.notify.borrow()
    }

    /// Resolves when shutdown is triggered (at once if it already was).
    pub async fn recv(&mut self) {
        // An error means the controller is gone, which is a shutdown too.
        let _ = self.notify.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_handle() {
        let mut c = ShutdownController::new();
        let mut h = c.handle();
        let task = tokio::spawn(async move {
            h.recv().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(h);
        });
        assert!(c.wait(Duration::from_secs(5)).await);
        task.await.unwrap();
        let mut late = c.handle();
        assert!(late.is_shutdown());
        late.recv().await;
    }

    #[tokio::test]
    async fn times_out_on_a_stuck_task() {
        let mut c = ShutdownController::new();
        let _stuck = c.handle();
        assert!(!c.wait(Duration::from_millis(20)).await);
    }
}
