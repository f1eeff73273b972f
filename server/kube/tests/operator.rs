//! The operator against a real kube-apiserver (`lane_tests::apiserver`, one server for this test
//! binary, one namespace per test). The operator runs in-process, scoped to the test's namespace.
//!
//! A bare API server runs no controllers: lane Deployments never get pods, so where a test needs
//! one ready it writes the Deployment's `status` through the status subresource, as the
//! Deployment controller would; nothing is garbage-collected, so every object that goes away here
//! was deleted by the operator itself. Istio is not installed: `operator/istio-crds.yaml` gives
//! the server minimal VirtualService and DestinationRule CRDs.

mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kcr_networking_istio_io::v1::destinationrules::DestinationRule;
use kcr_networking_istio_io::v1::virtualservices::{VirtualService, VirtualServiceSpec};
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use lane_kube::crd::{Lane, LanePhase, LaneService, LaneSpec};
use lane_kube::operator::{self, Config, Error, Operator};
use lane_kube::plan::{self, BaselineService};
use lane_tests::apiserver::ApiServer;
use serde_json::json;

use cluster::{
    TEST_MANAGER, WAIT, apply_json, auto_ready, baseline, eventually, mark_ready, setup,
};

fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Applies the Lane `<ns>/<name>` with versions of `services` (`<proc>` → image), stacked on
/// `parent`, expiring at `expires`.
async fn lane(
    c: &Client,
    ns: &str,
    name: &str,
    parent: Option<&str>,
    services: &[(&str, &str)],
    expires: i64,
) {
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    let spec = LaneSpec {
        data: Vec::new(),
        owner: "alice@example.com".into(),
        parent: parent.map(str::to_owned),
        expires: time(expires),
        services: services
            .iter()
            .map(|(proc_, image)| {
                (
                    format!("{ns}.{proc_}"),
                    LaneService {
                        image: (*image).to_owned(),
                        version: format!("feature@{name}"),
                        ..Default::default()
                    },
                )
            })
            .collect(),
    };
    let object = Lane::new(name, spec);
    let mut value = serde_json::to_value(&object).unwrap();
    value["metadata"]["namespace"] = json!(ns);
    apply_json(&lanes, name, value).await;
}

/// Runs the operator on `ns` until the returned guard drops.
struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn config(ns: &str) -> Config {
    Config {
        namespaces: vec![ns.to_owned()],
        debounce: Duration::from_millis(10),
        ..Config::default()
    }
}

fn start(c: &Client, ns: &str) -> Running {
    let op = Operator::new(c.clone(), config(ns)).unwrap();
    Running(tokio::spawn(op.run(std::future::pending())))
}

/// The VirtualService `<proc>-lanes` as (route name, subset) pairs, if it exists.
async fn routes(c: &Client, ns: &str, proc_: &str) -> Option<Vec<(String, String)>> {
    let api: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let vs = api.get_opt(&format!("{proc_}-lanes")).await.unwrap()?;
    Some(route_pairs(&vs.spec))
}

