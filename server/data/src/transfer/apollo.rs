//! Apollo in a lane data file: the items (key, value, comment) of every namespace of the lane's
//! cluster `lane-<id>`, one frame per namespace (tag 40, JSON [`NamespaceItems`]), read through the
//! Open API as edited in the Portal.
//!
//! Items the binding's data-source rewriting owns (the keys of its `items`, in its `namespace`:
//! the lane's rewritten addresses) are the lane's own: an export leaves them out and an import
//! neither sets nor deletes them, so a lane never takes another lane's database address.
//!
//! Apollo's clients only see *released* configuration, so an import stages by editing the lane
//! cluster's items until each namespace of the file holds exactly the file's items (create,
//! update, delete), and its swap is the *publish* of those namespaces. A namespace the file does
//! not hold is reset to its latest release (an interrupted import's unpublished edits are undone
//! by the next import). An import that fails, is cancelled, or is killed before the publish
//! leaves the released configuration as it was; a failure or cancel also resets its edits to the
//! release, a kill leaves them unpublished until the next import. Each namespace's publish is
//! atomic; a file of several namespaces is published one namespace after another.

use std::collections::{BTreeMap, BTreeSet};

use lane_core::LaneId;
use lane_core::data::DataSpec;

use super::format::{self, Frame, Section, SectionEnd, TAG_APOLLO_NAMESPACE, Writer};
use super::{Cancel, OnProgress, Progress};
use crate::apollo::{Apollo, ItemRecord, NamespaceItems, check_cluster, options};
use crate::error::{DataError, Result};

/// The keys of `namespace` the binding's rewriting owns (none in other namespaces).
fn owned<'a>(spec: &'a DataSpec, namespace: &str) -> Result<BTreeSet<&'a str>> {
    let a = options(spec)?;
    Ok(if a.namespace == namespace {
        a.items.keys().map(String::as_str).collect()
    } else {
        BTreeSet::new()
    })
}

/// The lane's cluster `target`, checked by the guard and to exist.
async fn own_cluster(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<Apollo> {
    check_cluster(lane, target)?;
    let a = options(spec)?;
    let client = Apollo::for_binding(spec)?;
    if !client.cluster_exists(&a.env, &a.app, target).await? {
        return Err(DataError::Invalid(format!(
            "binding `{}`: lane `{lane}` has no Apollo cluster `{target}` of app `{}` in {} on {} \
             (deploy the service into the lane to create it)",
            spec.name,
            a.app,
            a.env,
            client.address()
        )));
    }
    Ok(client)
}

/// Writes the section of an apollo binding: every namespace of the lane's cluster with its
/// items, the owned ones left out.
pub async fn export<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    lane: &LaneId,
    spec: &DataSpec,
    target: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let client = own_cluster(lane, spec, target).await?;
    let a = options(spec)?;
    let namespaces = client.namespace_items(&a.env, &a.app, target).await?;
    w.json(
        format::TAG_SECTION,
        &Section {
            binding: spec.name.clone(),
            kind: "apollo".into(),
            source: target.to_owned(),
            charset: None,
        },
    )
    .await?;
    let total: u64 = namespaces.iter().map(|n| n.items.len() as u64).sum();
    let mut done = 0;
    for mut n in namespaces.clone() {
        cancel.check()?;
        let own = owned(spec, &n.namespace)?;
        n.items.retain(|i| !own.contains(i.key.as_str()));
        done += n.items.len() as u64;
        w.json(TAG_APOLLO_NAMESPACE, &n).await?;
        progress(&Progress {
            binding: spec.name.clone(),
            step: "export",
            done,
            total: total.max(done),
            unit: "items",
        });
    }
    let end = SectionEnd {
        binding: spec.name.clone(),
        items: done,
        objects: namespaces.len() as u64,
    };
    w.json(format::TAG_SECTION_END, &end).await?;
    Ok(end)
}

/// An apollo binding's import: the file's namespaces, staged as unpublished edits of the lane's
/// cluster at the section's end, published by the swap.
pub struct Staging {
    client: Apollo,
    spec: DataSpec,
    lane: LaneId,
    cluster: String,
    /// The cluster's namespaces when the import began.
    present: BTreeSet<String>,
    file: Vec<NamespaceItems>,
    sectioned: bool,
    /// Edits were made (the abort resets them unless published).
    edited: bool,
    /// Namespaces to publish.
    publish: Vec<String>,
    published: bool,
}

