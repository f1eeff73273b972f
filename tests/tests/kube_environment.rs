//! Baseline follows production on Kubernetes, end to end against a real kube-apiserver
//! (`lane_tests::apiserver`): `lane operator` runs as a process (as `admin`, scoped to the
//! baseline namespace), a `LaneEnvironment` names the production namespace, and `lane status` /
//! `lane baseline sync` run as the developer `alice` with `deploy/rbac.yaml`'s rights.
//!
//! A bare API server runs no controllers: where a baseline Deployment must finish rolling out,
//! the test plays the Deployment controller (it writes `status.observedGeneration`,
//! `updatedReplicas` and `readyReplicas`), and says so.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Out, TestEnv};
use lane_tests::apiserver::ApiServer;
use lane_tests::kube::{
    apply, apply_files, create_namespace, get_raw, kubectl_ok, patch_deployment_status, repo_root,
};
use serde_json::{Value, json};

fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    lane_tests::kube::wait_until(what, Duration::from_secs(60), Duration::from_millis(200), f)
}

fn deployment_json(ns: &str, name: &str) -> Value {
    get_raw(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .unwrap_or_else(|| panic!("Deployment {ns}/{name}"))
}

fn image(ns: &str, name: &str) -> String {
    deployment_json(ns, name)["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn deployment(ns: &str, name: &str, image: &str, baseline: bool) -> Value {
    let mut labels = json!({"app": name});
    if baseline {
        labels["lane.dev/lane"] = json!("baseline");
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"containers": [{"name": name, "image": image}]}}}})
}

/// Plays the Deployment controller: the Deployment's current generation rolled out, all ready.
fn rolled_out(ns: &str, name: &str) {
    let generation = deployment_json(ns, name)["metadata"]["generation"].clone();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 2,
                                   "updatedReplicas": 2, "readyReplicas": 2,
                                   "availableReplicas": 2}});
    patch_deployment_status(ns, name, &status);
}

fn lane(env: &TestEnv, dir: &Path, args: &[&str]) -> Out {
    let kubeconfig = ApiServer::shared().kubeconfig("alice");
    env.run_in(dir, args, &[("KUBECONFIG", &kubeconfig.to_string_lossy())])
}

/// LaneEnvironment `ns/dev` whose `spec.production` is `production`, applied once the server
/// serves LaneEnvironments in `ns`.
fn lane_environment(ns: &str, production: Value) {
    wait_until("LaneEnvironments served", || {
        get_raw(&format!(
            "/apis/lane.dev/v1alpha1/namespaces/{ns}/laneenvironments"
        ))
    });
    apply(
        &json!({"apiVersion": "lane.dev/v1alpha1", "kind": "LaneEnvironment",
                  "metadata": {"name": "dev", "namespace": ns},
                  "spec": {"production": production}}),
    );
}

/// The `baseline_sync` entry of `service` in `lane status --json` / `lane baseline sync --json`.
fn entry(list: &Value, service: &str) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|e| e["service"] == service)
        .cloned()
}

