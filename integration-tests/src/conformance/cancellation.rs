//! Dropping acquire futures leaves nothing behind.

use super::{fifo::wait_for_waiters, within, Ctx};
use crate::TestResult;
use rand::{Rng, SeedableRng};
use std::time::Duration;

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
