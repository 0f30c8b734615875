//! FIFO order.

use super::{within, Ctx};
use crate::TestResult;
use fencelock::LockClient;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Waits until `name` has `n` waiters.
pub(super) async fn wait_for_waiters(client: &LockClient, name: &str, n: usize) -> TestResult {
    within(
        Duration::from_secs(10),
        &format!("{n} waiters on {name}"),
        async {
            loop {
                if client.inspect(name).await?.is_some_and(|i| i.waiters == n) {
                    return Ok::<_, fencelock::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await??;
    Ok(())
}

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
