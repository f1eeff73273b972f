//! `lane operator`: the thin controller around [`plan::desired`].
//!
//! # Shape: watch everything, reconcile everything
//!
//! The decision is global per host: one VirtualService merges the routes of every lane that
//! touches it, so a change to one Lane can rewrite objects that other Lanes depend on. A
//! per-object `kube_runtime::Controller` would have to map every event back to "all lanes on
//! these hosts" and still recompute the whole host. Instead watchers on every input (Lanes,
//! Services, Deployments, VirtualServices, DestinationRules) only wake one loop; the loop
//! debounces, lists the inputs afresh and runs one pass of [`plan::desired`] over all of them
//! (about 20 ms for 1,000 lanes, `docs/benchmarks.md`), then applies the difference. One pass at
//! a time (single flight), so two passes never race each other's writes; events during a pass
//! wake the next one. Listing afresh instead of reading reflector caches costs five LISTs per
//! pass (latest-state LISTs, about 70 ms on the test API server: `docs/benchmarks.md`), and buys
//! a view no older than the operator's own last writes, so a pass never acts on a state it has
//! already changed (a cache may still hold the route it just removed, or miss an object someone
//! created since under the operator's name). The loop also wakes at
//! the next `spec.expires` and at least every [`Config::resync`].
//!
//! # One pass
//!
//! 1. Live Lanes (neither deleting nor past `spec.expires`) without the finalizer
//!    `lane.dev/teardown` get it.
//! 2. `plan::desired` over the Lanes that are neither deleting nor expired, the baselines of the
//!    services they touch (the Service `<proc>` in `<app>` and the unmanaged Deployments in
//!    `<app>` whose pod template matches its selector) and every VirtualService,
//!    DestinationRule and Deployment in scope.
//! 3. Writes, by server-side apply with field manager `lane-operator`, forced (only objects the
//!    plan made, all labelled `app.kubernetes.io/managed-by=lane-operator`; the plan refuses to
//!    take any other name or host, and only objects with that label are deleted), in an order
//!    where no route names a subset that is gone and lane pods leave only after their routes:
//!    Deployments → DestinationRules with the old subsets kept → VirtualServices → the exact
//!    DestinationRules → VirtualServices no longer wanted cut to their `baseline` route (lane
//!    pods are endpoints of the Service too, so the host keeps a route to baseline until they
//!    are gone) → Deployments no longer wanted deleted → those VirtualServices and
//!    DestinationRules deleted → expired Lanes deleted → finalizers of deleting Lanes removed
//!    (an expired Lane's on the next pass, once it is deleting) → Lane statuses.
//!
//! Any error stops the pass (later steps depend on earlier ones) and the loop retries; every
//! write is idempotent, so an operator stopped anywhere converges to the same objects when it
//! runs again (`tests/operator.rs` stops it after every write in turn).
//!
//! # Limits
//!
//! - A lane's route is added once its Deployment reports a ready replica (`plan::desired` reads
//!   the lane Deployments' status): until then that lane's requests to the service fall back
//!   along its parent chain, and its status says `Routed=False`, reason `WaitingForReady`,
//!   phase `Pending`. Readiness is `status.readyReplicas` ≥ 1 as the Deployment controller
//!   reports it, so it lags the pods by the controller's and the watch's delay; a version
//!   whose last replica stops being ready loses its route in the next pass.
//! - Foreign VirtualServices and DestinationRules are seen only in the namespaces in scope: with
//!   `--namespace`, include every namespace that may route the lanes' hosts.
//! - Every pass lists all Services and Deployments in scope, and any change to one (a status
//!   update of an unrelated Deployment included) wakes a pass: in a large, busy scope that is a
//!   LIST of every Deployment every debounce interval. Watching only the namespaces of the
//!   services the lanes touch would bound it; not done.
//! - No leader election: run one replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kcr_networking_istio_io::v1::destinationrules::DestinationRule;
use kcr_networking_istio_io::v1::virtualservices::{VirtualService, VirtualServiceSpec};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use lane_core::ServiceId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::crd::{CONDITION_READY, CONDITION_ROUTED, Lane, LanePhase, LaneRoute, LaneStatus};
use crate::environment::{self, LaneEnvironment, SyncDrift};
use crate::plan::{
    self, BASELINE, BaselineService, Conflict, Existing, LANE_OBJECT_ANNOTATION, MANAGED_BY,
    MANAGED_BY_LABEL, is_managed, object_name,
};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "lane-operator";
/// The finalizer that orders a Lane's teardown.
pub const FINALIZER: &str = "lane.dev/teardown";
/// Annotation on lane Deployments: the fingerprint of what the operator last applied.
pub const APPLIED_ANNOTATION: &str = "lane.dev/applied";
/// Condition type: something the operator refuses to do concerns this lane.
pub const CONDITION_CONFLICT: &str = "Conflict";

/// What the operator watches and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces it reads and writes (Lanes and services alike); empty: all.
    pub namespaces: Vec<String>,
    /// The lane header the VirtualServices match (`x-lane` by default).
    pub lane_header: Option<String>,
    /// How long a wake-up waits for more events before the pass.
    pub debounce: Duration,
    /// The longest time between passes.
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespaces: Vec::new(),
            lane_header: None,
            debounce: Duration::from_millis(20),
            resync: Duration::from_secs(300),
        }
    }
}

