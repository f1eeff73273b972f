//! Builders for the plan's inputs, shared by the golden and the generated tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use lane_kube::crd::{Lane, LaneService, LaneSpec};
use lane_kube::plan::BaselineService;

/// `now` in every scenario: 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;

pub fn time(secs: u64) -> Time {
    Time(Timestamp::from_second(i64::try_from(secs).unwrap()).unwrap())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn meta(namespace: &str, name: &str, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: (!pairs.is_empty()).then(|| labels(pairs)),
        ..Default::default()
    }
}

/// The baseline of `<app>.<proc>`: Service `<proc>` and Deployment `<proc>` in namespace `<app>`,
/// two containers (the service's and a log shipper), pods labelled `lane.dev/lane=baseline` when
/// `labelled`.
pub fn baseline(app: &str, proc_: &str, labelled: bool) -> BaselineService {
    let mut pod_labels = vec![("app", proc_), ("version", "v1")];
    if labelled {
        pod_labels.push(("lane.dev/lane", "baseline"));
    }
    BaselineService {
        service: Service {
            metadata: meta(app, proc_, &[("app", proc_)]),
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", proc_)])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        },
        deployment: Deployment {
            metadata: meta(app, proc_, &[("app", proc_), ("team", "shop")]),
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", proc_), ("version", "v1")])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&pod_labels)),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![
                            Container {
                                name: proc_.to_owned(),
                                image: Some(format!("registry.example/{app}/{proc_}:1.0")),
                                env: Some(vec![
                                    EnvVar {
                                        name: "LOG_LEVEL".into(),
                                        value: Some("info".into()),
                                        value_from: None,
                                    },
                                    EnvVar {
                                        name: "REGION".into(),
                                        value: Some("eu".into()),
                                        value_from: None,
                                    },
                                ]),
                                ..Default::default()
                            },
                            Container {
                                name: "log-shipper".into(),
                                image: Some("registry.example/ops/shipper:7".into()),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        },
    }
}

/// A personal version of a service.
pub fn version(image: &str, version: &str) -> LaneService {
    LaneService {
        image: image.to_owned(),
        version: version.to_owned(),
        branch: Some("feature".into()),
        commit: Some("0123456789abcdef".into()),
        ..Default::default()
    }
}

/// A Lane object `<namespace>/<name>` (uid `uid-<name>`) expiring at `expires`.
pub fn lane(
    namespace: &str,
    name: &str,
    parent: Option<&str>,
    expires: u64,
    services: Vec<(&str, LaneService)>,
) -> Lane {
    let mut lane = Lane::new(
        name,
        LaneSpec {
            data: Vec::new(),
            owner: "alice@example.com".into(),
            parent: parent.map(str::to_owned),
            expires: time(expires),
            services: services
                .into_iter()
                .map(|(s, v)| (s.to_owned(), v))
                .collect(),
        },
    );
    lane.metadata.namespace = Some(namespace.to_owned());
    lane.metadata.uid = Some(format!("uid-{name}"));
    lane.metadata.creation_timestamp = Some(time(NOW - 3600));
    lane
}

/// The operator's lane Deployment `<proc>-lane-<lane>` of `service` as the cluster would report
/// it: `ready` replicas ready (none: not yet ready). Only its identity, label and status matter
/// to the plan.
pub fn lane_deployment_status(service: &str, lane: &str, ready: i32) -> Deployment {
    let (app, proc_) = service.split_once('.').unwrap();
    Deployment {
        metadata: ObjectMeta {
            namespace: Some(app.into()),
            name: Some(format!("{proc_}-lane-{lane}")),
            labels: Some(BTreeMap::from([(
                lane_kube::plan::MANAGED_BY_LABEL.to_owned(),
                lane_kube::plan::MANAGED_BY.to_owned(),
            )])),
            ..Default::default()
        },
        spec: None,
        status: Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            ready_replicas: Some(ready),
            ..Default::default()
        }),
    }
}

/// `existing` with every Deployment the plan wants for `lanes` reported ready, as after the
/// rollout of a first pass.
pub fn all_ready(
    lanes: &[Lane],
    bases: &[BaselineService],
    existing: &lane_kube::plan::Existing,
    options: &lane_kube::plan::Options,
) -> lane_kube::plan::Existing {
    let first = lane_kube::plan::desired(lanes, bases, existing, options);
    let mut out = existing.clone();
    for d in first.deployments {
        let mut d = d;
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            ready_replicas: Some(1),
            ..Default::default()
        });
        out.deployments.push(d);
    }
    out
}
