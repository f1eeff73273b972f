//! Backend types → protocol types. The only place that knows both; pure functions.

use lane_api::BackendError;
use lane_api::{ErrorCode, InstanceState, InstanceView, LaneView, Status};
use lane_core::{Lane, LaneRef, ServiceId};
use serde_json::Value;
use tower_lsp_server::jsonrpc;

use super::ext;

pub fn error_code(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(Value::String(s)) => s,
        _ => "internal".to_owned(),
    }
}

pub fn error_info(e: &BackendError) -> ext::ErrorInfo {
    ext::ErrorInfo {
        code: error_code(e.code),
        message: e.message.clone(),
        help: e.help.clone(),
    }
}

/// A backend error as a JSON-RPC error: cancelled → `RequestCancelled`, invalid input →
/// `InvalidParams`, anything else → [`ext::LANE_ERROR`]; `data` is always an [`ext::ErrorInfo`].
pub fn rpc_error(e: &BackendError) -> jsonrpc::Error {
    let code = match e.code {
        ErrorCode::Cancelled => jsonrpc::ErrorCode::RequestCancelled,
        ErrorCode::InvalidInput => jsonrpc::ErrorCode::InvalidParams,
        _ => jsonrpc::ErrorCode::ServerError(ext::LANE_ERROR),
    };
    jsonrpc::Error {
        code,
        message: e.message.clone().into(),
        data: serde_json::to_value(error_info(e)).ok(),
    }
}

fn per_minute(st: &Status, service: &ServiceId, lane: &LaneRef) -> u64 {
    st.traffic
        .iter()
        .filter(|t| &t.service == service && &t.lane == lane)
        .map(|t| t.per_minute)
        .sum()
}

pub fn instance(st: &Status, i: &InstanceView) -> ext::ServiceInfo {
    ext::ServiceInfo {
        service: i.service.to_string(),
        lane: i.lane.to_string(),
        version: i.version.as_ref().map(|v| v.version.clone()),
        branch: i.version.as_ref().map(|v| v.branch.clone()),
        commit: i.version.as_ref().map(|v| v.commit.clone()),
        owner: i.version.as_ref().map(|v| v.owner.clone()),
        state: i.state.as_str().to_owned(),
        addr: i.placement.endpoint(),
        requests_per_minute: per_minute(st, &i.service, &i.lane),
        log: match &i.placement {
            lane_api::Placement::Process { log: Some(p), .. } => Some(p.display().to_string()),
            _ => None,
        },
    }
}

/// A lane without its instances (as returned by create/extend before a status is at hand).
pub fn bare_lane(lane: &Lane, now: u64) -> ext::LaneInfo {
    ext::LaneInfo {
        id: lane.id.to_string(),
        parent: lane.parent.as_ref().map(|p| p.to_string()),
        owner: lane.owner.clone(),
        created_at: lane.created,
        expires_at: lane.expires,
        expires_in_secs: lane.expires.saturating_sub(now),
        chain: std::iter::once(lane.id.to_string())
            .chain(lane.parent.as_ref().map(|p| p.to_string()))
            .collect(),
        services: Vec::new(),
        merged: None,
    }
}

pub fn lane(st: &Status, lv: &LaneView) -> ext::LaneInfo {
    let lane_ref = LaneRef::Lane(lv.lane.id.clone());
    let mut services: Vec<ext::ServiceInfo> =
        lv.instances.iter().map(|i| instance(st, i)).collect();
    // A personal version the lane holds but that has no instance (yet) still shows, as stopped.
    for (service, v) in &lv.lane.services {
        if !lv.instances.iter().any(|i| &i.service == service) {
            services.push(ext::ServiceInfo {
                service: service.to_string(),
                lane: lane_ref.to_string(),
                version: Some(v.version.clone()),
                branch: Some(v.branch.clone()),
                commit: Some(v.commit.clone()),
                owner: Some(v.owner.clone()),
                state: InstanceState::Stopped.as_str().to_owned(),
                addr: String::new(),
                requests_per_minute: 0,
                log: None,
            });
        }
    }
    ext::LaneInfo {
        chain: lv.chain.iter().map(|c| c.to_string()).collect(),
        services,
        merged: lv.merged.as_ref().map(|m| ext::MergedInfo {
            since: m.since,
            reclaim_at: m.reclaim_at,
            target: m.target.clone(),
            reason: m.reason.clone(),
        }),
        ..bare_lane(&lv.lane, st.now)
    }
}

