//! `kubectl` helpers for the end-to-end tests that run against the shared kube-apiserver
//! ([`crate::apiserver::ApiServer::shared`]): run `kubectl` as one of the fixture's users, apply
//! a manifest as `admin`, read a raw API path, play the Deployment controller's status write, and
//! poll until a condition holds.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apiserver::{self, ApiServer};

/// The repository's root directory (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    apiserver::repo_root()
}

/// `kubectl` as `user` against the shared server; returns (success, stdout, stderr).
pub fn kubectl(user: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(ApiServer::shared().kubeconfig(user))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("a stdin pipe")
            .write_all(text.as_bytes())
            .expect("write kubectl's stdin");
    }
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`kubectl`] that must succeed; returns its stdout.
pub fn kubectl_ok(user: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(user, args, stdin);
    assert!(
        ok,
        "kubectl {} as {user} failed:\n{out}{err}",
        args.join(" ")
    );
    out
}

/// Server-side applies `value` as `admin` (field manager `lane-test`, taking over conflicts).
pub fn apply(value: &Value) {
    kubectl_ok(
        "admin",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "lane-test",
            "-f",
            "-",
        ],
        Some(&value.to_string()),
    );
}

/// The object at API `path` as `admin`, or `None` when the server refuses (e.g. not found).
pub fn get_raw(path: &str) -> Option<Value> {
    let (ok, out, _) = kubectl("admin", &["get", "--raw", path], None);
    ok.then(|| serde_json::from_str(&out).expect("the API server answers JSON"))
}

/// Plays the Deployment controller: writes `status` (a `{"status": …}` merge patch) to
/// Deployment `ns/name`'s status subresource as `admin`.
pub fn patch_deployment_status(ns: &str, name: &str, status: &Value) {
    kubectl_ok(
        "admin",
        &[
            "patch",
            "deployment",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
}

/// Calls `f` every `every` until it returns `Some`, and returns that; panics naming `what` once
/// `timeout` has passed.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// Applies each of `files` (paths from the repository root) server-side as `admin`, taking over
/// conflicts; then waits until each CRD of `established` (`crd/<name>`) is Established.
pub fn apply_files(files: &[&str], established: &[&str]) {
    let root = repo_root();
    for file in files {
        kubectl_ok(
            "admin",
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &root.join(file).to_string_lossy(),
            ],
            None,
        );
    }
    if !established.is_empty() {
        let mut args = vec!["wait", "--for=condition=Established"];
        args.extend_from_slice(established);
        kubectl_ok("admin", &args, None);
    }
}

/// Creates namespace `ns` as `admin`; one that is there already is left as it is.
pub fn create_namespace(ns: &str) {
    let _ = kubectl("admin", &["create", "namespace", ns], None);
}