#[test]
fn baseline_follows_production_through_a_lane_environment() {
    let ns = "ke-base";
    let prod = "ke-prod";
    apply_files(
        &[
            "deploy/crd.yaml",
            "deploy/environment-crd.yaml",
            "deploy/rbac.yaml",
            // The operator lists Istio's kinds on every pass: the tests' minimal Istio CRDs.
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
    create_namespace(prod);
    apply(&deployment(ns, "cart", "registry.example/cart:1", true));
    apply(&deployment(ns, "pay", "registry.example/pay:1", true));
    rolled_out(ns, "cart");
    rolled_out(ns, "pay");
    apply(&deployment(prod, "cart", "registry.example/cart:2", false));
    // No production Deployment `pay`.
    wait_until("Lanes served", || {
        get_raw(&format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes"))
    });
    lane_environment(ns, json!({"namespace": prod}));

    let env = TestEnv::new("kube-env", 160);
    let repo = env.repo(
        "cart",
        &format!(
            "app = \"{ns}\"\nproc = \"cart\"\n[run]\ncommand = \"./cart\"\n\
             [backend]\nkind = \"kubernetes\"\n[image]\nbuild = \"./build-image.sh\"\n"
        ),
    );
    let admin = ApiServer::shared().kubeconfig("admin");
    let operator = env.spawn_in(
        &repo,
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
    );

    // The operator sets baseline cart's image to production's (drift behind meanwhile), by
    // server-side apply of that field alone as `lane-operator`; pay has no production.
    wait_until("baseline cart runs production's image", || {
        (image(ns, "cart") == "registry.example/cart:2").then_some(())
    });
    let cart = deployment_json(ns, "cart");
    let owned: Vec<String> = cart["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] == "lane-operator")
        .map(|m| m["fieldsV1"].to_string())
        .collect();
    assert_eq!(owned.len(), 1, "{cart}");
    assert!(
        owned[0].contains("f:image") && !owned[0].contains("f:replicas"),
        "lane-operator owns only the image: {}",
        owned[0]
    );
    assert_eq!(
        cart["spec"]["replicas"], 2,
        "the other fields are as applied"
    );
    let status = wait_until("cart behind while it rolls out", || {
        let st = lane(&env, &repo, &["status", "--json"]).json()["status"].clone();
        let e = entry(&st["baseline_sync"], &format!("{ns}.cart"))?;
        (e["drift"] == "behind").then_some(st)
    });
    let cart = entry(&status["baseline_sync"], &format!("{ns}.cart")).unwrap();
    assert_eq!(cart["production"], "registry.example/cart:2", "{cart}");
    assert_eq!(cart["running"], "registry.example/cart:2", "{cart}");
    assert_eq!(cart["follows"], format!("namespace {prod}"), "{cart}");
    assert!(
        cart["reason"]
            .as_str()
            .unwrap()
            .starts_with("rolling out production's images"),
        "{cart}"
    );
    let pay = entry(&status["baseline_sync"], &format!("{ns}.pay")).unwrap();
    assert_eq!(pay["drift"], "unknown", "{pay}");
    assert_eq!(
        pay["reason"],
        format!("production has no Deployment pay in namespace {prod}"),
        "{pay}"
    );

    // The Deployment controller's part: rolled out. In sync, with the time of the sync.
    rolled_out(ns, "cart");
    let synced = wait_until("cart in sync", || {
        let st = lane(&env, &repo, &["status", "--json"]).json()["status"].clone();
        let e = entry(&st["baseline_sync"], &format!("{ns}.cart"))?;
        (e["drift"] == "in_sync").then_some(e)
    });
    let first_sync = synced["last_sync"].as_u64().expect("a last sync time");
    let env_obj = get_raw(&format!(
        "/apis/lane.dev/v1alpha1/namespaces/{ns}/laneenvironments/dev"
    ))
    .unwrap();
    assert_eq!(env_obj["status"]["services"], 2, "{env_obj}");
    assert_eq!(env_obj["status"]["inSync"], 1, "{env_obj}");

    // Production moves. The operator watches only the baseline namespace, so nothing wakes it
    // but its resync or a request: `lane baseline sync` asks and waits for the answer.
    apply(&deployment(prod, "cart", "registry.example/cart:3", false));
    std::thread::sleep(Duration::from_millis(1100));
    // Exit 3 (not found): what production runs for pay cannot be read (`lane baseline sync`'s
    // exit codes, server/cli/src/baseline_sync.rs).
    let out = lane(&env, &repo, &["baseline", "sync", "--json"]);
    assert_eq!(out.code, 3, "{out}");
    let answer = out.json();
    let cart = entry(&answer, &format!("{ns}.cart")).unwrap();
    assert_eq!(cart["production"], "registry.example/cart:3", "{cart}");
    assert_eq!(cart["drift"], "behind", "{cart}");
    assert_eq!(image(ns, "cart"), "registry.example/cart:3");
    rolled_out(ns, "cart");
    let out = lane(&env, &repo, &["baseline", "sync"]);
    assert_eq!(out.code, 3, "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{ns}.cart ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("in_sync") && line.contains("registry.example/cart:3"),
        "{out}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{ns}.pay ")))
        .unwrap_or_else(|| panic!("{out}"));
    // The table of `lane status` (output::baseline_follow): the reason on a line of its own.
    assert!(
        line.contains("unknown") && line.contains("registry.example/pay:1"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "  {ns}.pay unknown: production has no Deployment pay in namespace {prod}"
        )),
        "{out}"
    );
    let st = lane(&env, &repo, &["status", "--json"]).json()["status"].clone();
    let cart = entry(&st["baseline_sync"], &format!("{ns}.cart")).unwrap();
    assert!(cart["last_sync"].as_u64().unwrap() > first_sync, "{cart}");

    let out = operator.kill9();
    assert!(
        out.stderr.contains("baseline set to production's images"),
        "{}",
        out.stderr
    );
    env.finish();
}

/// `deploy/kustomization.yaml` covers every manifest in deploy/ and replaces the operator's
/// placeholder image; the Containerfile builds the binary that image must hold. (No image is
/// built here: no container runtime in the tests.)
#[test]
fn the_kustomization_sets_the_operator_image() {
    let deploy = repo_root().join("deploy");
    ApiServer::shared();
    let out = kubectl_ok("admin", &["kustomize", &deploy.to_string_lossy()], None);
    let images: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert_eq!(images, ["registry.example/lane:0.1.0"], "{out}");
    for kind in [
        "kind: CustomResourceDefinition",
        "name: laneenvironments.lane.dev",
        "kind: ValidatingAdmissionPolicy",
        "- leases",
        "replicas: 2",
    ] {
        assert!(
            out.contains(kind),
            "{kind} missing from the kustomization:\n{out}"
        );
    }
    let yamls: Vec<String> = std::fs::read_dir(&deploy)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    let kustomization = std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap();
    for y in yamls {
        assert!(
            kustomization.contains(&format!("  - {y}\n")),
            "deploy/{y} is not in deploy/kustomization.yaml"
        );
    }
    let containerfile = std::fs::read_to_string(deploy.join("Containerfile")).unwrap();
    assert!(containerfile.contains("cargo build --release --locked -p lane --bin lane"));
    assert!(containerfile.contains("USER 65532:65532"));
}

/// Runs `lane args…` as a Pod would: no kubeconfig anywhere, `KUBERNETES_SERVICE_HOST`/`PORT`
/// set, and the service account's token, CA and namespace at
/// `/var/run/secrets/kubernetes.io/serviceaccount`, mounted in a private mount namespace
/// (`unshare -m`, a tmpfs over /run) so nothing of the machine's is changed.
fn in_cluster(dir: &Path, secrets: &Path, args: &[&str]) -> Command {
    let server = ApiServer::shared();
    let port = server
        .server
        .rsplit(':')
        .next()
        .expect("https://127.0.0.1:<port>");
    let script = "set -e; mount -t tmpfs tmpfs /run; \
                  d=/var/run/secrets/kubernetes.io/serviceaccount; mkdir -p \"$d\"; \
                  cp \"$SA_DIR/token\" \"$SA_DIR/ca.crt\" \"$SA_DIR/namespace\" \"$d/\"; exec \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .arg(common::lane_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env("HOME", secrets.join("home"))
        .env("SA_DIR", secrets)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port);
    cmd
}

