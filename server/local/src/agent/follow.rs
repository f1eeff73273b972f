//! Baseline follows production. A baseline service whose `lane-workspace.toml` entry says
//! `follow = "<ref or tag pattern>"` runs exactly the commit that ref names, from a working copy
//! of that commit ([`crate::source::checkout`]), never from the checkout's working tree. The agent
//! records it in `State::follows` and watches the repository's refs (`refs/` and `packed-refs` of
//! its common git dir); when the ref moves, or on `lane baseline sync` (which fetches first), it
//! rolls baseline forward with an ordinary deploy into baseline: the new version is built,
//! started and health-checked, the route switches, and the old version is drained and stopped
//! (`LANE_DRAIN`). A roll-forward that fails to build or start leaves the old version serving and
//! records the drift (`build_failed`) with the error, whose message carries the build's or the
//! log's last lines; that commit is not tried again on its own, only by `lane baseline sync` or
//! once the ref moves on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lane_api::{
    BackendError, BaselineSync, Cancel, DeployRequest, Drift, ErrorCode, InstanceState,
    InstanceView, Progress, Result,
};
use lane_core::follow::Follow;
use lane_core::{LaneRef, ServiceId};
use lane_workspace::follow::{self as git_follow, Resolved};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{Agent, now_secs, wait_true};
use crate::store::{FollowRecord, State};

/// How long a burst of ref changes (a fetch writes several files) may last before the agent
/// looks.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// How `sync` treats a commit whose roll-forward failed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The ref watch: fetch nothing, and leave a commit that failed alone.
    Watch,
    /// `lane baseline sync`: fetch, and try a failed commit again.
    Asked,
}

/// Runs blocking git work off the async threads, as a backend error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> lane_workspace::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| {
            let help = e.help();
            let err = BackendError::invalid(e.to_string());
            match help {
                Some(h) => err.with_help(h),
                None => err,
            }
        }),
        Err(e) => Err(BackendError::internal(format!("a git task failed: {e}"))),
    }
}

fn parse(value: &str) -> Result<Follow> {
    Follow::parse(value).map_err(|why| {
        BackendError::invalid(format!("follow: {why}"))
            .with_help("fix `follow` in lane-workspace.toml (see the README's settings)")
    })
}

/// Where each followed baseline service stands, for `Status::baseline_sync`: what production is
/// at, what baseline runs (its live instance's commit) and the drift. A service recorded as in
/// sync whose instance is not healthy is `unhealthy`; one whose instance runs another commit
/// than production is `behind`.
pub(crate) fn view(st: &State) -> Vec<BaselineSync> {
    st.follows
        .iter()
        .map(|(service, rec)| {
            let live = st
                .instances_of(service, &LaneRef::Baseline)
                .find(|r| r.pending.is_none());
            let running = live
                .and_then(|r| r.version.as_ref())
                .map(|v| v.commit.clone());
            let (mut drift, mut reason) = (rec.drift, rec.reason.clone());
            if drift == Drift::InSync {
                match live {
                    None => {
                        drift = Drift::Behind;
                        reason = Some("baseline runs no instance of it".into());
                    }
                    Some(_) if running != rec.production => {
                        drift = Drift::Behind;
                        reason = Some("production moved; rolling forward".into());
                    }
                    Some(r) if r.state != InstanceState::Healthy => {
                        drift = Drift::Unhealthy;
                        reason = Some(format!(
                            "baseline runs production's commit but it is {}",
                            r.state.as_str()
                        ));
                    }
                    Some(_) => {}
                }
            }
            BaselineSync {
                service: service.clone(),
                follows: match &rec.production_name {
                    Some(name) if *name != rec.follows => format!("{} ({name})", rec.follows),
                    _ => rec.follows.clone(),
                },
                production: rec.production.clone(),
                running,
                drift,
                reason,
                last_sync: rec.last_sync,
            }
        })
        .collect()
}

