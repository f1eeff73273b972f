//! Lanes end with their branch: the agent's merge check.
//!
//! Every `LANE_MERGE_CHECK_INTERVAL` (default 30 s; `0` turns it off), and at once when a branch
//! moves in a repository a lane's version comes from (the agent stats the refs' directories and
//! `packed-refs` every half second: no git runs for that), the agent asks git, off its
//! async threads and through lane-workspace's one runner ([`lane_workspace::merged`]), whether the
//! branch of every version in every lane is merged into what baseline follows
//! ([`merge_target`]). A lane is **merged** when it has at least one version and every version's
//! branch is merged (or deleted with its commit reachable from the target), and each of those
//! branches was seen by the agent with work of its own before (a branch just made from the
//! target, with nothing committed on it, is not "merged"). A merged lane is marked (`merged` in
//! `lane ls`, `lane status`, `--json` and the IDE) and reclaimed `LANE_MERGED_GRACE` (default
//! 1 h) later, through the same removal as an expired lane (processes, routes, data), with a
//! `reclaim` entry in its history naming each branch and the target.
//!
//! The mark goes when the lane is no longer merged (new work deployed into it, a branch that
//! moved on). A deploy or an assign into a marked lane removes the mark at once (the next check
//! decides again), so a fresh version is never reclaimed by an old mark. `lane extend` on a
//! marked lane **keeps** it: the mark stays (the lane still shows `merged`) but has no reclaim
//! time; the lane then lives until its TTL, as extended. A lane with unmerged work, or a version
//! whose repository cannot be read, is never reclaimed this way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lane_api::{LaneEvent, Merged, Result};
use lane_core::LaneId;
use lane_workspace::merged::{self as git_merged, Verdict};

use super::{Agent, now_secs};
use crate::store::{PlanKind, State};

/// What baseline follows, for the branches of the repository at `repo`: when the service's
/// baseline follows production (`follow = "<ref>"` in `lane-workspace.toml`, recorded by
/// `baseline up`), what that ref (or the newest tag of that pattern) names in this repository;
/// otherwise the repository's default branch (`origin/HEAD`, else `main`, else `master`).
/// Blocking (git).
pub(crate) fn merge_target(
    repo: &Path,
    follow: Option<&str>,
) -> std::result::Result<Option<String>, String> {
    let Some(follow) = follow else {
        return git_merged::merge_target(repo).map_err(|e| e.to_string());
    };
    let follow = lane_core::follow::Follow::parse(follow)?;
    let resolved = lane_workspace::follow::resolve(repo, &follow).map_err(|e| e.to_string())?;
    Ok(Some(resolved.full.unwrap_or(resolved.commit)))
}

/// One version to check: the instance, its service, where its repository is, and its branch.
#[derive(Debug, Clone)]
struct Probe {
    instance: String,
    service: String,
    repo: Option<PathBuf>,
    /// What the service's baseline follows, when it follows production.
    follow: Option<String>,
    branch: String,
    commit: String,
    dirty: bool,
}

/// What the check found for one version.
#[derive(Debug, Clone)]
enum Found {
    /// Merged into `target` (short name), `how`.
    Merged {
        target: String,
        how: &'static str,
    },
    Unmerged,
    /// Cannot tell (no repository recorded, git failed, no target): kept, like unmerged.
    Unknown(String),
}

/// The versions of each lane, for a check outside the lock. A lane a deploy is under way into
/// is left out (it is getting new work).
fn probes(st: &State) -> BTreeMap<LaneId, Vec<Probe>> {
    let mut out: BTreeMap<LaneId, Vec<Probe>> = BTreeMap::new();
    let busy: Vec<&LaneId> = st
        .instances
        .values()
        .filter(|r| r.pending.is_some())
        .filter_map(|r| r.lane.lane())
        .collect();
    for id in st.lanes.keys().filter(|id| !busy.contains(id)) {
        let versions: Vec<Probe> = st
            .instances
            .values()
            .filter(|r| r.lane.lane() == Some(id) && r.pending.is_none())
            .filter_map(|r| {
                let v = r.version.as_ref()?;
                Some(Probe {
                    instance: r.id.clone(),
                    service: r.service.to_string(),
                    repo: r.repo.clone(),
                    follow: st.follows.get(&r.service).map(|f| f.follows.clone()),
                    branch: v.branch.clone(),
                    commit: v.commit.clone(),
                    dirty: v.dirty,
                })
            })
            .collect();
        if !versions.is_empty() {
            out.insert(id.clone(), versions);
        }
    }
    out
}