/// `lane operator` and the backend with in-cluster configuration, against the test API server
/// (its serving certificate covers 127.0.0.1, the address given as the service host).
#[test]
fn the_operator_and_the_backend_run_with_in_cluster_configuration() {
    let ok = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs `unshare -m` (util-linux, run as root or with user namespaces) to mount \
         a service account's files at /var/run/secrets privately"
    );
    let ns = "ke-incluster";
    let prod = "ke-incluster-prod";
    apply_files(
        &[
            "deploy/crd.yaml",
            "deploy/environment-crd.yaml",
            "server/kube/tests/operator/istio-crds.yaml",
        ],
        &[
            "crd/laneenvironments.lane.dev",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
        ],
    );
    create_namespace(ns);
    create_namespace(prod);
    apply(&deployment(ns, "cart", "registry.example/cart:1", true));
    apply(&deployment(prod, "cart", "registry.example/cart:9", false));
    lane_environment(ns, json!({"namespace": prod}));

    // A service account's files: a token the server accepts, its CA, the namespace.
    let env = TestEnv::new("kube-incluster", 161);
    let secrets = env.repo(
        "sa",
        "app = \"x\"\nproc = \"y\"\n[run]\ncommand = \"./y\"\n",
    );
    std::fs::create_dir_all(secrets.join("home")).unwrap();
    let server = ApiServer::shared();
    std::fs::write(secrets.join("token"), server.token("admin")).unwrap();
    std::fs::copy(&server.ca_file, secrets.join("ca.crt")).unwrap();
    std::fs::write(secrets.join("namespace"), ns).unwrap();
    let repo = env.repo(
        "cart",
        &format!(
            "app = \"{ns}\"\nproc = \"cart\"\n[run]\ncommand = \"./cart\"\n\
             [backend]\nkind = \"kubernetes\"\n[image]\nbuild = \"./build-image.sh\"\n"
        ),
    );

    // The operator: the Lease in its namespace as the namespace file says (POD_NAMESPACE unset).
    let log = secrets.join("operator.log");
    let mut operator = in_cluster(
        &repo,
        &secrets,
        &["operator", "--namespace", ns, "--lease-namespace", ns],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .expect("unshare runs");
    wait_until("the in-cluster operator syncs baseline", || {
        (image(ns, "cart") == "registry.example/cart:9").then_some(())
    });
    let _ = operator.kill();
    let _ = operator.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("baseline set to production's images"),
        "{text}"
    );

    // The backend: `lane status` in the service's directory, in-cluster too.
    let out = in_cluster(&repo, &secrets, &["status", "--json"])
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_str(&stdout).expect("JSON");
    let cart = entry(&st["status"]["baseline_sync"], &format!("{ns}.cart"))
        .unwrap_or_else(|| panic!("no baseline_sync for cart: {st}"));
    assert_eq!(cart["production"], "registry.example/cart:9", "{cart}");
    env.finish();
}

