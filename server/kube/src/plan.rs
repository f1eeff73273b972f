//! The operator's decision, as a pure function: from the Lanes, the baseline objects of the
//! services they touch and what already exists, to the Deployments, DestinationRules and
//! VirtualServices that should exist, and the conflicts that stop some of them.
//!
//! [`desired`] does no I/O and reads no clock (`now` is an [`Options`] field). Which lane serves a
//! lane's requests to a service is asked of `lane_core::RoutingTable::route` (built with
//! `RoutingTable::from_lanes`), never decided here; this module only encodes the answers as Istio
//! objects. The header matches and where they differ from lane_core: [`crate::matching`].
//!
//! For each service `<app>.<proc>` (the Service `<proc>` in namespace `<app>`, host
//! `<proc>.<app>.svc.cluster.local`) that a live lane has a version of:
//!
//! - a Deployment `<proc>-lane-<id>` per lane version: the baseline Deployment's spec with the
//!   lane's replicas (1 by default), the image of the named container (else the first) replaced,
//!   the lane's env merged in, pod labels `lane.dev/lane=<id>` and `version=<the version label
//!   as a label value>`, the baseline's selector with `lane.dev/lane=<id>` instead of any
//!   `version` (a selector cannot change, the version does on every deploy); an owner reference to the Lane when it is in the same
//!   namespace (Kubernetes ignores cross-namespace owners, so a Lane elsewhere is named by the
//!   `lane.dev/lane-object` annotation instead, for the controller to clean up);
//! - a DestinationRule `<proc>-lanes` for the host with subset `baseline` (pods labelled
//!   `lane.dev/lane=baseline`: baseline pod templates must carry it, since Istio subsets select by
//!   equality only and lane pods are copies of baseline pods with that label replaced) and
//!   `lane-<id>` per lane version (`lane.dev/lane=<id>`);
//! - a VirtualService `<proc>-lanes` for the host: one route per live lane (by lane id) whose
//!   requests lane_core sends to a lane version, matching that lane's header value or baggage
//!   entry, to the version's subset; then the final route to `baseline`. A version counts for
//!   routing only once its Deployment (in [`Existing::deployments`], made by the operator)
//!   reports a ready replica: until then lane_core passes over it along the lane's parent chain
//!   as it passes over an unhealthy instance, so the lane's requests go to its parent's version
//!   or baseline. Its Deployment and its DestinationRule subset are there from the start.
//!
//! Every object carries `app.kubernetes.io/managed-by=lane-operator`. A VirtualService that
//! applies to the mesh for the host, or a DestinationRule for the host (exactly, by short name or
//! by a wildcard: taking a wildcard's place for one host would silently drop its policy there), or
//! an object with the name the plan wants, without that label is a [`Conflict`]: the host then gets neither object and no lane Deployments (lane pods are endpoints
//! of the Service too, so without the operator's routes they would get baseline traffic). The same
//! holds for a baseline pod template without `lane.dev/lane=baseline`. Lanes whose `spec.expires`
//! has passed at `now` are left out entirely, as if already reclaimed: no Deployments, no routes,
//! and their parent links are not followed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kcr_networking_istio_io::v1::destinationrules::{
    DestinationRule, DestinationRuleSpec, DestinationRuleSubsets,
};
use kcr_networking_istio_io::v1::virtualservices::{
    VirtualService, VirtualServiceHttp, VirtualServiceHttpMatch, VirtualServiceHttpMatchHeaders,
    VirtualServiceHttpMatchWithoutHeaders, VirtualServiceHttpRoute,
    VirtualServiceHttpRouteDestination, VirtualServiceSpec,
};
use kube::Resource;
use lane_core::lane::UnixSecs;
use lane_core::{Decision, Endpoint, LaneId, LaneRef, LaneValue, RoutingTable, ServiceId};

use crate::crd::{LANE_LABEL, Lane, LaneRoute, LaneService};
use crate::matching;

