//! The consul backend across machines: two `lane` installations (two `LANE_HOME`s, each with its
//! own supervisor) talking to two Consul agents of one datacenter (the double's own agent, node
//! `double-node`, and a second agent, node `machine-b`, sharing its catalog and KV). Whatever
//! machine removes, reclaims or reassigns a lane, the machine that runs the version stops,
//! deregisters or re-registers it; an instance whose machine is gone is removed from the catalog.

mod common;

use std::time::Duration;

use common::TestEnv;
use common::consul::{consul_repo, lane_doc, port_of};
use lane_tests::consul::{ConsulDouble, NODE, Options};

fn runs_sample(env: &TestEnv) -> bool {
    env.processes()
        .iter()
        .any(|(_, c)| c.contains("sample-service"))
}

#[test]
fn rm_and_gc_from_another_machine_reach_the_machine_that_runs_the_version() {
    let a = TestEnv::new("consul-machine-a", 230);
    let b = TestEnv::new("consul-machine-b", 231);
    let consul = ConsulDouble::start(Options::default()).expect("the Consul double starts");
    let addr_a = consul.addr().to_string();
    let addr_b = consul.add_agent("machine-b").unwrap().to_string();
    let vars_a = [("CONSUL_HTTP_ADDR", addr_a.as_str())];
    let vars_b = [("CONSUL_HTTP_ADDR", addr_b.as_str())];
    let repo_a = consul_repo(&a, "");
    let repo_b = consul_repo(&b, "");

    // Machine A runs a version of lane feature-x, registered through its own agent.
    let out = a.run_in(&repo_a, &["deploy", "--lane", "feature-x"], &vars_a);
    assert_eq!(out.code, 0, "{out}");
    let id = "gaia-lane.demo.b-feature-x";
    assert_eq!(consul.node_of(id).as_deref(), Some(NODE));
    assert_eq!(
        consul.deregister_critical_after(id),
        Some(vec![Some(Duration::from_secs(30 * 60))]),
        "every registration carries DeregisterCriticalServiceAfter"
    );
    assert!(runs_sample(&a));

    // Machine B removes the lane: the document goes at once; B's agent does not know the
    // instance, so A's lane agent, following the documents, deregisters it and stops it.
    // `rm` waits (bounded) for that.
    let out = b.run_in(&repo_b, &["rm", "feature-x"], &vars_b);
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_doc(&consul, "gaia-lane/lanes/feature-x").is_none());
    assert!(
        !consul.service_ids().contains(&id.to_owned()),
        "machine A deregistered its instance before rm returned: {out}"
    );
    assert!(!out.stderr.contains("still registered"), "{out}");
    assert!(
        consul
            .kv("gaia-lane/registrations/gaia-lane.demo.b-feature-x")
            .is_none()
    );
    common::wait_for(
        "machine A to stop the version",
        Duration::from_secs(20),
        &mut || (!runs_sample(&a)).then_some(()),
    );

    // A lane that expires, reclaimed by `lane gc` on machine B.
    let out = a.run_in(
        &repo_a,
        &["deploy", "--lane", "short", "--ttl", "4s"],
        &vars_a,
    );
    assert_eq!(out.code, 0, "{out}");
    let short = "gaia-lane.demo.b-short";
    assert!(consul.service_ids().contains(&short.to_owned()));
    common::wait_for("lane short to expire", Duration::from_secs(20), &mut || {
        let out = b.run_in(&repo_b, &["gc", "--json"], &vars_b);
        assert_eq!(out.code, 0, "{out}");
        (out.json()["lanes_removed"] == serde_json::json!(["short"])).then_some(())
    });
    assert!(lane_doc(&consul, "gaia-lane/lanes/short").is_none());
    common::wait_for(
        "machine A to deregister the expired lane's instance",
        Duration::from_secs(20),
        &mut || (!consul.service_ids().contains(&short.to_owned())).then_some(()),
    );

    // Machine B runs a version and goes away (its lane agent stops, and Consul's servers see
    // its node fail): `lane rm` on A removes the instance from the catalog.
    let out = b.run_in(&repo_b, &["deploy", "--lane", "laptop"], &vars_b);
    assert_eq!(out.code, 0, "{out}");
    let laptop = "gaia-lane.demo.b-laptop";
    assert_eq!(consul.node_of(laptop).as_deref(), Some("machine-b"));
    let out = b.run(&["down"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(consul.set_node_health("machine-b", "critical"));
    let out = a.run_in(&repo_a, &["rm", "laptop"], &vars_a);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        !consul.service_ids().contains(&laptop.to_owned()),
        "an instance of a dead node is removed from the catalog: {:?}",
        consul.service_ids()
    );
    assert!(
        consul
            .kv("gaia-lane/registrations/gaia-lane.demo.b-laptop")
            .is_none()
    );
    // The same for `lane gc` and an instance whose lane is gone (an orphan).
    assert!(consul.set_node_health("machine-b", "passing"));
    let out = b.run_in(&repo_b, &["deploy", "--lane", "laptop-2"], &vars_b);
    assert_eq!(out.code, 0, "{out}");
    let out = b.run(&["down"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(consul.set_node_health("machine-b", "critical"));
    let (status, text) = consul
        .http("DELETE", "/v1/kv/gaia-lane/lanes/laptop-2", None, b"")
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let out = a.run_in(&repo_a, &["gc", "--json"], &vars_a);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("gaia-lane.demo.b-laptop-2"),
        "gc reports the instance it removed: {out}"
    );
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    a.finish();
    b.finish();
}

#[test]
fn assign_from_another_machine_is_carried_out_by_the_machine_that_runs_the_version() {
    let a = TestEnv::new("consul-assign-a", 232);
    let b = TestEnv::new("consul-assign-b", 233);
    let consul = ConsulDouble::start(Options::default()).expect("the Consul double starts");
    let addr_a = consul.addr().to_string();
    let addr_b = consul.add_agent("machine-b").unwrap().to_string();
    let vars_a = [("CONSUL_HTTP_ADDR", addr_a.as_str())];
    let vars_b = [
        ("CONSUL_HTTP_ADDR", addr_b.as_str()),
        ("LANE_CONSUL_HANDOFF_WAIT", "20"),
    ];
    let repo_a = consul_repo(&a, "");
    let repo_b = consul_repo(&b, "");

    let out = a.run_in(&repo_a, &["deploy", "--lane", "first"], &vars_a);
    assert_eq!(out.code, 0, "{out}");
    let port = port_of(&consul, "gaia-lane.demo.b-first").expect("registered in lane first");
    assert_eq!(b.run_in(&repo_b, &["create", "second"], &vars_b).code, 0);

    // B assigns: the documents change (CAS) and the command waits until A's lane agent has
    // registered the version under the new lane.
    let out = b.run_in(
        &repo_b,
        &["assign", "demo.b", "--from", "first", "--to", "second"],
        &vars_b,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        consul.service_ids(),
        vec!["gaia-lane.demo.b-second".to_owned()]
    );
    let tags = consul.tags("gaia-lane.demo.b-second").unwrap();
    assert!(tags.contains(&"lane=second".to_owned()), "{tags:?}");
    assert_eq!(
        consul.node_of("gaia-lane.demo.b-second").as_deref(),
        Some(NODE)
    );
    assert_eq!(
        port_of(&consul, "gaia-lane.demo.b-second"),
        Some(port),
        "the same process"
    );
    let second = lane_doc(&consul, "gaia-lane/lanes/second").unwrap();
    assert!(second["services"]["demo.b"].is_object(), "{second}");
    let first = lane_doc(&consul, "gaia-lane/lanes/first").unwrap();
    assert!(first["services"].as_object().unwrap().is_empty(), "{first}");
    // A's supervisor relabelled the process: A's status shows it in lane second.
    let st = a.run_in(&repo_a, &["status", "--json"], &vars_a).json()["status"].clone();
    let lanes = st["lanes"].as_array().unwrap();
    let second_view = lanes
        .iter()
        .find(|l| l["id"] == "second")
        .expect("lane second");
    assert_eq!(second_view["instances"][0]["state"], "healthy", "{st}");

    // Machine A's lane agent is paused (as a machine asleep): the documents change, the command
    // says the owning machine has not picked it up, and the registration stays as it was.
    let agent = a.agent_pid().expect("machine A's lane agent runs");
    common::kill(agent, "STOP");
    assert_eq!(b.run_in(&repo_b, &["create", "third"], &vars_b).code, 0);
    let quick = [
        ("CONSUL_HTTP_ADDR", addr_b.as_str()),
        ("LANE_CONSUL_HANDOFF_WAIT", "1"),
    ];
    let out = b.run_in(
        &repo_b,
        &["assign", "demo.b", "--from", "second", "--to", "third"],
        &quick,
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(
        out.stderr.contains("has not registered it there") && out.stderr.contains(NODE),
        "{out}"
    );
    let third = lane_doc(&consul, "gaia-lane/lanes/third").unwrap();
    assert!(third["services"]["demo.b"].is_object(), "{third}");
    assert_eq!(
        consul.service_ids(),
        vec!["gaia-lane.demo.b-second".to_owned()]
    );
    // Removing the old lane meanwhile: done, and B says what A has not deregistered yet.
    let out = b.run_in(&repo_b, &["rm", "second"], &quick);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("gaia-lane.demo.b-second is still registered on Consul node")
            && out.stderr.contains(NODE),
        "{out}"
    );
    assert!(lane_doc(&consul, "gaia-lane/lanes/second").is_none());

    // A wakes up: its keeper catches up and carries out the assignment (the version moves to
    // lane third rather than stopping with lane second).
    common::kill(agent, "CONT");
    common::wait_for(
        "machine A to move the version to lane third",
        Duration::from_secs(30),
        &mut || (consul.service_ids() == vec!["gaia-lane.demo.b-third".to_owned()]).then_some(()),
    );
    assert_eq!(
        port_of(&consul, "gaia-lane.demo.b-third"),
        Some(port),
        "the same process"
    );
    assert!(runs_sample(&a));
    let out = b.run_in(&repo_b, &["rm", "third"], &vars_b);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    common::wait_for(
        "machine A to stop the version",
        Duration::from_secs(20),
        &mut || (!runs_sample(&a)).then_some(()),
    );
    let _ = b.run_in(&repo_b, &["rm", "first", "--force"], &vars_b);
    a.finish();
    b.finish();
}
