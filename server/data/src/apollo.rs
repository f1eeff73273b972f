//! A lane's Apollo cluster, through Apollo's Open API (the Portal's `/openapi/v1`): cluster
//! `lane-<id>` of the binding's app, holding the lane's rewritten data-source items, published.
//!
//! The client speaks the documented Open API only: the consumer token in the `Authorization`
//! header (read from the variable the binding's `token_env` names, never from lane.toml), the
//! operator (`dataChangeCreatedBy`, `releasedBy`, `operator`) from the binding's `operator`.
//!
//! - [`provision`]: creates the cluster (a cluster of that name that exists already, left by an
//!   earlier run that crashed before recording it, is **adopted**: the name `lane-<id>` is the
//!   lane's by contract, as `<db>__lane_<id>` is), writes each item with `PUT …?
//!   createIfNotExists=true` (so a rerun overwrites its own items and leaves others alone), and
//!   publishes the namespace.
//! - [`remove`]: deletes the cluster with the newer Open API's `DELETE …/clusters/{cluster}`.
//!   Portals older than that contract answer 405 there (their only cluster delete is the Portal's
//!   super-admin `DELETE /apps/{appId}/envs/{env}/clusters/{cluster}`, which takes a logged-in
//!   admin, not a token); lane then empties the cluster instead (deletes every item of each of
//!   its namespaces and publishes the empty namespace, so nothing of the lane stays in effect)
//!   and says so ([`Removal::Emptied`]). Only `lane-<id>` is ever touched: [`remove`] refuses
//!   any other name, `default` included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lane_core::LaneId;
use lane_core::data::{ApolloOptions, DataOptions, DataSpec, apollo_cluster};
use serde_json::{Value, json};

use crate::error::{DataError, Result};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One Apollo Portal, with one consumer token.
#[derive(Clone)]
pub struct Apollo {
    base: String,
    token: String,
    token_env: String,
    http: HttpClient<Connector, Full<Bytes>>,
}

/// What [`remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The cluster is deleted.
    Deleted,
    /// There was no such cluster.
    Absent,
    /// The Portal has no cluster delete in its Open API: the cluster's items were deleted and
    /// the empty namespaces published; an Apollo admin can delete the empty cluster.
    Emptied { items: usize },
}

/// An item of a namespace, as exported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemRecord {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub comment: String,
}

/// A namespace of a cluster with its items.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceItems {
    pub namespace: String,
    /// `properties`, `yaml`, `json`, … (information: a namespace's format is the app's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub items: Vec<ItemRecord>,
}

/// What [`provision`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub cluster: String,
    /// `false`: the cluster existed and was adopted.
    pub created: bool,
    /// The items written.
    pub items: usize,
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// The Apollo options of a binding, or an error naming it.
pub fn options(spec: &DataSpec) -> Result<&ApolloOptions> {
    match &spec.options {
        DataOptions::Apollo(a) => Ok(a),
        _ => Err(DataError::Invalid(format!(
            "binding `{}` is not an apollo binding",
            spec.name
        ))),
    }
}

impl Apollo {
    /// The client for an apollo binding: its Portal and the token read from its `token_env`.
    pub fn for_binding(spec: &DataSpec) -> Result<Apollo> {
        let a = options(spec)?;
        Apollo::new(&spec.address, a.token.as_deref(), &a.token_env)
    }

