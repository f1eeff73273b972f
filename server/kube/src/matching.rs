//! The Istio header matches that send a lane's requests to its route, built to accept exactly the
//! header values `lane_core::header::lane_value` reads as that lane (`docs/contracts.md`, "The
//! lane value of a request").
//!
//! Each lane route has two `match` entries (Istio ORs them):
//!
//! 1. the lane header (`x-lane` unless configured) with [`lane_header_regex`];
//! 2. `baggage` with [`baggage_regex`], and `withoutHeaders: {<lane header>: {}}`: only when the
//!    lane header is absent, because lane_core reads baggage only then (an empty or invalid lane
//!    header still wins over baggage, and routes to baseline).
//!
//! Istio's matching, as documented: routes are tried in order and the first whose match holds
//! wins; a `regex` is RE2 and must match the whole value; Envoy matches a header that came on
//! several lines against its values joined with `,`, and `{}` (no value) tests presence.
//!
//! | lane_core rule | generated match | exact? |
//! | --- | --- | --- |
//! | values trimmed of spaces and tabs | `[ \t]*` around each item | yes |
//! | ASCII case-insensitive | each letter as `[xX]`, not `(?i)`: RE2's `(?i)` folds Unicode, so `(?i)k` would also accept the Kelvin sign `K` (U+212A), which lane_core rejects | yes |
//! | comma-separated items and several lines must agree | `item(,item)*` with the same lane in every item; Envoy joins lines with `,` | yes |
//! | `baseline`, an unknown lane, an invalid value | no lane route matches; the final route is `baseline` | yes |
//! | lane header wins over baggage, even when invalid or empty | the baggage match has `withoutHeaders: {<lane header>: {}}` (presence) | yes, if Envoy keeps an empty-valued header as present |
//! | baggage: `lane` key (case-sensitive, trimmed), value trimmed, percent-decoded, trimmed, case-folded; properties after `;` ignored | each character of the id also as `%XX` (either hex case, either letter case), `%20`/`%09` as whitespace, `(;[^,]*)?` for properties | yes |
//! | baggage: members that are not `lane=…` are ignored, whatever they hold | a regex for "any member whose key, trimmed, is not `lane`, or that has no `=`" (RE2 has no lookahead, so the complement of `lane` is spelled out) | yes |
//! | baggage: every `lane` member must agree; one invalid makes the whole value invalid | every member is either another key or this lane's member; at least one is this lane's | yes |
//! | a header line over 8 KiB is invalid (baseline) | not expressible (a header has one matcher per match; the regex cannot also bound the length) | **no**: Istio routes such a request by its content (Envoy's own limit, 60 KiB of headers by default, still applies) |
//! | a line that is not UTF-8 is invalid (baseline) | RE2 runs over UTF-8; how it treats other bytes inside `[^,;=]*` of an ignored baggage member is RE2's business | **no** for non-UTF-8 bytes in other baggage members; a lane header or lane member with such bytes never matches |
//! | (no lane_core rule) regex size | a lane's baggage regex is about 430 bytes plus 30 per id character (695 for `feature-x`), its lane header regex 26 plus 8 per character; Envoy refuses regexes whose RE2 program exceeds its `re2.max_program_size` runtime limits | not checked here: no Envoy in the tests |
//! | a lane falls through to its parent when its instances are unhealthy | routes follow Deployments, not readiness: a lane with a Deployment of the service gets its requests even while its pods are not ready (Istio answers 503 rather than falling back) | **no**, by design: the plan takes every personal version it deploys as an instance |
//!
//! The generated routes are checked against `RoutingTable::route` on generated lane sets and
//! requests by evaluating them with Istio's rules (`server/kube/tests/plan_invariant.rs`); its
//! generators stay within the rows marked exact.

/// Whether `name` can be the lane header in a VirtualService: Istio wants header keys lowercase
/// with `-` as the separator; `baggage` is taken.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name != "baggage"
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One lane id character, ASCII case-insensitively.
fn push_char(out: &mut String, c: char) {
    if c.is_ascii_lowercase() {
        out.push('[');
        out.push(c);
        out.push(c.to_ascii_uppercase());
        out.push(']');
    } else {
        // Digits and `-` (outside a class `-` is literal in RE2).
        out.push(c);
    }
}

const OWS: &str = "[ \t]*";

