//! The routing decision: which instance serves a request for service S carrying lane value L.
//!
//! **Architecture invariant** (`docs/contracts.md`, "The routing invariant"): with no L or an
//! invalid L the request reaches a baseline instance; otherwise an instance of the first lane in
//! L's chain (L, its parent, …) that has a healthy instance of S; otherwise baseline. Never a lane
//! outside the chain, never a lane instance without L.
//!
//! Tables are built in one place, [`RoutingTable::from_lanes`], from lane documents and the
//! instances a backend reports, and every component that needs a routing answer asks
//! [`RoutingTable::route`]: the router (its table comes from the local agent's state), `lane trace`
//! and `lane demo` (theirs from a backend's status, through `lane_api::routing_table`), and the
//! standalone `lane router`.

use std::collections::{HashMap, HashSet};

use crate::header::LaneValue;
use crate::id::{LaneId, LaneRef, ServiceId};
use crate::lane::{Lane, MAX_CHAIN_DEPTH};

/// One registered instance, as a backend reports it. `T` is whatever the caller needs to reach it
/// (a socket address for the router, a pod name for a resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint<T> {
    pub service: ServiceId,
    pub lane: LaneRef,
    pub healthy: bool,
    pub target: T,
}

#[derive(Debug, Clone)]
struct ServiceRoutes<T> {
    baseline: Vec<T>,
    lanes: HashMap<LaneId, Vec<T>>,
}

impl<T> Default for ServiceRoutes<T> {
    fn default() -> Self {
        ServiceRoutes {
            baseline: Vec::new(),
            lanes: HashMap::new(),
        }
    }
}

/// The result of routing one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a, T> {
    /// Serve from these healthy targets of `lane` (baseline or a lane of the request's chain).
    Serve { lane: LaneRef, targets: &'a [T] },
    /// The service is registered but has no healthy instance anywhere the request may go.
    NoHealthyInstance,
    /// Nothing is registered under this service id.
    UnknownService,
}

impl<T> Decision<'_, T> {
    /// The lane that serves the request: `None` when nothing can.
    pub fn lane(&self) -> Option<&LaneRef> {
        match self {
            Decision::Serve { lane, .. } => Some(lane),
            _ => None,
        }
    }
}

/// An immutable snapshot of a registry, indexed for routing. Build a new one on every change.
#[derive(Debug, Clone)]
pub struct RoutingTable<T> {
    services: HashMap<ServiceId, ServiceRoutes<T>>,
    parents: HashMap<LaneId, LaneId>,
    generation: u64,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable {
            services: HashMap::new(),
            parents: HashMap::new(),
            generation: 0,
        }
    }
}

impl<T: Clone> RoutingTable<T> {
    /// Indexes `endpoints`; only healthy ones are routable. `parents` maps a lane to its parent.
    pub fn new(
        endpoints: impl IntoIterator<Item = Endpoint<T>>,
        parents: impl IntoIterator<Item = (LaneId, LaneId)>,
        generation: u64,
    ) -> Self {
        let mut services: HashMap<ServiceId, ServiceRoutes<T>> = HashMap::new();
        for ep in endpoints {
            let routes = services.entry(ep.service).or_default();
            if !ep.healthy {
                continue;
            }
            match ep.lane {
                LaneRef::Baseline => routes.baseline.push(ep.target),
                LaneRef::Lane(id) => routes.lanes.entry(id).or_default().push(ep.target),
            }
        }
        RoutingTable {
            services,
            parents: parents.into_iter().collect(),
            generation,
        }
    }
}

impl<T: Clone> RoutingTable<T> {
    /// Builds the table from the lane documents (their parents make the chains) and the instances
    /// a backend reports. This is how every component builds one.
    pub fn from_lanes<'l>(
        lanes: impl IntoIterator<Item = &'l Lane>,
        endpoints: impl IntoIterator<Item = Endpoint<T>>,
        generation: u64,
    ) -> Self {
        let parents = lanes
            .into_iter()
            .filter_map(|l| l.parent.clone().map(|p| (l.id.clone(), p)));
        RoutingTable::new(endpoints, parents, generation)
    }
}

impl<T> RoutingTable<T> {
    /// A counter that grows with every registry change the table was built from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn has_service(&self, service: &ServiceId) -> bool {
        self.services.contains_key(service)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceId> {
        self.services.keys()
    }

    /// `lane`, its parent, its parent's parent, … (bounded; stops at a cycle).
    pub fn chain<'a>(&'a self, lane: &'a LaneId) -> Vec<&'a LaneId> {
        let mut chain = vec![lane];
        let mut seen: HashSet<&LaneId> = HashSet::from([lane]);
        let mut cursor = lane;
        while let Some(parent) = self.parents.get(cursor) {
            if !seen.insert(parent) || chain.len() > MAX_CHAIN_DEPTH {
                break;
            }
            chain.push(parent);
            cursor = parent;
        }
        chain
    }

