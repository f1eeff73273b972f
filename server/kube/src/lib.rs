//! `lane-kube`: lanes on Kubernetes with Istio (scheme 2).
//!
//! - [`crd`]: the `Lane` custom resource (`lane.dev/v1alpha1`) and the CRD generated from it.
//! - [`plan`]: the pure decision from Lanes and the baseline objects to the Deployments,
//!   DestinationRules and VirtualServices the operator should make, with the conflicts it must
//!   report instead. Routing decisions come from `lane_core::RoutingTable`.
//!
//! - [`backend`]: the `kubernetes` backend, `lane_api::Backend` on a cluster's Lanes.
//!
//! No client and no clock in `crd` and `plan`: the controller around [`plan::desired`] reads the cluster and
//! passes `now`.

pub mod backend;
pub mod crd;
pub mod matching;
pub mod plan;
mod yaml;
