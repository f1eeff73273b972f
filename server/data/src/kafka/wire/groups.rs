//! Consumer groups: `FindCoordinator` v1 (which broker keeps a group), `DeleteGroups` v1 (a
//! lane's groups go with its teardown) and `OffsetCommit` v2 (a group's committed offsets, as a
//! consumer outside any generation commits them), on the same non-flexible wire format as the
//! other admin requests. Kafka 1.1 and every later broker answer these versions.

use std::time::Duration;

use lane_core::LaneId;
use lane_core::data::rewrite_group;

use super::{Conn, Dec, Enc, Result, WireError, error_name};
use crate::error::DataError;
use crate::kafka::Kafka;

const FIND_COORDINATOR: i16 = 10;
const DELETE_GROUPS: i16 = 42;
const OFFSET_COMMIT: i16 = 8;
/// `FindCoordinator` key type of a consumer group.
const KEY_GROUP: i8 = 0;

/// Group error codes lane tells apart.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// What `OffsetCommit` outside any generation answers for a group that has members.
pub const ILLEGAL_GENERATION: i16 = 22;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const REBALANCE_IN_PROGRESS: i16 = 27;

/// How often a coordinator that is moving or loading is asked again, and how long between.
const ATTEMPTS: u32 = 20;
const PAUSE: Duration = Duration::from_millis(250);

impl Conn {
    /// `FindCoordinator` v1 of consumer group `group`: `Ok((host, port))` or the error code.
    pub async fn find_coordinator(
        &mut self,
        group: &str,
    ) -> Result<std::result::Result<(String, i32), (i16, Option<String>)>> {
        let mut e = Enc::default();
        e.string(group);
        e.i8(KEY_GROUP);
        let buf = self.call(FIND_COORDINATOR, 1, &e.0).await?;
        let mut d = Dec::new(&buf);
        d.i32()?; // throttle_time_ms
        let error = d.i16()?;
        let message = d.nullable_string()?;
        d.i32()?; // node_id
        let host = d.string()?;
        let port = d.i32()?;
        Ok(if error == 0 {
            Ok((host, port))
        } else {
            Err((error, message))
        })
    }

    /// `DeleteGroups` v1 of `groups`: each group with its error code (0: deleted).
    pub async fn delete_groups(&mut self, groups: &[String]) -> Result<Vec<(String, i16)>> {
        let mut e = Enc::default();
        e.i32(groups.len() as i32);
        for g in groups {
            e.string(g);
        }
        let buf = self.call(DELETE_GROUPS, 1, &e.0).await?;
        let mut d = Dec::new(&buf);
        d.i32()?; // throttle_time_ms
        d.array(|d| Ok((d.string()?, d.i16()?)))
    }

    /// `OffsetCommit` v2 of one offset of group `group` outside any generation (what a consumer
    /// that assigns its partitions itself commits): the error code (0: committed).
    pub async fn commit_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i16> {
        let mut e = Enc::default();
        e.string(group);
        e.i32(-1); // generation_id
        e.string(""); // member_id
        e.0.extend_from_slice(&(-1i64).to_be_bytes()); // retention_time_ms: the broker's
        e.i32(1);
        e.string(topic);
        e.i32(1);
        e.i32(partition);
        e.0.extend_from_slice(&offset.to_be_bytes());
        e.i16(-1); // committed_metadata: null
        let buf = self.call(OFFSET_COMMIT, 2, &e.0).await?;
        let mut d = Dec::new(&buf);
        let topics = d.array(|d| {
            d.string()?;
            d.array(|d| {
                d.i32()?;
                d.i16()
            })
        })?;
        match topics.first().and_then(|p| p.first()) {
            Some(code) => Ok(*code),
            None => Err(WireError("OffsetCommit answered no partition".into())),
        }
    }
}

/// The guard for deleting a consumer group: `group` must be exactly lane `lane`'s group for
/// baseline group `baseline`, and never the baseline group itself.
pub fn check_group_delete(baseline: &str, lane: &LaneId, group: &str) -> crate::Result<()> {
    let own = rewrite_group(baseline, lane);
    if baseline.is_empty() || group == baseline || group != own {
        return Err(DataError::Guard(format!(
            "`{group}` is not lane `{lane}`'s consumer group (that is `{own}`); nothing was \
             deleted"
        )));
    }
    Ok(())
}