/// The label every object the operator makes carries, and the value it must have for the
/// operator to change or replace an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "lane-operator";
/// The pod label Istio telemetry reads as the workload's version.
pub const VERSION_LABEL: &str = "version";
/// Annotation on lane Deployments naming their Lane object, `<namespace>/<name>`.
pub const LANE_OBJECT_ANNOTATION: &str = "lane.dev/lane-object";
/// Annotation on lane Deployments with the version label as written in the Lane.
pub const VERSION_ANNOTATION: &str = "lane.dev/version";
pub const BRANCH_ANNOTATION: &str = "lane.dev/branch";
pub const COMMIT_ANNOTATION: &str = "lane.dev/commit";
/// The subset and `lane.dev/lane` value of baseline pods.
pub const BASELINE: &str = lane_core::id::BASELINE;
/// The lane header when none is configured (`LANE_HEADER` elsewhere).
pub const DEFAULT_LANE_HEADER: &str = "x-lane";
/// The baggage header (W3C).
pub const BAGGAGE_HEADER: &str = "baggage";
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What the plan needs besides the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    lane_header: String,
    /// Seconds since the epoch; lanes expiring at or before it are left out.
    pub now: UnixSecs,
}

/// A bad option, said with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "lane header `{0}` cannot be matched by Istio; use lowercase letters, digits and `-` (not `baggage`), e.g. `x-lane`"
    )]
    BadLaneHeader(String),
}

impl Options {
    pub fn new(now: UnixSecs) -> Self {
        Options {
            lane_header: DEFAULT_LANE_HEADER.to_owned(),
            now,
        }
    }

    /// Another lane header. Header names are case-insensitive; Istio wants them lowercase.
    pub fn with_lane_header(mut self, header: &str) -> Result<Self, PlanError> {
        let lower = header.to_ascii_lowercase();
        if !matching::valid_header_name(&lower) {
            return Err(PlanError::BadLaneHeader(header.to_owned()));
        }
        self.lane_header = lower;
        Ok(self)
    }

    pub fn lane_header(&self) -> &str {
        &self.lane_header
    }
}

/// A service's baseline: its Kubernetes Service (`<proc>` in namespace `<app>`) and the Deployment
/// whose pods serve it.
#[derive(Debug, Clone, Default)]
pub struct BaselineService {
    pub service: Service,
    pub deployment: Deployment,
}

/// Objects already in the cluster: those without the managed-by label that have a name or host
/// the plan wants are not taken over; the operator's own lane Deployments say, by their status,
/// which versions are ready to be routed.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub deployments: Vec<Deployment>,
    pub destination_rules: Vec<DestinationRule>,
    pub virtual_services: Vec<VirtualService>,
}

/// What should exist. Objects are ordered by service id, then lane id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub deployments: Vec<Deployment>,
    pub destination_rules: Vec<DestinationRule>,
    pub virtual_services: Vec<VirtualService>,
    /// Every live lane's routes (for its status), by lane id; lanes without any are listed too.
    pub routes: BTreeMap<String, Vec<LaneRoute>>,
    /// Names of the Lane objects that had expired at `now`, sorted.
    pub expired: Vec<String>,
    /// What the plan refused to do, and why.
    pub conflicts: Vec<Conflict>,
}

