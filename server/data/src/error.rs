//! The one error type of `lane-data`: each says what failed, where (addresses without passwords),
//! and what to do.

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The server does not answer.
    #[error("cannot reach {what} at {address}: {reason}")]
    Unreachable {
        what: &'static str,
        address: String,
        reason: String,
    },
    /// The server refused the credentials.
    #[error("{what} at {address} refused the credentials: {reason}")]
    Auth {
        what: &'static str,
        address: String,
        reason: String,
    },
    /// The baseline database is not on the server.
    #[error("the baseline database `{database}` does not exist on {address}")]
    MissingBaseline { database: String, address: String },
    /// A baseline Kafka topic is not on the cluster.
    #[error("the baseline topic `{topic}` does not exist on {address}")]
    MissingTopic { topic: String, address: String },
    /// Bad input (a name, a quota, an address).
    #[error("{0}")]
    Invalid(String),
    /// No free Redis database index in the pool.
    #[error(
        "every Redis database in the pool {first}..={last} on {address} is taken (by other lanes or \
         by data lane does not own); remove a lane, or widen `pool` in lane.toml"
    )]
    PoolFull {
        address: String,
        first: u32,
        last: u32,
    },
    /// The teardown guard refused to touch a name that is not the lane's own.
    #[error("refused: {0}")]
    Guard(String),
    /// A lane data file that is not one, is corrupt, truncated or of another format version.
    #[error("{0}")]
    Format(String),
    /// Reading or writing a local file failed.
    #[error("{0}")]
    Io(String),
    /// The operation was cancelled; what it had staged was removed and the lane's data is as it was.
    #[error("cancelled; the lane's data is as it was")]
    Cancelled,
    /// The server answered with an error.
    #[error("{what} at {address}: {message}")]
    Server {
        what: &'static str,
        address: String,
        message: String,
    },
}