    /// `address` is the Portal (`http://apollo-portal:8070`); `token` the consumer token, read
    /// from the variable `token_env` (named in errors).
    pub fn new(address: &str, token: Option<&str>, token_env: &str) -> Result<Apollo> {
        let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            DataError::Invalid(format!(
                "no Apollo Open API token: set the environment variable {token_env} (the \
                 binding's `token_env`) to the token of a third-party app from the Portal's open \
                 platform page, where `lane` runs"
            ))
        })?;
        let base = address.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(DataError::Invalid(format!(
                "`{base}` is not an Apollo Portal address (http:// or https://)"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        if base.starts_with("https://") {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| DataError::Invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Apollo {
            base,
            token: token.to_owned(),
            token_env: token_env.to_owned(),
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The Portal's address.
    pub fn address(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let uri = format!("{}{path}", self.base);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("authorization", &self.token)
            .header("content-type", "application/json;charset=UTF-8")
            .body(Full::new(body))
            .map_err(|e| DataError::Invalid(format!("an Apollo request to {uri}: {e}")))?;
        let unreachable = |reason: String| DataError::Unreachable {
            what: "Apollo",
            address: self.base.clone(),
            reason: format!("{method} {path}: {reason}"),
        };
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req)).await {
            Err(_) => return Err(unreachable(format!("no answer within {REQUEST_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(unreachable(chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let bytes =
            match tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => return Err(unreachable(chain(&e))),
                Err(_) => return Err(unreachable("the answer did not finish".into())),
            };
        Ok((status, bytes))
    }

    /// An answer that is not a success, as an error saying what to fix.
    fn refused(&self, doing: &str, app: &str, status: StatusCode, body: &[u8]) -> DataError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        let env = &self.token_env;
        match status {
            StatusCode::UNAUTHORIZED => DataError::Auth {
                what: "Apollo's Open API",
                address: self.base.clone(),
                reason: format!(
                    "{doing}: 401 Unauthorized: the token in {env} (the binding's `token_env`) \
                     is not a valid consumer token; set {env} to the token of a third-party \
                     app from the Portal's open platform page"
                ),
            },
            StatusCode::FORBIDDEN => DataError::Auth {
                what: "Apollo's Open API",
                address: self.base.clone(),
                reason: format!(
                    "{doing}: 403 Forbidden: the token in {env} (the binding's `token_env`) may \
                     not manage app `{app}`; an Apollo admin grants its third-party app \
                     management of `{app}` on the Portal's open platform page"
                ),
            },
            _ => DataError::Server {
                what: "Apollo",
                address: self.base.clone(),
                message: format!("{doing}: {status}: {message}"),
            },
        }
    }

    fn cluster_path(env: &str, app: &str) -> String {
        format!(
            "/openapi/v1/envs/{}/apps/{}/clusters",
            encode(env),
            encode(app)
        )
    }

    fn namespace_path(env: &str, app: &str, cluster: &str, ns: &str) -> String {
        format!(
            "{}/{}/namespaces/{}",
            Self::cluster_path(env, app),
            encode(cluster),
            encode(ns)
        )
    }

    /// The body of a `GET` of `path` that Apollo answered with success; another status is
    /// refused while reading `what`.
    async fn get(&self, path: &str, what: &str, app: &str) -> Result<Bytes> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(self.refused(&format!("reading {what}"), app, status, &body));
        }
        Ok(body)
    }

    /// A body that should have been JSON: `subject` is what it is ("… is", "… are").
    fn not_json(&self, subject: &str, e: serde_json::Error) -> DataError {
        DataError::Server {
            what: "Apollo",
            address: self.base.clone(),
            message: format!("{subject} not JSON: {e}"),
        }
    }

    /// Whether `cluster` of `app` exists in `env`.
    pub async fn cluster_exists(&self, env: &str, app: &str, cluster: &str) -> Result<bool> {
        let path = format!("{}/{}", Self::cluster_path(env, app), encode(cluster));
        let (status, body) = self.call(Method::GET, &path, None).await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.refused(&format!("reading cluster `{cluster}`"), app, s, &body)),
        }
    }

    /// Creates `cluster`; `Ok(false)` when it exists already (Apollo answers 400 `cluster
    /// already exist.`; the existence is checked first so other 400s stay errors).
    pub async fn create_cluster(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        operator: &str,
    ) -> Result<bool> {
        if self.cluster_exists(env, app, cluster).await? {
            return Ok(false);
        }
        let body = json!({"name": cluster, "appId": app, "dataChangeCreatedBy": operator});
        let (status, answer) = self
            .call(Method::POST, &Self::cluster_path(env, app), Some(body))
            .await?;
        match status {
            StatusCode::OK | StatusCode::CREATED => Ok(true),
            // Made meanwhile by another run: the lane's all the same.
            StatusCode::BAD_REQUEST if self.cluster_exists(env, app, cluster).await? => Ok(false),
            s => Err(self.refused(
                &format!("creating cluster `{cluster}` of app `{app}` in {env}"),
                app,
                s,
                &answer,
            )),
        }
    }

    /// Sets item `key` to `value` in namespace `ns` (created when missing).
    #[allow(clippy::too_many_arguments)]
    pub async fn set_item(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
        key: &str,
        value: &str,
        operator: &str,
    ) -> Result<()> {
        self.put_item(
            env,
            app,
            cluster,
            ns,
            key,
            value,
            "set by lane: the lane's own data source",
            operator,
        )
        .await
    }

    /// Sets item `key` to `value` with `comment` in namespace `ns` (created when missing).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_item(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
        key: &str,
        value: &str,
        comment: &str,
        operator: &str,
    ) -> Result<()> {
        let path = format!(
            "{}/items/{}?createIfNotExists=true",
            Self::namespace_path(env, app, cluster, ns),
            encode(key)
        );
        let body = json!({
            "key": key,
            "value": value,
            "comment": comment,
            "dataChangeCreatedBy": operator,
            "dataChangeLastModifiedBy": operator,
        });
        let (status, answer) = self.call(Method::PUT, &path, Some(body)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.refused(
                &format!("writing item `{key}` of namespace `{ns}` in cluster `{cluster}`"),
                app,
                status,
                &answer,
            ))
        }
    }

    /// The namespaces of `cluster` with their items (key → value; items without a key, the
    /// comment and blank lines of a properties namespace, left out).
    pub async fn namespaces(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        Ok(self
            .namespace_items(env, app, cluster)
            .await?
            .into_iter()
            .map(|n| {
                let items = n.items.into_iter().map(|i| (i.key, i.value)).collect();
                (n.namespace, items)
            })
            .collect())
    }

    /// The namespaces of `cluster` with their items as edited (published or not), with comments
    /// and each namespace's format. Items without a key (comment and blank lines of a
    /// properties namespace) are left out.
    pub async fn namespace_items(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
    ) -> Result<Vec<NamespaceItems>> {
        let path = format!(
            "{}/{}/namespaces",
            Self::cluster_path(env, app),
            encode(cluster)
        );
        let what = format!("the namespaces of cluster `{cluster}`");
        let body = self.get(&path, &what, app).await?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| self.not_json(&format!("{what} are"), e))?;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let mut out = Vec::new();
        for n in v.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(name) = n.get("namespaceName").and_then(Value::as_str) else {
                continue;
            };
            let items = n
                .get("items")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|i| !text(i, "key").is_empty())
                .map(|i| ItemRecord {
                    key: text(i, "key"),
                    value: text(i, "value"),
                    comment: text(i, "comment"),
                })
                .collect();
            out.push(NamespaceItems {
                namespace: name.to_owned(),
                format: Some(text(n, "format")).filter(|f| !f.is_empty()),
                items,
            });
        }
        Ok(out)
    }

    /// The configurations (key → value) of namespace `ns`'s latest release; `None` when the
    /// namespace was never published.
    pub async fn latest_release(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let path = format!(
            "{}/releases/latest",
            Self::namespace_path(env, app, cluster, ns)
        );
        let what = format!("the latest release of namespace `{ns}` of cluster `{cluster}`");
        let body = self.get(&path, &what, app).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| self.not_json(&format!("the latest release of namespace `{ns}` is"), e))?;
        if v.is_null() {
            return Ok(None);
        }
        let configurations = match v.get("configurations") {
            // The Open API's release DTO holds a map; some Portals send it as a JSON string.
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            Some(c) => serde_json::from_value(c.clone()).ok(),
            None => None,
        };
        configurations.map(Some).ok_or_else(|| DataError::Server {
            what: "Apollo",
            address: self.base.clone(),
            message: format!("{what} has no `configurations` map"),
        })
    }

    /// Deletes item `key` of namespace `ns`.
    pub async fn delete_item(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
        key: &str,
        operator: &str,
    ) -> Result<()> {
        let path = format!(
            "{}/items/{}?operator={}",
            Self::namespace_path(env, app, cluster, ns),
            encode(key),
            encode(operator)
        );
        let (status, body) = self.call(Method::DELETE, &path, None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.refused(
                &format!("deleting item `{key}` of cluster `{cluster}`"),
                app,
                status,
                &body,
            ))
        }
    }

    /// Publishes namespace `ns` of `cluster`.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
        title: &str,
        comment: &str,
        operator: &str,
    ) -> Result<()> {
        let path = format!("{}/releases", Self::namespace_path(env, app, cluster, ns));
        let body =
            json!({"releaseTitle": title, "releaseComment": comment, "releasedBy": operator});
        let (status, answer) = self.call(Method::POST, &path, Some(body)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.refused(
                &format!("publishing namespace `{ns}` of cluster `{cluster}`"),
                app,
                status,
                &answer,
            ))
        }
    }

    /// Deletes `cluster` (see the module's notes for Portals without the endpoint).
    pub async fn delete_cluster(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        operator: &str,
    ) -> Result<Removal> {
        if !self.cluster_exists(env, app, cluster).await? {
            return Ok(Removal::Absent);
        }
        let path = format!(
            "{}/{}?operator={}",
            Self::cluster_path(env, app),
            encode(cluster),
            encode(operator)
        );
        let (status, body) = self.call(Method::DELETE, &path, None).await?;
        match status {
            s if s.is_success() => Ok(Removal::Deleted),
            StatusCode::NOT_FOUND => Ok(Removal::Absent),
            StatusCode::METHOD_NOT_ALLOWED => {
                let mut items = 0;
                for (ns, keys) in self.namespaces(env, app, cluster).await? {
                    for key in keys.keys() {
                        self.delete_item(env, app, cluster, &ns, key, operator)
                            .await?;
                        items += 1;
                    }
                    self.publish(
                        env,
                        app,
                        cluster,
                        &ns,
                        "lane teardown",
                        "the lane is gone: its items are removed",
                        operator,
                    )
                    .await?;
                }
                Ok(Removal::Emptied { items })
            }
            s => Err(self.refused(
                &format!("deleting cluster `{cluster}` of app `{app}` in {env}"),
                app,
                s,
                &body,
            )),
        }
    }
}