/// Something the plan will not do. Each says what to change. [`Desired::conflicts`] is sorted
/// (by kind, then fields).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Conflict {
    #[error("Lane {object}: {reason}")]
    InvalidLane { object: String, reason: String },
    #[error(
        "lane `{lane}` is defined by several Lane objects ({objects}); lane ids are cluster-wide: delete all but one"
    )]
    DuplicateLane { lane: String, objects: String },
    #[error(
        "lane `{lane}` has a version of `{service}`, but there is no baseline for it (Service `{proc_}` and its Deployment in namespace `{app}`); deploy the baseline first"
    )]
    NoBaseline {
        lane: String,
        service: String,
        app: String,
        proc_: String,
    },
    #[error("baseline {object}: {reason}")]
    InvalidBaseline { object: String, reason: String },
    #[error(
        "baseline Deployment {object} of `{service}`: its pod template lacks the label {LANE_LABEL}={BASELINE}, so the `baseline` subset would select no pods; add the label (lane versions of `{service}` are not deployed or routed until then)"
    )]
    UnlabelledBaseline { service: String, object: String },
    #[error(
        "VirtualService {object} routes host {host} but was not made by the lane operator (no {MANAGED_BY_LABEL}={MANAGED_BY}); Istio cannot merge two VirtualServices for one host, so lane versions of `{service}` are not deployed or routed until it is removed"
    )]
    ForeignVirtualService {
        service: String,
        host: String,
        object: String,
    },
    #[error(
        "DestinationRule {object} for host {host} was not made by the lane operator (no {MANAGED_BY_LABEL}={MANAGED_BY}); lane versions of `{service}` are not deployed or routed until it is removed"
    )]
    ForeignDestinationRule {
        service: String,
        host: String,
        object: String,
    },
    #[error(
        "Deployment {object} exists but was not made by the lane operator; lane `{lane}`'s version of `{service}` is not deployed until it is removed"
    )]
    ForeignDeployment {
        lane: String,
        service: String,
        object: String,
    },
    #[error(
        "lane `{lane}` replaces the image of container `{container}` of `{service}`, but the baseline pod template has no such container"
    )]
    NoSuchContainer {
        lane: String,
        service: String,
        container: String,
    },
}

/// The host Istio knows a service by: `<proc>.<app>.svc.cluster.local`.
pub fn host(service: &ServiceId) -> String {
    format!("{}.{}.svc.{CLUSTER_DOMAIN}", service.proc_(), service.app())
}

/// The name of the operator's VirtualService and DestinationRule of a service.
pub fn routing_object_name(service: &ServiceId) -> String {
    format!("{}-lanes", service.proc_())
}

/// The name of a lane's Deployment of a service: `<proc>-lane-<id>`.
pub fn deployment_name(service: &ServiceId, lane: &LaneId) -> String {
    format!("{}-lane-{lane}", service.proc_())
}

/// A version label (`feat/x@0123abcd+dirty`) as a Kubernetes label value: other characters become
/// `_`, at most 63, starting and ending alphanumeric; `lane-<id>` if nothing is left.
pub fn version_label_value(version: &str, lane: &LaneId) -> String {
    let mapped: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        lane_core::naming::istio_subset(lane)
    } else {
        trimmed.to_owned()
    }
}

