//! Data isolation in the local backend. A deploy into a lane first provisions the lane's copies
//! of the service's data bindings (`lane-data`: the MySQL clone, a Redis database) and records
//! them in the lane's document and in `State::lane_data`; the version then starts with the
//! rewritten addresses (`lane_api::data_env`). The data of lanes that are gone (`lane rm`, expiry,
//! gc, a deploy undone that had created its lane) is torn down by [`Agent::sweep_data`], guarded
//! so that nothing but the lane's own names is ever dropped. Kafka bindings get the lane's topics
//! `<topic>.lane-<id>` (baseline's partitions and configs). A Redis binding with `copy` gets
//! baseline's matching keys (within its quota) in the database the lane first claims. Apollo
//! clusters are provisioned after the other bindings (their items are the lane's rewritten
//! addresses).

use lane_core::LaneId;
use lane_core::data::{DataOptions, DataSpec, apollo_cluster, apollo_items, record};
use lane_core::lane::DataBinding;
use lane_data::{DataError, teardown};

use super::Agent;
use crate::store::ProvisionedData;
use lane_api::{BackendError, Result};

/// A `lane-data` error as the backend's error, naming the binding.
fn data_error(binding: &str, e: DataError) -> BackendError {
    let message = format!("data binding `{binding}`: {e}");
    match e {
        DataError::Unreachable { .. } => BackendError::unavailable(message)
            .with_help("start the server, or fix the binding's `url` in lane.toml"),
        DataError::Auth { what, .. } if what.starts_with("Apollo") => BackendError::invalid(
            message,
        )
        .with_help("set the variable the binding's `token_env` names to a token that may manage the app, where `lane` runs"),
        DataError::Auth { .. } => BackendError::invalid(message)
            .with_help("fix the user or password in the binding's `url`"),
        DataError::Invalid(m) if m.starts_with("no Apollo Open API token") => {
            BackendError::invalid(message).with_help(
                "set the variable the binding's `token_env` names in the shell that runs `lane`",
            )
        }
        DataError::MissingBaseline { .. }
        | DataError::MissingTopic { .. }
        | DataError::Invalid(_)
        | DataError::Format(_)
        | DataError::Io(_) => {
            BackendError::invalid(message).with_help("fix the binding in lane.toml")
        }
        DataError::PoolFull { .. } | DataError::Guard(_) => BackendError::conflict(message),
        DataError::Server { .. } => BackendError::internal(message),
        DataError::Cancelled => BackendError::conflict(message),
    }
}

impl Agent {
    /// Makes lane `lane`'s copy of one binding; `None` when the binding needs nothing made here.
    async fn provision_one(lane: &LaneId, spec: &DataSpec) -> Result<Option<String>> {
        lane_data::provision::provision_one(lane, spec)
            .await
            .map_err(|e| data_error(&spec.name, e))
    }

    /// Gives lane `lane` its copies of `specs` (what it has already is kept), and records them.
    /// What was made before a binding failed is recorded too, so the teardown that follows the
    /// failed deploy removes it: nothing is left behind.
    pub(super) async fn provision_data(&self, lane: &LaneId, specs: &[DataSpec]) -> Result<()> {
        let mut made = Vec::new();
        let mut failure = None;
        for spec in specs {
            match Self::provision_one(lane, spec).await {
                Ok(Some(target)) => made.push(ProvisionedData {
                    spec: spec.clone(),
                    record: record(spec, target),
                }),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let recorded = self.record_data(lane, made).await;
        if let Some(e) = failure {
            return Err(e);
        }
        recorded?;
        let apollo: Vec<&DataSpec> = specs
            .iter()
            .filter(|s| matches!(s.options, DataOptions::Apollo(_)))
            .collect();
        if apollo.is_empty() {
            return Ok(());
        }
        // What the lane holds now, its copies just made included: the Apollo items are their
        // lane addresses.
        let records: Vec<DataBinding> = {
            let st = self.state.lock().await;
            st.lanes
                .get(lane)
                .map(|l| l.data.clone())
                .unwrap_or_default()
        };
        for spec in apollo {
            let items = apollo_items(spec, specs, lane, &records)
                .map_err(|e| data_error(&spec.name, DataError::Invalid(e.to_string())))?;
            // Recorded before the cluster is made, so a failure half-way still leaves the
            // lane's entry for the sweep to remove (the cluster's name is the lane's).
            self.record_data(
                lane,
                vec![ProvisionedData {
                    spec: spec.clone(),
                    record: record(spec, apollo_cluster(lane)),
                }],
            )
            .await?;
            let r = lane_data::apollo::provision(spec, lane, &items)
                .await
                .map_err(|e| data_error(&spec.name, e))?;
            tracing::info!(%lane, binding = %spec.name, cluster = %r.cluster, created = r.created, items = r.items, "lane Apollo cluster ready");
        }
        Ok(())
    }

    async fn record_data(&self, lane: &LaneId, made: Vec<ProvisionedData>) -> Result<()> {
        if made.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().await;
        let before = st.clone();
        if let Some(l) = st.lanes.get_mut(lane) {
            for p in &made {
                l.data
                    .retain(|d| !(d.name == p.record.name && d.kind == p.record.kind));
                l.data.push(p.record.clone());
            }
        }
        // Recorded even when the lane went away meanwhile: the sweep then removes it.
        let entry = st.lane_data.entry(lane.clone()).or_default();
        for p in made {
            entry.retain(|e| !(e.spec.name == p.spec.name && e.spec.address == p.spec.address));
            entry.push(p);
        }
        self.record(&mut st, before)
    }

    /// Tears down the data of every lane that is gone, and forgets it. A lane whose teardown
    /// fails (a server down) keeps its entry, to be tried again by the next sweep (`lane gc`);
    /// the first failure is returned.
    pub(super) async fn sweep_data(&self) -> Result<()> {
        let _turn = self.sweep_turn.lock().await;
        let gone: Vec<(LaneId, Vec<ProvisionedData>)> = {
            let st = self.state.lock().await;
            st.lane_data
                .iter()
                .filter(|(l, _)| !st.lanes.contains_key(*l))
                .map(|(l, d)| (l.clone(), d.clone()))
                .collect()
        };
        let mut first_error = None;
        for (lane, items) in gone {
            let specs: Vec<DataSpec> = items.iter().map(|p| p.spec.clone()).collect();
            let records: Vec<DataBinding> = items.iter().map(|p| p.record.clone()).collect();
            let result = match teardown::plan(&lane, &specs, &records) {
                Ok(plan) => teardown::execute(&plan, &specs).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(done) => {
                    for d in &done {
                        tracing::info!(%lane, removed = d.removed, "{}", d.action);
                    }
                    let mut st = self.state.lock().await;
                    if !st.lanes.contains_key(&lane) {
                        let before = st.clone();
                        st.lane_data.remove(&lane);
                        self.record(&mut st, before)?;
                    }
                }
                Err(e) => {
                    tracing::warn!(%lane, error = %e, "could not remove the lane's data; lane gc tries again");
                    first_error.get_or_insert(
                        BackendError::unavailable(format!(
                            "lane `{lane}` is gone but its data could not be removed yet: {e}"
                        ))
                        .with_help("`lane gc` tries again"),
                    );
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}
