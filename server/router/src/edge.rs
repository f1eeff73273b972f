//! The lane header as baggage: with [`RouterConfig::header_to_baggage`](crate::RouterConfig) on, a
//! request that carries the lane header is forwarded with a W3C `baggage` header whose `lane`
//! entry says the same, so services that propagate only OpenTelemetry baggage (and not the lane
//! header) carry the lane to their next calls. `docs/propagation.md` explains when to use it.
//!
//! The rewrite follows the routing decision: the lane header wins over baggage
//! (`lane_core::header::lane_value`), so when both are present and disagree the forwarded
//! baggage gets the header's value, and the next hop is routed in the lane this hop was. Every
//! other baggage member is kept as it came, in order. A lane header that is not a usable value (not
//! a lane id and not `baseline`) changes nothing: that request is routed to baseline and the reason
//! is in `x-lane-invalid`.

use http::HeaderValue;
use lane_core::LaneValue;
use lane_core::header::{BAGGAGE_LANE_KEY, from_baggage, from_lane_header};

/// The `baggage` value to forward instead of the request's own `baggage` lines, or `None` to
/// forward them untouched: no lane header, an invalid one, or baggage that already says the same.
pub(crate) fn baggage_for<'a>(
    lane_header: impl IntoIterator<Item = &'a [u8]>,
    baggage: impl IntoIterator<Item = &'a [u8]>,
) -> Option<HeaderValue> {
    let wanted = match from_lane_header(lane_header) {
        LaneValue::Lane(id) => id.to_string(),
        LaneValue::Baseline => lane_core::id::BASELINE.to_owned(),
        LaneValue::Absent | LaneValue::Invalid(_) => return None,
    };
    let lines: Vec<&[u8]> = baggage.into_iter().collect();
    if lane_text(&from_baggage(lines.iter().copied())) == Some(wanted.as_str()) {
        return None;
    }
    let mut out = String::new();
    for line in lines {
        // A line that is not text cannot be kept as baggage (nor read as one): it is dropped.
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        for member in text.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() || is_lane_member(member) {
                continue;
            }
            out.push_str(member);
            out.push(',');
        }
    }
    out.push_str(BAGGAGE_LANE_KEY);
    out.push('=');
    out.push_str(&wanted);
    // The kept members came from header values, so they are valid header bytes (UTF-8 beyond
    // ASCII included); should that ever not hold, the lane entry alone still goes on.
    HeaderValue::from_bytes(out.as_bytes())
        .or_else(|_| HeaderValue::from_str(&format!("{BAGGAGE_LANE_KEY}={wanted}")))
        .ok()
}

fn lane_text(value: &LaneValue) -> Option<&str> {
    match value {
        LaneValue::Lane(id) => Some(id.as_str()),
        LaneValue::Baseline => Some(lane_core::id::BASELINE),
        LaneValue::Absent | LaneValue::Invalid(_) => None,
    }
}

