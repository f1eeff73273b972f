//! `lane-data`: a lane's own copies of its data sources.
//!
//! - [`mysql`]: the lane's database `<db>__lane_<id>`, with baseline's schema (tables with their
//!   indexes, keys, defaults and foreign keys; views; triggers) and optionally a bounded sample of
//!   rows (a per-table row limit and a total byte quota, both respected exactly).
//! - [`redis`]: a database index per lane from a pool, claimed atomically on the server so two
//!   lanes never hold the same index, even when they ask at the same instant.
//! - [`redis_copy`]: baseline's keys matching patterns, copied into a lane's new database within a
//!   key count and a byte quota.
//! - [`kafka`]: the lane's topics `<topic>.lane-<id>`, with baseline's partitions and configs.
//! - [`apollo`]: the lane's Apollo cluster `lane-<id>` through Apollo's Open API, with the
//!   lane's rewritten data-source items, published.
//! - [`teardown`]: the plan of what deleting a lane drops, checked by a guard that refuses any
//!   name that is not the lane's own; the plan can be printed without running it.
//!
//! Identifiers are validated (`lane_core::data::check_mysql_ident`) and quoted wherever they are
//! written into SQL; values travel as parameters.

pub mod apollo;
pub mod error;
pub mod kafka;
pub mod mysql;
pub mod provision;
pub mod redis;
pub mod redis_copy;
pub mod teardown;
pub mod transfer;

pub use error::{DataError, Result};
