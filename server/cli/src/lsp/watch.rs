//! The status pusher. Three sources wake it: the file watcher (git `HEAD`/refs, `lane.toml`), the
//! backend's long-poll ([`Backend::wait_for_change`]) and the daemon itself (after a command, when
//! the folders change, at the next lane expiry). Bursts are debounced; a `lane/statusChanged` is
//! sent only when what the status shows changed. Nothing is polled by the IDE.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lane_api::Backend;
use lane_workspace::WatchPath;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tower_lsp_server::Client;

use super::{ext, to_proto, workspace};

/// How long a burst of changes may last before the status is sent.
const DEBOUNCE: Duration = Duration::from_millis(75);
/// How long one backend long-poll lasts.
const LONG_POLL: Duration = Duration::from_secs(25);

/// Why the pusher should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something may have changed.
    Refresh,
    /// A watched file changed: the workspace's services may have too.
    Files,
    /// The workspace folders changed: watch other files.
    Folders,
}

/// The daemon's handle on the pusher.
/// The last status the pusher computed, and how many wakes it had seen then. `lane/status` is
/// answered from it while no wake came since (every change source wakes the pusher), so the
/// answer costs no git process and no backend round trip.
#[derive(Debug, Default)]
struct Snapshot {
    wakes: u64,
    status: Option<(u64, ext::LaneStatus)>,
}

