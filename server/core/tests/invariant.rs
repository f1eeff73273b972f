//! Generated tests of the routing invariant (`docs/contracts.md`, "The routing invariant") and of lane header
//! parsing.
//!
//! `RoutingTable::route` is checked against a reference model written here from the contract alone:
//! walk the request lane's chain (itself, its parent, …, stopping at a cycle or at the depth bound),
//! serve from the first lane with a healthy instance of the service, else from healthy baseline
//! instances, else say there is none. The model is deliberately naive (linear scans over the raw
//! registration list) so that it shares no code or indexing with the table.

use std::collections::BTreeMap;

use lane_core::header::{from_baggage, from_lane_header, lane_value};
use lane_core::lane::MAX_CHAIN_DEPTH;
use lane_core::{Decision, Endpoint, LaneId, LaneRef, LaneValue, RoutingTable, ServiceId};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Generated registries and requests
// ---------------------------------------------------------------------------------------------

/// Lanes that may own instances and have parents.
const LANES: &[&str] = &["l0", "l1", "l2", "feature-x", "team-a", "dev-7"];
/// Names a parent link may point at that never own instances or have parents (dangling parents).
const DANGLING: &[&str] = &["gone", "deleted-1"];
/// A lane only ever named by requests.
const UNKNOWN: &str = "nowhere";
/// Services that may have instances; requests also target `SERVICES.len()` = never registered.
const SERVICES: &[&str] = &["demo.a", "demo.b", "shop.a", "shop.cart"];
const NEVER_REGISTERED: &str = "demo.zz";

fn lane_name(i: usize) -> &'static str {
    if i < LANES.len() {
        LANES[i]
    } else if i < LANES.len() + DANGLING.len() {
        DANGLING[i - LANES.len()]
    } else {
        UNKNOWN
    }
}

fn service_name(i: usize) -> &'static str {
    SERVICES.get(i).copied().unwrap_or(NEVER_REGISTERED)
}

fn lane_id(s: &str) -> LaneId {
    s.parse().unwrap()
}

fn service_id(s: &str) -> ServiceId {
    s.parse().unwrap()
}

/// One registered instance. Its routing target is its index in [`Registry::endpoints`].
#[derive(Debug, Clone)]
struct Ep {
    service: usize,
    /// `None` = baseline, else an index into [`LANES`].
    lane: Option<usize>,
    healthy: bool,
}

#[derive(Debug, Clone)]
struct Registry {
    /// `parents[i]` is the parent of `LANES[i]`: an index into `LANES` (possibly itself: a cycle)
    /// or into `DANGLING`.
    parents: Vec<Option<usize>>,
    endpoints: Vec<Ep>,
}

impl Registry {
    /// Parent links as names (the model's view).
    fn parent_map(&self) -> BTreeMap<&'static str, &'static str> {
        self.parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (lane_name(i), lane_name(p))))
            .collect()
    }

    fn table(&self) -> RoutingTable<usize> {
        let endpoints = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(target, ep)| Endpoint {
                service: service_id(service_name(ep.service)),
                lane: ep
                    .lane
                    .map_or(LaneRef::Baseline, |l| LaneRef::Lane(lane_id(LANES[l]))),
                healthy: ep.healthy,
                target,
            });
        let parents = self
            .parent_map()
            .into_iter()
            .map(|(lane, parent)| (lane_id(lane), lane_id(parent)));
        RoutingTable::new(endpoints, parents, 1)
    }
}

fn registry() -> impl Strategy<Value = Registry> {
    let parents = prop::collection::vec(
        prop::option::weighted(0.6, 0..LANES.len() + DANGLING.len()),
        LANES.len(),
    );
    let endpoint = (
        0..SERVICES.len(),
        prop::option::weighted(0.6, 0..LANES.len()),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(service, lane, healthy)| Ep {
            service,
            lane,
            healthy,
        });
    let endpoints = prop::collection::vec(endpoint, 0..20);
    (parents, endpoints).prop_map(|(parents, endpoints)| Registry { parents, endpoints })
}

