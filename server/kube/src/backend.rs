//! The `kubernetes` backend: [`lane_api::Backend`] on a cluster's `Lane` objects.
//!
//! - Lanes are `Lane` objects (`lane.dev/v1alpha1`) in one namespace (`[backend] namespace`, else
//!   the service's app, else the kubeconfig context's namespace). Every change is a server-side
//!   apply of the whole spec with field manager [`FIELD_MANAGER`], never forced: a field another
//!   manager owns with another value is a conflict error naming the field and that manager.
//! - Instances are the lane Deployments `<proc>-lane-<id>` in namespace `<app>` that the operator
//!   makes; the baseline is the Deployments labelled `lane.dev/lane=baseline`.
//! - The owner of a Lane is the Kubernetes user that created it, as the cluster says
//!   (`SelfSubjectReview`); `deploy/ownership-policy.yaml` enforces it in the cluster. The client
//!   refuses early without `--force` only to give a clearer message.
//! - `deploy` runs `[image] build` in the service's directory (in place: no snapshot), applies the
//!   Lane with the image, follows the lane Deployment until it has rolled that image out to all
//!   its replicas (stages `start`, `health`), then follows the Lane until the operator's status
//!   routes the lane's requests for the service to it (stage `route`), each bounded by
//!   `[health] timeout`. A missing Deployment or route at the timeout is an `unavailable` error
//!   that says the operator did not act and quotes the Lane's conditions.
//!
//! Configuration as `kubectl` finds it: `KUBECONFIG` or `~/.kube/config` (the context from
//! `[backend] context`, else the current one), else in-cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};
use lane_api::{
    AssignRequest, Backend, BackendError, BaselineSync, Cancel, CreateLane, DeleteLane,
    DeployRequest, ErrorCode, ExtendLane, GcReport, InstanceId, InstanceState, InstanceView,
    LaneView, Placement, Progress, ProgressTx, Result, Revision, Stage, Status,
};
use lane_core::lane::{DEFAULT_TTL, MAX_CHAIN_DEPTH, UnixSecs};
use lane_core::{LaneId, LaneRef, PersonalVersion, ServiceId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::OnceCell;

use crate::crd::{LANE_LABEL, Lane, LaneService, LaneSpec};
use crate::environment::{self, LaneEnvironment, SYNC_REQUEST_ANNOTATION};
use crate::plan::{BASELINE, DEFAULT_LANE_HEADER, deployment_name};

/// The server-side apply field manager of every change this backend makes.
pub const FIELD_MANAGER: &str = "lane";

/// How long a connection attempt may take before the cluster counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a deploy looks at the lane Deployment while it follows the rollout.
const ROLLOUT_POLL: Duration = Duration::from_millis(250);

/// How long `baseline_sync` waits for the operator to honour its request.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the backend's cluster is; everything else comes from the kubeconfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The kubeconfig context; `None`: the current one (or in-cluster).
    pub context: Option<String>,
    /// Where the Lanes live; `None`: [`Settings::app`], else the context's namespace.
    pub namespace: Option<String>,
    /// The app of the service the command runs for.
    pub app: Option<String>,
    /// The data bindings of the `lane.toml` the command runs in (with their addresses and
    /// tokens): removing a lane tears down the data it recorded for these (docs/data.md).
    pub data: Vec<lane_core::data::DataSpec>,
}

struct Conn {
    client: Client,
    namespace: String,
    server: String,
}

/// The `kubernetes` backend. Opening it contacts nothing; the first call loads the configuration
/// and talks to the API server, and an unreachable one is an `unavailable` error naming it.
pub struct KubernetesBackend {
    settings: Settings,
    conn: OnceCell<Conn>,
    user: OnceCell<String>,
}

impl KubernetesBackend {
    pub fn new(settings: Settings) -> Self {
        KubernetesBackend {
            settings,
            conn: OnceCell::new(),
            user: OnceCell::new(),
        }
    }