#[derive(Clone, Debug)]
pub struct Pusher {
    wake_tx: mpsc::UnboundedSender<Wake>,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Pusher {
    pub fn wake(&self, why: Wake) {
        if let Ok(mut s) = self.snapshot.lock() {
            s.wakes += 1;
        }
        let _ = self.wake_tx.send(why);
    }

    fn wakes(&self) -> u64 {
        self.snapshot.lock().map(|s| s.wakes).unwrap_or(0)
    }

    fn store(&self, seen: u64, status: ext::LaneStatus) {
        if let Ok(mut s) = self.snapshot.lock() {
            s.status = Some((seen, status));
        }
    }

    /// The current status, if the snapshot is still current and the backend was reachable
    /// (an unreachable backend is asked again: `lane/status` may start the agent).
    pub fn fresh(&self, now: u64) -> Option<ext::LaneStatus> {
        let s = self.snapshot.lock().ok()?;
        let (seen, status) = s.status.as_ref()?;
        if *seen != s.wakes || status.backend_error.is_some() {
            return None;
        }
        let mut status = status.clone();
        for lane in &mut status.lanes {
            lane.expires_in_secs = lane.expires_at.saturating_sub(now);
        }
        Some(status)
    }
}

/// The failed deploys the status shows (see [`ext::DeployFailure`]), shared by the deploy handler
/// and the pusher.
pub type Failures = Arc<Mutex<Vec<ext::DeployFailure>>>;

/// Computes the status of `folders` from `backend`.
pub async fn status(
    backend: &dyn Backend,
    folders: &[PathBuf],
    failures: &Failures,
) -> ext::LaneStatus {
    let workspaces = workspace::read(folders.to_vec()).await.infos;
    status_with(backend, workspaces, failures).await
}

/// The status: the backend's, with the service directories' `workspaces` and the failed deploys.
async fn status_with(
    backend: &dyn Backend,
    workspaces: Vec<ext::WorkspaceInfo>,
    failures: &Failures,
) -> ext::LaneStatus {
    let mut st = match backend.status().await {
        Ok(st) => to_proto::status(&st, workspaces),
        Err(e) => to_proto::status_unavailable(backend.name(), &e, workspaces),
    };
    st.deploy_failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    st
}

/// Starts the pusher. `backend` should not start an agent on its own (a `lane down` must stay
/// down until the developer asks for something).
pub fn start(
    client: Client,
    backend: Arc<dyn Backend>,
    folders: Arc<Mutex<Vec<PathBuf>>>,
    failures: Failures,
) -> Pusher {
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<Wake>();
    let pusher = Pusher {
        wake_tx,
        snapshot: Arc::default(),
    };

    // The backend's long-poll: wakes the pusher whenever the backend's revision moves.
    let long_poll = {
        let backend = backend.clone();
        let pusher = pusher.clone();
        tokio::spawn(async move {
            let mut revision: Option<lane_api::Revision> = None;
            let mut backoff = Duration::from_millis(500);
            loop {
                match backend.wait_for_change(revision.as_ref(), LONG_POLL).await {
                    Ok(r) => {
                        backoff = Duration::from_millis(500);
                        if revision.as_ref() != Some(&r) {
                            revision = Some(r);
                            pusher.wake(Wake::Refresh);
                        }
                    }
                    Err(e) => {
                        tracing::debug!("backend long-poll: {e}");
                        if revision.take().is_some() {
                            // It was up and is gone: show that.
                            pusher.wake(Wake::Refresh);
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        })
    };

    let fs_pusher = pusher.clone();
    tokio::spawn(async move {
        let _long_poll = AbortOnDrop(long_poll);
        // Kept alive for as long as the pusher runs.
        let mut _watcher: Option<RecommendedWatcher> = None;
        let mut last: Option<ext::LaneStatus> = None;
        let mut rewatch = true;
        // What `lane.toml` and git say of the folders, read again only when watched files or
        // the folders changed (a `git rev-parse` per folder and a monorepo's `ls-files`), not on
        // every backend change; and the paths the watcher watches.
        let mut state_now: Option<workspace::State> = None;
        let mut watched: Vec<WatchPath> = Vec::new();
        let mut next_expiry: Option<tokio::time::Instant> = None;
        loop {
            let first = tokio::select! {
                w = wake_rx.recv() => match w {
                    Some(w) => w,
                    None => return,
                },
                () = sleep_until(next_expiry) => Wake::Refresh,
            };
            let mut files = first != Wake::Refresh;
            rewatch |= first == Wake::Folders;
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(w) = wake_rx.try_recv() {
                files |= w != Wake::Refresh;
                rewatch |= w == Wake::Folders;
            }
            let seen = fs_pusher.wakes();
            let folders_now = folders.lock().map(|f| f.clone()).unwrap_or_default();
            // Without a watcher nothing says files changed: read them on every wake.
            if files || _watcher.is_none() {
                state_now = None;
            }
            let state = match state_now.take() {
                Some(s) => s,
                None => workspace::read(folders_now).await,
            };
            if rewatch || watched != state.watch {
                rewatch = false;
                watched = state.watch.clone();
                _watcher = watch(&watched, fs_pusher.clone());
            }
            let workspaces = state.infos.clone();
            state_now = Some(state);
            let st = status_with(backend.as_ref(), workspaces, &failures).await;
            fs_pusher.store(seen, st.clone());
            next_expiry = st
                .lanes
                .iter()
                .map(|l| l.expires_in_secs)
                .min()
                .map(|s| tokio::time::Instant::now() + Duration::from_secs(s + 1));
            if last.as_ref().is_some_and(|l| to_proto::same_shown(l, &st)) {
                continue;
            }
            tracing::debug!(revision = %st.revision, "status changed");
            client
                .send_notification::<ext::StatusChanged>(st.clone())
                .await;
            last = Some(st);
        }
    });
    pusher
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches `paths` (the folders' `lane.toml` and git state); relevant changes wake the pusher.
fn watch(paths: &[WatchPath], pusher: Pusher) -> Option<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| lane_workspace::is_relevant(p)) {
            pusher.wake(Wake::Files);
        }
    })
    .map_err(|e| tracing::warn!("cannot watch files ({e}); branch changes show on the next event"))
    .ok()?;
    for p in paths {
        let mode = if p.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(&p.path, mode) {
            tracing::warn!("cannot watch {}: {e}", p.path.display());
        }
    }
    Some(watcher)
}