impl Kafka {
    /// A connection to the broker coordinating `group`, asking again while the coordinator is
    /// loading or moving.
    async fn coordinator(&mut self, group: &str) -> crate::Result<Conn> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self
                .admin
                .find_coordinator(group)
                .await
                .map_err(|e| self.server(format!("FindCoordinator of `{group}`: {}", e.0)))?
            {
                Ok((host, port)) => {
                    return self
                        .conn(&format!("{host}:{port}"))
                        .await
                        .map_err(|e| match e {
                            DataError::Server { message, .. } => {
                                self.server(format!("the coordinator of `{group}`: {message}"))
                            }
                            e => e,
                        });
                }
                Err((code, message))
                    if code == COORDINATOR_NOT_AVAILABLE
                        || code == COORDINATOR_LOAD_IN_PROGRESS =>
                {
                    last = format!("{} {}", error_name(code), message.unwrap_or_default());
                    tokio::time::sleep(PAUSE).await;
                }
                Err((code, message)) => {
                    return Err(self.server(format!(
                        "FindCoordinator of `{group}`: {} {}",
                        error_name(code),
                        message.unwrap_or_default()
                    )));
                }
            }
        }
        Err(self.server(format!(
            "no coordinator for `{group}` after {ATTEMPTS} tries: {last}"
        )))
    }

    /// Deletes lane `lane`'s consumer group `group` (the lane's copy of baseline group
    /// `baseline`), after the guard; `false` when it did not exist. A group with members is an
    /// error (the teardown of a removed lane runs after its processes are stopped, but a consumer
    /// killed without leaving stays a member until its session times out).
    pub async fn delete_lane_group(
        &mut self,
        baseline: &str,
        lane: &LaneId,
        group: &str,
    ) -> crate::Result<bool> {
        check_group_delete(baseline, lane, group)?;
        for _ in 0..ATTEMPTS {
            let mut c = self.coordinator(group).await?;
            let results = c
                .delete_groups(&[group.to_owned()])
                .await
                .map_err(|e| self.server(format!("DeleteGroups `{group}`: {}", e.0)))?;
            let code = match results.as_slice() {
                [(name, code)] if name == group => *code,
                _ => {
                    return Err(self.server(format!(
                        "DeleteGroups answered for {} groups, not for `{group}`",
                        results.len()
                    )));
                }
            };
            match code {
                0 => return Ok(true),
                GROUP_ID_NOT_FOUND => return Ok(false),
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
                    tokio::time::sleep(PAUSE).await;
                }
                NON_EMPTY_GROUP => {
                    return Err(DataError::Invalid(format!(
                        "consumer group `{group}` on {} still has members (a consumer stopped \
                         without leaving stays one until its session times out, \
                         `session.timeout.ms`); try again later (`lane gc`)",
                        self.address
                    )));
                }
                other => {
                    return Err(self.server(format!(
                        "deleting consumer group `{group}`: {}",
                        error_name(other)
                    )));
                }
            }
        }
        Err(self.server(format!(
            "deleting consumer group `{group}`: its coordinator kept moving"
        )))
    }

    /// Commits `offset` for `partition` of `topic` in group `group` (a group outside any
    /// generation, as a consumer that assigns itself its partitions makes one).
    pub async fn commit_group_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> crate::Result<()> {
        for _ in 0..ATTEMPTS {
            let mut c = self.coordinator(group).await?;
            let code = c
                .commit_offset(group, topic, partition, offset)
                .await
                .map_err(|e| self.server(format!("OffsetCommit `{group}`: {}", e.0)))?;
            match code {
                0 => return Ok(()),
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
                    tokio::time::sleep(PAUSE).await;
                }
                ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS => {
                    return Err(DataError::Invalid(format!(
                        "consumer group `{group}` on {} has members, so its offsets cannot be \
                         set from outside ({}); stop the consumers of the group (a consumer \
                         stopped without leaving stays a member until `session.timeout.ms`) and \
                         try again",
                        self.address,
                        error_name(code)
                    )));
                }
                other => {
                    return Err(self.server(format!(
                        "committing an offset of `{group}`: {}",
                        error_name(other)
                    )));
                }
            }
        }
        Err(self.server(format!(
            "committing an offset of `{group}`: its coordinator kept moving"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_takes_only_the_lanes_group() {
        let lane: LaneId = "feat-a".parse().unwrap();
        assert!(check_group_delete("cart", &lane, "cart.lane-feat-a").is_ok());
        for bad in [
            "cart",
            "cart.lane-feat-b",
            "cart.lane-feat-a.x",
            "other.lane-feat-a",
            "",
        ] {
            assert!(
                matches!(
                    check_group_delete("cart", &lane, bad),
                    Err(DataError::Guard(_))
                ),
                "{bad}"
            );
        }
        assert!(check_group_delete("", &lane, ".lane-feat-a").is_err());
    }
}