/// Merge targets already worked out, by repository and what baseline follows.
type Targets = HashMap<(PathBuf, Option<String>), std::result::Result<Option<String>, String>>;

/// Asks git about every probe. Blocking: run it with `spawn_blocking`.
fn look(probes: Vec<Probe>) -> Vec<(Probe, Found)> {
    let mut targets: Targets = HashMap::new();
    probes
        .into_iter()
        .map(|p| {
            let found = look_one(&p, &mut targets);
            (p, found)
        })
        .collect()
}

fn look_one(p: &Probe, targets: &mut Targets) -> Found {
    let Some(repo) = &p.repo else {
        return Found::Unknown("deployed before lane recorded where versions come from".into());
    };
    let target = targets
        .entry((repo.clone(), p.follow.clone()))
        .or_insert_with(|| merge_target(repo, p.follow.as_deref()))
        .clone();
    let target = match target {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Found::Unknown(format!(
                "{} has no origin/HEAD, main or master to be merged into",
                repo.display()
            ));
        }
        Err(e) => return Found::Unknown(e),
    };
    match git_merged::branch_merged(repo, &p.branch, &p.commit, p.dirty, &target) {
        Ok(Verdict::Merged(how)) => Found::Merged {
            target: git_merged::short_ref(&target).to_owned(),
            how: how.describe(),
        },
        Ok(Verdict::Unmerged(_)) => Found::Unmerged,
        Ok(Verdict::NotABranch) => Found::Unknown(format!("{} is no feature branch", p.branch)),
        Err(e) => Found::Unknown(e.to_string()),
    }
}

/// What the ref watch remembers: each repository's common git dir (`None`: not a repository),
/// and the last modification times of the places a branch move or deletion touches there.
#[derive(Default)]
pub(super) struct RefWatch {
    common: HashMap<PathBuf, Option<PathBuf>>,
    stamps: HashMap<PathBuf, Vec<Option<std::time::SystemTime>>>,
}

/// The modification times of the entries that change when a branch of the repository whose
/// common git dir is `common` moves, is created or deleted, or a fetch updates `origin/*`: the
/// directories refs are renamed into (`refs/heads` and its subdirectories one level down,
/// `refs/remotes/origin`) and `packed-refs`. Stats only: no git runs.
fn ref_stamps(common: &Path) -> Vec<Option<std::time::SystemTime>> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let heads = common.join("refs/heads");
    let mut paths = vec![
        common.join("packed-refs"),
        heads.clone(),
        common.join("refs/remotes/origin"),
    ];
    if let Ok(entries) = std::fs::read_dir(&heads) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        paths.extend(dirs);
    }
    paths.iter().map(|p| mtime(p)).collect()
}

impl RefWatch {
    /// Whether a ref of one of `repos` moved since the last call, or a repository is seen for the
    /// first time (its refs may have moved before it was looked at). Blocking (one `git
    /// rev-parse` per new repository, then stats).
    fn moved(&mut self, repos: &[PathBuf]) -> bool {
        let mut moved = false;
        for repo in repos {
            let common = self
                .common
                .entry(repo.clone())
                .or_insert_with(|| {
                    lane_workspace::Repo::discover(repo)
                        .ok()
                        .map(|r| r.common_dir)
                })
                .clone();
            let Some(common) = common else { continue };
            let now = ref_stamps(&common);
            moved |= self.stamps.insert(repo.clone(), now.clone()).as_ref() != Some(&now);
        }
        self.common.retain(|r, _| repos.contains(r));
        self.stamps.retain(|r, _| repos.contains(r));
        moved
    }
}

