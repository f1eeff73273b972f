//! The routing invariant (`docs/contracts.md`) on the Consul-fed router's table and on the
//! resolver: generated lane documents and `health/service` answers are turned into the table the
//! router and every resolver build on each blocking-query answer (`lane_consul::watch::table`),
//! routed by it and picked from by [`lane_resolver::Resolver::pick`], and checked against a
//! reference model written here from the contract and from what Consul means (an instance is
//! routable only when all its checks pass; a `<prefix>-lane.*` instance belongs to the lane its
//! `lane=` tag names, and only while that lane has a document). Addresses are IP addresses, DNS
//! names that resolve, and names that do not (whose instances the table leaves out), as
//! `lane_consul::watch::table_resolving` builds it from the watcher's resolved names.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use lane_consul::client::{AgentService, HealthCheck, Node, ServiceEntry};
use lane_consul::watch::table_resolving;
use lane_core::lane::MAX_CHAIN_DEPTH;
use lane_core::{Decision, Lane, LaneId, LaneRef, LaneValue, ServiceId};
use proptest::prelude::*;

const PREFIX: &str = "gaia";
/// Lanes with a document.
const LANES: &[&str] = &["l0", "l1", "feature-x", "team-a"];
/// Lane names instances may be tagged with, or parents point at, that have no document.
const GHOSTS: &[&str] = &["gone", "never"];
const SERVICES: &[&str] = &["demo.a", "demo.b", "shop.cart"];
const STATUSES: &[&str] = &["passing", "warning", "critical"];

fn name_of(i: usize) -> &'static str {
    if i < LANES.len() {
        LANES[i]
    } else {
        GHOSTS[(i - LANES.len()) % GHOSTS.len()]
    }
}

#[derive(Debug, Clone)]
struct Inst {
    service: usize,
    /// `None`: a baseline instance (`gaia.<svc>`); else the lane its tag names (maybe a ghost).
    lane: Option<usize>,
    /// Its checks' statuses (the node check is always passing).
    checks: Vec<usize>,
    /// 0: an IP address; 1: a DNS name that resolves; 2: one that does not.
    addr: usize,
}

#[derive(Debug, Clone)]
struct Snapshot {
    parents: Vec<Option<usize>>,
    instances: Vec<Inst>,
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    let all = LANES.len() + GHOSTS.len();
    let parents = prop::collection::vec(prop::option::weighted(0.5, 0..all), LANES.len());
    let inst = (
        0..SERVICES.len(),
        prop::option::weighted(0.6, 0..all),
        prop::collection::vec(
            prop_oneof![6 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize)],
            0..3,
        ),
        prop_oneof![6 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)],
    )
        .prop_map(|(service, lane, checks, addr)| Inst {
            service,
            lane,
            checks,
            addr,
        });
    (parents, prop::collection::vec(inst, 0..16))
        .prop_map(|(parents, instances)| Snapshot { parents, instances })
}

fn target(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16))
}

