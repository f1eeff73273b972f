//! Lane propagation without lane code: three Python services (a → b over HTTP, b → c over gRPC,
//! `tests/otel/service.py`) instrumented only with OpenTelemetry's own packages carry
//! `baggage: lane=<id>` from hop to hop, and the router routes every hop by it.
//!
//! The Python environment comes from `tests/otel/venv.sh` (a cached venv; exit 77 when this machine
//! has no usable python3, which fails the test under `CI=true` and skips it otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{HttpReply, TestEnv};
use serde_json::Value;

/// The venv's python, made (or found in the cache) once per test process; `None`: skip.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn otel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("otel")
}

fn make_venv() -> Option<PathBuf> {
    let script = otel_dir().join("venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match out.status.code() {
        Some(0) => {}
        Some(77) if !ci => {
            eprintln!(
                "SKIPPED: the OpenTelemetry test needs Python 3.9+ with venv (CI=true makes this a failure):\n{stderr}"
            );
            return None;
        }
        _ => panic!(
            "{} failed ({}), so the OpenTelemetry services cannot run:\n{stderr}",
            script.display(),
            out.status
        ),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        python.is_file(),
        "{} printed `{}`, which is no python:\n{stderr}",
        script.display(),
        python.display()
    );
    Some(python)
}

/// What each proc serves and calls: `(proc, service.py flags, lane.toml extras)`.
const PROCS: [(&str, &str, &str); 3] = [
    (
        "a",
        "--http --next-http b",
        "[health]\nhttp = \"/healthz\"\ntimeout = \"30s\"\n",
    ),
    (
        "b",
        "--http --next-grpc c",
        "[health]\nhttp = \"/healthz\"\ntimeout = \"30s\"\n",
    ),
    ("c", "--grpc", "[health]\ntcp = true\ntimeout = \"30s\"\n"),
];

/// `lane.toml` of `proc`; `propagators` is its `OTEL_PROPAGATORS` (empty: OpenTelemetry's default,
/// `tracecontext,baggage`, whatever the environment running the test says); `more` is added to
/// its `service.py` flags.
fn manifest(python: &Path, proc: &str, propagators: &str, more: &str) -> String {
    let (_, flags, health) = PROCS.iter().find(|p| p.0 == proc).expect("a known proc");
    let protocol = if flags.starts_with("--grpc") {
        "protocol = \"grpc\"\n"
    } else {
        ""
    };
    format!(
        "app = \"otel\"\nproc = \"{proc}\"\n{protocol}\n[run]\n\
         command = \"'{}' service.py --name {proc} --port {{port}} {flags}{more}\"\n\
         env = {{ PYTHONUNBUFFERED = \"1\", PYTHONDONTWRITEBYTECODE = \"1\", OTEL_PROPAGATORS = \"{propagators}\" }}\n\n{health}",
        python.display()
    )
}

/// Baseline a, b, c (version `<proc>-v1`) and lane feature-x with its own version (`-v2`, built
/// from branch `feature-x-branch`) of each of `lane_procs`. `b` is b's `OTEL_PROPAGATORS` and
/// extra flags; `agent_env` goes to the command that starts the agent (and so its router).
fn deploy(
    env: &TestEnv,
    python: &Path,
    lane_procs: &[&str],
    b: (&str, &str),
    agent_env: &[(&str, &str)],
) {
    let service = std::fs::read_to_string(otel_dir().join("service.py")).expect("service.py");
    let mut repos = Vec::new();
    for (proc, _, _) in PROCS {
        let dir = env.root.join("repos").join(proc);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("service.py"), &service).unwrap();
        std::fs::write(dir.join("VERSION"), format!("{proc}-v1\n")).unwrap();
        let (propagators, more) = if proc == "b" { b } else { ("", "") };
        repos.push(env.repo(proc, &manifest(python, proc, propagators, more)));
    }
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(
        &ws,
        "[[service]]\npath = \"a\"\n[[service]]\npath = \"b\"\n[[service]]\npath = \"c\"\n",
    )
    .unwrap();
    let up = env.run_in(
        &env.root,
        &["baseline", "up", "--file", ws.to_str().unwrap()],
        agent_env,
    );
    assert_eq!(up.code, 0, "`lane baseline up` failed:\n{up}");
    for (repo, (proc, _, _)) in repos.iter().zip(PROCS) {
        if !lane_procs.contains(&proc) {
            continue;
        }
        env.branch(repo, "feature-x-branch");
        std::fs::write(repo.join("VERSION"), format!("{proc}-v2\n")).unwrap();
        env.git(repo, &["commit", "-q", "-am", "v2"]);
        env.ok_in(repo, &["deploy", "--lane", "feature-x"]);
    }
}

