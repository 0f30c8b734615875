//! Mutual exclusion.

use super::{within, Ctx};
use crate::TestResult;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

pub(super) async fn second_acquirer_waits_for_release(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let held = a.acquire("report").await?;
    let first = held.token();
    let waiter = tokio::spawn(async move { b.acquire("report").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "second acquirer got the lock while it was held"
    );
    held.release().await?;
    let second = within(
        Duration::from_secs(5),
        "waiter granted after release",
        waiter,
    )
    .await???;
    assert!(
        second.token() > first,
        "token {} not above {first}",
        second.token()
    );
    second.release().await?;
    Ok(())
}

pub(super) async fn many_tasks_hold_one_at_a_time(ctx: Ctx) -> TestResult {
    let (tasks, cycles) = ctx.harness().stress_size();
    let holders = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(tasks * cycles)));
    let mut clients = Vec::new();
    for _ in 0..tasks.min(4) {
        clients.push(ctx.client().await?);
    }
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = clients[t % clients.len()].clone();
        let (holders, tokens) = (holders.clone(), tokens.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..cycles {
                let guard = client.acquire("hot").await?;
                let inside = holders.fetch_add(1, Ordering::SeqCst);
                assert_eq!(inside, 0, "two guards held at once");
                tokens.lock().expect("not poisoned").push(guard.token());
                tokio::task::yield_now().await;
                holders.fetch_sub(1, Ordering::SeqCst);
                guard.release().await?;
            }
            Ok::<_, fencelock::Error>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let tokens = tokens.lock().expect("not poisoned");
    assert_eq!(tokens.len(), tasks * cycles);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing in grant order"
    );
    Ok(())
}

pub(super) async fn names_sharing_a_prefix_are_independent(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let parent = a.acquire("jobs").await?;
    let child = within(
        Duration::from_secs(5),
        "child lock while parent held",
        b.acquire("jobs/nightly"),
    )
    .await??;
    let sibling = within(
        Duration::from_secs(5),
        "name with the parent as prefix",
        b.acquire("jobs2"),
    )
    .await??;
    assert!(a.try_acquire("jobs/nightly").await?.is_none());
    let info = a.inspect("jobs").await?.ok_or("jobs not held")?;
    assert_eq!(info.token, parent.token());
    assert_eq!(info.waiters, 0, "waiters of jobs/nightly counted for jobs");
    for guard in [parent, child, sibling] {
        guard.release().await?;
    }
    Ok(())
}
