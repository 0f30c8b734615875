//! The one error type of fencelock and its matchable kind.

use crate::LossCause;
use std::fmt;

/// A `Result` whose error defaults to fencelock's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms of the situation rather than the backend.
///
/// Match on this (via [`Error::kind`]) to decide what to do; the message is for humans.
///
/// # Examples
///
/// ```
/// use lock_core::{ErrorKind, LockName};
///
/// let err = LockName::new("bad name!").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidName);
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A lock name breaks the rules of [`LockName`](crate::LockName).
    InvalidName,
    /// A configuration value or URL is invalid (bad URL, zero or absurd TTL, bad option).
    InvalidConfig,
    /// The URL names a scheme fencelock does not know.
    UnsupportedScheme,
    /// The URL names a backend whose cargo feature is not enabled.
    FeatureDisabled,
    /// The lock service cannot be reached right now; retrying later may work.
    Unavailable,
    /// The operation did not finish within its deadline; its effect on the server is unknown.
    Timeout,
    /// The lease (session) behind a lock is lost or may be lost: the lock must be
    /// treated as no longer held.
    LeaseLost,
    /// The lock was not held when an operation needed it (for example it was lost
    /// before [`LockGuard::release`](crate::LockGuard::release)).
    NotHeld,
    /// A fencing token older than one already seen was presented to a [`Fence`](crate::Fence).
    StaleToken,
    /// The backend does not offer what was asked of it: a grant policy its
    /// [`Capabilities`](crate::Capabilities) do not list (nothing was granted), or an
    /// operation such as [`LockClient::watch_lock`](crate::LockClient::watch_lock) on
    /// a backend without watches.
    Unsupported,
    /// The server (or the client's TLS layer) refused who the client is: a wrong user
    /// name or password, an unknown user, a client certificate the server does not
    /// accept, or a server certificate the client does not trust (expired, not yet
    /// valid, signed by another CA, issued for another host). Retrying with the same
    /// configuration will not help; the message says which side refused and why, and
    /// never holds the secret.
    Unauthenticated,
    /// The server knows the client but its rights do not allow the operation (an etcd
    /// role without read/write on the lock prefix, a ZooKeeper node whose ACL belongs
    /// to another user). The message names the missing right where the server says it.
    PermissionDenied,
    /// Any other failure reported by the backend.
    Backend,
}

impl ErrorKind {
    /// A short lowercase name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidName => "invalid lock name",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::UnsupportedScheme => "unsupported scheme",
            ErrorKind::FeatureDisabled => "feature disabled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::LeaseLost => "lease lost",
            ErrorKind::NotHeld => "not held",
            ErrorKind::StaleToken => "stale fencing token",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible fencelock operation.
///
/// Carries a matchable [`ErrorKind`], a lowercase message that names the lock where
/// there is one (never a credential), and the original error as its
/// [`source`](std::error::Error::source).
///
/// # Examples
///
/// ```
/// use lock_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Unavailable, "etcd at 127.0.0.1:1 is unreachable");
/// assert!(err.is_retryable());
/// assert_eq!(err.to_string(), "unavailable: etcd at 127.0.0.1:1 is unreachable");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Source>,
    cause: Option<LossCause>,
}

impl Error {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            cause: None,
        }
    }

    /// Attaches the underlying error, returned by [`source`](std::error::Error::source).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches why a lock or lease was lost, returned by
    /// [`loss_cause`](Self::loss_cause).
    #[must_use]
    pub fn with_loss_cause(mut self, cause: LossCause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// Why the lock or lease was lost, for a [`ErrorKind::LeaseLost`] error that knows
    /// it (for example from [`LockGuard::ensure_held`](crate::LockGuard::ensure_held)).
    pub fn loss_cause(&self) -> Option<LossCause> {
        self.cause
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same call may succeed if retried later ([`ErrorKind::Unavailable`]
    /// and [`ErrorKind::Timeout`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    pub(crate) fn lease_lost(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::LeaseLost, what.to_string())
    }
}

const _: () = {
    const fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<Error>();
};
