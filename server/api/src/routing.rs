//! The routing table of a backend's [`Status`]: the one routing decision
//! ([`lane_core::RoutingTable`]), for the components that see a backend only through its status
//! (`lane trace`, `lane demo`, the standalone `lane router`).

use lane_core::{Endpoint, RoutingTable};

use crate::types::{InstanceState, InstanceView, Status};

/// Builds the routing table of `status`; `target` says how to reach an instance (`None`: it
/// cannot be reached from here, and is left out). Only healthy instances are routable.
pub fn routing_table<T: Clone>(
    status: &Status,
    generation: u64,
    target: impl Fn(&InstanceView) -> Option<T>,
) -> RoutingTable<T> {
    let instances = status
        .baseline
        .iter()
        .chain(status.lanes.iter().flat_map(|l| l.instances.iter()));
    let endpoints = instances.filter_map(|i| {
        Some(Endpoint {
            service: i.service.clone(),
            lane: i.lane.clone(),
            healthy: i.state == InstanceState::Healthy,
            target: target(i)?,
        })
    });
    RoutingTable::from_lanes(status.lanes.iter().map(|l| &l.lane), endpoints, generation)
}

#[cfg(test)]
mod tests {
    use lane_core::{Lane, LaneRef, LaneValue};

    use super::*;
    use crate::{InstanceId, LaneView, Placement, Revision};

    fn inst(service: &str, lane: &str, state: InstanceState) -> InstanceView {
        InstanceView {
            id: InstanceId::new(format!("{lane}/{service}")),
            service: service.parse().unwrap(),
            lane: lane.parse().unwrap(),
            placement: Placement::Registered {
                address: format!("{service}.{lane}:80"),
                node: None,
            },
            state,
            restarts: 0,
            version: None,
        }
    }

    #[test]
    fn a_status_routes_through_its_chains() {
        let lane = |id: &str, parent: Option<&str>, instances| LaneView {
            lane: Lane::new(
                id.parse().unwrap(),
                parent.map(|p| p.parse().unwrap()),
                "me",
                0,
                std::time::Duration::from_secs(60),
            ),
            chain: vec![],
            instances,
            merged: None,
        };
        let status = Status {
            backend: "test".into(),
            router: None,
            lane_header: "x-lane".into(),
            active_lane: LaneRef::Baseline,
            now: 0,
            lanes: vec![
                lane(
                    "team",
                    None,
                    vec![inst("demo.b", "team", InstanceState::Healthy)],
                ),
                lane(
                    "mine",
                    Some("team"),
                    vec![inst("demo.c", "mine", InstanceState::Unhealthy)],
                ),
            ],
            baseline: vec![
                inst("demo.b", "baseline", InstanceState::Healthy),
                inst("demo.c", "baseline", InstanceState::Healthy),
            ],
            baseline_sync: vec![],
            traffic: vec![],
            revision: Revision::new("1"),
        };
        let table = routing_table(&status, 0, |i| Some(i.id.clone()));
        let mine = LaneValue::Lane("mine".parse().unwrap());
        let serving = |s: &str, v: &LaneValue| {
            table
                .route(&s.parse().unwrap(), v)
                .lane()
                .map(LaneRef::to_string)
        };
        assert_eq!(serving("demo.b", &mine).as_deref(), Some("team"));
        // mine's c is unhealthy: baseline.
        assert_eq!(serving("demo.c", &mine).as_deref(), Some("baseline"));
        assert_eq!(
            serving("demo.b", &LaneValue::Absent).as_deref(),
            Some("baseline")
        );
        // No target: left out.
        let none = routing_table(&status, 0, |_| None::<()>);
        assert!(!none.has_service(&"demo.b".parse().unwrap()));
    }
}
