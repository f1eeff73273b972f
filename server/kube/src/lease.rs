//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! only one reconciles (two would each apply their own view of the merged routes).
//!
//! The protocol is client-go's, on kube's API: every change to the Lease is a replace carrying
//! the resourceVersion it was read at, so of two candidates racing for it one gets a 409 and
//! stays a candidate. The holder renews `spec.renewTime` every [`LeaseConfig::renew_every`]; a
//! candidate takes the Lease over when its holder is empty (released) or when the Lease's record
//! (holder and renew time) has not changed for `spec.leaseDurationSeconds` **as measured by the
//! candidate's own clock since it first saw that record**, so clock skew between replicas does
//! not matter. A holder that cannot renew for [`LeaseConfig::renew_deadline`] (shorter than the
//! duration) steps down before anyone may take over. A clean shutdown releases the Lease
//! (empty holder) after the last pass has ended, so the next replica takes over at once.
//!
//! Caveat, as with client-go: a pass already running when the holder steps down finishes its
//! writes; with the defaults (15 s lease, 10 s renew deadline) that leaves a pass 5 s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// Where the Lease is and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `spec.holderIdentity` (its Pod name in a cluster).
    pub identity: String,
    /// `spec.leaseDurationSeconds`: how long a silent holder keeps the Lease.
    pub duration: Duration,
    /// How long the holder keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a candidate tries.
    pub retry_every: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s between tries.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// One replica's side of the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The other holder's record as last seen (holder, renew time) and when this replica first
    /// saw it.
    observed: Mutex<Option<(String, Instant)>>,
}

/// A Lease call that failed, naming the Lease.
#[derive(Debug, thiserror::Error)]
#[error("Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: Box<kube::Error>,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn err(&self, e: kube::Error) -> LeaseError {
        LeaseError {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(e),
        }
    }

    fn secs(&self) -> i32 {
        i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One try: takes the Lease when it is free or expired, renews it when held. `Ok(true)`: this
    /// replica holds it now. A lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let me = self.config.identity.as_str();
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.to_owned()),
                    lease_duration_seconds: Some(self.secs()),
                    acquire_time: Some(micro_now()),
                    renew_time: Some(micro_now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder != me {
            if !holder.is_empty() {
                // Expired only once its record stood still for the duration, by our clock.
                let record = format!(
                    "{holder}@{}",
                    spec.renew_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default()
                );
                let duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.config.duration, Duration::from_secs);
                let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
                let since = match observed.as_ref() {
                    Some((r, at)) if *r == record => *at,
                    _ => {
                        *observed = Some((record, Instant::now()));
                        return Ok(false);
                    }
                };
                if since.elapsed() < duration {
                    return Ok(false);
                }
            }
            spec.acquire_time = Some(micro_now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(me.to_owned());
        spec.lease_duration_seconds = Some(self.secs());
        spec.renew_time = Some(micro_now());
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up if this replica holds it: an empty holder, which the next candidate
    /// takes at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(micro_now());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Taken meanwhile: not ours to release any more.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Holds the Lease from now on: renews it every `renew_every` and returns once it has not
    /// been renewed for `renew_deadline` (lost, or the API server unreachable).
    pub async fn hold(&self) {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last = Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = %self.config.name, "lost the lease to another replica");
                    return;
                }
                Err(e) => tracing::warn!("cannot renew the lease: {e}"),
            }
            if last.elapsed() >= self.config.renew_deadline {
                tracing::warn!(
                    lease = %self.config.name,
                    "no renewal for {:?}; stepping down",
                    self.config.renew_deadline
                );
                return;
            }
        }
    }
}

/// The identity of this replica: `POD_NAME` (set by deploy/operator.yaml), else the host name,
/// with the process id.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "lane-operator".to_owned());
    format!("{host}_{}", std::process::id())
}
