//! Bad input gives typed errors, never a panic or a hang.

use super::Ctx;
use crate::TestResult;
use fencelock::ErrorKind;
use std::time::Duration;

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
