//! The control API's refusals: a status and a message, sent as
//! `{"error": "..."}`.

use serde::{Deserialize, Serialize};

/// A refusal: 4xx for the client's mistakes, 5xx for the daemon's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: a bad request.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    /// 500: the daemon failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    /// The answer's body.
    pub fn document(&self) -> ErrorDoc {
        ErrorDoc {
            error: self.message.clone(),
        }
    }
}

/// The body of every refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDoc {
    pub error: String,
}
