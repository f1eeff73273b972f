//! Typed ids and the opaque revision that cross the seam. Each backend mints its own ids; callers
//! only compare and print them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

opaque_id! {
    /// One instance of a version, unique within its backend: `<lane>/<service>#<n>` for the local
    /// backend, a pod name for Kubernetes, a Consul service id for Consul.
    InstanceId
}

opaque_id! {
    /// One deploy (or other recorded operation) under way.
    DeployId
}

/// Where a backend's state is: it changes with every change and is only ever compared for
/// equality and handed back to [`crate::Backend::wait_for_change`]. The local backend uses its
/// generation counter, Kubernetes a `resourceVersion`, Consul an `X-Consul-Index`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    pub fn new(token: impl Into<String>) -> Self {
        Revision(token.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = InstanceId::new("one/demo.b#3");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"one/demo.b#3\"");
        let back: InstanceId = serde_json::from_str("\"one/demo.b#3\"").unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "one/demo.b#3");
        let rev: Revision = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(rev.as_str(), "42");
    }
}
