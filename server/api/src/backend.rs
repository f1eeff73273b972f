//! The backend seam. The CLI and the IDE daemon hold a `dyn Backend` and never know which one.
//!
//! | backend    | lanes live in                   | versions run as                  | routing by                 |
//! |------------|---------------------------------|----------------------------------|----------------------------|
//! | local      | a state file (the agent owns it)| processes under the agent        | the embedded router        |
//! | consul     | Consul KV `<prefix>-lane/lanes` | registered `<prefix>-lane.*`     | lane-aware resolvers       |
//! | kubernetes | `Lane` custom resources         | Deployments labelled by lane     | Istio VirtualService merge |
//!
//! **Architecture invariant:** every operation either completes or leaves nothing behind, whoever
//! goes away. A deploy asked to stop (its [`Cancel`], or its future dropped) before its version is
//! live is rolled back; once the version is live the deploy completes, and a caller still waiting
//! is told it succeeded. Every other operation, once the backend has accepted it, completes even
//! when its caller disconnects.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lane_core::{Lane, LaneId, LaneRef};
use tokio::sync::{mpsc, watch};

use crate::error::{BackendError, Result};
use crate::ids::Revision;
use crate::types::{
    AssignRequest, BaselineSync, CreateLane, DeleteLane, DeployRequest, ExtendLane, GcReport,
    HistoryEntry, InstanceView, LaneView, Progress, Status,
};

/// A sender for progress events. Dropping the receiver does not cancel the operation; dropping
/// the operation's future does.
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

/// Asks an operation under way to stop (Ctrl-C, an IDE's cancel button), while its caller keeps
/// waiting for the outcome. Clones share one signal; cancelling twice is cancelling once.
///
/// A deploy that has not gone live when the signal arrives is rolled back and answers
/// [`BackendError::cancelled`](crate::BackendError::cancelled); one that is already live completes
/// and answers its instance. A caller that cannot wait may drop the future instead: the backend
/// then does the same, but nobody hears which way it went.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Cancel(Arc::new(watch::Sender::new(false)))
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Cancel::cancel`] has been called (at once if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: `wait_for` only returns once the value is true.
        let _ = rx.wait_for(|v| *v).await;
    }
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// `local`, `consul` or `kubernetes`.
    fn name(&self) -> &'static str;

    /// Lanes, instances, the active lane and traffic.
    async fn status(&self) -> Result<Status>;

    async fn create_lane(&self, req: CreateLane) -> Result<Lane>;

    /// Deletes a lane with everything it owns (instances, routes, data).
    async fn delete_lane(&self, req: DeleteLane) -> Result<()>;

    async fn extend_lane(&self, req: ExtendLane) -> Result<Lane>;

    /// Builds and runs a personal version, waits for health, registers and routes it. Creates the
    /// lane when missing. Rolls back on failure, on `cancel` and when the future is dropped, as long
    /// as the version is not live yet; once it is, completes (see [`Cancel`]).
    async fn deploy(
        &self,
        req: DeployRequest,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<InstanceView>;

    /// Runs the baseline versions of the given services (manifests with their repo dirs), one
    /// after the other, each as a deploy. When one fails or is cancelled, the ones already up stay
    /// up (running, routed) and the error names them and the ones not started.
    async fn baseline_up(
        &self,
        services: Vec<DeployRequest>,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<Vec<InstanceView>>;

    /// Moves a personal version between lanes.
    async fn assign(&self, req: AssignRequest) -> Result<()>;

    /// Sets the lane the developer's own requests enter (used by `lane proxy`).
    async fn switch(&self, lane: LaneRef) -> Result<()>;

    /// Reclaims expired lanes and anything orphaned.
    async fn gc(&self) -> Result<GcReport>;

    /// Waits until the backend's state differs from `since` (at once when `since` is `None`, the
    /// caller knowing none yet), or `timeout` passes; returns the revision then current. This is
    /// how status is pushed instead of polled.
    async fn wait_for_change(
        &self,
        since: Option<&Revision>,
        timeout: Duration,
    ) -> Result<Revision>;

    /// Checks now what production runs (fetching what must be fetched) and rolls baseline
    /// forward where it is behind; answers every followed service as it stands afterwards. What
    /// the backend also does on its own (a ref watch, the operator's reconcile), on demand:
    /// `lane baseline sync`.
    async fn baseline_sync(
        &self,
        _progress: ProgressTx,
        _cancel: Cancel,
    ) -> Result<Vec<BaselineSync>> {
        Err(BackendError::invalid(format!(
            "the {} backend does not follow production",
            self.name()
        )))
    }

    /// The history of lane `id`, oldest first: every change to it, kept for a while after the
    /// lane is deleted. A backend that keeps none says so.
    async fn history(&self, id: &LaneId) -> Result<Vec<HistoryEntry>> {
        Err(BackendError::invalid(format!(
            "the {} backend keeps no history of lane `{id}`",
            self.name()
        ))
        .with_help("the local backend keeps one: `lane history` works with --backend local"))
    }
}

/// Finds a lane in a status, or says which lanes exist.
pub fn find_lane<'a>(status: &'a Status, id: &LaneId) -> Option<&'a LaneView> {
    status.lanes.iter().find(|l| &l.lane.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_cancel_reaches_every_clone_and_later_waiters_too() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        assert!(!other.is_cancelled());
        let waiting = tokio::spawn({
            let c = other.clone();
            async move { c.cancelled().await }
        });
        cancel.cancel();
        cancel.cancel();
        waiting.await.unwrap();
        assert!(other.is_cancelled());
        // Already cancelled: resolves at once.
        other.cancelled().await;
    }
}