impl Agent {
    /// `baseline up` of a service that follows production: records it, resolves its ref and
    /// deploys that commit into baseline.
    pub(super) async fn deploy_following(
        self: &Arc<Self>,
        req: DeployRequest,
        progress: mpsc::Sender<Progress>,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let value = req.source.follow.clone().unwrap_or_default();
        let follow = parse(&value)?;
        let _turn = self.follow_turn.lock().await;
        let service = req.manifest.service.clone();
        {
            let mut st = self.state.lock().await;
            let before = st.clone();
            let old = st.follows.remove(&service);
            st.follows.insert(
                service.clone(),
                FollowRecord {
                    follows: follow.as_written(),
                    request: req.clone(),
                    production: None,
                    production_name: None,
                    running: None,
                    drift: Drift::Behind,
                    reason: Some("being deployed".into()),
                    last_sync: old.and_then(|o| o.last_sync),
                    failed: None,
                },
            );
            self.record(&mut st, before)?;
        }
        let dir = req.source.dir.clone();
        let resolved = {
            let follow = follow.clone();
            blocking(move || git_follow::resolve(&dir, &follow)).await
        };
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => {
                self.set_drift(&service, None, Drift::Unknown, Some(e.message.clone()))
                    .await;
                return Err(e);
            }
        };
        self.roll(&service, &resolved, progress, cancel).await
    }

    /// A service `baseline up` now runs as it is: it follows nothing any more.
    pub(super) async fn stop_following(&self, service: &ServiceId) -> Result<()> {
        // After a roll-forward under way: it must not replace what `baseline up` deploys next.
        let _turn = self.follow_turn.lock().await;
        let mut st = self.state.lock().await;
        if st.follows.contains_key(service) {
            let before = st.clone();
            st.follows.remove(service);
            self.record(&mut st, before)?;
        }
        Ok(())
    }

    /// Deploys `resolved`'s commit into baseline for `service` and records the outcome.
    async fn roll(
        self: &Arc<Self>,
        service: &ServiceId,
        resolved: &Resolved,
        progress: mpsc::Sender<Progress>,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let mut req = {
            let st = self.state.lock().await;
            match st.follows.get(service) {
                Some(rec) => rec.request.clone(),
                None => {
                    return Err(BackendError::conflict(format!(
                        "{service} stopped following production meanwhile"
                    )));
                }
            }
        };
        req.source.commit = resolved.commit.clone();
        req.source.branch = resolved.name.clone();
        // The commit's own lane.toml: a new version may build or run differently.
        let manifest = {
            let (d, c) = (req.source.dir.clone(), resolved.commit.clone());
            blocking(move || git_follow::manifest_at(&d, &c)).await
        };
        {
            let mut st = self.state.lock().await;
            if let Some(rec) = st.follows.get_mut(service) {
                let before_drift = (rec.production.clone(), rec.drift, rec.reason.clone());
                rec.production = Some(resolved.commit.clone());
                rec.production_name = Some(resolved.name.clone());
                rec.drift = Drift::Behind;
                rec.reason = Some(format!("rolling forward to {}", short(&resolved.commit)));
                if before_drift != (rec.production.clone(), rec.drift, rec.reason.clone())
                    && let Err(e) = self.commit(&mut st)
                {
                    tracing::error!("cannot save state: {e}");
                }
            }
        }
        tracing::info!(%service, commit = %resolved.commit, name = %resolved.name, "rolling baseline forward");
        let outcome = match manifest {
            Ok(m) if m.service == *service => {
                req.manifest = m;
                self.deploy(req, progress, cancel).await
            }
            Ok(m) => Err(BackendError::new(
                ErrorCode::BuildFailed,
                format!(
                    "lane.toml at this commit is of service {}, not {service}",
                    m.service
                ),
            )),
            Err(e) => Err(BackendError::new(ErrorCode::BuildFailed, e.message)),
        };
        let mut st = self.state.lock().await;
        if let Some(rec) = st.follows.get_mut(service) {
            match &outcome {
                Ok(_) => {
                    rec.running = Some(resolved.commit.clone());
                    rec.drift = Drift::InSync;
                    rec.reason = None;
                    rec.failed = None;
                    rec.last_sync = Some(now_secs());
                }
                Err(e) if e.code == ErrorCode::Cancelled => {
                    rec.drift = Drift::Behind;
                    rec.reason = Some("the roll-forward was cancelled".into());
                }
                Err(e) => {
                    rec.drift = Drift::BuildFailed;
                    rec.reason = Some(format!(
                        "{} at {}: {}",
                        resolved.name,
                        short(&resolved.commit),
                        e.message
                    ));
                    rec.failed = Some(resolved.commit.clone());
                }
            }
            if let Err(e) = self.commit(&mut st) {
                tracing::error!("cannot save state: {e}");
            }
        }
        outcome
    }

    async fn set_drift(
        &self,
        service: &ServiceId,
        production: Option<&Resolved>,
        drift: Drift,
        reason: Option<String>,
    ) {
        let mut st = self.state.lock().await;
        let Some(rec) = st.follows.get_mut(service) else {
            return;
        };
        let mut changed = rec.drift != drift || rec.reason != reason;
        if let Some(p) = production {
            changed |= rec.production.as_deref() != Some(&p.commit);
            rec.production = Some(p.commit.clone());
            rec.production_name = Some(p.name.clone());
        }
        rec.drift = drift;
        rec.reason = reason;
        if drift == Drift::InSync {
            rec.last_sync = Some(now_secs());
        }
        if changed && let Err(e) = self.commit(&mut st) {
            tracing::error!("cannot save state: {e}");
        }
    }

    /// Checks every followed service now and rolls forward the ones behind (one at a time):
    /// `lane baseline sync` ([`Trigger::Asked`], which fetches first) and the ref watch.
    /// Answers where each stands afterwards.
    pub(crate) async fn sync_followed(
        self: &Arc<Self>,
        trigger: Trigger,
        progress: mpsc::Sender<Progress>,
        cancel: Cancel,
    ) -> Result<Vec<BaselineSync>> {
        let _op = self.op_started();
        let _turn = self.follow_turn.lock().await;
        let records: Vec<(ServiceId, FollowRecord)> = {
            let st = self.state.lock().await;
            st.follows
                .iter()
                .map(|(s, r)| (s.clone(), r.clone()))
                .collect()
        };
        for (service, rec) in records {
            if self.is_stop_requested(&progress, &cancel) {
                return Err(BackendError::cancelled());
            }
            let follow = match parse(&rec.follows) {
                Ok(f) => f,
                Err(e) => {
                    self.set_drift(&service, None, Drift::Unknown, Some(e.message))
                        .await;
                    continue;
                }
            };
            let dir = rec.request.source.dir.clone();
            let mut fetch_failed = None;
            if trigger == Trigger::Asked {
                let _ = progress
                    .send(super::stage(
                        &service,
                        lane_api::Stage::Build,
                        format!("fetching {}", rec.follows),
                    ))
                    .await;
                let (d, f) = (dir.clone(), follow.clone());
                match blocking(move || git_follow::fetch(&d, &f)).await {
                    Ok(remotes) => tracing::info!(%service, ?remotes, "fetched"),
                    Err(e) => fetch_failed = Some(e.message),
                }
            }
            let resolved = {
                let (d, f) = (dir.clone(), follow.clone());
                blocking(move || git_follow::resolve(&d, &f)).await
            };
            let resolved = match resolved {
                Ok(r) => r,
                Err(e) => {
                    let why = match fetch_failed {
                        Some(f) => format!("{}; and the fetch failed: {f}", e.message),
                        None => e.message,
                    };
                    self.set_drift(&service, None, Drift::Unknown, Some(why))
                        .await;
                    continue;
                }
            };
            let (running, live) = {
                let st = self.state.lock().await;
                let live = st
                    .instances_of(&service, &LaneRef::Baseline)
                    .find(|r| r.pending.is_none());
                (
                    live.and_then(|r| r.version.as_ref())
                        .map(|v| v.commit.clone()),
                    live.is_some(),
                )
            };
            if live && running.as_deref() == Some(&resolved.commit) {
                let (drift, reason) = match fetch_failed {
                    Some(f) => (
                        Drift::Unknown,
                        Some(format!(
                            "cannot fetch: {f} (baseline runs {} as last fetched)",
                            resolved.name
                        )),
                    ),
                    None => (Drift::InSync, None),
                };
                self.set_drift(&service, Some(&resolved), drift, reason)
                    .await;
                continue;
            }
            if trigger == Trigger::Watch && rec.failed.as_deref() == Some(&resolved.commit) {
                // Tried and failed: stays failed until asked or until the ref moves on.
                continue;
            }
            let _ = progress
                .send(super::stage(
                    &service,
                    lane_api::Stage::Build,
                    format!(
                        "{} is at {} ({}); baseline runs {}: rolling forward",
                        rec.follows,
                        short(&resolved.commit),
                        resolved.name,
                        running.as_deref().map_or("nothing", short)
                    ),
                ))
                .await;
            // A failed roll-forward is recorded as drift, not returned: the others still sync.
            if let Err(e) = self
                .roll(&service, &resolved, progress.clone(), cancel.clone())
                .await
            {
                tracing::warn!(%service, "baseline roll-forward failed: {e}");
                if e.code == ErrorCode::Cancelled {
                    return Err(e);
                }
            }
        }
        Ok(view(&*self.state.lock().await))
    }

    /// Watches the refs of every followed service's repository and syncs (without fetching)
    /// when one changes. The watched set follows `State::follows`.
    pub(super) async fn follow_watch_loop(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut changes = self.changes_tx.subscribe();
        let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
        let mut watcher: Option<RecommendedWatcher> = None;
        // A first look at start: the ref may have moved while no agent ran.
        let _ = tx.send(());
        loop {
            let repos = self.followed_repos().await;
            if repos != watched {
                watched = repos;
                watcher = watch_refs(&watched, tx.clone()).await;
            }
            let _keep = &watcher;
            tokio::select! {
                _ = wait_true(shutdown.clone()) => return,
                _ = changes.changed() => continue,
                got = rx.recv() => if got.is_none() { return },
            }
            // A burst of events (a fetch writes several refs) is one look.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            if watched.is_empty() || *shutdown.borrow() {
                continue;
            }
            let (ptx, mut prx) = mpsc::channel::<Progress>(64);
            // Keeps the progress channel open (a closed one cancels a deploy) and logs it.
            let drain = tokio::spawn(async move {
                while let Some(p) = prx.recv().await {
                    if let Progress::Stage {
                        service, message, ..
                    } = p
                    {
                        tracing::info!(%service, "baseline follow: {message}");
                    }
                }
            });
            if let Err(e) = self
                .clone()
                .sync_followed(Trigger::Watch, ptx, Cancel::new())
                .await
            {
                tracing::warn!("baseline follow: {e}");
            }
            let _ = drain.await;
        }
    }

    /// The repositories (service directories) of the followed services.
    async fn followed_repos(&self) -> BTreeSet<PathBuf> {
        let st = self.state.lock().await;
        st.follows
            .values()
            .map(|r| r.request.source.dir.clone())
            .collect()
    }
}