/// One hop of a reply: `service version deployed_in baggage_lane`, outermost first, and the trace
/// ids the hops saw.
fn hops(reply: &HttpReply) -> (Vec<String>, Vec<String>) {
    assert_eq!(reply.status, 200, "{reply:#?}");
    let mut body: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("the reply is not JSON ({e}): {reply:#?}"));
    let mut hops = Vec::new();
    let mut traces = Vec::new();
    loop {
        assert!(body.get("error").is_none(), "a hop failed: {reply:#?}");
        hops.push(format!(
            "{} {} {} {}",
            body["service"].as_str().unwrap_or("?"),
            body["version"].as_str().unwrap_or("?"),
            body["deployed_in"].as_str().unwrap_or("?"),
            body["baggage_lane"].as_str().unwrap_or("-"),
        ));
        traces.push(body["trace_id"].as_str().unwrap_or("none").to_owned());
        match body.get("next") {
            Some(next) if !next.is_null() => body = next.clone(),
            _ => break,
        }
    }
    (hops, traces)
}

fn get(env: &TestEnv, headers: &[(&str, &str)]) -> HttpReply {
    let router = env.router();
    let host = format!("a.otel.localhost:{}", router.port());
    common::http_get(router, &host, "/", headers)
}

/// Every hop of one request saw one trace: trace context went along with the baggage.
fn one_trace(traces: &[String]) {
    assert_eq!(traces.len(), 3, "{traces:?}");
    assert!(traces[0].len() == 32 && traces[0] != "none", "{traces:?}");
    assert!(traces.iter().all(|t| *t == traces[0]), "{traces:?}");
}

#[test]
fn opentelemetry_baggage_carries_the_lane_over_http_and_grpc() {
    let Some(python) = python() else { return };
    let env = TestEnv::new("otel-baggage", 85);
    // The lane has no b: baseline's b serves in between.
    deploy(&env, &python, &["a", "c"], ("", ""), &[]);

    // No lane: baseline everywhere, and no lane in anyone's baggage.
    let reply = get(&env, &[]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@baseline", "otel.b@baseline", "otel.c@baseline"]
    );
    let (path, traces) = hops(&reply);
    assert_eq!(
        path,
        [
            "otel.a a-v1 baseline -",
            "otel.b b-v1 baseline -",
            "otel.c c-v1 baseline -"
        ]
    );
    one_trace(&traces);

    // `baggage: lane=feature-x`: the lane's a and c, baseline's b in between, and every hop's
    // OpenTelemetry context holds the lane.
    let want_served = ["otel.a@feature-x", "otel.b@baseline", "otel.c@feature-x"];
    let want_path = [
        "otel.a a-v2 feature-x feature-x",
        "otel.b b-v1 baseline feature-x",
        "otel.c c-v2 feature-x feature-x",
    ];
    let reply = get(&env, &[("baggage", "lane=feature-x")]);
    let (path, traces) = hops(&reply);
    assert_eq!(path, want_path);
    assert_eq!(reply.served_by(), want_served);
    one_trace(&traces);

    // Among other baggage members (one with a property), inside a trace the client started. (Not
    // with a property on the lane entry: OpenTelemetry Python keeps it as part of the value and
    // sends `lane=feature-x%3Bsource%3Dtest` on, which is no lane; docs/propagation.md says so.)
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = get(
        &env,
        &[
            (
                "baggage",
                "user=alice;source=test, lane=feature-x, tenant=t1",
            ),
            ("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01")),
        ],
    );
    let (path, traces) = hops(&reply);
    assert_eq!(path, want_path);
    assert_eq!(reply.served_by(), want_served);
    assert_eq!(traces, [trace_id; 3]);

    // A lane that does not exist falls back to baseline at every hop (its baggage still travels).
    let reply = get(&env, &[("baggage", "lane=no-such-lane")]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@baseline", "otel.b@baseline", "otel.c@baseline"]
    );

    // `lane trace` sending the lane as baggage: every hop correct.
    let out = env.run(&["trace", "otel.a", "--lane", "feature-x", "--baggage"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("via baggage"), "{out}");
    assert!(!out.stdout.contains("WRONG"), "{out}");
    let report = env
        .ok(&[
            "trace",
            "otel.a",
            "--lane",
            "feature-x",
            "--baggage",
            "--json",
        ])
        .json();
    let served: Vec<String> = report["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}@{}", h["service"].as_str().unwrap(), h["served_by"]))
        .collect();
    assert_eq!(
        served,
        [
            "otel.a@\"feature-x\"",
            "otel.b@\"baseline\"",
            "otel.c@\"feature-x\""
        ]
    );
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report:#}"
    );

    // The lane header alone reaches a, but these services forward only OpenTelemetry's headers:
    // the lane is lost after a (the router option of the next test is for that), and `lane
    // trace` with the header says so.
    let reply = get(&env, &[("x-lane", "feature-x")]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@feature-x", "otel.b@baseline", "otel.c@baseline"]
    );
    let out = env.run(&["trace", "otel.a", "--lane", "feature-x"]);
    assert_eq!(out.code, 8, "{out}");
    // b is served by baseline either way, so the lane was lost at a or at b.
    assert!(
        out.stdout.contains(
            "otel.c was served by baseline although lane feature-x has it: one of the hops \
             before it (otel.a, otel.b) did not forward the lane header"
        ),
        "{out}"
    );
    env.finish();
}

