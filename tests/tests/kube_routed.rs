//! `lane deploy` on Kubernetes follows the Lane to routed, against a real kube-apiserver
//! (`lane_tests::apiserver`): `lane operator` runs as a process (as `admin`, scoped to the test's
//! namespace) and `lane deploy` as the developer `alice` with `deploy/rbac.yaml`'s rights. The
//! deploy returns only once the operator's Lane status routes the version; with the operator gone
//! after making the Deployment, it ends with an error that says the operator did not route it.
//!
//! A bare API server runs no controllers: where the lane Deployment must finish rolling out, the
//! test plays the Deployment controller (it writes `status.observedGeneration`,
//! `updatedReplicas` and `readyReplicas`), and says so.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Running, TestEnv};
use lane_tests::apiserver::ApiServer;
use lane_tests::kube::{apply, apply_files, create_namespace, get_raw, patch_deployment_status};
use serde_json::{Value, json};

fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    lane_tests::kube::wait_until(what, Duration::from_secs(60), Duration::from_millis(100), f)
}

/// The CRDs (lane's and the tests' minimal Istio ones), RBAC, and namespace `ns` with the
/// baseline of `<ns>.cart`: Service `cart` and Deployment `cart`, rolled out.
fn cluster(ns: &str) {
    apply_files(
        &[
            "deploy/crd.yaml",
            "deploy/environment-crd.yaml",
            "deploy/rbac.yaml",
            "server/kube/tests/operator/istio-crds.yaml",
        ],
        &[
            "crd/lanes.lane.dev",
            "crd/laneenvironments.lane.dev",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
        ],
    );
    create_namespace(ns);
    wait_until("Lanes served", || {
        get_raw(&format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes"))
    });
    apply(&json!({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "cart", "namespace": ns},
                  "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80}]}}));
    apply(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "cart", "namespace": ns, "labels": {"app": "cart"}},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cart"}},
                           "template": {"metadata": {"labels": {"app": "cart",
                                                                "lane.dev/lane": "baseline"}},
                                        "spec": {"containers": [{"name": "cart",
                                                 "image": "registry.example/cart:main"}]}}}}));
    rolled_out(ns, "cart");
}

