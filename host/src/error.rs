//! One error type for the host: a kind (gRPC-like), a message with context, and a
//! source chain. The mapping from kind to HTTP status lives in exactly one place,
//! [`crate::api`]. Messages must never contain camera credentials: build them from
//! [`crate::config::redact_url`] output, never from a raw camera URL.

use std::fmt;

/// What went wrong, coarsely; decides the HTTP status and how a camera state reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request or input is malformed.
    InvalidArgument,
    /// The named thing does not exist.
    NotFound,
    /// Credentials were missing or rejected (e.g. RTSP 401).
    Unauthenticated,
    /// Temporarily not possible: no media yet, camera down, caps reached.
    Unavailable,
    /// A deadline passed.
    DeadlineExceeded,
    /// A peer sent something we cannot parse (garbage bytes, broken packets).
    Protocol,
    /// A configuration is well-formed but not acceptable (e.g. a plugin config that
    /// fails its JSON Schema): 422.
    InvalidConfig,
    /// The peer works but cannot give what we need (e.g. a camera offering no
    /// H.264/H.265 video); needs an operator, not a retry.
    FailedPrecondition,
    /// A bug or an unexpected internal failure.
    Internal,
}

/// The host's error: kind, message with context, optional source.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind` with a message that carries its context.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        let mut src: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as _);
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Shorthand for `Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_source_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::new(ErrorKind::Unavailable, "camera lobby: connect").with_source(io);
        assert_eq!(e.to_string(), "camera lobby: connect: refused");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