/// Lane feature-x has a version of every proc and b is deployed with `b` (its `OTEL_PROPAGATORS`
/// and flags) that make it lose the baggage: b being served in the lane shows the lane reached b,
/// the lane's c being skipped shows b lost it, and `lane trace` says so. `b_saw` is the baggage
/// lane b's own handler sees (`-`: none).
fn b_loses_the_lane(name: &str, slot: u16, b: (&str, &str), b_saw: &str) {
    let Some(python) = python() else { return };
    let env = TestEnv::new(name, slot);
    deploy(&env, &python, &["a", "b", "c"], b, &[]);

    let reply = get(&env, &[("baggage", "lane=feature-x")]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@feature-x", "otel.b@feature-x", "otel.c@baseline"]
    );
    let (path, _) = hops(&reply);
    assert_eq!(
        path,
        [
            "otel.a a-v2 feature-x feature-x".to_owned(),
            format!("otel.b b-v2 feature-x {b_saw}"),
            "otel.c c-v1 baseline -".to_owned()
        ]
    );

    let out = env.run(&["trace", "otel.a", "--lane", "feature-x", "--baggage"]);
    assert_eq!(out.code, 8, "{out}");
    assert!(out.stdout.contains("WRONG"), "{out}");
    assert!(
        out.stdout.contains(
            "otel.c was served by baseline although lane feature-x has it: the hop before it \
             (otel.b) did not forward the `lane` baggage entry"
        ),
        "names b: {out}"
    );
    let json = env.run(&[
        "trace",
        "otel.a",
        "--lane",
        "feature-x",
        "--baggage",
        "--json",
    ]);
    assert_eq!(json.code, 8, "{json}");
    let report = json.json();
    let hops = report["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 3, "{report:#}");
    assert_eq!(hops[0]["ok"], true, "{report:#}");
    assert_eq!(hops[1]["ok"], true, "{report:#}");
    assert_eq!(hops[2]["service"], "otel.c");
    assert_eq!(hops[2]["served_by"], "baseline");
    assert_eq!(hops[2]["expected"], "feature-x");
    assert_eq!(hops[2]["ok"], false);
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    env.finish();
}

#[test]
fn lane_trace_names_the_hop_whose_baggage_propagation_is_off() {
    // b propagates trace context only, a common misconfiguration: it neither reads nor sends
    // baggage (the request still reaches the lane's b, routed by the baggage a sent).
    b_loses_the_lane("otel-no-baggage", 86, ("tracecontext", ""), "-");
}

#[test]
fn a_call_from_a_thread_pool_loses_the_lane_without_threading_instrumentation() {
    // b calls c from a pool thread, which does not inherit the request's context.
    // b's handler has the lane in its context; the pool thread that calls c does not.
    b_loses_the_lane(
        "otel-pool",
        88,
        ("", " --call-from-thread-pool"),
        "feature-x",
    );
}

#[test]
fn threading_instrumentation_carries_the_lane_into_a_thread_pool() {
    let Some(python) = python() else { return };
    let env = TestEnv::new("otel-pool-ok", 89);
    deploy(
        &env,
        &python,
        &["a", "b", "c"],
        ("", " --call-from-thread-pool --instrument-threading"),
        &[],
    );
    let reply = get(&env, &[("baggage", "lane=feature-x")]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@feature-x", "otel.b@feature-x", "otel.c@feature-x"]
    );
    let (path, traces) = hops(&reply);
    assert_eq!(
        path,
        [
            "otel.a a-v2 feature-x feature-x",
            "otel.b b-v2 feature-x feature-x",
            "otel.c c-v2 feature-x feature-x"
        ]
    );
    one_trace(&traces);
    let out = env.run(&["trace", "otel.a", "--lane", "feature-x", "--baggage"]);
    assert_eq!(out.code, 0, "{out}");
    env.finish();
}

#[test]
fn the_router_can_forward_the_lane_header_as_baggage() {
    let Some(python) = python() else { return };
    let env = TestEnv::new("otel-edge", 87);
    deploy(
        &env,
        &python,
        &["a", "c"],
        ("", ""),
        &[("LANE_HEADER_TO_BAGGAGE", "1")],
    );

    // The client sends only `x-lane`; the router adds `baggage: lane=feature-x` at the edge, and
    // OpenTelemetry carries it from there.
    let reply = get(&env, &[("x-lane", "feature-x")]);
    assert_eq!(
        reply.served_by(),
        ["otel.a@feature-x", "otel.b@baseline", "otel.c@feature-x"]
    );
    let (path, traces) = hops(&reply);
    assert_eq!(
        path,
        [
            "otel.a a-v2 feature-x feature-x",
            "otel.b b-v1 baseline feature-x",
            "otel.c c-v2 feature-x feature-x",
        ]
    );
    one_trace(&traces);

    // The header wins over baggage, for this hop and (rewritten) for the next ones; other
    // baggage members are kept.
    let reply = get(
        &env,
        &[
            ("x-lane", "feature-x"),
            ("baggage", "user=alice,lane=other"),
        ],
    );
    assert_eq!(
        reply.served_by(),
        ["otel.a@feature-x", "otel.b@baseline", "otel.c@feature-x"]
    );
    let reply = get(
        &env,
        &[("x-lane", "baseline"), ("baggage", "lane=feature-x")],
    );
    assert_eq!(
        reply.served_by(),
        ["otel.a@baseline", "otel.b@baseline", "otel.c@baseline"]
    );
    let (path, _) = hops(&reply);
    assert_eq!(path[2], "otel.c c-v1 baseline baseline");
    // Without any lane nothing is added.
    let (path, _) = hops(&get(&env, &[]));
    assert!(path.iter().all(|h| h.ends_with(" -")), "{path:?}");

    // So `lane trace`, which sends the lane header like `lane proxy` does, finds every hop right.
    let out = env.run(&["trace", "otel.a", "--lane", "feature-x"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stdout.contains("WRONG"), "{out}");
    env.finish();
}

#[test]
fn a_header_to_baggage_value_that_is_neither_on_nor_off_is_refused() {
    // Starts nothing, so it may share slot 89 with the test above.
    let env = TestEnv::new("otel-edge-bad", 89);
    let why = "LANE_HEADER_TO_BAGGAGE `maybe` is neither on (1, true, yes, on) nor off (0, false, no, off)";
    let out = env.run_in(
        &env.root,
        &["router", "--listen", "127.0.0.1:0"],
        &[("LANE_HEADER_TO_BAGGAGE", "maybe")],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(why), "{out}");
    let out = env.run_in(
        &env.root,
        &["status"],
        &[("LANE_HEADER_TO_BAGGAGE", "maybe")],
    );
    assert_eq!(out.code, 7, "the agent cannot start: {out}");
    assert!(out.stderr.contains(why), "{out}");
    assert!(env.agent_pid().is_none(), "no agent runs");
    env.finish();
}