impl Agent {
    /// Whether a branch moved in a repository lanes' versions come from since the last call, so
    /// the merge check can run at once rather than at its next interval.
    pub(super) async fn refs_moved(&self, watch: &mut Option<RefWatch>) -> bool {
        let repos: Vec<PathBuf> = {
            let st = self.state.lock().await;
            let mut repos: Vec<PathBuf> = st
                .instances
                .values()
                .filter(|r| r.lane.lane().is_some())
                .filter_map(|r| r.repo.clone())
                .collect();
            repos.sort();
            repos.dedup();
            repos
        };
        let mut w = watch.take().unwrap_or_default();
        let (w, moved) = match tokio::task::spawn_blocking(move || {
            let moved = w.moved(&repos);
            (w, moved)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => return false,
        };
        *watch = Some(w);
        moved
    }

    /// Asks git, off the async threads, whether the branch of the version instance `id` runs has
    /// work the merge target does not have; if so, remembers it (a deploy calls this once its
    /// version is live, so a branch merged soon after is known to have had work).
    pub(super) async fn look_for_work(&self, id: &str) {
        let probe = {
            let st = self.state.lock().await;
            let Some(r) = st.instances.get(id) else {
                return;
            };
            let Some(v) = &r.version else { return };
            if r.lane.lane().is_none() || r.had_work {
                return;
            }
            Probe {
                instance: r.id.clone(),
                service: r.service.to_string(),
                repo: r.repo.clone(),
                follow: st.follows.get(&r.service).map(|f| f.follows.clone()),
                branch: v.branch.clone(),
                commit: v.commit.clone(),
                dirty: v.dirty,
            }
        };
        let Ok(found) = tokio::task::spawn_blocking(move || look(vec![probe])).await else {
            return;
        };
        let mut st = self.state.lock().await;
        if mark_work(&mut st, &found)
            && let Err(e) = self.save_quiet(&st)
        {
            tracing::error!("cannot save state: {e}");
        }
    }

    /// One round of the merge check: marks lanes merged (or not any more), then reclaims the
    /// marked lanes whose grace period ran out.
    pub(super) async fn check_merged(&self) {
        let probes = {
            let st = self.state.lock().await;
            probes(&st)
        };
        let all: Vec<Probe> = probes.values().flatten().cloned().collect();
        let found = if all.is_empty() {
            Vec::new()
        } else {
            match tokio::task::spawn_blocking(move || look(all)).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!("the merge check failed: {e}");
                    return;
                }
            }
        };
        let due = {
            let mut st = self.state.lock().await;
            let before = st.clone();
            let work = mark_work(&mut st, &found);
            let now = now_secs();
            let grace = self.config.merged_grace.as_secs();
            let mut due = Vec::new();
            for (lane, versions) in &probes {
                // Looked at while nothing changed in the lane since.
                let now_there: Vec<&str> = st
                    .instances
                    .values()
                    .filter(|r| r.lane.lane() == Some(lane))
                    .map(|r| r.id.as_str())
                    .collect();
                if now_there.len() != versions.len()
                    || versions
                        .iter()
                        .any(|v| !now_there.contains(&v.instance.as_str()))
                {
                    continue;
                }
                match merged_reason(&st, versions, &found) {
                    Some((target, reason)) => {
                        let mark = st.merged.entry(lane.clone()).or_insert_with(|| {
                            tracing::info!(%lane, %reason, "lane merged; reclaiming it after the grace period");
                            Merged {
                                since: now,
                                reclaim_at: Some(now.saturating_add(grace)),
                                target,
                                reason: reason.clone(),
                            }
                        });
                        if mark.reason != reason {
                            mark.reason = reason;
                        }
                        if mark.reclaim_at.is_some_and(|t| t <= now) {
                            due.push((lane.clone(), mark.clone()));
                        }
                    }
                    None => {
                        if st.merged.remove(lane).is_some() {
                            tracing::info!(%lane, "lane no longer merged");
                        }
                    }
                }
            }
            let lanes: Vec<LaneId> = st.merged.keys().cloned().collect();
            for lane in lanes {
                if !st.lanes.contains_key(&lane) {
                    st.merged.remove(&lane);
                }
            }
            if st.merged != before.merged {
                if let Err(e) = self.record(&mut st, before) {
                    tracing::error!("cannot save the merge check: {e}");
                    return;
                }
            } else if work && let Err(e) = self.save_quiet(&st) {
                tracing::error!("cannot save state: {e}");
            }
            due
        };
        if !due.is_empty()
            && let Err(e) = self.reclaim_merged(due).await
        {
            tracing::error!("cannot reclaim merged lanes: {e}");
        }
    }

    /// Removes the merged lanes `due` (marked, grace period over) as one plan, as an expired lane
    /// is removed, and records why in each one's history.
    async fn reclaim_merged(&self, due: Vec<(LaneId, Merged)>) -> Result<()> {
        let _op = self.op_started();
        let op = {
            let mut st = self.state.lock().await;
            let now = now_secs();
            // Still marked and due: a deploy, an assign or `lane extend` since takes it back.
            let lanes: Vec<(LaneId, String, Merged)> = due
                .into_iter()
                .filter(|(id, _)| {
                    st.merged
                        .get(id)
                        .is_some_and(|m| m.reclaim_at.is_some_and(|t| t <= now))
                })
                .filter_map(|(id, m)| st.lanes.get(&id).map(|l| (id, l.owner.clone(), m)))
                .collect();
            if lanes.is_empty() {
                return Ok(());
            }
            let ids: Vec<LaneId> = lanes.iter().map(|(id, _, _)| id.clone()).collect();
            let before = st.clone();
            let (op, instances) = Self::take_lanes(&mut st, &ids, PlanKind::Merged);
            for id in &ids {
                st.merged.remove(id);
            }
            self.record(&mut st, before)?;
            let grace = lane_core::duration::format_duration(self.config.merged_grace);
            for (id, owner, m) in &lanes {
                let n = instances
                    .iter()
                    .filter(|i| i.starts_with(&format!("{id}/")))
                    .count();
                tracing::info!(lane = %id, reason = %m.reason, "merged lane reclaimed");
                self.note(
                    id,
                    LaneEvent::Reclaim,
                    owner,
                    None,
                    None,
                    format!(
                        "merged: {}; reclaimed with its {n} instance(s) after the grace period \
                         ({grace}, LANE_MERGED_GRACE)",
                        m.reason
                    ),
                );
            }
            op
        };
        self.finish(&op).await;
        self.prune_sources().await;
        if let Err(e) = self.sweep_data().await {
            tracing::warn!(error = %e, "merged lanes' data not removed yet");
        }
        Ok(())
    }
}

