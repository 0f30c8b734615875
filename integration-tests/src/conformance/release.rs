//! Release, drop and cleanup.

use super::{wait_for_waiters, within, Ctx};
use crate::TestResult;
use fencelock::LockState;
use std::time::{Duration, SystemTime};

pub(super) async fn release_then_reacquire_at_once(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    for _ in 0..3 {
        let guard = a.acquire("r").await?;
        guard.release().await?;
        let other = b
            .try_acquire("r")
            .await?
            .ok_or("released lock still held")?;
        other.release().await?;
    }
    assert!(a.inspect("r").await?.is_none());
    Ok(())
}

pub(super) async fn dropped_guard_releases_in_background(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let guard = a.acquire("d").await?;
    let token = guard.token();
    drop(guard);
    let next = within(Duration::from_secs(3), "lock freed by drop", b.acquire("d")).await??;
    assert!(next.token() > token);
    next.release().await?;
    Ok(())
}

pub(super) async fn closing_a_lease_releases_all_its_locks(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lease = a.lease().await?;
    let mut guards = Vec::new();
    for i in 0..10 {
        guards.push(lease.lock(format!("many/{i}"))?.acquire().await?);
    }
    lease.close().await?;
    for guard in &guards {
        assert_eq!(guard.state(), LockState::Lost);
    }
    for i in 0..10 {
        let g = within(
            Duration::from_secs(3),
            "lock freed by close",
            b.acquire(format!("many/{i}")),
        )
        .await??;
        g.release().await?;
    }
    Ok(())
}

pub(super) async fn many_guards_dropped_at_once(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let mut guards = Vec::new();
    for i in 0..40 {
        guards.push(a.acquire(format!("drop/{i}")).await?);
    }
    let mut tasks = Vec::new();
    while !guards.is_empty() {
        let batch: Vec<_> = guards.drain(..guards.len().min(5)).collect();
        tasks.push(tokio::spawn(async move { drop(batch) }));
    }
    for t in tasks {
        t.await?;
    }
    let b = ctx.client().await?;
    for i in 0..40 {
        let g = within(
            Duration::from_secs(5),
            "dropped guard freed",
            b.acquire(format!("drop/{i}")),
        )
        .await??;
        g.release().await?;
    }
    Ok(())
}

pub(super) async fn inspect_shows_holder_token_and_waiters(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    assert!(a.inspect("i").await?.is_none());
    let before = SystemTime::now() - Duration::from_secs(5);
    let held = a.lock("i").await?.with_holder("web-1:42").acquire().await?;
    let waiter = tokio::spawn(async move { b.acquire("i").await });
    wait_for_waiters(&a, "i", 1).await?;
    let info = a.inspect("i").await?.ok_or("held lock not shown")?;
    assert_eq!(info.name.as_str(), "i");
    assert_eq!(info.token, held.token());
    assert_eq!(info.lease, held.lease().id());
    assert_eq!(info.holder.as_deref(), Some("web-1:42"));
    assert!(
        info.acquired_at.is_some_and(|t| t >= before),
        "acquired_at {:?}",
        info.acquired_at
    );
    let listed = a.list("").await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].token, held.token());
    held.release().await?;
    within(Duration::from_secs(5), "waiter granted", waiter)
        .await???
        .release()
        .await?;
    Ok(())
}