    async fn conn(&self) -> Result<&Conn> {
        self.conn.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Conn> {
        let mut config = match &self.settings.context {
            Some(context) => Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            })
            .await
            .map_err(|e| {
                BackendError::unavailable(format!(
                    "cannot load kubeconfig context `{context}`: {}",
                    chain(&e)
                ))
            })?,
            None => Config::infer().await.map_err(|e| {
                BackendError::unavailable(format!(
                    "cannot find a Kubernetes configuration (KUBECONFIG, ~/.kube/config, \
                     in-cluster): {}",
                    chain(&e)
                ))
                .with_help("set KUBECONFIG, or [backend] context in lane.toml")
            })?,
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        let server = config.cluster_url.to_string();
        let namespace = self
            .settings
            .namespace
            .clone()
            .or_else(|| self.settings.app.clone())
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| {
            BackendError::unavailable(format!(
                "cannot set up a client for the Kubernetes API server {server}: {}",
                chain(&e)
            ))
        })?;
        Ok(Conn {
            client,
            namespace,
            server,
        })
    }

    async fn lanes_api(&self) -> Result<(Api<Lane>, &Conn)> {
        let conn = self.conn().await?;
        Ok((Api::namespaced(conn.client.clone(), &conn.namespace), conn))
    }

    /// Who the cluster says we are.
    async fn whoami(&self) -> Result<&str> {
        let conn = self.conn().await?;
        self.user
            .get_or_try_init(|| async {
                let api: Api<SelfSubjectReview> = Api::all(conn.client.clone());
                let review = api
                    .create(&PostParams::default(), &SelfSubjectReview::default())
                    .await
                    .map_err(|e| api_error(conn, "asking the cluster who you are", e))?;
                review
                    .status
                    .and_then(|s| s.user_info)
                    .and_then(|u| u.username)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        BackendError::unavailable(format!(
                            "the Kubernetes API server {} did not say who you are \
                             (SelfSubjectReview without a username)",
                            conn.server
                        ))
                    })
            })
            .await
            .map(String::as_str)
    }

    async fn get_lane(&self, id: &LaneId) -> Result<Option<Lane>> {
        let (api, conn) = self.lanes_api().await?;
        api.get_opt(id.as_str())
            .await
            .map_err(|e| api_error(conn, &format!("reading Lane {}/{id}", conn.namespace), e))
    }

    async fn existing_lane(&self, id: &LaneId) -> Result<Lane> {
        match self.get_lane(id).await? {
            Some(l) => Ok(l),
            None => {
                let conn = self.conn().await?;
                Err(BackendError::not_found(format!(
                    "lane `{id}` does not exist (no Lane {id} in namespace {})",
                    conn.namespace
                ))
                .with_help("`lane ls` lists the lanes"))
            }
        }
    }

    /// Server-side applies the whole spec of Lane `id` with field manager `lane`, never forced,
    /// only onto `resource_version` when given (else the API server answers 409
    /// "the object has been modified").
    async fn apply_at(
        &self,
        id: &LaneId,
        spec: &LaneSpec,
        resource_version: Option<&str>,
    ) -> Result<Lane, kube::Error> {
        let conn = self
            .conn()
            .await
            .map_err(|e| kube::Error::Service(e.message.into()))?;
        let api: Api<Lane> = Api::namespaced(conn.client.clone(), &conn.namespace);
        let mut metadata = serde_json::json!({"name": id.as_str(), "namespace": conn.namespace});
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = rv.into();
        }
        let body = serde_json::json!({
            "apiVersion": "lane.dev/v1alpha1",
            "kind": "Lane",
            "metadata": metadata,
            "spec": spec,
        });
        api.patch(
            id.as_str(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&body),
        )
        .await
    }

    /// Creates Lane `id`, failing (409 AlreadyExists) when it exists: a server-side apply would
    /// merge into a Lane made meanwhile and drop the versions it has. The create's fields are then
    /// handed to the apply manager `lane` (the create records them as `lane`'s *Update*, which
    /// later applies would conflict with); if that hand-over loses a race it is left as it is.
    async fn create_owned(&self, id: &LaneId, spec: &LaneSpec) -> Result<Lane, kube::Error> {
        let conn = self
            .conn()
            .await
            .map_err(|e| kube::Error::Service(e.message.into()))?;
        let api: Api<Lane> = Api::namespaced(conn.client.clone(), &conn.namespace);
        let mut lane = Lane::new(id.as_str(), spec.clone());
        lane.metadata.namespace = Some(conn.namespace.clone());
        let created = api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                },
                &lane,
            )
            .await?;
        let entries: Vec<serde_json::Value> = created
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|entry| {
                let mut entry = entry.clone();
                if entry.manager.as_deref() == Some(FIELD_MANAGER)
                    && entry.operation.as_deref() == Some("Update")
                {
                    entry.operation = Some("Apply".to_owned());
                    entry.time = None;
                }
                serde_json::to_value(entry).unwrap_or_default()
            })
            .collect();
        let handover = serde_json::json!({"metadata": {
            "resourceVersion": created.metadata.resource_version,
            "managedFields": entries,
        }});
        Ok(api
            .patch(
                id.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&handover),
            )
            .await
            .unwrap_or(created))
    }

    /// Reads Lane `id` (`fresh` when it does not exist), changes its spec with `change` and
    /// applies it onto what was read; when someone changed the Lane in between, reads and changes
    /// again, so that a concurrent change (another service deployed into the lane) is not lost.
    async fn update(
        &self,
        id: &LaneId,
        fresh: Option<&LaneSpec>,
        change: impl Fn(&mut LaneSpec) -> Result<()> + Send + Sync,
    ) -> Result<Lane> {
        let conn = self.conn().await?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.get_lane(id).await?;
            let mut spec = match (&current, fresh) {
                (Some(l), _) => l.spec.clone(),
                (None, Some(f)) => f.clone(),
                (None, None) => {
                    return Err(BackendError::not_found(format!(
                        "lane `{id}` does not exist (no Lane {id} in namespace {})",
                        conn.namespace
                    )));
                }
            };
            change(&mut spec)?;
            if current.is_none() {
                // A create that someone else's create beat (409 AlreadyExists) goes round again
                // and applies onto theirs.
                match self.create_owned(id, &spec).await {
                    Ok(lane) => return Ok(lane),
                    Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => continue,
                    Err(e) => {
                        return Err(api_error(
                            conn,
                            &format!("creating Lane {}/{id}", conn.namespace),
                            e,
                        ));
                    }
                }
            }
            let rv = current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.as_deref());
            match self.apply_at(id, &spec, rv).await {
                Ok(lane) => return Ok(lane),
                Err(kube::Error::Api(s))
                    if s.code == 409
                        && s.message.contains("the object has been modified")
                        && attempts < 5 => {}
                Err(e) => {
                    return Err(api_error(
                        conn,
                        &format!("applying Lane {}/{id}", conn.namespace),
                        e,
                    ));
                }
            }
        }
    }

    /// Refuses early (without `--force`) what the cluster's policy would refuse anyway.
    async fn check_owner(&self, lane: &Lane, force: bool) -> Result<()> {
        let me = self.whoami().await?;
        if force || lane.spec.owner == me {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorCode::NotOwner,
            format!(
                "lane `{}` belongs to {} (you are {me}); pass --force to change it as a member \
                 of the admin group",
                lane.metadata.name.as_deref().unwrap_or_default(),
                lane.spec.owner
            ),
        ))
    }

    /// A new Lane's spec, owned by whoever the cluster says we are.
    async fn new_spec(
        &self,
        parent: Option<&LaneId>,
        ttl_secs: Option<u64>,
        now: UnixSecs,
    ) -> Result<LaneSpec> {
        if let Some(p) = parent
            && self.get_lane(p).await?.is_none()
        {
            return Err(BackendError::not_found(format!(
                "parent lane `{p}` does not exist; create it first or drop --parent"
            )));
        }
        let ttl = ttl_secs.unwrap_or(DEFAULT_TTL.as_secs());
        Ok(LaneSpec {
            data: Vec::new(),
            owner: self.whoami().await?.to_owned(),
            parent: parent.map(|p| p.to_string()),
            expires: time_at(now.saturating_add(ttl))?,
            services: BTreeMap::new(),
        })
    }

    async fn deployments(&self, namespaces: &BTreeSet<String>) -> Result<Vec<Deployment>> {
        let conn = self.conn().await?;
        let mut out = Vec::new();
        for ns in namespaces {
            let api: Api<Deployment> = Api::namespaced(conn.client.clone(), ns);
            let list = api
                .list(&ListParams::default().labels(LANE_LABEL))
                .await
                .map_err(|e| api_error(conn, &format!("listing Deployments in {ns}"), e))?;
            out.extend(list.items);
        }
        Ok(out)
    }

    /// The LaneEnvironments of `namespaces`; a namespace whose LaneEnvironments cannot be read
    /// (the CRD not installed, not allowed) has none.
    async fn environments(&self, namespaces: &BTreeSet<String>) -> Result<Vec<LaneEnvironment>> {
        let conn = self.conn().await?;
        let mut out = Vec::new();
        for ns in namespaces {
            let api: Api<LaneEnvironment> = Api::namespaced(conn.client.clone(), ns);
            match api.list(&ListParams::default()).await {
                Ok(list) => out.extend(list.items),
                Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => {}
                Err(e) => {
                    return Err(api_error(
                        conn,
                        &format!("listing LaneEnvironments in {ns}"),
                        e,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The Lanes' namespace and the namespaces of the services its Lanes touch.
    fn namespaces_of(conn: &Conn, lanes: &[Lane]) -> BTreeSet<String> {
        let mut namespaces = BTreeSet::from([conn.namespace.clone()]);
        for l in lanes {
            for s in l.spec.services.keys() {
                if let Ok(id) = s.parse::<ServiceId>() {
                    namespaces.insert(id.app().to_owned());
                }
            }
        }
        namespaces
    }

    async fn current_revision(&self) -> Result<Revision> {
        let (api, conn) = self.lanes_api().await?;
        let list = api
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| api_error(conn, &format!("listing Lanes in {}", conn.namespace), e))?;
        Ok(Revision::new(
            list.metadata.resource_version.unwrap_or_default(),
        ))
    }

    /// Tears down what a deleted Lane recorded in `spec.data`, for the bindings of the lane.toml
    /// this command runs in (their addresses are needed; the guard checks every step). Data of
    /// bindings not declared here is named in an error, so nobody assumes it is gone.
    async fn remove_data(&self, id: &LaneId, lane: &Lane) -> Result<()> {
        let records = core_data(lane);
        if records.is_empty() {
            return Ok(());
        }
        let specs: Vec<lane_core::data::DataSpec> = self
            .settings
            .data
            .iter()
            .filter(|s| {
                records
                    .iter()
                    .any(|r| r.name == s.name && r.kind == s.kind())
            })
            .cloned()
            .collect();
        let plan = lane_data::teardown::plan(id, &specs, &records)
            .map_err(|e| BackendError::internal(format!("the lane's data: {e}")))?;
        let done = lane_data::teardown::execute(&plan, &specs)
            .await
            .map_err(|e| {
                BackendError::unavailable(format!(
                    "Lane `{id}` is deleted but its data could not be removed: {e}"
                ))
            })?;
        for d in &done {
            tracing::info!(lane = %id, removed = d.removed, "{}", d.action);
        }
        let left: Vec<String> = records
            .iter()
            .filter(|r| !specs.iter().any(|s| s.name == r.name && s.kind() == r.kind))
            .map(|r| format!("{} ({} `{}`)", r.name, r.kind, r.target))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(BackendError::invalid(format!(
                "Lane `{id}` is deleted, but its data of bindings the lane.toml here does not \
                 declare is left: {}",
                left.join(", ")
            ))
            .with_help(
                "remove it by hand (its names are the lane's own), or run `lane rm` in that \
                 service's directory next time",
            ))
        }
    }

    /// Provisions the lane's copies of the service's bindings from this machine and returns the
    /// records for the Lane's `spec.data` and the version's environment (`lane_api::data_env`,
    /// the same as every backend injects). Nothing for baseline or a service without bindings.
    async fn provision_data(
        &self,
        req: &DeployRequest,
        lane: &LaneId,
        existing: Option<&Lane>,
        progress: &ProgressTx,
    ) -> Result<(Vec<crate::crd::LaneData>, Vec<(String, String)>)> {
        if req.manifest.data.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let service = &req.manifest.service;
        stage(
            progress,
            service,
            Stage::Build,
            format!(
                "provisioning the lane's data from this machine ({} binding{})",
                req.manifest.data.len(),
                if req.manifest.data.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        );
        let held = existing.map(core_data).unwrap_or_default();
        let records = lane_data::provision::provision(lane, &req.manifest.data, &held)
            .await
            .map_err(|f| {
                let message = f.to_string();
                match f.error {
                    lane_data::DataError::Unreachable { .. } => BackendError::unavailable(message)
                        .with_help(
                            "the kubernetes backend provisions a lane's data from the machine \
                             that runs `lane deploy`: the binding's server must be reachable \
                             from here",
                        ),
                    lane_data::DataError::Server { .. } => BackendError::internal(message),
                    lane_data::DataError::PoolFull { .. } | lane_data::DataError::Guard(_) => {
                        BackendError::conflict(message)
                    }
                    _ => BackendError::invalid(message).with_help("fix the binding in lane.toml"),
                }
            })?;
        let mut doc = lane_core::Lane::new(lane.clone(), None, "", 0, std::time::Duration::ZERO);
        doc.data = records.clone();
        let env = lane_api::data_env(&req.manifest, &LaneRef::Lane(lane.clone()), Some(&doc))?;
        let data = records
            .into_iter()
            .filter(|r| {
                req.manifest
                    .data
                    .iter()
                    .any(|s| s.name == r.name && s.kind() == r.kind)
            })
            .map(|r| crate::crd::LaneData {
                kind: r.kind.to_string(),
                name: r.name,
                target: r.target,
            })
            .collect();
        Ok((data, env))
    }

    async fn run_build(
        &self,
        req: &DeployRequest,
        command: &str,
        progress: &ProgressTx,
        cancel: &Cancel,
    ) -> Result<String> {
        let service = &req.manifest.service;
        let dir = &req.source.dir;
        stage(
            progress,
            service,
            Stage::Build,
            format!(
                "building the image with `{command}` in {} (in place: the kubernetes backend \
                 builds in the service's directory, not in a snapshot)",
                dir.display()
            ),
        );
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that stopping it stops what it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BackendError::new(
                    ErrorCode::BuildFailed,
                    format!(
                        "cannot run the image build `{command}` in {}: {e}",
                        dir.display()
                    ),
                )
            })?;
        let group = BuildGroup(child.id());
        let stderr_task = child.stderr.take().map(|err| {
            let (tx, service) = (progress.clone(), service.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(Progress::Log {
                        service: service.clone(),
                        line,
                    });
                }
            })
        });
        let stdout_task = child.stdout.take().map(|out| {
            let (tx, service) = (progress.clone(), service.clone());
            tokio::spawn(async move {
                let mut last = None;
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if !line.trim().is_empty() {
                        last = Some(line.trim().to_owned());
                    }
                    let _ = tx.send(Progress::Log {
                        service: service.clone(),
                        line,
                    });
                }
                last
            })
        });
        let exit = tokio::select! {
            exit = child.wait() => exit,
            _ = cancel.cancelled() => {
                drop(group);
                let _ = child.kill().await;
                return Err(BackendError::cancelled());
            }
            _ = tokio::time::sleep(req.manifest.build_timeout) => {
                drop(group);
                let _ = child.kill().await;
                return Err(BackendError::new(
                    ErrorCode::BuildFailed,
                    format!(
                        "the image build `{command}` took longer than {}s and was stopped; \
                         nothing was applied",
                        req.manifest.build_timeout.as_secs()
                    ),
                ));
            }
        }
        .map_err(|e| {
            BackendError::new(
                ErrorCode::BuildFailed,
                format!("waiting for the image build `{command}`: {e}"),
            )
        })?;
        // Done: what it left running in its group is stopped, and its output read to the end.
        drop(group);
        if let Some(t) = stderr_task {
            let _ = t.await;
        }
        let last = match stdout_task {
            Some(t) => t.await.ok().flatten(),
            None => None,
        };
        if !exit.success() {
            return Err(BackendError::new(
                ErrorCode::BuildFailed,
                format!("the image build `{command}` failed ({exit}); nothing was applied"),
            ));
        }
        last.ok_or_else(|| {
            BackendError::new(
                ErrorCode::BuildFailed,
                format!(
                    "the image build `{command}` printed nothing; its last line of output must \
                     be the image reference"
                ),
            )
        })
    }

    /// Follows the lane Deployment until its replicas are ready, the health timeout passes or
    /// the caller cancels; the Lane is applied already, so every way out says what is live.
    async fn follow_rollout(
        &self,
        service: &ServiceId,
        lane: &LaneId,
        version: &LaneService,
        timeout: Duration,
        progress: &ProgressTx,
        cancel: &Cancel,
    ) -> Result<(Deployment, InstanceState)> {
        let (spec_version, image) = (&version.version, &version.image);
        let conn = self.conn().await?;
        let ns = service.app();
        let name = deployment_name(service, lane);
        let api: Api<Deployment> = Api::namespaced(conn.client.clone(), ns);
        let live = format!(
            "Lane {}/{lane} is applied with {service} {spec_version} and stays; the operator \
             rolls it out (Deployment {ns}/{name}); `lane status` shows it, `lane rm {lane}` \
             removes it",
            conn.namespace
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let mut started = false;
        loop {
            let found = api
                .get_opt(&name)
                .await
                .map_err(|e| api_error(conn, &format!("reading Deployment {ns}/{name}"), e))?;
            if let Some(d) = found {
                let (ready, want) = ready_counts(&d);
                if !started {
                    started = true;
                    stage(
                        progress,
                        service,
                        Stage::Start,
                        format!("Deployment {ns}/{name}: {ready}/{want} ready"),
                    );
                }
                let state = deployment_state(&d);
                if state == InstanceState::Healthy && rolled_out(&d, image) {
                    stage(
                        progress,
                        service,
                        Stage::Health,
                        format!("Deployment {ns}/{name}: {ready}/{want} ready"),
                    );
                    return Ok((d, state));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Err(BackendError::new(
                        ErrorCode::Cancelled,
                        format!("stopped following the rollout; {live}"),
                    ));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let exists = api
                        .get_opt(&name)
                        .await
                        .map_err(|e| api_error(conn, &format!("reading Deployment {ns}/{name}"), e))?
                        .is_some();
                    if !exists {
                        // Nobody made the Deployment: the operator is not acting on the Lane.
                        let said = self.lane_conditions(lane).await?;
                        return Err(BackendError::unavailable(format!(
                            "the lane operator did not create Deployment {ns}/{name} within {}s \
                             ({said}); {live}",
                            timeout.as_secs()
                        ))
                        .with_help(OPERATOR_HELP));
                    }
                    return Err(BackendError::new(
                        ErrorCode::Unhealthy,
                        format!(
                            "Deployment {ns}/{name} did not roll out {image} to all its replicas \
                             within {}s; {live}",
                            timeout.as_secs()
                        ),
                    ));
                }
                _ = tokio::time::sleep(ROLLOUT_POLL) => {}
            }
        }
    }

    /// Follows the Lane until the operator has seen `generation` of it (or a later one) and its
    /// status routes the lane's requests for `service` to this lane's own subset, the timeout
    /// passes or the caller cancels. The version is ready by then; every way out says so.
    async fn follow_route(
        &self,
        service: &ServiceId,
        lane: &LaneId,
        generation: Option<i64>,
        timeout: Duration,
        progress: &ProgressTx,
        cancel: &Cancel,
    ) -> Result<()> {
        let (api, conn) = self.lanes_api().await?;
        let live = format!(
            "the version is ready (Deployment {}/{}) and stays in Lane {}/{lane}; `lane status` \
             shows it, `lane rm {lane}` removes it",
            service.app(),
            deployment_name(service, lane),
            conn.namespace
        );
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = api.get_opt(lane.as_str()).await.map_err(|e| {
                api_error(conn, &format!("reading Lane {}/{lane}", conn.namespace), e)
            })?;
            let Some(found) = found else {
                return Err(BackendError::not_found(format!(
                    "Lane {}/{lane} was deleted while its deploy waited for the route",
                    conn.namespace
                )));
            };
            if let Some(route) = own_route(&found, service, generation) {
                stage(
                    progress,
                    service,
                    Stage::Route,
                    format!(
                        "routed: lane `{lane}` requests for {service} go to subset {} of {} \
                         (the operator's VirtualService and DestinationRule in {})",
                        route.subset,
                        route.host,
                        service.app()
                    ),
                );
                return Ok(());
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Err(BackendError::new(
                        ErrorCode::Cancelled,
                        format!("stopped waiting for the route; {live}"),
                    ));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BackendError::unavailable(format!(
                        "the lane operator did not route lane `{lane}` for {service} within {}s \
                         ({}); requests with lane `{lane}` still fall back along its parent chain \
                         to baseline; {live}",
                        timeout.as_secs(),
                        describe_conditions(&found, generation)
                    ))
                    .with_help(OPERATOR_HELP));
                }
                _ = tokio::time::sleep(ROLLOUT_POLL) => {}
            }
        }
    }

    /// What the operator last said about Lane `lane`, for an error message.
    async fn lane_conditions(&self, lane: &LaneId) -> Result<String> {
        Ok(match self.get_lane(lane).await? {
            Some(l) => describe_conditions(&l, l.metadata.generation),
            None => "the Lane is gone".to_owned(),
        })
    }
}

