//! Identifiers: lane ids, service ids and the labels they are made of.
//!
//! Every id is validated once, at the edge, and is a distinct type afterwards, so code that holds a
//! [`LaneId`] never has to ask whether it is well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest lane id (`docs/contracts.md`: 1–40 characters).
pub const MAX_LANE_ID_LEN: usize = 40;
/// Longest RFC 1123 label.
pub const MAX_LABEL_LEN: usize = 63;
/// The reserved name of the baseline lane.
pub const BASELINE: &str = "baseline";

/// Why an id was rejected. The message names the offending value and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} `{value}` is {len} characters long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error(
        "{what} `{value}` has `{ch}` at position {pos}; use lowercase letters, digits and `-` only"
    )]
    BadChar {
        what: &'static str,
        value: String,
        ch: char,
        pos: usize,
    },
    #[error("{what} `{value}` must start and end with a lowercase letter or digit")]
    BadEdge { what: &'static str, value: String },
    #[error("`baseline` is reserved for the production versions; pick another lane id")]
    Reserved,
    #[error("service id `{value}` must look like `<app>.<proc>` (for example `shop.cart`)")]
    ServiceShape { value: String },
}

/// Checks `value` against the RFC 1123 label grammar `[a-z0-9]([-a-z0-9]*[a-z0-9])?` with a length limit.
fn check_label(what: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    let len = value.chars().count();
    if len > max {
        return Err(IdError::TooLong {
            what,
            value: truncate_for_message(value),
            len,
            max,
        });
    }
    for (pos, ch) in value.chars().enumerate() {
        if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-') {
            return Err(IdError::BadChar {
                what,
                value: value.to_owned(),
                ch,
                pos: pos + 1,
            });
        }
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(IdError::BadEdge {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn truncate_for_message(value: &str) -> String {
    if value.chars().count() <= 60 {
        value.to_owned()
    } else {
        let head: String = value.chars().take(57).collect();
        format!("{head}...")
    }
}

macro_rules! string_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A lane id: a lowercase RFC 1123 label of 1–40 characters, never `baseline`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId(String);
string_id!(LaneId);

impl LaneId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LaneId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        check_label("lane id", s, MAX_LANE_ID_LEN)?;
        if s == BASELINE {
            return Err(IdError::Reserved);
        }
        Ok(LaneId(s.to_owned()))
    }
}

/// Where something lives: the baseline or a named lane. Parses `baseline` as [`LaneRef::Baseline`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LaneRef {
    Baseline,
    Lane(LaneId),
}

impl LaneRef {
    pub fn lane(&self) -> Option<&LaneId> {
        match self {
            LaneRef::Baseline => None,
            LaneRef::Lane(id) => Some(id),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            LaneRef::Baseline => BASELINE,
            LaneRef::Lane(id) => id.as_str(),
        }
    }
}

impl From<Option<LaneId>> for LaneRef {
    fn from(lane: Option<LaneId>) -> Self {
        lane.map_or(LaneRef::Baseline, LaneRef::Lane)
    }
}

impl FromStr for LaneRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s == BASELINE {
            Ok(LaneRef::Baseline)
        } else {
            s.parse().map(LaneRef::Lane)
        }
    }
}

impl fmt::Display for LaneRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LaneRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LaneRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A service id `<app>.<proc>`, each part an RFC 1123 label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(String);
string_id!(ServiceId);

impl ServiceId {
    pub fn new(app: &str, proc_: &str) -> Result<Self, IdError> {
        check_label("app name", app, MAX_LABEL_LEN)?;
        check_label("proc name", proc_, MAX_LABEL_LEN)?;
        Ok(ServiceId(format!("{app}.{proc_}")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn app(&self) -> &str {
        self.0.split_once('.').map_or("", |(app, _)| app)
    }
    pub fn proc_(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, p)| p)
    }
    /// The host name the local router serves this service under: `<proc>.<app>.localhost`.
    pub fn local_host(&self) -> String {
        format!("{}.{}.localhost", self.proc_(), self.app())
    }
}

impl FromStr for ServiceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.split_once('.') {
            Some((app, proc_)) if !proc_.contains('.') => ServiceId::new(app, proc_),
            _ => Err(IdError::ServiceShape {
                value: truncate_for_message(s),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_lane_ids() {
        for ok in ["a", "0", "feature-x", "a-b-c", "x1", &"a".repeat(40)] {
            assert_eq!(ok.parse::<LaneId>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn invalid_lane_ids_say_why() {
        let cases: &[(&str, &str)] = &[
            ("", "lane id is empty"),
            ("-a", "must start and end"),
            ("a-", "must start and end"),
            ("Feature", "has `F` at position 1"),
            ("a_b", "has `_` at position 2"),
            ("a.b", "has `.` at position 2"),
            ("é", "has `é` at position 1"),
            ("baseline", "reserved"),
        ];
        for (input, want) in cases {
            let err = input.parse::<LaneId>().unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let long = "a".repeat(41);
        assert_eq!(
            long.parse::<LaneId>().unwrap_err().to_string(),
            format!("lane id `{long}` is 41 characters long; at most 40 are allowed")
        );
    }

    #[test]
    fn lane_ref_parses_baseline() {
        assert_eq!("baseline".parse::<LaneRef>().unwrap(), LaneRef::Baseline);
        assert_eq!(
            "x".parse::<LaneRef>().unwrap(),
            LaneRef::Lane("x".parse().unwrap())
        );
    }

    #[test]
    fn service_ids() {
        let s: ServiceId = "shop.cart".parse().unwrap();
        assert_eq!((s.app(), s.proc_()), ("shop", "cart"));
        assert_eq!(s.local_host(), "cart.shop.localhost");
        for bad in ["shop", "shop.", ".cart", "a.b.c", "Shop.cart", ""] {
            assert!(bad.parse::<ServiceId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: LaneId = serde_json::from_str("\"dev-1\"").unwrap();
        assert_eq!(ok.as_str(), "dev-1");
        assert!(serde_json::from_str::<LaneId>("\"Dev\"").is_err());
        assert_eq!(
            serde_json::to_string(&LaneRef::Baseline).unwrap(),
            "\"baseline\""
        );
    }
}
