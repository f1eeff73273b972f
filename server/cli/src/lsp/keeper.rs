//! The agent keeper: while the IDE runs `lane lsp`, a local agent that dies (SIGKILL, a crash)
//! is started again at once, and the IDE is told (`lane/agentRestarted`, shown in the status bar).
//!
//! It holds a long-poll on the agent's socket, which ends the moment the agent goes. The agent is
//! started again only when it died without stopping cleanly (its `agent.json` left behind: a
//! `lane down` or an idle exit removes it, and stays stopped) and the state says it has something
//! to run (a lane, an instance of a lane or of baseline). The new agent adopts the instances that
//! still run and are healthy. If it keeps dying, restarts back off (1 s, doubling, at most 30 s).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lane_api::Backend;
use lane_local::{LocalBackend, StateDir};
use tower_lsp_server::Client;

use super::ext;
use super::watch::{Pusher, Wake};

/// How long one long-poll lasts while the agent is up.
const LONG_POLL: Duration = Duration::from_secs(25);
/// How often it looks again while no agent runs.
const IDLE_LOOK: Duration = Duration::from_millis(250);
/// How often it looks again while the agent's process still lives without answering: a killed
/// process is torn down over a few milliseconds (its socket closes first), a stopping one takes
/// seconds.
const ALIVE_LOOK: Duration = Duration::from_millis(10);
/// A restart within this long of the previous one counts as "keeps dying".
const FLAPPING: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the keeper decides when the agent's socket does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its process still lives (stopping after `lane down`, or not answering yet): look again.
    Alive,
    /// It stopped cleanly, or never ran: leave it (the next command starts it).
    Stopped,
    /// It died without cleaning up, but runs nothing: the next command starts it.
    DiedIdle,
    /// It died without cleaning up and has lanes or instances: start it again now.
    Died,
}

/// Reads what the state dir says of an agent that does not answer. Blocking (file reads).
pub fn diagnose(dir: &StateDir) -> Gone {
    let Ok(info) = std::fs::read(dir.agent_info()) else {
        return Gone::Stopped;
    };
    if let Ok(info) = serde_json::from_slice::<lane_local::AgentInfo>(&info)
        && lane_local::supervisor::pid_alive(info.pid)
    {
        return Gone::Alive;
    }
    let state = dir.lock().and_then(|_l| dir.load());
    match state {
        Ok(st) if st.lanes.is_empty() && st.instances.is_empty() && st.plans.is_empty() => {
            Gone::DiedIdle
        }
        // A state that cannot be read is the new agent's to report.
        _ => Gone::Died,
    }
}

/// The backoff before the next restart, given when the last one was.
pub fn backoff(last_restart: Option<Instant>, previous: Duration, now: Instant) -> Duration {
    match last_restart {
        Some(at) if now.duration_since(at) < FLAPPING => {
            (previous * 2).clamp(Duration::from_secs(1), MAX_BACKOFF)
        }
        _ => Duration::ZERO,
    }
}