/// Where to look when the operator does not act.
const OPERATOR_HELP: &str = "is `lane operator` running and watching this namespace? \
     kubectl -n lane-system logs deploy/lane-operator; kubectl get lane <id> -o yaml shows its \
     conditions";

/// The route the Lane's status gives its own requests for `service` to its own subset, once
/// the operator has seen `generation` of the Lane (or a later one).
fn own_route<'a>(
    lane: &'a Lane,
    service: &ServiceId,
    generation: Option<i64>,
) -> Option<&'a crate::crd::LaneRoute> {
    let status = lane.status.as_ref()?;
    if status.observed_generation < generation {
        return None;
    }
    let id = lane_name(lane);
    status
        .routes
        .iter()
        .find(|r| r.service == service.as_str() && r.lane == id)
}

/// The Lane's conditions as `Type=Status (Reason): message; …`, or why there are none.
fn describe_conditions(lane: &Lane, generation: Option<i64>) -> String {
    let Some(status) = lane.status.as_ref() else {
        return "the Lane has no status: no operator has seen it".to_owned();
    };
    let mut out = Vec::new();
    if status.observed_generation < generation {
        out.push(format!(
            "the operator last saw generation {} of the Lane, not {}",
            status
                .observed_generation
                .map_or_else(|| "none".to_owned(), |g| g.to_string()),
            generation.map_or_else(|| "?".to_owned(), |g| g.to_string())
        ));
    }
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|c| {
            let mut text = format!("{}={} ({})", c.type_, c.status, c.reason);
            if !c.message.is_empty() {
                text.push_str(": ");
                text.push_str(&c.message);
            }
            text
        })
        .collect();
    if conditions.is_empty() {
        out.push("the Lane has no conditions".to_owned());
    } else {
        out.push(format!("Lane conditions: {}", conditions.join("; ")));
    }
    out.join("; ")
}

