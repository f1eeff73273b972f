//! Requests with and without the lane header, through the agent's router: HTTP/1.1 and gRPC.

mod common;

use std::time::Duration;

use common::{TestEnv, sample_manifest};

/// Writes `lane-workspace.toml` listing `repos` (relative to the repos dir) and returns its path.
fn workspace(env: &TestEnv, repos: &[&str]) -> std::path::PathBuf {
    let text: String = repos
        .iter()
        .map(|r| format!("[[service]]\npath = \"{r}\"\n"))
        .collect();
    let path = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&path, text).expect("write lane-workspace.toml");
    path
}

#[test]
fn http_requests_route_by_lane_header_with_baseline_fallback() {
    let env = TestEnv::new("route-http", 2);
    let a = env.repo("a", &sample_manifest(&env.bin, "a", Some("b"), ""));
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let ws = workspace(&env, &["a", "b"]);
    let out = env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    assert!(
        out.stdout.contains("demo.a") && out.stdout.contains("demo.b"),
        "{out}"
    );

    // Lane feature-x has its own a and b; lane feature-y only its own b.
    for repo in [&a, &b] {
        env.branch(repo, "feature-x-branch");
        env.ok_in(repo, &["deploy", "--lane", "feature-x"]);
    }
    env.git(&b, &["checkout", "-q", "-b", "feature-y-branch"]);
    env.ok_in(&b, &["deploy", "--lane", "feature-y"]);

    let router = env.router();
    let host = "a.demo.localhost";
    let get = |headers: &[(&str, &str)]| {
        let r = common::http_get(router, host, "/", headers);
        assert_eq!(r.status, 200, "{r:?}");
        r.served_by()
    };
    assert_eq!(get(&[]), ["demo.a@baseline", "demo.b@baseline"]);
    assert_eq!(
        get(&[("x-lane", "feature-x")]),
        ["demo.a@feature-x", "demo.b@feature-x"]
    );
    assert_eq!(
        get(&[("x-lane", "feature-y")]),
        ["demo.a@baseline", "demo.b@feature-y"]
    );
    // W3C baggage carries the lane too.
    assert_eq!(
        get(&[("baggage", "lane=feature-y")]),
        ["demo.a@baseline", "demo.b@feature-y"]
    );
    // An invalid lane value is baseline, never an error.
    assert_eq!(
        get(&[("x-lane", "Not_A_Lane")]),
        ["demo.a@baseline", "demo.b@baseline"]
    );
    // A lane that does not exist falls back to baseline.
    assert_eq!(
        get(&[("x-lane", "no-such-lane")]),
        ["demo.a@baseline", "demo.b@baseline"]
    );
    // And the body shows the lane header each hop received.
    let body = common::http_get(router, host, "/", &[("x-lane", "feature-x")]).body;
    assert!(body.contains("feature-x"), "{body}");

    env.finish();
}

fn greeter_manifest(name: &str) -> String {
    format!(
        "app = \"demo\"\nproc = \"greeter\"\nprotocol = \"grpc\"\n\n[run]\n\
         command = \"'{}' --port {{port}} --name {name}\"\n\n[health]\ntcp = true\ntimeout = \"20s\"\n",
        common::greeter_bin().display()
    )
}

async fn hello(
    router: std::net::SocketAddr,
    lane: Option<&str>,
) -> (lane_tests::HelloReply, Vec<String>) {
    let authority = format!("greeter.demo.localhost:{}", router.port());
    let mut client =
        lane_tests::GreeterClient::connect_via(&format!("http://{router}"), Some(&authority))
            .await
            .expect("connect to the router");
    let mut req = tonic::Request::new(lane_tests::HelloRequest {
        name: "tester".into(),
    });
    if let Some(lane) = lane {
        req.metadata_mut()
            .insert("x-lane", lane.parse().expect("a metadata value"));
    }
    let resp = client.hello(req).await.expect("Hello through the router");
    let served: Vec<String> = resp
        .metadata()
        .get_all("x-lane-served-by")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    (resp.into_inner(), served)
}

#[test]
fn grpc_requests_route_by_lane_header() {
    let env = TestEnv::new("route-grpc", 3);
    let repo = env.repo("greeter", &greeter_manifest("greeter-baseline"));
    let ws = workspace(&env, &["greeter"]);
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);

    env.branch(&repo, "feature-g-branch");
    std::fs::write(repo.join("lane.toml"), greeter_manifest("greeter-lane")).unwrap();
    env.git(&repo, &["commit", "-q", "-am", "lane version"]);
    env.ok_in(&repo, &["deploy", "--lane", "feature-g"]);
    assert_eq!(
        env.instance("feature-g", "demo.greeter")
            .expect("lane instance")["state"],
        "healthy"
    );

    let router = env.router();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let (reply, served) = hello(router, None).await;
            assert_eq!(reply.server, "greeter-baseline", "{reply:?}");
            assert_eq!(reply.lane, "");
            assert_eq!(served, ["demo.greeter@baseline"]);

            let (reply, served) = hello(router, Some("feature-g")).await;
            assert_eq!(reply.server, "greeter-lane", "{reply:?}");
            assert_eq!(reply.lane, "feature-g", "the header reached the service");
            assert_eq!(served, ["demo.greeter@feature-g"]);

            let (reply, _) = hello(router, Some("other-lane")).await;
            assert_eq!(reply.server, "greeter-baseline", "fallback: {reply:?}");
        })
        .await
        .expect("gRPC calls finish within 30s");
    });
    drop(rt);
    env.finish();
}
