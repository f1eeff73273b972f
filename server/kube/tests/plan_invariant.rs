//! The routing invariant (`docs/contracts.md`) through the generated Istio objects.
//!
//! Generated lane sets (parents, including dangling and cyclic ones; versions of services, some
//! without a baseline; some lanes expired) go through `plan::desired`. Generated requests (a
//! service, lane header lines in mixed case and whitespace, repeated, conflicting or invalid,
//! baggage lines with other members, properties, percent-encoding and broken values) are then
//! routed twice:
//!
//! - by evaluating the generated VirtualService with Istio's documented HTTP route matching
//!   (below: routes in order, the first whose match holds wins; a match holds when one of its
//!   entries does; an entry holds when every `headers` condition holds and no `withoutHeaders`
//!   condition does; a header that came on several lines is matched as its values joined with
//!   `,`; `exact`, `prefix`, and `regex` as a full match, with the `regex` crate standing in for
//!   RE2; `{}` means present), mapping the subset to its lane;
//! - by `lane_core::RoutingTable::route`, the table built here from the same lanes with
//!   `from_lanes` (an instance per version of a live lane whose service has a baseline, healthy
//!   when the generated readiness of its Deployment says ready: the plan reads that readiness
//!   from the lane Deployments' status), with the lane value parsed by
//!   `lane_core::header::lane_value`.
//!
//! Both must name the same lane. Requests stay within what `lane_kube::matching` documents as
//! exact: header lines are printable ASCII (UTF-8) and far below lane_core's 8 KiB line limit.

mod common;

use std::collections::HashMap;

use common::{NOW, all_ready, baseline, lane, lane_deployment_status, version};
use kcr_networking_istio_io::v1::virtualservices::{VirtualService, VirtualServiceHttpMatch};
use lane_core::header::lane_value;
use lane_core::{Endpoint, LaneId, LaneRef, RoutingTable, ServiceId};
use lane_kube::crd::Lane;
use lane_kube::plan::{self, Desired, Existing, Options};
use proptest::prelude::*;
use regex::Regex;

/// Lanes that may exist.
const LANES: &[&str] = &["l0", "l1", "l2", "feature-x", "team-a", "dev-7"];
/// Parent names that never exist.
const DANGLING: &[&str] = &["gone"];
/// Names requests may carry besides the lanes: a dangling parent, a lane nobody made, baseline.
const OTHER_NAMES: &[&str] = &["gone", "nowhere", "baseline"];
/// Services lanes may have versions of; the last has no baseline.
const SERVICES: &[&str] = &["shop.cart", "shop.pay", "demo.a", "demo.nobase"];

#[derive(Debug, Clone)]
struct GenLane {
    present: bool,
    /// Index into LANES, then DANGLING.
    parent: Option<usize>,
    expired: bool,
    services: Vec<bool>,
    /// Per service: whether its lane Deployment reports a ready replica.
    ready: Vec<bool>,
}

#[derive(Debug, Clone)]
struct Setup {
    lanes: Vec<GenLane>,
    lane_header: &'static str,
}

fn lane_name(i: usize) -> &'static str {
    LANES.get(i).copied().unwrap_or(DANGLING[0])
}

fn setup() -> impl Strategy<Value = Setup> {
    let gen_lane = (
        prop::bool::weighted(0.85),
        prop::option::weighted(0.5, 0..LANES.len() + DANGLING.len()),
        prop::bool::weighted(0.15),
        prop::collection::vec(prop::bool::weighted(0.4), SERVICES.len()),
        prop::collection::vec(prop::bool::weighted(0.7), SERVICES.len()),
    )
        .prop_map(|(present, parent, expired, services, ready)| GenLane {
            present,
            parent,
            expired,
            services,
            ready,
        });
    (
        prop::collection::vec(gen_lane, LANES.len()),
        prop_oneof![Just("x-lane"), Just("x-env-lane")],
    )
        .prop_map(|(lanes, lane_header)| Setup { lanes, lane_header })
}

