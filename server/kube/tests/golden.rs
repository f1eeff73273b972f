//! Golden tests of `lane_kube::plan::desired`: each scenario's whole output (Deployments,
//! DestinationRules, VirtualServices, the lanes' routes, expired lanes, conflicts) against a
//! checked-in JSON file in `tests/golden/`. `UPDATE_GOLDEN=1 cargo test -p lane-kube --test
//! golden` rewrites them; review the diff.

mod common;

use common::{NOW, all_ready, baseline, lane, lane_deployment_status, version};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kcr_networking_istio_io::v1::destinationrules::{DestinationRule, DestinationRuleSpec};
use kcr_networking_istio_io::v1::virtualservices::{VirtualService, VirtualServiceSpec};
use lane_kube::crd::Lane;
use lane_kube::plan::{BaselineService, Desired, Existing, Options, desired};
use serde_json::json;

const DAY: u64 = 24 * 3600;

fn render(d: &Desired) -> String {
    let value = json!({
        "deployments": d.deployments,
        "destinationRules": d.destination_rules,
        "virtualServices": d.virtual_services,
        "routes": d.routes,
        "expired": d.expired,
        "conflicts": d.conflicts.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap();
    text.push('\n');
    text
}

/// The plan once every lane Deployment it wants reports a ready replica (`all_ready`); the golden
/// files are of that state. `not_ready_falls_back` has versions that are not ready.
fn check(name: &str, lanes: &[Lane], bases: &[BaselineService], existing: &Existing) -> Desired {
    let existing = &all_ready(lanes, bases, existing, &Options::new(NOW));
    check_as_is(name, lanes, bases, existing)
}

fn check_as_is(
    name: &str,
    lanes: &[Lane],
    bases: &[BaselineService],
    existing: &Existing,
) -> Desired {
    let out = desired(lanes, bases, existing, &Options::new(NOW));
    // The plan is a function of its inputs: the same inputs in another order give the same output.
    let mut rev_lanes = lanes.to_vec();
    rev_lanes.reverse();
    let mut rev_bases = bases.to_vec();
    rev_bases.reverse();
    assert!(
        desired(&rev_lanes, &rev_bases, existing, &Options::new(NOW)) == out,
        "{name}: the output depends on the input order"
    );
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let got = render(&out);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return out;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{name}: the plan differs from {path}; if the change is intended, rewrite the golden files with\n  \
         UPDATE_GOLDEN=1 cargo test -p lane-kube --test golden\nand review the diff.\n--- got ---\n{got}"
    );
    out
}

fn routes_of(d: &Desired, lane: &str) -> Vec<(String, String)> {
    d.routes[lane]
        .iter()
        .map(|r| (r.service.clone(), r.lane.clone()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// One lane with a version of one service: its Deployment (image, env, replicas, labels, owner
/// reference: the Lane is in the service's namespace), a DestinationRule with `baseline` and
/// `lane-feature-x`, a VirtualService with the lane's route then baseline.
#[test]
fn one_lane() {
    let mut v = version("registry.example/shop/cart:pr-12", "feature@01234567+dirty");
    v.env.insert("LOG_LEVEL".into(), "debug".into());
    v.env.insert("FEATURE_X".into(), "on".into());
    v.replicas = Some(2);
    let lanes = [lane(
        "shop",
        "feature-x",
        None,
        NOW + DAY,
        vec![("shop.cart", v)],
    )];
    let bases = [
        baseline("shop", "cart", true),
        baseline("shop", "pay", true),
    ];
    let d = check("one_lane", &lanes, &bases, &Existing::default());
    assert_eq!(d.deployments.len(), 1);
    assert_eq!(d.virtual_services.len(), 1);
    assert!(d.conflicts.is_empty());
    assert_eq!(
        routes_of(&d, "feature-x"),
        pairs(&[("shop.cart", "feature-x")])
    );
}

/// Two lanes on one host, one replacing a named container; the Lanes live in another namespace,
/// so the Deployments name them by annotation instead of an owner reference.
#[test]
fn two_lanes_one_host() {
    let a = version("registry.example/shop/cart:a", "a@1111");
    let mut b = version("registry.example/ops/shipper:8-rc", "b@2222");
    b.container = Some("log-shipper".into());
    let lanes = [
        lane("lanes", "zeta", None, NOW + DAY, vec![("shop.cart", b)]),
        lane("lanes", "alpha", None, NOW + DAY, vec![("shop.cart", a)]),
    ];
    let bases = [baseline("shop", "cart", true)];
    let d = check("two_lanes_one_host", &lanes, &bases, &Existing::default());
    let names: Vec<_> = d.virtual_services[0]
        .spec
        .http
        .as_ref()
        .unwrap()
        .iter()
        .map(|h| h.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["lane-alpha", "lane-zeta", "baseline"]);
    assert!(
        d.deployments
            .iter()
            .all(|d| d.metadata.owner_references.is_none())
    );
}

/// Stacked lanes: `me` on `team`. `me`'s requests to cart go to team's version, to pay to its own;
/// an expired lane gets nothing, and its child falls through to baseline where the expired lane
/// had the only version.
#[test]
fn stacked_lanes() {
    let lanes = [
        lane(
            "shop",
            "team",
            None,
            NOW + DAY,
            vec![
                (
                    "shop.cart",
                    version("registry.example/shop/cart:team", "team@aaaa"),
                ),
                (
                    "shop.pay",
                    version("registry.example/shop/pay:team", "team@aaaa"),
                ),
            ],
        ),
        lane(
            "shop",
            "me",
            Some("team"),
            NOW + DAY,
            vec![(
                "shop.pay",
                version("registry.example/shop/pay:me", "me@bbbb"),
            )],
        ),
        lane(
            "shop",
            "old",
            None,
            NOW - 1,
            vec![(
                "shop.ship",
                version("registry.example/shop/ship:old", "old@cccc"),
            )],
        ),
        lane(
            "shop",
            "child-of-old",
            Some("old"),
            NOW + DAY,
            vec![(
                "shop.cart",
                version("registry.example/shop/cart:c", "c@dddd"),
            )],
        ),
    ];
    let bases = [
        baseline("shop", "cart", true),
        baseline("shop", "pay", true),
        baseline("shop", "ship", true),
    ];
    let d = check("stacked_lanes", &lanes, &bases, &Existing::default());
    assert_eq!(d.expired, ["shop/old"]);
    assert_eq!(
        routes_of(&d, "me"),
        pairs(&[("shop.cart", "team"), ("shop.pay", "me")])
    );
    assert_eq!(
        routes_of(&d, "child-of-old"),
        pairs(&[("shop.cart", "child-of-old")])
    );
    assert!(
        d.virtual_services
            .iter()
            .all(|vs| vs.metadata.name.as_deref() != Some("ship-lanes"))
    );
}

/// Versions whose Deployment has no ready replica get no route of their own: `me` (stacked on
/// `team`) has a version of cart that is not ready, so its cart requests go to `team`'s version;
/// `team`'s pay is not ready either, so `team`'s pay requests go to baseline (no route) while
/// `me`'s ready pay keeps its route. Every Deployment and subset is still planned.
#[test]
fn not_ready_falls_back() {
    let lanes = [
        lane(
            "shop",
            "team",
            None,
            NOW + DAY,
            vec![
                (
                    "shop.cart",
                    version("registry.example/shop/cart:team", "team@aaaa"),
                ),
                (
                    "shop.pay",
                    version("registry.example/shop/pay:team", "team@aaaa"),
                ),
            ],
        ),
        lane(
            "shop",
            "me",
            Some("team"),
            NOW + DAY,
            vec![
                (
                    "shop.cart",
                    version("registry.example/shop/cart:me", "me@bbbb"),
                ),
                (
                    "shop.pay",
                    version("registry.example/shop/pay:me", "me@bbbb"),
                ),
            ],
        ),
    ];
    let bases = [
        baseline("shop", "cart", true),
        baseline("shop", "pay", true),
    ];
    let existing = Existing {
        deployments: vec![
            lane_deployment_status("shop.cart", "team", 2),
            lane_deployment_status("shop.cart", "me", 0),
            lane_deployment_status("shop.pay", "team", 0),
            lane_deployment_status("shop.pay", "me", 1),
        ],
        ..Default::default()
    };
    let d = check_as_is("not_ready_falls_back", &lanes, &bases, &existing);
    assert_eq!(d.deployments.len(), 4);
    assert_eq!(
        routes_of(&d, "me"),
        pairs(&[("shop.cart", "team"), ("shop.pay", "me")])
    );
    assert_eq!(routes_of(&d, "team"), pairs(&[("shop.cart", "team")]));
    let subsets: Vec<Vec<String>> = d
        .destination_rules
        .iter()
        .map(|dr| {
            dr.spec
                .subsets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .collect()
        })
        .collect();
    assert_eq!(
        subsets,
        [
            ["baseline", "lane-me", "lane-team"],
            ["baseline", "lane-me", "lane-team"]
        ]
    );
    // None ready: no lane routes at all, only baseline's, while the Deployments are planned.
    let none = desired(&lanes, &bases, &Existing::default(), &Options::new(NOW));
    assert_eq!(none.deployments.len(), 4);
    for vs in &none.virtual_services {
        let names: Vec<_> = vs
            .spec
            .http
            .iter()
            .flatten()
            .map(|h| h.name.clone())
            .collect();
        assert_eq!(names, [Some("baseline".to_owned())]);
    }
}

/// A lane without a version of a service still gets a route on that service's host when its
/// parent has one; a lane whose chain has none gets no route there. Invalid input becomes
/// conflicts: a service without a baseline, a bad Lane name, a bad parent, a duplicate lane id, a
/// missing container, a baseline without the baseline label.
#[test]
fn lane_without_a_version_and_bad_input() {
    let mut missing_container = version("registry.example/shop/pay:x", "x@1");
    missing_container.container = Some("nope".into());
    let lanes = [
        lane(
            "shop",
            "base",
            None,
            NOW + DAY,
            vec![(
                "shop.cart",
                version("registry.example/shop/cart:base", "base@1"),
            )],
        ),
        lane(
            "shop",
            "on-base",
            Some("base"),
            NOW + DAY,
            vec![(
                "shop.pay",
                version("registry.example/shop/pay:on-base", "on-base@2"),
            )],
        ),
        lane(
            "shop",
            "alone",
            None,
            NOW + DAY,
            vec![
                (
                    "shop.pay",
                    version("registry.example/shop/pay:alone", "alone@3"),
                ),
                (
                    "shop.ghost",
                    version("registry.example/shop/ghost:alone", "alone@3"),
                ),
                (
                    "shop.legacy",
                    version("registry.example/shop/legacy:alone", "alone@3"),
                ),
                ("Not-A-Service", version("x", "x")),
            ],
        ),
        lane("shop", "Bad_Name", None, NOW + DAY, vec![]),
        lane("shop", "bad-parent", Some("Nope!"), NOW + DAY, vec![]),
        lane("shop", "twin", None, NOW + DAY, vec![]),
        lane("other", "twin", None, NOW + DAY, vec![]),
        lane(
            "shop",
            "no-container",
            None,
            NOW + DAY,
            vec![("shop.pay", missing_container)],
        ),
    ];
    let bases = [
        baseline("shop", "cart", true),
        baseline("shop", "pay", true),
        baseline("shop", "legacy", false),
    ];
    let d = check(
        "lane_without_a_version",
        &lanes,
        &bases,
        &Existing::default(),
    );
    assert_eq!(
        routes_of(&d, "on-base"),
        pairs(&[("shop.cart", "base"), ("shop.pay", "on-base")])
    );
    assert_eq!(routes_of(&d, "alone"), pairs(&[("shop.pay", "alone")]));
    assert!(!d.routes.contains_key("twin"));
    assert_eq!(d.conflicts.len(), 7, "{:#?}", d.conflicts);
}

/// A VirtualService or DestinationRule someone else made for a host, or a Deployment with a
/// lane Deployment's name, is reported and left alone: the host gets no lane objects. The
/// operator's own objects and a gateway-only VirtualService are not conflicts.
#[test]
fn foreign_objects() {
    let lanes = [lane(
        "shop",
        "feature-x",
        None,
        NOW + DAY,
        vec![
            ("shop.cart", version("registry.example/shop/cart:x", "x@1")),
            ("shop.pay", version("registry.example/shop/pay:x", "x@1")),
            ("shop.ship", version("registry.example/shop/ship:x", "x@1")),
            (
                "shop.stock",
                version("registry.example/shop/stock:x", "x@1"),
            ),
        ],
    )];
    let bases = [
        baseline("shop", "cart", true),
        baseline("shop", "pay", true),
        baseline("shop", "ship", true),
        baseline("shop", "stock", true),
    ];
    let meta = |ns: &str, name: &str, managed: bool| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: managed.then(|| {
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "lane-operator".to_owned(),
            )]
            .into()
        }),
        ..Default::default()
    };
    let vs = |ns: &str, name: &str, managed: bool, hosts: &[&str], gateways: Option<&[&str]>| {
        let mut v = VirtualService::new(
            name,
            VirtualServiceSpec {
                hosts: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
                gateways: gateways.map(|g| g.iter().map(|h| (*h).to_owned()).collect()),
                ..Default::default()
            },
        );
        v.metadata = meta(ns, name, managed);
        v
    };
    let existing = Existing {
        virtual_services: vec![
            // cart: someone's VirtualService by short name.
            vs("shop", "cart", false, &["cart"], None),
            // pay: only on an ingress gateway (not the mesh), and the operator's own.
            vs(
                "shop",
                "pay-public",
                false,
                &["pay.example.com", "pay"],
                Some(&["istio-system/ingress"]),
            ),
            vs(
                "shop",
                "pay-lanes",
                true,
                &["pay.shop.svc.cluster.local"],
                None,
            ),
        ],
        destination_rules: vec![{
            // ship: a DestinationRule for the host from another namespace.
            let mut d = DestinationRule::new(
                "ship-tls",
                DestinationRuleSpec {
                    host: "ship.shop.svc.cluster.local".into(),
                    ..Default::default()
                },
            );
            d.metadata = meta("mesh-config", "ship-tls", false);
            d
        }],
        deployments: vec![Deployment {
            // stock: a Deployment already has the lane Deployment's name.
            metadata: meta("shop", "stock-lane-feature-x", false),
            ..Default::default()
        }],
    };
    let d = check("foreign_objects", &lanes, &bases, &existing);
    let hosts: Vec<_> = d
        .virtual_services
        .iter()
        .map(|v| v.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(hosts, ["pay-lanes"]);
    assert_eq!(d.conflicts.len(), 3, "{:#?}", d.conflicts);
}
