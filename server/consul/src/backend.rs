//! The `consul` backend: [`lane_api::Backend`] on a Consul datacenter.
//!
//! - Lanes are JSON lane documents (`lane_core::Lane`) at `<prefix>-lane/lanes/<id>` in Consul KV.
//!   Every change reads the document with its `ModifyIndex` and writes it back with
//!   `?cas=<ModifyIndex>` (a create with `?cas=0`); a write that loses re-reads and re-applies the
//!   change, so two developers changing one lane at once never lose an update.
//! - Personal versions are the instances of `<prefix>-lane.<app>.<proc>` tagged `lane=<id>`;
//!   the baseline is every instance of `<prefix>.<app>.<proc>`, registered by its own deployment.
//! - `gc` claims an expired lane by deleting its document with `?cas=<ModifyIndex>`: of several
//!   `gc`s at once exactly one delete wins (a lane extended meanwhile has a new index and is not
//!   deleted), and only the winner deregisters the lane's instances. Instances whose lane no
//!   longer exists are deregistered too.
//! - Data isolation: a deploy builds and runs the version with the local supervisor, whose deploy
//!   provisions the lane's data (MySQL clone, Redis index, Apollo cluster) and starts the version
//!   with `lane_api::data_env`'s rewritten addresses, exactly as the local backend does; what was
//!   provisioned is copied into the Consul lane document's `data`. Removing the lane (`lane rm`,
//!   gc of an expired lane) stops the local lane, whose teardown removes the data.
//! - The owner of a lane is the developer who created it (their git `user.email`); Consul ACLs
//!   decide what a token may do at all (docs/consul.md has the policy).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lane_api::{
    AssignRequest, Backend, BackendError, Cancel, CreateLane, DeleteLane, DeployRequest, ErrorCode,
    ExtendLane, GcReport, InstanceId, InstanceState, InstanceView, LaneView, Placement, Progress,
    ProgressTx, Result, Revision, Stage, Status,
};
use lane_core::lane::{DEFAULT_TTL, MAX_CHAIN_DEPTH, UnixSecs, check_owner, check_parent};
use lane_core::manifest::HealthCheck;
use lane_core::naming::{consul_baseline_name, consul_lane_key, consul_lane_name};
use lane_core::{Lane, LaneId, LaneRef, PersonalVersion, ServiceId};

use crate::client::{Blocking, CheckDefinition, Client, Registration, ServiceEntry};
use crate::config::{Options, Settings};

/// How many times a change is re-applied after losing a check-and-set before giving up.
const CAS_ATTEMPTS: u32 = 32;
/// The header requests carry their lane in (the routing components read it).
const LANE_HEADER: &str = "x-lane";

/// The `consul` backend. Opening it contacts nothing; the first call does, and an unreachable
/// Consul is an `unavailable` error naming the address and `CONSUL_HTTP_ADDR`.
pub struct ConsulBackend {
    client: Client,
    runner: Option<Runner>,
    /// Why there is no runner, when there is none.
    no_runner: Option<String>,
}

/// What runs personal versions on this machine: the local backend's supervisor (its agent).
/// `lane deploy` builds and runs the version there, then registers it in Consul at `advertise`.
#[derive(Clone)]
pub struct Runner {
    /// Starts the agent when needed (deploy).
    pub local: Arc<dyn Backend>,
    /// Never starts anything (stopping versions on rm, gc, extend).
    pub quiet: Arc<dyn Backend>,
    /// The host other machines reach this one's versions at: `LANE_ADVERTISE_ADDR`, else
    /// `127.0.0.1` (a datacenter on this machine, as in the tests).
    pub advertise: String,
    /// The local supervisor's state dir (`LANE_HOME`): `deploy` leaves the Consul settings there
    /// for the agent's keeper ([`crate::keeper`]), which follows the lane documents for the
    /// versions this machine runs.
    pub home: Option<std::path::PathBuf>,
}

impl Runner {
    /// The advertised host from `LANE_ADVERTISE_ADDR` (default `127.0.0.1`).
    pub fn advertise_from_env() -> String {
        std::env::var("LANE_ADVERTISE_ADDR")
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "127.0.0.1".into())
    }
}

impl ConsulBackend {
    /// From the environment (`CONSUL_HTTP_ADDR`, …) and `lane.toml`'s `[backend]`.
    pub fn open(opts: &Options) -> Result<ConsulBackend> {
        Ok(ConsulBackend {
            client: Client::new(Settings::from_env(opts)?)?,
            runner: None,
            no_runner: None,
        })
    }

    pub fn with_settings(settings: Settings) -> Result<ConsulBackend> {
        Ok(ConsulBackend {
            client: Client::new(settings)?,
            runner: None,
            no_runner: None,
        })
    }

