//! Baseline follows production: the `LaneEnvironment` custom resource (`lane.dev/v1alpha1`) and
//! the pure decision of what to change on each baseline Deployment ([`plan_sync`]).
//!
//! A LaneEnvironment lives in the namespace of the baseline it keeps in step (the namespace where
//! the services' baseline Deployments run, `<app>`), and names where production runs:
//! `spec.production.namespace`, a namespace of this cluster. For each baseline Deployment (those
//! named in `spec.deployments`, else every Deployment of the namespace the operator did not make)
//! the operator reads production's Deployment of the same name and sets the image of every
//! container of the baseline pod template that production has a container of the same name to
//! production's image, by server-side apply of only those fields (field manager `lane-operator`,
//! forced: it takes over the image fields and nothing else, so it does not fight the other
//! fields' managers). Its status says, per service: the drift, production's image, baseline's
//! image, the last sync and why when not in sync.
//!
//! Production in another cluster: `spec.production.kubeconfigSecret` names a Secret of the
//! LaneEnvironment's namespace holding a self-contained kubeconfig (key `kubeconfig`, optionally
//! `spec.production.context`); the operator lists production's Deployments through it (a client
//! made per pass) and needs `get` on that Secret.
//!
//! A sync on request: the annotation `lane.dev/sync-requested` (any value, e.g. a timestamp) makes
//! the next pass sync and copy the value to `status.observedSyncRequest` (`lane baseline sync`
//! sets it and waits for that).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::is_managed;

/// The annotation that asks the operator for a sync now; its value comes back in
/// `status.observedSyncRequest` once the operator has synced.
pub const SYNC_REQUEST_ANNOTATION: &str = "lane.dev/sync-requested";

/// The command that rewrites `deploy/environment-crd.yaml`; named in the drift test's message.
pub const REGENERATE_CRD: &str =
    "cargo run -p lane-kube --bin lane-kube-crd -- environment > deploy/environment-crd.yaml";

/// Where a namespace's baseline comes from: production's Deployments of the same names.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lane.dev",
    version = "v1alpha1",
    kind = "LaneEnvironment",
    plural = "laneenvironments",
    singular = "laneenvironment",
    shortname = "lenv",
    namespaced,
    status = "LaneEnvironmentStatus",
    derive = "PartialEq",
    doc = "The baseline of this namespace follows production: the lane operator keeps each baseline Deployment's container images equal to production's Deployment of the same name.",
    printcolumn(
        name = "Production",
        type_ = "string",
        json_path = ".spec.production.namespace"
    ),
    printcolumn(name = "Services", type_ = "integer", json_path = ".status.services"),
    printcolumn(name = "InSync", type_ = "integer", json_path = ".status.inSync"),
    printcolumn(name = "LastSync", type_ = "date", json_path = ".status.lastSync"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LaneEnvironmentSpec {
    /// Where production runs.
    pub production: Production,
    /// The baseline Deployments (of this namespace) that follow production, by name; every
    /// Deployment of the namespace that the lane operator did not make when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<String>,
}

/// Where production runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Production {
    /// The namespace production runs in (of this cluster, or of the cluster `kubeconfigSecret`
    /// reaches); production's Deployments have the baseline's names.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: String,
    /// Production in another cluster: a Secret in this LaneEnvironment's namespace whose key
    /// `kubeconfig` holds a self-contained kubeconfig (embedded certificates and credentials)
    /// that may list Deployments in `namespace` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<String>,
    /// The context of that kubeconfig; its current context when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl Production {
    /// What baseline follows, in words: `namespace prod` or `namespace prod (kubeconfig Secret
    /// shop/prod-cluster, context east)`.
    pub fn describe(&self, env_namespace: &str) -> String {
        match &self.kubeconfig_secret {
            None => format!("namespace {}", self.namespace),
            Some(secret) => format!(
                "namespace {} (kubeconfig Secret {env_namespace}/{secret}{})",
                self.namespace,
                self.context
                    .as_ref()
                    .map(|c| format!(", context {c}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The key of the kubeconfig in a `kubeconfigSecret`.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// What the operator last found and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneEnvironmentStatus {
    /// Baseline Deployments followed.
    #[serde(default)]
    pub services: i32,
    /// Of those, the ones running production's images.
    #[serde(default)]
    pub in_sync: i32,
    /// The latest `lastSync` of the services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// The value of the `lane.dev/sync-requested` annotation the operator last honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sync_request: Option<String>,
    /// Per baseline Deployment, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<ServiceSync>,
}

/// How one baseline Deployment stands against production's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSync {
    /// The baseline Deployment's name (the service `<namespace>.<name>`).
    pub deployment: String,
    pub drift: SyncDrift,
    /// Production's image(s): the image, or `container=image, …` for several containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_image: Option<String>,
    /// Baseline's image(s), the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_image: Option<String>,
    /// When baseline last ran production's images (found equal or rolled out to them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// Why, when not in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A baseline Deployment against production.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncDrift {
    /// Baseline runs production's images, rolled out.
    InSync,
    /// Baseline's images differ from production's (being set), or are set and still rolling out.
    Behind,
    /// Production's Deployment cannot be read (missing, not allowed, no common container).
    #[default]
    Unknown,
}

impl SyncDrift {
    /// The neutral drift of `lane_api`.
    pub fn to_api(self) -> lane_api::Drift {
        match self {
            SyncDrift::InSync => lane_api::Drift::InSync,
            SyncDrift::Behind => lane_api::Drift::Behind,
            SyncDrift::Unknown => lane_api::Drift::Unknown,
        }
    }
}

/// One write: set these containers' images on the baseline Deployment `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePatch {
    pub namespace: String,
    pub name: String,
    /// Container name → image.
    pub images: BTreeMap<String, String>,
}

impl ImagePatch {
    /// The server-side apply body: the Deployment's identity and the images, nothing else.
    pub fn apply_body(&self) -> serde_json::Value {
        let containers: Vec<serde_json::Value> = self
            .images
            .iter()
            .map(|(name, image)| serde_json::json!({"name": name, "image": image}))
            .collect();
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"template": {"spec": {"containers": containers}}},
        })
    }
}

