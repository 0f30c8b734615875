//! Every redis-rs error mapped into fencelock's [`Error`], in this one place.
//!
//! The original error stays reachable as [`source`](std::error::Error::source); no
//! redis-rs type appears in a public signature.

use lock_core::{Error, ErrorKind};
use std::{fmt, time::Duration};

/// Maps `err`, met while doing `what` (a lowercase phrase naming the lock or the
/// lease, never a credential), into a fencelock error.
pub(crate) fn map(err: redis::RedisError, what: impl fmt::Display) -> Error {
    let kind = kind_of(&err);
    let hint = match kind {
        ErrorKind::Unauthenticated => {
            " (redis refused the credentials: check the url's user and password)"
        }
        ErrorKind::PermissionDenied => {
            " (the redis acl user may not run this: it needs EVALSHA, EVAL, SCRIPT, BLPOP, DEL, SCAN and the lock keys)"
        }
        _ => "",
    };
    Error::new(kind, format!("{what}: {err}{hint}")).with_source(err)
}

/// A request got no answer within `after`: its effect on the server is unknown.
pub(crate) fn timed_out(what: impl fmt::Display, after: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("{what}: no answer from redis within {after:?}"),
    )
}

/// The kind of a redis-rs error.
pub(crate) fn kind_of(err: &redis::RedisError) -> ErrorKind {
    if let Some(code) = err.code() {
        return match code {
            "WRONGPASS" | "NOAUTH" => ErrorKind::Unauthenticated,
            "NOPERM" => ErrorKind::PermissionDenied,
            // Still loading its data, busy with a script, a replica that lost its
            // master or refuses writes: try again later (or elsewhere).
            "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "READONLY" | "CLUSTERDOWN" => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Backend,
        };
    }
    match err.kind() {
        redis::ErrorKind::AuthenticationFailed => ErrorKind::Unauthenticated,
        redis::ErrorKind::InvalidClientConfig => ErrorKind::InvalidConfig,
        _ if err.is_timeout() => ErrorKind::Timeout,
        _ if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_map_to_situations() {
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(kind_of(&io), ErrorKind::Unavailable);
        let auth = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(kind_of(&auth), ErrorKind::Unauthenticated);
        let err = map(auth, "connecting to redis at h:1");
        assert!(err.message().contains("credentials"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            timed_out("x", Duration::from_secs(1)).kind(),
            ErrorKind::Timeout
        );
    }
}
