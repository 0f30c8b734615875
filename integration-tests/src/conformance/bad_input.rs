//! Bad input gives typed errors, never a panic or a hang.

use super::{within, Ctx};
use crate::TestResult;
use fencelock::ErrorKind;
use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

pub(super) async fn invalid_names_are_typed_errors(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let long = "x".repeat(300);
    for bad in [
        "",
        "/lead",
        "trail/",
        "a//b",
        "a/../b",
        "sp ace",
        "ünï",
        long.as_str(),
    ] {
        let err = a.acquire(bad).await.expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}: {err}");
        assert_eq!(
            a.try_acquire(bad).await.map(|_| ()).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            a.inspect(bad).await.unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }
    Ok(())
}

pub(super) async fn bad_ttls_are_typed_errors(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    for ttl in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(86_400 * 365),
        Duration::MAX,
    ] {
        let err = a.lease_with_ttl(ttl).await.expect_err("bad ttl accepted");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{ttl:?}: {err}");
    }
    Ok(())
}

/// A server that is not there (nothing listens) and one that accepts TCP but never
/// answers: connecting fails with `Unavailable` within 1.5 s either way (the
/// harness's [`unreachable_url`](crate::Harness::unreachable_url) sets a connect
/// timeout of at most 1 s), never hangs.
pub(super) async fn unreachable_servers_are_unavailable_in_time(ctx: Ctx) -> TestResult {
    // Nothing listens: refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")?;
    let refused = closed.local_addr()?;
    drop(closed);
    // Accepts TCP (the kernel completes the handshakes) but never speaks: only the
    // timeout can end it.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    for addr in [refused, silent.local_addr()?] {
        let url = ctx
            .harness()
            .unreachable_url(&addr.to_string())
            .ok_or("the harness gives no unreachable_url")?;
        let started = Instant::now();
        let err = within(
            Duration::from_secs(3),
            "connect fails",
            fencelock::connect(&url),
        )
        .await?
        .expect_err("connected to nothing");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{url}: {err}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{url}: took {:?}",
            started.elapsed()
        );
    }
    drop(silent);
    Ok(())
}
