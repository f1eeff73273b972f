//! `lane route show|diff <host>`: before any change, the merged VirtualService and
//! DestinationRule the operator would make for one host, next to what is in the cluster.
//!
//! Read-only: it lists what an operator pass lists ([`Operator::list_inputs`]) and runs the same
//! plan ([`Operator::plan`]), then writes nothing.

use kcr_networking_istio_io::v1::destinationrules::DestinationRule;
use kcr_networking_istio_io::v1::virtualservices::VirtualService;
use lane_core::ServiceId;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Lane, LaneService, LaneSpec};
use crate::operator::{self, Error, Operator};
use crate::plan::{self, CLUSTER_DOMAIN, Conflict};

/// The routing objects of one host: what the plan wants and what the cluster has.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub service: ServiceId,
    pub host: String,
    pub desired_virtual_service: Option<VirtualService>,
    pub desired_destination_rule: Option<DestinationRule>,
    /// The objects with the operator's name for the host (`<proc>-lanes` in `<app>`), whoever
    /// made them.
    pub live_virtual_service: Option<VirtualService>,
    pub live_destination_rule: Option<DestinationRule>,
    /// The plan's conflicts that concern this service.
    pub conflicts: Vec<Conflict>,
}

/// A host as a service: `<app>.<proc>` or `<proc>.<app>.svc.cluster.local`.
pub fn parse_host(host: &str) -> Result<ServiceId, String> {
    let suffix = format!(".svc.{CLUSTER_DOMAIN}");
    let id = match host.strip_suffix(&suffix) {
        Some(rest) => match rest.split_once('.') {
            Some((proc_, app)) if !app.contains('.') => format!("{app}.{proc_}"),
            _ => {
                return Err(format!(
                    "host `{host}`: expected `<proc>.<app>{suffix}` or a service id `<app>.<proc>`"
                ));
            }
        },
        None => host.to_owned(),
    };
    id.parse::<ServiceId>().map_err(|e| {
        format!(
            "host `{host}`: {e} (expected a service id `<app>.<proc>` or `<proc>.<app>{suffix}`)"
        )
    })
}

/// A lane's version of the viewed service, added in memory before planning (`--lane --image`).
#[derive(Debug, Clone)]
pub struct Preview {
    /// The lane id: its Lane (in any namespace in scope) gets this image for the service; a new
    /// Lane in the service's namespace when there is none.
    pub lane: String,
    pub image: String,
}