/// A baggage member `lane=…` (properties after `;` included); keys are case-sensitive.
fn is_lane_member(member: &str) -> bool {
    let kv = member.split(';').next().unwrap_or("");
    kv.split_once('=')
        .is_some_and(|(key, _)| key.trim_matches(|c| c == ' ' || c == '\t') == BAGGAGE_LANE_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(header: &[&str], baggage: &[&str]) -> Option<String> {
        baggage_for(
            header.iter().map(|s| s.as_bytes()),
            baggage.iter().map(|s| s.as_bytes()),
        )
        .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_lane_header_becomes_the_lane_baggage_entry() {
        assert_eq!(
            rewrite(&["feature-x"], &[]).as_deref(),
            Some("lane=feature-x")
        );
        assert_eq!(
            rewrite(&[" Feature-X "], &[]).as_deref(),
            Some("lane=feature-x")
        );
        assert_eq!(
            rewrite(&["baseline"], &[]).as_deref(),
            Some("lane=baseline")
        );
    }

    #[test]
    fn other_members_are_kept_and_a_different_lane_is_replaced() {
        assert_eq!(
            rewrite(&["feature-x"], &["user=alice, tenant=t1;ttl=5"]).as_deref(),
            Some("user=alice,tenant=t1;ttl=5,lane=feature-x")
        );
        assert_eq!(
            rewrite(&["feature-x"], &["lane=other;p=1,user=alice", "lane=third"]).as_deref(),
            Some("user=alice,lane=feature-x")
        );
        // The header wins over baggage, so an explicit baseline clears a baggage lane.
        assert_eq!(
            rewrite(&["baseline"], &["lane=feature-x"]).as_deref(),
            Some("lane=baseline")
        );
        // `lanes=` and `xlane=` are other keys.
        assert_eq!(
            rewrite(&["feature-x"], &["lanes=a,xlane=b"]).as_deref(),
            Some("lanes=a,xlane=b,lane=feature-x")
        );
    }

    #[test]
    fn nothing_changes_without_a_usable_header_or_when_baggage_agrees() {
        assert_eq!(rewrite(&[], &["lane=feature-x"]), None);
        assert_eq!(rewrite(&[], &[]), None);
        assert_eq!(rewrite(&["Not_A_Lane"], &["lane=feature-x"]), None);
        assert_eq!(rewrite(&["a", "b"], &[]), None, "conflicting header lines");
        assert_eq!(rewrite(&["feature-x"], &["u=1, lane=Feature-X"]), None);
    }

    #[test]
    fn members_beyond_ascii_are_kept() {
        let v = baggage_for([b"feature-x".as_slice()], ["city=Zürich".as_bytes()]).unwrap();
        assert_eq!(v.as_bytes(), "city=Zürich,lane=feature-x".as_bytes());
    }

    proptest::proptest! {
        /// Whatever the baggage held, the forwarded baggage's lane is the one the request was
        /// routed by (the header's), and every member that was not a lane entry is still there.
        #[test]
        fn the_forwarded_baggage_says_the_routed_lane(
            header in "(feature-x|Feature-X|baseline|other|Not_A_Lane| lane-2 )",
            members in proptest::collection::vec(
                "(lane|lanes|user|x)=(feature-x|other|a%20b|v;p=1)", 0..5),
            split in 0usize..5,
        ) {
            let split = split.min(members.len());
            let lines = [members[..split].join(", "), members[split..].join(",")];
            let lines: Vec<&[u8]> =
                lines.iter().filter(|l| !l.is_empty()).map(|l| l.as_bytes()).collect();
            let routed = lane_core::header::lane_value([header.as_bytes()], lines.iter().copied());
            match baggage_for([header.as_bytes()], lines.iter().copied()) {
                Some(v) => {
                    proptest::prop_assert_eq!(&from_baggage([v.as_bytes()]), &routed);
                    let text = v.to_str().unwrap();
                    for m in members.iter().filter(|m| !is_lane_member(m)) {
                        proptest::prop_assert!(text.contains(m.as_str()), "{} lost from {}", m, text);
                    }
                }
                None => {
                    // Untouched: no usable header, or the baggage already agrees with it.
                    let header_value = from_lane_header([header.as_bytes()]);
                    let usable = matches!(header_value, LaneValue::Lane(_) | LaneValue::Baseline);
                    proptest::prop_assert!(
                        !usable || from_baggage(lines.iter().copied()) == routed,
                        "{:?} {:?}", header, members
                    );
                }
            }
        }
    }

    #[test]
    fn baggage_that_is_not_text_is_dropped() {
        let lines: [&[u8]; 2] = [b"user=\xff", b"user=bob"];
        let v = baggage_for([b"feature-x".as_slice()], lines).unwrap();
        assert_eq!(v.to_str().unwrap(), "user=bob,lane=feature-x");
    }
}