/// A failed step, naming the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {kind} {object}: {source}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the API server does not serve {kind} (404 on list); install {needs}")]
    NotServed {
        kind: &'static str,
        needs: &'static str,
    },
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error("stopped after {0} writes (test hook)")]
    Interrupted(usize),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Objects written or deleted, as `<verb> <Kind> <ns>/<name>`, in order.
    pub writes: Vec<String>,
    /// The earliest `spec.expires` of a live lane, seconds since the epoch.
    pub next_expiry: Option<i64>,
}

/// What a pass reads: the objects of every input kind in the operator's scope.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub lanes: Vec<Lane>,
    pub services: Vec<Service>,
    pub deployments: Vec<Deployment>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    /// LaneEnvironments (none when their CRD is not installed: following production is optional).
    pub environments: Vec<LaneEnvironment>,
}

/// The operator: a client, a scope, and the pass.
#[derive(Clone)]
pub struct Operator {
    client: Client,
    config: Config,
    options: plan::Options,
    /// Test hook: the pass fails with [`Error::Interrupted`] once this many writes are done.
    write_budget: Option<Arc<AtomicUsize>>,
    /// Writes started by this operator and its clones, ever.
    writes: Arc<AtomicUsize>,
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn kube_err(
    action: &'static str,
    kind: &'static str,
    object: String,
) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube {
        action,
        kind,
        object,
        source: Box::new(source),
    }
}