/// The view of `service` from the operator's inputs at `now`, with `preview` applied to them.
pub async fn view(
    operator: &Operator,
    service: &ServiceId,
    preview: Option<&Preview>,
) -> Result<RouteView, Error> {
    let mut inputs = operator.list_inputs().await?;
    if let Some(p) = preview {
        let key = service.to_string();
        let existing = inputs
            .lanes
            .iter_mut()
            .find(|l| l.metadata.name.as_deref() == Some(p.lane.as_str()));
        let lane = match existing {
            Some(lane) => lane,
            None => {
                let mut lane = Lane::new(
                    &p.lane,
                    LaneSpec {
                        data: Vec::new(),
                        owner: "preview".into(),
                        parent: None,
                        expires: Time(Timestamp::MAX),
                        services: Default::default(),
                    },
                );
                lane.metadata.namespace = Some(service.app().to_owned());
                inputs.lanes.push(lane);
                let last = inputs.lanes.len() - 1;
                &mut inputs.lanes[last]
            }
        };
        let version = lane
            .spec
            .services
            .entry(key)
            .or_insert_with(|| LaneService {
                version: format!("preview@{}", p.lane),
                ..Default::default()
            });
        version.image = p.image.clone();
        // A preview shows the routes once the version is ready: its Deployment counts as ready.
        if let Ok(lane_id) = p.lane.parse() {
            let name = plan::deployment_name(service, &lane_id);
            inputs.deployments.retain(|d| {
                !(d.metadata.namespace.as_deref() == Some(service.app())
                    && d.metadata.name.as_deref() == Some(name.as_str()))
            });
            inputs
                .deployments
                .push(k8s_openapi::api::apps::v1::Deployment {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        namespace: Some(service.app().to_owned()),
                        name: Some(name),
                        labels: Some(
                            [(
                                plan::MANAGED_BY_LABEL.to_owned(),
                                plan::MANAGED_BY.to_owned(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: None,
                    status: Some(k8s_openapi::api::apps::v1::DeploymentStatus {
                        ready_replicas: Some(1),
                        ..Default::default()
                    }),
                });
        }
    }
    let (_, desired) = operator.plan(&inputs, operator::now_secs());
    let name = plan::routing_object_name(service);
    let here = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace.as_deref() == Some(service.app()) && m.name.as_deref() == Some(name.as_str())
    };
    Ok(RouteView {
        service: service.clone(),
        host: plan::host(service),
        desired_virtual_service: desired
            .virtual_services
            .iter()
            .find(|o| here(&o.metadata))
            .cloned(),
        desired_destination_rule: desired
            .destination_rules
            .iter()
            .find(|o| here(&o.metadata))
            .cloned(),
        live_virtual_service: inputs
            .virtual_services
            .iter()
            .find(|o| here(&o.metadata))
            .cloned(),
        live_destination_rule: inputs
            .destination_rules
            .iter()
            .find(|o| here(&o.metadata))
            .cloned(),
        conflicts: desired
            .conflicts
            .into_iter()
            .filter(|c| concerns_service(c, service))
            .collect(),
    })
}

/// Whether a conflict stops or concerns the routing of `service`.
pub fn concerns_service(conflict: &Conflict, service: &ServiceId) -> bool {
    let id = service.to_string();
    match conflict {
        Conflict::NoBaseline { service: s, .. }
        | Conflict::UnlabelledBaseline { service: s, .. }
        | Conflict::ForeignVirtualService { service: s, .. }
        | Conflict::ForeignDestinationRule { service: s, .. }
        | Conflict::ForeignDeployment { service: s, .. }
        | Conflict::NoSuchContainer { service: s, .. } => *s == id,
        Conflict::InvalidBaseline { object, .. } => {
            *object == format!("Service {}/{}", service.app(), service.proc_())
                || object.starts_with(&format!("Deployment {}/", service.app()))
        }
        Conflict::InvalidLane { .. } | Conflict::DuplicateLane { .. } => false,
    }
}

/// Metadata fields the server writes: left out of every comparison.
const SERVER_FIELDS: [&str; 6] = [
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
];

/// An object as YAML without what the server adds (status, server-written metadata), with its
/// `apiVersion` and `kind`; the empty string for none.
pub fn normalized_yaml<T: Serialize>(object: Option<&T>, api_version: &str, kind: &str) -> String {
    let Some(object) = object else {
        return String::new();
    };
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("status");
        map.insert("apiVersion".into(), Value::String(api_version.into()));
        map.insert("kind".into(), Value::String(kind.into()));
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in SERVER_FIELDS {
                meta.remove(field);
            }
            for key in ["labels", "annotations"] {
                if meta
                    .get(key)
                    .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
                {
                    meta.remove(key);
                }
            }
        }
    }
    crate::yaml::to_yaml(&value)
}

pub const ISTIO_API_VERSION: &str = "networking.istio.io/v1";

impl RouteView {
    /// The desired objects as YAML documents (VirtualService, then DestinationRule).
    pub fn desired_yaml(&self) -> (String, String) {
        (
            normalized_yaml(
                self.desired_virtual_service.as_ref(),
                ISTIO_API_VERSION,
                "VirtualService",
            ),
            normalized_yaml(
                self.desired_destination_rule.as_ref(),
                ISTIO_API_VERSION,
                "DestinationRule",
            ),
        )
    }

    /// The live objects as YAML documents (VirtualService, then DestinationRule).
    pub fn live_yaml(&self) -> (String, String) {
        (
            normalized_yaml(
                self.live_virtual_service.as_ref(),
                ISTIO_API_VERSION,
                "VirtualService",
            ),
            normalized_yaml(
                self.live_destination_rule.as_ref(),
                ISTIO_API_VERSION,
                "DestinationRule",
            ),
        )
    }

    /// A unified diff of the live objects against the desired ones; empty when they are the same.
    pub fn diff(&self) -> String {
        let name = format!(
            "{}/{}",
            self.service.app(),
            plan::routing_object_name(&self.service)
        );
        let (live_vs, live_dr) = self.live_yaml();
        let (want_vs, want_dr) = self.desired_yaml();
        let mut out = String::new();
        out.push_str(&unified_diff(
            &live_vs,
            &want_vs,
            &format!("live VirtualService {name}"),
            &format!("desired VirtualService {name}"),
        ));
        out.push_str(&unified_diff(
            &live_dr,
            &want_dr,
            &format!("live DestinationRule {name}"),
            &format!("desired DestinationRule {name}"),
        ));
        out
    }
}

/// Lines kept around each change.
const CONTEXT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The line edit script from `a` to `b` by longest common subsequence.
fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Op::Same, a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before additions, as diff(1) writes them.
            out.push((Op::Del, a[i]));
            i += 1;
        } else {
            out.push((Op::Add, b[j]));
            j += 1;
        }
    }
    out
}