    /// Runs personal versions with `runner` (without one, `deploy` is refused).
    pub fn with_runner(mut self, runner: Runner) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Runs no personal versions, for `why` (what `deploy` and `assign` then say).
    pub fn without_runner(mut self, why: String) -> Self {
        self.runner = None;
        self.no_runner = Some(why);
        self
    }

    fn no_runner(&self) -> BackendError {
        BackendError::invalid(self.no_runner.clone().unwrap_or_else(|| {
            "this consul backend has no local supervisor to run versions with".into()
        }))
    }

    /// Stops what this machine runs for lane `id` (its local lane), when anything: best effort,
    /// the Consul side being done already.
    async fn stop_local(&self, id: &LaneId, actor: &str) {
        let Some(runner) = &self.runner else { return };
        let req = DeleteLane {
            id: id.clone(),
            actor: actor.to_owned(),
            force: true,
        };
        match runner.quiet.delete_lane(req).await {
            Ok(()) => tracing::info!("stopped the local versions of lane {id}"),
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Unavailable) => {}
            Err(e) => tracing::warn!("could not stop the local versions of lane {id}: {e}"),
        }
    }

    /// Makes sure the Consul lane `id` exists (creating it for `req`) and `req.owner` may change
    /// it.
    async fn lane_for_deploy(&self, id: &LaneId, req: &DeployRequest) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            if let Some((lane, _)) = self.lane(id).await? {
                check_owner(&lane, &req.owner, req.force)?;
                return Ok(());
            }
            let created = self
                .create_lane(CreateLane {
                    id: id.clone(),
                    parent: req.parent.clone(),
                    ttl_secs: req.ttl_secs,
                    owner: req.owner.clone(),
                })
                .await;
            match created {
                Ok(_) => return Ok(()),
                // Created meanwhile by someone else: look again.
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BackendError::conflict(format!(
            "lane `{id}` kept appearing and disappearing; try again"
        )))
    }

    /// The registration of a personal version running at `advertise:port`.
    fn registration(
        &self,
        req: &DeployRequest,
        lane: &LaneId,
        version: &PersonalVersion,
        advertise: &str,
        port: u16,
    ) -> Registration {
        let service = &req.manifest.service;
        let name = consul_lane_name(self.prefix(), service);
        let host = if advertise.contains(':') {
            format!("[{advertise}]")
        } else {
            advertise.to_owned()
        };
        let (http, tcp) = match &req.manifest.health {
            HealthCheck::Http { path } => (Some(format!("http://{host}:{port}{path}")), None),
            // Consul runs no script checks by default: a command check is a TCP one there.
            HealthCheck::Tcp | HealthCheck::Command { .. } => {
                (None, Some(format!("{host}:{port}")))
            }
        };
        Registration {
            id: format!("{name}-{lane}"),
            name,
            tags: vec![
                format!("lane={lane}"),
                format!("owner={}", version.owner),
                format!("version={}", version.commit),
                format!("branch={}", version.branch),
            ],
            address: advertise.to_owned(),
            port,
            meta: BTreeMap::from([
                ("lane".to_owned(), lane.to_string()),
                ("version".to_owned(), version.version.clone()),
            ]),
            check: Some(CheckDefinition {
                http,
                tcp,
                interval: "1s".into(),
                timeout: "5s".into(),
                // It passed the supervisor's health check a moment ago.
                status: Some("passing".into()),
                // A laptop that went away does not stay registered for ever.
                deregister_critical_service_after: Some("30m".into()),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn prefix(&self) -> &str {
        &self.client.settings().prefix
    }

    fn lanes_prefix(&self) -> String {
        format!("{}-lane/lanes/", self.prefix())
    }

    /// Where the registration of instance `id` is kept (so it can be registered again under
    /// another lane): `<prefix>-lane/registrations/<id>`.
    fn registration_key(&self, id: &str) -> String {
        crate::keeper::registration_key(self.prefix(), id)
    }

    /// Every readable lane document with its `ModifyIndex`, and the KV index.
    async fn lanes(&self) -> Result<(Vec<(Lane, u64)>, u64)> {
        let (pairs, index) = self.client.kv_list(&self.lanes_prefix(), None).await?;
        let mut lanes = Vec::new();
        for p in pairs {
            match serde_json::from_slice::<Lane>(&p.value) {
                Ok(l) if p.key.ends_with(l.id.as_str()) => lanes.push((l, p.modify_index)),
                Ok(_) | Err(_) => {
                    tracing::warn!("{} in Consul KV is not a lane document; skipped", p.key);
                }
            }
        }
        lanes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok((lanes, index))
    }

    async fn lane(&self, id: &LaneId) -> Result<Option<(Lane, u64)>> {
        let key = consul_lane_key(self.prefix(), id);
        let (pair, _) = self.client.kv_get(&key).await?;
        match pair {
            None => Ok(None),
            Some(p) => serde_json::from_slice::<Lane>(&p.value)
                .map(|l| Some((l, p.modify_index)))
                .map_err(|e| {
                    BackendError::internal(format!(
                        "{key} in Consul KV is not a lane document: {e}"
                    ))
                    .with_help(format!(
                        "fix or delete it (consul kv delete {key}); lane writes it as JSON"
                    ))
                }),
        }
    }

    async fn existing(&self, id: &LaneId) -> Result<(Lane, u64)> {
        self.lane(id).await?.ok_or_else(|| {
            BackendError::not_found(format!(
                "lane `{id}` does not exist (no {} in Consul KV)",
                consul_lane_key(self.prefix(), id)
            ))
            .with_help("`lane ls` lists the lanes")
        })
    }

    /// Applies `change` to lane `id` with check-and-set, re-reading and re-applying it after
    /// every lost write. `change` sees the current document each time.
    async fn update(
        &self,
        id: &LaneId,
        mut change: impl FnMut(&mut Lane) -> Result<()>,
    ) -> Result<Lane> {
        let key = consul_lane_key(self.prefix(), id);
        for attempt in 0..CAS_ATTEMPTS {
            let (mut lane, index) = self.existing(id).await?;
            change(&mut lane)?;
            if self.client.kv_cas(&key, to_json(&lane)?, index).await? {
                return Ok(lane);
            }
            tracing::debug!("lost a check-and-set on {key} (attempt {attempt}); re-reading");
            backoff(attempt).await;
        }
        Err(BackendError::conflict(format!(
            "lane `{id}` kept changing under lane ({CAS_ATTEMPTS} check-and-set writes lost); \
             try again"
        )))
    }

    /// The instances of lane `lane`'s services (any health), by service.
    async fn lane_instances(&self, lane: &Lane) -> Result<Vec<(ServiceId, ServiceEntry)>> {
        let tag = format!("lane={}", lane.id);
        let mut out = Vec::new();
        for service in lane.services.keys() {
            let name = consul_lane_name(self.prefix(), service);
            let (entries, _) = self
                .client
                .health_service(&name, false, &[&tag], None)
                .await?;
            out.extend(entries.into_iter().map(|e| (service.clone(), e)));
        }
        Ok(out)
    }

    /// Every instance tagged `lane=<id>` of any `<prefix>-lane.*` service (any health), also those
    /// the lane's document does not list (an assignment the owning machine has not carried out).
    async fn tagged_instances(&self, id: &LaneId) -> Result<Vec<ServiceEntry>> {
        let tag = format!("lane={id}");
        let lane_prefix = format!("{}-lane.", self.prefix());
        let (services, _) = self.client.catalog_services(None).await?;
        let mut out = Vec::new();
        for (name, tags) in &services {
            if !name.starts_with(&lane_prefix) || !tags.contains(&tag) {
                continue;
            }
            let (entries, _) = self
                .client
                .health_service(name, false, &[&tag], None)
                .await?;
            out.extend(entries);
        }
        Ok(out)
    }

    /// Deregisters the instances of a lane whose document is gone; the ids deregistered.
    async fn deregister_lane(&self, lane: &Lane) -> Result<Vec<InstanceId>> {
        let mut removed = Vec::new();
        for e in self.tagged_instances(&lane.id).await? {
            if self.remove_instance(&e).await? {
                removed.push(InstanceId::new(e.service.id.clone()));
            }
        }
        Ok(removed)
    }

    /// Removes a lane instance whose lane is gone (or that moved): through this machine's agent
    /// when it was registered here; from the catalog (`/v1/catalog/deregister`) when its node's
    /// agent is gone (`serfHealth` critical), which is what Consul documents for dead nodes;
    /// otherwise it is left to its own machine, whose agent's keeper follows the lane documents
    /// and deregisters it (and stops the process) when it sees the change. True when removed.
    async fn remove_instance(&self, e: &ServiceEntry) -> Result<bool> {
        let id = &e.service.id;
        let removed = if self.client.deregister(id).await? {
            true
        } else if e.node_health() == Some("critical") {
            match self.client.catalog_deregister(&e.node.node, id).await {
                Ok(done) => {
                    if done {
                        tracing::info!(
                            "{id}: node {} is gone (serfHealth critical); removed from the catalog",
                            e.node.node
                        );
                    }
                    done
                }
                // Without node:write on that node (the ACL policy in docs/consul.md) it stays
                // until Consul's servers reap the failed node (`reconnect_timeout`, 72 h by
                // default); it is critical meanwhile, so nothing routes to it.
                Err(err) => {
                    tracing::warn!(
                        "{id}: node {} is gone, but removing it from the catalog failed: {}",
                        e.node.node,
                        err.message
                    );
                    false
                }
            }
        } else {
            tracing::info!(
                "{id} is registered through node {}'s agent; the lane agent there deregisters it",
                e.node.node
            );
            false
        };
        if removed {
            self.client.kv_delete(&self.registration_key(id)).await?;
        }
        Ok(removed)
    }

    /// Lane instances (of any `<prefix>-lane.*` service) whose lane has no document.
    async fn orphans(&self, lanes: &[(Lane, u64)]) -> Result<Vec<ServiceEntry>> {
        let (services, _) = self.client.catalog_services(None).await?;
        let lane_prefix = format!("{}-lane.", self.prefix());
        let mut out = Vec::new();
        for name in services.keys().filter(|n| n.starts_with(&lane_prefix)) {
            let (entries, _) = self.client.health_service(name, false, &[], None).await?;
            for e in entries {
                let known = e
                    .tag("lane")
                    .is_some_and(|l| lanes.iter().any(|(lane, _)| lane.id.as_str() == l));
                if !known {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// After `rm`, waits (up to `LANE_CONSUL_HANDOFF_WAIT`) until the instances of `lane` that
    /// other machines registered are gone (their lane agents deregister them on seeing the
    /// document go); says on stderr which are still there then. They receive no traffic either
    /// way: a lane instance counts only while its lane has a document.
    async fn await_remote_removal(&self, lane: &Lane) -> Result<()> {
        let wait = handoff_wait()?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = self.tagged_instances(&lane.id).await?;
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                for e in left {
                    tracing::warn!(
                        "lane {} is removed, but {} is still registered on Consul node {}: the \
                         lane agent of that machine has not deregistered it within {wait:?}; it \
                         will when it runs (meanwhile it receives no lane traffic)",
                        lane.id,
                        e.service.id,
                        e.node.node
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// After an assignment recorded in the lane documents, waits (up to
    /// `LANE_CONSUL_HANDOFF_WAIT`, default 15 s) until the machines that run the version have
    /// registered it under the new lane; an error names the nodes that have not yet.
    async fn await_handoff(&self, req: &AssignRequest, remote: &[ServiceEntry]) -> Result<()> {
        let wait = handoff_wait()?;
        let tag = format!("lane={}", req.to);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut pending = Vec::new();
            for e in remote {
                let (now_there, _) = self
                    .client
                    .health_service(&e.service.service, false, &[&tag], None)
                    .await?;
                let moved = now_there.iter().any(|n| n.node.node == e.node.node);
                if !moved {
                    pending.push(e.node.node.clone());
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                pending.dedup();
                return Err(BackendError::unavailable(format!(
                    "{} is in lane `{}` now (the lane documents say so), but the machine that                      runs it (Consul node {}) has not registered it there within {wait:?}",
                    req.service,
                    req.to,
                    pending.join(", ")
                ))
                .with_help(
                    "its lane agent does it when it sees the change; if that machine is off,                      it happens when it is back (`lane status` shows the registration)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let (_, kv) = self.client.kv_list(&self.lanes_prefix(), None).await?;
        let (_, catalog) = self.client.catalog_services(None).await?;
        let (_, checks) = self.client.health_state("any", None).await?;
        Ok(revision([kv, catalog, checks]))
    }
}

/// The indexes of the lane documents, the catalog's services and every check's state.
fn revision(indexes: [u64; 3]) -> Revision {
    let [kv, catalog, checks] = indexes;
    Revision::new(format!("{kv}.{catalog}.{checks}"))
}

fn parse_revision(r: &Revision) -> Option<[u64; 3]> {
    let mut parts = r.as_str().split('.').map(|p| p.parse::<u64>().ok());
    let out = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(out)
}

/// `LANE_CONSUL_HANDOFF_WAIT` (seconds, default 15): how long `assign` waits for the machine that
/// runs a version to register it under its new lane.
fn handoff_wait() -> Result<Duration> {
    match std::env::var("LANE_CONSUL_HANDOFF_WAIT") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                BackendError::invalid(format!(
                    "LANE_CONSUL_HANDOFF_WAIT `{v}` is not a number of seconds (0 to 3600)"
                ))
            }),
        _ => Ok(Duration::from_secs(15)),
    }
}

fn to_json(lane: &Lane) -> Result<Vec<u8>> {
    serde_json::to_vec(lane).map_err(|e| BackendError::internal(format!("a lane document: {e}")))
}

/// A short, jittered pause before re-trying a lost check-and-set.
async fn backoff(attempt: u32) {
    let base = 5u64 << attempt.min(5);
    tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
}

fn now() -> UnixSecs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An instance's state from its checks: passing is healthy, anything else receives no traffic.
fn state_of(entry: &ServiceEntry) -> InstanceState {
    match entry.status() {
        "passing" => InstanceState::Healthy,
        _ => InstanceState::Unhealthy,
    }
}

fn instance_view(
    service: &ServiceId,
    lane: LaneRef,
    entry: &ServiceEntry,
    version: Option<lane_core::PersonalVersion>,
) -> InstanceView {
    InstanceView {
        id: InstanceId::new(entry.service.id.clone()),
        service: service.clone(),
        lane,
        placement: Placement::Registered {
            address: entry.address(),
            node: Some(entry.node.node.clone()).filter(|n| !n.is_empty()),
        },
        state: state_of(entry),
        restarts: 0,
        version,
    }
}

/// The chain of `lane`: itself, its parent, … (as far as the documents go).
fn chain_of(lane: &Lane, parents: &BTreeMap<LaneId, Option<LaneId>>) -> Vec<LaneId> {
    let mut chain = vec![lane.id.clone()];
    let mut cursor = lane.parent.clone();
    while let Some(p) = cursor {
        if chain.contains(&p) || chain.len() > MAX_CHAIN_DEPTH {
            break;
        }
        cursor = parents.get(&p).cloned().flatten();
        chain.push(p);
    }
    chain
}

#[async_trait]
impl Backend for ConsulBackend {
    fn name(&self) -> &'static str {
        "consul"
    }

    async fn status(&self) -> Result<Status> {
        let (lanes, kv_index) = self.lanes().await?;
        let (services, catalog_index) = self.client.catalog_services(None).await?;
        let (_, checks_index) = self.client.health_state("any", None).await?;
        let parents: BTreeMap<LaneId, Option<LaneId>> = lanes
            .iter()
            .map(|(l, _)| (l.id.clone(), l.parent.clone()))
            .collect();
        let mut views = Vec::new();
        for (lane, _) in &lanes {
            let mut instances = Vec::new();
            let found = self.lane_instances(lane).await?;
            for (service, version) in &lane.services {
                let mine: Vec<&ServiceEntry> = found
                    .iter()
                    .filter(|(s, _)| s == service)
                    .map(|(_, e)| e)
                    .collect();
                if mine.is_empty() {
                    // In the lane, not registered (its developer's machine is off, say).
                    instances.push(InstanceView {
                        id: InstanceId::new(format!(
                            "{}-{}",
                            consul_lane_name(self.prefix(), service),
                            lane.id
                        )),
                        service: service.clone(),
                        lane: LaneRef::Lane(lane.id.clone()),
                        placement: Placement::Registered {
                            address: String::new(),
                            node: None,
                        },
                        state: InstanceState::Stopped,
                        restarts: 0,
                        version: Some(version.clone()),
                    });
                }
                for e in mine {
                    instances.push(instance_view(
                        service,
                        LaneRef::Lane(lane.id.clone()),
                        e,
                        Some(version.clone()),
                    ));
                }
            }
            views.push(LaneView {
                lane: lane.clone(),
                chain: chain_of(lane, &parents),
                instances,
                merged: None,
            });
        }
        let mut baseline = Vec::new();
        let base_prefix = format!("{}.", self.prefix());
        for name in services.keys() {
            let Some(service) = name
                .strip_prefix(&base_prefix)
                .and_then(|s| s.parse::<ServiceId>().ok())
            else {
                continue;
            };
            debug_assert_eq!(consul_baseline_name(self.prefix(), &service), *name);
            let (entries, _) = self.client.health_service(name, false, &[], None).await?;
            baseline.extend(
                entries
                    .iter()
                    .map(|e| instance_view(&service, LaneRef::Baseline, e, None)),
            );
        }
        Ok(Status {
            backend: "consul".into(),
            router: None,
            lane_header: LANE_HEADER.into(),
            active_lane: LaneRef::Baseline,
            now: now(),
            lanes: views,
            baseline,
            baseline_sync: Vec::new(),
            traffic: Vec::new(),
            revision: revision([kv_index, catalog_index, checks_index]),
        })
    }

    async fn create_lane(&self, req: CreateLane) -> Result<Lane> {
        if let Some(parent) = &req.parent {
            let (lanes, _) = self.lanes().await?;
            let parents: BTreeMap<LaneId, Option<LaneId>> = lanes
                .iter()
                .map(|(l, _)| (l.id.clone(), l.parent.clone()))
                .collect();
            check_parent(&req.id, parent, |p| parents.get(p).map(Option::as_ref))?;
        }
        let ttl = req.ttl_secs.map(Duration::from_secs).unwrap_or(DEFAULT_TTL);
        let lane = Lane::new(req.id.clone(), req.parent.clone(), &req.owner, now(), ttl);
        let key = consul_lane_key(self.prefix(), &req.id);
        if self.client.kv_cas(&key, to_json(&lane)?, 0).await? {
            Ok(lane)
        } else {
            Err(
                BackendError::conflict(format!("lane `{}` already exists", req.id))
                    .with_help("`lane extend` gives it more time; `lane rm` removes it"),
            )
        }
    }

    async fn delete_lane(&self, req: DeleteLane) -> Result<()> {
        let key = consul_lane_key(self.prefix(), &req.id);
        for attempt in 0..CAS_ATTEMPTS {
            let (lane, index) = self.existing(&req.id).await?;
            check_owner(&lane, &req.actor, req.force)?;
            // The document first: once it is gone the lane routes nowhere, and of two removals
            // (or a removal and a gc) exactly one wins.
            if self.client.kv_delete_cas(&key, index).await? {
                self.deregister_lane(&lane).await?;
                self.stop_local(&req.id, &req.actor).await;
                self.await_remote_removal(&lane).await?;
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(BackendError::conflict(format!(
            "lane `{}` kept changing while it was being removed; try again",
            req.id
        )))
    }

    async fn extend_lane(&self, req: ExtendLane) -> Result<Lane> {
        let (lane, _) = self.existing(&req.id).await?;
        check_owner(&lane, &req.actor, req.force)?;
        let lane = self
            .update(&req.id, |lane| {
                lane.expires = lane.expires.max(now()).saturating_add(req.by_secs);
                Ok(())
            })
            .await?;
        // The local lane (of versions this machine runs) lives as long.
        if let Some(runner) = &self.runner {
            let _ = runner.quiet.extend_lane(req.clone()).await;
        }
        Ok(lane)
    }

    async fn deploy(
        &self,
        req: DeployRequest,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let Some(runner) = self.runner.clone() else {
            return Err(self.no_runner());
        };
        let LaneRef::Lane(lane_id) = req.lane.clone() else {
            return Err(BackendError::invalid(format!(
                "the consul backend deploys into lanes; the baseline is what the team's \
                 deployments register as {}.<app>.<proc>",
                self.prefix()
            ))
            .with_help("pass --lane <id>"));
        };
        let service = req.manifest.service.clone();
        self.lane_for_deploy(&lane_id, &req).await?;
        // The agent's keeper follows the lanes for what this machine runs (rm, gc or assign
        // from any machine).
        if let Some(home) = &runner.home
            && let Err(e) = crate::keeper::remember(home, self.client.settings())
        {
            return Err(BackendError::internal(format!(
                "cannot keep the Consul settings in {} for this machine's lane agent: {e}",
                home.display()
            )));
        }
        // Build, run and health-check it under the local supervisor. The chain of parents is
        // Consul's business: the local lane has none.
        let local_req = DeployRequest {
            parent: None,
            ..req.clone()
        };
        // Whether this machine already runs versions of the lane (then a failed registration
        // must not stop them).
        let had_local_lane = match runner.quiet.status().await {
            Ok(st) => lane_api::find_lane(&st, &lane_id).is_some(),
            Err(_) => false,
        };
        let instance = runner
            .local
            .deploy(local_req, progress.clone(), cancel.clone())
            .await?;
        let Placement::Process { addr, .. } = &instance.placement else {
            return Err(BackendError::internal(
                "the local supervisor answered an instance that is no process",
            ));
        };
        let port = addr.port();
        let version = instance.version.clone().unwrap_or_else(|| {
            PersonalVersion::new(&req.source.branch, &req.source.commit, &req.owner, now())
        });
        // The lane's data was provisioned by the local supervisor's deploy (into its local lane,
        // with the same rewritten addresses in the version's environment); the Consul lane
        // document records it too, so every machine sees what the lane owns.
        let data = match runner.quiet.status().await {
            Ok(st) => lane_api::find_lane(&st, &lane_id)
                .map(|l| l.lane.data.clone())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let reg = self.registration(&req, &lane_id, &version, &runner.advertise, port);
        let _ = progress.send(Progress::Stage {
            service: service.clone(),
            stage: Stage::Register,
            percent: Stage::Register.percent(),
            message: format!(
                "registering {} in Consul at {}:{port}",
                reg.id, runner.advertise
            ),
        });
        let registered = async {
            self.client.register(&reg).await?;
            let stored = serde_json::to_vec(&reg)
                .map_err(|e| BackendError::internal(format!("a registration: {e}")))?;
            self.client
                .kv_put(&self.registration_key(&reg.id), stored)
                .await?;
            self.update(&lane_id, |lane| {
                lane.services.insert(service.clone(), version.clone());
                for d in &data {
                    lane.data
                        .retain(|o| !(o.name == d.name && o.kind == d.kind));
                    lane.data.push(d.clone());
                }
                Ok(())
            })
            .await
        }
        .await;
        if let Err(e) = registered {
            // Not live: nothing may stay behind. Deregister (when it got that far) and stop
            // what the supervisor runs for the lane.
            let _ = self.client.deregister(&reg.id).await;
            if had_local_lane {
                return Err(BackendError::new(
                    e.code,
                    format!(
                        "{service} runs on this machine (lane {lane_id}) but could not be \
                         registered in Consul: {}",
                        e.message
                    ),
                )
                .with_help(format!("deploy again, or `lane rm {lane_id}`")));
            }
            self.stop_local(&lane_id, &req.owner).await;
            return Err(BackendError::new(
                e.code,
                format!(
                    "{service} ran but could not be registered in Consul, so it was stopped: {}",
                    e.message
                ),
            ));
        }
        Ok(InstanceView {
            id: InstanceId::new(reg.id.clone()),
            service,
            lane: LaneRef::Lane(lane_id),
            placement: Placement::Registered {
                address: if runner.advertise.contains(':') {
                    format!("[{}]:{port}", runner.advertise)
                } else {
                    format!("{}:{port}", runner.advertise)
                },
                node: None,
            },
            state: InstanceState::Healthy,
            restarts: instance.restarts,
            version: Some(version),
        })
    }

    async fn baseline_up(
        &self,
        _services: Vec<DeployRequest>,
        _progress: ProgressTx,
        _cancel: Cancel,
    ) -> Result<Vec<InstanceView>> {
        Err(BackendError::invalid(format!(
            "the consul backend does not run baselines: the baseline is what the team's \
             deployments register as {}.<app>.<proc>",
            self.prefix()
        )))
    }

    async fn assign(&self, req: AssignRequest) -> Result<()> {
        let (from, _) = self.existing(&req.from).await?;
        let (to, _) = self.existing(&req.to).await?;
        check_owner(&from, &req.actor, req.force)?;
        check_owner(&to, &req.actor, req.force)?;
        let Some(version) = from.services.get(&req.service).cloned() else {
            return Err(BackendError::not_found(format!(
                "lane `{}` has no version of {}",
                req.from, req.service
            )));
        };
        if from.id == to.id {
            return Err(BackendError::invalid("source and target lane are the same"));
        }
        if to.services.contains_key(&req.service) && !req.force {
            return Err(BackendError::conflict(format!(
                "lane `{}` already has a version of {}",
                req.to, req.service
            ))
            .with_help("remove it first, or pass --force to replace it"));
        }
        // Registered instances move with it. Those registered through this machine's agent are
        // moved here: this machine's supervisor relabels the process, and its registration is
        // made again under the new lane (new id, `lane=` tag and meta). Those of other machines
        // are moved by their own machine's lane agent when it sees the documents change.
        let registered: Vec<ServiceEntry> = self
            .lane_instances(&from)
            .await?
            .into_iter()
            .filter(|(s, _)| s == &req.service)
            .map(|(_, e)| e)
            .collect();
        let own_ids: Vec<String> = if registered.is_empty() {
            Vec::new()
        } else {
            self.client.agent_services().await?.into_keys().collect()
        };
        let (own, remote): (Vec<ServiceEntry>, Vec<ServiceEntry>) = registered
            .into_iter()
            .partition(|e| own_ids.contains(&e.service.id));
        let mut moves = Vec::new();
        for e in &own {
            let (pair, _) = self
                .client
                .kv_get(&self.registration_key(&e.service.id))
                .await?;
            let Some(reg) =
                pair.and_then(|p| serde_json::from_slice::<Registration>(&p.value).ok())
            else {
                return Err(BackendError::conflict(format!(
                    "{} is registered as {} by something other than `lane deploy`, so lane cannot \
                     move it",
                    req.service, e.service.id
                ))
                .with_help("deploy it into the other lane instead"));
            };
            moves.push(reg);
        }
        if !moves.is_empty() {
            let Some(runner) = &self.runner else {
                return Err(self.no_runner());
            };
            let local_to = CreateLane {
                id: req.to.clone(),
                parent: None,
                ttl_secs: Some(to.expires.saturating_sub(now()).max(60)),
                owner: req.actor.clone(),
            };
            match runner.local.create_lane(local_to).await {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::Conflict => {}
                Err(e) => return Err(e),
            }
            runner.local.assign(req.clone()).await.map_err(|e| {
                BackendError::new(
                    e.code,
                    format!(
                        "the version of {} runs on another machine or not at all: {}",
                        req.service, e.message
                    ),
                )
                .with_help("assign it on the machine that deployed it")
            })?;
        }
        // A version the target lane had (replaced with --force) is deregistered.
        if to.services.contains_key(&req.service) {
            for (s, e) in self.lane_instances(&to).await? {
                if s == req.service {
                    self.remove_instance(&e).await?;
                }
            }
        }
        for old in moves {
            let reg = crate::keeper::retagged(&old, &req.to);
            self.client.register(&reg).await?;
            let stored = serde_json::to_vec(&reg)
                .map_err(|e| BackendError::internal(format!("a registration: {e}")))?;
            self.client
                .kv_put(&self.registration_key(&reg.id), stored)
                .await?;
            self.client.deregister(&old.id).await?;
            self.client
                .kv_delete(&self.registration_key(&old.id))
                .await?;
        }
        // First into `to`, then out of `from`: if the second step fails the version is in both
        // lanes (and the error says so), never in none.
        self.update(&req.to, |lane| {
            lane.services.insert(req.service.clone(), version.clone());
            Ok(())
        })
        .await?;
        self.update(&req.from, |lane| {
            lane.services.remove(&req.service);
            Ok(())
        })
        .await
        .map_err(|e| {
            BackendError::assign_half_done(
                req.service.as_ref(),
                req.to.as_ref(),
                req.from.as_ref(),
                e,
            )
        })?;
        if !remote.is_empty() {
            self.await_handoff(&req, &remote).await?;
        }
        Ok(())
    }

    async fn switch(&self, _lane: LaneRef) -> Result<()> {
        Err(BackendError::no_active_lane("consul"))
    }

    async fn gc(&self) -> Result<GcReport> {
        let (lanes, _) = self.lanes().await?;
        let now = now();
        let mut report = GcReport {
            lanes_removed: Vec::new(),
            instances_removed: Vec::new(),
        };
        for (lane, index) in &lanes {
            if !lane.is_expired(now) {
                continue;
            }
            let key = consul_lane_key(self.prefix(), &lane.id);
            // Claims the lane: only one of several gcs (and no lane extended meanwhile) wins.
            if self.client.kv_delete_cas(&key, *index).await? {
                report
                    .instances_removed
                    .extend(self.deregister_lane(lane).await?);
                self.stop_local(&lane.id, &lane.owner).await;
                report.lanes_removed.push(lane.id.clone());
            }
        }
        let remaining: Vec<(Lane, u64)> = lanes
            .into_iter()
            .filter(|(l, _)| !report.lanes_removed.contains(&l.id))
            .collect();
        for e in self.orphans(&remaining).await? {
            // A lane created since the list was read is no orphan's lane: look again.
            if let Some(l) = e.tag("lane").and_then(|l| l.parse::<LaneId>().ok())
                && self.lane(&l).await?.is_some()
            {
                continue;
            }
            if self.remove_instance(&e).await? {
                report
                    .instances_removed
                    .push(InstanceId::new(e.service.id.clone()));
            }
        }
        Ok(report)
    }

    async fn wait_for_change(
        &self,
        since: Option<&Revision>,
        timeout: Duration,
    ) -> Result<Revision> {
        let Some(since) = since.and_then(parse_revision) else {
            return self.current_revision().await;
        };
        let wait = timeout.max(Duration::from_millis(1));
        let block = |index| Some(Blocking { index, wait });
        let prefix = self.lanes_prefix();
        let lanes = async {
            self.client
                .kv_list(&prefix, block(since[0]))
                .await
                .map(|(_, i)| i)
        };
        let services = async {
            self.client
                .catalog_services(block(since[1]))
                .await
                .map(|(_, i)| i)
        };
        let checks = async {
            self.client
                .health_state("any", block(since[2]))
                .await
                .map(|(_, i)| i)
        };
        tokio::pin!(lanes, services, checks);
        // Whichever answers first with a new index; an answer with the same index (its wait ran
        // out) waits for the others.
        let mut done = [false; 3];
        while done.contains(&false) {
            let (which, index) = tokio::select! {
                r = &mut lanes, if !done[0] => (0, r?),
                r = &mut services, if !done[1] => (1, r?),
                r = &mut checks, if !done[2] => (2, r?),
            };
            if index != since[which] {
                return self.current_revision().await;
            }
            done[which] = true;
        }
        Ok(revision(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_round_trip() {
        assert_eq!(parse_revision(&revision([7, 9, 11])), Some([7, 9, 11]));
        assert_eq!(parse_revision(&Revision::new("7.9")), None);
        assert_eq!(parse_revision(&Revision::new("7.9.1.2")), None);
        assert_eq!(parse_revision(&Revision::new("x")), None);
    }

    #[test]
    fn chains_stop_at_cycles_and_missing_parents() {
        let a: LaneId = "a".parse().unwrap();
        let b: LaneId = "b".parse().unwrap();
        let lane = Lane::new(a.clone(), Some(b.clone()), "o", 0, DEFAULT_TTL);
        let parents = BTreeMap::from([(a.clone(), Some(b.clone())), (b.clone(), Some(a.clone()))]);
        assert_eq!(chain_of(&lane, &parents), vec![a.clone(), b.clone()]);
        let parents = BTreeMap::from([(a.clone(), Some(b.clone()))]);
        assert_eq!(chain_of(&lane, &parents), vec![a, b]);
    }
}
