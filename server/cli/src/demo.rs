//! `lane demo`: the three lane scenarios (a one-service lane, a multi-service lane, a lane stacked
//! on another), end to end, with nothing but this binary.
//!
//! It runs a private agent on a temporary state dir (so it never touches the user's lanes),
//! starts a baseline a → b → c of the sample service, adds lanes, sends requests with and without
//! the lane header through the router and checks the path every request took against the routing
//! table's answer for the backend's status (`lane_api::routing_table`, the one decision).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use lane_api::{Backend, BackendError, Cancel};
use lane_api::{BuildFrom, DeployRequest, SourceRef};
use lane_core::manifest::Manifest;
use lane_core::{LaneId, LaneRef, ServiceId};
use lane_local::{LocalBackend, StateDir};
use tokio::sync::mpsc;

use crate::http_client;

const APP: &str = "demo";

struct Demo {
    backend: LocalBackend,
    root: std::path::PathBuf,
    exe: std::path::PathBuf,
    router: SocketAddr,
    failures: usize,
}

fn manifest(exe: &Path, name: &str, next: Option<&str>) -> anyhow::Result<Manifest> {
    let next = next.map_or(String::new(), |n| format!(" --next {n}"));
    let text = format!(
        "app = \"{APP}\"\nproc = \"{name}\"\n[run]\ncommand = \"'{}' sample-service --app {APP} --name {name}{next} --port {{port}}\"\n[health]\nhttp = \"/healthz\"\ntimeout = \"10s\"\n",
        exe.display()
    );
    Manifest::parse(Path::new("lane.toml"), &text).map_err(|e| anyhow::anyhow!("{e}"))
}

fn next_of(name: &str) -> Option<&'static str> {
    match name {
        "a" => Some("b"),
        "b" => Some("c"),
        _ => None,
    }
}

impl Demo {
    fn request(&self, name: &str, lane: &LaneRef) -> anyhow::Result<DeployRequest> {
        let dir = self.root.join("services").join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(DeployRequest {
            lane: lane.clone(),
            manifest: manifest(&self.exe, name, next_of(name))?,
            source: SourceRef {
                dir,
                branch: match lane {
                    LaneRef::Baseline => "main".into(),
                    LaneRef::Lane(l) => format!("{l}-branch"),
                },
                commit: "0000000000000000".into(),
                build_from: BuildFrom::InPlace,
                follow: None,
            },
            owner: "demo@lane".into(),
            ttl_secs: Some(3600),
            parent: None,
            force: false,
        })
    }

    async fn deploy(&self, name: &str, lane: &str, parent: Option<&str>) -> anyhow::Result<()> {
        let lane_ref: LaneRef = lane.parse()?;
        let mut req = self.request(name, &lane_ref)?;
        req.parent = parent.map(str::parse::<LaneId>).transpose()?;
        let (tx, _rx) = mpsc::unbounded_channel();
        let i = self.backend.deploy(req, tx, Cancel::new()).await?;
        println!("  deployed {name}@{lane} ({})", i.placement.endpoint());
        Ok(())
    }

    /// Sends a request to `a` and returns the path as `a@x → b@y → c@z`.
    async fn path(&self, lane: Option<&str>) -> anyhow::Result<String> {
        let a: ServiceId = format!("{APP}.a").parse()?;
        let headers: Vec<(&str, &str)> = lane.map(|l| vec![("x-lane", l)]).unwrap_or_default();
        let reply = http_client::get(self.router, &a.local_host(), "/", &headers).await?;
        if !reply.status.is_success() {
            bail!(
                "request failed with {}: {}",
                reply.status,
                reply.body.trim()
            );
        }
        let hops: Vec<String> = http_client::served_by(&reply.headers)
            .into_iter()
            .map(|h| h.strip_prefix(&format!("{APP}.")).unwrap_or(&h).to_owned())
            .collect();
        Ok(hops.join(" → "))
    }