/// The Deployment runs `image` and the Deployment controller has rolled its current spec out to
/// every replica (`status.observedGeneration` caught up, `updatedReplicas` and `readyReplicas`
/// at `spec.replicas`): not the previous version still ready while the new one starts.
fn rolled_out(d: &Deployment, image: &str) -> bool {
    let runs = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| {
            p.containers
                .iter()
                .any(|c| c.image.as_deref() == Some(image))
        });
    let (ready, want) = ready_counts(d);
    let status = d.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    runs && observed >= d.metadata.generation && updated >= want && ready >= want
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn status(&self) -> Result<Status> {
        let (api, conn) = self.lanes_api().await?;
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(conn, &format!("listing Lanes in {}", conn.namespace), e))?;
        let revision = Revision::new(list.metadata.resource_version.clone().unwrap_or_default());
        let namespaces = Self::namespaces_of(conn, &list.items);
        let deployments = self.deployments(&namespaces).await?;
        let mut status = status_of(&list.items, &deployments, revision, now());
        status.active_lane = crate::active::get(&conn.server, &conn.namespace)?;
        status.baseline_sync = self
            .environments(&namespaces)
            .await?
            .iter()
            .flat_map(environment::to_api)
            .collect();
        Ok(status)
    }

    /// Asks the operator for a sync now: sets the annotation `lane.dev/sync-requested` on every
    /// LaneEnvironment of the Lanes' namespace and of the services' namespaces to a new value,
    /// waits until the operator echoes it in `status.observedSyncRequest`, and answers their
    /// statuses then (a service whose images were just set is `behind` until rolled out).
    async fn baseline_sync(
        &self,
        _progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<Vec<BaselineSync>> {
        let (api, conn) = self.lanes_api().await?;
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(conn, &format!("listing Lanes in {}", conn.namespace), e))?;
        let namespaces = Self::namespaces_of(conn, &list.items);
        let envs = self.environments(&namespaces).await?;
        if envs.is_empty() {
            return Err(BackendError::invalid(format!(
                "no LaneEnvironment in namespace {}: baseline follows no production here",
                namespaces.iter().cloned().collect::<Vec<_>>().join(", ")
            ))
            .with_help(
                "an admin installs deploy/environment-crd.yaml and creates a LaneEnvironment in                  the baseline's namespace naming production's (docs/kubernetes.md)",
            ));
        }
        let token = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        for env in &envs {
            let ns = env.metadata.namespace.clone().unwrap_or_default();
            let name = env.metadata.name.clone().unwrap_or_default();
            let api: Api<LaneEnvironment> = Api::namespaced(conn.client.clone(), &ns);
            let patch =
                serde_json::json!({"metadata": {"annotations": {SYNC_REQUEST_ANNOTATION: token}}});
            api.patch(&name, &params, &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    api_error(
                        conn,
                        &format!("asking for a sync of LaneEnvironment {ns}/{name}"),
                        e,
                    )
                })?;
        }
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            let now_envs = self.environments(&namespaces).await?;
            let waiting: Vec<String> = envs
                .iter()
                .filter(|e| {
                    !now_envs.iter().any(|n| {
                        n.metadata.uid == e.metadata.uid
                            && n.status
                                .as_ref()
                                .and_then(|s| s.observed_sync_request.as_deref())
                                == Some(token.as_str())
                    })
                })
                .map(|e| crate::plan::object_name(&e.metadata))
                .collect();
            if waiting.is_empty() {
                return Ok(now_envs.iter().flat_map(environment::to_api).collect());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::unavailable(format!(
                    "the lane operator did not answer the sync request on LaneEnvironment {} within {}s",
                    waiting.join(", "),
                    SYNC_TIMEOUT.as_secs()
                ))
                .with_help("is the operator running? kubectl -n lane-system logs deploy/lane-operator"));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(BackendError::cancelled()),
                _ = tokio::time::sleep(ROLLOUT_POLL) => {}
            }
        }
    }

    async fn create_lane(&self, req: CreateLane) -> Result<lane_core::Lane> {
        if self.get_lane(&req.id).await?.is_some() {
            return Err(
                BackendError::conflict(format!("lane `{}` already exists", req.id))
                    .with_help("`lane extend` gives it more time; `lane rm` removes it"),
            );
        }
        let spec = self
            .new_spec(req.parent.as_ref(), req.ttl_secs, now())
            .await?;
        let conn = self.conn().await?;
        let lane = self
            .create_owned(&req.id, &spec)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => {
                    BackendError::conflict(format!("lane `{}` already exists", req.id))
                }
                e => api_error(
                    conn,
                    &format!("creating Lane {}/{}", conn.namespace, req.id),
                    e,
                ),
            })?;
        Ok(core_lane(&lane, now()).unwrap_or_else(|| lane_core::Lane {
            id: req.id.clone(),
            parent: req.parent.clone(),
            owner: spec.owner.clone(),
            created: now(),
            expires: spec.expires.0.as_second().max(0).unsigned_abs(),
            services: BTreeMap::new(),
            data: Vec::new(),
        }))
    }

    async fn delete_lane(&self, req: DeleteLane) -> Result<()> {
        let lane = self.existing_lane(&req.id).await?;
        self.check_owner(&lane, req.force).await?;
        let (api, conn) = self.lanes_api().await?;
        match api.delete(req.id.as_str(), &DeleteParams::default()).await {
            Ok(_) => self.remove_data(&req.id, &lane).await,
            Err(e) => Err(api_error(
                conn,
                &format!("deleting Lane {}/{}", conn.namespace, req.id),
                e,
            )),
        }
    }

    async fn extend_lane(&self, req: ExtendLane) -> Result<lane_core::Lane> {
        let lane = self.existing_lane(&req.id).await?;
        self.check_owner(&lane, req.force).await?;
        let applied = self
            .update(&req.id, None, |spec| {
                let expires = unix(&spec.expires).max(now()).saturating_add(req.by_secs);
                spec.expires = time_at(expires)?;
                Ok(())
            })
            .await?;
        core_lane(&applied, now()).ok_or_else(|| {
            BackendError::internal(format!("the applied Lane `{}` is unreadable", req.id))
        })
    }

    async fn deploy(
        &self,
        req: DeployRequest,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let LaneRef::Lane(lane_id) = req.lane.clone() else {
            return Err(BackendError::invalid(
                "the kubernetes backend deploys into lanes; the baseline comes from the team's \
                 release system",
            )
            .with_help("pass --lane <id>"));
        };
        let service = req.manifest.service.clone();
        let Some(command) = req.manifest.image_build.clone() else {
            let at = req
                .manifest
                .backend
                .declared_at
                .as_deref()
                .map(|a| format!("{a}: "))
                .unwrap_or_default();
            return Err(BackendError::invalid(format!(
                "{at}the kubernetes backend deploys an image, and lane.toml names no command \
                 that builds one; nothing was started"
            ))
            .with_help(
                "add [image] build = \"<command>\" to lane.toml; its last line of output is the \
                 image reference",
            ));
        };
        // Everything that can refuse the deploy is asked before the build runs.
        let me = self.whoami().await?.to_owned();
        let existing = self.get_lane(&lane_id).await?;
        if let Some(l) = &existing {
            self.check_owner(l, req.force).await?;
        }
        // The lane's data, provisioned from this machine (its servers must be reachable from
        // here, as for the local backend); the version's container gets the rewritten addresses.
        let (data, data_env) = self
            .provision_data(&req, &lane_id, existing.as_ref(), &progress)
            .await?;
        let image = self.run_build(&req, &command, &progress, &cancel).await?;
        if cancel.is_cancelled() {
            return Err(BackendError::cancelled());
        }
        let now = now();
        let fresh = match self.get_lane(&lane_id).await? {
            Some(_) => None,
            None => Some(
                self.new_spec(req.parent.as_ref(), req.ttl_secs, now)
                    .await?,
            ),
        };
        let version = PersonalVersion::new(&req.source.branch, &req.source.commit, &me, now);
        if cancel.is_cancelled() {
            return Err(BackendError::cancelled());
        }
        // From here on the version is live: the deploy completes whoever goes away.
        let conn = self.conn().await?;
        let applied = self
            .update(&lane_id, fresh.as_ref(), |spec| {
                let entry = spec.services.entry(service.to_string()).or_default();
                entry.image = image.clone();
                entry.version = version.version.clone();
                entry.branch = Some(req.source.branch.clone());
                entry.commit = Some(req.source.commit.clone());
                for (k, v) in &data_env {
                    entry.env.insert(k.clone(), v.clone());
                }
                for d in &data {
                    spec.data
                        .retain(|o| !(o.name == d.name && o.kind == d.kind));
                    spec.data.push(d.clone());
                }
                Ok(())
            })
            .await?;
        stage(
            &progress,
            &service,
            Stage::Register,
            format!(
                "applied Lane {}/{lane_id}: {service} {} ({image})",
                conn.namespace, version.version
            ),
        );
        let (deployment, state) = self
            .follow_rollout(
                &service,
                &lane_id,
                &LaneService {
                    image: image.clone(),
                    version: version.version.clone(),
                    ..LaneService::default()
                },
                req.manifest.health_timeout,
                &progress,
                &cancel,
            )
            .await?;
        // Ready is not yet reached: the operator adds the route in its pass after readiness.
        self.follow_route(
            &service,
            &lane_id,
            applied.metadata.generation,
            req.manifest.health_timeout,
            &progress,
            &cancel,
        )
        .await?;
        let pv = applied
            .spec
            .services
            .get(service.as_str())
            .map(|s| personal_version(s, &applied))
            .unwrap_or(version);
        Ok(instance(&service, &lane_id, &deployment, state, Some(pv)))
    }

    async fn baseline_up(
        &self,
        _services: Vec<DeployRequest>,
        _progress: ProgressTx,
        _cancel: Cancel,
    ) -> Result<Vec<InstanceView>> {
        Err(BackendError::invalid(
            "the kubernetes backend does not run baselines: the baseline is what the team's \
             release system deploys (Deployments labelled lane.dev/lane=baseline)",
        ))
    }

    async fn assign(&self, req: AssignRequest) -> Result<()> {
        let from = self.existing_lane(&req.from).await?;
        let to = self.existing_lane(&req.to).await?;
        self.check_owner(&from, req.force).await?;
        self.check_owner(&to, req.force).await?;
        let Some(entry) = from.spec.services.get(req.service.as_str()).cloned() else {
            return Err(BackendError::not_found(format!(
                "lane `{}` has no version of {}",
                req.from, req.service
            )));
        };
        // First into `to`, then out of `from`: if the second step fails the version is in both
        // lanes (and the error says so), never in none.
        self.update(&req.to, None, |spec| {
            spec.services.insert(req.service.to_string(), entry.clone());
            Ok(())
        })
        .await?;
        self.update(&req.from, None, |spec| {
            spec.services.remove(req.service.as_str());
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
        Ok(())
    }

    /// The active lane is client-side ([`crate::active`]): checked to exist as a Lane, then
    /// kept for this cluster and namespace.
    async fn switch(&self, lane: LaneRef) -> Result<()> {
        if let LaneRef::Lane(id) = &lane {
            self.existing_lane(id).await?;
        }
        let conn = self.conn().await?;
        crate::active::set(&conn.server, &conn.namespace, &lane)
    }

    async fn gc(&self) -> Result<GcReport> {
        let (api, conn) = self.lanes_api().await?;
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(conn, &format!("listing Lanes in {}", conn.namespace), e))?;
        let now = now();
        let mut removed = Vec::new();
        for lane in &list.items {
            let Some(id) = lane.metadata.name.as_deref().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if unix(&lane.spec.expires) > now {
                continue;
            }
            match api.delete(lane_name(lane), &DeleteParams::default()).await {
                Ok(_) => {
                    if let Err(e) = self.remove_data(&id, lane).await {
                        tracing::warn!(lane = %id, error = %e, "could not remove the lane's data");
                    }
                    removed.push(id)
                }
                // Someone else's expired lane that the cluster does not let us delete, or one
                // deleted meanwhile: left to them (or to the operator).
                Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => {}
                Err(e) => return Err(api_error(conn, "deleting an expired Lane", e)),
            }
        }
        Ok(GcReport {
            lanes_removed: removed,
            instances_removed: Vec::new(),
        })
    }

    async fn wait_for_change(
        &self,
        since: Option<&Revision>,
        timeout: Duration,
    ) -> Result<Revision> {
        let Some(since) = since else {
            return self.current_revision().await;
        };
        let (api, conn) = self.lanes_api().await?;
        // The API server ends a watch after `timeoutSeconds`; it takes whole seconds.
        let secs = timeout.as_secs().clamp(1, 290) as u32;
        let params = WatchParams::default().timeout(secs);
        let lanes = match api.watch(&params, since.as_str()).await {
            Ok(s) => s,
            // Too old a revision (410 Gone): what is current is the change.
            Err(kube::Error::Api(s)) if s.code == 410 => return self.current_revision().await,
            Err(e) => return Err(api_error(conn, "watching Lanes", e)),
        };
        // Health changes too: the lane and baseline Deployments of the Lanes' namespace, watched
        // from the same revision (one etcd); without them (not allowed, too old) Lanes only.
        let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), &conn.namespace);
        let mut streams = vec![lanes.map(|e| is_change(&e)).boxed()];
        if let Ok(d) = deployments
            .watch(&params.clone().labels(LANE_LABEL), since.as_str())
            .await
        {
            streams.push(d.map(|e| is_change(&e)).boxed());
        }
        // Baseline drift too: the LaneEnvironments of the namespaces `status` reads them from
        // (the Lanes' and their services'), from the same revision; a namespace whose
        // LaneEnvironments cannot be watched (no CRD, not allowed, too old) is left out.
        let namespaces = match api.list(&ListParams::default()).await {
            Ok(list) => Self::namespaces_of(conn, &list.items),
            Err(_) => BTreeSet::from([conn.namespace.clone()]),
        };
        for ns in &namespaces {
            let envs: Api<LaneEnvironment> = Api::namespaced(conn.client.clone(), ns);
            if let Ok(e) = envs.watch(&params, since.as_str()).await {
                streams.push(e.map(|e| is_change(&e)).boxed());
            }
        }
        let mut events = futures::stream::select_all(streams);
        let changed = tokio::time::timeout(timeout, async {
            while let Some(changed) = events.next().await {
                if changed {
                    return true;
                }
            }
            false
        })
        .await;
        match changed {
            Ok(true) => self.current_revision().await,
            _ => Ok(since.clone()),
        }
    }
}

