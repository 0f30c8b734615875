//! Dropping acquire futures leaves nothing behind.

use super::{wait_for_waiters, within, Ctx};
use crate::TestResult;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

pub(super) async fn dropped_acquire_leaves_no_waiter(ctx: Ctx) -> TestResult {
    let (a, b, c) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let held = a.acquire("c").await?;
    let pending = tokio::spawn(async move { b.acquire("c").await });
    wait_for_waiters(&a, "c", 1).await?;
    pending.abort();
    let _ = pending.await;
    wait_for_waiters(&a, "c", 0).await?;
    held.release().await?;
    let next = within(
        Duration::from_secs(2),
        "try after cancel",
        c.try_acquire("c"),
    )
    .await??;
    next.ok_or("cancelled waiter blocks the queue")?
        .release()
        .await?;
    Ok(())
}

pub(super) async fn random_cancellation_stress(ctx: Ctx) -> TestResult {
    let n = ctx.harness().cancellations();
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let clients = [
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    ];
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        let cancel_after = Duration::from_micros(rng.gen_range(0..20_000));
        let hold = Duration::from_micros(rng.gen_range(0..2_000));
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(guard)) = tokio::time::timeout(cancel_after, client.acquire("storm")).await
            {
                tokio::time::sleep(hold).await;
                drop(guard);
            }
        }));
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await?;
    }
    let probe = ctx.client().await?;
    let guard = within(
        Duration::from_secs(10),
        &format!("lock free after {n} cancellations (seed {seed})"),
        probe.acquire("storm"),
    )
    .await??;
    let info = probe.inspect("storm").await?.ok_or("not held")?;
    assert_eq!(info.token, guard.token());
    assert_eq!(info.waiters, 0, "waiters left behind (seed {seed})");
    guard.release().await?;
    Ok(())
}

/// 200 acquisitions queued behind a holder from four clients, each cancelled at its own
/// moment spread over the harness's [`cancel_spread`](crate::Harness::cancel_spread)
/// (every await point of the backend's acquire): no waiter is left, the holder's
/// entry is the only one on the server, and after the release the lock is free at
/// once.
pub(super) async fn cancelled_acquires_behind_a_holder_leave_only_the_holder(
    ctx: Ctx,
) -> TestResult {
    let spread = ctx
        .harness()
        .cancel_spread()
        .ok_or("the harness gives no cancel_spread")?;
    let spread_us = u64::try_from(spread.as_micros())?.max(1);
    let holder = ctx.client().await?;
    let held = holder.acquire("storm").await?;
    let clients = [
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    ];
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let client = clients[i as usize % clients.len()].clone();
        let cancel_after = Duration::from_micros((i * 7919) % spread_us);
        tasks.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(cancel_after, client.acquire("storm")).await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    wait_for_waiters(&holder, "storm", 0).await?;
    if let Some(left) = ctx.harness().entries(ctx.ns()).await? {
        assert_eq!(
            left.len(),
            1,
            "only the holder's entry may remain: {left:?}"
        );
    }
    held.release().await?;
    let started = Instant::now();
    let guard = within(
        Duration::from_secs(2),
        "lock free at once after 200 cancellations",
        clients[0].try_acquire("storm"),
    )
    .await??
    .ok_or("a cancelled waiter blocks the queue")?;
    eprintln!("lock free {:?} after the release", started.elapsed());
    let info = holder.inspect("storm").await?.ok_or("not held")?;
    assert_eq!((info.token, info.waiters), (guard.token(), 0));
    guard.release().await?;
    if let Some(left) = ctx.harness().entries(ctx.ns()).await? {
        assert!(left.is_empty(), "entries left: {left:?}");
    }
    Ok(())
}