    /// Picks the targets for a request to `service` with lane value `value`.
    pub fn route(&self, service: &ServiceId, value: &LaneValue) -> Decision<'_, T> {
        let Some(routes) = self.services.get(service) else {
            return Decision::UnknownService;
        };
        if let LaneValue::Lane(lane) = value {
            for member in self.chain(lane) {
                if let Some(targets) = routes.lanes.get(member)
                    && !targets.is_empty()
                {
                    return Decision::Serve {
                        lane: LaneRef::Lane(member.clone()),
                        targets,
                    };
                }
            }
        }
        if routes.baseline.is_empty() {
            Decision::NoHealthyInstance
        } else {
            Decision::Serve {
                lane: LaneRef::Baseline,
                targets: &routes.baseline,
            }
        }
    }
}

impl<T: PartialEq> RoutingTable<T> {
    /// The decision [`RoutingTable::route`] makes when the targets in `failed` are taken as
    /// unhealthy: the first lane of the request's chain (then baseline) with a healthy target not
    /// in `failed`, and one of those targets (the `start`-th of them, round robin). The router
    /// asks it when an instance refused the connection of a request it has not sent yet.
    pub fn route_without(
        &self,
        service: &ServiceId,
        value: &LaneValue,
        failed: &[T],
        start: usize,
    ) -> Option<(LaneRef, &T)> {
        let routes = self.services.get(service)?;
        let pick = |targets: &'_ [T]| -> Option<usize> {
            let n = targets.len();
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| !failed.contains(&targets[i]))
        };
        if let LaneValue::Lane(lane) = value {
            for member in self.chain(lane) {
                if let Some(targets) = routes.lanes.get(member)
                    && let Some(i) = pick(targets)
                {
                    return Some((LaneRef::Lane(member.clone()), &targets[i]));
                }
            }
        }
        pick(&routes.baseline).map(|i| (LaneRef::Baseline, &routes.baseline[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(service: &str, lane: &str, healthy: bool, target: u32) -> Endpoint<u32> {
        Endpoint {
            service: service.parse().unwrap(),
            lane: lane.parse().unwrap(),
            healthy,
            target,
        }
    }

    fn lane(s: &str) -> LaneValue {
        LaneValue::Lane(s.parse().unwrap())
    }

    fn table() -> RoutingTable<u32> {
        RoutingTable::new(
            [
                ep("demo.a", "baseline", true, 1),
                ep("demo.b", "baseline", true, 2),
                ep("demo.b", "feature-x", true, 20),
                ep("demo.c", "baseline", true, 3),
                ep("demo.c", "stacked", true, 30),
                ep("demo.c", "feature-x", false, 31),
                ep("demo.d", "feature-x", true, 40),
            ],
            [("stacked".parse().unwrap(), "feature-x".parse().unwrap())],
            7,
        )
    }

    fn served(d: Decision<'_, u32>) -> (String, Vec<u32>) {
        match d {
            Decision::Serve { lane, targets } => (lane.to_string(), targets.to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scenarios() {
        let t = table();
        let b: ServiceId = "demo.b".parse().unwrap();
        let c: ServiceId = "demo.c".parse().unwrap();
        let cases: &[(&ServiceId, LaneValue, &str, &[u32])] = &[
            (&b, LaneValue::Absent, "baseline", &[2]),
            (&b, LaneValue::Baseline, "baseline", &[2]),
            (&b, LaneValue::Invalid("x".into()), "baseline", &[2]),
            (&b, lane("feature-x"), "feature-x", &[20]),
            (&b, lane("stacked"), "feature-x", &[20]),
            (&b, lane("other"), "baseline", &[2]),
            (&c, lane("stacked"), "stacked", &[30]),
            // feature-x's c is unhealthy: fall back to baseline.
            (&c, lane("feature-x"), "baseline", &[3]),
        ];
        for (service, value, want_lane, want_targets) in cases {
            let (got_lane, got) = served(t.route(service, value));
            assert_eq!(
                (got_lane.as_str(), got.as_slice()),
                (*want_lane, *want_targets)
            );
        }
    }

    #[test]
    fn missing_services() {
        let t = table();
        assert_eq!(
            t.route(&"demo.zz".parse().unwrap(), &LaneValue::Absent),
            Decision::UnknownService
        );
        // d exists only in a lane: requests without the lane have nowhere to go.
        let d: ServiceId = "demo.d".parse().unwrap();
        assert_eq!(t.route(&d, &LaneValue::Absent), Decision::NoHealthyInstance);
        assert_eq!(served(t.route(&d, &lane("feature-x"))).1, vec![40]);
    }

    #[test]
    fn chains_stop_at_cycles() {
        let t: RoutingTable<u32> = RoutingTable::new(
            [],
            [
                ("a".parse().unwrap(), "b".parse().unwrap()),
                ("b".parse().unwrap(), "a".parse().unwrap()),
            ],
            0,
        );
        let a: LaneId = "a".parse().unwrap();
        let chain: Vec<&str> = t.chain(&a).into_iter().map(LaneId::as_str).collect();
        assert_eq!(chain, ["a", "b"]);
    }
}