/// The lane header's regex for `lane`: every comma-separated item (over every line) is `lane`,
/// in any ASCII case, with optional spaces and tabs around it.
pub fn lane_header_regex(lane: &str) -> String {
    let mut item = String::with_capacity(lane.len() * 4 + 2 * OWS.len());
    item.push_str(OWS);
    for c in lane.chars() {
        push_char(&mut item, c);
    }
    item.push_str(OWS);
    format!("{item}(?:,{item})*")
}

/// Hex digit of a nibble as an RE2 atom that accepts either case.
fn push_hex(out: &mut String, nibble: u8) {
    match nibble {
        0..=9 => out.push(char::from(b'0' + nibble)),
        _ => {
            let lower = char::from(b'a' + nibble - 10);
            out.push('[');
            out.push(lower);
            out.push(lower.to_ascii_uppercase());
            out.push(']');
        }
    }
}

/// One lane id character as it may appear in a baggage value: itself in either case, or
/// percent-encoded (either case of the letter, either case of the hex digits).
fn push_baggage_char(out: &mut String, c: char) {
    out.push_str("(?:");
    push_char(out, c);
    out.push_str("|%");
    let b = c as u8;
    let hi = b >> 4;
    let lo = b & 0xf;
    if c.is_ascii_lowercase() {
        // Upper case differs only in bit 5: high nibble 4/6 or 5/7.
        let upper_hi = (c.to_ascii_uppercase() as u8) >> 4;
        out.push('[');
        out.push(char::from(b'0' + upper_hi));
        out.push(char::from(b'0' + hi));
        out.push(']');
    } else {
        push_hex(out, hi);
    }
    push_hex(out, lo);
    out.push(')');
}

/// Spaces and tabs, raw or percent-encoded: lane_core trims them before and after decoding.
const BAGGAGE_OWS: &str = "(?:[ \t]|%20|%09)*";
/// Properties after the value, `;…`, up to the member's end.
const PROPERTIES: &str = "(?:;[^,]*)?";
/// A key (no `,`, `;`, `=`) that, trimmed of spaces and tabs, is not `lane`. RE2 has no
/// lookahead, so the complement is spelled out: after leading whitespace, the key is empty,
/// starts with something other than `l`, stops or turns inside `lane`, or has more than
/// whitespace after `lane`.
const NOT_LANE_KEY: &str = "[ \t]*(?:|[^,;= \tl][^,;=]*|l(?:|[^,;=a][^,;=]*)|la(?:|[^,;=n][^,;=]*)|lan(?:|[^,;=e][^,;=]*)|lane[ \t]*[^,;= \t][^,;=]*)";

/// The `baggage` regex for `lane`: a list of members in which every member with the key `lane`
/// has a value that decodes to `lane`, at least one does, and every other member is anything
/// lane_core ignores (no `=` before its properties, or another key).
pub fn baggage_regex(lane: &str) -> String {
    let mut value = String::with_capacity(lane.len() * 20 + 2 * BAGGAGE_OWS.len());
    value.push_str(BAGGAGE_OWS);
    for c in lane.chars() {
        push_baggage_char(&mut value, c);
    }
    value.push_str(BAGGAGE_OWS);
    let lane_member = format!("[ \t]*lane[ \t]*={value}{PROPERTIES}");
    let other_member = format!("(?:[^,;=]*|{NOT_LANE_KEY}=[^,;]*){PROPERTIES}");
    format!("(?:{other_member},)*{lane_member}(?:,(?:{other_member}|{lane_member}))*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            lane_header_regex("a-1"),
            "[ \t]*[aA]-1[ \t]*(?:,[ \t]*[aA]-1[ \t]*)*"
        );
        let mut s = String::new();
        push_baggage_char(&mut s, 'j');
        assert_eq!(s, "(?:[jJ]|%[46][aA])");
        s.clear();
        push_baggage_char(&mut s, 'p');
        assert_eq!(s, "(?:[pP]|%[57]0)");
        s.clear();
        push_baggage_char(&mut s, '-');
        assert_eq!(s, "(?:-|%2[dD])");
        s.clear();
        push_baggage_char(&mut s, '7');
        assert_eq!(s, "(?:7|%37)");
    }

    #[test]
    fn header_names() {
        assert!(valid_header_name("x-lane"));
        assert!(!valid_header_name("X-Lane"));
        assert!(!valid_header_name(""));
        assert!(!valid_header_name("x lane"));
        assert!(!valid_header_name("x_lane"));
        assert!(!valid_header_name("baggage"));
    }
}