/// A watch event that says something changed (any but a bookmark; an error too: look again).
fn is_change<K>(event: &Result<WatchEvent<K>, kube::Error>) -> bool {
    !matches!(event, Ok(WatchEvent::Bookmark(_)))
}

/// A status from Lanes and Deployments (lane and baseline ones), as of `now`.
pub fn status_of(
    lanes: &[Lane],
    deployments: &[Deployment],
    revision: Revision,
    now: UnixSecs,
) -> Status {
    let parents: BTreeMap<&str, Option<&str>> = lanes
        .iter()
        .map(|l| (lane_name(l), l.spec.parent.as_deref()))
        .collect();
    let mut views = Vec::new();
    for obj in lanes {
        let Some(lane) = core_lane(obj, now) else {
            continue;
        };
        let mut chain = vec![lane.id.clone()];
        let mut cursor = obj.spec.parent.as_deref();
        while let Some(p) = cursor {
            let Ok(id) = p.parse::<LaneId>() else { break };
            if chain.contains(&id) || chain.len() > MAX_CHAIN_DEPTH {
                break;
            }
            chain.push(id);
            cursor = parents.get(p).copied().flatten();
        }
        let mut instances = Vec::new();
        for (sid, entry) in &obj.spec.services {
            let Ok(service) = sid.parse::<ServiceId>() else {
                continue;
            };
            let name = deployment_name(&service, &lane.id);
            let found = deployments.iter().find(|d| {
                d.metadata.namespace.as_deref() == Some(service.app())
                    && d.metadata.name.as_deref() == Some(name.as_str())
            });
            let pv = Some(personal_version(entry, obj));
            instances.push(match found {
                Some(d) => instance(&service, &lane.id, d, deployment_state(d), pv),
                // Applied, not rolled out by the operator yet.
                None => InstanceView {
                    id: InstanceId::new(format!("{}/{name}", service.app())),
                    service: service.clone(),
                    lane: LaneRef::Lane(lane.id.clone()),
                    placement: Placement::Pod {
                        namespace: service.app().to_owned(),
                        name,
                        node: None,
                        ip: None,
                    },
                    state: InstanceState::Starting,
                    restarts: 0,
                    version: pv,
                },
            });
        }
        views.push(LaneView {
            lane,
            chain,
            instances,
            merged: None,
        });
    }
    views.sort_by(|a, b| a.lane.id.cmp(&b.lane.id));
    let mut baseline = Vec::new();
    for d in deployments {
        let labels = d.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(LANE_LABEL)).map(String::as_str) != Some(BASELINE) {
            continue;
        }
        let (Some(ns), Some(name)) = (d.metadata.namespace.as_deref(), d.metadata.name.as_deref())
        else {
            continue;
        };
        let Ok(service) = ServiceId::new(ns, name) else {
            continue;
        };
        baseline.push(InstanceView {
            id: InstanceId::new(format!("{ns}/{name}")),
            service,
            lane: LaneRef::Baseline,
            placement: Placement::Pod {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                node: None,
                ip: None,
            },
            state: deployment_state(d),
            restarts: 0,
            version: None,
        });
    }
    Status {
        backend: "kubernetes".into(),
        router: None,
        lane_header: DEFAULT_LANE_HEADER.into(),
        active_lane: LaneRef::Baseline,
        now,
        lanes: views,
        baseline,
        baseline_sync: Vec::new(),
        traffic: Vec::new(),
        revision,
    }
}