pub(crate) fn object_name(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

pub(crate) fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// An Istio host as written in an object of `namespace`, fully qualified: a short name (no dot)
/// is relative to the object's namespace.
fn resolve_host(written: &str, namespace: &str) -> String {
    if written.contains('.') || written.starts_with('*') {
        written.to_owned()
    } else {
        format!("{written}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

/// Whether a host as written (`*`, `*.suffix` or a name) covers `host`.
fn covers(pattern: &str, host: &str) -> bool {
    pattern == host
        || pattern == "*"
        || pattern
            .strip_prefix('*')
            .is_some_and(|suffix| suffix.starts_with('.') && host.ends_with(suffix))
}

fn same_object(meta: &ObjectMeta, namespace: &str, name: &str) -> bool {
    meta.namespace.as_deref() == Some(namespace) && meta.name.as_deref() == Some(name)
}

/// A baseline that passed the checks.
struct Base<'a> {
    deployment: &'a Deployment,
    labelled: bool,
}

/// A Lane that is valid and not expired.
struct Live<'a> {
    id: LaneId,
    parent: Option<LaneId>,
    object: &'a Lane,
    services: BTreeMap<ServiceId, &'a LaneService>,
}

/// A service whose host gets the operator's routing objects.
struct Routed {
    service: ServiceId,
    host: String,
    /// Lanes with a Deployment of the service, by lane id.
    versions: Vec<LaneId>,
    /// For each of `versions`: whether its Deployment reports a ready replica.
    ready: Vec<bool>,
}

/// The plan: see the module documentation.
pub fn desired(
    lanes: &[Lane],
    baseline: &[BaselineService],
    existing: &Existing,
    options: &Options,
) -> Desired {
    let mut out = Desired::default();
    let bases = check_baselines(baseline, &mut out.conflicts);
    // The operator's lane Deployments that report a ready replica, by (namespace, name).
    let ready_deployments: HashSet<(&str, &str)> = existing
        .deployments
        .iter()
        .filter(|d| ready_replica(d))
        .filter_map(|d| {
            Some((
                d.metadata.namespace.as_deref()?,
                d.metadata.name.as_deref()?,
            ))
        })
        .collect();
    let live = live_lanes(lanes, options.now, &mut out);

    // Which live lanes have a version of each service.
    let mut touched: BTreeMap<&ServiceId, Vec<usize>> = BTreeMap::new();
    for (i, lane) in live.iter().enumerate() {
        for service in lane.services.keys() {
            touched.entry(service).or_default().push(i);
        }
    }

    out.deployments
        .reserve(touched.values().map(Vec::len).sum::<usize>());
    let mut routed: Vec<Routed> = Vec::new();
    for (service, lane_idx) in touched {
        let Some(base) = bases.get(service) else {
            for &i in &lane_idx {
                out.conflicts.push(Conflict::NoBaseline {
                    lane: live[i].id.to_string(),
                    service: service.to_string(),
                    app: service.app().to_owned(),
                    proc_: service.proc_().to_owned(),
                });
            }
            continue;
        };
        if !base.labelled {
            out.conflicts.push(Conflict::UnlabelledBaseline {
                service: service.to_string(),
                object: object_name(&base.deployment.metadata),
            });
            continue;
        }
        let host = host(service);
        if !host_is_free(service, &host, existing, &mut out.conflicts) {
            continue;
        }
        let mut versions = Vec::new();
        let mut ready = Vec::new();
        for &i in &lane_idx {
            let lane = &live[i];
            let name = deployment_name(service, &lane.id);
            if let Some(foreign) = existing.deployments.iter().find(|d| {
                same_object(&d.metadata, service.app(), &name) && !is_managed(&d.metadata)
            }) {
                out.conflicts.push(Conflict::ForeignDeployment {
                    lane: lane.id.to_string(),
                    service: service.to_string(),
                    object: object_name(&foreign.metadata),
                });
                continue;
            }
            // `touched` lists this lane under this service because it has a version of it.
            let Some(version) = lane.services.get(service) else {
                continue;
            };
            match lane_deployment(base.deployment, service, lane, version) {
                Ok(d) => {
                    out.deployments.push(d);
                    versions.push(lane.id.clone());
                    ready.push(ready_deployments.contains(&(service.app(), name.as_str())));
                }
                Err(conflict) => out.conflicts.push(conflict),
            }
        }
        if !versions.is_empty() {
            routed.push(Routed {
                service: service.clone(),
                host,
                versions,
                ready,
            });
        }
    }

    // The routing decision, from lane_core: chains from the live lanes, an instance per version
    // deployed (healthy when its Deployment reports a ready replica: an unready version is
    // passed over along the chain, as `route` passes over unhealthy instances) and one baseline
    // instance per routed service.
    let core_lanes: Vec<lane_core::Lane> = live.iter().map(core_lane).collect();
    let endpoints = routed.iter().flat_map(|r| {
        std::iter::once(endpoint(&r.service, LaneRef::Baseline, true)).chain(
            r.versions
                .iter()
                .zip(&r.ready)
                .map(|(l, ready)| endpoint(&r.service, LaneRef::Lane(l.clone()), *ready)),
        )
    });
    let table = RoutingTable::from_lanes(&core_lanes, endpoints, 0);

    // Which lanes to ask about on a host: only a lane whose chain (itself, its parent, …) holds a
    // lane with a version there can be sent to a version, and those are the version lanes and
    // their descendants. The answer for each is still `route`'s.
    let index: HashMap<&LaneId, usize> = live.iter().enumerate().map(|(i, l)| (&l.id, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); live.len()];
    for (i, lane) in live.iter().enumerate() {
        if let Some(&p) = lane.parent.as_ref().and_then(|p| index.get(p)) {
            children[p].push(i);
        }
    }
    // Each lane's matches are the same on every host: built on first use.
    let mut matches: Vec<Option<Vec<VirtualServiceHttpMatch>>> = vec![None; live.len()];
    for lane in &live {
        out.routes.insert(lane.id.to_string(), Vec::new());
    }
    for r in &routed {
        let mut candidates: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> = r
            .versions
            .iter()
            .filter_map(|v| index.get(v).copied())
            .collect();
        while let Some(i) = stack.pop() {
            if candidates.insert(i) {
                stack.extend(
                    children[i]
                        .iter()
                        .copied()
                        .filter(|c| !candidates.contains(c)),
                );
            }
        }
        let mut http = Vec::with_capacity(candidates.len() + 1);
        // By index, that is by lane id.
        for i in candidates {
            let lane = &live[i];
            let Decision::Serve {
                lane: LaneRef::Lane(target),
                ..
            } = table.route(&r.service, &LaneValue::Lane(lane.id.clone()))
            else {
                continue;
            };
            let lane_matches = matches[i]
                .get_or_insert_with(|| lane_matches(&lane.id, options.lane_header()))
                .clone();
            let subset = lane_core::naming::istio_subset(&target);
            http.push(VirtualServiceHttp {
                name: Some(lane_core::naming::istio_subset(&lane.id)),
                r#match: Some(lane_matches),
                route: Some(vec![route_to(&r.host, &subset)]),
                ..Default::default()
            });
            if let Some(routes) = out.routes.get_mut(lane.id.as_str()) {
                routes.push(LaneRoute {
                    service: r.service.to_string(),
                    host: r.host.clone(),
                    lane: target.to_string(),
                    subset,
                });
            }
        }
        http.push(VirtualServiceHttp {
            name: Some(BASELINE.to_owned()),
            route: Some(vec![route_to(&r.host, BASELINE)]),
            ..Default::default()
        });
        let name = routing_object_name(&r.service);
        let mut vs = VirtualService::new(
            &name,
            VirtualServiceSpec {
                hosts: Some(vec![r.host.clone()]),
                http: Some(http),
                ..Default::default()
            },
        );
        vs.metadata = managed_meta(&name, r.service.app());
        out.virtual_services.push(vs);

        let mut subsets = vec![subset(BASELINE, BASELINE)];
        subsets.extend(
            r.versions
                .iter()
                .map(|l| subset(&lane_core::naming::istio_subset(l), l.as_str())),
        );
        let mut dr = DestinationRule::new(
            &name,
            DestinationRuleSpec {
                host: r.host.clone(),
                subsets: Some(subsets),
                ..Default::default()
            },
        );
        dr.metadata = managed_meta(&name, r.service.app());
        out.destination_rules.push(dr);
    }
    out.conflicts.sort();
    out
}

fn endpoint(service: &ServiceId, lane: LaneRef, healthy: bool) -> Endpoint<()> {
    Endpoint {
        service: service.clone(),
        lane,
        healthy,
        target: (),
    }
}

/// Whether the lane Deployment `namespace/name` exists, was made by the operator, and reports a
/// ready replica (`status.readyReplicas` ≥ 1): only then does its lane get a route to it.
pub fn is_ready(existing: &Existing, namespace: &str, name: &str) -> bool {
    deployment_ready(&existing.deployments, namespace, name)
}

/// [`is_ready`] over a list of Deployments.
pub fn deployment_ready(deployments: &[Deployment], namespace: &str, name: &str) -> bool {
    deployments
        .iter()
        .any(|d| same_object(&d.metadata, namespace, name) && ready_replica(d))
}

/// A Deployment the operator made that reports a ready replica.
fn ready_replica(d: &Deployment) -> bool {
    is_managed(&d.metadata)
        && d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .is_some_and(|r| r >= 1)
}

fn managed_meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY_LABEL.to_owned(),
            MANAGED_BY.to_owned(),
        )])),
        ..Default::default()
    }
}

