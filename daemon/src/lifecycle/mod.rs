//! Task lifecycle: every long-lived task is spawned through [`Tasks::spawn`], which ties it
//! to the daemon's cancellation token and task tracker, so shutdown can signal every task and
//! wait for all of them.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The daemon's task set: a cancellation token every task watches and a tracker to wait on.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// A task set whose token is a child of `parent`: cancelling `parent` cancels every task.
    pub fn new(parent: &CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token: parent.child_token(),
        }
    }

    /// The token tasks watch; cancelled when shutdown begins.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a tracked task. The future must watch [`Self::token`] (or end by itself).
    pub fn spawn<F>(&self, name: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::trace!(task = name, "spawn");
        self.tracker.spawn(future);
    }

    /// Cancels every task.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Waits until every spawned task has ended. New tasks may not be spawned after this.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
