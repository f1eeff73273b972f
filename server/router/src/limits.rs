//! How long the router waits and how much it takes on: timeouts and the connection cap, from the
//! environment like the router's other settings, and the open-file limit it raises at start.

use std::time::Duration;

/// The router's timeouts and limits. The defaults follow nginx's and Envoy's: a slow or stalled
/// peer is let go after a while, a busy one is not cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a whole request head, from its connection (first
    /// request) or its first byte (later ones). Partial head → `408` and close; nothing → close.
    /// nginx `client_header_timeout` is 60 s; hyper's header read timeout 30 s.
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection stays open between requests (nginx
    /// `keepalive_timeout`: 75 s).
    pub idle_timeout: Duration,
    /// How long connecting to an instance may take before the router answers `504`.
    pub connect_timeout: Duration,
    /// How long an instance may take to start its response (its head) once the request is sent,
    /// before the router answers `504` (nginx `proxy_read_timeout`: 60 s).
    pub response_timeout: Duration,
    /// How long a body being relayed may go without a byte, either way (nginx
    /// `client_body_timeout` and `proxy_read_timeout`: 60 s between two reads, not for the whole
    /// body). A client that stalls its request body gets `408` (if no response has started) and
    /// its connection closed; an instance that stalls its response body has the client's
    /// connection cut (reset: the response is incomplete). Either way the upstream connection is
    /// closed. The same holds for requests served through hyper (h2c), where a stalled body
    /// resets the stream it feeds.
    pub body_timeout: Duration,
    /// How long a peer may go without taking a byte the router writes to it (nginx
    /// `send_timeout` and `proxy_send_timeout`: 60 s between two writes, not for the whole
    /// message). A client that stops reading its response has its connection reset; an instance
    /// that stops reading its request gets no more of it, and the client a `504` if no response
    /// has started; either side of an upgraded (WebSocket) tunnel that stops taking what the
    /// other sends closes it. On connections served through hyper (h2c, and HTTP/1.x ones for
    /// `grpc` services) a client that takes no byte for this long has its connection closed.
    pub send_timeout: Duration,
    /// Downstream connections served at once; more are refused with a `503` that says so.
    pub max_connections: usize,
    /// Threads that serve connections, each with its own single-threaded runtime (a connection
    /// stays on one); 0 serves them on the runtime that runs [`crate::Router::serve`].
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            // Measured (docs/benchmarks.md, wrk-vs-nginx): dedicated worker threads showed no
            // better tail than the process's runtime on a loaded 2-core machine, and one thread
            // lost throughput at 32 connections; so they stay a setting, not the default.
            workers: 0,
        }
    }
}

/// The environment variables [`Limits::from_env`] reads, with what each sets.
pub const LIMIT_VARS: [(&str, &str); 8] = [
    (
        "LANE_ROUTER_HEAD_TIMEOUT",
        "request-head timeout (default 30s)",
    ),
    (
        "LANE_ROUTER_IDLE_TIMEOUT",
        "idle keep-alive timeout (default 75s)",
    ),
    (
        "LANE_ROUTER_CONNECT_TIMEOUT",
        "upstream connect timeout (default 5s)",
    ),
    (
        "LANE_ROUTER_RESPONSE_TIMEOUT",
        "upstream response-head timeout (default 60s)",
    ),
    (
        "LANE_ROUTER_BODY_TIMEOUT",
        "longest pause within a request or response body (default 60s)",
    ),
    (
        "LANE_ROUTER_SEND_TIMEOUT",
        "longest wait for a peer to take what the router writes (default 60s)",
    ),
    (
        "LANE_ROUTER_MAX_CONNECTIONS",
        "concurrent downstream connections (default 10000)",
    ),
    (
        "LANE_ROUTER_WORKERS",
        "threads serving connections; 0 = the process's runtime (default 0)",
    ),
];