/// Gives lane `lane` its Apollo cluster for binding `spec`, holding `items` (from
/// [`lane_core::data::apollo_items`]) in the binding's namespace, published.
pub async fn provision(
    spec: &DataSpec,
    lane: &LaneId,
    items: &[(String, String)],
) -> Result<Provisioned> {
    let a = options(spec)?;
    let client = Apollo::for_binding(spec)?;
    let cluster = apollo_cluster(lane);
    let created = client
        .create_cluster(&a.env, &a.app, &cluster, &a.operator)
        .await?;
    for (key, value) in items {
        client
            .set_item(
                &a.env,
                &a.app,
                &cluster,
                &a.namespace,
                key,
                value,
                &a.operator,
            )
            .await?;
    }
    client
        .publish(
            &a.env,
            &a.app,
            &cluster,
            &a.namespace,
            &format!("lane {lane}"),
            &format!("lane `{lane}`'s own data sources, set by lane"),
            &a.operator,
        )
        .await?;
    Ok(Provisioned {
        cluster,
        created,
        items: items.len(),
    })
}

/// The guard for an Apollo cluster: `cluster` must be exactly lane `lane`'s, `lane-<id>`.
pub fn check_cluster(lane: &LaneId, cluster: &str) -> Result<()> {
    let own = apollo_cluster(lane);
    if cluster != own {
        return Err(DataError::Guard(format!(
            "Apollo cluster `{cluster}` is not lane `{lane}`'s (that is `{own}`); nothing was \
             deleted"
        )));
    }
    Ok(())
}