fn lane_value_strategy() -> impl Strategy<Value = LaneValue> {
    prop_oneof![
        1 => Just(LaneValue::Absent),
        1 => Just(LaneValue::Baseline),
        1 => "[ -~]{0,12}".prop_map(LaneValue::Invalid),
        // Known lanes, dangling parents and a lane nobody has heard of.
        5 => (0..LANES.len() + DANGLING.len() + 1)
            .prop_map(|i| LaneValue::Lane(lane_id(lane_name(i)))),
    ]
}

fn requests() -> impl Strategy<Value = Vec<(usize, LaneValue)>> {
    prop::collection::vec((0..=SERVICES.len(), lane_value_strategy()), 1..12)
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// `lane` is `None` for baseline; `targets` sorted.
    Serve {
        lane: Option<String>,
        targets: Vec<usize>,
    },
    NoHealthyInstance,
    UnknownService,
}

/// `lane`, its parent, its parent's parent, …; stops before a lane already in the chain, and after
/// `MAX_CHAIN_DEPTH` parents (the bound lane documents are validated against).
fn model_chain(parents: &BTreeMap<&str, &str>, lane: &str) -> Vec<String> {
    let mut chain = vec![lane.to_owned()];
    let mut cursor = lane.to_owned();
    while let Some(&parent) = parents.get(cursor.as_str()) {
        if chain.iter().any(|l| l == parent) || chain.len() == 1 + MAX_CHAIN_DEPTH {
            break;
        }
        chain.push(parent.to_owned());
        cursor = parent.to_owned();
    }
    chain
}

fn model_route(reg: &Registry, service: usize, value: &LaneValue) -> Expected {
    let name = service_name(service);
    let of_service: Vec<(usize, &Ep)> = reg
        .endpoints
        .iter()
        .enumerate()
        .filter(|(_, ep)| service_name(ep.service) == name)
        .collect();
    if of_service.is_empty() {
        return Expected::UnknownService;
    }
    let healthy_in = |lane: Option<&str>| -> Vec<usize> {
        let mut targets: Vec<usize> = of_service
            .iter()
            .filter(|(_, ep)| ep.healthy && ep.lane.map(|l| LANES[l]) == lane)
            .map(|(i, _)| *i)
            .collect();
        targets.sort_unstable();
        targets
    };
    if let LaneValue::Lane(lane) = value {
        for member in model_chain(&reg.parent_map(), lane.as_str()) {
            let targets = healthy_in(Some(&member));
            if !targets.is_empty() {
                return Expected::Serve {
                    lane: Some(member),
                    targets,
                };
            }
        }
    }
    let targets = healthy_in(None);
    if targets.is_empty() {
        Expected::NoHealthyInstance
    } else {
        Expected::Serve {
            lane: None,
            targets,
        }
    }
}

fn observed(decision: Decision<'_, usize>) -> Expected {
    match decision {
        Decision::Serve { lane, targets } => {
            let mut targets = targets.to_vec();
            targets.sort_unstable();
            Expected::Serve {
                lane: lane.lane().map(|l| l.as_str().to_owned()),
                targets,
            }
        }
        Decision::NoHealthyInstance => Expected::NoHealthyInstance,
        Decision::UnknownService => Expected::UnknownService,
    }
}

