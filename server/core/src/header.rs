//! Reading a request's lane value from its headers.
//!
//! Two places can carry it: the lane header (`x-lane` by default) and the `lane` entry of a W3C
//! `baggage` header. The lane header wins when both are present. Values are trimmed and compared
//! ASCII case-insensitively (lane ids are DNS labels). A value that is not a valid lane id is never an
//! error for the request: it is routed to baseline and the reason is reported back.

use crate::id::{BASELINE, LaneId};

/// Longest header value we look at. Anything longer is rejected without being parsed.
pub const MAX_HEADER_VALUE_LEN: usize = 8 * 1024;
/// The baggage key that carries the lane id.
pub const BAGGAGE_LANE_KEY: &str = "lane";

/// What a request says about its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneValue {
    /// No lane header and no `lane` baggage entry.
    Absent,
    /// An explicit `baseline`.
    Baseline,
    /// A well-formed lane id.
    Lane(LaneId),
    /// Something was there but it is not usable; routed to baseline. The string says why.
    Invalid(String),
}

impl LaneValue {
    pub fn lane(&self) -> Option<&LaneId> {
        match self {
            LaneValue::Lane(id) => Some(id),
            _ => None,
        }
    }
}

/// Parses one candidate value (already taken out of its header or baggage entry).
fn parse_one(raw: &str) -> LaneValue {
    let value = raw.trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() {
        return LaneValue::Invalid("empty lane value".into());
    }
    let lower = value.to_ascii_lowercase();
    if lower == BASELINE {
        return LaneValue::Baseline;
    }
    match lower.parse::<LaneId>() {
        Ok(id) => LaneValue::Lane(id),
        Err(e) => LaneValue::Invalid(e.to_string()),
    }
}

/// Merges the values of several header lines or comma-separated items: all must agree.
fn merge(values: Vec<LaneValue>) -> LaneValue {
    let mut merged = LaneValue::Absent;
    for v in values {
        if let LaneValue::Invalid(_) = v {
            return v;
        }
        merged = match (merged, v) {
            (LaneValue::Absent, v) => v,
            (a, b) if a == b => a,
            (a, b) => {
                return LaneValue::Invalid(format!(
                    "conflicting lane values `{}` and `{}`",
                    display(&a),
                    display(&b)
                ));
            }
        };
    }
    merged
}

fn display(v: &LaneValue) -> &str {
    match v {
        LaneValue::Lane(id) => id.as_str(),
        LaneValue::Baseline => BASELINE,
        _ => "",
    }
}

fn as_text(raw: &[u8]) -> Result<&str, LaneValue> {
    if raw.len() > MAX_HEADER_VALUE_LEN {
        return Err(LaneValue::Invalid(format!(
            "header value is {} bytes; at most {MAX_HEADER_VALUE_LEN} are read",
            raw.len()
        )));
    }
    std::str::from_utf8(raw).map_err(|_| LaneValue::Invalid("header value is not UTF-8".into()))
}

/// Reads the lane value from the lane header's lines. Each line may hold comma-separated values;
/// repeated values must agree.
pub fn from_lane_header<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> LaneValue {
    let mut values = Vec::new();
    for line in lines {
        let text = match as_text(line) {
            Ok(t) => t,
            Err(invalid) => return invalid,
        };
        values.extend(text.split(',').map(parse_one));
    }
    merge(values)
}

/// Reads the `lane` entry of W3C `baggage` header lines: `key=value;prop=x, other=y`. Keys are
/// case-sensitive per the spec; values are percent-decoded; properties are ignored.
pub fn from_baggage<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> LaneValue {
    let mut values = Vec::new();
    for line in lines {
        let text = match as_text(line) {
            Ok(t) => t,
            Err(invalid) => return invalid,
        };
        for member in text.split(',') {
            let kv = member.split(';').next().unwrap_or("");
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            if key.trim_matches(|c| c == ' ' || c == '\t') != BAGGAGE_LANE_KEY {
                continue;
            }
            match percent_decode(value.trim_matches(|c| c == ' ' || c == '\t')) {
                Some(decoded) => values.push(parse_one(&decoded)),
                None => values.push(LaneValue::Invalid(
                    "baggage lane value has a broken percent-escape".into(),
                )),
            }
        }
    }
    merge(values)
}

