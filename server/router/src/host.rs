//! Which service a request is for, from its `Host` header or HTTP/2 `:authority`.

use lane_core::ServiceId;

/// The domain under which the router serves services: `<proc>.<app>.localhost`.
pub const SERVICE_DOMAIN: &str = "localhost";

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// `<proc>.<app>.localhost[:port]`.
    Service(ServiceId),
    /// Under `.localhost` but not a valid service host; the string says why.
    BadServiceHost(String),
    /// Anything else (`localhost`, an IP address, no host): the router's own endpoints.
    Admin,
}

/// Classifies a host (with or without port). Case-insensitive.
pub(crate) fn classify(host: Option<&str>) -> HostKind {
    let Some(host) = host else {
        return HostKind::Admin;
    };
    let name = strip_port(host).trim_end_matches('.');
    let Some(labels) = strip_suffix_ignore_case(name, SERVICE_DOMAIN) else {
        return HostKind::Admin;
    };
    let Some(labels) = labels.strip_suffix('.') else {
        // `localhost` itself, or `xlocalhost`.
        return HostKind::Admin;
    };
    let lowered;
    let labels = if labels.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = labels.to_ascii_lowercase();
        lowered.as_str()
    } else {
        labels
    };
    match labels.split_once('.') {
        Some((proc_, app)) if !app.contains('.') => match ServiceId::new(app, proc_) {
            Ok(id) => HostKind::Service(id),
            Err(e) => HostKind::BadServiceHost(format!("host `{host}`: {e}")),
        },
        _ => HostKind::BadServiceHost(format!(
            "host `{host}` is not a service host; service hosts look like `<proc>.<app>.{SERVICE_DOMAIN}`"
        )),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: never a service host.
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a host name (no port) is `localhost` or under it, which resolves to loopback without
/// asking DNS (RFC 6761): service hosts reach the local router this way. Case-insensitive; a
/// trailing dot is allowed.
pub fn is_loopback_name(host: &str) -> bool {
    let name = host.trim_end_matches('.');
    strip_suffix_ignore_case(name, SERVICE_DOMAIN)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let (head, tail) = (s.get(..cut)?, s.get(cut..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "LOCALHOST",
            "b.demo.localhost",
            "b.demo.LocalHost.",
        ] {
            assert!(is_loopback_name(yes), "{yes}");
        }
        for no in [
            "xlocalhost",
            "localhost.example.com",
            "example.com",
            "127.0.0.1",
            "",
        ] {
            assert!(!is_loopback_name(no), "{no}");
        }
    }

    fn service(s: &str) -> HostKind {
        HostKind::Service(s.parse().unwrap())
    }

    #[test]
    fn hosts() {
        assert_eq!(classify(Some("b.demo.localhost")), service("demo.b"));
        assert_eq!(classify(Some("b.demo.localhost:8080")), service("demo.b"));
        assert_eq!(classify(Some("B.Demo.LOCALHOST:8080")), service("demo.b"));
        assert_eq!(classify(Some("b.demo.localhost.")), service("demo.b"));
        for admin in [
            "localhost",
            "localhost:80",
            "127.0.0.1:9",
            "[::1]:80",
            "example.com",
            "",
        ] {
            assert_eq!(classify(Some(admin)), HostKind::Admin, "{admin}");
        }
        assert_eq!(classify(None), HostKind::Admin);
        for bad in ["demo.localhost", "a.b.c.localhost", "b_x.demo.localhost:1"] {
            assert!(
                matches!(classify(Some(bad)), HostKind::BadServiceHost(_)),
                "{bad}"
            );
        }
    }
}
