//! Where Consul is and who we are to it, found the way Consul's own tools find it:
//! `CONSUL_HTTP_ADDR` (`host:port`, `http://…`, `https://…`; default `127.0.0.1:8500`),
//! `CONSUL_HTTP_TOKEN` (or `CONSUL_HTTP_TOKEN_FILE`), `CONSUL_HTTP_SSL` (`true`: https when the
//! address has no scheme), `CONSUL_CACERT` (a PEM file of CA certificates; else the system's),
//! `CONSUL_DATACENTER` / `CONSUL_NAMESPACE` — with `[backend] datacenter` and `namespace` of
//! `lane.toml` over the environment's, and `[backend] prefix` (default `gaia`).

use std::path::PathBuf;

use lane_api::{BackendError, Result};

/// The default name prefix: baseline `gaia.<app>.<proc>`, lanes `gaia-lane.<app>.<proc>`.
pub const DEFAULT_PREFIX: &str = lane_core::naming::DEFAULT_PREFIX;
/// Consul's default agent address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8500";

/// What `lane.toml`'s `[backend]` says about Consul.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub prefix: Option<String>,
    pub datacenter: Option<String>,
    pub namespace: Option<String>,
}

/// Everything the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http://host:port` or `https://host:port`, without a trailing slash.
    pub base_url: String,
    /// Where [`Settings::base_url`] came from, for messages: `CONSUL_HTTP_ADDR` or the default.
    pub addr_source: &'static str,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub datacenter: Option<String>,
    pub namespace: Option<String>,
    pub prefix: String,
}

impl Settings {
    /// From the process environment and `opts`.
    pub fn from_env(opts: &Options) -> Result<Settings> {
        Self::from_lookup(opts, |k| std::env::var(k).ok())
    }

    /// From `lookup` (an environment) and `opts`.
    pub fn from_lookup(
        opts: &Options,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let ssl = match get("CONSUL_HTTP_SSL").as_deref() {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                BackendError::invalid(format!(
                    "CONSUL_HTTP_SSL={v} is not a boolean (true, false, 1, 0)"
                ))
            })?,
        };
        let (addr, addr_source) = match get("CONSUL_HTTP_ADDR") {
            Some(a) => (a, "CONSUL_HTTP_ADDR"),
            None => (DEFAULT_ADDR.to_owned(), "the default address"),
        };
        let base_url = base_url(&addr, ssl).map_err(|e| {
            BackendError::invalid(format!("{addr_source} `{addr}`: {e}"))
                .with_help("CONSUL_HTTP_ADDR is host:port, http://host:port or https://host:port")
        })?;
        let token = match get("CONSUL_HTTP_TOKEN") {
            Some(t) => Some(t),
            None => match get("CONSUL_HTTP_TOKEN_FILE") {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            BackendError::invalid(format!(
                                "CONSUL_HTTP_TOKEN_FILE {f} cannot be read: {e}"
                            ))
                        })?
                        .trim()
                        .to_owned(),
                )
                .filter(|t| !t.is_empty()),
                None => None,
            },
        };
        let prefix = opts
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        Ok(Settings {
            base_url,
            addr_source,
            token,
            ca_cert: get("CONSUL_CACERT").map(PathBuf::from),
            datacenter: opts.datacenter.clone().or_else(|| get("CONSUL_DATACENTER")),
            namespace: opts.namespace.clone().or_else(|| get("CONSUL_NAMESPACE")),
            prefix,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// `host:port` → `http(s)://host:port`; a URL keeps its scheme (`CONSUL_HTTP_SSL` only chooses
/// for an address without one, as the Consul CLI does).
fn base_url(addr: &str, ssl: bool) -> std::result::Result<String, String> {
    let (scheme, rest) = match addr.split_once("://") {
        Some(("http", r)) => ("http", r),
        Some(("https", r)) => ("https", r),
        Some((s, _)) => {
            return Err(format!(
                "the scheme `{s}` is not supported (http or https; unix sockets are not)"
            ));
        }
        None => (if ssl { "https" } else { "http" }, addr),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err("expected host:port".into());
    }
    let authority: http::uri::Authority = rest.parse().map_err(|e| format!("{e}"))?;
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 8501 } else { 8500 });
    Ok(format!("{scheme}://{}:{port}", authority.host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(env: &[(&str, &str)]) -> Result<Settings> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(&Options::default(), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn addresses_as_the_consul_cli_reads_them() {
        assert_eq!(settings(&[]).unwrap().base_url, "http://127.0.0.1:8500");
        let s = settings(&[("CONSUL_HTTP_ADDR", "consul.dev:8500")]).unwrap();
        assert_eq!(s.base_url, "http://consul.dev:8500");
        assert_eq!(s.addr_source, "CONSUL_HTTP_ADDR");
        let s = settings(&[
            ("CONSUL_HTTP_ADDR", "consul.dev:8501"),
            ("CONSUL_HTTP_SSL", "true"),
        ]);
        assert_eq!(s.unwrap().base_url, "https://consul.dev:8501");
        let s = settings(&[("CONSUL_HTTP_ADDR", "https://c.dev/")]).unwrap();
        assert_eq!(s.base_url, "https://c.dev:8501");
        let s = settings(&[
            ("CONSUL_HTTP_ADDR", "http://c.dev:80"),
            ("CONSUL_HTTP_SSL", "1"),
        ]);
        assert_eq!(s.unwrap().base_url, "http://c.dev:80");
        let e = settings(&[("CONSUL_HTTP_ADDR", "unix:///tmp/consul.sock")]).unwrap_err();
        assert!(
            e.message
                .starts_with("CONSUL_HTTP_ADDR `unix:///tmp/consul.sock`"),
            "{e}"
        );
        let e = settings(&[("CONSUL_HTTP_SSL", "yes please")]).unwrap_err();
        assert!(e.message.contains("CONSUL_HTTP_SSL"), "{e}");
    }

    #[test]
    fn lane_toml_wins_over_the_environment() {
        let opts = Options {
            prefix: Some("acme".into()),
            datacenter: Some("dev-1".into()),
            namespace: None,
        };
        let s = Settings::from_lookup(&opts, |k| match k {
            "CONSUL_DATACENTER" => Some("dc9".into()),
            "CONSUL_NAMESPACE" => Some("team-a".into()),
            "CONSUL_HTTP_TOKEN" => Some(" secret ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.prefix, "acme");
        assert_eq!(s.datacenter.as_deref(), Some("dev-1"));
        assert_eq!(s.namespace.as_deref(), Some("team-a"));
        assert_eq!(s.token.as_deref(), Some("secret"));
        let s = Settings::from_lookup(&Options::default(), |_| None).unwrap();
        assert_eq!(s.prefix, DEFAULT_PREFIX);
        assert_eq!(s.token, None);
    }
}
