//! RFC 3986 syntax the router checks before it trusts a name: `Host` values and the authority of an
//! absolute-form request target (`uri-host [ ":" port ]`, RFC 9112 §3.2).

/// `unreserved` (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// `sub-delims` (RFC 3986 §2.2).
fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// Whether `s` is made of `unreserved`, `pct-encoded`, `sub-delims` and the bytes `also` allows.
fn is_pchars(s: &[u8], also: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(b) || is_sub_delim(b) || also(b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// `uri-host [ ":" port ]`: a `Host` value (RFC 9110 §7.2). The empty value is allowed (a request
/// whose target has no authority may send `Host:` empty).
pub(crate) fn is_valid_host(value: &str) -> bool {
    let v = value.as_bytes();
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|b| *b == b']') else {
            return false;
        };
        let port = match &v[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        if !is_ip_literal(&v[..=close]) {
            return false;
        }
        (None, port)
    } else {
        match v.iter().rposition(|b| *b == b':') {
            Some(i) => (Some(&v[..i]), Some(&v[i + 1..])),
            None => (Some(v), None),
        }
    };
    // IPv4address is a reg-name too, syntactically.
    if let Some(host) = host
        && !is_pchars(host, |_| false)
    {
        return false;
    }
    port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
}

/// `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`.
fn is_ip_literal(v: &[u8]) -> bool {
    let Some(inner) = v.strip_prefix(b"[").and_then(|v| v.strip_suffix(b"]")) else {
        return false;
    };
    if let Some(future) = inner
        .strip_prefix(b"v")
        .or_else(|| inner.strip_prefix(b"V"))
    {
        let Some(dot) = future.iter().position(|b| *b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|b| is_unreserved(*b) || is_sub_delim(*b) || *b == b':');
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `authority = [ userinfo "@" ] host [ ":" port ]` (RFC 3986 §3.2): the host and port part, or
/// `None` when `authority` is not valid.
pub(crate) fn authority_host(authority: &str) -> Option<&str> {
    let (userinfo, host) = match authority.split_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    if userinfo.is_some_and(|u| !is_pchars(u.as_bytes(), |b| b == b':')) || !is_valid_host(host) {
        return None;
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in [
            "b.demo.localhost",
            "b.demo.localhost:8080",
            "B.Demo.LOCALHOST.",
            "127.0.0.1:9",
            "[::1]",
            "[::1]:80",
            "[v1.x:y]",
            "a%20b",
            "host:",
            "",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in [
            "b.demo.localhost@evil",
            "b.demo.localhost, c.demo.localhost",
            "b demo",
            "b.demo.localhost:80x",
            "b.demo.localhost#x",
            "b/c",
            "[::1",
            "[::1]x",
            "[zz]",
            "[v.x]",
            "a%2",
            "a:1:2",
            "é",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            authority_host("u:p@b.demo.localhost:7"),
            Some("b.demo.localhost:7")
        );
        assert_eq!(authority_host("b.demo.localhost"), Some("b.demo.localhost"));
        assert_eq!(authority_host("a@b@c"), None);
        assert_eq!(authority_host("b#@c"), None);
        assert_eq!(authority_host("b c"), None);
    }
}
