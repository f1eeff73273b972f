//! `lane-kube`: lanes on Kubernetes with Istio (scheme 2).
//!
//! - [`crd`]: the `Lane` custom resource (`lane.dev/v1alpha1`) and the CRD generated from it.
//! - [`plan`]: the pure decision from Lanes and the baseline objects to the Deployments,
//!   DestinationRules and VirtualServices the operator should make, with the conflicts it must
//!   report instead. Routing decisions come from `lane_core::RoutingTable`.
//!
//! - [`environment`]: the `LaneEnvironment` custom resource (baseline follows production) and
//!   the pure decision of which baseline images to set.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease, so one replica writes.
//! - [`operator`]: the thin controller around [`plan::desired`] (`lane operator`): watches,
//!   lists, applies, deletes, writes Lane statuses.
//! - [`backend`]: the `kubernetes` backend, `lane_api::Backend` on a cluster's Lanes.
//!
//! `crd` and `plan` have no client and no clock: the operator reads the cluster and passes `now`.

pub mod active;
pub mod backend;
pub mod crd;
pub mod environment;
pub mod lease;
pub mod matching;
pub mod operator;
pub mod plan;
pub mod route;
mod yaml;