fn route_to(host: &str, subset: &str) -> VirtualServiceHttpRoute {
    VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination {
            host: host.to_owned(),
            subset: Some(subset.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn subset(name: &str, lane_label: &str) -> DestinationRuleSubsets {
    DestinationRuleSubsets {
        name: name.to_owned(),
        labels: Some(BTreeMap::from([(
            LANE_LABEL.to_owned(),
            lane_label.to_owned(),
        )])),
        ..Default::default()
    }
}

/// The two ways a request names `lane`: the lane header, or baggage when the lane header is
/// absent.
fn lane_matches(lane: &LaneId, lane_header: &str) -> Vec<VirtualServiceHttpMatch> {
    vec![
        VirtualServiceHttpMatch {
            name: Some("lane-header".to_owned()),
            headers: Some(BTreeMap::from([(
                lane_header.to_owned(),
                VirtualServiceHttpMatchHeaders {
                    regex: Some(matching::lane_header_regex(lane.as_str())),
                    ..Default::default()
                },
            )])),
            ..Default::default()
        },
        VirtualServiceHttpMatch {
            name: Some(BAGGAGE_HEADER.to_owned()),
            headers: Some(BTreeMap::from([(
                BAGGAGE_HEADER.to_owned(),
                VirtualServiceHttpMatchHeaders {
                    regex: Some(matching::baggage_regex(lane.as_str())),
                    ..Default::default()
                },
            )])),
            without_headers: Some(BTreeMap::from([(
                lane_header.to_owned(),
                VirtualServiceHttpMatchWithoutHeaders::default(),
            )])),
            ..Default::default()
        },
    ]
}

/// Checks every baseline; the usable ones by service id (none for a service listed twice).
fn check_baselines<'a>(
    baseline: &'a [BaselineService],
    conflicts: &mut Vec<Conflict>,
) -> HashMap<ServiceId, Base<'a>> {
    let mut bases = HashMap::new();
    let mut twice = Vec::new();
    for b in baseline {
        let meta = &b.service.metadata;
        let object = format!("Service {}", object_name(meta));
        let invalid = |reason: String| Conflict::InvalidBaseline {
            object: object.clone(),
            reason,
        };
        let (Some(app), Some(proc_)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            conflicts.push(invalid("it has no namespace or no name".into()));
            continue;
        };
        let service = match ServiceId::new(app, proc_) {
            Ok(s) => s,
            Err(e) => {
                conflicts.push(invalid(format!("not a lane service id: {e}")));
                continue;
            }
        };
        if b.deployment.metadata.namespace.as_deref() != Some(app) {
            conflicts.push(invalid(format!(
                "its Deployment {} is in another namespace",
                object_name(&b.deployment.metadata)
            )));
            continue;
        }
        let template = b.deployment.spec.as_ref().map(|s| &s.template);
        if template
            .and_then(|t| t.spec.as_ref())
            .is_none_or(|p| p.containers.is_empty())
        {
            conflicts.push(invalid(format!(
                "its Deployment {} has no pod template with containers",
                object_name(&b.deployment.metadata)
            )));
            continue;
        }
        if bases.contains_key(&service) {
            conflicts.push(invalid(format!(
                "`{service}` has more than one baseline; none is used"
            )));
            twice.push(service);
            continue;
        }
        let labelled = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(LANE_LABEL))
            .is_some_and(|v| v == BASELINE);
        bases.insert(
            service,
            Base {
                deployment: &b.deployment,
                labelled,
            },
        );
    }
    for service in twice {
        bases.remove(&service);
    }
    bases
}

