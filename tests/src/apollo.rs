//! An Apollo Open API test double: the part of Apollo's Portal Open API (`/openapi/v1/...`) that
//! lane uses, answering as Apollo's Open API documentation ("Apollo open platform", section III
//! and IV) and the Portal and Admin Service controllers behind it answer. Apollo's server cannot
//! run here; this is test support code, never a backend.
//!
//! Modelled, as documented:
//! - authentication: the consumer token in the `Authorization` header (the token itself, no
//!   scheme); missing or unknown is `401 Unauthorized` (the Portal's
//!   `ConsumerAuthenticationFilter`), before anything else;
//! - authorisation: a token is granted apps (the "authorise for the app" of the open-platform
//!   page); creating or deleting a cluster, writing items and publishing in an app the token is
//!   not granted is `403 Forbidden`. Reads need only a valid token (the Portal's GET controllers
//!   carry no permission check);
//! - `GET /openapi/v1/apps/{appId}/envclusters`;
//! - `GET /openapi/v1/envs/{env}/apps/{appId}/clusters/{cluster}`: the cluster, or 404;
//! - `POST /openapi/v1/envs/{env}/apps/{appId}/clusters` with `{name, appId,
//!   dataChangeCreatedBy}`: 400 when `appId` differs from the path's ("AppId not equal"), when
//!   `name` or `dataChangeCreatedBy` is empty, when the name is not a valid cluster name, when the
//!   user does not exist, and when the cluster exists (`cluster already exist.`, the Admin
//!   Service's answer, passed through by the Portal). A new cluster gets an instance of each of
//!   the app's private namespaces (`application` and [`Options::namespaces`]), as
//!   `autoCreatePrivateNamespace` does;
//! - `DELETE /openapi/v1/envs/{env}/apps/{appId}/clusters/{cluster}?operator=`: the cluster
//!   delete of the newer Open API contract (apolloconfig/apollo-openapi `deleteCluster`): 200,
//!   404 for a missing cluster, 400 for `default` ("can not delete default cluster!") and for a
//!   missing or unknown operator, 403. Older Portals have no such endpoint: with
//!   [`Options::delete_cluster`] off the double answers `405 Method Not Allowed` there, as
//!   Spring MVC does for a path whose only mapping is GET;
//! - `GET .../clusters/{cluster}/namespaces` and `.../namespaces/{ns}`: namespaces with their
//!   items (404 for a missing cluster or namespace);
//! - items: `GET .../items` (paged: `page`, `size`), `GET .../items/{key}` (404 when missing),
//!   `POST .../items` (`key` and `dataChangeCreatedBy` required, the user must exist, comment at
//!   most 256, key at most 128, value at most 20000 characters, 400 when the key exists),
//!   `PUT .../items/{key}` (`key` equal to the path's, `dataChangeLastModifiedBy` required; with
//!   `createIfNotExists=true` a missing item is created and then needs `dataChangeCreatedBy`;
//!   without, a missing item is 404), `DELETE .../items/{key}?operator=` (400 "item not exists"
//!   for a missing one, 400 without an existing operator);
//! - `POST .../namespaces/{ns}/releases` with `{releaseTitle, releaseComment, releasedBy}`:
//!   `releaseTitle` and `releasedBy` required, releasedBy must exist; the release is a snapshot
//!   of the namespace's items (`configurations`); `GET .../releases/latest`;
//! - errors as Apollo's exception handler writes them: `{"status", "message", "timestamp",
//!   "exception"}`; unknown paths 404, a known path with another method 405.
//!
//! Inferred where the documentation does not say (noted so nobody mistakes it for Apollo's
//! word): an unknown `env` is a 400 (the Portal's `Env.valueOf` throws on an unknown name); the
//! length limits (128/20000/256) are checked by the double at the Portal, where Apollo checks
//! some of them in the Admin Service (same status, 400); `releases/latest` of a namespace never
//! published answers 200 with an empty body (the controller returns null); the namespace lock of
//! production environments (`namespace.lock.switch`) is not modelled; the rate limit of tokens is
//! not modelled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the double starts.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: Option<SocketAddr>,
    /// Token → the apps it may manage.
    pub tokens: HashMap<String, Vec<String>>,
    /// Portal users (operators).
    pub users: Vec<String>,
    /// Environments the Portal manages.
    pub envs: Vec<String>,
    /// Apps, each with cluster `default` in every environment and private namespace
    /// `application`.
    pub apps: Vec<String>,
    /// Whether `DELETE .../clusters/{cluster}` exists (newer Open API); 405 when not.
    pub delete_cluster: bool,
    /// More private namespaces of every app, besides `application` (each cluster has an
    /// instance of each, as Apollo gives every cluster the app's private namespaces).
    pub namespaces: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: None,
            tokens: HashMap::new(),
            users: vec!["apollo".into()],
            envs: ["DEV", "FAT", "UAT", "PRO"].map(String::from).to_vec(),
            apps: Vec::new(),
            delete_cluster: true,
            namespaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Item {
    value: String,
    comment: String,
    created_by: String,
    modified_by: String,
    created: String,
    modified: String,
}