impl Snapshot {
    fn lanes(&self) -> Vec<Lane> {
        LANES
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Lane::new(
                    l.parse().unwrap(),
                    self.parents[i].map(|p| name_of(p).parse().unwrap()),
                    "o",
                    0,
                    std::time::Duration::from_secs(60),
                )
            })
            .collect()
    }

    /// The `health/service` answers, by service name.
    fn entries(&self) -> BTreeMap<String, Vec<ServiceEntry>> {
        let mut out: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let svc = SERVICES[inst.service];
            let name = match inst.lane {
                None => format!("{PREFIX}.{svc}"),
                Some(_) => format!("{PREFIX}-lane.{svc}"),
            };
            let tags = inst
                .lane
                .map(|l| vec![format!("lane={}", name_of(l)), "owner=o".into()]);
            let mut checks = vec![HealthCheck {
                check_id: "serfHealth".into(),
                status: "passing".into(),
                output: String::new(),
                service_id: String::new(),
            }];
            checks.extend(inst.checks.iter().map(|s| HealthCheck {
                check_id: format!("service:{i}"),
                status: STATUSES[*s].into(),
                output: String::new(),
                service_id: format!("i{i}"),
            }));
            out.entry(name).or_default().push(ServiceEntry {
                node: Node {
                    node: "n".into(),
                    address: "10.0.0.1".into(),
                },
                service: AgentService {
                    id: format!("i{i}"),
                    service: String::new(),
                    tags,
                    address: match inst.addr {
                        0 => "127.0.0.1".into(),
                        1 => format!("host-{i}.resolves.test"),
                        _ => format!("host-{i}.does-not.test"),
                    },
                    port: target(i).port(),
                    meta: None,
                },
                checks,
            });
        }
        out
    }

    fn parent_of(&self, lane: &str) -> Option<&'static str> {
        let i = LANES.iter().position(|l| *l == lane)?;
        self.parents[i].map(name_of)
    }

    fn chain(&self, lane: &str) -> Vec<String> {
        let mut chain = vec![lane.to_owned()];
        let mut cursor = lane.to_owned();
        while let Some(p) = self.parent_of(&cursor) {
            if chain.iter().any(|l| l == p) || chain.len() == 1 + MAX_CHAIN_DEPTH {
                break;
            }
            chain.push(p.to_owned());
            cursor = p.to_owned();
        }
        chain
    }

    /// The model: routable instances of `svc` in `lane` (`None`: baseline), sorted.
    fn routable(&self, svc: &str, lane: Option<&str>) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, inst)| SERVICES[inst.service] == svc)
            .filter(|(_, inst)| inst.checks.iter().all(|s| *s == 0))
            .filter(|(_, inst)| inst.addr != 2)
            .filter(|(_, inst)| inst.lane.map(name_of) == lane)
            .map(|(i, _)| target(i))
            .collect();
        out.sort();
        out
    }

    /// Whether the table knows `svc` at all: some instance counts (any health).
    fn known(&self, svc: &str) -> bool {
        self.instances.iter().any(|inst| {
            SERVICES[inst.service] == svc
                && inst.addr != 2
                && inst.lane.is_none_or(|l| LANES.contains(&name_of(l)))
        })
    }

    fn expect(&self, svc: &str, value: &LaneValue) -> Option<(Option<String>, Vec<SocketAddr>)> {
        if let LaneValue::Lane(lane) = value {
            for member in self.chain(lane.as_str()) {
                // Instances of lanes without a document never count.
                if !LANES.contains(&member.as_str()) {
                    continue;
                }
                let t = self.routable(svc, Some(&member));
                if !t.is_empty() {
                    return Some((Some(member), t));
                }
            }
        }
        let t = self.routable(svc, None);
        (!t.is_empty()).then_some((None, t))
    }
}

/// What the watcher resolved: every `*.resolves.test` name (to the loopback address the model
/// expects), none of the others.
fn resolved(host: &str) -> Option<IpAddr> {
    host.ends_with(".resolves.test")
        .then_some(IpAddr::from([127, 0, 0, 1]))
}

fn lane_value() -> impl Strategy<Value = LaneValue> {
    prop_oneof![
        1 => Just(LaneValue::Absent),
        1 => Just(LaneValue::Baseline),
        1 => Just(LaneValue::Invalid("x y".into())),
        5 => (0..LANES.len() + GHOSTS.len()).prop_map(|i| LaneValue::Lane(name_of(i).parse::<LaneId>().unwrap())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_consul_fed_table_and_the_resolver_keep_the_routing_invariant(
        snap in snapshot(),
        reqs in prop::collection::vec((0..SERVICES.len(), lane_value()), 1..12),
    ) {
        let t = table_resolving(PREFIX, &snap.lanes(), &snap.entries(), 1, &resolved);
        let resolver = lane_resolver::Resolver::new(
            table_resolving(PREFIX, &snap.lanes(), &snap.entries(), 1, &resolved),
        );
        for (svc, value) in &reqs {
            // The resolver picks one of the model's targets, from the model's lane.
            let sid_r: ServiceId = SERVICES[*svc].parse().unwrap();
            match (resolver.pick(&sid_r, value), snap.expect(SERVICES[*svc], value)) {
                (Ok((lane, target)), Some((want_lane, targets))) => {
                    prop_assert_eq!(lane.lane().map(|l| l.as_str().to_owned()), want_lane);
                    prop_assert!(targets.contains(&target), "{} not in {:?}", target, targets);
                }
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "resolver {:?}, model {:?}", got, want),
            }
            let svc = SERVICES[*svc];
            let sid: ServiceId = svc.parse().unwrap();
            let got = match t.route(&sid, value) {
                Decision::Serve { lane, targets } => {
                    let mut targets = targets.to_vec();
                    targets.sort();
                    // Never a lane instance for a request without a lane.
                    if !matches!(value, LaneValue::Lane(_)) {
                        prop_assert_eq!(&lane, &LaneRef::Baseline);
                    }
                    Some((lane.lane().map(|l| l.as_str().to_owned()), targets))
                }
                Decision::NoHealthyInstance => {
                    prop_assert!(snap.known(svc), "{} unknown yet no-healthy", svc);
                    None
                }
                Decision::UnknownService => {
                    prop_assert!(!snap.known(svc), "{} known yet unknown", svc);
                    None
                }
            };
            prop_assert_eq!(got, snap.expect(svc, value), "{} {:?}", svc, value);
        }
    }
}