fn route_pairs(spec: &VirtualServiceSpec) -> Vec<(String, String)> {
    spec.http
        .iter()
        .flatten()
        .map(|h| {
            (
                h.name.clone().unwrap_or_default(),
                h.route
                    .iter()
                    .flatten()
                    .filter_map(|r| r.destination.subset.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect()
}

async fn subsets(c: &Client, ns: &str, proc_: &str) -> Option<Vec<String>> {
    let api: Api<DestinationRule> = Api::namespaced(c.clone(), ns);
    let dr = api.get_opt(&format!("{proc_}-lanes")).await.unwrap()?;
    Some(
        dr.spec
            .subsets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect(),
    )
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn wait_routes(c: &Client, ns: &str, proc_: &str, want: &[(&str, &str)]) {
    let want = pairs(want);
    eventually(
        &format!("routes of {ns}/{proc_}-lanes = {want:?}"),
        || async { (routes(c, ns, proc_).await.as_ref() == Some(&want)).then_some(()) },
    )
    .await;
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} gone"), || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn lane_status(c: &Client, ns: &str, name: &str) -> Option<lane_kube::crd::LaneStatus> {
    let api: Api<Lane> = Api::namespaced(c.clone(), ns);
    api.get_opt(name).await.unwrap()?.status
}

fn condition<'a>(
    status: &'a lane_kube::crd::LaneStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test]
async fn deployments_and_merged_routes_follow_the_lanes() {
    let ns = "op-follow";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    baseline(&c, ns, "pay").await;
    let _op = start(&c, ns);
    let far = now() + 3600;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);

    lane(
        &c,
        ns,
        "a",
        None,
        &[("cart", "cart:a1"), ("pay", "pay:a1")],
        far,
    )
    .await;
    // Applied, not ready: the subset is there, the route not yet; a's requests go to baseline.
    wait_routes(&c, ns, "cart", &[("baseline", "baseline")]).await;
    assert_eq!(
        subsets(&c, ns, "cart").await.unwrap(),
        ["baseline", "lane-a"]
    );
    let status = eventually("a waits for ready replicas", || async {
        let s = lane_status(&c, ns, "a").await?;
        (condition(&s, "Routed")?.reason == "WaitingForReady").then_some(s)
    })
    .await;
    assert_eq!(status.phase, Some(LanePhase::Pending));
    assert_eq!(condition(&status, "Routed").unwrap().status, "False");
    // The Deployment controller's part, played by the test: a's replicas ready. Then a's routes.
    mark_ready(&c, ns, "cart-lane-a").await;
    mark_ready(&c, ns, "pay-lane-a").await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[("lane-a", "lane-a"), ("baseline", "baseline")],
    )
    .await;
    let d = deployments.get("cart-lane-a").await.unwrap();
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Lane", "a"));
    let lane_a = lanes.get("a").await.unwrap();
    assert!(lane_a.finalizers().iter().any(|f| f == operator::FINALIZER));

    // Stacked: b on a, with its own pay; its cart requests go to a's cart.
    lane(&c, ns, "b", Some("a"), &[("pay", "pay:b1")], far).await;
    // Two lanes on one host: c has its own cart.
    lane(&c, ns, "c", None, &[("cart", "cart:c1")], far).await;
    // Neither b's pay nor c's cart is ready: b's pay requests fall back to its parent a's pay,
    // c's cart requests to baseline.
    wait_routes(
        &c,
        ns,
        "pay",
        &[
            ("lane-a", "lane-a"),
            ("lane-b", "lane-a"),
            ("baseline", "baseline"),
        ],
    )
    .await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[
            ("lane-a", "lane-a"),
            ("lane-b", "lane-a"),
            ("baseline", "baseline"),
        ],
    )
    .await;
    // c's subset is there (its Deployment too), its route not yet.
    eventually("cart's subsets with lane-c", || async {
        (subsets(&c, ns, "cart").await? == ["baseline", "lane-a", "lane-c"]).then_some(())
    })
    .await;
    assert!(
        !routes(&c, ns, "cart")
            .await
            .unwrap()
            .iter()
            .any(|(name, _)| name == "lane-c")
    );
    let status = eventually("b waits for pay", || async {
        let s = lane_status(&c, ns, "b").await?;
        (condition(&s, "Routed")?.reason == "WaitingForReady").then_some(s)
    })
    .await;
    let served: Vec<(&str, &str)> = status
        .routes
        .iter()
        .map(|r| (r.service.as_str(), r.lane.as_str()))
        .collect();
    assert_eq!(served, [("op-follow.cart", "a"), ("op-follow.pay", "a")]);
    assert_eq!(status.phase, Some(LanePhase::Pending));
    mark_ready(&c, ns, "pay-lane-b").await;
    mark_ready(&c, ns, "cart-lane-c").await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[
            ("lane-a", "lane-a"),
            ("lane-b", "lane-a"),
            ("lane-c", "lane-c"),
            ("baseline", "baseline"),
        ],
    )
    .await;
    wait_routes(
        &c,
        ns,
        "pay",
        &[
            ("lane-a", "lane-a"),
            ("lane-b", "lane-b"),
            ("baseline", "baseline"),
        ],
    )
    .await;
    assert_eq!(
        subsets(&c, ns, "cart").await.unwrap(),
        ["baseline", "lane-a", "lane-c"]
    );
    let status = eventually("b's status names its own pay", || async {
        let s = lane_status(&c, ns, "b").await?;
        (s.routes.iter().any(|r| r.lane == "b")).then_some(s)
    })
    .await;
    let served: Vec<(&str, &str)> = status
        .routes
        .iter()
        .map(|r| (r.service.as_str(), r.lane.as_str()))
        .collect();
    assert_eq!(served, [("op-follow.cart", "a"), ("op-follow.pay", "b")]);
    assert_eq!(condition(&status, "Routed").unwrap().status, "True");
    assert_eq!(condition(&status, "Ready").unwrap().status, "True");
    assert_eq!(status.phase, Some(LanePhase::Ready));

    // Update: a new image for a's cart reaches its Deployment.
    lane(
        &c,
        ns,
        "a",
        None,
        &[("cart", "cart:a2"), ("pay", "pay:a1")],
        far,
    )
    .await;
    eventually("cart-lane-a runs cart:a2", || async {
        let d = deployments.get("cart-lane-a").await.ok()?;
        let image = d.spec?.template.spec?.containers.first()?.image.clone()?;
        (image == "cart:a2").then_some(())
    })
    .await;

    let status = eventually("a is Ready", || async {
        let s = lane_status(&c, ns, "a").await?;
        (s.phase == Some(LanePhase::Ready)).then_some(s)
    })
    .await;
    assert_eq!((status.services, status.ready_services), (2, 2));
    assert_eq!(condition(&status, "Ready").unwrap().status, "True");
    assert_eq!(condition(&status, "Conflict").unwrap().status, "False");

    // c leaves: its route, subset and Deployment go, then the Lane itself.
    lanes.delete("c", &DeleteParams::default()).await.unwrap();
    wait_routes(
        &c,
        ns,
        "cart",
        &[
            ("lane-a", "lane-a"),
            ("lane-b", "lane-a"),
            ("baseline", "baseline"),
        ],
    )
    .await;
    wait_gone(&lanes, "c").await;
    assert!(deployments.get_opt("cart-lane-c").await.unwrap().is_none());
    assert_eq!(
        subsets(&c, ns, "cart").await.unwrap(),
        ["baseline", "lane-a"]
    );

    // a leaves: b's cart requests fall back to baseline, so cart has no lane versions left and
    // its routing objects go; b keeps pay.
    lanes.delete("a", &DeleteParams::default()).await.unwrap();
    wait_gone(&lanes, "a").await;
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let dr: Api<DestinationRule> = Api::namespaced(c.clone(), ns);
    wait_gone(&vs, "cart-lanes").await;
    wait_gone(&dr, "cart-lanes").await;
    wait_routes(
        &c,
        ns,
        "pay",
        &[("lane-b", "lane-b"), ("baseline", "baseline")],
    )
    .await;
    for gone in ["cart-lane-a", "pay-lane-a"] {
        assert!(deployments.get_opt(gone).await.unwrap().is_none(), "{gone}");
    }
    lanes.delete("b", &DeleteParams::default()).await.unwrap();
    wait_gone(&lanes, "b").await;
    wait_gone(&vs, "pay-lanes").await;
    let left = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=lane-operator"))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);
}