fn instance(
    service: &ServiceId,
    lane: &LaneId,
    d: &Deployment,
    state: InstanceState,
    version: Option<PersonalVersion>,
) -> InstanceView {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    InstanceView {
        id: InstanceId::new(format!("{ns}/{name}")),
        service: service.clone(),
        lane: LaneRef::Lane(lane.clone()),
        placement: Placement::Pod {
            namespace: ns,
            name,
            node: None,
            ip: None,
        },
        state,
        restarts: 0,
        version,
    }
}

/// Ready and wanted replicas of a Deployment.
fn ready_counts(d: &Deployment) -> (i32, i32) {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (ready, want)
}

/// A Deployment's replicas as one instance state: all ready is healthy.
pub fn deployment_state(d: &Deployment) -> InstanceState {
    let (ready, want) = ready_counts(d);
    if want == 0 {
        InstanceState::Stopped
    } else if ready >= want {
        InstanceState::Healthy
    } else {
        InstanceState::Starting
    }
}

fn personal_version(entry: &LaneService, lane: &Lane) -> PersonalVersion {
    PersonalVersion {
        version: entry.version.clone(),
        branch: entry.branch.clone().unwrap_or_default(),
        commit: entry.commit.clone().unwrap_or_default(),
        owner: lane.spec.owner.clone(),
        deployed: created(lane),
        dirty: entry.version.ends_with("+dirty"),
    }
}

fn lane_name(lane: &Lane) -> &str {
    lane.metadata.name.as_deref().unwrap_or_default()
}

fn created(lane: &Lane) -> UnixSecs {
    lane.metadata
        .creation_timestamp
        .as_ref()
        .map(unix)
        .unwrap_or(0)
}

/// The lane document of a Lane object; `None` when its name is no lane id.
/// The lane's data records as the Lane's `spec.data` holds them.
fn core_data(obj: &Lane) -> Vec<lane_core::lane::DataBinding> {
    obj.spec
        .data
        .iter()
        .filter_map(|d| {
            Some(lane_core::lane::DataBinding {
                kind: serde_json::from_value(serde_json::Value::String(d.kind.clone())).ok()?,
                name: d.name.clone(),
                target: d.target.clone(),
            })
        })
        .collect()
}