impl Staging {
    /// Checks the lane's cluster (the guard: exactly `lane-<id>`; and that it exists).
    pub async fn prepare(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<Staging> {
        let client = own_cluster(lane, spec, target).await?;
        let a = options(spec)?;
        let present = client
            .namespace_items(&a.env, &a.app, target)
            .await?
            .into_iter()
            .map(|n| n.namespace)
            .collect();
        Ok(Staging {
            client,
            spec: spec.clone(),
            lane: lane.clone(),
            cluster: target.to_owned(),
            present,
            file: Vec::new(),
            sectioned: false,
            edited: false,
            publish: Vec::new(),
            published: false,
        })
    }

    pub fn section(&mut self, s: &Section) -> Result<()> {
        super::expect_kind(s, "apollo")?;
        self.sectioned = true;
        Ok(())
    }

    /// Takes one namespace of the file (checked; applied at the section's end).
    pub fn frame(&mut self, f: &Frame) -> Result<u64> {
        if !self.sectioned || f.tag != TAG_APOLLO_NAMESPACE {
            return Err(DataError::Format(format!(
                "a frame of tag {} in an Apollo section",
                f.tag
            )));
        }
        let n: NamespaceItems = f.json("Apollo namespace")?;
        if self.file.iter().any(|m| m.namespace == n.namespace) {
            return Err(DataError::Format(format!(
                "namespace `{}` appears twice in the file",
                n.namespace
            )));
        }
        let mut keys = BTreeSet::new();
        for i in &n.items {
            if i.key.is_empty() || !keys.insert(i.key.as_str()) {
                return Err(DataError::Format(format!(
                    "namespace `{}` of the file holds an empty or repeated key `{}`",
                    n.namespace, i.key
                )));
            }
        }
        if !self.present.contains(&n.namespace) {
            let a = options(&self.spec)?;
            return Err(DataError::Invalid(format!(
                "binding `{}`: the file holds namespace `{}`, which cluster `{}` of app `{}` \
                 does not have (the app's namespaces: {}); add the namespace to the app in the \
                 Portal first",
                self.spec.name,
                n.namespace,
                self.cluster,
                a.app,
                self.present
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let count = n.items.len() as u64;
        self.file.push(n);
        Ok(count)
    }

    /// Checks the counts, then edits the cluster's items to equal the file's (and resets the
    /// namespaces the file does not hold to their latest release). Nothing is published.
    pub async fn end(&mut self, e: &SectionEnd, cancel: &Cancel) -> Result<(u64, u64)> {
        let items: u64 = self.file.iter().map(|n| n.items.len() as u64).sum();
        let objects = self.file.len() as u64;
        if e.items != items || e.objects != objects {
            return Err(DataError::Format(format!(
                "section `{}` closes with {} items in {} namespaces but holds {items} in \
                 {objects}",
                e.binding, e.items, e.objects
            )));
        }
        let file = std::mem::take(&mut self.file);
        let wanted: BTreeMap<&str, &NamespaceItems> =
            file.iter().map(|n| (n.namespace.as_str(), n)).collect();
        self.edited = true;
        self.publish = self.converge(&wanted, cancel).await?;
        Ok((items, objects))
    }

    /// Edits every namespace of the cluster: those in `wanted` to hold exactly its items, the
    /// others their latest release; owned items are left as they are. Returns the namespaces of
    /// `wanted` whose items now differ from their latest release.
    async fn converge(
        &self,
        wanted: &BTreeMap<&str, &NamespaceItems>,
        cancel: &Cancel,
    ) -> Result<Vec<String>> {
        let a = options(&self.spec)?;
        let (env, app, cluster, operator) = (&a.env, &a.app, &self.cluster, &a.operator);
        let mut changed = Vec::new();
        for current in self.client.namespace_items(env, app, cluster).await? {
            cancel.check()?;
            let ns = current.namespace.as_str();
            let own = owned(&self.spec, ns)?;
            let released = self.client.latest_release(env, app, cluster, ns).await?;
            let have: BTreeMap<&str, &ItemRecord> =
                current.items.iter().map(|i| (i.key.as_str(), i)).collect();
            let target: BTreeMap<String, (String, String)> = match wanted.get(ns) {
                Some(n) => n
                    .items
                    .iter()
                    .filter(|i| !own.contains(i.key.as_str()))
                    .map(|i| (i.key.clone(), (i.value.clone(), i.comment.clone())))
                    .collect(),
                None => released
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| !own.contains(k.as_str()))
                    .map(|(k, v)| {
                        let comment = have.get(k.as_str()).map(|i| i.comment.clone());
                        (k, (v, comment.unwrap_or_default()))
                    })
                    .collect(),
            };
            for key in have.keys().filter(|k| !own.contains(*k)) {
                if !target.contains_key(*key) {
                    self.client
                        .delete_item(env, app, cluster, ns, key, operator)
                        .await?;
                }
            }
            for (key, (value, comment)) in &target {
                let same = have
                    .get(key.as_str())
                    .is_some_and(|i| i.value == *value && i.comment == *comment);
                if !same {
                    self.client
                        .put_item(env, app, cluster, ns, key, value, comment, operator)
                        .await?;
                }
            }
            if wanted.contains_key(ns) {
                // What clients would see after the publish, against what they see now.
                let mut after: BTreeMap<String, String> = target
                    .iter()
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect();
                for i in current
                    .items
                    .iter()
                    .filter(|i| own.contains(i.key.as_str()))
                {
                    after.insert(i.key.clone(), i.value.clone());
                }
                let differs = match &released {
                    Some(r) => *r != after,
                    None => !after.is_empty(),
                };
                if differs {
                    changed.push(ns.to_owned());
                }
            }
        }
        Ok(changed)
    }

    /// Publishes the namespaces the import changed: Apollo's clients get the file's items.
    pub async fn swap(&mut self) -> Result<()> {
        let a = options(&self.spec)?;
        for ns in &self.publish {
            self.client
                .publish(
                    &a.env,
                    &a.app,
                    &self.cluster,
                    ns,
                    &format!("lane {} import", self.lane),
                    &format!("lane `{}`: items replaced by `lane data import`", self.lane),
                    &a.operator,
                )
                .await?;
        }
        self.published = true;
        Ok(())
    }

    /// Unless published: resets the edits this import made to the latest release.
    pub async fn abort(self) {
        if self.published || !self.edited {
            return;
        }
        if let Err(e) = self.converge(&BTreeMap::new(), &Cancel::new()).await {
            tracing::warn!(lane = %self.lane, binding = %self.spec.name, error = %e, "could not reset the unpublished edits of the lane's Apollo cluster; the next import does");
        }
    }
}