#[tokio::test]
async fn a_foreign_virtual_service_is_not_overwritten() {
    let ns = "op-foreign";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let foreign = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "cart-canary", "namespace": ns},
        "spec": {"hosts": ["cart"],
                 "http": [{"route": [{"destination": {"host": "cart", "subset": "v2"}}]}]}
    });
    apply_json(&vs, "cart-canary", foreign).await;
    let before = vs.get("cart-canary").await.unwrap();
    let _op = start(&c, ns);
    lane(&c, ns, "f", None, &[("cart", "cart:f1")], now() + 3600).await;

    let status = eventually("f reports the conflict", || async {
        let s = lane_status(&c, ns, "f").await?;
        (condition(&s, "Conflict")?.status == "True").then_some(s)
    })
    .await;
    let conflict = condition(&status, "Conflict").unwrap();
    assert_eq!(conflict.reason, "ForeignVirtualService");
    assert!(
        conflict.message.contains("op-foreign/cart-canary"),
        "{}",
        conflict.message
    );
    let routed = condition(&status, "Routed").unwrap();
    assert_eq!(
        (routed.status.as_str(), routed.reason.as_str()),
        ("False", "Conflict")
    );
    assert_eq!(status.phase, Some(LanePhase::Degraded));

    let after = vs.get("cart-canary").await.unwrap();
    assert_eq!(after.spec, before.spec);
    assert_eq!(after.resource_version(), before.resource_version());
    assert!(vs.get_opt("cart-lanes").await.unwrap().is_none());
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    assert!(deployments.get_opt("cart-lane-f").await.unwrap().is_none());

    // Once its owner removes it, the operator routes the lane.
    vs.delete("cart-canary", &DeleteParams::default())
        .await
        .unwrap();
    mark_ready(&c, ns, "cart-lane-f").await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[("lane-f", "lane-f"), ("baseline", "baseline")],
    )
    .await;
    let status = eventually("f routed", || async {
        let s = lane_status(&c, ns, "f").await?;
        (condition(&s, "Routed")?.status == "True").then_some(s)
    })
    .await;
    assert_eq!(condition(&status, "Conflict").unwrap().status, "False");
}

