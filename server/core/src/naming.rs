//! Names that other systems see: Consul service names and tags, Kubernetes subsets, data names.
//! The registry prefix (`gaia` by default) is configuration, never hard-coded elsewhere.

use crate::id::{LaneId, ServiceId};

/// The default registry prefix.
pub const DEFAULT_PREFIX: &str = "gaia";

/// Consul name of a baseline instance: `<prefix>.<app>.<proc>`.
pub fn consul_baseline_name(prefix: &str, service: &ServiceId) -> String {
    format!("{prefix}.{service}")
}

/// Consul name of a personal version: `<prefix>-lane.<app>.<proc>`.
pub fn consul_lane_name(prefix: &str, service: &ServiceId) -> String {
    format!("{prefix}-lane.{service}")
}

/// Consul KV key of a lane document: `<prefix>-lane/lanes/<id>`.
pub fn consul_lane_key(prefix: &str, lane: &LaneId) -> String {
    format!("{prefix}-lane/lanes/{lane}")
}

/// DestinationRule subset of a lane: `lane-<id>`.
pub fn istio_subset(lane: &LaneId) -> String {
    format!("lane-{lane}")
}

/// The per-lane MySQL schema: `<db>__lane_<id>` (dashes become underscores).
pub fn mysql_schema(db: &str, lane: &LaneId) -> String {
    format!("{db}__lane_{}", lane.as_str().replace('-', "_"))
}

/// The per-lane Kafka topic: `<topic>.lane-<id>`.
pub fn kafka_topic(topic: &str, lane: &LaneId) -> String {
    format!("{topic}.lane-{lane}")
}

/// The `x-lane-served-by` value: `<app>.<proc>@<lane or baseline>`.
pub fn served_by(service: &ServiceId, lane: &crate::id::LaneRef) -> String {
    format!("{service}@{lane}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s: ServiceId = "shop.cart".parse().unwrap();
        let l: LaneId = "feature-x".parse().unwrap();
        assert_eq!(consul_baseline_name("gaia", &s), "gaia.shop.cart");
        assert_eq!(consul_lane_name("gaia", &s), "gaia-lane.shop.cart");
        assert_eq!(consul_lane_key("gaia", &l), "gaia-lane/lanes/feature-x");
        assert_eq!(istio_subset(&l), "lane-feature-x");
        assert_eq!(mysql_schema("orders", &l), "orders__lane_feature_x");
        assert_eq!(kafka_topic("events", &l), "events.lane-feature-x");
        assert_eq!(
            served_by(&s, &crate::id::LaneRef::Lane(l)),
            "shop.cart@feature-x"
        );
    }
}
