//! What can go wrong talking to Lotus, each case naming the method.

use crate::amount::AmountError;

/// An error from a call to Lotus (or the stand-in), naming the method that failed.
#[derive(Debug, thiserror::Error)]
pub enum LotusError {
    /// Lotus answered with a JSON-RPC error (Lotus uses code 1 for its own failures and the
    /// standard -32xxx codes for malformed requests and unknown methods).
    #[error("Lotus refused {method}: {message} (JSON-RPC error {code})")]
    Rpc {
        /// The method called (`Filecoin.WalletBalance`).
        method: String,
        /// The JSON-RPC error code.
        code: i32,
        /// Lotus's message.
        message: String,
    },
    /// The token was refused (HTTP 401) or lacks the permission the method needs.
    #[error("Lotus refused {method} as unauthorised: {detail}; give a token with enough permission (`lotus auth create-token --perm sign`)")]
    Unauthorized {
        /// The method called.
        method: String,
        /// What Lotus said.
        detail: String,
    },
    /// The node could not be reached, or answered with an HTTP error other than 401.
    #[error("Lotus at {url} unreachable for {method}: {detail}")]
    Unreachable {
        /// The method called.
        method: String,
        /// The node's URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// No answer within the client's timeout.
    #[error("Lotus at {url} did not answer {method} in time")]
    Timeout {
        /// The method called.
        method: String,
        /// The node's URL.
        url: String,
    },
    /// An answer that is not the documented shape (or holds an invalid amount).
    #[error("Lotus answered {method} with something malformed: {detail}")]
    Malformed {
        /// The method called.
        method: String,
        /// Why it could not be read.
        detail: String,
    },
    /// An amount refused before sending (negative, overflowing).
    #[error("refusing to call {method}: {source}")]
    Amount {
        /// The method that would have been called.
        method: String,
        /// The amount's problem.
        #[source]
        source: AmountError,
    },
    /// The client could not be built (bad URL or token).
    #[error("cannot talk to Lotus at {url}: {detail}")]
    Config {
        /// The URL given.
        url: String,
        /// What is wrong.
        detail: String,
    },
}

impl LotusError {
    /// The method the error is about, when it is about one.
    pub fn method(&self) -> Option<&str> {
        match self {
            LotusError::Rpc { method, .. }
            | LotusError::Unauthorized { method, .. }
            | LotusError::Unreachable { method, .. }
            | LotusError::Timeout { method, .. }
            | LotusError::Malformed { method, .. }
            | LotusError::Amount { method, .. } => Some(method),
            LotusError::Config { .. } => None,
        }
    }
}
