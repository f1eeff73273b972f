//! The `kubernetes` backend against a real kube-apiserver (`lane_tests::apiserver`): `lane` run as
//! the fixture's users `alice` (lane-developers) and `bob` (lane-developers, lane-admins), with
//! `deploy/crd.yaml`, `deploy/rbac.yaml` and `deploy/ownership-policy.yaml` applied by `admin`.
//!
//! A bare API server runs no controllers: where a deploy needs its lane Deployment, the test plays
//! the lane operator (it creates `<proc>-lane-<id>`, and writes the Lane's status with the route
//! once the version is ready) and the Deployment controller (it sets `status.observedGeneration`,
//! `updatedReplicas` and `readyReplicas`), and says so. `kube_routed.rs` runs the real operator.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Out, TestEnv};
use lane_tests::apiserver::ApiServer;
use lane_tests::kube::{kubectl, kubectl_ok, patch_deployment_status, repo_root};

fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    lane_tests::kube::wait_until(what, timeout, Duration::from_millis(200), f)
}

/// The shared server with lane's CRD, RBAC and ownership policy applied (as admin), the policy in
/// force, and namespace `ns`.
fn cluster(ns: &str) -> &'static ApiServer {
    let server = ApiServer::shared();
    let deploy = repo_root().join("deploy");
    for file in ["crd.yaml", "rbac.yaml", "ownership-policy.yaml"] {
        let path = deploy.join(file);
        kubectl_ok(
            "admin",
            &["apply", "--server-side", "-f", &path.to_string_lossy()],
            None,
        );
    }
    kubectl_ok(
        "admin",
        &["wait", "--for=condition=Established", "crd/lanes.lane.dev"],
        None,
    );
    let (_, _, _) = kubectl("admin", &["create", "namespace", ns], None);
    // The policy takes effect a moment after it is created: wait until a Lane owned by someone
    // else than its creator is refused.
    let probe = format!(
        "{{\"apiVersion\":\"lane.dev/v1alpha1\",\"kind\":\"Lane\",\"metadata\":{{\"name\":\"probe\",\
         \"namespace\":\"{ns}\"}},\"spec\":{{\"owner\":\"nobody\",\"expires\":\"2030-01-01T00:00:00Z\"}}}}"
    );
    wait_until("the ownership policy", Duration::from_secs(30), || {
        let (ok, _, err) = kubectl(
            "alice",
            &["create", "--dry-run=server", "-f", "-"],
            Some(&probe),
        );
        (!ok && err.contains("ValidatingAdmissionPolicy")).then_some(())
    });
    server
}

fn manifest(app: &str) -> String {
    format!(
        "app = \"{app}\"\nproc = \"cart\"\n[run]\ncommand = \"./cart\"\n[health]\ntimeout = \"20s\"\n\
         [backend]\nkind = \"kubernetes\"\n[image]\nbuild = \"./build-image.sh\"\n"
    )
}

/// `lane args…` in `dir` as the cluster user `user`.
fn lane(env: &TestEnv, dir: &Path, user: &str, args: &[&str]) -> Out {
    let kubeconfig = ApiServer::shared().kubeconfig(user);
    env.run_in(dir, args, &[("KUBECONFIG", &kubeconfig.to_string_lossy())])
}

fn lane_ok(env: &TestEnv, dir: &Path, user: &str, args: &[&str]) -> Out {
    let out = lane(env, dir, user, args);
    assert_eq!(out.code, 0, "`lane {}` as {user}:\n{out}", args.join(" "));
    out
}

/// The Lane `ns/id` as the API server has it (managed fields included), read without kubectl's
/// discovery (and its cache), which may not know the CRD yet.
fn lane_json(ns: &str, id: &str) -> Option<serde_json::Value> {
    let path = format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes/{id}");
    let (ok, out, _) = kubectl("admin", &["get", "--raw", &path], None);
    ok.then(|| serde_json::from_str(&out).expect("the API server answers JSON"))
}