/// An event the reclaim test saw, by the etcd revision it carries (one etcd: revisions of all
/// kinds are one sequence).
#[derive(Debug)]
struct Seen {
    revision: u64,
    what: String,
}

fn revision<K: kube::Resource>(k: &K) -> u64 {
    k.meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn record<K>(
    api: Api<K>,
    tx: tokio::sync::mpsc::UnboundedSender<Seen>,
    describe: fn(&watcher::Event<K>) -> Option<String>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(Ok(event)) = events.next().await {
            let obj = match &event {
                watcher::Event::Apply(k) | watcher::Event::Delete(k) => k,
                _ => continue,
            };
            if let Some(what) = describe(&event) {
                let _ = tx.send(Seen {
                    revision: revision(obj),
                    what,
                });
            }
        }
    })
}

#[tokio::test]
async fn an_expired_lane_is_reclaimed_routes_first() {
    let ns = "op-expiry";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    let _op = start(&c, ns);
    // Routed first with a far expiry (however slow the machine), then the expiry moved close:
    // nothing else happens after it, so the operator must wake at the expiry by itself.
    lane(&c, ns, "old", None, &[("cart", "cart:old")], now() + 3600).await;
    mark_ready(&c, ns, "cart-lane-old").await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[("lane-old", "lane-old"), ("baseline", "baseline")],
    )
    .await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watchers = [
        record::<VirtualService>(Api::namespaced(c.clone(), ns), tx.clone(), |e| match e {
            watcher::Event::Apply(vs)
                if !route_pairs(&vs.spec).iter().any(|(_, s)| s == "lane-old") =>
            {
                Some("routes without lane-old".into())
            }
            watcher::Event::Delete(_) => Some("VirtualService deleted".into()),
            _ => None,
        }),
        record::<Deployment>(Api::namespaced(c.clone(), ns), tx.clone(), |e| match e {
            watcher::Event::Delete(d) if d.name_any() == "cart-lane-old" => {
                Some("Deployment deleted".into())
            }
            _ => None,
        }),
        record::<Lane>(Api::namespaced(c.clone(), ns), tx, |e| match e {
            watcher::Event::Delete(_) => Some("Lane deleted".into()),
            _ => None,
        }),
    ];
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    let expires = now() + 2;
    lane(&c, ns, "old", None, &[("cart", "cart:old")], expires).await;
    let deadline = Instant::now() + Duration::from_secs(2) + WAIT;
    let mut seen: Vec<Seen> = Vec::new();
    while !seen.iter().any(|s| s.what == "Lane deleted") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => panic!("the expired Lane was not reclaimed; saw {seen:?}"),
        }
    }
    for w in watchers {
        w.abort();
    }
    assert!(now() >= expires, "reclaimed before it expired");
    assert!(lanes.get_opt("old").await.unwrap().is_none());
    seen.sort_by_key(|s| s.revision);
    let order: Vec<&str> = seen.iter().map(|s| s.what.as_str()).collect();
    let at = |what: &str| {
        order
            .iter()
            .position(|w| *w == what)
            .unwrap_or_else(|| panic!("no {what} in {order:?}"))
    };
    assert!(
        at("routes without lane-old") < at("Deployment deleted"),
        "{order:?}"
    );
    assert!(at("Deployment deleted") < at("Lane deleted"), "{order:?}");
    assert!(
        at("VirtualService deleted") < at("Lane deleted"),
        "{order:?}"
    );
}

