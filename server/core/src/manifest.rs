//! `lane.toml`, the per-repository service manifest, and `lane-workspace.toml`, the list of
//! services that make up a baseline. Parsing is pure: callers read the file and pass its text and
//! path, and every error carries file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::data::{self, DataOptions, DataSpec, RedisCopy, RedisMode, Sample};
use crate::duration::parse_duration;
use crate::id::ServiceId;

/// The manifest's file name at a service repository's root.
pub const MANIFEST_FILE: &str = "lane.toml";
/// The baseline workspace file.
pub const WORKSPACE_FILE: &str = "lane-workspace.toml";
/// The placeholder replaced by the allocated port in run commands and health URLs.
pub const PORT_PLACEHOLDER: &str = "{port}";

/// A manifest error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub path: PathBuf,
    /// 1-based line and column, when the error has a position.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Translates a byte span of `source` into a 1-based line and column (columns count characters).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..source.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn error_at(
    path: &Path,
    source: &str,
    span: Option<Range<usize>>,
    message: String,
) -> ManifestError {
    let (line, column) = span.map_or((1, 1), |s| line_col(source, s.start));
    ManifestError {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// How the supervisor knows an instance is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// `GET http://127.0.0.1:{port}<path>` answers 2xx.
    Http { path: String },
    /// A TCP connection to the port succeeds.
    Tcp,
    /// A shell command exits 0 (`{port}` is replaced).
    Command { command: String },
}

/// The wire protocol the service speaks; the router serves both, this only changes the hints
/// the tools print (curl or grpcurl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Grpc,
}

/// The backends `lane` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Processes on this machine, the embedded default.
    #[default]
    Local,
    /// Consul registry and client-side routing.
    Consul,
    /// Kubernetes with Istio.
    Kubernetes,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Local,
        BackendKind::Consul,
        BackendKind::Kubernetes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Consul => "consul",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("`{s}` is not one of {}", names.join(", "))
            })
    }
}

/// The backend a `lane.toml` names, and where it names it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackendChoice {
    pub kind: BackendKind,
    /// `file:line:column` of `[backend] kind`; `None` when the file names none (local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_at: Option<String>,
    /// `[backend] context`: the kubeconfig context (kubernetes); `None`: the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `[backend] namespace`: where the Lanes live (kubernetes); `None`: the service's app.
    /// For consul: the Consul Enterprise namespace (`None`: the token's or `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `[backend] prefix` (consul): the service name prefix, `gaia` in `gaia.<app>.<proc>`;
    /// `None`: the default, `gaia`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `[backend] datacenter` (consul); `None`: the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

/// A validated `lane.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub service: ServiceId,
    pub protocol: Protocol,
    /// Shell command that builds the service, run in the service's directory: in the deploy's
    /// working copy of the repository, or in place when `snapshot = false`.
    pub build: Option<String>,
    pub build_timeout: Duration,
    /// Build caches (relative to the service's directory, e.g. `target`, `node_modules`) that a
    /// new working copy starts with, copied from the service's most recent copy.
    #[serde(default)]
    pub build_cache: Vec<PathBuf>,
    /// Shell command that runs the service; `{port}` is replaced (also exported as `PORT`).
    pub run: String,
    pub env: BTreeMap<String, String>,
    pub health: HealthCheck,
    pub health_timeout: Duration,
    /// Where the service's lanes live (`[backend] kind`).
    #[serde(default)]
    pub backend: BackendChoice,
    /// Deploy a copy of the repository's working tree taken at deploy time (the default), rather
    /// than building and running in the repository itself.
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// `[image] build`: the shell command that builds an image of the service (kubernetes
    /// backend), run in the service's directory; the last line it prints is the image reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_build: Option<String>,
    /// `[data.<name>]`: the data sources a lane gets its own copies of, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: Spanned<String>,
    proc: Spanned<String>,
    #[serde(default)]
    protocol: Option<Spanned<String>>,
    #[serde(default)]
    snapshot: Option<bool>,
    #[serde(default)]
    build: Option<RawBuild>,
    run: RawRun,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    backend: Option<RawBackend>,
    #[serde(default)]
    image: Option<RawImage>,
    #[serde(default)]
    data: BTreeMap<Spanned<String>, Spanned<RawData>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    kind: Spanned<String>,
    url: Spanned<String>,
    env: Spanned<String>,
    // mysql
    #[serde(default)]
    sample: Option<Spanned<RawSample>>,
    // redis
    #[serde(default)]
    pool: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    prefix_env: Option<Spanned<String>>,
    #[serde(default)]
    copy: Option<Spanned<RawCopy>>,
    // kafka
    #[serde(default)]
    topics: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, Spanned<String>>,
    // apollo
    #[serde(default)]
    app: Option<Spanned<String>>,
    #[serde(default)]
    cluster_env: Option<Spanned<String>>,
    #[serde(default)]
    apollo_env: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    operator: Option<Spanned<String>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    items: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    rows: Spanned<i64>,
    bytes: Spanned<RawSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCopy {
    patterns: Spanned<Vec<Spanned<String>>>,
    keys: Spanned<i64>,
    bytes: Spanned<RawSize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Int(i64),
    Text(String),
}

/// The redis database indexes when `pool` is not given: 1 to 15 of Redis's default 16.
const DEFAULT_REDIS_POOL: (u32, u32) = (1, 15);

