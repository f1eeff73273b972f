//! The backend seam. The CLI and the IDE daemon hold a `dyn Backend` and never know which one.
//!
//! | backend    | lanes live in                   | versions run as                  | routing by                 |
//! |------------|---------------------------------|----------------------------------|----------------------------|
//! | local      | a state file (the agent owns it)| processes under the agent        | the embedded router        |
//! | consul     | Consul KV `<prefix>-lane/lanes` | registered `<prefix>-lane.*`     | lane-aware resolvers       |
//! | kubernetes | `Lane` custom resources         | Deployments labelled by lane     | Istio VirtualService merge |
//!
//! **Architecture invariant:** every operation either completes or leaves nothing behind, whoever
//! goes away. Dropping a deploy's future before its version is live cancels it and undoes what it
//! made; once the version is live the deploy completes and reports it. Every other operation,
//! once the backend has accepted it, completes even when its caller disconnects.

use std::time::Duration;

use async_trait::async_trait;
use lane_core::{Lane, LaneId, LaneRef};
use tokio::sync::mpsc;

use crate::error::Result;
use crate::ids::Revision;
use crate::types::{
    AssignRequest, CreateLane, DeleteLane, DeployRequest, ExtendLane, GcReport, InstanceView,
    LaneView, Progress, Status,
};

/// A sender for progress events. Dropping the receiver does not cancel the operation; dropping
/// the operation's future does.
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

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
    /// lane when missing. Rolls back on failure or when the future is dropped.
    async fn deploy(&self, req: DeployRequest, progress: ProgressTx) -> Result<InstanceView>;

    /// Runs the baseline versions of the given services (manifests with their repo dirs).
    async fn baseline_up(
        &self,
        services: Vec<DeployRequest>,
        progress: ProgressTx,
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
}

/// Finds a lane in a status, or says which lanes exist.
pub fn find_lane<'a>(status: &'a Status, id: &LaneId) -> Option<&'a LaneView> {
    status.lanes.iter().find(|l| &l.lane.id == id)
}