// ---------------------------------------------------------------------------------------------
// Routing properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `route` gives exactly the reference model's answer.
    #[test]
    fn route_agrees_with_the_reference_model(reg in registry(), reqs in requests()) {
        let table = reg.table();
        for (service, value) in &reqs {
            let got = observed(table.route(&service_id(service_name(*service)), value));
            let want = model_route(&reg, *service, value);
            prop_assert_eq!(got, want, "service {} value {:?}", service_name(*service), value);
        }
    }

    /// The table's own chain is the model's chain (itself first, no repeats, parents in order).
    #[test]
    fn chain_agrees_with_the_reference_model(reg in registry(), lane in 0..LANES.len() + DANGLING.len() + 1) {
        let table = reg.table();
        let id = lane_id(lane_name(lane));
        let got: Vec<String> = table.chain(&id).into_iter().map(|l| l.as_str().to_owned()).collect();
        prop_assert_eq!(got, model_chain(&reg.parent_map(), id.as_str()));
    }

    /// The invariant's clauses, checked directly on every decision.
    #[test]
    fn direct_invariant_properties(reg in registry(), reqs in requests()) {
        let table = reg.table();
        for (service, value) in &reqs {
            let sid = service_id(service_name(*service));
            let Decision::Serve { lane, targets } = table.route(&sid, value) else {
                continue;
            };
            prop_assert!(!targets.is_empty(), "served from an empty target list");
            match (&lane, value) {
                (LaneRef::Baseline, _) => {}
                // A lane instance is only ever served to a request that names a lane, and only
                // from that lane's chain.
                (LaneRef::Lane(served), LaneValue::Lane(asked)) => {
                    let chain = model_chain(&reg.parent_map(), asked.as_str());
                    prop_assert!(
                        chain.iter().any(|l| l == served.as_str()),
                        "{} is outside the chain {:?} of {}", served, chain, asked
                    );
                }
                (LaneRef::Lane(served), other) => {
                    prop_assert!(false, "lane {} served to a request with {:?}", served, other);
                }
            }
            for &t in targets {
                let ep = &reg.endpoints[t];
                prop_assert!(ep.healthy, "unhealthy target {} ({:?})", t, ep);
                prop_assert_eq!(service_name(ep.service), sid.as_str());
                prop_assert_eq!(ep.lane.map(|l| LANES[l]), lane.lane().map(LaneId::as_str));
            }
        }
    }

    /// `route_without` is `route` on the registry with the failed targets taken as unhealthy:
    /// the fallback the router retries on when an instance refused the connection.
    #[test]
    fn route_without_failed_targets_agrees_with_the_model(
        reg in registry(),
        reqs in requests(),
        failed in prop::collection::vec(0usize..32, 0..6),
        start in 0usize..8,
    ) {
        let table = reg.table();
        let mut without = reg.clone();
        for &f in &failed {
            if let Some(ep) = without.endpoints.get_mut(f) {
                ep.healthy = false;
            }
        }
        for (service, value) in &reqs {
            let sid = service_id(service_name(*service));
            let got = table.route_without(&sid, value, &failed, start);
            match (got, model_route(&without, *service, value)) {
                (Some((lane, target)), Expected::Serve { lane: want, targets }) => {
                    prop_assert_eq!(lane.lane().map(|l| l.as_str().to_owned()), want);
                    prop_assert!(targets.contains(target), "{} not in {:?}", target, targets);
                }
                (None, Expected::NoHealthyInstance | Expected::UnknownService) => {}
                (got, want) => prop_assert!(false, "got {:?}, model {:?}", got, want),
            }
            // Nothing failed: the same lane as `route`.
            let plain = table.route_without(&sid, value, &[], start).map(|(l, _)| l);
            prop_assert_eq!(plain, table.route(&sid, value).lane().cloned());
        }
    }

    /// Long straight chains: only the first `MAX_CHAIN_DEPTH` parents are looked at.
    #[test]
    fn long_chains_are_bounded(len in 1usize..=MAX_CHAIN_DEPTH + 4, owner in 0usize..MAX_CHAIN_DEPTH + 4) {
        let names: Vec<LaneId> = (0..len).map(|i| lane_id(&format!("d{i}"))).collect();
        let parents = names.windows(2).map(|w| (w[0].clone(), w[1].clone()));
        let owner = owner % len;
        let svc = service_id("demo.a");
        let endpoints = [
            Endpoint { service: svc.clone(), lane: LaneRef::Baseline, healthy: true, target: 0usize },
            Endpoint { service: svc.clone(), lane: LaneRef::Lane(names[owner].clone()), healthy: true, target: 1 },
        ];
        let table = RoutingTable::new(endpoints, parents, 0);
        let want = if owner <= MAX_CHAIN_DEPTH { LaneRef::Lane(names[owner].clone()) } else { LaneRef::Baseline };
        let got = table.route(&svc, &LaneValue::Lane(names[0].clone()));
        prop_assert!(matches!(&got, Decision::Serve { lane, .. } if *lane == want), "{:?}", got);
    }
}