fn data_spec(
    path: &Path,
    source: &str,
    name: &Spanned<String>,
    raw: &Spanned<RawData>,
) -> Result<DataSpec, ManifestError> {
    let n = name.get_ref();
    let at = |span: Range<usize>, message: String| {
        error_at(path, source, Some(span), format!("data.{n}: {message}"))
    };
    data::check_binding_name(n)
        .map_err(|e| error_at(path, source, Some(name.span()), format!("data: {e}")))?;
    let raw_ref = raw.get_ref();
    let kind = raw_ref.kind.get_ref().as_str();
    let url = raw_ref.url.get_ref();
    let addr =
        data::Address::parse(url).map_err(|e| at(raw_ref.url.span(), format!("url: {e}")))?;
    data::check_env_name(raw_ref.env.get_ref())
        .map_err(|e| at(raw_ref.env.span(), format!("env: {e}")))?;
    let only = |field: &str, present: Option<Range<usize>>| match present {
        Some(span) => Err(at(
            span,
            format!("`{field}` does not apply to a {kind} binding"),
        )),
        None => Ok(()),
    };
    let size = |raw: &Spanned<RawSize>, field: &str| match raw.get_ref() {
        RawSize::Int(b) => {
            u64::try_from(*b).map_err(|_| at(raw.span(), format!("{field}: `{b}` is negative")))
        }
        RawSize::Text(t) => {
            data::parse_size(t).map_err(|e| at(raw.span(), format!("{field}: {e}")))
        }
    };
    let first_key =
        |m: &BTreeMap<Spanned<String>, Spanned<String>>| m.keys().next().map(|k| k.span());
    let want_scheme = |schemes: &[&str]| {
        if schemes.contains(&addr.scheme.as_str()) {
            Ok(())
        } else {
            Err(at(
                raw_ref.url.span(),
                format!(
                    "url: a {kind} address starts with {}",
                    schemes
                        .iter()
                        .map(|s| format!("`{s}://`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ))
        }
    };
    if kind != "mysql" {
        only("sample", raw_ref.sample.as_ref().map(|s| s.span()))?;
    }
    if kind != "redis" {
        only("pool", raw_ref.pool.as_ref().map(|s| s.span()))?;
        only("prefix_env", raw_ref.prefix_env.as_ref().map(|s| s.span()))?;
        only("copy", raw_ref.copy.as_ref().map(|s| s.span()))?;
    }
    if kind != "kafka" {
        only("topics", first_key(&raw_ref.topics))?;
        only("groups", first_key(&raw_ref.groups))?;
    }
    if kind != "apollo" {
        only("app", raw_ref.app.as_ref().map(|s| s.span()))?;
        only(
            "cluster_env",
            raw_ref.cluster_env.as_ref().map(|s| s.span()),
        )?;
        only("apollo_env", raw_ref.apollo_env.as_ref().map(|s| s.span()))?;
        only("namespace", raw_ref.namespace.as_ref().map(|s| s.span()))?;
        only("operator", raw_ref.operator.as_ref().map(|s| s.span()))?;
        only("token_env", raw_ref.token_env.as_ref().map(|s| s.span()))?;
        only("items", first_key(&raw_ref.items))?;
    }
    let options = match kind {
        "mysql" => {
            want_scheme(&["mysql"])?;
            data::check_mysql_ident(&addr.path)
                .map_err(|e| at(raw_ref.url.span(), format!("url: the database: {e}")))?;
            let sample = match &raw_ref.sample {
                None => None,
                Some(s) => {
                    let s = s.get_ref();
                    let rows = *s.rows.get_ref();
                    if rows <= 0 {
                        return Err(at(
                            s.rows.span(),
                            format!(
                                "sample.rows must be at least 1 (it is {rows}); leave `sample` \
                                 out to clone the schema without rows"
                            ),
                        ));
                    }
                    let bytes = size(&s.bytes, "sample.bytes")?;
                    if bytes == 0 {
                        return Err(at(
                            s.bytes.span(),
                            "sample.bytes is a quota of zero; give the most bytes of rows to \
                             copy (e.g. `4MiB`), or leave `sample` out"
                                .into(),
                        ));
                    }
                    Some(Sample {
                        rows: rows as u64,
                        bytes,
                    })
                }
            };
            DataOptions::Mysql {
                database: addr.path.clone(),
                sample,
            }
        }
        "redis" => {
            want_scheme(&["redis", "rediss"])?;
            let index: u32 = if addr.path.is_empty() {
                0
            } else {
                addr.path.parse().map_err(|_| {
                    at(
                        raw_ref.url.span(),
                        format!("url: `{}` is not a database index", addr.path),
                    )
                })?
            };
            let mode = match (&raw_ref.pool, &raw_ref.prefix_env) {
                (Some(p), Some(_)) => {
                    return Err(at(
                        p.span(),
                        "set either `pool` (a database per lane) or `prefix_env` (a key prefix \
                         per lane), not both"
                            .into(),
                    ));
                }
                (None, Some(pe)) => {
                    data::check_env_name(pe.get_ref())
                        .map_err(|e| at(pe.span(), format!("prefix_env: {e}")))?;
                    RedisMode::Prefix {
                        prefix_env: pe.get_ref().clone(),
                    }
                }
                (pool, None) => {
                    let (first, last) = match pool {
                        None => DEFAULT_REDIS_POOL,
                        Some(p) => match p.get_ref().as_slice() {
                            [a, b] if 0 <= *a && a <= b && *b < 1 << 20 => (*a as u32, *b as u32),
                            _ => {
                                return Err(at(
                                    p.span(),
                                    "pool must be `[first, last]`, two database indexes with \
                                     first <= last"
                                        .into(),
                                ));
                            }
                        },
                    };
                    if (first..=last).contains(&index) {
                        let span = pool.as_ref().map_or(raw_ref.url.span(), |p| p.span());
                        return Err(at(
                            span,
                            format!(
                                "pool {first}..={last} contains the baseline's database {index}; \
                                 a lane must never be given baseline's database"
                            ),
                        ));
                    }
                    RedisMode::Database { first, last }
                }
            };
            let copy = match &raw_ref.copy {
                None => None,
                Some(c) => {
                    if matches!(mode, RedisMode::Prefix { .. }) {
                        return Err(at(
                            c.span(),
                            "`copy` needs a database per lane (`pool`); in key-prefix mode the \
                             lane shares baseline's database"
                                .into(),
                        ));
                    }
                    let c = c.get_ref();
                    if c.patterns.get_ref().is_empty() {
                        return Err(at(
                            c.patterns.span(),
                            "copy.patterns is empty; give the key patterns to copy (e.g. \
                             `[\"session:*\"]`), or leave `copy` out"
                                .into(),
                        ));
                    }
                    let mut patterns = Vec::new();
                    for p in c.patterns.get_ref() {
                        let text = p.get_ref();
                        if text.is_empty() || text.chars().any(char::is_control) {
                            return Err(at(
                                p.span(),
                                format!(
                                    "copy.patterns: `{}` is not a key pattern (empty, or with \
                                     control characters)",
                                    text.escape_default()
                                ),
                            ));
                        }
                        patterns.push(text.clone());
                    }
                    let keys = *c.keys.get_ref();
                    if keys <= 0 {
                        return Err(at(
                            c.keys.span(),
                            format!(
                                "copy.keys must be at least 1 (it is {keys}); leave `copy` out \
                                 to copy no keys"
                            ),
                        ));
                    }
                    let bytes = size(&c.bytes, "copy.bytes")?;
                    if bytes == 0 {
                        return Err(at(
                            c.bytes.span(),
                            "copy.bytes is a quota of zero; give the most bytes of keys to copy \
                             (e.g. `10MiB`), or leave `copy` out"
                                .into(),
                        ));
                    }
                    Some(RedisCopy {
                        patterns,
                        keys: keys as u64,
                        bytes,
                    })
                }
            };
            DataOptions::Redis { index, mode, copy }
        }
        "kafka" => {
            want_scheme(&["kafka"])?;
            crate::kafka_url::KafkaUrl::parse(url)
                .map_err(|e| at(raw_ref.url.span(), format!("url: {e}")))?;
            let mut topics = BTreeMap::new();
            for (var, topic) in &raw_ref.topics {
                data::check_env_name(var.get_ref())
                    .map_err(|e| at(var.span(), format!("topics: {e}")))?;
                data::check_topic(topic.get_ref())
                    .map_err(|e| at(topic.span(), format!("topics: {e}")))?;
                topics.insert(var.get_ref().clone(), topic.get_ref().clone());
            }
            if topics.is_empty() {
                return Err(at(
                    raw_ref.kind.span(),
                    "a kafka binding names its topics: `topics = { ORDERS_TOPIC = \"orders\" }` \
                     (variable = baseline topic)"
                        .into(),
                ));
            }
            let mut groups = BTreeMap::new();
            for (var, group) in &raw_ref.groups {
                data::check_env_name(var.get_ref())
                    .map_err(|e| at(var.span(), format!("groups: {e}")))?;
                data::check_topic(group.get_ref())
                    .map_err(|e| at(group.span(), format!("groups: {e}")))?;
                groups.insert(var.get_ref().clone(), group.get_ref().clone());
            }
            DataOptions::Kafka { topics, groups }
        }
        "apollo" => {
            want_scheme(&["http", "https"])?;
            let app = raw_ref.app.as_ref().ok_or_else(|| {
                at(
                    raw_ref.kind.span(),
                    "an apollo binding names its `app` (the Apollo app id)".into(),
                )
            })?;
            if app.get_ref().trim().is_empty() {
                return Err(at(app.span(), "app is empty".into()));
            }
            let cluster_env = match &raw_ref.cluster_env {
                Some(c) => {
                    data::check_env_name(c.get_ref())
                        .map_err(|e| at(c.span(), format!("cluster_env: {e}")))?;
                    c.get_ref().clone()
                }
                None => "APOLLO_CLUSTER".to_owned(),
            };
            // Apollo's own rules for names: environments are letters (DEV, FAT, UAT, PRO, …),
            // namespaces and users are path segments of the Open API, so no `/`, `?`, `#`, `%`
            // or spaces.
            let segment = |field: &str, v: &Spanned<String>| {
                let t = v.get_ref();
                if t.is_empty()
                    || t.len() > 128
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    Err(at(
                        v.span(),
                        format!(
                            "{field}: `{t}` is not an Apollo name (letters, digits, `.`, `_` and \
                             `-`, at most 128)"
                        ),
                    ))
                } else {
                    Ok(t.clone())
                }
            };
            let app_id = segment("app", app)?;
            let env = match &raw_ref.apollo_env {
                Some(e) => segment("apollo_env", e)?.to_ascii_uppercase(),
                None => data::DEFAULT_APOLLO_ENV.to_owned(),
            };
            let namespace = match &raw_ref.namespace {
                Some(n) => segment("namespace", n)?,
                None => data::DEFAULT_APOLLO_NAMESPACE.to_owned(),
            };
            let operator = match &raw_ref.operator {
                Some(o) => segment("operator", o)?,
                None => data::DEFAULT_APOLLO_OPERATOR.to_owned(),
            };
            let token_env = match &raw_ref.token_env {
                Some(t) => {
                    data::check_env_name(t.get_ref())
                        .map_err(|e| at(t.span(), format!("token_env: {e}")))?;
                    t.get_ref().clone()
                }
                None => data::DEFAULT_APOLLO_TOKEN_ENV.to_owned(),
            };
            let mut items = BTreeMap::new();
            for (key, var) in &raw_ref.items {
                data::check_apollo_key(key.get_ref())
                    .map_err(|e| at(key.span(), format!("items: {e}")))?;
                data::check_env_name(var.get_ref())
                    .map_err(|e| at(var.span(), format!("items: {e}")))?;
                items.insert(key.get_ref().clone(), var.get_ref().clone());
            }
            DataOptions::Apollo(data::ApolloOptions {
                app: app_id,
                cluster_env,
                env,
                namespace,
                operator,
                token_env,
                items,
                token: None,
            })
        }
        other => {
            return Err(at(
                raw_ref.kind.span(),
                format!("kind: `{other}` is not one of `mysql`, `redis`, `kafka`, `apollo`"),
            ));
        }
    };
    Ok(DataSpec {
        name: n.clone(),
        address: url.clone(),
        env: raw_ref.env.get_ref().clone(),
        options,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    build: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: String,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    cache: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    command: Spanned<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    http: Option<Spanned<String>>,
    #[serde(default)]
    tcp: Option<bool>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: Spanned<String>,
    #[serde(default)]
    context: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    prefix: Option<Spanned<String>>,
    #[serde(default)]
    datacenter: Option<Spanned<String>>,
}

/// A Kubernetes namespace name: a DNS label.
fn namespace_name(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{ns}` is not a namespace name (lowercase letters, digits and `-`, at most 63, \
             starting and ending alphanumeric)"
        ))
    }
}

/// A Consul name part (`[backend] prefix`, `datacenter`): lowercase letters, digits and `-`,
/// starting and ending alphanumeric, as in a DNS label (Consul names services for DNS).
fn consul_name(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a valid name (lowercase letters, digits and `-`, at most 63, starting \
             and ending alphanumeric)"
        ))
    }
}

/// A `[build] cache` entry: a relative path inside the service's directory.
fn cache_path(p: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let path = Path::new(p);
    if p.is_empty() {
        return Err("an entry is empty".into());
    }
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{p}` must be a path inside the service's directory (relative, without `..`)"
        ));
    }
    Ok(path.to_path_buf())
}

fn duration_field(
    path: &Path,
    source: &str,
    field: &Option<Spanned<String>>,
    default: Duration,
    name: &str,
) -> Result<Duration, ManifestError> {
    match field {
        None => Ok(default),
        Some(v) => parse_duration(v.get_ref())
            .map_err(|e| error_at(path, source, Some(v.span()), format!("{name}: {e}"))),
    }
}

impl Manifest {
    /// Parses and validates a manifest. `path` is only used in error messages.
    pub fn parse(path: &Path, source: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(source)
            .map_err(|e| error_at(path, source, e.span(), e.message().trim_end().to_owned()))?;
        let app = &raw.app;
        let service = ServiceId::new(app.get_ref(), "x")
            .map_err(|e| error_at(path, source, Some(app.span()), format!("app: {e}")))
            .and_then(|_| {
                ServiceId::new(app.get_ref(), raw.proc.get_ref()).map_err(|e| {
                    error_at(path, source, Some(raw.proc.span()), format!("proc: {e}"))
                })
            })?;
        let protocol = match raw
            .protocol
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("http", _)) => Protocol::Http,
            Some(("grpc", _)) => Protocol::Grpc,
            Some((other, span)) => {
                return Err(error_at(
                    path,
                    source,
                    Some(span),
                    format!("protocol: `{other}` is not one of `http`, `grpc`"),
                ));
            }
        };
        let run = raw.run.command.get_ref().trim().to_owned();
        if run.is_empty() {
            return Err(error_at(
                path,
                source,
                Some(raw.run.command.span()),
                "run.command is empty; give the shell command that starts the service".into(),
            ));
        }
        let health_raw = raw.health.unwrap_or(RawHealth {
            http: None,
            tcp: None,
            command: None,
            timeout: None,
        });
        let chosen = [
            health_raw.http.is_some(),
            health_raw.tcp == Some(true),
            health_raw.command.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen > 1 {
            return Err(error_at(
                path,
                source,
                health_raw.http.as_ref().map(|h| h.span()),
                "health: set only one of `http`, `tcp` and `command`".into(),
            ));
        }
        let health = if let Some(http) = &health_raw.http {
            if !http.get_ref().starts_with('/') {
                return Err(error_at(
                    path,
                    source,
                    Some(http.span()),
                    format!(
                        "health.http: `{}` must be a path starting with `/`",
                        http.get_ref()
                    ),
                ));
            }
            HealthCheck::Http {
                path: http.get_ref().clone(),
            }
        } else if let Some(command) = health_raw.command {
            HealthCheck::Command { command }
        } else {
            HealthCheck::Tcp
        };
        let health_timeout = duration_field(
            path,
            source,
            &health_raw.timeout,
            Duration::from_secs(30),
            "health.timeout",
        )?;
        let (build, build_timeout, build_cache) = match raw.build {
            None => (None, Duration::from_secs(600), Vec::new()),
            Some(b) => (
                Some(b.command),
                duration_field(
                    path,
                    source,
                    &b.timeout,
                    Duration::from_secs(600),
                    "build.timeout",
                )?,
                b.cache
                    .iter()
                    .map(|c| {
                        cache_path(c.get_ref()).map_err(|e| {
                            error_at(path, source, Some(c.span()), format!("build.cache: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let backend = match raw.backend {
            None => BackendChoice::default(),
            Some(b) => {
                let at = error_at(path, source, Some(b.kind.span()), String::new());
                let kind = b.kind.get_ref().parse::<BackendKind>().map_err(|e| {
                    error_at(
                        path,
                        source,
                        Some(b.kind.span()),
                        format!("backend.kind: {e}"),
                    )
                })?;
                if let Some(ns) = &b.namespace {
                    namespace_name(ns.get_ref()).map_err(|e| {
                        error_at(
                            path,
                            source,
                            Some(ns.span()),
                            format!("backend.namespace: {e}"),
                        )
                    })?;
                }
                if let Some(ctx) = &b.context
                    && ctx.get_ref().trim().is_empty()
                {
                    return Err(error_at(
                        path,
                        source,
                        Some(ctx.span()),
                        "backend.context is empty; name a kubeconfig context or leave it out"
                            .into(),
                    ));
                }
                for (field, value) in [("prefix", &b.prefix), ("datacenter", &b.datacenter)] {
                    if let Some(v) = value {
                        consul_name(v.get_ref()).map_err(|e| {
                            error_at(
                                path,
                                source,
                                Some(v.span()),
                                format!("backend.{field}: {e}"),
                            )
                        })?;
                    }
                }
                BackendChoice {
                    kind,
                    declared_at: Some(format!("{}:{}:{}", at.path.display(), at.line, at.column)),
                    context: b.context.map(Spanned::into_inner),
                    namespace: b.namespace.map(Spanned::into_inner),
                    prefix: b.prefix.map(Spanned::into_inner),
                    datacenter: b.datacenter.map(Spanned::into_inner),
                }
            }
        };
        let image_build = match raw.image {
            None => None,
            Some(i) => {
                let command = i.build.get_ref().trim().to_owned();
                if command.is_empty() {
                    return Err(error_at(
                        path,
                        source,
                        Some(i.build.span()),
                        "image.build is empty; give the shell command that builds the image and \
                         prints its reference last"
                            .into(),
                    ));
                }
                Some(command)
            }
        };
        let data = raw
            .data
            .iter()
            .map(|(name, d)| data_spec(path, source, name, d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envs: BTreeMap<&str, &str> = BTreeMap::new();
        for d in &data {
            if let Some(other) = envs.insert(&d.env, &d.name) {
                let span = raw
                    .data
                    .iter()
                    .find(|(n, _)| n.get_ref() == &d.name)
                    .map(|(_, r)| r.get_ref().env.span());
                return Err(error_at(
                    path,
                    source,
                    span,
                    format!(
                        "data.{}: env `{}` is already the address of data.{other}",
                        d.name, d.env
                    ),
                ));
            }
        }
        // An Apollo item names a variable another binding sets (its lane value is the item's).
        for d in &data {
            let DataOptions::Apollo(a) = &d.options else {
                continue;
            };
            for (key, var) in &a.items {
                let set_by_other = data.iter().filter(|o| o.name != d.name).any(|o| {
                    data::lane_env(std::slice::from_ref(o), None, &[])
                        .map(|env| env.iter().any(|(k, _)| k == var))
                        .unwrap_or(false)
                });
                if !set_by_other {
                    let span = raw
                        .data
                        .iter()
                        .find(|(n, _)| n.get_ref() == &d.name)
                        .and_then(|(_, r)| {
                            r.get_ref()
                                .items
                                .iter()
                                .find(|(k, _)| k.get_ref() == key)
                                .map(|(_, v)| v.span())
                        });
                    return Err(error_at(
                        path,
                        source,
                        span,
                        format!(
                            "data.{}: items: `{key}` names `{var}`, which no other data binding \
                             sets (name a binding's `env`, or a variable of its `topics`, \
                             `groups` or `prefix_env`)",
                            d.name
                        ),
                    ));
                }
            }
        }
        Ok(Manifest {
            data,
            service,
            protocol,
            build,
            build_timeout,
            build_cache,
            run,
            env: raw.run.env,
            health,
            health_timeout,
            backend,
            snapshot: raw.snapshot.unwrap_or(true),
            image_build,
        })
    }

    /// The run command with the port filled in.
    pub fn run_command(&self, port: u16) -> String {
        self.run.replace(PORT_PLACEHOLDER, &port.to_string())
    }
}

/// `lane-workspace.toml`: the services whose baseline versions `lane baseline up` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Service directories, relative to the workspace file's directory (the `path` of each
    /// entry of [`Workspace::entries`], in order).
    pub services: Vec<PathBuf>,
    /// Each `[[service]]` entry, in order.
    pub entries: Vec<WorkspaceService>,
}

/// One `[[service]]` of `lane-workspace.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceService {
    /// The service's directory, relative to the workspace file's directory.
    pub path: PathBuf,
    /// `follow`: what production runs, a ref or a release tag pattern of the service's
    /// repository; `None`: baseline runs the checkout as it is.
    pub follow: Option<crate::follow::Follow>,
}

impl WorkspaceService {
    /// The ref (or tag pattern) this baseline service follows, as written (`origin/main`,
    /// `refs/tags/v*`); `None` when it runs its checkout as it is.
    pub fn followed_ref(&self) -> Option<String> {
        self.follow.as_ref().map(crate::follow::Follow::as_written)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    service: Vec<RawWorkspaceService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspaceService {
    path: String,
    follow: Option<Spanned<String>>,
}

impl Workspace {
    pub fn parse(path: &Path, source: &str) -> Result<Workspace, ManifestError> {
        let raw: RawWorkspace = toml::from_str(source)
            .map_err(|e| error_at(path, source, e.span(), e.message().trim_end().to_owned()))?;
        let mut entries = Vec::new();
        for s in raw.service {
            let follow = match s.follow {
                None => None,
                Some(f) => Some(crate::follow::Follow::parse(f.get_ref()).map_err(|why| {
                    error_at(
                        path,
                        source,
                        Some(f.span()),
                        format!("service.follow: {why}"),
                    )
                })?),
            };
            entries.push(WorkspaceService {
                path: PathBuf::from(s.path),
                follow,
            });
        }
        Ok(Workspace {
            services: entries.iter().map(|e| e.path.clone()).collect(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("svc/lane.toml"), src)
    }

    #[test]
    fn full_manifest() {
        let m = parse(
            r#"
app = "shop"
proc = "cart"
protocol = "grpc"

[build]
command = "cargo build"
timeout = "5m"
cache = ["target", "web/node_modules"]

[run]
command = "./cart --port {port}"
env = { RUST_LOG = "info" }

[health]
http = "/healthz"
timeout = "10s"
"#,
        )
        .unwrap();
        assert_eq!(m.service.as_str(), "shop.cart");
        assert_eq!(m.protocol, Protocol::Grpc);
        assert_eq!(m.build.as_deref(), Some("cargo build"));
        assert_eq!(m.build_timeout, Duration::from_secs(300));
        assert_eq!(
            m.build_cache,
            [PathBuf::from("target"), PathBuf::from("web/node_modules")]
        );
        assert_eq!(m.run_command(8080), "./cart --port 8080");
        assert_eq!(m.env["RUST_LOG"], "info");
        assert_eq!(
            m.health,
            HealthCheck::Http {
                path: "/healthz".into()
            }
        );
        assert_eq!(m.health_timeout, Duration::from_secs(10));
        assert_eq!(m.backend, BackendChoice::default());
        assert!(
            m.snapshot,
            "deploys take a copy of the working tree unless told not to"
        );
    }

    /// The README's `lane.toml` reference is a manifest that parses, with the values it shows.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme
            .find("## `lane.toml` reference")
            .expect("the README has the reference")..];
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + section[start..].find("```").expect("the block ends");
        let m = parse(&section[start..end]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.service.as_str(), "shop.cart");
        assert_eq!(m.build_cache, [PathBuf::from("target")]);
        assert!(m.snapshot);
    }

    #[test]
    fn consul_backend_settings() {
        let m = Manifest::parse(
            Path::new("svc/lane.toml"),
            "app = \"shop\"\nproc = \"cart\"\n[run]\ncommand = \"x\"\n[backend]\nkind = \"consul\"\n\
             prefix = \"acme\"\ndatacenter = \"dev-1\"\n",
        )
        .unwrap();
        assert_eq!(m.backend.kind, BackendKind::Consul);
        assert_eq!(m.backend.prefix.as_deref(), Some("acme"));
        assert_eq!(m.backend.datacenter.as_deref(), Some("dev-1"));
        let err = Manifest::parse(
            Path::new("svc/lane.toml"),
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[backend]\nkind = \"consul\"\nprefix = \"Gaia.X\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string().split(" is not").next().unwrap(),
            "svc/lane.toml:7:10: backend.prefix: `Gaia.X`"
        );
    }

    #[test]
    fn kubernetes_backend_settings_and_image_build() {
        let m = parse(
            "app = \"shop\"\nproc = \"cart\"\n[run]\ncommand = \"x\"\n[backend]\nkind = \"kubernetes\"\n\
             context = \"staging\"\nnamespace = \"lanes\"\n[image]\nbuild = \"./build-image.sh\"\n",
        )
        .unwrap();
        assert_eq!(m.backend.kind, BackendKind::Kubernetes);
        assert_eq!(m.backend.context.as_deref(), Some("staging"));
        assert_eq!(m.backend.namespace.as_deref(), Some("lanes"));
        assert_eq!(m.image_build.as_deref(), Some("./build-image.sh"));
        let cases: &[(&str, &str)] = &[
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[backend]\nkind = \"kubernetes\"\nnamespace = \"Bad_NS\"\n",
                "svc/lane.toml:7:13: backend.namespace: `Bad_NS` is not a namespace name",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[image]\nbuild = \" \"\n",
                "svc/lane.toml:6:9: image.build is empty",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[image]\ntag = \"x\"\n",
                "svc/lane.toml:6:1: unknown field `tag`",
            ),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}\n  does not start with\n{want}");
        }
    }

    #[test]
    fn snapshot_can_be_turned_off() {
        let m =
            parse("app = \"a\"\nproc = \"b\"\nsnapshot = false\n[run]\ncommand = \"x\"\n").unwrap();
        assert!(!m.snapshot);
        let e = parse("app = \"a\"\nproc = \"b\"\nsnapshot = \"no\"\n[run]\ncommand = \"x\"\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (3, 12), "{e}");
    }

    #[test]
    fn minimal_manifest_defaults_to_tcp_health() {
        let m = parse("app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x {port}\"\n").unwrap();
        assert_eq!(m.health, HealthCheck::Tcp);
        assert_eq!(m.build, None);
    }

    #[test]
    fn errors_have_positions() {
        let cases: &[(&str, &str)] = &[
            ("app = \"a\"\nproc = \"b\"\n[run\n", "svc/lane.toml:3:5: "),
            (
                "app = \"a\"\nproc = \"B\"\n[run]\ncommand = \"x\"\n",
                "svc/lane.toml:2:8: proc: proc name `B`",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\ncolour = 1\n",
                "svc/lane.toml:5:1: unknown field `colour`",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n",
                "svc/lane.toml:1:1: missing field `run`",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"  \"\n",
                "svc/lane.toml:4:11: run.command is empty",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[health]\ntimeout = \"soon\"\n",
                "svc/lane.toml:6:11: health.timeout: `soon` is not a duration",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[health]\nhttp = \"healthz\"\n",
                "svc/lane.toml:6:8: health.http",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[backend]\nkind = \"nomad\"\n",
                "svc/lane.toml:6:8: backend.kind: `nomad`",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[build]\ncommand = \"x\"\ncache = [\"ok\", \"../up\"]\n[run]\ncommand = \"x\"\n",
                "svc/lane.toml:5:16: build.cache: `../up` must be a path inside",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[build]\ncommand = \"x\"\ncache = [\"/abs\"]\n[run]\ncommand = \"x\"\n",
                "svc/lane.toml:5:10: build.cache: `/abs` must be a path inside",
            ),
            (
                "app = \"a\"\nproc = \"b\"\n[build]\ncommand = \"x\"\ncache = [\"\"]\n[run]\ncommand = \"x\"\n",
                "svc/lane.toml:5:10: build.cache: an entry is empty",
            ),
            ("app = 1\n", "svc/lane.toml:1:7: invalid type"),
        ];
        for (src, want) in cases {
            let err = parse(src).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}\n got {err:?}");
        }
    }

    const HEAD: &str = "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n";

    #[test]
    fn data_bindings() {
        let m = parse(&format!(
            "{HEAD}{}",
            r#"
[data.orders]
kind = "mysql"
url = "mysql://app:pw@10.0.0.1:3306/orders"
env = "ORDERS_DSN"
sample = { rows = 100, bytes = "4MiB" }

[data.cache]
kind = "redis"
url = "redis://10.0.0.1:6379/1"
env = "REDIS_URL"
pool = [2, 15]

[data.sessions]
kind = "redis"
url = "redis://10.0.0.2:6379"
env = "SESSIONS_URL"
prefix_env = "SESSIONS_PREFIX"

[data.events]
kind = "kafka"
url = "kafka://b1:9092,b2:9092"
env = "KAFKA_BROKERS"
topics = { ORDERS_TOPIC = "orders.created" }
groups = { GROUP_ID = "cart" }

[data.config]
kind = "apollo"
url = "http://apollo-portal:8070"
env = "APOLLO_PORTAL"
app = "cart"
"#
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = m.data.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["cache", "config", "events", "orders", "sessions"]);
        let by = |n: &str| m.data.iter().find(|d| d.name == n).unwrap();
        assert_eq!(
            by("orders").options,
            DataOptions::Mysql {
                database: "orders".into(),
                sample: Some(Sample {
                    rows: 100,
                    bytes: 4 << 20
                }),
            }
        );
        assert_eq!(by("orders").env, "ORDERS_DSN");
        assert_eq!(
            by("cache").options,
            DataOptions::Redis {
                index: 1,
                mode: RedisMode::Database { first: 2, last: 15 },
                copy: None,
            }
        );
        assert_eq!(
            by("sessions").options,
            DataOptions::Redis {
                index: 0,
                mode: RedisMode::Prefix {
                    prefix_env: "SESSIONS_PREFIX".into()
                },
                copy: None,
            }
        );
        assert_eq!(
            by("config").options,
            DataOptions::Apollo(crate::data::ApolloOptions {
                app: "cart".into(),
                cluster_env: "APOLLO_CLUSTER".into(),
                env: "DEV".into(),
                namespace: "application".into(),
                operator: "apollo".into(),
                token_env: "APOLLO_OPENAPI_TOKEN".into(),
                items: BTreeMap::new(),
                token: None,
            })
        );
        assert_eq!(by("events").kind(), crate::lane::DataKind::Kafka);
        let m = parse(&format!(
            "{HEAD}[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/orders\"\nenv = \"ORDERS_DSN\"\n\
             [data.config]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"APOLLO_META\"\n\
             app = \"cart\"\napollo_env = \"fat\"\nnamespace = \"datasource\"\noperator = \"ci\"\n\
             token_env = \"CART_APOLLO_TOKEN\"\nitems = {{ \"spring.datasource.url\" = \"ORDERS_DSN\" }}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let DataOptions::Apollo(a) = &m.data[0].options else {
            panic!("{:?}", m.data)
        };
        assert_eq!(
            (a.env.as_str(), a.namespace.as_str(), a.operator.as_str()),
            ("FAT", "datasource", "ci")
        );
        assert_eq!(a.token_env, "CART_APOLLO_TOKEN");
        assert_eq!(a.items["spring.datasource.url"], "ORDERS_DSN");
        // Without bindings, none.
        assert!(parse(HEAD).unwrap().data.is_empty());
    }

    #[test]
    fn bad_data_bindings_name_file_line_and_column() {
        let d = |body: &str| format!("{HEAD}{body}");
        let cases = [
            (
                d("[data.\"ord;ers\"]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\n"),
                "svc/lane.toml:5:7: data: `ord;ers` is not a binding name",
            ),
            (
                d("[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/ord`ers\"\nenv = \"E\"\n"),
                "svc/lane.toml:7:7: data.orders: url: the database: `ord`ers` is not a database name",
            ),
            (
                d(
                    "[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o;DROP TABLE x\"\nenv = \"E\"\n",
                ),
                "svc/lane.toml:7:7: data.orders: url: the database: `o;DROP TABLE x` is not",
            ),
            (
                d("[data.orders]\nkind = \"postgres\"\nurl = \"mysql://h/o\"\nenv = \"E\"\n"),
                "svc/lane.toml:6:8: data.orders: kind: `postgres` is not one of",
            ),
            (
                d("[data.orders]\nkind = \"mysql\"\nurl = \"redis://h/1\"\nenv = \"E\"\n"),
                "svc/lane.toml:7:7: data.orders: url: a mysql address starts with `mysql://`",
            ),
            (
                d("[data.orders]\nkind = \"mysql\"\nurl = \"h:3306\"\nenv = \"E\"\n"),
                "svc/lane.toml:7:7: data.orders: url: `h:3306` is not an address",
            ),
            (
                d("[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"1E\"\n"),
                "svc/lane.toml:8:7: data.orders: env: `1E` is not an environment variable name",
            ),
            (
                d(
                    "[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\nsample = { rows = 10, bytes = 0 }\n",
                ),
                "svc/lane.toml:9:31: data.orders: sample.bytes is a quota of zero",
            ),
            (
                d(
                    "[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\nsample = { rows = 0, bytes = 10 }\n",
                ),
                "svc/lane.toml:9:19: data.orders: sample.rows must be at least 1",
            ),
            (
                d(
                    "[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\nsample = { rows = 1, bytes = \"3 cups\" }\n",
                ),
                "svc/lane.toml:9:30: data.orders: sample.bytes: `cups` is not a size unit",
            ),
            (
                d(
                    "[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\npool = [1, 2]\n",
                ),
                "svc/lane.toml:9:8: data.orders: `pool` does not apply to a mysql binding",
            ),
            (
                d(
                    "[data.c]\nkind = \"redis\"\nurl = \"redis://h/3\"\nenv = \"E\"\npool = [1, 5]\n",
                ),
                "svc/lane.toml:9:8: data.c: pool 1..=5 contains the baseline's database 3",
            ),
            (
                d("[data.c]\nkind = \"redis\"\nurl = \"redis://h\"\nenv = \"E\"\npool = [5, 1]\n"),
                "svc/lane.toml:9:8: data.c: pool must be `[first, last]`",
            ),
            (
                d("[data.c]\nkind = \"redis\"\nurl = \"redis://h/x\"\nenv = \"E\"\n"),
                "svc/lane.toml:7:7: data.c: url: `x` is not a database index",
            ),
            (
                d("[data.e]\nkind = \"kafka\"\nurl = \"kafka://b:9092\"\nenv = \"E\"\n"),
                "svc/lane.toml:6:8: data.e: a kafka binding names its topics",
            ),
            (
                d(
                    "[data.e]\nkind = \"kafka\"\nurl = \"kafka://b:9092\"\nenv = \"E\"\ntopics = { T = \"a b\" }\n",
                ),
                "svc/lane.toml:9:16: data.e: topics: `a b` is not a Kafka topic name",
            ),
            (
                d(
                    "[data.e]\nkind = \"kafka\"\nurl = \"kafka://u:hunter2@b:9092?mechanism=MD5\"\nenv = \"E\"\ntopics = { T = \"a\" }\n",
                ),
                "svc/lane.toml:7:7: data.e: url: kafka://u:***@b:9092?mechanism=MD5: `MD5` is not a SASL mechanism lane knows",
            ),
            (
                d("[data.a]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"E\"\n"),
                "svc/lane.toml:6:8: data.a: an apollo binding names its `app`",
            ),
            (
                d(
                    "[data.a]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"E\"\napp = \"x\"\nitems = { \"db.url\" = \"NOPE\" }\n",
                ),
                "svc/lane.toml:10:22: data.a: items: `db.url` names `NOPE`, which no other data binding sets",
            ),
            (
                d(
                    "[data.a]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"E\"\napp = \"x\"\nitems = { \"db url\" = \"E\" }\n",
                ),
                "svc/lane.toml:10:11: data.a: items: `db url` is not an Apollo item key",
            ),
            (
                d(
                    "[data.a]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"E\"\napp = \"x/../y\"\n",
                ),
                "svc/lane.toml:9:7: data.a: app: `x/../y` is not an Apollo name",
            ),
            (
                d(
                    "[data.a]\nkind = \"apollo\"\nurl = \"http://p:8070\"\nenv = \"E\"\napp = \"x\"\ntoken_env = \"A-B\"\n",
                ),
                "svc/lane.toml:10:13: data.a: token_env: `A-B` is not an environment variable name",
            ),
            (
                d(
                    "[data.a]\nkind = \"mysql\"\nurl = \"mysql://h/a\"\nenv = \"E\"\nitems = { k = \"E\" }\n",
                ),
                "svc/lane.toml:9:11: data.a: `items` does not apply to a mysql binding",
            ),
            (
                d(
                    "[data.a]\nkind = \"mysql\"\nurl = \"mysql://h/a\"\nenv = \"E\"\n[data.b]\nkind = \"mysql\"\nurl = \"mysql://h/b\"\nenv = \"E\"\n",
                ),
                "svc/lane.toml:12:7: data.b: env `E` is already the address of data.a",
            ),
            (
                d("[data.a]\nkind = \"mysql\"\nurl = \"mysql://h/a\"\n"),
                "svc/lane.toml:5:1: missing field `env`",
            ),
            (
                d("[data.a]\nkind = \"mysql\"\nurl = \"mysql://h/a\"\nenv = \"E\"\ncolour = 1\n"),
                "svc/lane.toml:9:1: unknown field `colour`",
            ),
        ];
        for (src, want) in cases {
            let err = parse(&src).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}\n got {err:?}");
        }
    }

    #[test]
    fn redis_copy_option() {
        let m = parse(&format!(
            "{HEAD}[data.c]\nkind = \"redis\"\nurl = \"redis://h\"\nenv = \"E\"\n\
             copy = {{ patterns = [\"session:*\", \"feature:*\"], keys = 500, bytes = \"1MiB\" }}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m.data[0].options,
            DataOptions::Redis {
                index: 0,
                mode: RedisMode::Database { first: 1, last: 15 },
                copy: Some(RedisCopy {
                    patterns: vec!["session:*".into(), "feature:*".into()],
                    keys: 500,
                    bytes: 1 << 20,
                }),
            }
        );
        let d = |copy: &str, extra: &str| {
            format!(
                "{HEAD}[data.c]\nkind = \"redis\"\nurl = \"redis://h\"\nenv = \"E\"\n{extra}copy = {copy}\n"
            )
        };
        let cases = [
            (
                d("{ patterns = [\"a*\"], keys = 10, bytes = 0 }", ""),
                "svc/lane.toml:9:48: data.c: copy.bytes is a quota of zero",
            ),
            (
                d("{ patterns = [\"a*\"], keys = 0, bytes = 10 }", ""),
                "svc/lane.toml:9:36: data.c: copy.keys must be at least 1 (it is 0)",
            ),
            (
                d("{ patterns = [], keys = 1, bytes = 10 }", ""),
                "svc/lane.toml:9:21: data.c: copy.patterns is empty",
            ),
            (
                d("{ patterns = [\"\"], keys = 1, bytes = 10 }", ""),
                "svc/lane.toml:9:22: data.c: copy.patterns: `` is not a key pattern",
            ),
            (
                d("{ patterns = [\"a*\"], keys = 1, bytes = \"3 cups\" }", ""),
                "svc/lane.toml:9:47: data.c: copy.bytes:",
            ),
            (
                d("{ patterns = [\"a*\"], keys = 1 }", ""),
                "svc/lane.toml:9:8: missing field `bytes`",
            ),
            (
                d(
                    "{ patterns = [\"a*\"], keys = 1, bytes = 10 }",
                    "prefix_env = \"P\"\n",
                ),
                "svc/lane.toml:10:8: data.c: `copy` needs a database per lane (`pool`)",
            ),
            (
                format!(
                    "{HEAD}[data.o]\nkind = \"mysql\"\nurl = \"mysql://h/o\"\nenv = \"E\"\n\
                     copy = {{ patterns = [\"a\"], keys = 1, bytes = 1 }}\n"
                ),
                "svc/lane.toml:9:8: data.o: `copy` does not apply to a mysql binding",
            ),
        ];
        for (src, want) in cases {
            let err = parse(&src).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}\n got {err:?}");
        }
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn workspace_file() {
        let w = Workspace::parse(
            Path::new("lane-workspace.toml"),
            "[[service]]\npath = \"a\"\n[[service]]\npath = \"b\"\n",
        )
        .unwrap();
        assert_eq!(w.services, [PathBuf::from("a"), PathBuf::from("b")]);
        let err = Workspace::parse(Path::new("w.toml"), "[[service]]\nname = \"a\"\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1));
    }

    #[test]
    fn workspace_follow_settings() {
        let path = Path::new("lane-workspace.toml");
        let ws = Workspace::parse(
            path,
            "[[service]]\npath = \"a\"\nfollow = \"origin/main\"\n\n[[service]]\npath = \"b\"\n\
             follow = \"refs/tags/v*\"\n\n[[service]]\npath = \"c\"\n",
        )
        .unwrap();
        assert_eq!(ws.services, [PathBuf::from("a"), "b".into(), "c".into()]);
        let follows: Vec<Option<String>> = ws.entries.iter().map(|e| e.followed_ref()).collect();
        assert_eq!(
            follows,
            [
                Some("origin/main".into()),
                Some("refs/tags/v*".into()),
                None
            ]
        );
        let e = Workspace::parse(path, "[[service]]\npath = \"a\"\nfollow = \"origin/*\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lane-workspace.toml:3:10: service.follow: `origin/*`: a pattern"),
            "{e}"
        );
        let e = Workspace::parse(path, "[[service]]\npath = \"a\"\nfollow = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lane-workspace.toml:3:10: invalid type"),
            "{e}"
        );
    }
}