#[derive(Debug, Clone)]
struct Release {
    id: u64,
    name: String,
    comment: String,
    by: String,
    time: String,
    configurations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
struct Namespace {
    items: BTreeMap<String, Item>,
    releases: Vec<Release>,
}

#[derive(Debug, Clone)]
struct Cluster {
    created_by: String,
    modified_by: String,
    created: String,
    namespaces: BTreeMap<String, Namespace>,
}

#[derive(Debug, Default)]
struct State {
    /// (env, app, cluster) → cluster.
    clusters: BTreeMap<(String, String, String), Cluster>,
    next_release: u64,
}

struct Shared {
    opts: Options,
    apps: HashSet<String>,
    state: Mutex<State>,
    requests: Mutex<Vec<String>>,
}

/// A running double; stops when dropped.
pub struct ApolloDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The private namespace every app has.
pub const APPLICATION: &str = "application";

/// A new cluster's namespaces: `application` and the [`Options::namespaces`], empty.
fn app_namespaces(opts: &Options) -> BTreeMap<String, Namespace> {
    std::iter::once(APPLICATION.to_owned())
        .chain(opts.namespaces.iter().cloned())
        .map(|n| (n, Namespace::default()))
        .collect()
}

impl ApolloDouble {
    pub fn start(opts: Options) -> std::io::Result<ApolloDouble> {
        let std_listener =
            std::net::TcpListener::bind(opts.addr.unwrap_or(([127, 0, 0, 1], 0).into()))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let mut state = State::default();
        let now = timestamp();
        let private = app_namespaces(&opts);
        for app in &opts.apps {
            for env in &opts.envs {
                state.clusters.insert(
                    (env.clone(), app.clone(), "default".into()),
                    Cluster {
                        created_by: "apollo".into(),
                        modified_by: "apollo".into(),
                        created: now.clone(),
                        namespaces: private.clone(),
                    },
                );
            }
        }
        let shared = Arc::new(Shared {
            apps: opts.apps.iter().cloned().collect(),
            opts,
            state: Mutex::new(state),
            requests: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("apollo-double".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("a tokio listener");
                    tokio::select! {
                        _ = serve(s, listener) => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(ApolloDouble {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: the Portal address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether cluster `cluster` of `app` exists in `env`.
    pub fn has_cluster(&self, env: &str, app: &str, cluster: &str) -> bool {
        self.shared
            .state
            .lock()
            .unwrap()
            .clusters
            .contains_key(&key(env, app, cluster))
    }

    /// The clusters of `app` in `env`.
    pub fn clusters(&self, env: &str, app: &str) -> Vec<String> {
        self.shared
            .state
            .lock()
            .unwrap()
            .clusters
            .keys()
            .filter(|(e, a, _)| e == env && a == app)
            .map(|(_, _, c)| c.clone())
            .collect()
    }

    /// The items (key → value) of a namespace of a cluster, `None` when either is missing.
    pub fn items(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
    ) -> Option<BTreeMap<String, String>> {
        let st = self.shared.state.lock().unwrap();
        let n = st
            .clusters
            .get(&key(env, app, cluster))?
            .namespaces
            .get(ns)?;
        Some(
            n.items
                .iter()
                .map(|(k, i)| (k.clone(), i.value.clone()))
                .collect(),
        )
    }

    /// The items (key → (value, comment)) of a namespace of a cluster, `None` when either is
    /// missing.
    pub fn items_with_comments(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
    ) -> Option<BTreeMap<String, (String, String)>> {
        let st = self.shared.state.lock().unwrap();
        let n = st
            .clusters
            .get(&key(env, app, cluster))?
            .namespaces
            .get(ns)?;
        Some(
            n.items
                .iter()
                .map(|(k, i)| (k.clone(), (i.value.clone(), i.comment.clone())))
                .collect(),
        )
    }

    /// The number of releases of a namespace (0 when never published or missing).
    pub fn release_count(&self, env: &str, app: &str, cluster: &str, ns: &str) -> usize {
        let st = self.shared.state.lock().unwrap();
        st.clusters
            .get(&key(env, app, cluster))
            .and_then(|c| c.namespaces.get(ns))
            .map_or(0, |n| n.releases.len())
    }

    /// The configurations of the latest release of a namespace, `None` when never published.
    pub fn latest_release(
        &self,
        env: &str,
        app: &str,
        cluster: &str,
        ns: &str,
    ) -> Option<BTreeMap<String, String>> {
        let st = self.shared.state.lock().unwrap();
        let n = st
            .clusters
            .get(&key(env, app, cluster))?
            .namespaces
            .get(ns)?;
        n.releases.last().map(|r| r.configurations.clone())
    }

    /// Creates a cluster (with the app's private namespaces) and items in its `application`
    /// namespace, as a person in the Portal would: a leftover of an earlier run, for tests.
    pub fn seed_cluster(&self, env: &str, app: &str, cluster: &str, items: &[(&str, &str)]) {
        let now = timestamp();
        let mut ns = Namespace::default();
        for (k, v) in items {
            ns.items.insert(
                (*k).into(),
                Item {
                    value: (*v).into(),
                    comment: String::new(),
                    created_by: "apollo".into(),
                    modified_by: "apollo".into(),
                    created: now.clone(),
                    modified: now.clone(),
                },
            );
        }
        self.shared.state.lock().unwrap().clusters.insert(
            key(env, app, cluster),
            Cluster {
                created_by: "apollo".into(),
                modified_by: "apollo".into(),
                created: now,
                namespaces: BTreeMap::from([(APPLICATION.into(), ns)]),
            },
        );
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for ApolloDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn key(env: &str, app: &str, cluster: &str) -> (String, String, String) {
    (env.to_owned(), app.to_owned(), cluster.to_owned())
}

async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let s = shared.clone();
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn json_reply(status: StatusCode, value: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json;charset=UTF-8".parse().unwrap(),
    );
    r
}

fn ok(value: Value) -> Resp {
    json_reply(StatusCode::OK, &value)
}

fn empty_ok() -> Resp {
    Response::new(Full::new(Bytes::new()))
}

/// Apollo's exception handler's body.
fn error(status: StatusCode, exception: &str, message: impl Into<String>) -> Resp {
    json_reply(
        status,
        &json!({
            "status": status.as_u16(),
            "message": message.into(),
            "timestamp": timestamp(),
            "exception": format!("com.ctrip.framework.apollo.common.exception.{exception}"),
        }),
    )
}

fn bad_request(message: impl Into<String>) -> Resp {
    error(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

fn not_found(message: impl Into<String>) -> Resp {
    error(StatusCode::NOT_FOUND, "NotFoundException", message)
}

/// Spring's own answers (no Apollo exception): unauthorised, unknown path, wrong method.
fn spring_error(status: StatusCode, path: &str) -> Resp {
    json_reply(
        status,
        &json!({
            "timestamp": timestamp(),
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or(""),
            "message": status.canonical_reason().unwrap_or(""),
            "path": path,
        }),
    )
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSSZ` in UTC, as Apollo's DTOs print times.
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Apollo's `InputValidator.isValidClusterNamespace`: `[0-9a-zA-Z_.-]+`.
fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn item_json(key: &str, i: &Item) -> Value {
    json!({
        "key": key,
        "value": i.value,
        "comment": i.comment,
        "dataChangeCreatedBy": i.created_by,
        "dataChangeLastModifiedBy": i.modified_by,
        "dataChangeCreatedTime": i.created,
        "dataChangeLastModifiedTime": i.modified,
    })
}

fn cluster_json(app: &str, name: &str, c: &Cluster) -> Value {
    json!({
        "name": name,
        "appId": app,
        "dataChangeCreatedBy": c.created_by,
        "dataChangeLastModifiedBy": c.modified_by,
        "dataChangeCreatedTime": c.created,
        "dataChangeLastModifiedTime": c.created,
    })
}

fn namespace_json(app: &str, cluster: &str, name: &str, n: &Namespace) -> Value {
    json!({
        "appId": app,
        "clusterName": cluster,
        "namespaceName": name,
        "comment": "",
        "format": "properties",
        "isPublic": false,
        "items": n.items.iter().map(|(k, i)| item_json(k, i)).collect::<Vec<_>>(),
        "dataChangeCreatedBy": "apollo",
        "dataChangeLastModifiedBy": "apollo",
    })
}

fn release_json(app: &str, cluster: &str, ns: &str, r: &Release) -> Value {
    json!({
        "id": r.id,
        "appId": app,
        "clusterName": cluster,
        "namespaceName": ns,
        "name": r.name,
        "configurations": r.configurations,
        "comment": r.comment,
        "dataChangeCreatedBy": r.by,
        "dataChangeLastModifiedBy": r.by,
        "dataChangeCreatedTime": r.time,
        "dataChangeLastModifiedTime": r.time,
    })
}

fn str_field<'a>(body: &'a Value, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or("")
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    shared.requests.lock().unwrap().push(format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(&path)
    ));
    if !path.starts_with("/openapi/") {
        return spring_error(StatusCode::NOT_FOUND, &path);
    }
    // The consumer token, as the Portal's filter reads it: the header's whole value.
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(grants) = token.and_then(|t| shared.opts.tokens.get(&t).cloned()) else {
        return spring_error(StatusCode::UNAUTHORIZED, &path);
    };
    let method = req.method().clone();
    let q = query(&req);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_request("the request body could not be read"),
    };
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    let granted = |app: &str| grants.iter().any(|g| g == app);
    let forbidden = || {
        error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "Access is denied",
        )
    };
    let json_body = || -> Option<Value> {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
    };
    let user_exists = |u: &str| shared.opts.users.iter().any(|x| x == u);
    let env_known = |e: &str| shared.opts.envs.iter().any(|x| x == e);
    match p.as_slice() {
        ["openapi", "v1", "apps", app, "envclusters"] => {
            if method != Method::GET {
                return spring_error(StatusCode::METHOD_NOT_ALLOWED, &path);
            }
            let st = shared.state.lock().unwrap();
            let out: Vec<Value> = shared
                .opts
                .envs
                .iter()
                .map(|env| {
                    let clusters: Vec<&str> = st
                        .clusters
                        .keys()
                        .filter(|(e, a, _)| e == env && a == app)
                        .map(|(_, _, c)| c.as_str())
                        .collect();
                    json!({"env": env, "clusters": clusters})
                })
                .collect();
            ok(Value::Array(out))
        }
        [
            "openapi",
            "v1",
            "envs",
            env,
            "apps",
            app,
            "clusters",
            rest @ ..,
        ] => {
            if !env_known(env) {
                return bad_request(format!("Env {env} is not exist"));
            }
            cluster_routes(
                &shared,
                &method,
                &path,
                env,
                app,
                rest,
                &q,
                &granted,
                &forbidden,
                &json_body,
                &user_exists,
            )
        }
        _ => spring_error(StatusCode::NOT_FOUND, &path),
    }
}

#[allow(clippy::too_many_arguments)]
fn cluster_routes(
    shared: &Shared,
    method: &Method,
    path: &str,
    env: &str,
    app: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
    granted: &dyn Fn(&str) -> bool,
    forbidden: &dyn Fn() -> Resp,
    json_body: &dyn Fn() -> Option<Value>,
    user_exists: &dyn Fn(&str) -> bool,
) -> Resp {
    let not_allowed = || spring_error(StatusCode::METHOD_NOT_ALLOWED, path);
    let now = timestamp();
    match rest {
        // POST .../clusters
        [] => {
            if *method != Method::POST {
                return not_allowed();
            }
            if !granted(app) || !shared.apps.contains(app) {
                return forbidden();
            }
            let body = match json_body() {
                Some(b) => b,
                None => return bad_request("the request body is not a JSON object"),
            };
            let (name, body_app, by) = (
                str_field(&body, "name"),
                str_field(&body, "appId"),
                str_field(&body, "dataChangeCreatedBy"),
            );
            if body_app != app {
                return bad_request(format!(
                    "AppId not equal. AppId in path = {app}, AppId in payload = {body_app}"
                ));
            }
            if name.is_empty() || by.is_empty() {
                return bad_request("name and dataChangeCreatedBy should not be null or empty");
            }
            if !valid_cluster_name(name) {
                return bad_request("Invalid ClusterName format: 只允许输入数字，字母和符号 - _ .");
            }
            if !user_exists(by) {
                return bad_request(format!("User {by} doesn't exist!"));
            }
            let mut st = shared.state.lock().unwrap();
            let k = key(env, app, name);
            if st.clusters.contains_key(&k) {
                return bad_request("cluster already exist.");
            }
            let c = Cluster {
                created_by: by.into(),
                modified_by: by.into(),
                created: now,
                namespaces: app_namespaces(&shared.opts),
            };
            let out = cluster_json(app, name, &c);
            st.clusters.insert(k, c);
            ok(out)
        }
        [cluster] => match *method {
            Method::GET => {
                let st = shared.state.lock().unwrap();
                match st.clusters.get(&key(env, app, cluster)) {
                    Some(c) => ok(cluster_json(app, cluster, c)),
                    None => not_found(format!("cluster not found for name {cluster}")),
                }
            }
            Method::DELETE if shared.opts.delete_cluster => {
                if !granted(app) {
                    return forbidden();
                }
                let operator = q.get("operator").map(String::as_str).unwrap_or("");
                if operator.is_empty() || !user_exists(operator) {
                    return bad_request("user(operator) not exists");
                }
                let mut st = shared.state.lock().unwrap();
                if !st.clusters.contains_key(&key(env, app, cluster)) {
                    return not_found(format!("cluster not found for clusterName {cluster}"));
                }
                if *cluster == "default" {
                    return bad_request("can not delete default cluster!");
                }
                st.clusters.remove(&key(env, app, cluster));
                empty_ok()
            }
            _ => not_allowed(),
        },
        [cluster, "namespaces", ns_rest @ ..] => namespace_routes(
            shared,
            method,
            path,
            env,
            app,
            cluster,
            ns_rest,
            q,
            granted,
            forbidden,
            json_body,
            user_exists,
        ),
        _ => spring_error(StatusCode::NOT_FOUND, path),
    }
}

#[allow(clippy::too_many_arguments)]
fn namespace_routes(
    shared: &Shared,
    method: &Method,
    path: &str,
    env: &str,
    app: &str,
    cluster: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
    granted: &dyn Fn(&str) -> bool,
    forbidden: &dyn Fn() -> Resp,
    json_body: &dyn Fn() -> Option<Value>,
    user_exists: &dyn Fn(&str) -> bool,
) -> Resp {
    let not_allowed = || spring_error(StatusCode::METHOD_NOT_ALLOWED, path);
    let now = timestamp();
    let mut st = shared.state.lock().unwrap();
    let next_release = st.next_release + 1;
    let Some(c) = st.clusters.get_mut(&key(env, app, cluster)) else {
        return not_found(format!("cluster not found for name {cluster}"));
    };
    if rest.is_empty() {
        if *method != Method::GET {
            return not_allowed();
        }
        let out: Vec<Value> = c
            .namespaces
            .iter()
            .map(|(n, ns)| namespace_json(app, cluster, n, ns))
            .collect();
        return ok(Value::Array(out));
    }
    let ns_name = rest[0];
    let Some(ns) = c.namespaces.get_mut(ns_name) else {
        return not_found(format!(
            "namespace not found for appId: {app}, cluster: {cluster}, namespace: {ns_name}"
        ));
    };
    let writes = matches!(*method, Method::POST | Method::PUT | Method::DELETE);
    if writes && !granted(app) {
        return forbidden();
    }
    match &rest[1..] {
        [] => match *method {
            Method::GET => ok(namespace_json(app, cluster, ns_name, ns)),
            _ => not_allowed(),
        },
        ["items"] => match *method {
            Method::GET => {
                let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(0);
                let size: usize = q.get("size").and_then(|v| v.parse().ok()).unwrap_or(50);
                let content: Vec<Value> = ns
                    .items
                    .iter()
                    .skip(page * size)
                    .take(size)
                    .map(|(k, i)| item_json(k, i))
                    .collect();
                ok(json!({"content": content, "page": page, "size": size, "total": ns.items.len()}))
            }
            Method::POST => {
                let body = match json_body() {
                    Some(b) => b,
                    None => return bad_request("the request body is not a JSON object"),
                };
                let (k, v, by) = (
                    str_field(&body, "key"),
                    str_field(&body, "value"),
                    str_field(&body, "dataChangeCreatedBy"),
                );
                let comment = str_field(&body, "comment");
                if k.is_empty() || by.is_empty() {
                    return bad_request("key and dataChangeCreatedBy should not be null or empty");
                }
                if !user_exists(by) {
                    return bad_request(format!("User {by} doesn't exist!"));
                }
                if let Some(r) = check_lengths(k, v, comment) {
                    return r;
                }
                if ns.items.contains_key(k) {
                    return bad_request("item already exists");
                }
                let i = Item {
                    value: v.into(),
                    comment: comment.into(),
                    created_by: by.into(),
                    modified_by: by.into(),
                    created: now.clone(),
                    modified: now,
                };
                let out = item_json(k, &i);
                ns.items.insert(k.into(), i);
                ok(out)
            }
            _ => not_allowed(),
        },
        ["items", item_key] => match *method {
            Method::GET => match ns.items.get(*item_key) {
                Some(i) => ok(item_json(item_key, i)),
                None => not_found(format!("item not found for {item_key}")),
            },
            Method::PUT => {
                let body = match json_body() {
                    Some(b) => b,
                    None => return bad_request("the request body is not a JSON object"),
                };
                let (k, v, by) = (
                    str_field(&body, "key"),
                    str_field(&body, "value"),
                    str_field(&body, "dataChangeLastModifiedBy"),
                );
                let comment = str_field(&body, "comment");
                if k.is_empty() || by.is_empty() {
                    return bad_request("key and dataChangeLastModifiedBy can not be empty");
                }
                if k != *item_key {
                    return bad_request("Key in path and payload is not consistent");
                }
                if !user_exists(by) {
                    return bad_request("user(dataChangeLastModifiedBy) not exists");
                }
                if let Some(r) = check_lengths(k, v, comment) {
                    return r;
                }
                let create = q.get("createIfNotExists").is_some_and(|v| v == "true");
                match ns.items.get_mut(k) {
                    Some(i) => {
                        i.value = v.into();
                        i.comment = comment.into();
                        i.modified_by = by.into();
                        i.modified = now;
                    }
                    None if create => {
                        let creator = str_field(&body, "dataChangeCreatedBy");
                        if creator.is_empty() || !user_exists(creator) {
                            return bad_request(
                                "dataChangeCreatedBy is required (an existing user) when \
                                 createIfNotExists creates the item",
                            );
                        }
                        ns.items.insert(
                            k.into(),
                            Item {
                                value: v.into(),
                                comment: comment.into(),
                                created_by: creator.into(),
                                modified_by: by.into(),
                                created: now.clone(),
                                modified: now,
                            },
                        );
                    }
                    None => return not_found(format!("item not found for {k}")),
                }
                empty_ok()
            }
            Method::DELETE => {
                let operator = q.get("operator").map(String::as_str).unwrap_or("");
                if operator.is_empty() || !user_exists(operator) {
                    return bad_request("user(operator) not exists");
                }
                if ns.items.remove(*item_key).is_none() {
                    return bad_request("item not exists");
                }
                empty_ok()
            }
            _ => not_allowed(),
        },
        ["releases"] => {
            if *method != Method::POST {
                return not_allowed();
            }
            let body = match json_body() {
                Some(b) => b,
                None => return bad_request("the request body is not a JSON object"),
            };
            let (title, by) = (
                str_field(&body, "releaseTitle"),
                str_field(&body, "releasedBy"),
            );
            if title.is_empty() || by.is_empty() {
                return bad_request("Params(releaseTitle and releasedBy) can not be empty");
            }
            if !user_exists(by) {
                return bad_request("user(releaseBy) not exists");
            }
            if title.chars().count() > 64 {
                return bad_request("releaseTitle is longer than 64 characters");
            }
            let r = Release {
                id: next_release,
                name: title.into(),
                comment: str_field(&body, "releaseComment").into(),
                by: by.into(),
                time: now,
                configurations: ns
                    .items
                    .iter()
                    .map(|(k, i)| (k.clone(), i.value.clone()))
                    .collect(),
            };
            let out = release_json(app, cluster, ns_name, &r);
            ns.releases.push(r);
            st.next_release = next_release;
            ok(out)
        }
        ["releases", "latest"] => {
            if *method != Method::GET {
                return not_allowed();
            }
            match ns.releases.last() {
                Some(r) => ok(release_json(app, cluster, ns_name, r)),
                None => empty_ok(),
            }
        }
        _ => spring_error(StatusCode::NOT_FOUND, path),
    }
}

fn check_lengths(key: &str, value: &str, comment: &str) -> Option<Resp> {
    if key.chars().count() > 128 {
        return Some(bad_request("key too long: at most 128 characters"));
    }
    if value.chars().count() > 20_000 {
        return Some(bad_request("value too long: at most 20000 characters"));
    }
    if comment.chars().count() > 256 {
        return Some(bad_request(
            "Comment length should not exceed 256 characters",
        ));
    }
    None
}