/// What a pass does for one LaneEnvironment: the writes, and the status once they succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPlan {
    pub patches: Vec<ImagePatch>,
    pub status: LaneEnvironmentStatus,
}

fn images(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn describe(images: &BTreeMap<String, String>) -> Option<String> {
    match images.len() {
        0 => None,
        1 => images.values().next().cloned(),
        _ => Some(
            images
                .iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// Whether the Deployment controller has rolled out the Deployment's current spec: observed its
/// generation and updated every replica, all of them ready.
fn rolled_out(d: &Deployment) -> Result<(), String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = d.status.as_ref() else {
        return Err("rolling out production's images: no status yet".to_owned());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("rolling out production's images: not yet observed".to_owned());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    if updated < want || ready < want {
        return Err(format!(
            "rolling out production's images: {updated} of {want} replicas updated, {ready} ready"
        ));
    }
    Ok(())
}

/// The baseline Deployments `env` follows, from the Deployments of its namespace.
pub fn followed<'a>(env: &LaneEnvironment, deployments: &'a [Deployment]) -> Vec<&'a Deployment> {
    let ns = env.metadata.namespace.as_deref();
    let mut out: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == ns && !is_managed(&d.metadata))
        .filter(|d| {
            env.spec.deployments.is_empty()
                || d.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| env.spec.deployments.contains(n))
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The decision for one LaneEnvironment at `now` (seconds since the epoch): which baseline
/// Deployments get production's images, and the status to write once they have. `baseline` are
/// the Deployments of the environment's namespace; `production` those of the production
/// namespace, or why they cannot be read. Pure: no I/O, no clock.
pub fn plan_sync(
    env: &LaneEnvironment,
    baseline: &[Deployment],
    production: Result<&[Deployment], &str>,
    now: i64,
) -> SyncPlan {
    let ns = env.metadata.namespace.clone().unwrap_or_default();
    let prod_ns = &env.spec.production.namespace;
    let old = env.status.as_ref();
    let requested = env
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SYNC_REQUEST_ANNOTATION))
        .cloned();
    // A request not yet honoured: services found in sync count as synced now.
    let fresh_request = requested.is_some()
        && requested.as_ref() != old.and_then(|s| s.observed_sync_request.as_ref());
    let now_time = Time(Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH));
    let mut patches = Vec::new();
    let mut entries = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for base in followed(env, baseline) {
        let name = base.metadata.name.clone().unwrap_or_default();
        names.push(name.clone());
        let previous = old.and_then(|s| s.baseline.iter().find(|e| e.deployment == name));
        let base_images = images(base);
        let mut entry = ServiceSync {
            deployment: name.clone(),
            drift: SyncDrift::Unknown,
            production_image: None,
            baseline_image: describe(&base_images),
            last_sync: previous.and_then(|p| p.last_sync.clone()),
            reason: None,
        };
        let prod = match production {
            Err(why) => {
                entry.reason = Some(why.to_owned());
                entries.push(entry);
                continue;
            }
            Ok(list) => list.iter().find(|d| {
                d.metadata.namespace.as_deref() == Some(prod_ns.as_str())
                    && d.metadata.name.as_deref() == Some(name.as_str())
            }),
        };
        let Some(prod) = prod else {
            entry.reason = Some(format!(
                "production has no Deployment {name} in namespace {prod_ns}"
            ));
            entries.push(entry);
            continue;
        };
        let prod_images = images(prod);
        // The containers both have, with production's image.
        let common: BTreeMap<String, String> = prod_images
            .iter()
            .filter(|(c, _)| base_images.contains_key(*c))
            .map(|(c, i)| (c.clone(), i.clone()))
            .collect();
        entry.production_image = describe(&common);
        if common.is_empty() {
            entry.reason = Some(format!(
                "no container of baseline {ns}/{name} ({}) has a namesake in production's {prod_ns}/{name} ({})",
                base_images.keys().cloned().collect::<Vec<_>>().join(", "),
                prod_images.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            entries.push(entry);
            continue;
        }
        let differs = common.iter().any(|(c, i)| base_images.get(c) != Some(i));
        if differs {
            entry.drift = SyncDrift::Behind;
            entry.reason = Some(format!(
                "production runs {}; setting baseline's images to it",
                entry.production_image.clone().unwrap_or_default()
            ));
            let mut after = base_images.clone();
            after.extend(common.clone());
            entry.baseline_image = describe(&after);
            patches.push(ImagePatch {
                namespace: ns.clone(),
                name: name.clone(),
                images: common,
            });
        } else {
            match rolled_out(base) {
                Ok(()) => {
                    entry.drift = SyncDrift::InSync;
                    let was_in_sync = previous.is_some_and(|p| p.drift == SyncDrift::InSync);
                    if !was_in_sync || fresh_request || entry.last_sync.is_none() {
                        entry.last_sync = Some(now_time.clone());
                    }
                }
                Err(why) => {
                    entry.drift = SyncDrift::Behind;
                    entry.reason = Some(why);
                }
            }
        }
        entries.push(entry);
    }
    // Deployments named in the spec that do not exist in the baseline namespace.
    for wanted in &env.spec.deployments {
        if !names.contains(wanted) {
            entries.push(ServiceSync {
                deployment: wanted.clone(),
                drift: SyncDrift::Unknown,
                reason: Some(format!(
                    "no baseline Deployment {wanted} in namespace {ns} (or the lane operator made it)"
                )),
                ..Default::default()
            });
        }
    }
    entries.sort_by(|a, b| a.deployment.cmp(&b.deployment));
    let in_sync = entries
        .iter()
        .filter(|e| e.drift == SyncDrift::InSync)
        .count();
    let last_sync = entries
        .iter()
        .filter_map(|e| e.last_sync.clone())
        .max_by_key(|t| t.0);
    SyncPlan {
        patches,
        status: LaneEnvironmentStatus {
            services: i32::try_from(entries.len()).unwrap_or(i32::MAX),
            in_sync: i32::try_from(in_sync).unwrap_or(i32::MAX),
            last_sync,
            observed_sync_request: requested
                .or_else(|| old.and_then(|s| s.observed_sync_request.clone())),
            baseline: entries,
        },
    }
}

/// The neutral view of one environment's status, for `lane status` and `lane baseline sync`.
pub fn to_api(env: &LaneEnvironment) -> Vec<lane_api::BaselineSync> {
    let ns = env.metadata.namespace.clone().unwrap_or_default();
    let follows = env.spec.production.describe(&ns);
    env.status
        .iter()
        .flat_map(|s| s.baseline.iter())
        .filter_map(|e| {
            let service = lane_core::ServiceId::new(&ns, &e.deployment).ok()?;
            Some(lane_api::BaselineSync {
                service,
                follows: follows.clone(),
                production: e.production_image.clone(),
                running: e.baseline_image.clone(),
                drift: e.drift.to_api(),
                reason: e.reason.clone(),
                last_sync: e
                    .last_sync
                    .as_ref()
                    .and_then(|t| u64::try_from(t.0.as_second()).ok()),
            })
        })
        .collect()
}

/// The CustomResourceDefinition generated from [`LaneEnvironment`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    LaneEnvironment::crd()
}

/// `deploy/environment-crd.yaml`: the CRD as YAML, with a header naming the command that
/// regenerates it.
pub fn crd_yaml() -> String {
    crate::yaml::crd_file(
        &crd(),
        "lane_kube::environment::LaneEnvironment",
        REGENERATE_CRD,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(ns: &str, name: &str, containers: &[(&str, &str)]) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "generation": 2},
            "spec": {"replicas": 1, "selector": {},
                     "template": {"spec": {"containers": containers.iter()
                        .map(|(c, i)| serde_json::json!({"name": c, "image": i}))
                        .collect::<Vec<_>>()}}},
            "status": {"observedGeneration": 2, "updatedReplicas": 1, "readyReplicas": 1},
        }))
        .unwrap()
    }

    fn env(deployments: &[&str]) -> LaneEnvironment {
        let mut e = LaneEnvironment::new(
            "shop",
            LaneEnvironmentSpec {
                production: Production {
                    namespace: "prod".into(),
                    ..Default::default()
                },
                deployments: deployments.iter().map(|d| (*d).to_owned()).collect(),
            },
        );
        e.metadata.namespace = Some("shop".into());
        e
    }

    #[test]
    fn behind_gets_a_patch_of_the_images_only_then_in_sync_once_rolled_out() {
        let base = vec![deployment(
            "shop",
            "cart",
            &[("cart", "c:1"), ("log", "l:1")],
        )];
        let prod = vec![deployment(
            "prod",
            "cart",
            &[("cart", "c:2"), ("log", "l:1")],
        )];
        let e = env(&[]);
        let plan = plan_sync(&e, &base, Ok(&prod), 100);
        assert_eq!(
            plan.patches,
            [ImagePatch {
                namespace: "shop".into(),
                name: "cart".into(),
                images: BTreeMap::from([
                    ("cart".into(), "c:2".into()),
                    ("log".into(), "l:1".into())
                ]),
            }]
        );
        let s = &plan.status.baseline[0];
        assert_eq!(s.drift, SyncDrift::Behind);
        assert_eq!(s.production_image.as_deref(), Some("cart=c:2, log=l:1"));
        assert_eq!(s.last_sync, None);
        let body = plan.patches[0].apply_body();
        assert_eq!(
            body["spec"],
            serde_json::json!({"template": {"spec": {"containers": [
                {"name": "cart", "image": "c:2"}, {"name": "log", "image": "l:1"}]}}})
        );

        // Rolled out: in sync since now; a later pass keeps that time.
        let synced = vec![deployment(
            "shop",
            "cart",
            &[("cart", "c:2"), ("log", "l:1")],
        )];
        let mut e = e;
        e.status = Some(plan.status);
        let plan = plan_sync(&e, &synced, Ok(&prod), 200);
        assert!(plan.patches.is_empty());
        assert_eq!(plan.status.baseline[0].drift, SyncDrift::InSync);
        assert_eq!(plan.status.in_sync, 1);
        assert_eq!(plan.status.last_sync.as_ref().unwrap().0.as_second(), 200);
        e.status = Some(plan.status.clone());
        assert_eq!(plan_sync(&e, &synced, Ok(&prod), 300).status, plan.status);

        // A sync request moves the last sync and is echoed.
        e.metadata.annotations = Some(BTreeMap::from([(
            SYNC_REQUEST_ANNOTATION.to_owned(),
            "r1".to_owned(),
        )]));
        let plan = plan_sync(&e, &synced, Ok(&prod), 400);
        assert_eq!(plan.status.observed_sync_request.as_deref(), Some("r1"));
        assert_eq!(plan.status.last_sync.as_ref().unwrap().0.as_second(), 400);
    }

    #[test]
    fn not_rolled_out_is_behind_with_the_counts() {
        let mut base = deployment("shop", "cart", &[("cart", "c:2")]);
        base.status.as_mut().unwrap().observed_generation = Some(1);
        let prod = vec![deployment("prod", "cart", &[("cart", "c:2")])];
        let plan = plan_sync(&env(&[]), &[base.clone()], Ok(&prod), 1);
        assert!(plan.patches.is_empty());
        assert_eq!(plan.status.baseline[0].drift, SyncDrift::Behind);
        base.status.as_mut().unwrap().observed_generation = Some(2);
        base.status.as_mut().unwrap().ready_replicas = Some(0);
        let plan = plan_sync(&env(&[]), &[base], Ok(&prod), 1);
        assert_eq!(
            plan.status.baseline[0].reason.as_deref(),
            Some("rolling out production's images: 1 of 1 replicas updated, 0 ready")
        );
    }

    #[test]
    fn unknown_with_a_reason_when_production_cannot_say() {
        let base = vec![
            deployment("shop", "cart", &[("cart", "c:1")]),
            deployment("shop", "pay", &[("pay", "p:1")]),
            deployment("other", "cart", &[("cart", "c:1")]),
        ];
        let prod = vec![deployment("prod", "pay", &[("server", "p:2")])];
        let plan = plan_sync(&env(&[]), &base, Ok(&prod), 1);
        assert!(plan.patches.is_empty());
        let reasons: Vec<(&str, SyncDrift, &str)> = plan
            .status
            .baseline
            .iter()
            .map(|e| {
                (
                    e.deployment.as_str(),
                    e.drift,
                    e.reason.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "cart",
                    SyncDrift::Unknown,
                    "production has no Deployment cart in namespace prod"
                ),
                (
                    "pay",
                    SyncDrift::Unknown,
                    "no container of baseline shop/pay (pay) has a namesake in production's prod/pay (server)"
                ),
            ]
        );
        let plan = plan_sync(&env(&["cart", "gone"]), &base, Err("forbidden"), 1);
        let got: Vec<(&str, &str)> = plan
            .status
            .baseline
            .iter()
            .map(|e| (e.deployment.as_str(), e.reason.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                ("cart", "forbidden"),
                (
                    "gone",
                    "no baseline Deployment gone in namespace shop (or the lane operator made it)"
                )
            ]
        );
        assert_eq!((plan.status.services, plan.status.in_sync), (2, 0));
    }

    #[test]
    fn managed_deployments_are_never_followed() {
        let mut lane = deployment("shop", "cart-lane-a", &[("cart", "c:x")]);
        lane.metadata.labels = Some(BTreeMap::from([(
            crate::plan::MANAGED_BY_LABEL.to_owned(),
            crate::plan::MANAGED_BY.to_owned(),
        )]));
        assert!(followed(&env(&[]), &[lane]).is_empty());
    }

    #[test]
    fn api_view() {
        let mut e = env(&[]);
        let base = vec![deployment("shop", "cart", &[("cart", "c:1")])];
        let prod = vec![deployment("prod", "cart", &[("cart", "c:1")])];
        e.status = Some(plan_sync(&e, &base, Ok(&prod), 7).status);
        let v = to_api(&e);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].service.to_string(), "shop.cart");
        assert_eq!(v[0].follows, "namespace prod");
        assert_eq!(v[0].drift, lane_api::Drift::InSync);
        assert_eq!(v[0].last_sync, Some(7));
        assert_eq!(v[0].running.as_deref(), Some("c:1"));
    }

    #[test]
    fn names_and_columns() {
        let crd = serde_json::to_value(crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "laneenvironments.lane.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            ["Production", "Services", "InSync", "LastSync", "Age"]
        );
    }

    /// `deploy/environment-crd.yaml` is what the types generate.
    #[test]
    fn checked_in_crd_matches_the_types() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/environment-crd.yaml"
        );
        let want = crd_yaml();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &want).unwrap();
            return;
        }
        let got = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "deploy/environment-crd.yaml differs from the CRD the LaneEnvironment type generates; rewrite it with\n  \
             {REGENERATE_CRD}\n(or UPDATE_GOLDEN=1 cargo test -p lane-kube) and review the diff"
        );
    }
}
