//! Every `zookeeper_client::Error` mapped into [`lock_core::Error`], in this one place.
//!
//! The original error is kept as the [`source`](std::error::Error::source); no
//! zookeeper-client type appears in a public signature of this crate.

use lock_core::{Error, ErrorKind, LossCause};
use zookeeper_client::Error as ZkError;

/// Whether the outcome of the failed request is unknown: it may or may not have been
/// applied by the server. zookeeper-client reports a connection reset or an idle
/// connection as a custom error rather than [`ZkError::ConnectionLoss`], so both count.
pub(crate) fn is_indeterminate(err: &ZkError) -> bool {
    matches!(
        err,
        ZkError::ConnectionLoss | ZkError::Custom(_) | ZkError::Timeout
    )
}

/// Whether the session is gone for good (no request on it can succeed again).
pub(crate) fn is_terminal(err: &ZkError) -> bool {
    matches!(
        err,
        ZkError::SessionExpired
            | ZkError::SessionMoved
            | ZkError::ClientClosed
            | ZkError::AuthFailed
    )
}

/// Why a session-terminal error (see [`is_terminal`]) loses a lease or lock.
pub(crate) fn loss_cause_of(err: &ZkError) -> LossCause {
    match err {
        ZkError::SessionExpired => LossCause::SessionExpired,
        _ => LossCause::Disconnected,
    }
}

/// Why a terminal session state loses a lease or lock.
pub(crate) fn session_end_cause(state: zookeeper_client::SessionState) -> LossCause {
    match state {
        zookeeper_client::SessionState::Expired => LossCause::SessionExpired,
        _ => LossCause::Disconnected,
    }
}

/// The kind a zookeeper-client error maps to.
pub(crate) fn kind_of(err: &ZkError) -> ErrorKind {
    match err {
        ZkError::ConnectionLoss
        | ZkError::Custom(_)
        | ZkError::Timeout
        | ZkError::NoHosts
        | ZkError::Throttled
        | ZkError::NotReadOnly => ErrorKind::Unavailable,
        ZkError::SessionExpired | ZkError::SessionMoved | ZkError::ClientClosed => {
            ErrorKind::LeaseLost
        }
        ZkError::AuthFailed => ErrorKind::Unauthenticated,
        ZkError::NoAuth => ErrorKind::PermissionDenied,
        ZkError::BadArguments(_) | ZkError::InvalidAcl => ErrorKind::InvalidConfig,
        _ => ErrorKind::Backend,
    }
}

/// Maps `err`, met while doing `what` (a lowercase phrase naming the lock or node,
/// never a credential), into a core error that keeps `err` as its source.
pub(crate) fn map(err: ZkError, what: impl std::fmt::Display) -> Error {
    let kind = kind_of(&err);
    let hint = match &err {
        e if is_indeterminate(e) => " (the request may or may not have been applied)",
        ZkError::SessionExpired => " (the zookeeper session expired)",
        ZkError::ClientClosed => " (the zookeeper session was closed)",
        ZkError::NoAuth => {
            " (zookeeper refused: the node's acl does not give this user the right; check the url's user and acl)"
        }
        ZkError::AuthFailed => " (zookeeper refused the digest credentials: check the url's user and password)",
        _ => "",
    };
    Error::new(kind, format!("{what}: {err}{hint}")).with_source(err)
}

/// The error of an operation on a lease that was revoked (its session closed).
pub(crate) fn revoked(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("{what}: the lease was revoked"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn every_error_maps_to_a_situation() {
        let cases = [
            (ZkError::ConnectionLoss, ErrorKind::Unavailable),
            (ZkError::Timeout, ErrorKind::Unavailable),
            (ZkError::NoHosts, ErrorKind::Unavailable),
            (ZkError::Throttled, ErrorKind::Unavailable),
            (ZkError::SessionExpired, ErrorKind::LeaseLost),
            (ZkError::ClientClosed, ErrorKind::LeaseLost),
            (ZkError::AuthFailed, ErrorKind::Unauthenticated),
            (ZkError::InvalidAcl, ErrorKind::InvalidConfig),
            (ZkError::NoAuth, ErrorKind::PermissionDenied),
            (ZkError::NoNode, ErrorKind::Backend),
            (ZkError::UnexpectedErrorCode(-999), ErrorKind::Backend),
        ];
        for (err, kind) in cases {
            let mapped = map(err.clone(), "acquiring lock jobs");
            assert_eq!(mapped.kind(), kind, "{err:?}");
            assert!(
                mapped.to_string().contains("acquiring lock jobs"),
                "{mapped}"
            );
            assert!(mapped.source().is_some());
        }
    }

    #[test]
    fn connection_loss_is_indeterminate_and_retryable() {
        let err = map(ZkError::ConnectionLoss, "releasing lock a");
        assert!(err.is_retryable());
        assert!(err.message().contains("may or may not"), "{err}");
        assert!(is_indeterminate(&ZkError::ConnectionLoss));
        assert!(!is_indeterminate(&ZkError::NoNode));
        assert!(is_terminal(&ZkError::SessionExpired));
        assert!(!is_terminal(&ZkError::ConnectionLoss));
    }
}
