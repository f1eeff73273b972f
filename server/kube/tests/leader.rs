//! Leader election against a real kube-apiserver: two operators on one scope, each a candidate for
//! the same `coordination.k8s.io/v1` Lease (short durations so the test is quick). Only the holder
//! writes; when it is stopped (cleanly: it releases the Lease; or killed: the Lease expires) the
//! other takes over and converges the cluster.
//!
//! A bare API server runs no controllers: the test marks lane Deployments ready itself, playing
//! the Deployment controller.

mod cluster;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kcr_networking_istio_io::v1::virtualservices::VirtualService;
use kube::Client;
use kube::api::Api;
use lane_kube::crd::{Lane, LaneService, LaneSpec};
use lane_kube::lease::{Elector, LeaseConfig};
use lane_kube::operator::{Config, Operator};
use serde_json::json;

use cluster::{apply_json, baseline, eventually, mark_ready, setup};

fn lease(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        renew_every: Duration::from_millis(400),
        retry_every: Duration::from_millis(200),
        ..LeaseConfig::new(ns, "lane-operator", identity)
    }
}

fn operator(c: &Client, ns: &str) -> Operator {
    Operator::new(
        c.clone(),
        Config {
            namespaces: vec![ns.to_owned()],
            debounce: Duration::from_millis(10),
            ..Config::default()
        },
    )
    .unwrap()
}

/// A replica: its operator (for its write count), its task, and the way to stop it cleanly.
struct Replica {
    op: Operator,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn replica(c: &Client, ns: &str, identity: &str) -> Replica {
    let op = operator(c, ns);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let elector = Elector::new(c.clone(), lease(ns, identity));
    let task = tokio::spawn(op.clone().run_elected(elector, async move {
        let _ = stopped.await;
    }));
    Replica {
        op,
        task,
        stop: Some(stop),
    }
}

async fn holder(c: &Client, ns: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(c.clone(), ns);
    api.get_opt("lane-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

async fn lane(c: &Client, ns: &str, name: &str) {
    let lanes: Api<Lane> = Api::namespaced(c.clone(), ns);
    let expires = Timestamp::now().as_second() + 3600;
    let spec = LaneSpec {
        owner: "alice@example.com".into(),
        parent: None,
        expires: Time(Timestamp::from_second(expires).unwrap()),
        services: [(
            format!("{ns}.cart"),
            LaneService {
                image: format!("cart:{name}"),
                version: format!("feature@{name}"),
                ..Default::default()
            },
        )]
        .into(),
        data: Vec::new(),
    };
    let mut value = serde_json::to_value(Lane::new(name, spec)).unwrap();
    value["metadata"]["namespace"] = json!(ns);
    apply_json(&lanes, name, value).await;
}

async fn routed(c: &Client, ns: &str, lane_id: &str) {
    let api: Api<VirtualService> = Api::namespaced(c.clone(), ns);
    let subset = format!("lane-{lane_id}");
    eventually(&format!("a route to {subset}"), || async {
        let vs = api.get_opt("cart-lanes").await.ok()??;
        vs.spec
            .http?
            .iter()
            .any(|h| h.name.as_deref() == Some(subset.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_replica_writes_and_the_other_takes_over() {
    let ns = "op-leader";
    let c = setup(ns).await;
    baseline(&c, ns, "cart").await;

    let mut a = replica(&c, ns, "replica-a");
    eventually("replica-a leads", || async {
        (holder(&c, ns).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let mut b = replica(&c, ns, "replica-b");
    lane(&c, ns, "one").await;
    mark_ready(&c, ns, "cart-lane-one").await;
    routed(&c, ns, "one").await;
    // b has been a candidate all along: it wrote nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.op.writes_started() > 0);
    assert_eq!(b.op.writes_started(), 0, "the candidate wrote");
    assert_eq!(holder(&c, ns).await.as_deref(), Some("replica-a"));

    // A clean stop: a's last pass ends, it releases the Lease, b takes over at once (well before
    // the Lease would expire) and converges a change made meanwhile.
    a.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut a.task)
        .await
        .expect("a stops")
        .unwrap();
    let a_writes = a.op.writes_started();
    lane(&c, ns, "two").await;
    eventually("replica-b leads", || async {
        (holder(&c, ns).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    mark_ready(&c, ns, "cart-lane-two").await;
    routed(&c, ns, "two").await;
    assert!(b.op.writes_started() > 0);
    assert_eq!(a.op.writes_started(), a_writes, "a wrote after it stopped");

    // A crash: b's task is killed without releasing. c takes over once the Lease expires.
    let c_replica = replica(&c, ns, "replica-c");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c_replica.op.writes_started(), 0);
    b.task.abort();
    let _ = (&mut b.task).await;
    let started = std::time::Instant::now();
    lane(&c, ns, "three").await;
    eventually("replica-c leads", || async {
        (holder(&c, ns).await.as_deref() == Some("replica-c")).then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "took over before the Lease expired: {:?}",
        started.elapsed()
    );
    mark_ready(&c, ns, "cart-lane-three").await;
    routed(&c, ns, "three").await;
    assert!(c_replica.op.writes_started() > 0);
    let lease: Api<Lease> = Api::namespaced(c.clone(), ns);
    let transitions = lease
        .get("lane-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .lease_transitions;
    assert_eq!(transitions, Some(2), "a → b → c");
    c_replica.task.abort();
}