/// The request's lane: the lane header if it has any line, else the baggage entry.
pub fn lane_value<'a>(
    lane_header: impl IntoIterator<Item = &'a [u8]>,
    baggage: impl IntoIterator<Item = &'a [u8]>,
) -> LaneValue {
    match from_lane_header(lane_header) {
        LaneValue::Absent => from_baggage(baggage),
        v => v,
    }
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(s: &str) -> LaneValue {
        LaneValue::Lane(s.parse().unwrap())
    }

    fn header(lines: &[&str]) -> LaneValue {
        from_lane_header(lines.iter().map(|l| l.as_bytes()))
    }

    fn baggage(lines: &[&str]) -> LaneValue {
        from_baggage(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn lane_header_cases() {
        let cases: &[(&[&str], LaneValue)] = &[
            (&[], LaneValue::Absent),
            (&["feature-x"], lane("feature-x")),
            (&["  feature-x\t"], lane("feature-x")),
            (&["Feature-X"], lane("feature-x")),
            (&["BASELINE"], LaneValue::Baseline),
            (&["feature-x", "feature-x"], lane("feature-x")),
            (&["feature-x, feature-x"], lane("feature-x")),
        ];
        for (lines, want) in cases {
            assert_eq!(&header(lines), want, "{lines:?}");
        }
    }

    #[test]
    fn lane_header_invalid_cases() {
        let cases: &[(&[&str], &str)] = &[
            (&[""], "empty lane value"),
            (&["  "], "empty lane value"),
            (&["a", "b"], "conflicting lane values `a` and `b`"),
            (&["a, baseline"], "conflicting"),
            (&["a,"], "empty lane value"),
            (&["feature_x"], "`_`"),
            (&["-x"], "must start and end"),
        ];
        for (lines, want) in cases {
            match header(lines) {
                LaneValue::Invalid(why) => assert!(why.contains(want), "{lines:?}: {why}"),
                other => panic!("{lines:?}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_and_binary_values_are_invalid() {
        let long = "a".repeat(41);
        assert!(
            matches!(header(&[&long]), LaneValue::Invalid(why) if why.contains("41 characters"))
        );
        let huge = "a".repeat(MAX_HEADER_VALUE_LEN + 1);
        assert!(matches!(header(&[&huge]), LaneValue::Invalid(why) if why.contains("bytes")));
        assert!(matches!(
            from_lane_header([&b"\xff\xfe"[..]]),
            LaneValue::Invalid(why) if why.contains("UTF-8")
        ));
    }

    #[test]
    fn baggage_cases() {
        let cases: &[(&[&str], LaneValue)] = &[
            (&["lane=feature-x"], lane("feature-x")),
            (&["userId=alice,lane=feature-x"], lane("feature-x")),
            (
                &["userId=alice , lane = feature-x ;ttl=3, x=y"],
                lane("feature-x"),
            ),
            (&["lane=feature-x;prop1;prop2=v"], lane("feature-x")),
            (&["a=b", "lane=dev"], lane("dev")),
            (&["Lane=dev"], LaneValue::Absent),
            (&["planet=dev"], LaneValue::Absent),
            (&["lane=%66eature"], lane("feature")),
            (&["nokey, =x, lane"], LaneValue::Absent),
            (&["lane=baseline"], LaneValue::Baseline),
        ];
        for (lines, want) in cases {
            assert_eq!(&baggage(lines), want, "{lines:?}");
        }
        assert!(matches!(baggage(&["lane=%zz"]), LaneValue::Invalid(_)));
        assert!(matches!(baggage(&["lane=a,lane=b"]), LaneValue::Invalid(_)));
    }

    #[test]
    fn lane_header_wins_over_baggage() {
        let v = lane_value([&b"one"[..]], [&b"lane=two"[..]]);
        assert_eq!(v, lane("one"));
        let v = lane_value(std::iter::empty(), [&b"lane=two"[..]]);
        assert_eq!(v, lane("two"));
        let v = lane_value([&b"Bad_Value"[..]], [&b"lane=two"[..]]);
        assert!(matches!(v, LaneValue::Invalid(_)));
    }
}
