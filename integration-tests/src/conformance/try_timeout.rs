//! try_acquire and acquire_timeout.

use super::{wait_for_waiters, within, Ctx};
use crate::TestResult;
use fencelock::ErrorKind;
use std::time::{Duration, Instant};

pub(super) async fn try_acquire_returns_none_while_held(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let held = a.try_acquire("t").await?.ok_or("free lock not taken")?;
    let started = Instant::now();
    assert!(b.try_acquire("t").await?.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "try_acquire waited"
    );
    held.release().await?;
    let again = b.try_acquire("t").await?.ok_or("released lock not taken")?;
    again.release().await?;
    Ok(())
}

pub(super) async fn acquire_timeout_gives_timeout_and_leaves_no_waiter(ctx: Ctx) -> TestResult {
    let (a, b, c) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let held = a.acquire("t").await?;
    let started = Instant::now();
    let err = b
        .acquire_timeout("t", Duration::from_millis(300))
        .await
        .expect_err("held lock acquired");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_retryable());
    assert!(started.elapsed() >= Duration::from_millis(300));
    wait_for_waiters(&a, "t", 0).await?;
    held.release().await?;
    let next = within(
        Duration::from_secs(2),
        "lock free at once",
        c.try_acquire("t"),
    )
    .await??;
    next.ok_or("timed-out waiter still blocks the queue")?
        .release()
        .await?;
    Ok(())
}
