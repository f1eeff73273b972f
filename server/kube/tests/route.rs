//! `lane_kube::route` against a real kube-apiserver (`lane_tests::apiserver`, one server for this
//! test binary, one namespace per test), with the operator's single pass run in-process as in
//! `tests/operator.rs`. Istio is not installed: `operator/istio-crds.yaml` gives the server
//! minimal VirtualService and DestinationRule CRDs.

mod cluster;

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kcr_networking_istio_io::v1::virtualservices::VirtualService;
use kube::Client;
use kube::api::Api;
use lane_kube::crd::{Lane, LaneService, LaneSpec};
use lane_kube::operator::{Config, Operator};
use lane_kube::plan::Conflict;
use lane_kube::route::{self, RouteView};
use serde_json::json;

use cluster::{apply_json, baseline, mark_ready, setup};

fn in_an_hour() -> Time {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Time(Timestamp::from_second(i64::try_from(now).unwrap() + 3600).unwrap())
}

fn lane_object(ns: &str, name: &str, proc_: &str, image: &str) -> Lane {
    let mut lane = Lane::new(
        name,
        LaneSpec {
            data: Vec::new(),
            owner: "alice@example.com".into(),
            parent: None,
            expires: in_an_hour(),
            services: [(
                format!("{ns}.{proc_}"),
                LaneService {
                    image: image.to_owned(),
                    version: format!("feature@{name}"),
                    ..Default::default()
                },
            )]
            .into(),
        },
    );
    lane.metadata.namespace = Some(ns.to_owned());
    lane
}

async fn lane(c: &Client, ns: &str, name: &str, proc_: &str, image: &str) {
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    let value = serde_json::to_value(lane_object(ns, name, proc_, image)).unwrap();
    apply_json(&lanes, name, value).await;
}

fn operator_for(c: &Client, ns: &str) -> Operator {
    let config = Config {
        namespaces: vec![ns.to_owned()],
        ..Config::default()
    };
    Operator::new(c.clone(), config).unwrap()
}

async fn view(op: &Operator, host: &str) -> RouteView {
    let service = route::parse_host(host).unwrap();
    route::view(op, &service, None).await.unwrap()
}

#[tokio::test]
async fn show_and_diff_follow_the_lanes_and_the_operator() {
    let ns = "route-one";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    lane(&c, ns, "a", "cart", "registry.example/cart:a").await;
    let op = operator_for(&c, ns);

    // Before the operator ran: the merged objects are wanted, nothing is live. Lane a's
    // Deployment does not exist yet, so not ready: its subset is wanted, its route not yet.
    let before = view(&op, &format!("cart.{ns}.svc.cluster.local")).await;
    assert!(before.conflicts.is_empty(), "{:?}", before.conflicts);
    assert!(before.live_virtual_service.is_none());
    let (vs, dr) = before.desired_yaml();
    assert!(vs.contains("kind: VirtualService"), "{vs}");
    assert!(vs.contains("name: cart-lanes"), "{vs}");
    assert!(!vs.contains("lane-a") && vs.contains("baseline"), "{vs}");
    assert!(!vs.contains("resourceVersion"), "{vs}");
    assert!(dr.contains("kind: DestinationRule"), "{dr}");
    assert!(dr.contains("lane.dev/lane: a"), "{dr}");
    let diff = before.diff();
    assert!(
        diff.contains("+++ desired VirtualService route-one/cart-lanes"),
        "{diff}"
    );
    assert!(
        diff.lines().any(|l| l.starts_with("+kind: VirtualService")),
        "{diff}"
    );

    // After one pass the cluster holds exactly what the plan wants.
    op.reconcile_once().await.unwrap();
    let after = view(&op, &format!("{ns}.cart")).await;
    assert!(after.live_virtual_service.is_some());
    assert_eq!(after.diff(), "", "live and desired differ after a pass");

    // The Deployment controller's part, played by the test: a's replica is ready. Now its route
    // is wanted, matching the lane header.
    mark_ready(&c, ns, "cart-lane-a").await;
    let ready = view(&op, &format!("{ns}.cart")).await;
    let diff = ready.diff();
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("name: lane-a")),
        "{diff}"
    );
    let (vs, _) = ready.desired_yaml();
    assert!(vs.contains("x-lane"), "{vs}");
    op.reconcile_once().await.unwrap();
    assert_eq!(view(&op, &format!("{ns}.cart")).await.diff(), "");

    // A new lane before the operator runs: its subset shows as an addition.
    lane(&c, ns, "b", "cart", "registry.example/cart:b").await;
    let changed = view(&op, &format!("{ns}.cart")).await;
    let diff = changed.diff();
    assert!(!diff.is_empty());
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("lane-b")),
        "{diff}"
    );
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with('-') && l.contains("lane-a")),
        "{diff}"
    );
    // Nothing was written by looking.
    let vss: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let live = vss.get("cart-lanes").await.unwrap();
    assert!(
        !serde_json::to_string(&live.spec)
            .unwrap()
            .contains("lane-b")
    );

    // A preview lane given in memory counts as if it were in the cluster.
    let preview = route::view(
        &op,
        &route::parse_host(&format!("{ns}.cart")).unwrap(),
        Some(&route::Preview {
            lane: "c".into(),
            image: "registry.example/cart:c".into(),
        }),
    )
    .await
    .unwrap();
    // Its version counts as ready (the routes once it is); b's is not ready yet.
    let (vs, _) = preview.desired_yaml();
    assert!(vs.contains("lane-c") && !vs.contains("lane-b"), "{vs}");

    op.reconcile_once().await.unwrap();
    assert_eq!(view(&op, &format!("{ns}.cart")).await.diff(), "");
}

#[tokio::test]
async fn a_foreign_virtual_service_is_a_named_conflict() {
    let ns = "route-foreign";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;
    let vs: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    apply_json(
        &vs,
        "cart-canary",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "cart-canary", "namespace": ns},
            "spec": {"hosts": ["cart"],
                     "http": [{"route": [{"destination": {"host": "cart", "subset": "v2"}}]}]}
        }),
    )
    .await;
    lane(&c, ns, "f", "cart", "registry.example/cart:f").await;
    let op = operator_for(&c, ns);
    let v = view(&op, &format!("{ns}.cart")).await;
    assert!(v.desired_virtual_service.is_none());
    assert!(v.desired_destination_rule.is_none());
    assert_eq!(v.diff(), "");
    match v.conflicts.as_slice() {
        [c @ Conflict::ForeignVirtualService { object, .. }] => {
            assert_eq!(object, "route-foreign/cart-canary");
            assert!(c.to_string().contains("route-foreign/cart-canary"));
        }
        other => panic!("want one ForeignVirtualService, got {other:?}"),
    }
    // Another service is not concerned.
    let other = view(&op, &format!("{ns}.pay")).await;
    assert!(other.conflicts.is_empty(), "{:?}", other.conflicts);
}