/// A watcher on the refs of `repos`; a change that can move a ref sends on `tx`.
async fn watch_refs(
    repos: &BTreeSet<PathBuf>,
    tx: mpsc::UnboundedSender<()>,
) -> Option<RecommendedWatcher> {
    if repos.is_empty() {
        return None;
    }
    let mut dirs = Vec::new();
    for repo in repos {
        let r = repo.clone();
        match blocking(move || git_follow::ref_watch_dirs(&r)).await {
            Ok(d) => dirs.push(d),
            Err(e) => tracing::warn!(repo = %repo.display(), "cannot watch its refs: {e}"),
        }
    }
    let commons: Vec<PathBuf> = dirs.iter().map(|(c, _)| c.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let moves_a_ref = event
            .paths
            .iter()
            .any(|p| commons.iter().any(|c| git_follow::is_ref_change(c, p)));
        if moves_a_ref {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!("cannot watch refs ({e}); `lane baseline sync` still works"))
    .ok()?;
    for (common, refs) in &dirs {
        for (path, mode) in [
            (common.as_path(), RecursiveMode::NonRecursive),
            (refs.as_path(), RecursiveMode::Recursive),
        ] {
            if let Err(e) = watcher.watch(Path::new(path), mode) {
                tracing::warn!("cannot watch {}: {e}", path.display());
            }
        }
    }
    Some(watcher)
}

/// A commit id as people read it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use lane_api::{BuildFrom, SourceRef};
    use lane_core::PersonalVersion;
    use lane_core::manifest::Manifest;

    use super::*;
    use crate::store::{InstanceRecord, RunSpec};

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";

    fn state(running: Option<(&str, InstanceState)>, drift: Drift) -> State {
        let manifest = Manifest::parse(
            std::path::Path::new("lane.toml"),
            "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"true\"\n",
        )
        .unwrap();
        let service = manifest.service.clone();
        let mut st = State::default();
        st.follows.insert(
            service.clone(),
            FollowRecord {
                follows: "refs/tags/v*".into(),
                request: DeployRequest {
                    lane: LaneRef::Baseline,
                    manifest,
                    source: SourceRef {
                        dir: PathBuf::from("/src/b"),
                        branch: "main".into(),
                        commit: OLD.into(),
                        build_from: BuildFrom::InPlace,
                        follow: Some("refs/tags/v*".into()),
                    },
                    owner: "me".into(),
                    ttl_secs: None,
                    parent: None,
                    force: true,
                },
                production: Some(NEW.into()),
                production_name: Some("v1.10.0".into()),
                running: Some(NEW.into()),
                drift,
                reason: None,
                last_sync: Some(5),
                failed: None,
            },
        );
        if let Some((commit, state)) = running {
            st.instances.insert(
                "baseline/demo.b#1".into(),
                InstanceRecord {
                    id: "baseline/demo.b#1".into(),
                    service,
                    lane: LaneRef::Baseline,
                    port: 41000,
                    spec: RunSpec {
                        command: "true".into(),
                        cwd: PathBuf::from("/tmp"),
                        env: Default::default(),
                        health: lane_core::manifest::HealthCheck::Tcp,
                        health_timeout_ms: 1000,
                    },
                    state,
                    pid: Some(1),
                    restarts: 0,
                    version: Some(PersonalVersion::new("v1.10.0", commit, "me", 1)),
                    pending: None,
                    source: None,
                    protocol: Default::default(),
                    repo: None,
                    had_work: false,
                },
            );
        }
        st
    }

    #[test]
    fn drift_is_read_from_the_record_and_the_live_instance() {
        let v = view(&state(Some((NEW, InstanceState::Healthy)), Drift::InSync));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].drift, Drift::InSync);
        assert_eq!(v[0].running.as_deref(), Some(NEW));
        assert_eq!(v[0].follows, "refs/tags/v* (v1.10.0)");
        assert_eq!(v[0].last_sync, Some(5));

        let v = view(&state(Some((NEW, InstanceState::Unhealthy)), Drift::InSync));
        assert_eq!(v[0].drift, Drift::Unhealthy);
        assert!(
            v[0].reason.as_deref().unwrap().contains("unhealthy"),
            "{v:?}"
        );

        let v = view(&state(Some((OLD, InstanceState::Healthy)), Drift::InSync));
        assert_eq!(v[0].drift, Drift::Behind);
        assert_eq!(v[0].running.as_deref(), Some(OLD));

        let v = view(&state(None, Drift::InSync));
        assert_eq!((v[0].drift, v[0].running.as_deref()), (Drift::Behind, None));

        // A failed roll-forward stays so, whatever the old version's health.
        let v = view(&state(
            Some((OLD, InstanceState::Healthy)),
            Drift::BuildFailed,
        ));
        assert_eq!(v[0].drift, Drift::BuildFailed);
    }
}