pub fn core_lane(obj: &Lane, _now: UnixSecs) -> Option<lane_core::Lane> {
    let id: LaneId = lane_name(obj).parse().ok()?;
    let services = obj
        .spec
        .services
        .iter()
        .filter_map(|(s, e)| Some((s.parse::<ServiceId>().ok()?, personal_version(e, obj))))
        .collect();
    Some(lane_core::Lane {
        id,
        parent: obj.spec.parent.as_deref().and_then(|p| p.parse().ok()),
        owner: obj.spec.owner.clone(),
        created: created(obj),
        expires: unix(&obj.spec.expires),
        services,
        data: core_data(obj),
    })
}

fn unix(t: &Time) -> UnixSecs {
    u64::try_from(t.0.as_second()).unwrap_or(0)
}

fn time_at(secs: UnixSecs) -> Result<Time> {
    let secs = i64::try_from(secs).map_err(|_| BackendError::invalid("the TTL is too long"))?;
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(Time)
        .map_err(|e| BackendError::invalid(format!("the TTL is too long: {e}")))
}

fn now() -> UnixSecs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How far a kubernetes deploy is when `stage` starts. Its stages come in another order than the
/// local backend's (the Lane is registered before the operator starts the version, and routed
/// after it is ready), so the percentages are its own and keep rising, as LSP progress wants.
pub fn stage_percent(stage: Stage) -> u8 {
    match stage {
        Stage::Build => 0,
        Stage::Register => 60,
        Stage::Start => 70,
        Stage::Health => 85,
        Stage::Route => 95,
    }
}

fn stage(progress: &ProgressTx, service: &ServiceId, stage: Stage, message: String) {
    let _ = progress.send(Progress::Stage {
        service: service.clone(),
        stage,
        percent: stage_percent(stage),
        message,
    });
}

/// An error and its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The image build's process group, killed when dropped: on success, failure, cancel, timeout,
/// and when the deploy's future is dropped.
struct BuildGroup(Option<u32>);