/// Plays the Deployment controller: the Deployment's current generation rolled out, all ready.
fn rolled_out(ns: &str, name: &str) {
    let d = get_raw(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .unwrap_or_else(|| panic!("Deployment {ns}/{name}"));
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = json!({"status": {"observedGeneration": d["metadata"]["generation"],
                                   "replicas": want, "updatedReplicas": want,
                                   "readyReplicas": want, "availableReplicas": want}});
    patch_deployment_status(ns, name, &status);
}

/// A repo for `<ns>.cart` whose image build prints `image`; `[health] timeout` is `timeout`.
fn repo(env: &TestEnv, ns: &str, image: &str, timeout: &str) -> PathBuf {
    let repo = env.repo(
        "cart",
        &format!(
            "app = \"{ns}\"\nproc = \"cart\"\n[run]\ncommand = \"./cart\"\n[health]\n\
             timeout = \"{timeout}\"\n[backend]\nkind = \"kubernetes\"\n[image]\n\
             build = \"./build-image.sh\"\n"
        ),
    );
    let script = repo.join("build-image.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho {image}\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    repo
}

fn operator(env: &TestEnv, dir: &Path, ns: &str) -> Running {
    let admin = ApiServer::shared().kubeconfig("admin");
    env.spawn_in(
        dir,
        &[
            "operator",
            "--kubeconfig",
            &admin.to_string_lossy(),
            "--namespace",
            ns,
            "--lease-namespace",
            ns,
        ],
        &[],
    )
}

fn deploy(env: &TestEnv, dir: &Path, lane: &str) -> Running {
    let alice = ApiServer::shared().kubeconfig("alice");
    env.spawn_in(
        dir,
        &["deploy", "--lane", lane],
        &[("KUBECONFIG", &alice.to_string_lossy())],
    )
}

/// The lane Deployment once the operator has made it with `image`.
fn lane_deployment(ns: &str, name: &str, image: &str) {
    wait_until(
        &format!("the operator's Deployment {name} with {image}"),
        || {
            let d = get_raw(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))?;
            (d["spec"]["template"]["spec"]["containers"][0]["image"] == image).then_some(())
        },
    );
}

/// What a background `lane` command (the `n`th spawned in `env`) printed so far.
fn printed(env: &TestEnv, n: usize) -> String {
    [format!("cmd{n}.out"), format!("cmd{n}.err")]
        .map(|f| std::fs::read_to_string(env.root.join(f)).unwrap_or_default())
        .concat()
}

fn condition(lane: &Value, type_: &str) -> Value {
    lane["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn deploy_returns_once_the_operator_routes_the_version() {
    let ns = "kr-routed";
    cluster(ns);
    let env = TestEnv::new("kube-routed", 164);
    let repo = repo(&env, ns, "registry.example/cart:feat-1", "30s");
    let op = operator(&env, &repo, ns); // cmd1
    let deploying = deploy(&env, &repo, "feat"); // cmd2
    lane_deployment(ns, "cart-lane-feat", "registry.example/cart:feat-1");
    // The operator waits for a ready replica before it routes; stop it meanwhile, so that the
    // deploy is seen waiting for the route after the version is ready.
    common::kill(op.pid(), "STOP");
    rolled_out(ns, "cart-lane-feat");
    wait_until("the deploy to report health", || {
        printed(&env, 2).contains("[health").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let so_far = printed(&env, 2);
    assert!(
        !so_far.contains("[route"),
        "the deploy reported the route before the operator made it:\n{so_far}"
    );
    assert!(
        common::alive(deploying.pid()),
        "the deploy returned before the route:\n{so_far}"
    );
    common::kill(op.pid(), "CONT");
    let out = deploying.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 0, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    let order: Vec<usize> = ["[build", "[register", "[start", "[health", "[route"]
        .iter()
        .map(|s| {
            all.find(s)
                .unwrap_or_else(|| panic!("`{s}` missing:\n{out}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stage order:\n{out}");
    assert!(
        all.contains(&format!(
            "routed: lane `feat` requests for {ns}.cart go to subset lane-feat of \
             cart.{ns}.svc.cluster.local"
        )),
        "{out}"
    );
    // What the deploy saw is what the cluster has: the Lane routed, the VirtualService's route.
    let lane = get_raw(&format!(
        "/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes/feat"
    ))
    .unwrap();
    assert_eq!(condition(&lane, "Routed")["status"], "True", "{lane}");
    let vs = get_raw(&format!(
        "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices"
    ))
    .unwrap();
    assert!(vs.to_string().contains("\"subset\":\"lane-feat\""), "{vs}");

    // A redeploy: ready means the new image rolled out (not the old replica still ready), and
    // routed means the operator saw the Lane's new generation.
    std::fs::write(
        repo.join("build-image.sh"),
        "#!/bin/sh\necho registry.example/cart:feat-2\n",
    )
    .unwrap();
    let again = deploy(&env, &repo, "feat"); // cmd3
    lane_deployment(ns, "cart-lane-feat", "registry.example/cart:feat-2");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !printed(&env, 3).contains("[health"),
        "healthy before the new image rolled out:\n{}",
        printed(&env, 3)
    );
    rolled_out(ns, "cart-lane-feat");
    let out = again.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("[route") || out.stdout.contains("[route"),
        "{out}"
    );
    op.kill9();
    env.finish();
}

#[test]
fn without_the_operator_routing_the_deploy_ends_with_a_clear_error() {
    let ns = "kr-unrouted";
    cluster(ns);
    let env = TestEnv::new("kube-unrouted", 165);
    let repo = repo(&env, ns, "registry.example/cart:lost", "3s");
    let op = operator(&env, &repo, ns); // cmd1
    let deploying = deploy(&env, &repo, "lost"); // cmd2
    lane_deployment(ns, "cart-lane-lost", "registry.example/cart:lost");
    wait_until("the operator's status on Lane lost", || {
        let lane = get_raw(&format!(
            "/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes/lost"
        ))?;
        (condition(&lane, "Routed")["reason"] == "WaitingForReady").then_some(())
    });
    // The operator made the Deployment and then went away: nobody routes the version.
    op.kill9();
    rolled_out(ns, "cart-lane-lost");
    let out = deploying.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 7, "{out}");
    for want in [
        &format!("the lane operator did not route lane `lost` for {ns}.cart within 3s"),
        "Lane conditions: Ready=False (NotReady): 0 of 1 personal versions ready; \
         Routed=False (WaitingForReady)",
        "requests with lane `lost` still fall back",
        &format!("the version is ready (Deployment {ns}/cart-lane-lost) and stays"),
        "is `lane operator` running",
    ] {
        assert!(out.stderr.contains(want), "`{want}` missing:\n{out}");
    }
    assert!(
        out.stdout.contains("[health") || out.stderr.contains("[health"),
        "{out}"
    );
    env.finish();
}