impl Operator {
    pub fn new(client: Client, config: Config) -> Result<Operator, Error> {
        let mut options = plan::Options::new(0);
        if let Some(h) = &config.lane_header {
            options = options.with_lane_header(h)?;
        }
        Ok(Operator {
            client,
            config,
            options,
            write_budget: None,
            writes: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Test hook: every pass of this operator stops with [`Error::Interrupted`] after `writes`
    /// writes in total, as if the process had been killed there.
    #[doc(hidden)]
    pub fn with_write_budget(mut self, writes: usize) -> Self {
        self.write_budget = Some(Arc::new(AtomicUsize::new(writes)));
        self
    }

    /// How many writes this operator (and its clones) has started, ever.
    pub fn writes_started(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn spend(&self, report: &PassReport) -> Result<(), Error> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(budget) = &self.write_budget {
            let left = budget.load(Ordering::SeqCst);
            if left == 0 {
                return Err(Error::Interrupted(report.writes.len()));
            }
            budget.store(left - 1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn apis<K>(&self) -> Vec<Api<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.config.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.config
                .namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        }
    }

    async fn list<K>(&self, kind: &'static str) -> Result<Vec<K>, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let params = ListParams::default();
        let mut out = Vec::new();
        let scope = if self.config.namespaces.is_empty() {
            "in all namespaces".to_owned()
        } else {
            format!("in {}", self.config.namespaces.join(","))
        };
        for api in self.apis::<K>() {
            let list = match api.list(&params).await {
                Ok(list) => list,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    let needs = match kind {
                        "Lane" => "the Lane CRD (deploy/crd.yaml)",
                        "LaneEnvironment" => {
                            "the LaneEnvironment CRD (deploy/environment-crd.yaml)"
                        }
                        "VirtualService" | "DestinationRule" => {
                            "Istio (its networking.istio.io CRDs)"
                        }
                        _ => "it",
                    };
                    return Err(Error::NotServed { kind, needs });
                }
                Err(e) => return Err(kube_err("list", kind, scope.clone())(e)),
            };
            out.extend(list.items);
        }
        Ok(out)
    }

    async fn apply<K>(
        &self,
        kind: &'static str,
        object: &K,
        report: &mut PassReport,
    ) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
        K::DynamicType: Default,
    {
        let meta = object.meta();
        let label = object_name(meta);
        self.spend(report)?;
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(
            meta.name.as_deref().unwrap_or_default(),
            &params,
            &Patch::Apply(object),
        )
        .await
        .map_err(kube_err("apply", kind, label.clone()))?;
        report.writes.push(format!("apply {kind} {label}"));
        Ok(())
    }

    async fn delete<K>(
        &self,
        kind: &'static str,
        meta: &ObjectMeta,
        report: &mut PassReport,
    ) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let label = object_name(meta);
        self.spend(report)?;
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        );
        let mut params = DeleteParams::default();
        // Only the object the pass saw: never one recreated under the same name since.
        if let Some(uid) = &meta.uid {
            params.preconditions = Some(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        match api
            .delete(meta.name.as_deref().unwrap_or_default(), &params)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(kube_err("delete", kind, label)(e)),
        }
        report.writes.push(format!("delete {kind} {label}"));
        Ok(())
    }

    /// Every input of a pass, listed at once, in the operator's scope.
    pub async fn list_inputs(&self) -> Result<Inputs, Error> {
        let (lanes, services, deployments, virtual_services, destination_rules, environments) = futures::try_join!(
            self.list::<Lane>("Lane"),
            self.list::<Service>("Service"),
            self.list::<Deployment>("Deployment"),
            self.list::<VirtualService>("VirtualService"),
            self.list::<DestinationRule>("DestinationRule"),
            async {
                match self.list::<LaneEnvironment>("LaneEnvironment").await {
                    Err(Error::NotServed { .. }) => Ok(Vec::new()),
                    other => other,
                }
            },
        )?;
        Ok(Inputs {
            lanes,
            services,
            deployments,
            virtual_services,
            destination_rules,
            environments,
        })
    }

    /// Step 2 of a pass: the Lanes that are neither deleting nor expired at `now`, and
    /// [`plan::desired`] over them, their baselines and everything in scope.
    pub fn plan(&self, inputs: &Inputs, now: i64) -> (Vec<Lane>, plan::Desired) {
        let live: Vec<Lane> = inputs
            .lanes
            .iter()
            .filter(|l| {
                l.metadata.deletion_timestamp.is_none() && l.spec.expires.0.as_second() > now
            })
            .cloned()
            .collect();
        let touched: BTreeSet<ServiceId> = live
            .iter()
            .flat_map(|l| l.spec.services.keys())
            .filter_map(|k| k.parse().ok())
            .collect();
        let baseline = baselines(&touched, &inputs.services, &inputs.deployments);
        let existing = Existing {
            deployments: inputs.deployments.clone(),
            destination_rules: inputs.destination_rules.clone(),
            virtual_services: inputs.virtual_services.clone(),
        };
        let mut options = self.options.clone();
        options.now = u64::try_from(now).unwrap_or(0);
        let desired = plan::desired(&live, &baseline, &existing, &options);
        (live, desired)
    }

    /// One pass: see the module documentation. Lane Deployments whose `lane.dev/applied`
    /// fingerprint matches the plan are not applied again.
    pub async fn reconcile_once(&self) -> Result<PassReport, Error> {
        self.pass(false).await
    }

    /// One pass that applies every lane Deployment, whatever its fingerprint says.
    pub async fn reconcile_all(&self) -> Result<PassReport, Error> {
        self.pass(true).await
    }

    async fn pass(&self, full: bool) -> Result<PassReport, Error> {
        let mut report = PassReport::default();
        let now = now_secs();
        let inputs = self.list_inputs().await?;
        let Inputs {
            lanes,
            deployments,
            virtual_services,
            destination_rules,
            ..
        } = &inputs;

        // 0. Baseline follows production (writes only baseline images and LaneEnvironment
        // statuses; what it changes reaches the plan in the next pass, woken by the change).
        self.sync_baselines(&inputs, now, &mut report).await?;

        // 1. Finalizers on the Lanes that are neither deleting nor expired.
        for lane in lanes {
            let live =
                lane.metadata.deletion_timestamp.is_none() && lane.spec.expires.0.as_second() > now;
            if live && !lane.finalizers().iter().any(|f| f == FINALIZER) {
                let mut finalizers = lane.finalizers().to_vec();
                finalizers.push(FINALIZER.to_owned());
                self.set_finalizers(lane, finalizers, &mut report).await?;
            }
        }

        // 2. The plan.
        let (live, desired) = self.plan(&inputs, now);

        // 3. Writes, in the order of the module documentation.
        // A Deployment whose last apply was this very object is left alone (the API server
        // defaults fields, so its spec cannot be compared with the plan's); a full pass applies
        // them all, undoing changes made by hand.
        for d in &desired.deployments {
            let mut d = d.clone();
            let print = fingerprint(&d);
            let current = deployments
                .iter()
                .find(|o| same_name(&o.metadata, &d.metadata) && is_managed(&o.metadata))
                .and_then(|o| o.metadata.annotations.as_ref())
                .and_then(|a| a.get(APPLIED_ANNOTATION));
            if full || current != Some(&print) {
                d.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(APPLIED_ANNOTATION.to_owned(), print);
                self.apply("Deployment", &d, &mut report).await?;
            }
        }
        let mut widened = Vec::new();
        for dr in &desired.destination_rules {
            let old = destination_rules
                .iter()
                .find(|o| same_name(&o.metadata, &dr.metadata) && is_managed(&o.metadata));
            let keep: Vec<_> = old
                .and_then(|o| o.spec.subsets.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|s| !dr.spec.subsets.iter().flatten().any(|n| n.name == s.name))
                .collect();
            if !keep.is_empty() {
                let mut wide = dr.clone();
                wide.spec.subsets.get_or_insert_with(Vec::new).extend(keep);
                self.apply("DestinationRule", &wide, &mut report).await?;
                widened.push(dr);
            } else if old.is_none_or(|o| o.spec != dr.spec) {
                self.apply("DestinationRule", dr, &mut report).await?;
            }
        }
        for vs in &desired.virtual_services {
            let old = virtual_services
                .iter()
                .find(|o| same_name(&o.metadata, &vs.metadata) && is_managed(&o.metadata));
            if old.is_none_or(|o| o.spec != vs.spec || !is_managed(&o.metadata)) {
                self.apply("VirtualService", vs, &mut report).await?;
            }
        }
        for dr in widened {
            self.apply("DestinationRule", dr, &mut report).await?;
        }
        let stale_vs: Vec<&VirtualService> = virtual_services
            .iter()
            .filter(|o| is_managed(&o.metadata))
            .filter(|o| {
                !desired
                    .virtual_services
                    .iter()
                    .any(|d| same_name(&d.metadata, &o.metadata))
            })
            .collect();
        let stale_deployments: Vec<&Deployment> = deployments
            .iter()
            .filter(|o| is_managed(&o.metadata))
            .filter(|o| {
                !desired
                    .deployments
                    .iter()
                    .any(|d| same_name(&d.metadata, &o.metadata))
            })
            .collect();
        let stale_dr: Vec<&DestinationRule> = destination_rules
            .iter()
            .filter(|o| is_managed(&o.metadata))
            .filter(|o| {
                !desired
                    .destination_rules
                    .iter()
                    .any(|d| same_name(&d.metadata, &o.metadata))
            })
            .collect();
        if !stale_deployments.is_empty() {
            for vs in &stale_vs {
                let cut = baseline_only(vs);
                if cut.spec != vs.spec {
                    self.apply("VirtualService", &cut, &mut report).await?;
                }
            }
        }
        for d in &stale_deployments {
            self.delete::<Deployment>("Deployment", &d.metadata, &mut report)
                .await?;
        }
        for vs in &stale_vs {
            self.delete::<VirtualService>("VirtualService", &vs.metadata, &mut report)
                .await?;
        }
        for dr in &stale_dr {
            self.delete::<DestinationRule>("DestinationRule", &dr.metadata, &mut report)
                .await?;
        }

        // Expired Lanes are deleted once their routes and Deployments are gone (the plan left
        // them out): one with the finalizer waits for the next pass to lose it, like any other
        // deleting Lane; one without (never seen live by an operator) goes at once.
        for lane in lanes {
            if lane.metadata.deletion_timestamp.is_none() && lane.spec.expires.0.as_second() <= now
            {
                self.spend(&report)?;
                let api: Api<Lane> =
                    Api::namespaced(self.client.clone(), &lane.namespace().unwrap_or_default());
                match api.delete(&lane.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(kube_err("delete", "Lane", object_name(&lane.metadata))(e));
                    }
                }
                tracing::info!(lane = %object_name(&lane.metadata), "expired; deleted it");
                report
                    .writes
                    .push(format!("delete Lane {}", object_name(&lane.metadata)));
            }
        }

        // Finalizers: every managed Deployment of a deleting Lane is gone by now (deleted above,
        // or never made), and its routes left before them.
        for lane in lanes
            .iter()
            .filter(|l| l.metadata.deletion_timestamp.is_some())
        {
            if lane.finalizers().iter().any(|f| f == FINALIZER) {
                let rest = lane
                    .finalizers()
                    .iter()
                    .filter(|f| *f != FINALIZER)
                    .cloned()
                    .collect();
                self.set_finalizers(lane, rest, &mut report).await?;
            }
        }

        // Statuses.
        for lane in &live {
            let status = lane_status(lane, &desired, deployments, now);
            if lane.status.as_ref() != Some(&status) {
                self.spend(&report)?;
                let api: Api<Lane> =
                    Api::namespaced(self.client.clone(), &lane.namespace().unwrap_or_default());
                let patch = serde_json::json!({
                    "apiVersion": "lane.dev/v1alpha1",
                    "kind": "Lane",
                    "metadata": {"name": lane.name_any()},
                    "status": status,
                });
                match api
                    .patch_status(
                        &lane.name_any(),
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    // Deleted since the list: the next pass sees it gone.
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => {
                        return Err(kube_err(
                            "write the status of",
                            "Lane",
                            object_name(&lane.metadata),
                        )(e));
                    }
                }
                report
                    .writes
                    .push(format!("status Lane {}", object_name(&lane.metadata)));
            }
        }
        report.next_expiry = live.iter().map(|l| l.spec.expires.0.as_second()).min();
        Ok(report)
    }

    /// Step 0 of a pass: every LaneEnvironment's baseline images set to production's
    /// ([`environment::plan_sync`]), and its status. A production namespace that cannot be read
    /// and a baseline that cannot be written are reported in the status, not errors of the pass.
    async fn sync_baselines(
        &self,
        inputs: &Inputs,
        now: i64,
        report: &mut PassReport,
    ) -> Result<(), Error> {
        let mut production: BTreeMap<String, Result<Vec<Deployment>, String>> = BTreeMap::new();
        for env in &inputs.environments {
            let env_ns = env.namespace().unwrap_or_default();
            let prod_ns = env.spec.production.namespace.clone();
            let key = env.spec.production.describe(&env_ns);
            if !production.contains_key(&key) {
                let listed = match self.production_client(env).await {
                    Err(why) => Err(why),
                    Ok(client) => {
                        let api: Api<Deployment> = Api::namespaced(client, &prod_ns);
                        match api.list(&ListParams::default()).await {
                            Ok(list) => Ok(list.items),
                            Err(kube::Error::Api(e)) => Err(format!(
                                "cannot list production's Deployments in {key}: {} ({})",
                                e.message, e.code
                            )),
                            Err(e) => Err(format!(
                                "cannot list production's Deployments in {key}: {e}"
                            )),
                        }
                    }
                };
                production.insert(key.clone(), listed);
            }
            let prod = match &production[&key] {
                Ok(list) => Ok(list.as_slice()),
                Err(why) => Err(why.as_str()),
            };
            let mut plan = environment::plan_sync(env, &inputs.deployments, prod, now);
            for patch in &plan.patches {
                self.spend(report)?;
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &patch.namespace);
                let label = format!("{}/{}", patch.namespace, patch.name);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api
                    .patch(&patch.name, &params, &Patch::Apply(patch.apply_body()))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(deployment = %label, "baseline set to production's images");
                        report.writes.push(format!("images Deployment {label}"));
                    }
                    Err(e) => {
                        tracing::warn!(deployment = %label, "cannot set production's images: {e}");
                        if let Some(entry) = plan
                            .status
                            .baseline
                            .iter_mut()
                            .find(|s| s.deployment == patch.name)
                        {
                            entry.drift = SyncDrift::Behind;
                            entry.reason = Some(format!("cannot set production's images: {e}"));
                        }
                    }
                }
            }
            if env.status.as_ref() != Some(&plan.status) {
                self.spend(report)?;
                let api: Api<LaneEnvironment> =
                    Api::namespaced(self.client.clone(), &env.namespace().unwrap_or_default());
                let body = serde_json::json!({
                    "apiVersion": "lane.dev/v1alpha1",
                    "kind": "LaneEnvironment",
                    "metadata": {"name": env.name_any()},
                    "status": plan.status,
                });
                match api
                    .patch_status(
                        &env.name_any(),
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&body),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => {
                        return Err(kube_err(
                            "write the status of",
                            "LaneEnvironment",
                            object_name(&env.metadata),
                        )(e));
                    }
                }
                report.writes.push(format!(
                    "status LaneEnvironment {}",
                    object_name(&env.metadata)
                ));
            }
        }
        Ok(())
    }

    /// The client that reaches `env`'s production: the operator's own, or one made from the
    /// kubeconfig in `spec.production.kubeconfigSecret`. Why not, in words, when it cannot.
    async fn production_client(&self, env: &LaneEnvironment) -> Result<Client, String> {
        let Some(secret) = &env.spec.production.kubeconfig_secret else {
            return Ok(self.client.clone());
        };
        let ns = env.namespace().unwrap_or_default();
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &ns);
        let object = api.get(secret).await.map_err(|e| match e {
            kube::Error::Api(e) => format!(
                "cannot read the kubeconfig Secret {ns}/{secret}: {} ({})",
                e.message, e.code
            ),
            e => format!("cannot read the kubeconfig Secret {ns}/{secret}: {e}"),
        })?;
        let bytes = object
            .data
            .as_ref()
            .and_then(|d| d.get(environment::KUBECONFIG_KEY))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                format!(
                    "the Secret {ns}/{secret} has no key `{}`",
                    environment::KUBECONFIG_KEY
                )
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("the kubeconfig in Secret {ns}/{secret} is not UTF-8"))?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| format!("the kubeconfig in Secret {ns}/{secret}: {e}"))?;
        let options = kube::config::KubeConfigOptions {
            context: env.spec.production.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("the kubeconfig in Secret {ns}/{secret}: {e}"))?;
        Client::try_from(config)
            .map_err(|e| format!("a client from the kubeconfig in Secret {ns}/{secret}: {e}"))
    }

    async fn set_finalizers(
        &self,
        lane: &Lane,
        finalizers: Vec<String>,
        report: &mut PassReport,
    ) -> Result<(), Error> {
        self.spend(report)?;
        let label = object_name(&lane.metadata);
        let api: Api<Lane> =
            Api::namespaced(self.client.clone(), &lane.namespace().unwrap_or_default());
        // The resource version makes this a compare-and-swap: a finalizer another controller added
        // meanwhile is never dropped.
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": lane.resource_version(),
                "finalizers": finalizers,
            }
        });
        match api
            .patch(
                &lane.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(kube_err("update the finalizers of", "Lane", label.clone())(
                    e,
                ));
            }
        }
        report.writes.push(format!("finalizers Lane {label}"));
        Ok(())
    }

    /// Runs until `shutdown` resolves: watchers wake the loop, one pass at a time.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let wake = Arc::new(Notify::new());
        let mut watchers = tokio::task::JoinSet::new();
        self.spawn_watchers::<Lane>(&mut watchers, &wake);
        self.spawn_watchers::<Service>(&mut watchers, &wake);
        self.spawn_watchers::<Deployment>(&mut watchers, &wake);
        self.spawn_watchers::<VirtualService>(&mut watchers, &wake);
        self.spawn_watchers::<DestinationRule>(&mut watchers, &wake);
        self.spawn_watchers::<LaneEnvironment>(&mut watchers, &wake);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures: u32 = 0;
        let mut wait = Duration::ZERO;
        loop {
            // Timer wakes (start, resync, expiry, retry) run a full pass.
            let full = tokio::select! {
                () = &mut shutdown => break,
                () = wake.notified() => false,
                () = tokio::time::sleep(wait) => true,
            };
            tokio::time::sleep(self.config.debounce).await;
            let started = std::time::Instant::now();
            match self.pass(full).await {
                Ok(report) => {
                    failures = 0;
                    if !report.writes.is_empty() {
                        tracing::info!(
                            writes = report.writes.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "pass: {}",
                            report.writes.join("; ")
                        );
                    }
                    wait = self.config.resync;
                    if let Some(at) = report.next_expiry {
                        let secs = u64::try_from(at.saturating_sub(now_secs())).unwrap_or(0);
                        wait = wait.min(Duration::from_secs(secs) + Duration::from_millis(100));
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tracing::warn!("pass failed, retrying in {wait:?}: {e}");
                }
            }
        }
        watchers.abort_all();
    }

    /// Runs as one of several replicas until `shutdown` resolves: a candidate until it holds
    /// `elector`'s Lease, then [`Operator::run`] for as long as it holds it (renewing it); when it
    /// loses it, the passes stop and it is a candidate again. On shutdown the last pass ends,
    /// then the Lease is released. See [`crate::lease`].
    pub async fn run_elected(
        self,
        elector: crate::lease::Elector,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let lease = format!("{}/{}", elector.config().namespace, elector.config().name);
        loop {
            loop {
                match elector.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!("leader election: {e}"),
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(elector.config().retry_every) => {}
                }
            }
            tracing::info!(%lease, identity = %elector.config().identity, "leading: reconciling");
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let mut run = std::pin::pin!(self.clone().run(async move {
                let _ = stop_rx.await;
            }));
            let mut hold = std::pin::pin!(elector.hold());
            let (ended, stopping) = tokio::select! {
                () = &mut run => (true, false),
                () = &mut hold => (false, false),
                () = &mut shutdown => (false, true),
            };
            let _ = stop_tx.send(());
            if !ended {
                run.await;
            }
            if stopping {
                match elector.release().await {
                    Ok(()) => tracing::info!(%lease, "released the lease"),
                    Err(e) => tracing::warn!("cannot release the lease: {e}"),
                }
                return;
            }
            tracing::warn!(%lease, "no longer leading; a candidate again");
        }
    }

    fn spawn_watchers<K>(&self, set: &mut tokio::task::JoinSet<()>, wake: &Arc<Notify>)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default,
    {
        for api in self.apis::<K>() {
            let wake = wake.clone();
            set.spawn(async move {
                let mut events =
                    std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
                while let Some(event) = events.next().await {
                    match event {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!("watching {}: {e}", K::kind(&K::DynamicType::default()))
                        }
                    }
                }
            });
        }
    }
}