// ---------------------------------------------------------------------------------------------
// Header parsing properties
// ---------------------------------------------------------------------------------------------

fn valid_lane_id() -> impl Strategy<Value = LaneId> {
    "[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?"
        .prop_filter("baseline is reserved", |s| s != "baseline")
        .prop_map(|s| lane_id(&s))
}

/// `s` with each ASCII letter upper-cased where `mask` says so.
fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// HTTP optional whitespace.
fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,3}"
}

/// `s` with each character percent-encoded where `mask` says so (random hex case).
fn percent_encode(s: &str, mask: &[(bool, bool)]) -> String {
    s.bytes()
        .zip(mask.iter().chain(std::iter::repeat(&(false, false))))
        .map(|(b, &(enc, upper))| match (enc, upper) {
            (false, _) => (b as char).to_string(),
            (true, true) => format!("%{b:02X}"),
            (true, false) => format!("%{b:02x}"),
        })
        .collect()
}

/// A baggage member that is not `lane`: `key=value` plus properties.
fn other_member() -> impl Strategy<Value = String> {
    let key = "[a-zA-Z0-9_*.-]{1,8}".prop_filter("not the lane key", |k| k != "lane");
    let value = "[a-zA-Z0-9%=./_-]{0,10}";
    let props = prop::collection::vec("[a-z]{1,5}(=[a-z0-9=]{0,5})?", 0..3);
    (ows(), key, ows(), ows(), value, props, ows()).prop_map(|(w1, k, w2, w3, v, props, w4)| {
        let mut m = format!("{w1}{k}{w2}={w3}{v}");
        for p in props {
            m.push(';');
            m.push_str(&p);
        }
        m.push_str(&w4);
        m
    })
}

