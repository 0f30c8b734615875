//! Every etcd-client error mapped into fencelock's [`Error`], in this one place.
//!
//! The original error stays reachable as [`source`](std::error::Error::source); no
//! etcd-client or tonic type appears in a public signature.

use lock_core::{Error, ErrorKind};
use std::{fmt, time::Duration};
use tonic::Code;

/// Maps `err`, met while doing `what` (a lowercase phrase naming the lock or the
/// lease, never a credential), into a fencelock error.
pub(crate) fn map(err: etcd_client::Error, what: impl fmt::Display) -> Error {
    let kind = kind_of(&err);
    let hint = match kind {
        ErrorKind::Unauthenticated if tls_refusal(&err).is_some() => {
            " (tls handshake failed: check the url's ca, cert and key and the server's certificate)"
        }
        ErrorKind::Unauthenticated => " (etcd refused the credentials: check the url's user and password)",
        ErrorKind::PermissionDenied => {
            " (etcd refused the user's rights: its role needs readwrite on the lock prefix, see the README)"
        }
        _ => "",
    };
    Error::new(kind, format!("{what}: {}{hint}", describe(&err))).with_source(err)
}

/// A request got no answer within `after`: its effect on the server is unknown.
pub(crate) fn timed_out(what: impl fmt::Display, after: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("{what}: no answer from etcd within {after:?}"),
    )
}

/// The kind of an etcd-client error.
pub(crate) fn kind_of(err: &etcd_client::Error) -> ErrorKind {
    use etcd_client::Error as E;
    match err {
        _ if tls_refusal(err).is_some() => ErrorKind::Unauthenticated,
        E::GRpcStatus(status) => status_kind(status.code(), status.message()),
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) => ErrorKind::Unavailable,
        E::LeaseKeepAliveError(msg) if msg.contains("not found") => ErrorKind::LeaseLost,
        E::LeaseKeepAliveError(_) => ErrorKind::Unavailable,
        E::InvalidUri(_) | E::InvalidArgs(_) | E::EndpointError(_) | E::InvalidMetadataValue(_) => {
            ErrorKind::InvalidConfig
        }
        _ => ErrorKind::Backend,
    }
}

fn status_kind(code: Code, message: &str) -> ErrorKind {
    match code {
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::Cancelled => {
            ErrorKind::Unavailable
        }
        // tonic reports broken HTTP/2 connections (reset, GOAWAY) as Unknown/Internal.
        Code::Unknown | Code::Internal
            if ["transport", "h2", "connection", "reset", "broken pipe"]
                .iter()
                .any(|m| message.contains(m)) =>
        {
            ErrorKind::Unavailable
        }
        // Another gRPC service on the port ("unknown service etcdserverpb.KV"): no
        // etcd there, as good as unreachable.
        Code::Unimplemented => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::NotFound if message.contains("lease not found") => ErrorKind::LeaseLost,
        // Wrong password or unknown user ("authentication failed, invalid user ID or
        // password"), no user with auth on ("user name is empty"), a token etcd no
        // longer knows ("invalid auth token").
        Code::InvalidArgument | Code::Unauthenticated
            if ["authentication", "user name is empty", "auth token"]
                .iter()
                .any(|m| message.contains(m)) =>
        {
            ErrorKind::Unauthenticated
        }
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Backend,
    }
}

/// What the TLS layer said when the handshake failed (a certificate refused by either
/// side, a plain-text server behind a TLS client), from the error's source chain.
fn tls_refusal(err: &etcd_client::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if [
            "certificate",
            "InvalidCertificate",
            "tls",
            "TLS",
            "handshake",
            "CorruptMessage",
            "InvalidContentType",
            "alert",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return Some(text);
        }
        source = e.source();
    }
    None
}

/// Whether `err` (from connecting) says the server closed the connection at once:
/// a broken pipe, a connection closed before the answer, or a request cancelled
/// because its connection went away.
pub(crate) fn closed_at_once(err: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string().to_lowercase();
        if [
            "broken pipe",
            "connection closed",
            "operation was canceled",
            "connection reset",
            "reset by peer",
            "end of file",
            "eof",
            "incomplete",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return err.is_retryable();
        }
        source = e.source();
    }
    // Some layers do not expose their cause through `source()` (a gRPC status
    // carrying a transport error whose io error is a bare `ConnectionReset`); their
    // `Debug` still names it.
    let debug = format!("{err:?}").to_lowercase();
    if [
        "connectionreset",
        "brokenpipe",
        "connectionaborted",
        "unexpectedeof",
    ]
    .iter()
    .any(|m| debug.contains(m))
    {
        return err.is_retryable();
    }
    false
}

/// A short description: the gRPC message without tonic's decoration.
fn describe(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) if !status.message().is_empty() => {
            status.message().to_owned()
        }
        other => match tls_refusal(other) {
            Some(tls) => format!("{other}: {tls}"),
            None => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn kind(status: Status) -> ErrorKind {
        map(etcd_client::Error::GRpcStatus(status), "lock x").kind()
    }

    #[test]
    fn grpc_codes_map_to_situations() {
        assert_eq!(
            kind(Status::unavailable("etcdserver: leader changed")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::unavailable("etcdserver: no leader")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::resource_exhausted("too many requests")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::deadline_exceeded("deadline")),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind(Status::not_found("etcdserver: requested lease not found")),
            ErrorKind::LeaseLost
        );
        assert_eq!(
            kind(Status::invalid_argument(
                "etcdserver: authentication failed, invalid user ID or password"
            )),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            kind(Status::unknown("h2 protocol error: connection reset")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::permission_denied("etcdserver: permission denied")),
            ErrorKind::PermissionDenied
        );
        // Another gRPC service on the port: no etcd there (the CLI exits 69).
        assert_eq!(
            kind(Status::unimplemented("unknown service etcdserverpb.KV")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted"
            )),
            ErrorKind::Backend
        );
    }

    #[test]
    fn client_errors_map_and_keep_source() {
        use std::error::Error as _;
        let err = map(
            etcd_client::Error::LeaseKeepAliveError("lease not found".into()),
            "lease 7",
        );
        assert_eq!(err.kind(), ErrorKind::LeaseLost);
        assert!(err.source().is_some());
        assert_eq!(
            err.to_string(),
            "lease lost: lease 7: lease keep alive error: lease not found"
        );
        let err = map(
            etcd_client::Error::InvalidArgs("empty endpoints".into()),
            "connect",
        );
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let err = map(etcd_client::Error::WatchError("closed".into()), "watch");
        assert!(err.is_retryable());
        assert_eq!(
            timed_out("release of lock a", Duration::from_secs(1)).kind(),
            ErrorKind::Timeout
        );
    }
}