/// The valid lanes not expired at `now`, by lane id; records the rest.
fn live_lanes<'a>(lanes: &'a [Lane], now: UnixSecs, out: &mut Desired) -> Vec<Live<'a>> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut by_id: BTreeMap<LaneId, Vec<Live<'a>>> = BTreeMap::new();
    for object in lanes {
        let name = object.metadata.name.as_deref().unwrap_or("");
        let label = object_name(&object.metadata);
        let invalid = |reason: String| Conflict::InvalidLane {
            object: label.clone(),
            reason,
        };
        let id: LaneId = match name.parse() {
            Ok(id) => id,
            Err(e) => {
                out.conflicts
                    .push(invalid(format!("its name is not a lane id: {e}")));
                continue;
            }
        };
        if object.spec.expires.0.as_second() <= now {
            out.expired.push(label);
            continue;
        }
        let parent = match object.spec.parent.as_deref().map(str::parse::<LaneId>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                out.conflicts.push(invalid(format!("spec.parent: {e}")));
                continue;
            }
        };
        let mut services = BTreeMap::new();
        for (key, version) in &object.spec.services {
            match key.parse::<ServiceId>() {
                Ok(s) => {
                    services.insert(s, version);
                }
                Err(e) => out.conflicts.push(invalid(format!(
                    "spec.services: {e}; that entry is skipped"
                ))),
            }
        }
        by_id.entry(id.clone()).or_default().push(Live {
            id,
            parent,
            object,
            services,
        });
    }
    out.expired.sort();
    let mut live = Vec::with_capacity(by_id.len());
    for (id, mut group) in by_id {
        if group.len() == 1 {
            live.extend(group.pop());
        } else {
            let mut objects: Vec<String> = group
                .iter()
                .map(|l| object_name(&l.object.metadata))
                .collect();
            objects.sort();
            out.conflicts.push(Conflict::DuplicateLane {
                lane: id.to_string(),
                objects: objects.join(", "),
            });
        }
    }
    live
}