/// Plays the Deployment controller: Deployment `ns/name`'s current generation rolled out to its
/// one replica, ready.
fn rolled_out(ns: &str, name: &str) {
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    let (ok, out, err) = kubectl("admin", &["get", "--raw", &path], None);
    assert!(ok, "{path}: {err}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = serde_json::json!({"status": {"observedGeneration": d["metadata"]["generation"],
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
    patch_deployment_status(ns, name, &status);
}

/// Plays the lane operator: applies Deployment `ns/name` of lane `lane` (label `lane.dev/lane`),
/// one replica of container `container` running `image`.
fn lane_deployment(ns: &str, name: &str, lane: &str, container: &str, image: &str) {
    let deployment = format!(
        "{{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{{\"name\":\"{name}\",\
         \"namespace\":\"{ns}\",\"labels\":{{\"lane.dev/lane\":\"{lane}\"}}}},\"spec\":{{\"replicas\":1,\
         \"selector\":{{\"matchLabels\":{{\"lane.dev/lane\":\"{lane}\"}}}},\"template\":{{\"metadata\":\
         {{\"labels\":{{\"lane.dev/lane\":\"{lane}\"}}}},\"spec\":{{\"containers\":[{{\"name\":\"{container}\",\
         \"image\":\"{image}\"}}]}}}}}}}}"
    );
    kubectl_ok(
        "admin",
        &["apply", "--server-side", "-f", "-"],
        Some(&deployment),
    );
}

/// Plays the lane operator's status write once the versions are ready: Lane `ns/id` as of its
/// current generation routes its own requests for each of `procs` (services `<ns>.<proc>`) to
/// its own subset.
fn routed(ns: &str, id: &str, procs: &[&str]) {
    let path = format!("/apis/lane.dev/v1alpha1/namespaces/{ns}/lanes/{id}");
    let mut lane = lane_json(ns, id).expect("the Lane");
    let routes: Vec<serde_json::Value> = procs
        .iter()
        .map(|p| {
            serde_json::json!({"service": format!("{ns}.{p}"),
                "host": format!("{p}.{ns}.svc.cluster.local"), "lane": id,
                "subset": format!("lane-{id}")})
        })
        .collect();
    lane["status"] = serde_json::json!({"observedGeneration": lane["metadata"]["generation"],
        "services": procs.len(), "readyServices": procs.len(), "routes": routes});
    let path = format!("{path}/status");
    kubectl_ok(
        "admin",
        &["replace", "--raw", &path, "-f", "-"],
        Some(&lane.to_string()),
    );
}

#[test]
fn lanes_are_created_listed_deployed_and_removed_on_the_cluster() {
    let ns = "kb-life";
    cluster(ns);
    let env = TestEnv::new("kube-life", 80);
    let repo = env.repo("cart", &manifest(ns));
    // The image build: a real script that prints progress and, last, the image reference.
    let script = repo.join("build-image.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"building in $(pwd)\" >&2\necho step 1/2\necho pushed\n\
         echo registry.example/kb/cart:$(git rev-parse --short HEAD)\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "image build"]);
    let commit = env.branch(&repo, "feature-kb");
    let short = &commit[..8];

    let out = lane_ok(&env, &repo, "alice", &["create", "team", "--ttl", "2h"]);
    assert!(
        out.stdout.contains("created lane team (owner alice"),
        "{out}"
    );
    let team = lane_json(ns, "team").expect("the Lane exists");
    assert_eq!(
        team["spec"]["owner"], "alice",
        "the owner is who the cluster says"
    );
    let managers: Vec<&str> = team["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        managers,
        ["lane"],
        "server-side applied by field manager lane"
    );
    let out = lane(&env, &repo, "alice", &["create", "team"]);
    assert_eq!(out.code, 4, "{out}");

    // Deploy; meanwhile the test plays the operator and the Deployment controller.
    let deploy = env.spawn_in(
        &repo,
        &["deploy", "--lane", "feat", "--parent", "team"],
        &[(
            "KUBECONFIG",
            &ApiServer::shared().kubeconfig("alice").to_string_lossy(),
        )],
    );
    let image = wait_until("the Lane with the version", Duration::from_secs(60), || {
        let lane = lane_json(ns, "feat")?;
        lane["spec"]["services"][format!("{ns}.cart")]["image"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(image, format!("registry.example/kb/cart:{}", &commit[..7]));
    // As the operator: the lane Deployment `<proc>-lane-<id>`.
    lane_deployment(ns, "cart-lane-feat", "feat", "cart", &image);
    std::thread::sleep(Duration::from_millis(500));
    // As the Deployment controller: its replica is ready.
    rolled_out(ns, "cart-lane-feat");
    // As the operator, once the version is ready (the deploy waits for it): the route.
    std::thread::sleep(Duration::from_millis(500));
    routed(ns, "feat", &["cart"]);
    let out = deploy.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 0, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    for want in [
        "[build",
        "step 1/2",
        "building in",
        "[register",
        "applied Lane kb-life/feat",
        "[start",
        "[health",
        "Deployment kb-life/cart-lane-feat: 1/1 ready",
        "[route",
        "routed: lane `feat` requests for kb-life.cart go to subset lane-feat of \
         cart.kb-life.svc.cluster.local",
    ] {
        assert!(all.contains(want), "`{want}` missing:\n{out}");
    }
    let order: Vec<usize> = ["[build", "[register", "[start", "[health", "[route"]
        .iter()
        .map(|s| all.find(s).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stage order:\n{out}");
    let feat = lane_json(ns, "feat").expect("the Lane exists");
    let entry = &feat["spec"]["services"][format!("{ns}.cart")];
    assert_eq!(entry["version"], format!("feature-kb@{short}"));
    assert_eq!(entry["branch"], "feature-kb");
    assert_eq!(entry["commit"], commit.as_str());
    assert_eq!(feat["spec"]["parent"], "team");
    assert_eq!(feat["spec"]["owner"], "alice");

    // The baseline, as the team's release system deploys it: Deployment `cart` labelled
    // `lane.dev/lane=baseline` (its replica marked ready, as the Deployment controller would).
    let baseline = format!(
        "{{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{{\"name\":\"cart\",\
         \"namespace\":\"{ns}\",\"labels\":{{\"lane.dev/lane\":\"baseline\"}}}},\"spec\":{{\"replicas\":1,\
         \"selector\":{{\"matchLabels\":{{\"app\":\"cart\"}}}},\"template\":{{\"metadata\":\
         {{\"labels\":{{\"app\":\"cart\"}}}},\"spec\":{{\"containers\":[{{\"name\":\"cart\",\
         \"image\":\"registry.example/kb/cart:main\"}}]}}}}}}}}"
    );
    kubectl_ok(
        "admin",
        &["apply", "--server-side", "-f", "-"],
        Some(&baseline),
    );
    kubectl_ok(
        "admin",
        &[
            "-n",
            ns,
            "patch",
            "deployment",
            "cart",
            "--subresource=status",
            "--type=merge",
            "-p",
            "{\"status\":{\"replicas\":1,\"readyReplicas\":1}}",
        ],
        None,
    );

    // ls and status show the cluster's lanes with health.
    let out = lane_ok(&env, &repo, "alice", &["ls"]);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("feat "))
        .unwrap_or_else(|| panic!("no feat row:\n{out}"));
    for want in ["team", "alice", &format!("feature-kb@{short}"), "healthy"] {
        assert!(row.contains(want), "`{want}` not in `{row}`");
    }
    let status = lane_ok(&env, &repo, "bob", &["status", "--json"]).json();
    let status = status.get("status").unwrap_or(&status);
    assert_eq!(status["backend"], "kubernetes");
    let lanes = status["lanes"].as_array().unwrap();
    let feat = lanes.iter().find(|l| l["id"] == "feat").expect("feat");
    assert_eq!(feat["chain"], serde_json::json!(["feat", "team"]));
    assert_eq!(feat["instances"][0]["state"], "healthy");
    assert_eq!(
        feat["instances"][0]["placement"],
        serde_json::json!({"kind": "pod", "namespace": ns, "name": "cart-lane-feat"})
    );
    assert_eq!(status["baseline"][0]["service"], format!("{ns}.cart"));
    assert_eq!(status["baseline"][0]["state"], "healthy");

    lane_ok(&env, &repo, "alice", &["rm", "feat"]);
    assert!(lane_json(ns, "feat").is_none(), "the Lane is deleted");
    let out = lane(&env, &repo, "alice", &["rm", "feat"]);
    assert_eq!(out.code, 3, "{out}");
    env.finish();
}

#[test]
fn only_the_owner_or_the_admin_group_changes_a_lane() {
    let ns = "kb-owner";
    cluster(ns);
    let env = TestEnv::new("kube-owner", 81);
    let repo = env.repo("cart", &manifest(ns));
    lane_ok(&env, &repo, "bob", &["create", "bobs"]);
    lane_ok(&env, &repo, "alice", &["create", "alices"]);

    // alice on bob's lane: the client refuses without --force, the cluster with it.
    let out = lane(&env, &repo, "alice", &["rm", "bobs"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stderr.contains("belongs to bob"), "{out}");
    for args in [
        &["rm", "bobs", "--force"][..],
        &["extend", "bobs", "--by", "1h", "--force"],
    ] {
        let out = lane(&env, &repo, "alice", args);
        assert_eq!(out.code, 5, "`lane {}`: {out}", args.join(" "));
        assert!(
            out.stderr
                .contains("ValidatingAdmissionPolicy 'lane-ownership'")
                && out.stderr.contains("lane bobs belongs to bob"),
            "the cluster's refusal reaches the CLI: {out}"
        );
    }
    // Not the client's doing: the cluster refuses alice's own kubectl too.
    let (ok, _, err) = kubectl("alice", &["-n", ns, "delete", "lane", "bobs"], None);
    assert!(!ok && err.contains("belongs to bob"), "{err}");
    assert!(lane_json(ns, "bobs").is_some(), "bob's lane is still there");

    // bob is in lane-admins: with --force he changes and deletes alice's lane.
    let out = lane(&env, &repo, "bob", &["rm", "alices"]);
    assert_eq!(out.code, 5, "without --force the client asks for it: {out}");
    lane_ok(
        &env,
        &repo,
        "bob",
        &["extend", "alices", "--by", "1h", "--force"],
    );
    assert_eq!(
        lane_json(ns, "alices").expect("alice's lane")["spec"]["owner"],
        "alice",
        "an admin's change keeps the owner"
    );
    lane_ok(&env, &repo, "bob", &["rm", "alices", "--force"]);
    assert!(lane_json(ns, "alices").is_none());
    lane_ok(&env, &repo, "bob", &["rm", "bobs"]);
    env.finish();
}

#[test]
fn a_server_side_apply_conflict_names_the_field_and_the_other_manager() {
    let ns = "kb-conflict";
    cluster(ns);
    let env = TestEnv::new("kube-conflict", 82);
    let repo = env.repo("cart", &manifest(ns));
    lane_ok(&env, &repo, "bob", &["create", "shared"]);
    // Another tool (as bob, so the ownership policy lets it) takes spec.expires with its own value.
    let other = format!(
        "{{\"apiVersion\":\"lane.dev/v1alpha1\",\"kind\":\"Lane\",\"metadata\":{{\"name\":\"shared\",\
         \"namespace\":\"{ns}\"}},\"spec\":{{\"owner\":\"bob\",\"expires\":\"2031-01-01T00:00:00Z\"}}}}"
    );
    kubectl_ok(
        "bob",
        &[
            "apply",
            "--server-side",
            "--field-manager=release-bot",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&other),
    );
    let out = lane(&env, &repo, "bob", &["extend", "shared", "--by", "1h"]);
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains(".spec.expires") && out.stderr.contains("release-bot"),
        "the conflict names the field and the manager: {out}"
    );
    let lane = lane_json(ns, "shared").expect("the Lane");
    assert_eq!(
        lane["spec"]["expires"], "2031-01-01T00:00:00Z",
        "nothing changed"
    );
    lane_ok(&env, &repo, "bob", &["rm", "shared"]);
    env.finish();
}

#[test]
fn a_failed_or_cancelled_image_build_applies_nothing() {
    let ns = "kb-cancel";
    cluster(ns);
    let env = TestEnv::new("kube-cancel", 83);
    let repo = env.repo("cart", &manifest(ns));
    let script = repo.join("build-image.sh");
    let write_script = |body: &str| {
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };

    write_script("echo compiling; echo 'error: does not compile' >&2; exit 3");
    let out = lane(&env, &repo, "alice", &["deploy", "--lane", "broken"]);
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("does not compile"), "{out}");
    assert!(out.stderr.contains("failed"), "{out}");
    assert!(
        lane_json(ns, "broken").is_none(),
        "no Lane for a failed build"
    );

    // Ctrl-C during the build: the build and what it started stop, and no Lane is applied.
    let marker = format!("kb-cancel-{}", std::process::id());
    write_script(&format!(
        "echo started; sh -c 'sleep 60; echo {marker}' ; echo img:1"
    ));
    let deploy = env.spawn_in(
        &repo,
        &["deploy", "--lane", "cancelled"],
        &[(
            "KUBECONFIG",
            &ApiServer::shared().kubeconfig("alice").to_string_lossy(),
        )],
    );
    // The second `lane` command of this test: its output is in cmd2.out and cmd2.err.
    wait_until("the build to start", Duration::from_secs(30), || {
        let text = ["cmd2.out", "cmd2.err"]
            .map(|f| std::fs::read_to_string(env.root.join(f)).unwrap_or_default())
            .concat();
        text.contains("| started").then_some(())
    });
    common::kill(deploy.pid(), "INT");
    let out = deploy.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 130, "{out}");
    assert!(out.stderr.contains("nothing was left behind"), "{out}");
    assert!(
        lane_json(ns, "cancelled").is_none(),
        "no Lane after a cancel"
    );

    // Ctrl-C once the Lane is applied (no operator runs here): the version stays, and the
    // message says what is live.
    write_script("echo img:2");
    let deploy = env.spawn_in(
        &repo,
        &["deploy", "--lane", "applied"],
        &[(
            "KUBECONFIG",
            &ApiServer::shared().kubeconfig("alice").to_string_lossy(),
        )],
    );
    wait_until("the Lane to be applied", Duration::from_secs(30), || {
        let text = ["cmd3.out", "cmd3.err"]
            .map(|f| std::fs::read_to_string(env.root.join(f)).unwrap_or_default())
            .concat();
        text.contains("[register").then_some(())
    });
    common::kill(deploy.pid(), "INT");
    let out = deploy.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 130, "{out}");
    assert!(
        out.stderr
            .contains("stopped following the rollout; Lane kb-cancel/applied is applied")
            && out.stderr.contains("and stays"),
        "{out}"
    );
    let applied = lane_json(ns, "applied").expect("the applied Lane stays");
    assert_eq!(
        applied["spec"]["services"][format!("{ns}.cart")]["image"],
        "img:2"
    );
    let sleeping = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&marker))
        .count();
    assert_eq!(sleeping, 0, "the build's processes were stopped");

    // assign moves the version to another lane: one Lane gains it, the other loses it.
    lane_ok(&env, &repo, "alice", &["create", "other"]);
    let service = format!("{ns}.cart");
    lane_ok(
        &env,
        &repo,
        "alice",
        &["assign", &service, "--from", "applied", "--to", "other"],
    );
    let other = lane_json(ns, "other").expect("other");
    assert_eq!(other["spec"]["services"][&service]["image"], "img:2");
    let applied = lane_json(ns, "applied").expect("applied");
    assert!(
        applied["spec"]["services"].get(&service).is_none(),
        "{applied}"
    );

    // No operator runs: the health timeout ends the deploy (no hang), says the operator did not
    // act, quotes the Lane's (missing) status and says what stays.
    std::fs::write(
        repo.join("lane.toml"),
        manifest(ns).replace("timeout = \"20s\"", "timeout = \"2s\""),
    )
    .unwrap();
    let out = lane(&env, &repo, "alice", &["deploy", "--lane", "slow"]);
    assert_eq!(out.code, 7, "{out}");
    for want in [
        "the lane operator did not create Deployment kb-cancel/cart-lane-slow within 2s \
         (the Lane has no status: no operator has seen it); Lane kb-cancel/slow is applied",
        "is `lane operator` running",
    ] {
        assert!(out.stderr.contains(want), "`{want}` missing:\n{out}");
    }
    assert!(lane_json(ns, "slow").is_some());
    env.finish();
}

