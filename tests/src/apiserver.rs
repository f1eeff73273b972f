//! A real kube-apiserver (with embedded etcd) for tests: `tests/kube-apiserver/`, built and started by
//! `scripts/kube-apiserver.sh`. A bare API server runs no controllers: Deployments never get pods,
//! nothing is garbage-collected, namespaces never finish deleting. Tests that need a Deployment to be
//! ready set its status themselves, as the controller would, and say so.
//!
//! Users (token auth; see `tests/kube-apiserver/README.md`): `admin` (group `system:masters`),
//! `alice` (`lane-developers`), `bob` (`lane-developers`, `lane-admins`). Nothing is bound to the
//! two lane groups: tests bind what they need.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One running API server.
#[derive(Debug)]
pub struct ApiServer {
    /// Where its kubeconfigs, `ca.crt`, `env` and log are.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    pub ca_file: PathBuf,
    tokens: HashMap<String, String>,
    shared: bool,
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

impl ApiServer {
    /// Builds (when needed) and starts a server of its own, stopped on drop (and by itself when
    /// this test process exits). Panics with the script's output when it cannot: a test that needs
    /// the server fails, never skips.
    pub fn start() -> ApiServer {
        sweep_leftovers();
        let dir = std::env::temp_dir().join(format!(
            "lane-kube-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let script = repo_root().join("scripts/kube-apiserver.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .env("KUBE_APISERVER_PARENT_PID", std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} start failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_else(|e| panic!("the server wrote no {}/env: {e}", dir.display()));
        let vars: HashMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
        let tokens = vars
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("KUBE_TOKEN_")
                    .map(|u| (u.to_ascii_lowercase(), (*v).to_owned()))
            })
            .collect();
        ApiServer {
            server: vars
                .get("KUBE_SERVER")
                .expect("env names KUBE_SERVER")
                .to_string(),
            ca_file: PathBuf::from(vars.get("KUBE_CA_FILE").expect("env names KUBE_CA_FILE")),
            dir,
            tokens,
            shared: false,
        }
    }

    /// One server for every test of this test binary (started on first use, stopped when the
    /// binary exits). Tests sharing it keep to namespaces of their own.
    pub fn shared() -> &'static ApiServer {
        static SERVER: OnceLock<ApiServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let mut s = ApiServer::start();
            s.shared = true;
            s
        })
    }

    /// The kubeconfig of `user` (`admin`, `alice`, `bob`).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.kubeconfig"))
    }

    /// The bearer token of `user`.
    pub fn token(&self, user: &str) -> &str {
        self.tokens
            .get(user)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no token for user `{user}`"))
    }
}

/// Removes the folders of servers whose test process is gone: a shared server is never dropped
/// (it stops by itself when its test binary exits), so its folder would stay behind.
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lane-kube-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A `kubectl` to drive the server with: the one on `PATH`, else one built from the same pinned
/// Kubernetes release (`scripts/kube-apiserver.sh kubectl`). Panics when neither can be had.
pub fn kubectl() -> PathBuf {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL
        .get_or_init(|| {
            let script = repo_root().join("scripts/kube-apiserver.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg("kubectl")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "no kubectl on PATH and none could be built:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if self.shared {
            return;
        }
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/kube-apiserver.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
