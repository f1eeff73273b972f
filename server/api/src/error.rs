//! Backend errors. Every variant carries a message that names the cause and, where there is one,
//! what to do about it.

use serde::{Deserialize, Serialize};

use crate::types::ErrorCode;

/// An error from any backend, with a code the CLI maps to an exit status and the IDE daemon to a
/// JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub code: ErrorCode,
    pub message: String,
    /// What the user can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

impl BackendError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BackendError {
            code,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    /// A deploy stopped before its version went live, and everything it made undone. Only for
    /// that: an operation that left something behind says what instead.
    pub fn cancelled() -> Self {
        Self::new(
            ErrorCode::Cancelled,
            "cancelled before anything went live; nothing was left behind",
        )
    }

    /// `switch` on a backend whose lanes are chosen per request (`consul`, `kubernetes`): there is
    /// no developer-wide active lane to set.
    pub fn no_active_lane(backend: &str) -> Self {
        Self::invalid(format!(
            "the {backend} backend has no active lane: requests choose their lane with the lane \
             header (x-lane) or the `lane` baggage entry"
        ))
    }

    /// An `assign` that added `service` to lane `to` but could not take it out of lane `from`.
    pub fn assign_half_done(service: &str, to: &str, from: &str, cause: BackendError) -> Self {
        Self::new(
            cause.code,
            format!(
                "{service} is now in lane `{to}` but is still in lane `{from}`: {}",
                cause.message
            ),
        )
    }

    /// The caller stopped waiting (a second Ctrl-C) without hearing how the operation ended; the
    /// backend finishes or undoes it on its own.
    pub fn stopped_waiting() -> Self {
        Self::new(
            ErrorCode::Cancelled,
            "stopped waiting; the backend completes or rolls back the operation on its own (a \
             deploy that had not gone live is rolled back, one that had stays)",
        )
        .with_help("`lane status` shows what is live")
    }

    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self.code {
            ErrorCode::InvalidInput => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::Conflict => 4,
            ErrorCode::NotOwner => 5,
            ErrorCode::BuildFailed | ErrorCode::StartFailed | ErrorCode::Unhealthy => 6,
            ErrorCode::Unavailable => 7,
            ErrorCode::Cancelled => 130,
            ErrorCode::Internal => 1,
        }
    }
}

impl From<lane_core::lane::LaneRuleError> for BackendError {
    fn from(e: lane_core::lane::LaneRuleError) -> Self {
        let code = match e {
            lane_core::lane::LaneRuleError::NotOwner { .. } => ErrorCode::NotOwner,
            lane_core::lane::LaneRuleError::UnknownParent { .. } => ErrorCode::NotFound,
            _ => ErrorCode::InvalidInput,
        };
        BackendError::new(code, e.to_string())
    }
}

impl From<lane_core::IdError> for BackendError {
    fn from(e: lane_core::IdError) -> Self {
        BackendError::invalid(e.to_string())
    }
}