/// Starts the keeper for the agent of `dir` (started from `exe`).
pub fn start(client: Client, pusher: Pusher, dir: StateDir, exe: PathBuf) {
    tokio::spawn(async move {
        let quiet = LocalBackend::new(dir.clone(), exe.clone()).without_autostart();
        let starter = LocalBackend::new(dir.clone(), exe);
        let mut revision: Option<lane_api::Revision> = None;
        let mut last_restart: Option<Instant> = None;
        let mut delay = Duration::ZERO;
        let mut restarts: u32 = 0;
        // Since when the agent has not answered, and how many looks found its socket still
        // accepting (a killed agent's may, for a moment; one of another version always does).
        let mut gone_since: Option<Instant> = None;
        let mut accepting = 0u32;
        loop {
            match quiet.wait_for_change(revision.as_ref(), LONG_POLL).await {
                Ok(r) => {
                    revision = Some(r);
                    gone_since = None;
                    accepting = 0;
                    continue;
                }
                Err(e) => tracing::debug!("agent keeper: {e}"),
            }
            revision = None;
            let seen_gone = *gone_since.get_or_insert_with(Instant::now);
            if quiet.is_running().await {
                accepting += 1;
                let look = if accepting < 50 {
                    ALIVE_LOOK
                } else {
                    IDLE_LOOK
                };
                tokio::time::sleep(look).await;
                continue;
            }
            accepting = 0;
            let d = dir.clone();
            let gone = tokio::task::spawn_blocking(move || diagnose(&d))
                .await
                .unwrap_or(Gone::Stopped);
            match gone {
                Gone::Died => {}
                Gone::Alive => {
                    tokio::time::sleep(ALIVE_LOOK).await;
                    continue;
                }
                Gone::Stopped | Gone::DiedIdle => {
                    gone_since = None;
                    tokio::time::sleep(IDLE_LOOK).await;
                    continue;
                }
            }
            delay = backoff(last_restart, delay, Instant::now());
            if !delay.is_zero() {
                tracing::warn!(
                    "the lane agent keeps dying; starting it again in {}s",
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
            }
            last_restart = Some(Instant::now());
            restarts += 1;
            let outcome = starter.status().await;
            let down_ms = seen_gone.elapsed().as_millis() as u64;
            gone_since = None;
            let info = restarted(&outcome.map(|_| ()), down_ms, restarts);
            match &info.error {
                None => tracing::warn!("{}", info.message),
                Some(e) => tracing::error!("{}: {e}", info.message),
            }
            client.send_notification::<ext::AgentRestarted>(info).await;
            pusher.wake(Wake::Refresh);
        }
    });
}

/// The notification for a restart that gave `outcome`.
pub fn restarted(
    outcome: &lane_api::Result<()>,
    down_ms: u64,
    restarts: u32,
) -> ext::AgentRestartInfo {
    match outcome {
        Ok(()) => ext::AgentRestartInfo {
            message: format!("lane agent restarted (was killed or crashed; back in {down_ms} ms)"),
            reason: "died".into(),
            down_ms,
            restarts,
            error: None,
        },
        Err(e) => ext::AgentRestartInfo {
            message: "lane agent died and could not be started again".into(),
            reason: "died".into(),
            down_ms,
            restarts,
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_only_while_the_agent_keeps_dying() {
        let now = Instant::now();
        assert_eq!(backoff(None, Duration::ZERO, now), Duration::ZERO);
        let just = now - Duration::from_secs(2);
        assert_eq!(
            backoff(Some(just), Duration::ZERO, now),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff(Some(just), Duration::from_secs(4), now),
            Duration::from_secs(8)
        );
        assert_eq!(
            backoff(Some(just), Duration::from_secs(20), now),
            MAX_BACKOFF
        );
        let long_ago = now - Duration::from_secs(60);
        assert_eq!(
            backoff(Some(long_ago), Duration::from_secs(20), now),
            Duration::ZERO
        );
    }

    #[test]
    fn only_an_agent_that_died_with_work_to_do_is_started_again() {
        let root = std::env::temp_dir().join(format!("lane-keeper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = StateDir::new(root.clone());
        dir.create().unwrap();
        assert_eq!(diagnose(&dir), Gone::Stopped, "never ran");
        // The pid of a process that has ended.
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let pid = ended.id();
        ended.wait().unwrap();
        let info =
            format!(r#"{{"pid":{pid},"router":"127.0.0.1:1","lane_header":"x-lane","started":0}}"#);
        std::fs::write(dir.agent_info(), &info).unwrap();
        let me = info.replace(&format!(":{pid},"), &format!(":{},", std::process::id()));
        std::fs::write(dir.agent_info(), &me).unwrap();
        assert_eq!(diagnose(&dir), Gone::Alive, "its process lives");
        std::fs::write(dir.agent_info(), &info).unwrap();
        assert_eq!(diagnose(&dir), Gone::DiedIdle, "died with nothing to run");
        let mut st = dir.load().unwrap();
        let lane: lane_core::LaneId = "feature-x".parse().unwrap();
        st.lanes.insert(
            lane.clone(),
            lane_core::Lane::new(lane, None, "alice", 0, Duration::from_secs(60)),
        );
        dir.save(&st).unwrap();
        assert_eq!(diagnose(&dir), Gone::Died);
        std::fs::remove_file(dir.agent_info()).unwrap();
        assert_eq!(diagnose(&dir), Gone::Stopped, "stopped cleanly");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_notification_says_what_happened() {
        let ok = restarted(&Ok(()), 120, 1);
        assert_eq!(
            ok.message,
            "lane agent restarted (was killed or crashed; back in 120 ms)"
        );
        assert!(ok.error.is_none());
        let failed = restarted(
            &Err(lane_api::BackendError::unavailable("port taken")),
            900,
            3,
        );
        assert!(failed.error.unwrap().contains("port taken"));
        assert_eq!(failed.restarts, 3);
    }
}