/// The router host and URL of a service, when the router's address is known.
pub fn service_url(router: Option<&str>, service: &ServiceId) -> (Option<String>, Option<String>) {
    let Some(port) = router.and_then(|r| r.rsplit_once(':')).map(|(_, p)| p) else {
        return (None, None);
    };
    let host = format!("{}:{port}", service.local_host());
    let url = format!("http://{host}/");
    (Some(host), Some(url))
}

/// The whole status. `workspaces` come from the IDE's folders (see `workspace.rs`).
pub fn status(st: &Status, mut workspaces: Vec<ext::WorkspaceInfo>) -> ext::LaneStatus {
    for ws in &mut workspaces {
        if let Some(service) = ws.service.as_deref().and_then(|s| s.parse().ok()) {
            (ws.host, ws.url) = service_url(st.router.as_deref(), &service);
        }
    }
    let lanes: Vec<ext::LaneInfo> = st.lanes.iter().map(|lv| lane(st, lv)).collect();
    let baseline: Vec<ext::ServiceInfo> = st.baseline.iter().map(|i| instance(st, i)).collect();
    let counted: Vec<&InstanceView> = match &st.active_lane {
        LaneRef::Baseline => st.baseline.iter().collect(),
        LaneRef::Lane(id) => st
            .lanes
            .iter()
            .filter(|lv| &lv.lane.id == id)
            .flat_map(|lv| lv.instances.iter())
            .collect(),
    };
    let healthy = counted
        .iter()
        .filter(|i| i.state == InstanceState::Healthy)
        .count();
    ext::LaneStatus {
        workspaces,
        backend: st.backend.clone(),
        backend_error: None,
        active_lane: st.active_lane.to_string(),
        lane_header: st.lane_header.clone(),
        router: st.router.clone(),
        lanes,
        baseline,
        healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
        total: u32::try_from(counted.len()).unwrap_or(u32::MAX),
        revision: st.revision.to_string(),
        deploy_failures: Vec::new(),
        baseline_sync: st.baseline_sync.iter().map(baseline_sync).collect(),
    }
}

/// A followed baseline service, as the IDE shows its drift.
pub fn baseline_sync(b: &lane_api::BaselineSync) -> ext::BaselineSyncInfo {
    ext::BaselineSyncInfo {
        service: b.service.to_string(),
        follows: b.follows.clone(),
        production: b.production.clone(),
        running: b.running.clone(),
        drift: b.drift.as_str().to_owned(),
        reason: b.reason.clone(),
        last_sync: b.last_sync,
    }
}

/// The status when the backend cannot be asked: the workspaces, and why.
pub fn status_unavailable(
    backend: &str,
    e: &BackendError,
    workspaces: Vec<ext::WorkspaceInfo>,
) -> ext::LaneStatus {
    ext::LaneStatus {
        workspaces,
        backend: backend.to_owned(),
        backend_error: Some(error_info(e)),
        active_lane: LaneRef::Baseline.to_string(),
        ..ext::LaneStatus::default()
    }
}