/// Production in another cluster: `spec.production.kubeconfigSecret` names a Secret holding a
/// kubeconfig. There is one API server here, so the "other cluster" is the same server reached
/// through the Secret's kubeconfig (a client of its own, made from the Secret), and the test says
/// so. Missing Secret: every service `Unknown` with the reason; then the Secret, and a sync
/// request (Secrets are not watched): production's image reaches baseline.
#[test]
fn production_in_another_cluster_through_a_kubeconfig_secret() {
    let ns = "ke-remote";
    let prod = "ke-remote-prod";
    apply_files(
        &[
            "deploy/environment-crd.yaml",
            "server/kube/tests/operator/istio-crds.yaml",
        ],
        &[
            "crd/laneenvironments.lane.dev",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
        ],
    );
    create_namespace(ns);
    create_namespace(prod);
    apply(&deployment(ns, "cart", "registry.example/cart:1", true));
    rolled_out(ns, "cart");
    apply(&deployment(prod, "cart", "registry.example/cart:7", false));
    lane_environment(
        ns,
        json!({"namespace": prod, "kubeconfigSecret": "prod-cluster"}),
    );

    let env = TestEnv::new("kube-remote", 162);
    let admin = ApiServer::shared().kubeconfig("admin");
    let mut operator = env.spawn_in(
        &env.root,
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
    );
    let path = format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/laneenvironments/dev");
    let entry = wait_until("cart unknown: no Secret", || {
        let e = get_raw(&path)?["status"]["baseline"][0].clone();
        (e["drift"] == "Unknown").then_some(e)
    });
    assert!(
        entry["reason"].as_str().unwrap().starts_with(&format!(
            "cannot read the kubeconfig Secret {ns}/prod-cluster:"
        )),
        "{entry}"
    );
    assert_eq!(image(ns, "cart"), "registry.example/cart:1");

    // The Secret: a self-contained kubeconfig (embedded CA and token) under key `kubeconfig`.
    let kubeconfig = std::fs::read_to_string(&admin).unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "prod-cluster", "namespace": ns},
                        "stringData": {"kubeconfig": kubeconfig}});
    kubectl_ok("admin", &["apply", "-f", "-"], Some(&secret.to_string()));
    kubectl_ok(
        "admin",
        &[
            "annotate",
            "--overwrite",
            "-n",
            ns,
            "laneenvironment/dev",
            "lane.dev/sync-requested=after-the-secret",
        ],
        None,
    );
    wait_until("baseline cart runs production's image", || {
        (image(ns, "cart") == "registry.example/cart:7").then_some(())
    });
    let status = wait_until("the request answered", || {
        let st = get_raw(&path)?["status"].clone();
        (st["observedSyncRequest"] == "after-the-secret").then_some(st)
    });
    assert_eq!(
        status["baseline"][0]["productionImage"], "registry.example/cart:7",
        "{status}"
    );
    let _ = operator.child.kill();
    let _ = operator.child.wait();
    env.finish();
}

