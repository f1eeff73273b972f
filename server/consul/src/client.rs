//! A thin client of Consul's HTTP API, on the hyper the workspace already has: only the endpoints
//! `lane` uses, each with Consul's own query parameters, blocking queries (`index` + `wait`,
//! `X-Consul-Index`), and errors that say which Consul and which setting (`CONSUL_HTTP_ADDR`,
//! `CONSUL_HTTP_TOKEN`) to look at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lane_api::{BackendError, ErrorCode, Result};
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// How long a request that is not a blocking query may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time a blocking query gets over its `wait` (Consul adds up to wait/16 of jitter).
const BLOCKING_SLACK: Duration = Duration::from_secs(5);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One Consul agent, as [`Settings`] name it.
#[derive(Clone)]
pub struct Client {
    settings: Arc<Settings>,
    http: HttpClient<Connector, Full<Bytes>>,
}

/// A blocking query: wait until the result's index is above `index`, at most `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    pub index: u64,
    pub wait: Duration,
}

/// A key and its value as Consul's KV store returns it (the value base64-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub value: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawKvPair {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

/// An entry of `/v1/health/service/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: AgentService,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    pub node: String,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(default, rename = "ServiceID")]
    pub service_id: String,
}

impl ServiceEntry {
    /// `passing`, `warning` or `critical`: the worst of its checks (node checks included), as
    /// Consul aggregates them.
    pub fn status(&self) -> &str {
        let mut worst = "passing";
        for c in &self.checks {
            match c.status.as_str() {
                "critical" => return "critical",
                "warning" => worst = "warning",
                "passing" => {}
                // maintenance and anything unknown: not routable.
                _ => return "critical",
            }
        }
        worst
    }

    /// The host to reach it at: the service's address, else its node's (Consul's rule); an IP
    /// address or a DNS name.
    pub fn host(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// The address to reach it: the service's, else its node's (Consul's rule).
    pub fn address(&self) -> String {
        let host = self.host();
        if host.contains(':') {
            format!("[{host}]:{}", self.service.port)
        } else {
            format!("{host}:{}", self.service.port)
        }
    }

    /// The status of its node's `serfHealth` check (whether the node's agent is alive and
    /// reachable, as the servers see it); `None` when the answer has none.
    pub fn node_health(&self) -> Option<&str> {
        self.checks
            .iter()
            .find(|c| c.check_id == "serfHealth" && c.service_id.is_empty())
            .map(|c| c.status.as_str())
    }

    /// The value of tag `<name>=…`.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.service
            .tags
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
    }
}

/// A service registration (`PUT /v1/agent/service/register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDefinition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckDefinition {
    #[serde(rename = "HTTP", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(rename = "TCP", default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    pub interval: String,
    pub timeout: String,
    /// The first status; Consul starts a check `critical` without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<String>,
}

enum Body {
    Empty,
    Bytes(Bytes),
}