/// FNV-1a over the object's JSON (maps are ordered, so the same object gives the same text), in
/// hex: stable across runs and versions of the operator.
fn fingerprint<T: Serialize>(object: &T) -> String {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn same_name(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.namespace == b.namespace && a.name == b.name
}

/// The baselines of the touched services: each Service `<proc>` in `<app>` with every unmanaged
/// Deployment there whose pod template carries the Service's selector (more than one is the plan's
/// "more than one baseline" conflict).
fn baselines(
    touched: &BTreeSet<ServiceId>,
    services: &[Service],
    deployments: &[Deployment],
) -> Vec<BaselineService> {
    let mut out = Vec::new();
    for id in touched {
        let Some(service) = services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(id.app())
                && s.metadata.name.as_deref() == Some(id.proc_())
        }) else {
            continue;
        };
        let Some(selector) = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        for d in deployments {
            if d.metadata.namespace.as_deref() != Some(id.app()) || is_managed(&d.metadata) {
                continue;
            }
            let labels = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref());
            let matches = labels.is_some_and(|l| {
                selector
                    .iter()
                    .all(|(k, v)| l.get(k).is_some_and(|x| x == v))
            });
            if matches {
                out.push(BaselineService {
                    service: service.clone(),
                    deployment: d.clone(),
                });
            }
        }
    }
    out
}