/// The lane document lane_core routes by.
fn core_lane(lane: &Live<'_>) -> lane_core::Lane {
    let secs = |t: Option<i64>| t.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
    let created = secs(
        lane.object
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
    );
    lane_core::Lane {
        id: lane.id.clone(),
        parent: lane.parent.clone(),
        owner: lane.object.spec.owner.clone(),
        created,
        expires: secs(Some(lane.object.spec.expires.0.as_second())),
        services: BTreeMap::new(),
        data: Vec::new(),
    }
}

/// Whether no foreign VirtualService or DestinationRule claims the host; records those that do.
fn host_is_free(
    service: &ServiceId,
    host: &str,
    existing: &Existing,
    conflicts: &mut Vec<Conflict>,
) -> bool {
    let name = routing_object_name(service);
    let mut free = true;
    for vs in &existing.virtual_services {
        if is_managed(&vs.metadata) {
            continue;
        }
        let ns = vs.metadata.namespace.as_deref().unwrap_or("");
        // A VirtualService bound only to gateways does not route mesh traffic.
        let mesh = vs
            .spec
            .gateways
            .as_ref()
            .is_none_or(|g| g.is_empty() || g.iter().any(|g| g == "mesh"));
        let claims_host = mesh
            && vs
                .spec
                .hosts
                .iter()
                .flatten()
                .any(|h| covers(&resolve_host(h, ns), host));
        if claims_host || same_object(&vs.metadata, service.app(), &name) {
            conflicts.push(Conflict::ForeignVirtualService {
                service: service.to_string(),
                host: host.to_owned(),
                object: object_name(&vs.metadata),
            });
            free = false;
        }
    }
    for dr in &existing.destination_rules {
        if is_managed(&dr.metadata) {
            continue;
        }
        let ns = dr.metadata.namespace.as_deref().unwrap_or("");
        if covers(&resolve_host(&dr.spec.host, ns), host)
            || same_object(&dr.metadata, service.app(), &name)
        {
            conflicts.push(Conflict::ForeignDestinationRule {
                service: service.to_string(),
                host: host.to_owned(),
                object: object_name(&dr.metadata),
            });
            free = false;
        }
    }
    free
}

