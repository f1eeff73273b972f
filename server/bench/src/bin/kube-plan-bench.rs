//! Benchmark of the Kubernetes operator's decision, `lane_kube::plan::desired`: how long it takes
//! and how much memory it needs to compute every lane Deployment, DestinationRule and
//! VirtualService of a large cluster.
//!
//! ```text
//! cargo run --release -p lane-bench --bin kube-plan-bench -- [--lanes 1000] [--services 200] [--runs 21]
//! ```
//!
//! The cluster: `--services` services in namespaces of 10 (`app0.svc0` … ), each with a baseline
//! Service and Deployment (two containers, env); `--lanes` lanes, each with a version of 1–3
//! services picked by a fixed pseudo-random sequence, about a third stacked on an earlier lane
//! (chains up to the depth bound), and every tenth one expired. The inputs are built once; each
//! run calls `desired` on them. Reported: the median, fastest and slowest of `--runs` runs (after
//! one warm-up), the peak of heap bytes allocated during one run above what was allocated before
//! it (a counting global allocator, `peak_alloc`), and the output's size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use lane_kube::crd::{Lane, LaneService, LaneSpec};
use lane_kube::plan::{BaselineService, Existing, Options, desired};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const NOW: u64 = 1_767_225_600;

struct Args {
    lanes: usize,
    services: usize,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        lanes: 1000,
        services: 200,
        runs: 21,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || -> Result<usize, String> {
            let v = it.next().ok_or(format!("{flag} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--lanes" => args.lanes = number()?,
            "--services" => args.services = number()?,
            "--runs" => args.runs = number()?.max(1),
            "-h" | "--help" => {
                println!(
                    "kube-plan-bench [--lanes 1000] [--services 200] [--runs 21]: time and peak memory of lane_kube::plan::desired"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if args.services == 0 {
        return Err("--services must be at least 1".into());
    }
    Ok(args)
}

/// A small linear congruential generator: the same cluster on every run and machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn service_id(i: usize) -> (String, String) {
    (format!("app{}", i / 10), format!("svc{}", i % 10))
}

fn baseline(app: &str, proc_: &str) -> BaselineService {
    let meta = |l: &[(&str, &str)]| ObjectMeta {
        name: Some(proc_.to_owned()),
        namespace: Some(app.to_owned()),
        labels: Some(labels(l)),
        ..Default::default()
    };
    let env = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    BaselineService {
        service: Service {
            metadata: meta(&[("app", proc_)]),
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
            metadata: meta(&[("app", proc_), ("team", app)]),
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", proc_)])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[
                            ("app", proc_),
                            ("version", "v1"),
                            ("lane.dev/lane", "baseline"),
                        ])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![
                            Container {
                                name: proc_.to_owned(),
                                image: Some(format!("registry.example/{app}/{proc_}:1.0")),
                                env: Some(vec![
                                    env("LOG_LEVEL", "info"),
                                    env("REGION", "eu-west-1"),
                                    env("DB_URL", "mysql://db.example:3306/orders"),
                                ]),
                                ports: Some(vec![ContainerPort {
                                    container_port: 8080,
                                    ..Default::default()
                                }]),
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

fn time(secs: u64) -> Time {
    Time(Timestamp::from_second(secs as i64).unwrap_or_default())
}

fn lanes(n: usize, services: usize, rng: &mut Lcg) -> Vec<Lane> {
    (0..n)
        .map(|i| {
            let id = format!("lane-{i:04}");
            let parent = (i > 0 && rng.next(3) == 0).then(|| format!("lane-{:04}", rng.next(i)));
            let mut versions = BTreeMap::new();
            for _ in 0..1 + rng.next(3) {
                let (app, proc_) = service_id(rng.next(services));
                let mut env = BTreeMap::new();
                env.insert("LOG_LEVEL".to_owned(), "debug".to_owned());
                versions.insert(
                    format!("{app}.{proc_}"),
                    LaneService {
                        image: format!("registry.example/{app}/{proc_}:{id}"),
                        version: format!("feature/{id}@0123abcd"),
                        branch: Some(format!("feature/{id}")),
                        commit: Some("0123abcd0123abcd".into()),
                        env,
                        ..Default::default()
                    },
                );
            }
            let expires = if i % 10 == 9 { NOW - 1 } else { NOW + 86_400 };
            let mut lane = Lane::new(
                &id,
                LaneSpec {
                    data: Vec::new(),
                    owner: format!("dev{}@example.com", i % 50),
                    parent,
                    expires: time(expires),
                    services: versions,
                },
            );
            lane.metadata.namespace = Some("lanes".into());
            lane.metadata.uid = Some(format!("uid-{id}"));
            lane
        })
        .collect()
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kube-plan-bench: error: {e}");
            std::process::exit(2);
        }
    };
    let mut rng = Lcg(42);
    let bases: Vec<BaselineService> = (0..args.services)
        .map(|i| {
            let (app, proc_) = service_id(i);
            baseline(&app, &proc_)
        })
        .collect();
    let lanes = lanes(args.lanes, args.services, &mut rng);
    let options = Options::new(NOW);
    // The steady state: every lane Deployment the plan wants exists and reports a ready replica
    // (routes go only to ready versions), as the operator's list would hand them in.
    let mut existing = Existing::default();
    for mut d in desired(&lanes, &bases, &Existing::default(), &options).deployments {
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            ready_replicas: Some(1),
            ..Default::default()
        });
        existing.deployments.push(d);
    }

    // Warm-up, and the output's shape.
    let out = desired(&lanes, &bases, &existing, &options);
    let routes: usize = out
        .virtual_services
        .iter()
        .map(|vs| vs.spec.http.as_ref().map_or(0, Vec::len))
        .sum();
    let vs_bytes: Vec<usize> = out
        .virtual_services
        .iter()
        .map(|vs| serde_json::to_vec(vs).map_or(0, |b| b.len()))
        .collect();
    let dr_bytes: usize = out
        .destination_rules
        .iter()
        .map(|dr| serde_json::to_vec(dr).map_or(0, |b| b.len()))
        .sum();
    let largest_vs = vs_bytes.iter().copied().max().unwrap_or(0);
    let expired = out.expired.len();
    let conflicts = out.conflicts.len();
    let (deployments, drs, vss) = (
        out.deployments.len(),
        out.destination_rules.len(),
        out.virtual_services.len(),
    );
    drop(out);

    // What the output keeps, part by part: the heap freed by dropping each.
    let before = ALLOC.current_usage();
    let mut out = desired(&lanes, &bases, &existing, &options);
    let total = ALLOC.current_usage().saturating_sub(before);
    let mut freed = |part: &mut dyn FnMut(&mut lane_kube::plan::Desired)| {
        let was = ALLOC.current_usage();
        part(&mut out);
        was.saturating_sub(ALLOC.current_usage())
    };
    let kept_deployments = freed(&mut |o| o.deployments = Vec::new());
    let kept_vs = freed(&mut |o| o.virtual_services = Vec::new());
    let kept_dr = freed(&mut |o| o.destination_rules = Vec::new());
    drop(out);

    let mut times = Vec::with_capacity(args.runs);
    let mut peak = 0usize;
    for _ in 0..args.runs {
        let before = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        let start = Instant::now();
        let out = desired(&lanes, &bases, &existing, &options);
        times.push(start.elapsed());
        peak = peak.max(ALLOC.peak_usage().saturating_sub(before));
        drop(out);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);

    println!(
        "lanes {} ({} expired) over {} services; {} runs after a warm-up",
        args.lanes, expired, args.services, args.runs
    );
    println!(
        "output: {deployments} Deployments, {drs} DestinationRules, {vss} VirtualServices with {routes} HTTP routes; {conflicts} conflicts"
    );
    println!(
        "output size as JSON: VirtualServices {:.2} MiB (largest {:.1} KiB), DestinationRules {:.2} MiB",
        mib(vs_bytes.iter().sum()),
        largest_vs as f64 / 1024.0,
        mib(dr_bytes)
    );
    println!(
        "time per run: median {:.2} ms, fastest {:.2} ms, slowest {:.2} ms (target < 100 ms)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    println!(
        "peak heap during a run, above the inputs: {:.2} MiB (target < 50 MB); inputs {:.2} MiB",
        mib(peak),
        mib(ALLOC.current_usage())
    );
    println!(
        "heap the output keeps: {:.2} MiB: Deployments {:.2}, VirtualServices {:.2}, DestinationRules {:.2}, the rest (routes for status) {:.2}",
        mib(total),
        mib(kept_deployments),
        mib(kept_vs),
        mib(kept_dr),
        mib(total.saturating_sub(kept_deployments + kept_vs + kept_dr))
    );
}