/// Remembers the versions found with unmerged work. True when something changed.
fn mark_work(st: &mut State, found: &[(Probe, Found)]) -> bool {
    let mut changed = false;
    for (p, f) in found {
        if matches!(f, Found::Unmerged)
            && let Some(r) = st.instances.get_mut(&p.instance)
            && !r.had_work
        {
            r.had_work = true;
            changed = true;
        }
    }
    changed
}

/// The target and the reason when every version of a lane is merged and had work of its own;
/// `None` otherwise.
fn merged_reason(
    st: &State,
    versions: &[Probe],
    found: &[(Probe, Found)],
) -> Option<(String, String)> {
    let mut target = None;
    let mut parts = Vec::new();
    for v in versions {
        let (_, f) = found.iter().find(|(p, _)| p.instance == v.instance)?;
        let Found::Merged { target: t, how } = f else {
            if let Found::Unknown(why) = f {
                tracing::debug!(instance = %v.instance, "merge check: {why}");
            }
            return None;
        };
        if !st.instances.get(&v.instance).is_some_and(|r| r.had_work) {
            return None;
        }
        parts.push(format!(
            "{}: branch {} into {t} ({how})",
            v.service, v.branch
        ));
        target.get_or_insert_with(|| t.clone());
    }
    Some((target?, parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InstanceRecord, RunSpec};
    use lane_api::{DeployId, InstanceState};
    use lane_core::{Lane, LaneRef, PersonalVersion};

    fn instance(st: &mut State, id: &str, lane: &str, had_work: bool, pending: bool) {
        let lane: LaneId = lane.parse().unwrap();
        st.lanes.entry(lane.clone()).or_insert_with(|| {
            Lane::new(
                lane.clone(),
                None,
                "me",
                1,
                std::time::Duration::from_secs(60),
            )
        });
        st.instances.insert(
            id.into(),
            InstanceRecord {
                id: id.into(),
                service: "demo.b".parse().unwrap(),
                lane: LaneRef::Lane(lane),
                port: 1,
                spec: RunSpec {
                    command: "true".into(),
                    cwd: "/".into(),
                    env: Default::default(),
                    health: lane_core::manifest::HealthCheck::Tcp,
                    health_timeout_ms: 1,
                },
                state: InstanceState::Healthy,
                pid: None,
                restarts: 0,
                version: Some(PersonalVersion::new("feat", "0123abcd", "me", 1)),
                pending: pending.then(|| DeployId::from("deploy-1")),
                source: None,
                protocol: Default::default(),
                repo: Some("/src/b".into()),
                had_work,
            },
        );
    }

    fn merged() -> Found {
        Found::Merged {
            target: "main".into(),
            how: "fast-forward or merge commit",
        }
    }

    #[test]
    fn a_lane_is_merged_only_when_every_version_is_and_each_had_work() {
        let mut st = State::default();
        instance(&mut st, "a/demo.b#1", "a", true, false);
        instance(&mut st, "b/demo.b#2", "b", false, false);
        instance(&mut st, "c/demo.b#3", "c", true, false);
        instance(&mut st, "c/demo.c#4", "c", false, false);
        instance(&mut st, "d/demo.b#5", "d", true, false);
        instance(&mut st, "d/demo.b#6", "d", true, true);
        let probes = probes(&st);
        // A lane a deploy is under way into is not looked at.
        assert_eq!(
            probes.keys().map(LaneId::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let found: Vec<(Probe, Found)> = probes
            .values()
            .flatten()
            .map(|p| {
                let f = if p.instance == "c/demo.c#4" {
                    Found::Unmerged
                } else {
                    merged()
                };
                (p.clone(), f)
            })
            .collect();
        let lane = |id: &str| &probes[&id.parse::<LaneId>().unwrap()];
        let (target, reason) = merged_reason(&st, lane("a"), &found).expect("a is merged");
        assert_eq!(target, "main");
        assert_eq!(
            reason,
            "demo.b: branch feat into main (fast-forward or merge commit)"
        );
        // Never seen with work of its own: not merged.
        assert_eq!(merged_reason(&st, lane("b"), &found), None);
        // One version unmerged: the lane is not.
        assert_eq!(merged_reason(&st, lane("c"), &found), None);
        // The unmerged version is remembered as having had work.
        assert!(mark_work(&mut st, &found));
        assert!(st.instances["c/demo.c#4"].had_work);
        assert!(!mark_work(&mut st, &found), "nothing new");
        // Unknown (no repository, git failed) keeps the lane.
        let unknown: Vec<(Probe, Found)> = lane("a")
            .iter()
            .map(|p| (p.clone(), Found::Unknown("no repo".into())))
            .collect();
        assert_eq!(merged_reason(&st, lane("a"), &unknown), None);
    }

    #[test]
    fn ref_stamps_change_when_a_branch_moves() {
        let dir = std::env::temp_dir().join(format!("lane-refwatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("refs/heads")).unwrap();
        let before = ref_stamps(&dir);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("refs/heads/main.lock"), "x").unwrap();
        std::fs::rename(
            dir.join("refs/heads/main.lock"),
            dir.join("refs/heads/main"),
        )
        .unwrap();
        assert_ne!(ref_stamps(&dir), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// With `follow`, a branch is merged when it is in what baseline follows (here the newest
    /// release tag), not when it is only in `main`.
    #[test]
    fn the_merge_target_is_what_baseline_follows() {
        let dir = std::env::temp_dir().join(format!("lane-merge-target-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.email=t@example.com", "-c", "user.name=T"])
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&["tag", "v1.9.0"]);
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        git(&["tag", "v1.10.0"]);
        let v1_10 = git(&["rev-parse", "HEAD"]);
        git(&["commit", "-q", "--allow-empty", "-m", "three, on main only"]);

        let by_default = merge_target(&dir, None).unwrap();
        assert_eq!(by_default.as_deref(), Some("refs/heads/main"));
        let by_tag = merge_target(&dir, Some("refs/tags/v*")).unwrap().unwrap();
        assert_eq!(by_tag, "refs/tags/v1.10.0");
        assert_eq!(git(&["rev-parse", &format!("{by_tag}^{{commit}}")]), v1_10);
        let err = merge_target(&dir, Some("origin/nothing")).unwrap_err();
        assert!(err.contains("origin/nothing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
