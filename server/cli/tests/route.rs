//! `lane route show|diff` as a user runs it: the `lane` binary against a real kube-apiserver
//! (`lane_tests::apiserver`), objects made with kubectl, the operator's single pass run
//! in-process. Checks the exit codes: 0 same, 1 differ, 2 bad host, 4 conflict.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lane_kube::operator::{self, Config, Operator};
use lane_tests::apiserver::{ApiServer, kubectl};

const LANE: &str = env!("CARGO_BIN_EXE_lane");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn route(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(LANE)
        .arg("route")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("LANE_HEADER")
        .output()
        .expect("lane runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn objects(ns: &str, proc_: &str, lane: &str) -> String {
    // Far ahead: the plan leaves expired Lanes out.
    let expires = "2099-01-01T00:00:00Z";
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {proc_}, namespace: {ns}}}
spec: {{selector: {{app: {proc_}}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {proc_}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {proc_}}}}}
  template:
    metadata: {{labels: {{app: {proc_}, lane.dev/lane: baseline}}}}
    spec: {{containers: [{{name: {proc_}, image: registry.example/{proc_}:1}}]}}
---
apiVersion: lane.dev/v1alpha1
kind: Lane
metadata: {{name: {lane}, namespace: {ns}}}
spec:
  owner: admin
  expires: "{expires}"
  services:
    {ns}.{proc_}: {{image: registry.example/{proc_}:{lane}, version: "feature@{lane}"}}
"#
    )
}

#[test]
fn route_diff_exit_codes_follow_the_cluster() {
    let server = ApiServer::shared();
    let admin = server.kubeconfig("admin");
    let ns = "cli-route";
    let istio = repo().join("server/kube/tests/operator/istio-crds.yaml");
    let crd = repo().join("deploy/crd.yaml");
    kubectl_ok(
        &admin,
        &[
            "apply",
            "-f",
            crd.to_str().unwrap(),
            "-f",
            istio.to_str().unwrap(),
        ],
        None,
    );
    kubectl_ok(
        &admin,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/lanes.lane.dev",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
        ],
        None,
    );
    kubectl_ok(
        &admin,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        )),
    );

    // A bad host: exit 2 before any cluster access.
    let out = route(&admin, &["diff", "nodots"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("nodots"), "{}", text(&out));

    // "Established" is not yet "served": retry the first read until the kinds list.
    let mut out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    for _ in 0..100 {
        if code(&out) != 7 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    }
    assert_eq!(
        code(&out),
        0,
        "nothing wanted, nothing there: {}",
        text(&out)
    );

    kubectl_ok(
        &admin,
        &["apply", "-f", "-"],
        Some(&objects(ns, "cart", "a")),
    );
    let out = route(
        &admin,
        &["diff", "cart.cli-route.svc.cluster.local", "-n", ns],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("+++ desired VirtualService cli-route/cart-lanes"),
        "{}",
        text(&out)
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reconcile = || {
        rt.block_on(async {
            let client = operator::client(Some(&admin)).await.unwrap();
            let config = Config {
                namespaces: vec![ns.to_owned()],
                ..Config::default()
            };
            Operator::new(client, config)
                .unwrap()
                .reconcile_once()
                .await
                .unwrap();
        })
    };
    reconcile();
    let out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    // Lane a's version gets its route once its Deployment has a ready replica: the test plays
    // the Deployment controller (a bare API server runs none).
    kubectl_ok(
        &admin,
        &[
            "patch",
            "deployment",
            "cart-lane-a",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}"#,
        ],
        None,
    );
    let out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("+    name: lane-a"), "{}", text(&out));
    reconcile();
    let out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = route(&admin, &["show", "cli-route.cart", "-n", ns]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("kind: VirtualService") && shown.contains("subset: lane-a"),
        "{shown}"
    );

    // Previewing another lane's version: differs, nothing written.
    let out = route(
        &admin,
        &[
            "diff",
            "cli-route.cart",
            "-n",
            ns,
            "--lane",
            "p",
            "--image",
            "registry.example/cart:p",
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("+    name: lane-p"), "{}", text(&out));
    let out = route(&admin, &["diff", "cli-route.cart", "-n", ns]);
    assert_eq!(code(&out), 0, "{}", text(&out));

    // A foreign VirtualService for another host: conflict, exit 4, named.
    kubectl_ok(
        &admin,
        &["apply", "-f", "-"],
        Some(&objects(ns, "pay", "b")),
    );
    kubectl_ok(
        &admin,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: pay-canary, namespace: {ns}}}\n\
             spec: {{hosts: [pay], http: [{{route: [{{destination: {{host: pay}}}}]}}]}}\n"
        )),
    );
    let out = route(&admin, &["diff", "cli-route.pay", "-n", ns]);
    assert_eq!(code(&out), 4, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conflict:") && err.contains("cli-route/pay-canary"),
        "{err}"
    );
}
