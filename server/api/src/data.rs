//! What every backend injects into a lane's processes for the service's data bindings
//! (`[data.<name>]` in `lane.toml`). One function, so the local, Consul and Kubernetes backends
//! give a process the same addresses: baseline's for a baseline version, the lane's own (its
//! database `<db>__lane_<id>`, its Redis index, its topics `<topic>.lane-<id>`, its Apollo
//! cluster `lane-<id>`) for a personal version.

use lane_core::data::{RewriteError, lane_env};
use lane_core::manifest::Manifest;
use lane_core::{Lane, LaneRef};

use crate::error::{BackendError, Result};

/// The environment variables (name, value) a process of `manifest`'s service deployed into
/// `lane` starts with. `doc` is the lane's document (what was provisioned for it is recorded in
/// its `data`); `None` for baseline, or for a lane not created yet (nothing provisioned).
pub fn data_env(
    manifest: &Manifest,
    lane: &LaneRef,
    doc: Option<&Lane>,
) -> Result<Vec<(String, String)>> {
    let id = match lane {
        LaneRef::Baseline => None,
        LaneRef::Lane(id) => Some(id),
    };
    let records = doc.map_or(&[][..], |d| d.data.as_slice());
    lane_env(&manifest.data, id, records).map_err(|e| {
        let help = match &e {
            RewriteError::NotProvisioned { .. } => {
                "provision the lane's data first (deploy provisions it when the backend can)"
            }
            _ => "fix the binding in lane.toml",
        };
        BackendError::invalid(e.to_string()).with_help(help)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        Manifest::parse(
            Path::new("lane.toml"),
            r#"
app = "shop"
proc = "cart"
[run]
command = "x"
[data.orders]
kind = "mysql"
url = "mysql://u:p@db:3306/orders"
env = "ORDERS_DSN"
[data.cache]
kind = "redis"
url = "redis://10.0.0.1/1"
env = "REDIS_URL"
pool = [2, 9]
"#,
        )
        .unwrap()
    }

    #[test]
    fn baseline_keeps_addresses_and_a_lane_gets_its_own() {
        let m = manifest();
        let base = data_env(&m, &LaneRef::Baseline, None).unwrap();
        assert!(base.contains(&("REDIS_URL".into(), "redis://10.0.0.1/1".into())));
        assert!(base.contains(&("ORDERS_DSN".into(), "mysql://u:p@db:3306/orders".into())));

        let id: lane_core::LaneId = "feat-a".parse().unwrap();
        let mut doc = Lane::new(id.clone(), None, "me", 0, lane_core::lane::DEFAULT_TTL);
        let err = data_env(&m, &LaneRef::Lane(id.clone()), Some(&doc)).unwrap_err();
        assert!(err.to_string().contains("no database index yet"), "{err}");
        doc.data.push(lane_core::lane::DataBinding {
            kind: lane_core::lane::DataKind::Redis,
            name: "cache".into(),
            target: "4".into(),
        });
        let env = data_env(&m, &LaneRef::Lane(id), Some(&doc)).unwrap();
        assert_eq!(
            env,
            [
                ("REDIS_URL".to_owned(), "redis://10.0.0.1/4".to_owned()),
                (
                    "ORDERS_DSN".to_owned(),
                    "mysql://u:p@db:3306/orders__lane_feat_a".to_owned()
                ),
            ]
        );
    }
}