impl Setup {
    fn objects(&self) -> Vec<Lane> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.present)
            .map(|(i, l)| {
                let services = SERVICES
                    .iter()
                    .zip(&l.services)
                    .filter(|(_, on)| **on)
                    .map(|(s, _)| (*s, version(&format!("img/{s}:{}", LANES[i]), "v@1")))
                    .collect();
                let expires = if l.expired { NOW } else { NOW + 60 };
                lane(
                    "lanes",
                    LANES[i],
                    l.parent.map(lane_name),
                    expires,
                    services,
                )
            })
            .collect()
    }

    /// The lane Deployments the cluster reports: every generated version's, ready or not (the
    /// plan only routes to ready ones).
    fn existing(&self) -> Existing {
        let mut deployments = Vec::new();
        for (i, l) in self.lanes.iter().enumerate() {
            for ((s, on), ready) in SERVICES.iter().zip(&l.services).zip(&l.ready) {
                if *on {
                    deployments.push(lane_deployment_status(s, LANES[i], i32::from(*ready)));
                }
            }
        }
        Existing {
            deployments,
            ..Default::default()
        }
    }

    /// The table lane_core routes by, built from the generated lanes without the plan's help:
    /// a lane's instance of a service is healthy when its Deployment is ready.
    fn table(&self) -> RoutingTable<()> {
        let live: Vec<lane_core::Lane> = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.present && !l.expired)
            .map(|(i, l)| {
                let mut doc = lane_core::Lane::new(
                    LANES[i].parse().unwrap(),
                    l.parent.map(|p| lane_name(p).parse().unwrap()),
                    "alice@example.com",
                    NOW - 3600,
                    std::time::Duration::from_secs(3660),
                );
                for (s, on) in SERVICES.iter().zip(&l.services) {
                    if *on {
                        doc.services.insert(
                            s.parse().unwrap(),
                            lane_core::PersonalVersion::new("b", "c", "alice", NOW),
                        );
                    }
                }
                doc
            })
            .collect();
        let mut endpoints = Vec::new();
        for s in &SERVICES[..SERVICES.len() - 1] {
            let service: ServiceId = s.parse().unwrap();
            endpoints.push(Endpoint {
                service: service.clone(),
                lane: LaneRef::Baseline,
                healthy: true,
                target: (),
            });
            for doc in &live {
                if doc.services.contains_key(&service) {
                    let i = LANES.iter().position(|l| *l == doc.id.as_str()).unwrap();
                    let s_idx = SERVICES.iter().position(|x| x == s).unwrap();
                    endpoints.push(Endpoint {
                        service: service.clone(),
                        lane: LaneRef::Lane(doc.id.clone()),
                        healthy: self.lanes[i].ready[s_idx],
                        target: (),
                    });
                }
            }
        }
        RoutingTable::from_lanes(&live, endpoints, 0)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Request {
    service: usize,
    /// `None`: no lane header line at all.
    lane_header: Option<Vec<String>>,
    baggage: Option<Vec<String>>,
}

fn any_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select([LANES, OTHER_NAMES].concat())
}

fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// One item of a lane header: a name in random case with whitespace around.
fn header_item(name: &'static str) -> impl Strategy<Value = String> {
    (prop::collection::vec(any::<bool>(), 10), ows(), ows())
        .prop_map(move |(mask, a, b)| format!("{a}{}{b}", recase(name, &mask)))
}

/// Items split over header lines where `split` says.
fn into_lines(items: Vec<String>, split: &[bool]) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, item) in items.iter().enumerate() {
        let last = lines.last_mut().unwrap();
        if i > 0 && !split.get(i).copied().unwrap_or(false) {
            last.push(',');
        } else if i > 0 {
            lines.push(String::new());
        }
        lines.last_mut().unwrap().push_str(item);
    }
    lines
}

fn lane_header_lines() -> impl Strategy<Value = Option<Vec<String>>> {
    let agreeing = any_name().prop_flat_map(|name| {
        (
            prop::collection::vec(header_item(name), 1..4),
            prop::collection::vec(any::<bool>(), 4),
        )
            .prop_map(|(items, split)| into_lines(items, &split))
    });
    let mixed = (
        prop::collection::vec(any_name().prop_flat_map(header_item), 2..4),
        prop::collection::vec(any::<bool>(), 4),
    )
        .prop_map(|(items, split)| into_lines(items, &split));
    let garbage = prop::collection::vec("[ -~]{0,12}", 1..3);
    prop_oneof![
        4 => Just(None),
        4 => agreeing.prop_map(Some),
        1 => mixed.prop_map(Some),
        1 => garbage.prop_map(Some),
        1 => Just(Some(vec![String::new()])),
    ]
}

/// `s` with characters percent-encoded where `mask` says (hex in random case).
fn percent_encode(s: &str, mask: &[(bool, bool)]) -> String {
    s.bytes()
        .zip(mask.iter().chain(std::iter::repeat(&(false, false))))
        .map(|(b, &(enc, upper))| match (enc, upper) {
            (false, _) => char::from(b).to_string(),
            (true, true) => format!("%{b:02X}"),
            (true, false) => format!("%{b:02x}"),
        })
        .collect()
}

