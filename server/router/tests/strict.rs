//! Generated malformed (and well-formed) request heads and chunked bodies, sent to the real router
//! over loopback, checked against strict reference parsers: `httparse` plus the RFC 9112 §3.2 /
//! RFC 3986 rules for heads, and a chunked-body grammar (RFC 9112 §7.1) written here, separately
//! from the router's own scanner. The router must answer 400 exactly when the reference refuses.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct World {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

/// One router (with `demo.b` and `demo.c` behind it) for every case.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let (b, stop_b) = backend("b-base").await;
            let (c, stop_c) = backend("c-base").await;
            std::mem::forget((stop_b, stop_c));
            let r = router(table(
                vec![
                    ep("demo.b", "baseline", true, b),
                    ep("demo.c", "baseline", true, c),
                ],
                &[],
                1,
            ))
            .await;
            let addr = r.addr;
            std::mem::forget(r);
            addr
        });
        World { rt, addr }
    })
}

/// Sends `raw`, half-closes, and returns the status of the router's answer (`None`: it closed
/// without one).
fn exchange(raw: &[u8]) -> Option<u16> {
    let w = world();
    w.rt.block_on(async {
        let mut s = TcpStream::connect(w.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        let text = std::str::from_utf8(got.get(9..12)?).ok()?;
        text.parse().ok()
    })
}

// ---- the reference for heads ----

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `*( unreserved / pct-encoded / sub-delims / extra )`, by a regular scan.
fn ref_chars(s: &[u8], extra: &[u8]) -> bool {
    let mut rest = s;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            match tail {
                [h, l, more @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => rest = more,
                _ => return false,
            }
        } else if unreserved(b) || sub_delim(b) || extra.contains(&b) {
            rest = tail;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 `host [ ":" port ]`.
fn ref_host(v: &[u8]) -> bool {
    let (host, port): (&[u8], &[u8]) = if v.starts_with(b"[") {
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &v[1..end];
        let ok = match literal.first() {
            Some(b'v' | b'V') => {
                let mut parts = literal[1..].splitn(2, |&b| b == b'.');
                let ver = parts.next().unwrap_or_default();
                let rest = parts.next().unwrap_or_default();
                !ver.is_empty()
                    && ver.iter().all(u8::is_ascii_hexdigit)
                    && !rest.is_empty()
                    && rest
                        .iter()
                        .all(|&b| unreserved(b) || sub_delim(b) || b == b':')
            }
            _ => {
                std::str::from_utf8(literal).is_ok_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
            }
        };
        if !ok {
            return false;
        }
        match &v[end + 1..] {
            [] => (b"", b""),
            [b':', port @ ..] => (b"", port),
            _ => return false,
        }
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, b""),
        }
    };
    ref_chars(host, b"") && port.iter().all(u8::is_ascii_digit)
}

/// Whether the router must refuse the head with a 400 (the head holds no body).
fn ref_head_is_bad(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        _ => return true,
    }
    let target = req.path.unwrap_or_default();
    if target.contains('#') {
        return true;
    }
    if !(target.starts_with('/') || target == "*") {
        let Some(rest) = target.strip_prefix("http://") else {
            return true;
        };
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let host = match authority.rsplit_once('@') {
            Some((user, host)) => {
                if !ref_chars(user.as_bytes(), b":") {
                    return true;
                }
                host
            }
            None => authority,
        };
        if !ref_host(host.as_bytes()) {
            return true;
        }
    }
    let hosts: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    match hosts.as_slice() {
        [] => req.version == Some(1),
        [one] => !ref_host(one),
        _ => true,
    }
}

// ---- the reference for chunked bodies: a recursive-descent parser over the whole body ----

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        let ok = self.peek() == Some(b);
        self.i += usize::from(ok);
        ok
    }
    fn many(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        self.i - start
    }
    fn ws(&mut self) {
        self.many(|b| b == b' ' || b == b'\t');
    }
    fn crlf(&mut self) -> Result<(), ()> {
        if self.eat(b'\r') && self.eat(b'\n') {
            Ok(())
        } else {
            Err(())
        }
    }
    /// `chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`
    fn chunk_ext(&mut self) -> Result<(), ()> {
        loop {
            let save = self.i;
            self.ws();
            if !self.eat(b';') {
                self.i = save;
                return Ok(());
            }
            self.ws();
            if self.many(tchar) == 0 {
                return Err(());
            }
            let save = self.i;
            self.ws();
            if !self.eat(b'=') {
                self.i = save;
                continue;
            }
            self.ws();
            if self.eat(b'"') {
                loop {
                    match self.peek().ok_or(())? {
                        b'"' => {
                            self.i += 1;
                            break;
                        }
                        b'\\' => {
                            let next = *self.s.get(self.i + 1).ok_or(())?;
                            if !(next == b'\t'
                                || next == b' '
                                || (0x21..=0x7e).contains(&next)
                                || next >= 0x80)
                            {
                                return Err(());
                            }
                            self.i += 2;
                        }
                        b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {
                            self.i += 1;
                        }
                        _ => return Err(()),
                    }
                }
            } else if self.many(tchar) == 0 {
                return Err(());
            }
        }
    }
    /// The whole chunked body; `Ok` with the data when `s` is exactly one valid body.
    fn body(&mut self) -> Result<Vec<u8>, ()> {
        let mut data = Vec::new();
        loop {
            let digits = self.many(|b| b.is_ascii_hexdigit());
            if digits == 0 {
                return Err(());
            }
            let text = std::str::from_utf8(&self.s[self.i - digits..self.i]).map_err(|_| ())?;
            let size = usize::from_str_radix(text, 16).map_err(|_| ())?;
            self.chunk_ext()?;
            self.crlf()?;
            if size == 0 {
                break;
            }
            let chunk = self.s.get(self.i..self.i + size).ok_or(())?;
            data.extend_from_slice(chunk);
            self.i += size;
            self.crlf()?;
        }
        // trailer-section = *( field-line CRLF ), then CRLF
        while self.peek() != Some(b'\r') {
            if self.many(tchar) == 0 || !self.eat(b':') {
                return Err(());
            }
            self.many(|b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80);
            self.crlf()?;
        }
        self.crlf()?;
        if self.i == self.s.len() {
            Ok(data)
        } else {
            Err(())
        }
    }
}