/// A unified diff (`---`/`+++` headers, `@@` hunks with three lines of context) from `old` to
/// `new`; empty when they are equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let script = edit_script(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Group changes into hunks: a change within 2*CONTEXT lines of the previous joins its hunk.
    let changes: Vec<usize> = script
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != Op::Same)
        .map(|(k, _)| k)
        .collect();
    let mut k = 0;
    while k < changes.len() {
        let start = changes[k].saturating_sub(CONTEXT);
        let mut last = changes[k];
        while k + 1 < changes.len() && changes[k + 1] - last <= 2 * CONTEXT {
            k += 1;
            last = changes[k];
        }
        let end = (last + CONTEXT + 1).min(script.len());
        // Line numbers (1-based) where the hunk starts in each side.
        let old_before = script[..start]
            .iter()
            .filter(|(o, _)| *o != Op::Add)
            .count();
        let new_before = script[..start]
            .iter()
            .filter(|(o, _)| *o != Op::Del)
            .count();
        let hunk = &script[start..end];
        let old_len = hunk.iter().filter(|(o, _)| *o != Op::Add).count();
        let new_len = hunk.iter().filter(|(o, _)| *o != Op::Del).count();
        let at = |before: usize, len: usize| if len == 0 { before } else { before + 1 };
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            at(old_before, old_len),
            at(new_before, new_len)
        ));
        for (op, line) in hunk {
            let mark = match op {
                Op::Same => ' ',
                Op::Del => '-',
                Op::Add => '+',
            };
            out.push(mark);
            out.push_str(line);
            out.push('\n');
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_both_ways_and_bad_ones_are_errors() {
        assert_eq!(parse_host("shop.cart").unwrap().to_string(), "shop.cart");
        assert_eq!(
            parse_host("cart.shop.svc.cluster.local")
                .unwrap()
                .to_string(),
            "shop.cart"
        );
        for bad in [
            "",
            "cart",
            "a.b.c",
            "x.y.z.svc.cluster.local",
            ".svc.cluster.local",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_diff_is_empty_for_equal_texts_and_marks_changes() {
        assert_eq!(unified_diff("a\nb\n", "a\nb\n", "x", "y"), "");
        let d = unified_diff("a\nb\nc\n", "a\nB\nc\nd\n", "old", "new");
        assert_eq!(d, "--- old\n+++ new\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n");
        let d = unified_diff("", "x\n", "old", "new");
        assert_eq!(d, "--- old\n+++ new\n@@ -0,0 +1,1 @@\n+x\n");
        // Far-apart changes make two hunks.
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("2\n", "two\n").replace("17\n", "seventeen\n");
        let d = unified_diff(&old, &new, "o", "n");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }
}