/// Removes lane `lane`'s cluster `cluster` of binding `spec`, after the guard.
pub async fn remove(spec: &DataSpec, lane: &LaneId, cluster: &str) -> Result<Removal> {
    check_cluster(lane, cluster)?;
    let a = options(spec)?;
    Apollo::for_binding(spec)?
        .delete_cluster(&a.env, &a.app, cluster, &a.operator)
        .await
}

/// The number of items in the lane's cluster, over its namespaces (`lane data ls`).
pub async fn item_count(spec: &DataSpec, cluster: &str) -> Result<usize> {
    let a = options(spec)?;
    let ns = Apollo::for_binding(spec)?
        .namespaces(&a.env, &a.app, cluster)
        .await?;
    Ok(ns.values().map(BTreeMap::len).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_takes_only_the_lanes_cluster() {
        let lane: LaneId = "feat-a".parse().unwrap();
        assert!(check_cluster(&lane, "lane-feat-a").is_ok());
        for bad in [
            "default",
            "lane-feat-b",
            "lane-feat-a-x",
            "",
            "lane-feat-a/../default",
        ] {
            assert!(
                matches!(check_cluster(&lane, bad), Err(DataError::Guard(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("lane-a.b_c~"), "lane-a.b_c~");
        assert_eq!(encode("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn no_token_names_the_setting() {
        let err = Apollo::new("http://p:8070", None, "CART_TOKEN")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CART_TOKEN"), "{err}");
    }
}