impl Limits {
    /// The defaults, overridden by `LANE_ROUTER_HEAD_TIMEOUT`, `LANE_ROUTER_IDLE_TIMEOUT`,
    /// `LANE_ROUTER_CONNECT_TIMEOUT`, `LANE_ROUTER_RESPONSE_TIMEOUT`, `LANE_ROUTER_BODY_TIMEOUT`, `LANE_ROUTER_SEND_TIMEOUT` (durations like `30s`,
    /// `500ms`) and `LANE_ROUTER_MAX_CONNECTIONS` (a positive number). Empty means unset.
    pub fn from_env() -> Result<Limits, String> {
        Limits::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Limits::from_env`], reading variables through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let mut limits = Limits::default();
        let duration = |name: &str, slot: &mut Duration| -> Result<(), String> {
            if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
                *slot = lane_core::duration::parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        format!(
                            "{name} `{v}` is not a duration longer than zero, like 30s or 500ms"
                        )
                    })?;
            }
            Ok(())
        };
        duration("LANE_ROUTER_HEAD_TIMEOUT", &mut limits.head_timeout)?;
        duration("LANE_ROUTER_IDLE_TIMEOUT", &mut limits.idle_timeout)?;
        duration("LANE_ROUTER_CONNECT_TIMEOUT", &mut limits.connect_timeout)?;
        duration("LANE_ROUTER_RESPONSE_TIMEOUT", &mut limits.response_timeout)?;
        duration("LANE_ROUTER_BODY_TIMEOUT", &mut limits.body_timeout)?;
        duration("LANE_ROUTER_SEND_TIMEOUT", &mut limits.send_timeout)?;
        if let Some(v) = var("LANE_ROUTER_MAX_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
            limits.max_connections = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("LANE_ROUTER_MAX_CONNECTIONS `{v}` is not a number above zero")
            })?;
        }
        if let Some(v) = var("LANE_ROUTER_WORKERS").filter(|v| !v.trim().is_empty()) {
            limits.workers = v.trim().parse().ok().filter(|n| *n <= 256).ok_or_else(|| {
                format!("LANE_ROUTER_WORKERS `{v}` is not a number of threads (0 to 256)")
            })?;
        }
        Ok(limits)
    }
}

/// Raises this process's soft open-file limit to its hard limit (desktops default to a soft limit
/// of 1024, which a few hundred proxied connections exhaust: each takes two descriptors). Returns
/// the limit now in force, or why it could not be raised.
pub fn raise_open_file_limit() -> Result<u64, String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (now.current, now.maximum) else {
        // An unlimited soft limit needs nothing; an unlimited hard one is not settable as such.
        return Ok(now.current.unwrap_or(u64::MAX));
    };
    if current >= maximum {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        },
    )
    .map_err(|e| format!("cannot raise the open-file limit from {current} to {maximum}: {e}"))?;
    Ok(maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> Result<Limits, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Limits::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn limits_come_from_the_environment() {
        assert_eq!(lookup(&[]).unwrap(), Limits::default());
        let l = lookup(&[
            ("LANE_ROUTER_HEAD_TIMEOUT", "250ms"),
            ("LANE_ROUTER_IDLE_TIMEOUT", "2s"),
            ("LANE_ROUTER_CONNECT_TIMEOUT", "1s"),
            ("LANE_ROUTER_RESPONSE_TIMEOUT", "1m"),
            ("LANE_ROUTER_BODY_TIMEOUT", "3s"),
            ("LANE_ROUTER_SEND_TIMEOUT", "4s"),
            ("LANE_ROUTER_MAX_CONNECTIONS", "7"),
            ("LANE_ROUTER_WORKERS", "2"),
        ])
        .unwrap();
        assert_eq!(l.head_timeout, Duration::from_millis(250));
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.connect_timeout, Duration::from_secs(1));
        assert_eq!(l.response_timeout, Duration::from_secs(60));
        assert_eq!(l.body_timeout, Duration::from_secs(3));
        assert_eq!(l.send_timeout, Duration::from_secs(4));
        assert_eq!(l.max_connections, 7);
        assert_eq!(l.workers, 2);
        assert_eq!(
            lookup(&[("LANE_ROUTER_IDLE_TIMEOUT", "")]).unwrap(),
            Limits::default()
        );
        for (name, bad) in [
            ("LANE_ROUTER_HEAD_TIMEOUT", "5"),
            ("LANE_ROUTER_IDLE_TIMEOUT", "0s"),
            ("LANE_ROUTER_RESPONSE_TIMEOUT", "soon"),
            ("LANE_ROUTER_BODY_TIMEOUT", "-1s"),
            ("LANE_ROUTER_SEND_TIMEOUT", "0ms"),
            ("LANE_ROUTER_MAX_CONNECTIONS", "0"),
            ("LANE_ROUTER_MAX_CONNECTIONS", "many"),
            ("LANE_ROUTER_WORKERS", "lots"),
        ] {
            let e = lookup(&[(name, bad)]).unwrap_err();
            assert!(e.contains(name) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // Start from a desktop's soft limit, so that there is something to raise.
        let hard = getrlimit(Resource::Nofile).maximum;
        if hard.is_some_and(|h| h > 1024) {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(1024),
                    maximum: hard,
                },
            )
            .unwrap();
        }
        let got = raise_open_file_limit().unwrap();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(got));
        assert_eq!(now.current, now.maximum);
    }
}