/// Whitespace as baggage may carry it around a value: raw or percent-encoded.
fn baggage_ows() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&[" ", "\t", "%20", "%09"][..]), 0..2)
        .prop_map(|parts| parts.concat())
}

/// A `lane` member: key with whitespace, a value naming a lane (random case, percent-encoding,
/// whitespace raw or encoded) or something else, properties.
fn lane_member() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        4 => (
            any_name(),
            prop::collection::vec(any::<bool>(), 10),
            prop::collection::vec((prop::bool::weighted(0.2), any::<bool>()), 10),
            baggage_ows(),
            baggage_ows(),
        )
            .prop_map(|(name, case, enc, a, b)| {
                format!("{a}{}{b}", percent_encode(&recase(name, &case), &enc))
            }),
        1 => "[ -~&&[^,;]]{0,8}".prop_map(|s| s),
    ];
    let props = prop::collection::vec("[a-z]{1,4}(=[a-z0-9=]{0,4})?", 0..2);
    (ows(), ows(), ows(), value, props, ows()).prop_map(|(w1, w2, w3, v, props, w4)| {
        let mut m = format!("{w1}lane{w2}={w3}{v}");
        for p in props {
            m.push(';');
            m.push_str(&p);
        }
        m.push_str(&w4);
        m
    })
}

/// A member lane_core ignores, or one that only looks like a lane member.
fn other_member() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        3 => "[a-zA-Z0-9_*.-]{1,6}",
        2 => prop::sample::select(
            &["Lane", "lanes", "la", "l", "lan", "xlane", "lane x", "la ne", "", " ", "\t"][..]
        )
        .prop_map(str::to_owned),
    ];
    let keyed = (
        ows(),
        key,
        ows(),
        "[a-zA-Z0-9%=./ _-]{0,8}",
        prop::option::of("[a-z=]{1,4}"),
    )
        .prop_map(|(w, k, w2, v, prop)| {
            let mut m = format!("{w}{k}{w2}={v}");
            if let Some(p) = prop {
                m.push(';');
                m.push_str(&p);
            }
            m
        });
    prop_oneof![
        4 => keyed,
        // No `=` before the properties: ignored, even with the lane key.
        1 => prop::sample::select(&["lane", " lane ", "lane;x=y", "", "nokey"][..])
            .prop_map(str::to_owned),
        1 => "[ -~&&[^,]]{0,10}",
    ]
}

fn baggage_lines() -> impl Strategy<Value = Option<Vec<String>>> {
    let members = prop::collection::vec(prop_oneof![2 => lane_member(), 3 => other_member()], 1..5);
    prop_oneof![
        1 => Just(None),
        4 => (members, prop::collection::vec(any::<bool>(), 5))
            .prop_map(|(m, split)| Some(into_lines(m, &split))),
        1 => prop::collection::vec("[ -~]{0,16}", 1..3).prop_map(Some),
    ]
}

fn requests() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(
        (0..SERVICES.len(), lane_header_lines(), baggage_lines()).prop_map(
            |(service, lane_header, baggage)| Request {
                service,
                lane_header,
                baggage,
            },
        ),
        1..16,
    )
}

// ---------------------------------------------------------------------------------------------
// Istio's HTTP route matching, as documented
// ---------------------------------------------------------------------------------------------

struct Evaluator {
    regexes: HashMap<String, Regex>,
}

impl Evaluator {
    fn full_match(&mut self, re: &str, value: &str) -> bool {
        self.regexes
            .entry(re.to_owned())
            .or_insert_with(|| Regex::new(&format!("^(?:{re})$")).expect("generated regex"))
            .is_match(value)
    }

    /// `exact`, `prefix`, `regex` against a present header; no value at all means "present".
    fn string_match(
        &mut self,
        exact: Option<&String>,
        prefix: Option<&String>,
        regex: Option<&String>,
        value: Option<&str>,
    ) -> bool {
        let Some(value) = value else { return false };
        match (exact, prefix, regex) {
            (Some(e), _, _) => value == e,
            (_, Some(p), _) => value.starts_with(p.as_str()),
            (_, _, Some(r)) => self.full_match(r, value),
            (None, None, None) => true,
        }
    }