struct Answer {
    status: StatusCode,
    body: Bytes,
    index: Option<u64>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client> {
        let roots = root_store(&settings)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client {
            settings: Arc::new(settings),
            http,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        blocking: Option<Blocking>,
        body: Body,
    ) -> Result<Answer> {
        let s = &self.settings;
        let mut params: Vec<(&str, String)> = query.to_vec();
        if let Some(dc) = &s.datacenter {
            params.push(("dc", dc.clone()));
        }
        if let Some(ns) = &s.namespace {
            params.push(("ns", ns.clone()));
        }
        let mut timeout = REQUEST_TIMEOUT;
        if let Some(b) = blocking {
            params.push(("index", b.index.to_string()));
            params.push(("wait", format!("{}ms", b.wait.as_millis().max(1))));
            timeout = b.wait + b.wait / 16 + BLOCKING_SLACK;
        }
        let mut uri = format!("{}{path}", s.base_url);
        for (i, (k, v)) in params.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(k);
            if !v.is_empty() {
                uri.push('=');
                uri.push_str(&encode(v));
            }
        }
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        if let Some(t) = &s.token {
            req = req.header("x-consul-token", t);
        }
        let body = match body {
            Body::Empty => Full::new(Bytes::new()),
            Body::Bytes(b) => Full::new(b),
        };
        let req = req
            .body(body)
            .map_err(|e| BackendError::internal(format!("a Consul request to {uri}: {e}")))?;
        let doing = format!("{method} {path}");
        let response = match tokio::time::timeout(timeout, self.http.request(req)).await {
            Err(_) => {
                return Err(self.unreachable(&doing, &format!("no answer within {timeout:?}")));
            }
            Ok(Err(e)) => return Err(self.unreachable(&doing, &chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let index = response
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = match tokio::time::timeout(timeout, response.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return Err(self.unreachable(&doing, &chain(&e))),
            Err(_) => return Err(self.unreachable(&doing, "the answer did not finish")),
        };
        Ok(Answer {
            status,
            body,
            index,
        })
    }

    fn unreachable(&self, doing: &str, why: &str) -> BackendError {
        let s = &self.settings;
        BackendError::unavailable(format!(
            "cannot reach Consul at {} ({}): {doing}: {why}",
            s.base_url, s.addr_source
        ))
        .with_help("set CONSUL_HTTP_ADDR to your Consul agent (host:port) and check that it is up")
    }

    /// An answer that is not a success, as an error naming what to fix.
    fn refused(&self, doing: &str, a: &Answer) -> BackendError {
        let text = String::from_utf8_lossy(&a.body).trim().to_owned();
        let s = &self.settings;
        let message = format!(
            "Consul at {} answered {doing} with {}: {text}",
            s.base_url, a.status
        );
        match a.status {
            StatusCode::FORBIDDEN if text.contains("ACL not found") => {
                BackendError::unavailable(message).with_help(if s.token.is_some() {
                    "Consul does not know the token in CONSUL_HTTP_TOKEN; set CONSUL_HTTP_TOKEN to \
                     a valid ACL token"
                } else {
                    "set CONSUL_HTTP_TOKEN to an ACL token"
                })
            }
            StatusCode::FORBIDDEN => BackendError::new(ErrorCode::NotOwner, message).with_help(
                "the ACL token in CONSUL_HTTP_TOKEN lacks a permission lane needs; docs/consul.md \
                 lists the policy",
            ),
            StatusCode::UNAUTHORIZED => BackendError::unavailable(message)
                .with_help("set CONSUL_HTTP_TOKEN to a valid ACL token"),
            StatusCode::NOT_FOUND => BackendError::not_found(message),
            StatusCode::BAD_REQUEST => BackendError::invalid(message),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                BackendError::unavailable(message)
            }
            _ if text.contains("No path to datacenter") => BackendError::invalid(message)
                .with_help("[backend] datacenter in lane.toml (or CONSUL_DATACENTER) names no datacenter Consul knows"),
            _ => BackendError::unavailable(message),
        }
    }

    /// `GET /v1/kv/<key>`: the pair, or `None` (404), and the index.
    pub async fn kv_get(&self, key: &str) -> Result<(Option<KvPair>, u64)> {
        let path = format!("/v1/kv/{}", encode_path(key));
        let a = self
            .call(Method::GET, &path, &[], None, Body::Empty)
            .await?;
        let index = a.index.unwrap_or(0);
        match a.status {
            StatusCode::NOT_FOUND => Ok((None, index)),
            StatusCode::OK => Ok((self.pairs(&path, &a)?.into_iter().next(), index)),
            _ => Err(self.refused(&format!("GET {path}"), &a)),
        }
    }

    /// `GET /v1/kv/<prefix>?recurse`, blocking when asked.
    pub async fn kv_list(
        &self,
        prefix: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<KvPair>, u64)> {
        let path = format!("/v1/kv/{}", encode_path(prefix));
        let a = self
            .call(
                Method::GET,
                &path,
                &[("recurse", String::new())],
                blocking,
                Body::Empty,
            )
            .await?;
        let index = a.index.unwrap_or(0);
        match a.status {
            StatusCode::NOT_FOUND => Ok((Vec::new(), index)),
            StatusCode::OK => Ok((self.pairs(&path, &a)?, index)),
            _ => Err(self.refused(&format!("GET {path}?recurse"), &a)),
        }
    }

    fn pairs(&self, path: &str, a: &Answer) -> Result<Vec<KvPair>> {
        let raw: Vec<RawKvPair> = serde_json::from_slice(&a.body).map_err(|e| {
            BackendError::internal(format!(
                "Consul at {} answered GET {path} with JSON lane cannot read: {e}",
                self.settings.base_url
            ))
        })?;
        raw.into_iter()
            .map(|p| {
                let value = match p.value {
                    None => Vec::new(),
                    Some(v) => base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| {
                            BackendError::internal(format!(
                                "Consul KV value of {} is not base64: {e}",
                                p.key
                            ))
                        })?,
                };
                Ok(KvPair {
                    key: p.key,
                    value,
                    create_index: p.create_index,
                    modify_index: p.modify_index,
                })
            })
            .collect()
    }

    /// `PUT /v1/kv/<key>?cas=<index>`: true when written (0: only when the key is new).
    pub async fn kv_cas(&self, key: &str, value: Vec<u8>, cas: u64) -> Result<bool> {
        let path = format!("/v1/kv/{}", encode_path(key));
        let a = self
            .call(
                Method::PUT,
                &path,
                &[("cas", cas.to_string())],
                None,
                Body::Bytes(value.into()),
            )
            .await?;
        self.bool_answer(&format!("PUT {path}"), &a)
    }

    /// `PUT /v1/kv/<key>`: writes the value whatever was there.
    pub async fn kv_put(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let path = format!("/v1/kv/{}", encode_path(key));
        let a = self
            .call(Method::PUT, &path, &[], None, Body::Bytes(value.into()))
            .await?;
        if self.bool_answer(&format!("PUT {path}"), &a)? {
            Ok(())
        } else {
            Err(BackendError::unavailable(format!(
                "Consul at {} did not write {key}",
                self.settings.base_url
            )))
        }
    }

    /// `DELETE /v1/kv/<key>` (deleting a missing key is no error, as in Consul).
    pub async fn kv_delete(&self, key: &str) -> Result<()> {
        let path = format!("/v1/kv/{}", encode_path(key));
        let a = self
            .call(Method::DELETE, &path, &[], None, Body::Empty)
            .await?;
        self.bool_answer(&format!("DELETE {path}"), &a).map(|_| ())
    }

    /// `DELETE /v1/kv/<key>?cas=<index>`: true when deleted.
    pub async fn kv_delete_cas(&self, key: &str, cas: u64) -> Result<bool> {
        let path = format!("/v1/kv/{}", encode_path(key));
        let a = self
            .call(
                Method::DELETE,
                &path,
                &[("cas", cas.to_string())],
                None,
                Body::Empty,
            )
            .await?;
        self.bool_answer(&format!("DELETE {path}"), &a)
    }

    fn bool_answer(&self, doing: &str, a: &Answer) -> Result<bool> {
        if a.status != StatusCode::OK {
            return Err(self.refused(doing, a));
        }
        match std::str::from_utf8(&a.body).map(str::trim) {
            Ok("true") => Ok(true),
            Ok("false") => Ok(false),
            _ => Err(BackendError::internal(format!(
                "Consul at {} answered {doing} with neither true nor false: {}",
                self.settings.base_url,
                String::from_utf8_lossy(&a.body)
            ))),
        }
    }

    /// `GET /v1/health/service/<name>` with `passing` and `tag`s, blocking when asked.
    pub async fn health_service(
        &self,
        name: &str,
        passing: bool,
        tags: &[&str],
        blocking: Option<Blocking>,
    ) -> Result<(Vec<ServiceEntry>, u64)> {
        let path = format!("/v1/health/service/{}", encode_path(name));
        let mut query: Vec<(&str, String)> = tags.iter().map(|t| ("tag", t.to_string())).collect();
        if passing {
            query.push(("passing", String::new()));
        }
        let a = self
            .call(Method::GET, &path, &query, blocking, Body::Empty)
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("GET {path}"), &a));
        }
        let entries = serde_json::from_slice(&a.body).map_err(|e| {
            BackendError::internal(format!(
                "Consul at {} answered GET {path} with JSON lane cannot read: {e}",
                self.settings.base_url
            ))
        })?;
        Ok((entries, a.index.unwrap_or(0)))
    }

    /// `GET /v1/health/state/<state>`: the checks in `state` (`any`, …), blocking when asked. Its
    /// index moves with every check's change, so it is how a watcher hears of health changes.
    pub async fn health_state(
        &self,
        state: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<HealthCheck>, u64)> {
        let path = format!("/v1/health/state/{}", encode_path(state));
        let a = self
            .call(Method::GET, &path, &[], blocking, Body::Empty)
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("GET {path}"), &a));
        }
        let checks = serde_json::from_slice(&a.body).map_err(|e| {
            BackendError::internal(format!(
                "Consul at {} answered GET {path} with JSON lane cannot read: {e}",
                self.settings.base_url
            ))
        })?;
        Ok((checks, a.index.unwrap_or(0)))
    }

    /// `GET /v1/catalog/services`: service names with their tags, blocking when asked.
    pub async fn catalog_services(
        &self,
        blocking: Option<Blocking>,
    ) -> Result<(BTreeMap<String, Vec<String>>, u64)> {
        let path = "/v1/catalog/services";
        let a = self
            .call(Method::GET, path, &[], blocking, Body::Empty)
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("GET {path}"), &a));
        }
        let services: BTreeMap<String, Option<Vec<String>>> = serde_json::from_slice(&a.body)
            .map_err(|e| {
                BackendError::internal(format!(
                    "Consul at {} answered GET {path} with JSON lane cannot read: {e}",
                    self.settings.base_url
                ))
            })?;
        Ok((
            services
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            a.index.unwrap_or(0),
        ))
    }

    /// `PUT /v1/agent/service/register` (replacing an instance with the same id).
    pub async fn register(&self, reg: &Registration) -> Result<()> {
        let path = "/v1/agent/service/register";
        let body = serde_json::to_vec(reg)
            .map_err(|e| BackendError::internal(format!("a registration: {e}")))?;
        let a = self
            .call(Method::PUT, path, &[], None, Body::Bytes(body.into()))
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("PUT {path} ({})", reg.id), &a));
        }
        Ok(())
    }

    /// `GET /v1/agent/services`: the services registered through this agent (its node), by id.
    pub async fn agent_services(&self) -> Result<BTreeMap<String, AgentService>> {
        let path = "/v1/agent/services";
        let a = self.call(Method::GET, path, &[], None, Body::Empty).await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("GET {path}"), &a));
        }
        serde_json::from_slice(&a.body).map_err(|e| {
            BackendError::internal(format!(
                "Consul answered GET {path} with no service map: {e}"
            ))
        })
    }

    /// `PUT /v1/catalog/deregister` of instance `service_id` on node `node`: removes it from the
    /// catalog directly, which Consul documents for nodes whose agent is gone (a live agent would
    /// register it again on its next sync).
    pub async fn catalog_deregister(&self, node: &str, service_id: &str) -> Result<bool> {
        let path = "/v1/catalog/deregister";
        let body = serde_json::json!({ "Node": node, "ServiceID": service_id }).to_string();
        let a = self
            .call(Method::PUT, path, &[], None, Body::Bytes(body.into()))
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.refused(&format!("PUT {path} ({node}/{service_id})"), &a));
        }
        self.bool_answer(&format!("PUT {path}"), &a)
    }

    /// `PUT /v1/agent/service/deregister/<id>`: false when the agent does not know it.
    pub async fn deregister(&self, id: &str) -> Result<bool> {
        let path = format!("/v1/agent/service/deregister/{}", encode_path(id));
        let a = self
            .call(Method::PUT, &path, &[], None, Body::Empty)
            .await?;
        match a.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(&format!("PUT {path}"), &a)),
        }
    }
}

fn root_store(settings: &Settings) -> Result<rustls::RootCertStore> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                BackendError::invalid(format!("CONSUL_CACERT {}: {e}", path.display()))
            })?;
            for c in certs {
                let c = c.map_err(|e| {
                    BackendError::invalid(format!("CONSUL_CACERT {}: {e}", path.display()))
                })?;
                roots.add(c).map_err(|e| {
                    BackendError::invalid(format!("CONSUL_CACERT {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(BackendError::invalid(format!(
                    "CONSUL_CACERT {} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None if settings.base_url.starts_with("https://") => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
        None => {}
    }
    Ok(roots)
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path, keeping its `/`s.
fn encode_path(p: &str) -> String {
    p.split('/').map(encode).collect::<Vec<_>>().join("/")
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