/// A managed VirtualService cut down to its route to `baseline`.
fn baseline_only(vs: &VirtualService) -> VirtualService {
    let name = vs.metadata.name.clone().unwrap_or_default();
    let http = vs
        .spec
        .http
        .iter()
        .flatten()
        .filter(|h| h.name.as_deref() == Some(BASELINE))
        .cloned()
        .collect();
    let mut cut = VirtualService::new(
        &name,
        VirtualServiceSpec {
            hosts: vs.spec.hosts.clone(),
            http: Some(http),
            ..Default::default()
        },
    );
    cut.metadata = ObjectMeta {
        name: Some(name),
        namespace: vs.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([(
            MANAGED_BY_LABEL.to_owned(),
            MANAGED_BY.to_owned(),
        )])),
        ..Default::default()
    };
    cut
}

/// Whether a conflict concerns `lane`.
fn concerns(conflict: &Conflict, lane: &Lane) -> bool {
    let id = lane.metadata.name.as_deref().unwrap_or("");
    let has = |service: &str| lane.spec.services.contains_key(service);
    match conflict {
        Conflict::InvalidLane { object, .. } => *object == object_name(&lane.metadata),
        Conflict::DuplicateLane { lane: l, .. }
        | Conflict::NoBaseline { lane: l, .. }
        | Conflict::ForeignDeployment { lane: l, .. }
        | Conflict::NoSuchContainer { lane: l, .. } => l == id,
        Conflict::UnlabelledBaseline { service, .. }
        | Conflict::ForeignVirtualService { service, .. }
        | Conflict::ForeignDestinationRule { service, .. } => has(service),
        Conflict::InvalidBaseline { object, .. } => lane.spec.services.keys().any(|s| {
            s.parse::<ServiceId>()
                .is_ok_and(|s| *object == format!("Service {}/{}", s.app(), s.proc_()))
        }),
    }
}