    fn entry_holds(&mut self, m: &VirtualServiceHttpMatch, req: &HashMap<&str, String>) -> bool {
        assert!(
            m.uri.is_none() && m.method.is_none() && m.query_params.is_none(),
            "the evaluator knows header matches only"
        );
        for (name, sm) in m.headers.iter().flatten() {
            let value = req.get(name.as_str()).map(String::as_str);
            if !self.string_match(
                sm.exact.as_ref(),
                sm.prefix.as_ref(),
                sm.regex.as_ref(),
                value,
            ) {
                return false;
            }
        }
        for (name, sm) in m.without_headers.iter().flatten() {
            let value = req.get(name.as_str()).map(String::as_str);
            if self.string_match(
                sm.exact.as_ref(),
                sm.prefix.as_ref(),
                sm.regex.as_ref(),
                value,
            ) {
                return false;
            }
        }
        true
    }

    /// The subset of the first route whose match holds.
    fn route(&mut self, vs: &VirtualService, req: &HashMap<&str, String>) -> Option<String> {
        for http in vs.spec.http.iter().flatten() {
            let holds = match &http.r#match {
                None => true,
                Some(entries) if entries.is_empty() => true,
                Some(entries) => entries.iter().any(|m| self.entry_holds(m, req)),
            };
            if holds {
                let route = http.route.as_ref()?.first()?;
                return route.destination.subset.clone();
            }
        }
        None
    }
}

/// Header lines as Envoy matches them: each name's lines joined with `,`.
fn joined<'a>(req: &Request, lane_header: &'a str) -> HashMap<&'a str, String> {
    let mut headers = HashMap::new();
    if let Some(lines) = &req.lane_header {
        headers.insert(lane_header, lines.join(","));
    }
    if let Some(lines) = &req.baggage {
        headers.insert("baggage", lines.join(","));
    }
    headers
}

/// The lane that serves `req` by the generated objects: the VirtualService's subset, checked
/// against the DestinationRule and the lane's Deployment; baseline when the host has no
/// VirtualService (then no lane Deployment of the service exists either).
fn istio_lane(
    d: &Desired,
    ev: &mut Evaluator,
    service: &ServiceId,
    headers: &HashMap<&str, String>,
) -> Result<LaneRef, String> {
    let host = plan::host(service);
    let Some(vs) = d
        .virtual_services
        .iter()
        .find(|vs| vs.spec.hosts.iter().flatten().any(|h| *h == host))
    else {
        if let Some(dep) = d.deployments.iter().find(|dep| {
            dep.metadata.namespace.as_deref() == Some(service.app())
                && dep
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("{}-lane-", service.proc_())))
        }) {
            return Err(format!(
                "lane Deployment {:?} without a VirtualService",
                dep.metadata.name
            ));
        }
        return Ok(LaneRef::Baseline);
    };
    let subset = ev.route(vs, headers).ok_or("no route matched")?;
    let dr = d
        .destination_rules
        .iter()
        .find(|dr| dr.spec.host == host)
        .ok_or("no DestinationRule for the host")?;
    let labels = dr
        .spec
        .subsets
        .iter()
        .flatten()
        .find(|s| s.name == subset)
        .and_then(|s| s.labels.clone())
        .ok_or_else(|| format!("subset {subset} is not in the DestinationRule"))?;
    let lane_label = labels
        .get("lane.dev/lane")
        .ok_or("subset without a lane label")?;
    if subset == "baseline" {
        return Ok(LaneRef::Baseline);
    }
    let lane: LaneId = subset
        .strip_prefix("lane-")
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("subset {subset} names no lane"))?;
    if lane_label != lane.as_str() {
        return Err(format!(
            "subset {subset} selects lane.dev/lane={lane_label}"
        ));
    }
    let name = plan::deployment_name(service, &lane);
    d.deployments
        .iter()
        .find(|dep| {
            dep.metadata.name.as_deref() == Some(name.as_str())
                && dep
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
                    .and_then(|l| l.get("lane.dev/lane"))
                    .is_some_and(|v| v == lane.as_str())
        })
        .ok_or_else(|| format!("subset {subset} has no Deployment {name}"))?;
    Ok(LaneRef::Lane(lane))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every request reaches, through the generated Istio objects, the lane `RoutingTable::route`
    /// names.
    #[test]
    fn istio_routes_follow_the_routing_table(setup in setup(), reqs in requests()) {
        let lanes = setup.objects();
        let bases: Vec<_> = SERVICES[..SERVICES.len() - 1]
            .iter()
            .map(|s| {
                let (app, proc_) = s.split_once('.').unwrap();
                baseline(app, proc_, true)
            })
            .collect();
        let options = Options::new(NOW).with_lane_header(setup.lane_header).unwrap();
        let d = plan::desired(&lanes, &bases, &setup.existing(), &options);
        // The only conflicts are versions of the service without a baseline.
        for c in &d.conflicts {
            prop_assert!(c.to_string().contains("demo.nobase"), "{}", c);
        }
        let table = setup.table();
        let mut ev = Evaluator { regexes: HashMap::new() };
        for req in &reqs {
            let service: ServiceId = SERVICES[req.service].parse().unwrap();
            let value = lane_value(
                req.lane_header.iter().flatten().map(|l| l.as_bytes()),
                req.baggage.iter().flatten().map(|l| l.as_bytes()),
            );
            let want = table.route(&service, &value).lane().cloned();
            let headers = joined(req, setup.lane_header);
            let got = istio_lane(&d, &mut ev, &service, &headers);
            match want {
                // No baseline, no Service: nothing routes there, and nothing was made for it.
                None => prop_assert!(
                    !d.virtual_services.iter().any(|vs| vs.spec.hosts.iter().flatten().any(|h| *h == plan::host(&service))),
                    "a VirtualService for {}, which has no baseline", service
                ),
                Some(want) => prop_assert_eq!(
                    got, Ok(want),
                    "service {} lane value {:?} headers {:?}", service, value, headers
                ),
            }
        }
    }
}