    /// The path the routing table says a request with lane header `lane` takes, hop by hop.
    async fn expected(&self, lane: Option<&str>) -> anyhow::Result<String> {
        let status = self.backend.status().await?;
        let table = lane_api::routing_table(&status, 0, |i| Some(i.id.clone()));
        let value = lane_core::header::lane_value(lane.map(str::as_bytes), std::iter::empty());
        let hops: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|name| {
                let service: ServiceId = format!("{APP}.{name}").parse()?;
                Ok(match table.route(&service, &value).lane() {
                    Some(lane) => format!("{name}@{lane}"),
                    None => format!("{name}@(none)"),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(hops.join(" → "))
    }

    async fn check(&mut self, what: &str, lane: Option<&str>) -> anyhow::Result<()> {
        let want = self.expected(lane).await?;
        let got = self.path(lane).await?;
        let header = lane.map_or("no lane header".to_owned(), |l| format!("x-lane: {l}"));
        if got == want {
            println!("  ✓ {what:<28} ({header}): {got}");
        } else {
            println!("  ✗ {what:<28} ({header}): {got}\n      expected {want}");
            self.failures += 1;
        }
        Ok(())
    }
}

pub async fn run() -> anyhow::Result<u8> {
    let started = Instant::now();
    let root = std::env::temp_dir().join(format!("lane-demo-{}", std::process::id()));
    let state = root.join("state");
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let exe = std::env::current_exe().context("cannot find the lane binary's own path")?;
    let backend = LocalBackend::new(StateDir::new(state.clone()), exe.clone())
        .with_agent_env(vec![("LANE_ROUTER_ADDR".into(), "127.0.0.1:0".into())]);
    let result = scenarios(&backend, &root, &exe).await;
    let stopped = backend.down().await;
    let _ = std::fs::remove_dir_all(&root);
    let failures = result?;
    stopped?;
    println!(
        "cleaned up: agent stopped, processes gone, state removed ({:.1}s)",
        started.elapsed().as_secs_f32()
    );
    if failures > 0 {
        return Err(BackendError::internal(format!("{failures} path(s) were wrong")).into());
    }
    println!("all paths as expected");
    Ok(0)
}

async fn scenarios(backend: &LocalBackend, root: &Path, exe: &Path) -> anyhow::Result<usize> {
    let status = backend.status().await?;
    let router: SocketAddr = status
        .router
        .as_deref()
        .context("the agent has no router")?
        .parse()?;
    let mut demo = Demo {
        backend: backend.clone(),
        root: root.to_owned(),
        exe: exe.to_owned(),
        router,
        failures: 0,
    };
    println!("lane demo: local agent with its router on {router}\n");

    println!("baseline (same versions as production):");
    let reqs = ["a", "b", "c"]
        .iter()
        .map(|n| demo.request(n, &LaneRef::Baseline))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (tx, _rx) = mpsc::unbounded_channel();
    for i in backend.baseline_up(reqs, tx, Cancel::new()).await? {
        println!(
            "  deployed {}@baseline ({})",
            i.service.proc_(),
            i.placement.endpoint()
        );
    }
    demo.check("baseline", None).await?;

    println!("\none-service lane feature-x (its own b):");
    demo.deploy("b", "feature-x", None).await?;
    demo.check("request without a lane", None).await?;
    demo.check("request in feature-x", Some("feature-x"))
        .await?;

    println!("\nmulti-service lane feature-y (its own a and c):");
    demo.deploy("a", "feature-y", None).await?;
    demo.deploy("c", "feature-y", None).await?;
    demo.check("request in feature-y", Some("feature-y"))
        .await?;
    demo.check("request without a lane", None).await?;

    println!("\nlane feature-x-alice stacked on feature-x (its own c):");
    demo.deploy("c", "feature-x-alice", Some("feature-x"))
        .await?;
    demo.check("request in feature-x-alice", Some("feature-x-alice"))
        .await?;
    demo.check("request in feature-x", Some("feature-x"))
        .await?;
    demo.check("invalid lane value", Some("Not_A_Lane")).await?;
    println!();
    Ok(demo.failures)
}
