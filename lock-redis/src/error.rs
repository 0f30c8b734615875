//! Every redis-rs error mapped into fencelock's [`Error`], in this one place.
//!
//! The original error stays reachable as [`source`](std::error::Error::source); no
//! redis-rs type appears in a public signature.

use lock_core::{Error, ErrorKind};
use std::{fmt, time::Duration};

/// Maps `err`, met while doing `what` (a lowercase phrase naming the lock or the
/// lease, never a credential), into a fencelock error.
pub(crate) fn map(err: redis::RedisError, what: impl fmt::Display) -> Error {
    if let Some(why) = refusal(&err) {
        return Error::new(ErrorKind::Unauthenticated, format!("{what}: {why}")).with_source(err);
    }
    let kind = kind_of(&err);
    let hint = match kind {
        ErrorKind::Unauthenticated => {
            " (redis refused the credentials: check the url's user and password)"
        }
        ErrorKind::PermissionDenied => {
            " (the redis acl user may not run this: see the rights listed in the README's Security section)"
        }
        _ => "",
    };
    Error::new(kind, format!("{what}: {err}{hint}")).with_source(err)
}

/// Which side refused a TLS connection and why, when `err` says a handshake failed;
/// `None` for any other failure.
///
/// redis-rs keeps the I/O error (and the rustls error inside it) behind an `Arc`
/// that `source` cannot downcast through, so this reads rustls's own wording of
/// its errors (`invalid peer certificate: …`, `received fatal alert: …`); the
/// refusal tests pin it.
fn refusal(err: &redis::RedisError) -> Option<String> {
    if !err.is_io_error() {
        return None;
    }
    let text = err.to_string();
    if let Some((_, why)) = text.split_once("invalid peer certificate: ") {
        return Some(format!(
            "the client refused the server's certificate: {why}"
        ));
    }
    if let Some((_, alert)) = text.split_once("received fatal alert: ") {
        return Some(format!(
            "the server refused the TLS connection with alert {alert} \
             (a missing, expired or untrusted client certificate? set cert= and key=)"
        ));
    }
    text.contains("received corrupt message").then(|| {
        "the server does not speak TLS on this port (a plain-text port? use redis://)".to_owned()
    })
}

/// A request got no answer within `after`: its effect on the server is unknown.
pub(crate) fn timed_out(what: impl fmt::Display, after: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("{what}: no answer from redis within {after:?}"),
    )
}

/// How Redis 7 words an ACL refusal inside a script (`ERR The user executing the
/// script can't run this command or subcommand` / `… can't access at least one of
/// the keys …`).
const SCRIPT_REFUSED: &str = "The user executing the script can't";

/// The kind of a redis-rs error.
pub(crate) fn kind_of(err: &redis::RedisError) -> ErrorKind {
    if let Some(code) = err.code() {
        return match code {
            "WRONGPASS" | "NOAUTH" => ErrorKind::Unauthenticated,
            "NOPERM" => ErrorKind::PermissionDenied,
            // A command refused inside a script comes back as a plain `ERR`.
            _ if err.detail().is_some_and(|d| d.starts_with(SCRIPT_REFUSED)) => {
                ErrorKind::PermissionDenied
            }
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
        let in_script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "The user executing the script can't run this command or subcommand script: 1f, on @user_script:1.".to_owned(),
        ));
        assert_eq!(kind_of(&in_script), ErrorKind::PermissionDenied);
        assert_eq!(
            timed_out("x", Duration::from_secs(1)).kind(),
            ErrorKind::Timeout
        );
    }
}