/// Hand-picked requests the generators might reach only rarely, through the same evaluator.
#[test]
fn edge_cases() {
    let lanes = [
        lane(
            "lanes",
            "k8s",
            None,
            NOW + 60,
            vec![("shop.cart", version("i", "v"))],
        ),
        lane(
            "lanes",
            "sss",
            None,
            NOW + 60,
            vec![("shop.cart", version("i", "v"))],
        ),
    ];
    let bases = [baseline("shop", "cart", true)];
    let existing = all_ready(&lanes, &bases, &Existing::default(), &Options::new(NOW));
    let d = plan::desired(&lanes, &bases, &existing, &Options::new(NOW));
    let service: ServiceId = "shop.cart".parse().unwrap();
    let mut ev = Evaluator {
        regexes: HashMap::new(),
    };
    /// Lane header lines, baggage lines, the lane that should serve.
    type Case<'a> = (
        Option<&'a [&'a str]>,
        Option<&'a [&'a str]>,
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        (Some(&["K8S"]), None, Some("k8s")),
        // The Kelvin sign folds to `k` under RE2's (?i); lane_core rejects it.
        (Some(&["\u{212a}8s"]), None, None),
        // The long s folds to `s` under (?i).
        (Some(&["\u{17f}ss"]), None, None),
        (Some(&["k8s", " K8s\t"]), None, Some("k8s")),
        (Some(&["k8s", "sss"]), None, None),
        (Some(&["k8s,"]), None, None),
        (Some(&[""]), Some(&["lane=k8s"]), None),
        (Some(&["bad_value"]), Some(&["lane=k8s"]), None),
        (None, Some(&["lane=k8s"]), Some("k8s")),
        (None, Some(&["a=b", "lane = %4B%38%73 ;p=1"]), Some("k8s")),
        (None, Some(&["lane=%20k8s%09"]), Some("k8s")),
        (None, Some(&["lane=k8s,lane=K8S"]), Some("k8s")),
        (None, Some(&["lane=k8s,lane=sss"]), None),
        (None, Some(&["lane=k8s,lane=%zz"]), None),
        (None, Some(&["lane=k8s,lane"]), Some("k8s")),
        (None, Some(&["lane=k8s", " lane\t=sss"]), None),
        (None, Some(&["Lane=sss,lane=k8s,lanes=sss"]), Some("k8s")),
        (None, Some(&["lane=k8s;lane=sss"]), Some("k8s")),
        (None, Some(&["lane=k%2B8s"]), None),
        (None, Some(&["lane=baseline"]), None),
    ];
    for (header, baggage, want) in cases {
        let req = Request {
            service: 0,
            lane_header: header.map(|h| h.iter().map(|s| (*s).to_owned()).collect()),
            baggage: baggage.map(|b| b.iter().map(|s| (*s).to_owned()).collect()),
        };
        let got = istio_lane(&d, &mut ev, &service, &joined(&req, "x-lane")).unwrap();
        let want = want.map_or(LaneRef::Baseline, |l| LaneRef::Lane(l.parse().unwrap()));
        assert_eq!(got, want, "{header:?} {baggage:?}");
        // And lane_core agrees.
        let value = lane_value(
            req.lane_header.iter().flatten().map(|l| l.as_bytes()),
            req.baggage.iter().flatten().map(|l| l.as_bytes()),
        );
        assert_eq!(
            value
                .lane()
                .map(|l| LaneRef::Lane(l.clone()))
                .unwrap_or(LaneRef::Baseline),
            got,
            "{header:?} {baggage:?}"
        );
    }
}