fn lines_of(lines: &[String]) -> impl Iterator<Item = &[u8]> {
    lines.iter().map(|l| l.as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any lane id, in any case, with surrounding whitespace, repeated over lines and items,
    /// reads back from the lane header; the lane header wins over any baggage.
    #[test]
    fn lane_header_round_trips(
        id in valid_lane_id(),
        copies in prop::collection::vec(
            (prop::collection::vec(any::<bool>(), 40), ows(), ows()), 1..4),
        one_line in any::<bool>(),
        baggage in prop::collection::vec("[ -~]{0,20}", 0..3),
    ) {
        let items: Vec<String> = copies
            .iter()
            .map(|(mask, before, after)| format!("{before}{}{after}", recase(id.as_str(), mask)))
            .collect();
        let lines = if one_line { vec![items.join(",")] } else { items };
        let want = LaneValue::Lane(id.clone());
        prop_assert_eq!(from_lane_header(lines_of(&lines)), want.clone(), "{:?}", lines);
        prop_assert_eq!(lane_value(lines_of(&lines), lines_of(&baggage)), want, "{:?}", lines);
    }

    /// `baseline` in any case is the explicit baseline, never a lane.
    #[test]
    fn baseline_in_any_case(mask in prop::collection::vec(any::<bool>(), 8), before in ows(), after in ows()) {
        let line = format!("{before}{}{after}", recase("baseline", &mask));
        prop_assert_eq!(from_lane_header([line.as_bytes()]), LaneValue::Baseline);
        let member = format!("lane={line}");
        prop_assert_eq!(from_baggage([member.as_bytes()]), LaneValue::Baseline);
    }

    /// Any lane id reads back from a `lane` baggage member among other members, with properties,
    /// optional whitespace, random case and percent-encoding, over one or several header lines.
    #[test]
    fn baggage_round_trips(
        id in valid_lane_id(),
        case_mask in prop::collection::vec(any::<bool>(), 40),
        enc_mask in prop::collection::vec((prop::bool::weighted(0.2), any::<bool>()), 40),
        (w1, w2, w3, w4) in (ows(), ows(), ows(), ows()),
        props in prop::collection::vec("[a-z]{1,5}(=[a-z0-9=]{0,5})?", 0..3),
        others in prop::collection::vec(other_member(), 0..5),
        position in any::<prop::sample::Index>(),
        split in prop::collection::vec(any::<bool>(), 6),
    ) {
        let value = percent_encode(&recase(id.as_str(), &case_mask), &enc_mask);
        let mut lane_member = format!("{w1}lane{w2}={w3}{value}");
        for p in &props {
            lane_member.push(';');
            lane_member.push_str(p);
        }
        lane_member.push_str(&w4);
        let mut members = others;
        let at = position.index(members.len() + 1);
        members.insert(at, lane_member);
        // Join members with commas, breaking into separate header lines where `split` says.
        let mut lines = vec![String::new()];
        for (i, m) in members.iter().enumerate() {
            let last = lines.last_mut().unwrap();
            if !last.is_empty() {
                last.push(',');
            }
            last.push_str(m);
            if split.get(i).copied().unwrap_or(false) && i + 1 < members.len() {
                lines.push(String::new());
            }
        }
        let want = LaneValue::Lane(id);
        prop_assert_eq!(from_baggage(lines_of(&lines)), want.clone(), "{:?}", lines);
        prop_assert_eq!(lane_value(std::iter::empty(), lines_of(&lines)), want, "{:?}", lines);
    }

    /// Arbitrary bytes never panic, and whatever comes back is a well-formed value.
    #[test]
    fn arbitrary_bytes_never_panic(
        header in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
        baggage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let h = from_lane_header(header.iter().map(Vec::as_slice));
        let b = from_baggage(baggage.iter().map(Vec::as_slice));
        let v = lane_value(header.iter().map(Vec::as_slice), baggage.iter().map(Vec::as_slice));
        for got in [&h, &b, &v] {
            if let LaneValue::Lane(id) = got {
                prop_assert_eq!(&id.as_str().parse::<LaneId>(), &Ok(id.clone()));
            }
        }
        // The lane header wins whenever it says anything.
        let want = if h == LaneValue::Absent { b } else { h };
        prop_assert_eq!(v, want);
    }

    /// Byte soup built from the characters the parsers care about (separators, escapes,
    /// whitespace, multi-byte UTF-8) reaches the deep paths; still never a panic.
    #[test]
    fn structured_garbage_never_panics(
        header in prop::collection::vec("[lane=%;, \ta-fA-F0-9\u{e9}\u{1f600}_-]{0,40}", 0..4),
        baggage in prop::collection::vec("(lane=|[lane=%;, \ta-fA-F0-9\u{e9}\u{1f600}_-]){0,20}", 0..4),
    ) {
        let _ = from_lane_header(lines_of(&header));
        let _ = from_baggage(lines_of(&baggage));
        let _ = lane_value(lines_of(&header), lines_of(&baggage));
    }

    /// An invalid or absent lane value always routes like no lane at all.
    #[test]
    fn unparseable_values_route_to_baseline(reg in registry(), service in 0..=SERVICES.len(), raw in "[ -~]{0,12}") {
        let value = from_lane_header([raw.as_bytes()]);
        prop_assume!(value.lane().is_none());
        let table = reg.table();
        let sid = service_id(service_name(service));
        prop_assert_eq!(
            observed(table.route(&sid, &value)),
            observed(table.route(&sid, &LaneValue::Absent))
        );
    }
}