#[test]
fn the_context_comes_from_the_flag_or_lane_toml() {
    let ns = "kb-context";
    let server = cluster(ns);
    let env = TestEnv::new("kube-context", 84);
    // The fixture's `kubeconfig` has the contexts admin (current), alice and bob.
    let kubeconfig = server.dir.join("kubeconfig");
    let kubeconfig = kubeconfig.to_string_lossy();
    let with_toml_context = manifest(ns).replace(
        "kind = \"kubernetes\"\n",
        "kind = \"kubernetes\"\ncontext = \"alice\"\n",
    );
    let repo = env.repo("cart", &with_toml_context);
    let run = |args: &[&str]| env.run_in(&repo, args, &[("KUBECONFIG", &kubeconfig)]);
    let out = run(&["create", "from-toml"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("(owner alice"), "{out}");
    let out = run(&["--context", "bob", "create", "from-flag"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("(owner bob"), "{out}");
    let out = run(&["--context", "carol", "ls"]);
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("carol"), "{out}");

    // Deploying into someone else's lane is refused before anything is built.
    std::fs::write(
        repo.join("build-image.sh"),
        "#!/bin/sh\ntouch built\necho img:1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        repo.join("build-image.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run(&["deploy", "--lane", "from-flag"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stderr.contains("belongs to bob"), "{out}");
    assert!(!repo.join("built").exists(), "nothing was built");

    // gc removes expired Lanes.
    let out = run(&["create", "short", "--ttl", "1s"]);
    assert_eq!(out.code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(2100));
    let out = run(&["gc"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_json(ns, "short").is_none(), "gc removed it: {out}");
    assert!(lane_json(ns, "from-toml").is_some(), "gc keeps live lanes");
    for (id, user) in [("from-toml", "alice"), ("from-flag", "bob")] {
        let out = run(&["--context", user, "rm", id]);
        assert_eq!(out.code, 0, "{out}");
    }
    env.finish();
}

#[test]
fn two_deploys_into_one_lane_at_once_both_stay() {
    let ns = "kb-two";
    cluster(ns);
    let env = TestEnv::new("kube-two", 85);
    let kubeconfig = ApiServer::shared().kubeconfig("alice");
    let kubeconfig = kubeconfig.to_string_lossy();
    let mut repos = Vec::new();
    for proc_ in ["cart", "pay"] {
        let repo = env.repo(
            proc_,
            &manifest(ns).replace("proc = \"cart\"", &format!("proc = \"{proc_}\"")),
        );
        let script = repo.join("build-image.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho registry.example/{proc_}:1\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        repos.push((proc_, repo));
    }
    lane_ok(&env, &repos[0].1, "alice", &["create", "team"]);
    let deploys: Vec<_> = repos
        .iter()
        .map(|(_, repo)| {
            env.spawn_in(
                repo,
                &["deploy", "--lane", "team"],
                &[("KUBECONFIG", &kubeconfig)],
            )
        })
        .collect();
    // As the operator and the Deployment controller, for each version as it appears.
    for (proc_, _) in &repos {
        let last = std::cell::RefCell::new(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while last.borrow().as_ref().is_none_or(|l: &serde_json::Value| {
            l["spec"]["services"][format!("{ns}.{proc_}")]["image"]
                .as_str()
                .is_none()
        }) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {proc_} in the Lane; last seen: {:?}",
                last.borrow()
            );
            std::thread::sleep(Duration::from_millis(200));
            *last.borrow_mut() = lane_json(ns, "team");
        }
        let name = format!("{proc_}-lane-team");
        lane_deployment(
            ns,
            &name,
            "team",
            "c",
            &format!("registry.example/{proc_}:1"),
        );
        rolled_out(ns, &name);
    }
    // As the operator, with both versions in the Lane and ready: their routes.
    routed(ns, "team", &["cart", "pay"]);
    for deploy in deploys {
        let out = deploy.wait(common::COMMAND_TIMEOUT);
        assert_eq!(out.code, 0, "{out}");
    }
    let lane = lane_json(ns, "team").expect("team");
    for (proc_, _) in &repos {
        assert_eq!(
            lane["spec"]["services"][format!("{ns}.{proc_}")]["image"],
            format!("registry.example/{proc_}:1"),
            "{lane}"
        );
    }
    lane_ok(&env, &repos[0].1, "alice", &["rm", "team"]);
    env.finish();
}

/// Issue 10: a kubernetes deploy provisions the lane's data from the developer's machine (here an
/// Apollo cluster, against the Apollo Open API double) and the Lane's env overrides for the lane
/// Deployment carry the same rewritten addresses the local backend injects; `spec.data` records
/// what the lane owns.
#[test]
fn a_kubernetes_deploy_puts_the_lanes_data_env_into_the_lane_s_env_overrides() {
    use lane_tests::apollo::{ApolloDouble, Options};
    let ns = "kb-data";
    cluster(ns);
    let apollo = ApolloDouble::start(Options {
        tokens: [("kube-data-token".to_owned(), vec!["cart".to_owned()])].into(),
        apps: vec!["cart".into()],
        ..Options::default()
    })
    .expect("the Apollo double starts");
    // Real Redis (database 27) for the key-prefix binding: `lane rm` deletes the lane's keys.
    let redis_url = common::services::start("redis").var("LANE_TEST_REDIS_URL");
    let sessions_url = format!("{redis_url}/27");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut r = rt
        .block_on(lane_data::redis::Redis::connect(&sessions_url))
        .unwrap();
    rt.block_on(r.cmd(&[b"SELECT", b"27"])).unwrap();
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    let env = TestEnv::new("kube-data", 222);
    let manifest = format!(
        "{}\n[data.sessions]\nkind = \"redis\"\nurl = \"{sessions_url}\"\nenv = \"SESSIONS_URL\"\n\
         prefix_env = \"SESSIONS_PREFIX\"\n\
         [data.config]\nkind = \"apollo\"\nurl = \"{}\"\nenv = \"APOLLO_META\"\napp = \"cart\"\n\
         token_env = \"CART_APOLLO_TOKEN\"\nitems = {{ \"sessions.prefix\" = \"SESSIONS_PREFIX\" }}\n",
        manifest(ns),
        apollo.url()
    );
    let repo = env.repo("cart", &manifest);
    let script = repo.join("build-image.sh");
    std::fs::write(&script, "#!/bin/sh\necho registry.example/kb/cart:data\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "image build"]);
    env.branch(&repo, "feature-data");
    let kubeconfig = ApiServer::shared().kubeconfig("alice");
    let deploy = env.spawn_in(
        &repo,
        &["deploy", "--lane", "kdata"],
        &[
            ("KUBECONFIG", &kubeconfig.to_string_lossy()),
            ("CART_APOLLO_TOKEN", "kube-data-token"),
        ],
    );
    let lane = wait_until("the Lane with the version", Duration::from_secs(60), || {
        let lane = lane_json(ns, "kdata")?;
        lane["spec"]["services"][format!("{ns}.cart")]["image"]
            .as_str()
            .map(|_| lane.clone())
    });
    // As the operator and the Deployment controller: the lane Deployment, rolled out and ready.
    lane_deployment(
        ns,
        "cart-lane-kdata",
        "kdata",
        "cart",
        "registry.example/kb/cart:data",
    );
    std::thread::sleep(Duration::from_millis(500));
    rolled_out(ns, "cart-lane-kdata");
    // As the operator, once the version is ready (the deploy waits for it): the route.
    std::thread::sleep(Duration::from_millis(500));
    routed(ns, "kdata", &["cart"]);
    let out = deploy.wait(common::COMMAND_TIMEOUT);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("provisioning the lane's data from this machine (2 bindings)"),
        "{out}"
    );
    let env_overrides = &lane["spec"]["services"][format!("{ns}.cart")]["env"];
    assert_eq!(
        env_overrides,
        &serde_json::json!({
            "APOLLO_CLUSTER": "lane-kdata",
            "APOLLO_META": apollo.url(),
            "SESSIONS_PREFIX": "lane:kdata:",
            "SESSIONS_URL": sessions_url,
        }),
        "{lane:#}"
    );
    assert_eq!(
        lane["spec"]["data"],
        serde_json::json!([
            {"kind": "redis", "name": "sessions", "target": "lane:kdata:"},
            {"kind": "apollo", "name": "config", "target": "lane-kdata"},
        ]),
        "{lane:#}"
    );
    assert_eq!(
        apollo.latest_release("DEV", "cart", "lane-kdata", "application"),
        Some([("sessions.prefix".to_owned(), "lane:kdata:".to_owned())].into()),
        "the cluster holds the lane's rewritten item, published"
    );
    let ls = lane_ok(&env, &repo, "alice", &["ls", "--json"]).json();
    assert!(
        ls.to_string().contains("lane-kdata"),
        "the lane's data in its status: {ls:#}"
    );
    // `lane rm` in the service's directory removes the data the Lane recorded, guarded.
    assert!(apollo.has_cluster("DEV", "cart", "lane-kdata"));
    for k in ["lane:kdata:s:1", "lane:kdata:s:2", "cart:1"] {
        rt.block_on(r.cmd(&[b"SET", k.as_bytes(), b"v"])).unwrap();
    }
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let out = env.run_in(
        &repo,
        &["rm", "kdata"],
        &[
            ("KUBECONFIG", kubeconfig.as_str()),
            ("CART_APOLLO_TOKEN", "kube-data-token"),
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_json(ns, "kdata").is_none(), "the Lane is gone");
    assert!(
        !apollo.has_cluster("DEV", "cart", "lane-kdata"),
        "the lane's cluster went with it"
    );
    assert!(apollo.has_cluster("DEV", "cart", "default"));
    assert_eq!(
        rt.block_on(r.cmd(&[b"KEYS", b"*"])).unwrap(),
        lane_data::redis::Reply::Array(Some(vec![lane_data::redis::Reply::Bulk(Some(
            b"cart:1".to_vec()
        ))])),
        "the lane's keys went with it, baseline's stay"
    );
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    env.finish();
}
