//! FIFO order, and herd freedom: a release wakes the one waiter it grants.

use super::{
    check_wakeups, next_grant, queue_in_order, wait_for_waiters, waiters_finished, within, Ctx,
    HERD,
};
use crate::TestResult;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

pub(super) async fn waiters_are_served_in_arrival_order(ctx: Ctx) -> TestResult {
    let holder = ctx.client().await?;
    let held = holder.acquire("queue").await?;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..5 {
        let client = ctx.client().await?;
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let guard = client.acquire("queue").await?;
            order.lock().expect("not poisoned").push((i, guard.token()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await
        }));
        wait_for_waiters(&holder, "queue", i + 1).await?;
    }
    held.release().await?;
    for w in waiters {
        within(Duration::from_secs(10), "waiter finished", w).await???;
    }
    let order = order.lock().expect("not poisoned");
    let ids: Vec<_> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4], "not served in arrival order");
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1));
    Ok(())
}

pub(super) async fn try_acquire_does_not_jump_the_queue(ctx: Ctx) -> TestResult {
    let (a, b, c) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let held = a.acquire("q").await?;
    let waiter = tokio::spawn(async move { b.acquire("q").await });
    wait_for_waiters(&a, "q", 1).await?;
    held.release().await?;
    let next = within(Duration::from_secs(5), "waiter granted", waiter).await???;
    assert!(
        c.try_acquire("q").await?.is_none(),
        "try_acquire overtook the holder"
    );
    next.release().await?;
    Ok(())
}

/// A backend that claims [`herd_free`](fencelock::Capabilities::herd_free) reports
/// its waiter wake-ups, so the wake-up cases (gated on the claim) can check it; one
/// that does not claim it may report them or not.
pub(super) async fn a_herd_free_backend_counts_its_wakeups(ctx: Ctx) -> TestResult {
    let client = ctx.client().await?;
    let counted = client.stats().waiter_wakeups;
    if client.capabilities().herd_free {
        assert!(
            counted.is_some(),
            "herd_free claimed, but no waiter wake-ups counted"
        );
    }
    assert_eq!(counted.unwrap_or(0), 0, "wake-ups before any wait");
    Ok(())
}

/// A mutex with [`HERD`] waiters queued, released holder after holder: each release
/// wakes only the next waiter, so the wake-ups over the case's clients stay at about
/// one per release, where waking every queued waiter would cost `HERD + (HERD - 1) +
/// … + 1`.
pub(super) async fn a_release_wakes_one_waiter_not_a_herd(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let mut held = probe.acquire("herd").await?;
    let (mut granted, waiters) = queue_in_order(&ctx, &probe, "herd", HERD, |_, c| async move {
        c.acquire("herd").await
    })
    .await?;
    let before = ctx.waiter_wakeups()?;
    let mut per_release = Vec::new();
    for expect in 0..HERD {
        let at = ctx.waiter_wakeups()?;
        held.release().await?;
        let (next, woken) = next_grant(&ctx, &mut granted, expect, at).await?;
        per_release.push(woken);
        held = next;
    }
    held.release().await?; // nobody left to wake
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woken = ctx.waiter_wakeups()? - before;
    let releases = HERD as u64;
    check_wakeups(
        &ctx,
        &format!("{releases} mutex releases with waiters (per release {per_release:?})"),
        woken,
        releases + 2,
        (1..=releases).sum(),
    )?;
    waiters_finished(waiters).await
}