/// What the managed objects of `ns` look like: each VirtualService's and DestinationRule's spec,
/// each Deployment's replicas, images and labels, with resource versions.
async fn snapshot(c: &Client, ns: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=lane-operator");
    let mut objects = BTreeMap::new();
    let mut versions = BTreeMap::new();
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    for o in vs.list(&managed).await.unwrap() {
        objects.insert(
            format!("vs/{}", o.name_any()),
            serde_json::to_string(&o.spec).unwrap(),
        );
        versions.insert(
            format!("vs/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let dr: Api<DestinationRule> = Api::namespaced(c.clone(), ns);
    for o in dr.list(&managed).await.unwrap() {
        objects.insert(
            format!("dr/{}", o.name_any()),
            serde_json::to_string(&o.spec).unwrap(),
        );
        versions.insert(
            format!("dr/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let d: Api<Deployment> = Api::namespaced(c.clone(), ns);
    for o in d.list(&managed).await.unwrap() {
        let spec = o.spec.clone().unwrap();
        let images: Vec<_> = spec
            .template
            .spec
            .iter()
            .flat_map(|p| p.containers.iter().map(|c| c.image.clone()))
            .collect();
        objects.insert(
            format!("deploy/{}", o.name_any()),
            format!(
                "{:?} {:?} {:?} {:?}",
                spec.replicas,
                images,
                spec.template.metadata.map(|m| m.labels),
                o.metadata.labels
            ),
        );
        versions.insert(
            format!("deploy/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    (objects, versions)
}

/// What `plan::desired` says the managed objects of `ns` should be, in [`snapshot`]'s form.
async fn expected(c: &Client, ns: &str, procs: &[&str]) -> BTreeMap<String, String> {
    let lanes: Vec<Lane> = Api::<Lane>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|l| l.metadata.deletion_timestamp.is_none())
        .collect();
    let mut baseline = Vec::new();
    for p in procs {
        baseline.push(BaselineService {
            service: Api::<Service>::namespaced(c.clone(), ns)
                .get(p)
                .await
                .unwrap(),
            deployment: Api::<Deployment>::namespaced(c.clone(), ns)
                .get(p)
                .await
                .unwrap(),
        });
    }
    let now = u64::try_from(now()).unwrap();
    // The lane Deployments as they are: their readiness decides the routes.
    let existing = plan::Existing {
        deployments: Api::<Deployment>::namespaced(c.clone(), ns)
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=lane-operator"))
            .await
            .unwrap()
            .items,
        ..Default::default()
    };
    let want = plan::desired(&lanes, &baseline, &existing, &plan::Options::new(now));
    let mut out = BTreeMap::new();
    for o in &want.virtual_services {
        out.insert(
            format!("vs/{}", o.name_any()),
            serde_json::to_string(&o.spec).unwrap(),
        );
    }
    for o in &want.destination_rules {
        out.insert(
            format!("dr/{}", o.name_any()),
            serde_json::to_string(&o.spec).unwrap(),
        );
    }
    for o in &want.deployments {
        let spec = o.spec.clone().unwrap();
        let images: Vec<_> = spec
            .template
            .spec
            .iter()
            .flat_map(|p| p.containers.iter().map(|c| c.image.clone()))
            .collect();
        out.insert(
            format!("deploy/{}", o.name_any()),
            format!(
                "{:?} {:?} {:?} {:?}",
                spec.replicas,
                images,
                spec.template.metadata.map(|m| m.labels),
                o.metadata.labels
            ),
        );
    }
    out
}

/// Runs passes of a fresh operator that stops after 0, 1, 2, … writes (a restart at every point
/// of the reconcile), then an uninterrupted one; returns how many restarts it took.
async fn restart_at_every_write(c: &Client, ns: &str) -> usize {
    for budget in 0..200 {
        let op = Operator::new(c.clone(), config(ns))
            .unwrap()
            .with_write_budget(budget);
        match op.reconcile_once().await {
            Ok(_) => return budget,
            Err(Error::Interrupted(_)) => {}
            Err(e) => panic!("pass failed: {e}"),
        }
    }
    panic!("no pass finished within 200 writes")
}

#[tokio::test]
async fn restarting_mid_reconcile_converges_to_the_same_objects() {
    let ns = "op-restart";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    baseline(&c, ns, "pay").await;
    let far = now() + 3600;
    lane(
        &c,
        ns,
        "r1",
        None,
        &[("cart", "cart:1"), ("pay", "pay:1")],
        far,
    )
    .await;
    lane(&c, ns, "r2", Some("r1"), &[("cart", "cart:2")], far).await;
    lane(&c, ns, "r3", None, &[("pay", "pay:3")], far).await;

    let restarts = restart_at_every_write(&c, ns).await;
    assert!(restarts >= 3, "only {restarts} restarts");
    let (got, versions) = snapshot(&c, ns).await;
    assert_eq!(got, expected(&c, ns, &["cart", "pay"]).await);
    // A fixed point: another pass changes no managed object.
    let op = Operator::new(c.clone(), config(ns)).unwrap();
    op.reconcile_once().await.unwrap();
    assert_eq!(snapshot(&c, ns).await.1, versions);
    // Nor does a full pass, which applies every lane Deployment again.
    let full = op.reconcile_all().await.unwrap();
    assert!(
        full.writes
            .iter()
            .any(|w| w.starts_with("apply Deployment")),
        "{full:?}"
    );
    assert_eq!(snapshot(&c, ns).await.1, versions);

    // The versions become ready (the test plays the Deployment controller): their routes are
    // added, again with a restart at every write.
    for d in ["cart-lane-r1", "pay-lane-r1", "cart-lane-r2", "pay-lane-r3"] {
        mark_ready(&c, ns, d).await;
    }
    restart_at_every_write(&c, ns).await;
    let (got, _) = snapshot(&c, ns).await;
    assert_eq!(got, expected(&c, ns, &["cart", "pay"]).await);
    assert!(got["vs/cart-lanes"].contains("lane-r2"), "{got:?}");

    // Teardown interrupted at every write too: r1 goes, r2 falls back to baseline for cart.
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    lanes.delete("r1", &DeleteParams::default()).await.unwrap();
    restart_at_every_write(&c, ns).await;
    // The finalizer came off in that pass; the Lane is gone.
    assert!(lanes.get_opt("r1").await.unwrap().is_none());
    let (got, _) = snapshot(&c, ns).await;
    assert_eq!(got, expected(&c, ns, &["cart", "pay"]).await);
    assert!(
        got.contains_key("vs/cart-lanes"),
        "r2 still has cart: {got:?}"
    );
}

#[tokio::test]
async fn lane_applied_to_virtual_service_updated_latency() {
    let ns = "op-latency";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    // The default debounce, as `lane operator` runs.
    let op = Operator::new(
        c.clone(),
        Config {
            namespaces: vec![ns.to_owned()],
            ..Config::default()
        },
    )
    .unwrap();
    let _op = Running(tokio::spawn(op.run(std::future::pending())));
    // Routes wait for a ready replica: the test plays the Deployment controller, marking each
    // lane Deployment ready as soon as it appears (the figure includes that round trip).
    let _controller = Running(auto_ready(&c, ns));
    lane(&c, ns, "warm", None, &[("cart", "cart:w")], now() + 3600).await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[("lane-warm", "lane-warm"), ("baseline", "baseline")],
    )
    .await;

    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let mut events = std::pin::pin!(watcher(vs, watcher::Config::default()));
    let n = 20;
    let mut took = Vec::new();
    for i in 0..n {
        let id = format!("bench-{i}");
        let subset = format!("lane-{id}");
        let started = Instant::now();
        lane(&c, ns, &id, None, &[("cart", "cart:b")], now() + 3600).await;
        loop {
            let event = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("the VirtualService changed")
                .expect("the watch goes on")
                .expect("a watch event");
            if let watcher::Event::Apply(v) | watcher::Event::InitApply(v) = &event
                && route_pairs(&v.spec).iter().any(|(_, s)| *s == subset)
            {
                break;
            }
        }
        took.push(started.elapsed());
    }
    took.sort();
    let p50 = took[n / 2];
    let max = took[n - 1];
    eprintln!(
        "Lane applied -> merged VirtualService updated, N={n}: p50 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(max < Duration::from_secs(5), "{took:?}");
}

/// `deploy/operator.yaml` passes the API server's validation (server-side dry-run), and its
/// ClusterRole lets the operator's ServiceAccount do everything the operator does, and no more
/// than reading with Services.
#[tokio::test]
async fn operator_manifest_is_valid() {
    let c = setup("lane-system").await;
    let text = include_str!("../../../deploy/operator.yaml");
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (resource, _) = kube::discovery::pinned_kind(&c, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match obj.namespace() {
            Some(ns) => Api::namespaced_with(c.clone(), &ns, &resource),
            None => Api::all_with(c.clone(), &resource),
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply(TEST_MANAGER).dry_run(),
            &Patch::Apply(&v),
        )
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", types.kind, obj.name_any()));
        kinds.push(types.kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );

    // Now for real (the Deployment never gets pods here), and the operator run as its
    // ServiceAccount: the ClusterRole is enough for watching, applying, deleting, finalizers and
    // status.
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let gvk = GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (resource, _) = kube::discovery::pinned_kind(&c, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match obj.namespace() {
            Some(ns) => Api::namespaced_with(c.clone(), &ns, &resource),
            None => Api::all_with(c.clone(), &resource),
        };
        apply_json(&api, &obj.name_any(), v).await;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(c.clone(), "lane-system");
    let token = accounts
        .create_token_request(
            "lane-operator",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let admin = std::fs::read_to_string(ApiServer::shared().kubeconfig("admin")).unwrap();
    let mut kc: serde_json::Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"][0]["user"] = json!({"token": token});
    let kc = kube::config::Kubeconfig::from_yaml(&serde_yaml::to_string(&kc).unwrap()).unwrap();
    let sa = Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();

    let ns = "op-rbac";
    setup(ns).await;
    baseline(&c, ns, "cart").await;
    // Elected as `lane operator` runs by default: the Role in deploy/operator.yaml lets it take
    // the Lease lane-system/lane-operator.
    let elector = lane_kube::lease::Elector::new(
        sa.clone(),
        lane_kube::lease::LeaseConfig::new("lane-system", "lane-operator", "rbac-test"),
    );
    let _op = Running(tokio::spawn(
        Operator::new(sa.clone(), config(ns))
            .unwrap()
            .run_elected(elector, std::future::pending()),
    ));
    lane(&c, ns, "sa", None, &[("cart", "cart:sa")], now() + 3600).await;
    mark_ready(&c, ns, "cart-lane-sa").await;
    wait_routes(
        &c,
        ns,
        "cart",
        &[("lane-sa", "lane-sa"), ("baseline", "baseline")],
    )
    .await;
    eventually("the status written as the ServiceAccount", || async {
        let s = lane_status(&c, ns, "sa").await?;
        (condition(&s, "Routed")?.status == "True").then_some(())
    })
    .await;
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    lanes.delete("sa", &DeleteParams::default()).await.unwrap();
    wait_gone(&lanes, "sa").await;
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    wait_gone(&vs, "cart-lanes").await;
    // Least privilege: Services are read-only to it.
    let services: Api<Service> = Api::namespaced(sa, ns);
    match services.delete("cart", &DeleteParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e}"),
        other => panic!("the operator's ServiceAccount deleted a Service: {other:?}"),
    }
}

/// A Lane in a namespace of its own, versions in the service's: no owner reference (Kubernetes
/// ignores cross-namespace owners), the `lane.dev/lane-object` annotation instead, and the
/// operator, not the garbage collector, removes the Deployment with the Lane.
#[tokio::test]
async fn a_lane_in_another_namespace_than_its_services() {
    let (lanes_ns, shop) = ("op-split-lanes", "op-split-shop");
    let c = setup(lanes_ns).await;
    setup(shop).await;
    baseline(&c, shop, "cart").await;
    let op = Operator::new(
        c.clone(),
        Config {
            namespaces: vec![lanes_ns.to_owned(), shop.to_owned()],
            debounce: Duration::from_millis(10),
            ..Config::default()
        },
    )
    .unwrap();
    let _op = Running(tokio::spawn(op.run(std::future::pending())));
    let lanes: Api<Lane> = Api::namespaced(c.clone(), lanes_ns);
    let spec = LaneSpec {
        data: Vec::new(),
        owner: "bob@example.com".into(),
        parent: None,
        expires: time(now() + 3600),
        services: BTreeMap::from([(
            format!("{shop}.cart"),
            LaneService {
                image: "cart:x".into(),
                version: "feature@x".into(),
                ..Default::default()
            },
        )]),
    };
    let mut value = serde_json::to_value(Lane::new("x", spec)).unwrap();
    value["metadata"]["namespace"] = json!(lanes_ns);
    apply_json(&lanes, "x", value).await;
    mark_ready(&c, shop, "cart-lane-x").await;
    wait_routes(
        &c,
        shop,
        "cart",
        &[("lane-x", "lane-x"), ("baseline", "baseline")],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), shop);
    let d = deployments.get("cart-lane-x").await.unwrap();
    assert!(d.metadata.owner_references.is_none());
    assert_eq!(
        d.annotations()
            .get(plan::LANE_OBJECT_ANNOTATION)
            .map(String::as_str),
        Some("op-split-lanes/x")
    );
    lanes.delete("x", &DeleteParams::default()).await.unwrap();
    wait_gone(&lanes, "x").await;
    wait_gone(&deployments, "cart-lane-x").await;
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), shop);
    wait_gone(&vs, "cart-lanes").await;
}