fn ref_chunked(s: &[u8]) -> Option<Vec<u8>> {
    P { s, i: 0 }.body().ok()
}

// ---- generators ----

fn host_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("b.demo.localhost"),
       1 => Just("c.demo.localhost"),
       1 => Just("localhost"),
       1 => Just("@"),
       1 => Just(","),
       1 => Just(", "),
       1 => Just(" x"),
       1 => Just("#"),
       1 => Just(":"),
       1 => Just(":80"),
       1 => Just("%2"),
       1 => Just("%41"),
       1 => Just("[::1]"),
       1 => Just("[v1.a]"),
       1 => Just("["),
       1 => Just("]"),
       1 => Just("evil"),
       1 => Just("é"),
       1 => Just("/"),
       1 => Just("?"),
       1 => Just("!$&'()*+;="),
       1 => Just("\t"),
    ];
    proptest::collection::vec(piece, 1..4).prop_map(|p| p.concat())
}

fn head() -> impl Strategy<Value = Vec<u8>> {
    let target = prop_oneof![
        Just("/".to_owned()),
        Just("/a?b=c".to_owned()),
        Just("/a#frag".to_owned()),
        Just("*".to_owned()),
        Just("nowhere".to_owned()),
        host_value().prop_map(|h| format!("http://{h}/x")),
        (host_value(), host_value()).prop_map(|(u, h)| format!("http://{u}@{h}/")),
        host_value().prop_map(|h| format!("http://{h}#@c.demo.localhost/")),
    ];
    let version = prop_oneof![3 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0")];
    let hosts = proptest::collection::vec(host_value(), 0..3);
    let extra = prop_oneof![
        4 => Just(""),
       1 => Just("x-lane: feature-x\r\n"),
       1 => Just("x-a: b\x01c\r\n"),
       1 => Just("x a: b\r\n"),
       1 => Just("x-a b\r\n"),
       1 => Just(": b\r\n"),
       1 => Just("x-a:\x7f\r\n"),
    ];
    (target, version, hosts, extra).prop_map(|(target, version, hosts, extra)| {
        let mut raw = format!("GET {target} {version}\r\n");
        for h in hosts {
            raw.push_str(&format!("Host: {h}\r\n"));
        }
        raw.push_str(extra);
        raw.push_str("\r\n");
        raw.into_bytes()
    })
}

fn ext() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(""),
       1 => Just(";a"),
       1 => Just(";a=b"),
       1 => Just("; a = b"),
       1 => Just(" ;a=\"x y\\\"\""),
       1 => Just(";a;b=c"),
       1 => Just(" junk"),
       1 => Just(" "),
       1 => Just(";"),
       1 => Just(";a\x00"),
       1 => Just(";a=\x01"),
       1 => Just(";=b"),
       1 => Just(";a="),
       1 => Just(";a=\"open"),
       1 => Just(";a=\"\x7f\""),
       1 => Just(";a=b c"),
    ]
}

fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = (
        proptest::collection::vec(any::<u8>(), 1..20),
        ext(),
        0usize..3,
        any::<bool>(),
    );
    let trailer = prop_oneof![
       1 => Just("x-t: 1"),
       1 => Just("x-t:"),
       1 => Just("x-t: \tv w"),
       1 => Just("GET /smuggled HTTP/1.1"),
       1 => Just(": v"),
       1 => Just("x t: v"),
       1 => Just("x-t: a\x01b"),
       1 => Just("x-t: é"),
    ];
    (
        proptest::collection::vec(chunk, 0..4),
        ext(),
        proptest::collection::vec(trailer, 0..3),
    )
        .prop_map(|(chunks, last_ext, trailers)| {
            let mut raw = Vec::new();
            for (data, ext, zeros, upper) in chunks {
                let size = format!("{}{:x}", "0".repeat(zeros), data.len());
                let size = if upper { size.to_uppercase() } else { size };
                raw.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                raw.extend_from_slice(&data);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(format!("0{last_ext}\r\n").as_bytes());
            for t in trailers {
                raw.extend_from_slice(t.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            raw
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn heads_are_refused_exactly_when_the_reference_refuses(raw in head()) {
        let bad = ref_head_is_bad(&raw);
        let status = exchange(&raw);
        prop_assert!(status.is_some(), "no answer to {:?}", String::from_utf8_lossy(&raw));
        prop_assert_eq!(
            status == Some(400),
            bad,
            "status {:?} for {:?}",
            status,
            String::from_utf8_lossy(&raw)
        );
    }

    #[test]
    fn chunked_bodies_are_refused_exactly_when_the_grammar_refuses(body in chunked_body()) {
        let mut raw = b"POST /echo HTTP/1.1\r\nHost: b.demo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(&body);
        let status = exchange(&raw);
        match ref_chunked(&body) {
            Some(_) => prop_assert_eq!(status, Some(200), "{:?}", body.escape_ascii().to_string()),
            None => prop_assert_eq!(status, Some(400), "{:?}", body.escape_ascii().to_string()),
        }
    }
}