/// `lane switch` on Kubernetes: the active lane is kept on the developer's machine, per cluster
/// and namespace (the mesh routes by the request's header; the cluster has nothing to set). It
/// must name an existing Lane; `lane status` shows it; `lane proxy` adds its header.
#[test]
fn switch_keeps_the_active_lane_client_side() {
    let ns = "ke-switch";
    apply_files(
        &["deploy/crd.yaml", "deploy/rbac.yaml"],
        &["crd/lanes.lane.dev"],
    );
    create_namespace(ns);
    wait_until("Lanes served", || {
        get_raw(&format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes"))
    });
    let env = TestEnv::new("kube-switch", 163);
    let repo = env.repo(
        "cart",
        &format!(
            "app = \"{ns}\"\nproc = \"cart\"\n[run]\ncommand = \"./cart\"\n\
             [backend]\nkind = \"kubernetes\"\n[image]\nbuild = \"./build-image.sh\"\n"
        ),
    );
    let active = |env: &TestEnv| {
        lane(env, &repo, &["status", "--json"]).json()["status"]["active_lane"].clone()
    };
    assert_eq!(active(&env), "baseline");
    let out = lane(&env, &repo, &["switch", "team"]);
    assert_ne!(
        out.code, 0,
        "switched to a lane that does not exist:\n{out}"
    );
    assert!(out.stderr.contains("lane `team` does not exist"), "{out}");
    let out = lane(&env, &repo, &["create", "team", "--ttl", "1h"]);
    assert_eq!(out.code, 0, "{out}");
    let out = lane(&env, &repo, &["switch", "team"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(active(&env), "team");

    // `lane proxy` sends requests through with the lane header of the active lane.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let kubeconfig = ApiServer::shared().kubeconfig("alice");
    let mut proxy = env.spawn_in(
        &repo,
        &["proxy", "--listen", &listen],
        &[("KUBECONFIG", &kubeconfig.to_string_lossy())],
    );
    let mut conn = wait_until("the proxy listens", || {
        std::net::TcpStream::connect(&listen).ok()
    });
    write!(
        conn,
        "GET http://{upstream_addr}/x HTTP/1.1\r\nhost: {upstream_addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut reply);
    let head = seen.join().unwrap();
    assert!(head.contains("\r\nx-lane: team\r\n"), "{head}");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();

    let out = lane(&env, &repo, &["switch", "baseline"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(active(&env), "baseline");
    env.finish();
}