impl Drop for BuildGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A client error as a backend error: the API server's answer by its code, anything else (no
/// connection, TLS, a timeout) as the server being unavailable.
fn api_error(conn: &Conn, doing: &str, e: kube::Error) -> BackendError {
    match e {
        kube::Error::Api(s) => {
            let message = format!("{doing}: {}", s.message);
            match s.code {
                404 if s.message.contains("could not find the requested resource") => {
                    BackendError::not_found(message).with_help(
                        "is the Lane CRD installed? kubectl apply --server-side -f deploy/crd.yaml",
                    )
                }
                404 => BackendError::not_found(message),
                409 => BackendError::conflict(message).with_help(
                    "another field manager owns these fields with other values; reconcile with \
                     them (kubectl apply --server-side shows the managers) and retry",
                ),
                403 if s.message.contains("ValidatingAdmissionPolicy") => {
                    BackendError::new(ErrorCode::NotOwner, message).with_help(
                        "only the Lane's owner, or a member of the admin group with --force, may \
                         change or delete it",
                    )
                }
                403 => BackendError::new(ErrorCode::NotOwner, message).with_help(
                    "the cluster does not allow it; deploy/rbac.yaml grants developers what lane \
                     needs",
                ),
                401 => BackendError::unavailable(message)
                    .with_help("your Kubernetes credentials were refused; log in again"),
                400 | 422 => BackendError::invalid(message),
                _ => BackendError::internal(message),
            }
        }
        other => BackendError::unavailable(format!(
            "{doing}: cannot reach the Kubernetes API server {}: {}",
            conn.server,
            chain(&other)
        ))
        .with_help(
            "check KUBECONFIG (or [backend] context in lane.toml) and that the cluster is up",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(name: &str, parent: Option<&str>, services: &[(&str, &str)]) -> Lane {
        let mut l = Lane::new(
            name,
            LaneSpec {
                data: Vec::new(),
                owner: "alice".into(),
                parent: parent.map(str::to_owned),
                expires: time_at(2_000_000_000).unwrap(),
                services: services
                    .iter()
                    .map(|(s, v)| {
                        (
                            s.to_string(),
                            LaneService {
                                image: "img".into(),
                                version: v.to_string(),
                                branch: Some("feat".into()),
                                commit: Some("0123abcd".into()),
                                ..LaneService::default()
                            },
                        )
                    })
                    .collect(),
            },
        );
        l.metadata.namespace = Some("shop".into());
        l
    }

    fn deployment(ns: &str, name: &str, lane: &str, want: i32, ready: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "labels": {LANE_LABEL: lane}},
            "spec": {"replicas": want, "selector": {}, "template": {}},
            "status": {"readyReplicas": ready}
        }))
        .unwrap()
    }

    #[test]
    fn status_has_lanes_with_instances_chains_and_the_baseline() {
        let lanes = [
            lane("team", None, &[]),
            lane("feat", Some("team"), &[("shop.cart", "feat@0123abcd")]),
            lane("Not_A_Lane", None, &[]),
        ];
        let deployments = [
            deployment("shop", "cart-lane-feat", "feat", 2, 1),
            deployment("shop", "cart", BASELINE, 1, 1),
        ];
        let s = status_of(&lanes, &deployments, Revision::new("7"), 10);
        assert_eq!(s.backend, "kubernetes");
        assert_eq!(s.revision.as_str(), "7");
        let ids: Vec<&str> = s.lanes.iter().map(|l| l.lane.id.as_str()).collect();
        assert_eq!(ids, ["feat", "team"]);
        let feat = &s.lanes[0];
        assert_eq!(
            feat.chain.iter().map(LaneId::as_str).collect::<Vec<_>>(),
            ["feat", "team"]
        );
        let i = &feat.instances[0];
        assert_eq!(i.service.as_str(), "shop.cart");
        assert_eq!(i.state, InstanceState::Starting);
        assert_eq!(i.placement.endpoint(), "shop/cart-lane-feat");
        assert_eq!(
            i.version.as_ref().map(|v| v.version.as_str()),
            Some("feat@0123abcd")
        );
        assert_eq!(s.baseline.len(), 1);
        assert_eq!(s.baseline[0].service.as_str(), "shop.cart");
        assert_eq!(s.baseline[0].state, InstanceState::Healthy);
    }

    #[test]
    fn rolled_out_needs_the_image_on_every_replica_of_the_current_generation() {
        let d = |generation: i64, image: &str, status: serde_json::Value| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "shop", "name": "cart-lane-feat",
                             "generation": generation},
                "spec": {"replicas": 2, "selector": {}, "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "proxy:1"}, {"name": "cart", "image": image}]}}},
                "status": status
            }))
            .unwrap()
        };
        let done = serde_json::json!({"observedGeneration": 3, "updatedReplicas": 2,
                                      "readyReplicas": 2});
        assert!(rolled_out(&d(3, "cart:2", done.clone()), "cart:2"));
        // The old image still ready; the controller behind the spec; replicas not updated yet.
        assert!(!rolled_out(&d(3, "cart:1", done.clone()), "cart:2"));
        assert!(!rolled_out(&d(4, "cart:2", done), "cart:2"));
        let old_pods = serde_json::json!({"observedGeneration": 3, "updatedReplicas": 1,
                                          "readyReplicas": 2});
        assert!(!rolled_out(&d(3, "cart:2", old_pods), "cart:2"));
        assert!(!rolled_out(
            &d(3, "cart:2", serde_json::json!({})),
            "cart:2"
        ));
    }

    #[test]
    fn the_own_route_needs_the_generation_and_this_lanes_subset() {
        let service: ServiceId = "shop.cart".parse().unwrap();
        let mut l = lane("feat", Some("team"), &[("shop.cart", "feat@0123abcd")]);
        l.metadata.generation = Some(5);
        assert!(own_route(&l, &service, Some(5)).is_none(), "no status");
        assert_eq!(
            describe_conditions(&l, Some(5)),
            "the Lane has no status: no operator has seen it"
        );
        let route = |lane: &str| crate::crd::LaneRoute {
            service: "shop.cart".into(),
            host: "cart.shop.svc.cluster.local".into(),
            lane: lane.into(),
            subset: format!("lane-{lane}"),
        };
        // Still routed to the parent: the lane's own version is not routed yet.
        l.status = Some(crate::crd::LaneStatus {
            routes: vec![route("team")],
            observed_generation: Some(5),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Routed".into(),
                status: "False".into(),
                reason: "WaitingForReady".into(),
                message: "not routed: shop.cart".into(),
                last_transition_time: time_at(1).unwrap(),
                observed_generation: Some(5),
            }],
            ..Default::default()
        });
        assert!(own_route(&l, &service, Some(5)).is_none());
        assert_eq!(
            describe_conditions(&l, Some(5)),
            "Lane conditions: Routed=False (WaitingForReady): not routed: shop.cart"
        );
        // Routed, but as of an older generation (the previous version's route).
        let status = l.status.as_mut().unwrap();
        status.routes = vec![route("feat")];
        status.observed_generation = Some(4);
        assert!(own_route(&l, &service, Some(5)).is_none());
        assert!(
            describe_conditions(&l, Some(5))
                .starts_with("the operator last saw generation 4 of the Lane, not 5; "),
            "{}",
            describe_conditions(&l, Some(5))
        );
        l.status.as_mut().unwrap().observed_generation = Some(6);
        assert_eq!(
            own_route(&l, &service, Some(5)).map(|r| r.subset.as_str()),
            Some("lane-feat")
        );
        let other: ServiceId = "shop.pay".parse().unwrap();
        assert!(own_route(&l, &other, Some(5)).is_none());
    }

    #[test]
    fn deployment_states() {
        assert_eq!(
            deployment_state(&deployment("a", "b", "x", 1, 1)),
            InstanceState::Healthy
        );
        assert_eq!(
            deployment_state(&deployment("a", "b", "x", 2, 1)),
            InstanceState::Starting
        );
        assert_eq!(
            deployment_state(&deployment("a", "b", "x", 0, 0)),
            InstanceState::Stopped
        );
    }

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..Default::default()
        }))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn api_errors_map_to_codes_with_help() {
        let config = Config::new("https://127.0.0.1:1".parse().unwrap());
        let conn = Conn {
            server: "https://127.0.0.1:1/".into(),
            namespace: "default".into(),
            client: Client::try_from(config).unwrap(),
        };
        let e = api_error(
            &conn,
            "applying Lane a/b",
            status(
                409,
                "Apply failed with 1 conflict: conflict with \"release-bot\": .spec.expires",
            ),
        );
        assert_eq!(e.exit_code(), 4);
        assert!(
            e.message.starts_with("applying Lane a/b: Apply failed"),
            "{e}"
        );
        let e = api_error(
            &conn,
            "deleting",
            status(
                403,
                "lanes.lane.dev \"b\" is forbidden: ValidatingAdmissionPolicy 'lane-ownership' \
                 with binding 'lane-ownership' denied request: lane b belongs to bob",
            ),
        );
        assert_eq!(e.code, ErrorCode::NotOwner);
        assert_eq!(e.exit_code(), 5);
        let e = api_error(
            &conn,
            "listing Lanes in x",
            status(404, "the server could not find the requested resource"),
        );
        assert_eq!(e.exit_code(), 3);
        assert!(e.help.unwrap_or_default().contains("deploy/crd.yaml"));
        let e = api_error(&conn, "x", status(401, "Unauthorized"));
        assert_eq!(e.exit_code(), 7);
    }

    /// Against a real API server: a change made between `update`'s read and its apply (here by
    /// the same field manager, as another `lane deploy` would) is kept, not overwritten.
    #[tokio::test(flavor = "current_thread")]
    async fn update_reapplies_onto_a_concurrent_change() {
        let server = lane_tests::apiserver::ApiServer::start();
        let admin = server.kubeconfig("admin");
        let kubectl = |args: &[&str], stdin: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new(lane_tests::apiserver::kubectl())
                .arg("--kubeconfig")
                .arg(&admin)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "kubectl {args:?}: {out:?}");
        };
        let crd = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crd.yaml"
        ))
        .unwrap();
        kubectl(&["apply", "--server-side", "-f", "-"], &crd);
        kubectl(
            &["wait", "--for=condition=Established", "crd/lanes.lane.dev"],
            "",
        );
        let kc = kube::config::Kubeconfig::read_from(&admin).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let backend = KubernetesBackend::new(Settings::default());
        let conn = Conn {
            server: config.cluster_url.to_string(),
            namespace: "default".into(),
            client: Client::try_from(config).unwrap(),
        };
        assert!(backend.conn.set(conn).is_ok());
        let id: LaneId = "team".parse().unwrap();
        let fresh = lane("team", None, &[("a.one", "one@1")]).spec;
        backend.update(&id, Some(&fresh), |_| Ok(())).await.unwrap();

        // The other deploy applies its version right after our read.
        let other = serde_json::json!({
            "apiVersion": "lane.dev/v1alpha1", "kind": "Lane",
            "metadata": {"name": "team", "namespace": "default"},
            "spec": {"owner": "alice", "expires": "2033-05-18T03:33:20Z",
                     "services": {"a.one": {"image": "img", "version": "one@1",
                                            "branch": "feat", "commit": "0123abcd"},
                                  "a.two": {"image": "img2", "version": "two@2"}}}
        })
        .to_string();
        let interfered = std::sync::atomic::AtomicBool::new(false);
        let applied = backend
            .update(&id, None, |spec| {
                if !interfered.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    kubectl(
                        &["apply", "--server-side", "--field-manager=lane", "-f", "-"],
                        &other,
                    );
                }
                spec.services.insert(
                    "a.three".into(),
                    LaneService {
                        image: "img3".into(),
                        version: "three@3".into(),
                        ..LaneService::default()
                    },
                );
                Ok(())
            })
            .await
            .unwrap();
        let services: Vec<&str> = applied.spec.services.keys().map(String::as_str).collect();
        assert_eq!(services, ["a.one", "a.three", "a.two"]);

        // Creating: another deploy creates the same lane right after our read finds none; ours
        // does not overwrite it but applies onto it.
        let id: LaneId = "fresh".parse().unwrap();
        let theirs = other.replace("\"team\"", "\"fresh\"");
        let interfered = std::sync::atomic::AtomicBool::new(false);
        let created = backend
            .update(&id, Some(&fresh), |spec| {
                if !interfered.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    kubectl(
                        &["apply", "--server-side", "--field-manager=lane", "-f", "-"],
                        &theirs,
                    );
                }
                spec.services
                    .insert("a.three".into(), LaneService::default());
                Ok(())
            })
            .await
            .unwrap();
        let services: Vec<&str> = created.spec.services.keys().map(String::as_str).collect();
        assert_eq!(services, ["a.one", "a.three", "a.two"]);

        // A Lane this backend created is the apply manager's alone: a later apply that changes
        // a field is no conflict with the create.
        let id: LaneId = "mine".parse().unwrap();
        let made = backend.update(&id, Some(&fresh), |_| Ok(())).await.unwrap();
        let managers: Vec<(Option<&str>, Option<&str>)> = made
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|m| (m.manager.as_deref(), m.operation.as_deref()))
            .collect();
        assert_eq!(managers, [(Some("lane"), Some("Apply"))]);
        let later = time_at(2_100_000_000).unwrap();
        let extended = backend
            .update(&id, None, |spec| {
                spec.expires = later.clone();
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(extended.spec.expires, later);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_cluster_is_unavailable_and_names_the_server() {
        let dir =
            std::env::temp_dir().join(format!("lane-kube-unreachable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("config");
        // Port 1 on loopback: nothing listens there.
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n",
        )
        .unwrap();
        let options = KubeConfigOptions::default();
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &options).await.unwrap();
        let backend = KubernetesBackend::new(Settings::default());
        let conn = Conn {
            server: config.cluster_url.to_string(),
            namespace: "default".into(),
            client: Client::try_from(config).unwrap(),
        };
        assert!(backend.conn.set(conn).is_ok());
        let err = backend.status().await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
        assert!(err.message.contains("https://127.0.0.1:1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
