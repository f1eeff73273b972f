//! The `Lane` custom resource, `lane.dev/v1alpha1` (`docs/contracts.md`, "Names other systems
//! see").
//!
//! A Lane's `metadata.name` is its lane id. Its spec says who owns it, which lane it is stacked on,
//! when it expires and which personal versions it runs; its status is written by the operator. The
//! CRD that `kubectl apply` installs, `deploy/crd.yaml`, is generated from these types
//! ([`crd_yaml`]) and a test fails when the checked-in file differs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every lane resource.
pub const GROUP: &str = "lane.dev";
/// The label that carries a lane id on lane workloads (`lane.dev/lane=<id>`), and `baseline` on
/// baseline pods.
pub const LANE_LABEL: &str = "lane.dev/lane";
/// Condition type: every personal version of the lane has its replicas ready.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: every service of the lane is routed (its host has the operator's
/// VirtualService and DestinationRule, no conflict).
pub const CONDITION_ROUTED: &str = "Routed";

/// The command that rewrites `deploy/crd.yaml`; named in the drift test's failure message.
pub const REGENERATE_CRD: &str = "cargo run -p lane-kube --bin lane-kube-crd > deploy/crd.yaml";

/// A lane: personal versions of some services, reached by requests that carry the lane id in the
/// lane header or the `lane` baggage entry, falling back through the parent lane to baseline.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lane.dev",
    version = "v1alpha1",
    kind = "Lane",
    plural = "lanes",
    singular = "lane",
    shortname = "ln",
    namespaced,
    status = "LaneStatus",
    derive = "PartialEq",
    doc = "A lane (swimlane): personal versions of services, reached by requests that carry the lane id; metadata.name is the lane id.",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(name = "Services", type_ = "integer", json_path = ".status.services"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyServices"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expires"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LaneSpec {
    /// Who owns the lane (an email or login); only the owner changes it unless forced.
    pub owner: String,
    /// The lane this one is stacked on: requests fall back to it before baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 40))]
    pub parent: Option<String>,
    /// When the lane expires (RFC 3339). An expired lane gets no routes and no Deployments.
    pub expires: Time,
    /// The personal versions, by service id `<app>.<proc>` (the Kubernetes Service `<proc>` in
    /// namespace `<app>`).
    #[serde(default)]
    pub services: BTreeMap<String, LaneService>,
    /// What the lane owns of its data sources, provisioned by `lane deploy` from the developer's
    /// machine (docs/data.md): one entry per binding. The operator does not read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<LaneData>,
}

/// One data binding a lane holds its own copy of.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneData {
    /// `mysql`, `redis`, `kafka` or `apollo`.
    pub kind: String,
    /// The binding's name in lane.toml (`[data.<name>]`).
    pub name: String,
    /// The lane's copy: database `<db>__lane_<id>`, a Redis database index, cluster `lane-<id>`.
    pub target: String,
}

/// One personal version: the baseline Deployment of the service with another image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneService {
    /// The image to run.
    pub image: String,
    /// The container whose image is replaced; the pod's first container when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Human version label, `<branch>@<short commit>[+dirty]`.
    pub version: String,
    /// The branch it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Environment variables set on that container (replacing the baseline's of the same name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Replicas of the personal version; 1 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LanePhase>,
    /// Standard conditions; types `Ready` and `Routed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Personal versions in the spec.
    #[serde(default)]
    pub services: i32,
    /// Personal versions whose replicas are all ready.
    #[serde(default)]
    pub ready_services: i32,
    /// When the lane expires, as the operator applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
    /// The routes the operator's VirtualServices give this lane's requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<LaneRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Where the lane's requests to one service go.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct LaneRoute {
    /// Service id `<app>.<proc>`.
    pub service: String,
    /// The VirtualService host, `<proc>.<app>.svc.cluster.local`.
    pub host: String,
    /// The lane whose version serves them (this lane or one of its parents).
    pub lane: String,
    /// The DestinationRule subset, `lane-<id>`.
    pub subset: String,
}

/// The lane's phase, for `kubectl get lanes`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LanePhase {
    /// Personal versions are starting.
    Pending,
    /// Every personal version is ready and routed.
    Ready,
    /// Something needs attention; the conditions say what.
    Degraded,
    /// Past `spec.expires`: no routes, Deployments removed.
    Expired,
}

/// The CustomResourceDefinition generated from [`Lane`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    Lane::crd()
}

/// `deploy/crd.yaml`: the CRD as YAML, with a header naming the command that regenerates it.
pub fn crd_yaml() -> String {
    crate::yaml::crd_file(&crd(), "lane_kube::crd::Lane", REGENERATE_CRD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_columns() {
        let crd = serde_json::to_value(crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "lanes.lane.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "ln");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Owner", "Parent", "Services", "Ready", "Phase", "Expires", "Age"
            ]
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(required, ["expires", "owner"]);
    }

    /// `deploy/crd.yaml` is what the types generate.
    #[test]
    fn checked_in_crd_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crd.yaml");
        let want = crd_yaml();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &want).unwrap();
            return;
        }
        let got = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "deploy/crd.yaml differs from the CRD the Lane type generates; rewrite it with\n  \
             {REGENERATE_CRD}\n(or UPDATE_GOLDEN=1 cargo test -p lane-kube) and review the diff"
        );
    }

    #[test]
    fn lanes_round_trip() {
        let yaml_like = serde_json::json!({
            "apiVersion": "lane.dev/v1alpha1",
            "kind": "Lane",
            "metadata": {"name": "feature-x", "namespace": "lanes"},
            "spec": {
                "owner": "alice@example.com",
                "parent": "team",
                "expires": "2026-01-02T03:04:05Z",
                "services": {"shop.cart": {"image": "cart:pr-1", "version": "feat@0123abcd",
                                            "env": {"A": "1"}, "replicas": 2}}
            },
            "status": {
                "phase": "Ready", "services": 1, "readyServices": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "AllReady",
                                "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                "routes": [{"service": "shop.cart", "host": "cart.shop.svc.cluster.local",
                            "lane": "team", "subset": "lane-team"}]
            }
        });
        let lane: Lane = serde_json::from_value(yaml_like.clone()).unwrap();
        assert_eq!(lane.spec.parent.as_deref(), Some("team"));
        assert_eq!(lane.spec.expires.0.as_second(), 1_767_323_045);
        let status = lane.status.as_ref().unwrap();
        assert_eq!(status.phase, Some(LanePhase::Ready));
        assert_eq!(status.conditions[0].type_, CONDITION_READY);
        assert_eq!(status.routes[0].subset, "lane-team");
        assert_eq!(serde_json::to_value(&lane).unwrap(), yaml_like);
    }
}