/// Whether two statuses show the same thing, ignoring the clock (`expiresInSecs`).
pub fn same_shown(a: &ext::LaneStatus, b: &ext::LaneStatus) -> bool {
    let strip = |s: &ext::LaneStatus| {
        let mut s = s.clone();
        for l in &mut s.lanes {
            l.expires_in_secs = 0;
        }
        s
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lane_api::Traffic;
    use lane_core::{LaneId, PersonalVersion};

    fn id(s: &str) -> LaneId {
        s.parse().expect("a valid lane id")
    }

    fn inst(service: &str, lane: LaneRef, state: InstanceState) -> InstanceView {
        InstanceView {
            id: lane_api::InstanceId::new(format!("{service}-{lane}")),
            service: service.parse().expect("a valid service id"),
            lane,
            placement: lane_api::Placement::Process {
                addr: "127.0.0.1:41001".parse().expect("an address"),
                pid: Some(1),
                log: None,
                source: None,
            },
            state,
            restarts: 0,
            version: Some(PersonalVersion::new(
                "feature-x",
                "0123456789abcdef",
                "dev@x",
                5,
            )),
        }
    }

    fn sample() -> Status {
        let mut lane = Lane::new(
            id("feature-x"),
            None,
            "dev@x",
            100,
            std::time::Duration::from_secs(3600),
        );
        let b: ServiceId = "demo.b".parse().expect("a valid service id");
        lane.services.insert(
            b.clone(),
            PersonalVersion::new("feature-x", "0123456789abcdef", "dev@x", 5),
        );
        let lane_ref = LaneRef::Lane(id("feature-x"));
        Status {
            backend: "local".into(),
            router: Some("127.0.0.1:4080".into()),
            lane_header: "x-lane".into(),
            active_lane: lane_ref.clone(),
            now: 200,
            lanes: vec![LaneView {
                lane,
                chain: vec![id("feature-x")],
                instances: vec![inst("demo.b", lane_ref.clone(), InstanceState::Healthy)],
                merged: Some(lane_api::Merged {
                    since: 150,
                    reclaim_at: Some(3750),
                    target: "main".into(),
                    reason: "demo.b: branch feature-x into main (fast-forward or merge commit)"
                        .into(),
                }),
            }],
            baseline: vec![
                inst("demo.a", LaneRef::Baseline, InstanceState::Healthy),
                inst("demo.b", LaneRef::Baseline, InstanceState::Crashed),
            ],
            baseline_sync: vec![],
            traffic: vec![Traffic {
                service: b,
                lane: lane_ref,
                requests: 9,
                per_minute: 3,
            }],
            revision: lane_api::Revision::new("7"),
        }
    }

    #[test]
    fn status_counts_the_active_lane_and_adds_router_urls() {
        let ws = ext::WorkspaceInfo {
            folder: "/src/b".into(),
            service: Some("demo.b".into()),
            ..Default::default()
        };
        let s = status(&sample(), vec![ws]);
        assert_eq!((s.healthy, s.total), (1, 1));
        assert_eq!(s.active_lane, "feature-x");
        assert_eq!(
            s.workspaces[0].url.as_deref(),
            Some("http://b.demo.localhost:4080/")
        );
        assert_eq!(
            s.workspaces[0].host.as_deref(),
            Some("b.demo.localhost:4080")
        );
        let l = &s.lanes[0];
        assert_eq!(l.expires_in_secs, 100 + 3600 - 200);
        assert_eq!(l.services[0].version.as_deref(), Some("feature-x@01234567"));
        assert_eq!(l.services[0].requests_per_minute, 3);
        let merged = l.merged.as_ref().expect("the lane is merged");
        assert_eq!((merged.since, merged.reclaim_at), (150, Some(3750)));
        assert_eq!(merged.target, "main");
        assert!(merged.reason.contains("branch feature-x"), "{merged:?}");
        assert_eq!(s.revision, "7");
    }

    #[test]
    fn baseline_counts_when_no_lane_is_active() {
        let mut st = sample();
        st.active_lane = LaneRef::Baseline;
        let s = status(&st, vec![]);
        assert_eq!((s.healthy, s.total), (1, 2));
    }

    #[test]
    fn baseline_drift_is_passed_on_camel_cased() {
        let mut st = sample();
        st.baseline_sync = vec![lane_api::BaselineSync {
            service: "demo.b".parse().expect("a valid service id"),
            follows: "origin/main".into(),
            production: Some("2222".into()),
            running: Some("1111".into()),
            drift: lane_api::Drift::BuildFailed,
            reason: Some("the build `make` failed".into()),
            last_sync: Some(150),
        }];
        let s = status(&st, vec![]);
        assert_eq!(
            serde_json::to_value(&s.baseline_sync).expect("serializes"),
            serde_json::json!([{
                "service": "demo.b", "follows": "origin/main", "production": "2222",
                "running": "1111", "drift": "build_failed",
                "reason": "the build `make` failed", "lastSync": 150
            }])
        );
        // A change of drift alone is a change the IDE is told about.
        let mut later = st.clone();
        later.baseline_sync[0].drift = lane_api::Drift::InSync;
        assert!(!same_shown(&s, &status(&later, vec![])));
    }

    #[test]
    fn errors_keep_code_and_help() {
        let e = BackendError::not_found("no lane x").with_help("lane ls");
        let rpc = rpc_error(&e);
        assert_eq!(rpc.code, jsonrpc::ErrorCode::ServerError(ext::LANE_ERROR));
        assert_eq!(
            rpc.data,
            Some(
                serde_json::json!({"code": "not_found", "message": "no lane x", "help": "lane ls"})
            )
        );
        assert_eq!(
            rpc_error(&BackendError::cancelled()).code,
            jsonrpc::ErrorCode::RequestCancelled
        );
    }

    #[test]
    fn the_clock_alone_is_no_change() {
        let a = status(&sample(), vec![]);
        let mut b = a.clone();
        b.lanes[0].expires_in_secs -= 1;
        assert!(same_shown(&a, &b));
        b.active_lane = "baseline".into();
        assert!(!same_shown(&a, &b));
    }
}