fn conflict_reason(conflict: &Conflict) -> &'static str {
    match conflict {
        Conflict::InvalidLane { .. } => "InvalidLane",
        Conflict::DuplicateLane { .. } => "DuplicateLane",
        Conflict::NoBaseline { .. } => "NoBaseline",
        Conflict::InvalidBaseline { .. } => "InvalidBaseline",
        Conflict::UnlabelledBaseline { .. } => "UnlabelledBaseline",
        Conflict::ForeignVirtualService { .. } => "ForeignVirtualService",
        Conflict::ForeignDestinationRule { .. } => "ForeignDestinationRule",
        Conflict::ForeignDeployment { .. } => "ForeignDeployment",
        Conflict::NoSuchContainer { .. } => "NoSuchContainer",
    }
}

fn condition(
    old: Option<&LaneStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: i64,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = old.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH)),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The status the operator writes for a live lane.
fn lane_status(
    lane: &Lane,
    desired: &plan::Desired,
    deployments: &[Deployment],
    now: i64,
) -> LaneStatus {
    let id = lane.metadata.name.as_deref().unwrap_or("");
    let object = object_name(&lane.metadata);
    let generation = lane.metadata.generation;
    let old = lane.status.as_ref();
    let services = i32::try_from(lane.spec.services.len()).unwrap_or(i32::MAX);
    let mine: Vec<&Deployment> = desired
        .deployments
        .iter()
        .filter(|d| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LANE_OBJECT_ANNOTATION))
                .is_some_and(|o| *o == object)
        })
        .collect();
    let ready = mine
        .iter()
        .filter(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            deployments
                .iter()
                .find(|e| same_name(&e.metadata, &d.metadata))
                .and_then(|e| e.status.as_ref())
                .is_some_and(|s| s.ready_replicas.unwrap_or(0) >= want)
        })
        .count();
    let ready_services = i32::try_from(ready).unwrap_or(i32::MAX);
    let routes: Vec<LaneRoute> = desired.routes.get(id).cloned().unwrap_or_default();
    let conflicts: Vec<&Conflict> = desired
        .conflicts
        .iter()
        .filter(|c| concerns(c, lane))
        .collect();
    let unrouted: Vec<&String> = lane
        .spec
        .services
        .keys()
        .filter(|s| !routes.iter().any(|r| r.service == **s && r.lane == id))
        .collect();
    // Versions whose Deployment is planned but has no ready replica yet: not routed on purpose
    // (their requests fall back along the parent chain), not a fault.
    let waiting = unrouted.iter().all(|s| {
        s.parse::<ServiceId>().is_ok_and(|service| {
            let Ok(lane_id) = id.parse() else {
                return false;
            };
            let name = plan::deployment_name(&service, &lane_id);
            mine.iter()
                .any(|d| d.metadata.name.as_deref() == Some(name.as_str()))
                && !plan::deployment_ready(deployments, service.app(), &name)
        })
    });
    let all_ready = ready_services == services;
    let routed = unrouted.is_empty();
    let conflict_message = conflicts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let mut conditions = vec![
        condition(
            old,
            CONDITION_READY,
            all_ready,
            if all_ready { "AllReady" } else { "NotReady" },
            format!("{ready_services} of {services} personal versions ready"),
            generation,
            now,
        ),
        condition(
            old,
            CONDITION_ROUTED,
            routed,
            if routed {
                "Routed"
            } else if !conflicts.is_empty() {
                "Conflict"
            } else if waiting {
                "WaitingForReady"
            } else {
                "NotRouted"
            },
            if routed {
                "every personal version has its route".to_owned()
            } else {
                format!(
                    "not routed{}: {}",
                    if waiting && conflicts.is_empty() {
                        " until a replica is ready (requests fall back to the parent lane or baseline)"
                    } else {
                        ""
                    },
                    unrouted
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            generation,
            now,
        ),
    ];
    conditions.push(condition(
        old,
        CONDITION_CONFLICT,
        !conflicts.is_empty(),
        conflicts
            .first()
            .map(|c| conflict_reason(c))
            .unwrap_or("NoConflict"),
        conflict_message,
        generation,
        now,
    ));
    let phase = if !conflicts.is_empty() || !(routed || waiting) {
        LanePhase::Degraded
    } else if all_ready {
        LanePhase::Ready
    } else {
        LanePhase::Pending
    };
    LaneStatus {
        phase: Some(phase),
        conditions,
        services,
        ready_services,
        expires: Some(lane.spec.expires.clone()),
        routes,
        observed_generation: generation,
    }
}

/// The client the way `kubectl` finds one: `KUBECONFIG` or `~/.kube/config`, else the in-cluster
/// service account; `kubeconfig` overrides the file.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
        })?,
    };
    Client::try_from(config).map_err(|e| format!("cannot make a Kubernetes client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ServiceSpec};

    fn meta(ns: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn deployment(
        ns: &str,
        name: &str,
        meta_labels: &[(&str, &str)],
        pod: &[(&str, &str)],
    ) -> Deployment {
        Deployment {
            metadata: meta(ns, name, meta_labels),
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec {
                    metadata: Some(meta(ns, name, pod)),
                    spec: None,
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn lane(ns: &str, name: &str, services: &[&str]) -> Lane {
        let mut lane = Lane::new(
            name,
            crate::crd::LaneSpec {
                data: Vec::new(),
                owner: "o".into(),
                parent: None,
                expires: Time(Timestamp::from_second(10).unwrap()),
                services: services
                    .iter()
                    .map(|s| ((*s).to_owned(), Default::default()))
                    .collect(),
            },
        );
        lane.metadata.namespace = Some(ns.into());
        lane
    }

    #[test]
    fn baselines_pair_a_service_with_the_unmanaged_deployments_it_selects() {
        let service = Service {
            metadata: meta("shop", "cart", &[]),
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "cart".into())])),
                ..Default::default()
            }),
            status: None,
        };
        let deployments = vec![
            deployment(
                "shop",
                "cart",
                &[],
                &[("app", "cart"), ("lane.dev/lane", "baseline")],
            ),
            deployment(
                "shop",
                "cart-lane-x",
                &[(MANAGED_BY_LABEL, MANAGED_BY)],
                &[("app", "cart")],
            ),
            deployment("shop", "other", &[], &[("app", "other")]),
            deployment("elsewhere", "cart", &[], &[("app", "cart")]),
        ];
        let touched = BTreeSet::from(["shop.cart".parse().unwrap(), "shop.pay".parse().unwrap()]);
        let found = baselines(&touched, &[service], &deployments);
        let names: Vec<String> = found
            .iter()
            .map(|b| object_name(&b.deployment.metadata))
            .collect();
        assert_eq!(names, ["shop/cart"]);
    }

    #[test]
    fn conflicts_reach_the_lanes_they_concern() {
        let a = lane("lanes", "a", &["shop.cart"]);
        let b = lane("lanes", "b", &["shop.pay"]);
        let foreign = Conflict::ForeignVirtualService {
            service: "shop.cart".into(),
            host: "cart.shop.svc.cluster.local".into(),
            object: "shop/x".into(),
        };
        assert!(concerns(&foreign, &a));
        assert!(!concerns(&foreign, &b));
        let no_base = Conflict::NoBaseline {
            lane: "b".into(),
            service: "shop.pay".into(),
            app: "shop".into(),
            proc_: "pay".into(),
        };
        assert!(concerns(&no_base, &b) && !concerns(&no_base, &a));
        let invalid = Conflict::InvalidBaseline {
            object: "Service shop/pay".into(),
            reason: "r".into(),
        };
        assert!(concerns(&invalid, &b) && !concerns(&invalid, &a));
        let bad_lane = Conflict::InvalidLane {
            object: "lanes/a".into(),
            reason: "r".into(),
        };
        assert!(concerns(&bad_lane, &a) && !concerns(&bad_lane, &b));
        assert_eq!(conflict_reason(&foreign), "ForeignVirtualService");
    }

    #[test]
    fn status_keeps_transition_times_and_says_why() {
        let mut l = lane("lanes", "a", &["shop.cart"]);
        let desired = plan::Desired {
            conflicts: vec![Conflict::NoBaseline {
                lane: "a".into(),
                service: "shop.cart".into(),
                app: "shop".into(),
                proc_: "cart".into(),
            }],
            ..Default::default()
        };
        let first = lane_status(&l, &desired, &[], 100);
        assert_eq!(first.phase, Some(LanePhase::Degraded));
        let conflict = first
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_CONFLICT)
            .unwrap();
        assert_eq!(
            (conflict.status.as_str(), conflict.reason.as_str()),
            ("True", "NoBaseline")
        );
        assert!(
            conflict.message.contains("deploy the baseline first"),
            "{}",
            conflict.message
        );
        let routed = first
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_ROUTED)
            .unwrap();
        assert_eq!(
            (routed.status.as_str(), routed.reason.as_str()),
            ("False", "Conflict")
        );
        // The same state later: same status, so nothing to write.
        l.status = Some(first.clone());
        assert_eq!(lane_status(&l, &desired, &[], 200), first);
    }

    #[test]
    fn a_cut_virtual_service_keeps_only_the_baseline_route() {
        let vs = VirtualService::new(
            "cart-lanes",
            VirtualServiceSpec {
                hosts: Some(vec!["cart.shop.svc.cluster.local".into()]),
                http: Some(vec![
                    kcr_networking_istio_io::v1::virtualservices::VirtualServiceHttp {
                        name: Some("lane-a".into()),
                        ..Default::default()
                    },
                    kcr_networking_istio_io::v1::virtualservices::VirtualServiceHttp {
                        name: Some(BASELINE.into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
        );
        let cut = baseline_only(&vs);
        let names: Vec<_> = cut
            .spec
            .http
            .iter()
            .flatten()
            .map(|h| h.name.clone())
            .collect();
        assert_eq!(names, [Some(BASELINE.to_owned())]);
        assert!(is_managed(&cut.metadata));
        assert_eq!(cut.spec.hosts, vs.spec.hosts);
    }

    #[test]
    fn fingerprints_are_stable_and_tell_objects_apart() {
        let a = deployment("shop", "a", &[], &[]);
        let b = deployment("shop", "b", &[], &[]);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
    }
}