/// The lane's Deployment of `service`, derived from the baseline's.
fn lane_deployment(
    base: &Deployment,
    service: &ServiceId,
    lane: &Live<'_>,
    version: &LaneService,
) -> Result<Deployment, Conflict> {
    let mut spec = base.spec.clone().unwrap_or_default();
    let id = lane.id.as_str();
    let version_label = version_label_value(&version.version, &lane.id);
    spec.replicas = Some(version.replicas.unwrap_or(1));

    let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = template_meta.labels.get_or_insert_with(Default::default);
    labels.insert(LANE_LABEL.to_owned(), id.to_owned());
    labels.insert(VERSION_LABEL.to_owned(), version_label.clone());
    // The selector must match the pods and stay the same for the Deployment's life (Kubernetes
    // does not let it change): the lane label, never the version, which changes on every deploy.
    let selector = spec
        .selector
        .match_labels
        .get_or_insert_with(Default::default);
    selector.remove(VERSION_LABEL);
    selector.insert(LANE_LABEL.to_owned(), id.to_owned());

    let pod = spec.template.spec.get_or_insert_with(Default::default);
    let container = match &version.container {
        Some(name) => pod.containers.iter_mut().find(|c| c.name == *name),
        None => pod.containers.first_mut(),
    };
    let Some(container) = container else {
        return Err(Conflict::NoSuchContainer {
            lane: id.to_owned(),
            service: service.to_string(),
            container: version.container.clone().unwrap_or_default(),
        });
    };
    container.image = Some(version.image.clone());
    if !version.env.is_empty() {
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in &version.env {
            match env.iter_mut().find(|e| e.name == *name) {
                Some(e) => {
                    e.value = Some(value.clone());
                    e.value_from = None;
                }
                None => env.push(EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                }),
            }
        }
    }

    let name = deployment_name(service, &lane.id);
    let mut labels = base.metadata.labels.clone().unwrap_or_default();
    labels.insert(LANE_LABEL.to_owned(), id.to_owned());
    labels.insert(VERSION_LABEL.to_owned(), version_label);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    let mut annotations = BTreeMap::from([
        (
            LANE_OBJECT_ANNOTATION.to_owned(),
            object_name(&lane.object.metadata),
        ),
        (VERSION_ANNOTATION.to_owned(), version.version.clone()),
    ]);
    if let Some(branch) = &version.branch {
        annotations.insert(BRANCH_ANNOTATION.to_owned(), branch.clone());
    }
    if let Some(commit) = &version.commit {
        annotations.insert(COMMIT_ANNOTATION.to_owned(), commit.clone());
    }
    // Owner references never cross namespaces: Kubernetes would take the owner for missing and
    // collect the Deployment.
    let owner = (lane.object.metadata.namespace.as_deref() == Some(service.app()))
        .then(|| lane.object.controller_owner_ref(&()))
        .flatten();
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(service.app().to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s: ServiceId = "shop.cart".parse().unwrap();
        let l: LaneId = "feature-x".parse().unwrap();
        assert_eq!(host(&s), "cart.shop.svc.cluster.local");
        assert_eq!(routing_object_name(&s), "cart-lanes");
        assert_eq!(deployment_name(&s, &l), "cart-lane-feature-x");
    }

    #[test]
    fn version_labels() {
        let l: LaneId = "x".parse().unwrap();
        assert_eq!(
            version_label_value("feat/login@01234567+dirty", &l),
            "feat_login_01234567_dirty"
        );
        assert_eq!(version_label_value("@@", &l), "lane-x");
        assert_eq!(version_label_value("", &l), "lane-x");
        let long = "a".repeat(70);
        assert_eq!(version_label_value(&long, &l).len(), 63);
        assert_eq!(version_label_value("_v1.2_", &l), "v1.2");
    }

    #[test]
    fn hosts() {
        assert_eq!(resolve_host("cart", "shop"), "cart.shop.svc.cluster.local");
        assert_eq!(resolve_host("cart.shop", "x"), "cart.shop");
        let h = "cart.shop.svc.cluster.local";
        assert!(covers(h, h));
        assert!(covers("*", h));
        assert!(covers("*.shop.svc.cluster.local", h));
        assert!(!covers("*.other.svc.cluster.local", h));
        assert!(!covers("*art.shop.svc.cluster.local", h));
    }

    #[test]
    fn lane_headers() {
        assert_eq!(
            Options::new(0)
                .with_lane_header("X-Env-Lane")
                .unwrap()
                .lane_header(),
            "x-env-lane"
        );
        let err = Options::new(0).with_lane_header("x lane").unwrap_err();
        assert!(err.to_string().contains("lowercase letters"), "{err}");
    }
}
