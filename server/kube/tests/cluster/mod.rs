//! Shared by the tests that run against the real kube-apiserver (`operator.rs`, `route.rs`): a
//! client per test user, idempotent applies, polling, the CRDs and a namespace, a baseline service.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kcr_networking_istio_io::v1::destinationrules::DestinationRule;
use kcr_networking_istio_io::v1::virtualservices::VirtualService;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use lane_kube::crd::Lane;
use lane_kube::operator;
use lane_tests::apiserver::ApiServer;
use serde_json::json;

/// The field manager the tests apply with.
pub const TEST_MANAGER: &str = "lane-test";

/// How long a test waits for the server or the operator to get somewhere.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn client(user: &str) -> Client {
    operator::client(Some(&ApiServer::shared().kubeconfig(user)))
        .await
        .expect("a client for the test server")
}

pub async fn apply_json<K>(api: &Api<K>, name: &str, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// Polls `check` until it answers, or fails the test naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Lane and Istio CRDs (idempotent), and a fresh namespace `ns`.
pub async fn setup(ns: &str) -> Client {
    let c = client("admin").await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let mut all = vec![
        serde_json::to_value(lane_kube::crd::crd()).unwrap(),
        serde_json::to_value(lane_kube::environment::crd()).unwrap(),
    ];
    let istio = include_str!("../operator/istio-crds.yaml");
    for doc in serde_yaml::Deserializer::from_str(istio) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        all.push(v);
    }
    for crd in all {
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        apply_json(&crds, &name, crd).await;
        eventually(&format!("CRD {name} established"), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
    // Established is not yet served: right after it, a list may answer 429 "storage is
    // (re)initializing".
    eventually("the new kinds listable", || async {
        let params = ListParams::default();
        Api::<Lane>::all(c.clone()).list(&params).await.ok()?;
        Api::<lane_kube::environment::LaneEnvironment>::all(c.clone())
            .list(&params)
            .await
            .ok()?;
        Api::<VirtualService>::all(c.clone())
            .list(&params)
            .await
            .ok()?;
        Api::<DestinationRule>::all(c.clone())
            .list(&params)
            .await
            .ok()?;
        Some(())
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    apply_json(
        &namespaces,
        ns,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .await;
    c
}

/// The baseline of `<ns>.<proc>`: Service `<proc>` and Deployment `<proc>` whose pods carry
/// `lane.dev/lane=baseline`.
pub async fn baseline(c: &Client, ns: &str, proc_: &str) {
    let services: Api<Service> = Api::namespaced(c.clone(), ns);
    apply_json(
        &services,
        proc_,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": proc_, "namespace": ns},
               "spec": {"selector": {"app": proc_}, "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    apply_json(
        &deployments,
        proc_,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": proc_, "namespace": ns, "labels": {"app": proc_}},
               "spec": {"replicas": 2,
                        "selector": {"matchLabels": {"app": proc_}},
                        "template": {
                            "metadata": {"labels": {"app": proc_, "lane.dev/lane": "baseline"}},
                            "spec": {"containers": [{"name": proc_,
                                                     "image": format!("registry.example/{proc_}:1")}]}}}}),
    )
    .await;
}

/// Plays the Deployment controller (a bare API server runs none): the Deployment `ns/name`
/// reports its replica ready, once it exists.
pub async fn mark_ready(c: &Client, ns: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(c.clone(), ns);
    eventually(&format!("Deployment {ns}/{name} marked ready"), || {
        let api = api.clone();
        async move {
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1,
                                                "availableReplicas": 1, "updatedReplicas": 1}})),
            )
            .await
            .ok()
            .map(|_| ())
        }
    })
    .await;
}

/// Plays the Deployment controller for every lane Deployment of `ns` until aborted: one that
/// reports no ready replica is marked ready as soon as it is seen.
#[allow(dead_code)] // not every test binary uses it
pub fn auto_ready(c: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let api: Api<Deployment> = Api::namespaced(c.clone(), ns);
    tokio::spawn(async move {
        let config = kube::runtime::watcher::Config::default()
            .labels("app.kubernetes.io/managed-by=lane-operator");
        let mut events = std::pin::pin!(kube::runtime::watcher(api.clone(), config));
        while let Some(event) = events.next().await {
            let (kube::runtime::watcher::Event::Apply(d)
            | kube::runtime::watcher::Event::InitApply(d)) = (match event {
                Ok(e) => e,
                Err(_) => continue,
            })
            else {
                continue;
            };
            if d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
            {
                continue;
            }
            let name = d.metadata.name.clone().unwrap_or_default();
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1,
                                                    "availableReplicas": 1, "updatedReplicas": 1}})),
                )
                .await;
        }
    })
}
