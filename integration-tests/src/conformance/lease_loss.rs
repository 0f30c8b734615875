//! Lease loss: guards learn, waiters fail fast, new work gets a new session.

use super::{fifo::wait_for_waiters, within, Ctx};
use crate::TestResult;
use fencelock::{ErrorKind, Fence, LockName, LockState};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How long a forced loss may take to reach the holder: the granted TTL (the local
/// deadline) plus slack.
fn loss_bound(ttl: Duration) -> Duration {
    ttl + Duration::from_secs(2)
}

pub(super) async fn killed_lease_makes_guard_lost(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lease = a.lease_with_ttl(ctx.harness().short_ttl()).await?;
    let held = lease.lock("l")?.acquire().await?;
    let waiter = tokio::spawn(async move { b.acquire("l").await });
    wait_for_waiters(&a, "l", 1).await?;
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    let state = within(
        loss_bound(lease.ttl()),
        "guard notices the killed lease",
        held.lost_signal(),
    )
    .await?;
    assert_ne!(state, LockState::Held);
    within(
        loss_bound(lease.ttl()),
        "guard turns lost",
        held.watch().lost(),
    )
    .await?;
    let next = within(loss_bound(lease.ttl()), "waiter takes over", waiter).await???;
    assert!(next.token() > held.token());
    let err = held
        .release()
        .await
        .expect_err("release of a lost lock reported success");
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    next.release().await?;
    Ok(())
}

pub(super) async fn waiter_fails_fast_when_its_lease_dies(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let held = a.acquire("w").await?;
    let lease = b
        .lease_with_ttl(Duration::from_secs(30).max(ctx.harness().short_ttl()))
        .await?;
    let lock = lease.lock("w")?;
    let waiter = tokio::spawn(async move { lock.acquire().await });
    wait_for_waiters(&a, "w", 1).await?;
    let killed = Instant::now();
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    let result = within(
        Duration::from_secs(5),
        "waiter on a dead lease gives up",
        waiter,
    )
    .await??;
    let err = result.expect_err("waiter on a dead lease was granted");
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    assert!(killed.elapsed() < lease.ttl(), "waiter waited for the ttl");
    held.release().await?;
    Ok(())
}

pub(super) async fn deleted_entry_makes_guard_lost(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let held = a.acquire("d").await?;
    let waiter = tokio::spawn(async move { b.acquire("d").await });
    wait_for_waiters(&a, "d", 1).await?;
    ctx.harness()
        .delete_holder(ctx.ns(), &LockName::new("d")?)
        .await?;
    within(
        Duration::from_secs(3),
        "holder notices deletion",
        held.watch().lost(),
    )
    .await?;
    let next = within(Duration::from_secs(3), "waiter takes over", waiter).await???;
    assert!(next.token() > held.token());
    assert_eq!(
        held.release().await.map_err(|e| e.kind()),
        Err(ErrorKind::NotHeld)
    );
    next.release().await?;
    Ok(())
}

pub(super) async fn with_lock_cancels_section_on_loss(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let lease = a.lease_with_ttl(ctx.harness().short_ttl()).await?;
    let lock = lease.lock("s")?;
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let section = tokio::spawn(async move {
        lock.with_lock(|_token| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            flag.store(true, Ordering::SeqCst);
        })
        .await
    });
    wait_until_held(&a, "s").await?;
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    let result = within(loss_bound(lease.ttl()), "section cancelled", section).await??;
    assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::LeaseLost));
    assert!(!finished.load(Ordering::SeqCst));
    Ok(())
}

async fn wait_until_held(client: &fencelock::LockClient, name: &str) -> TestResult {
    within(Duration::from_secs(5), "lock taken", async {
        while client.inspect(name).await?.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, fencelock::Error>(())
    })
    .await??;
    Ok(())
}

pub(super) async fn lost_session_is_replaced_for_new_acquires(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let session = a.session().await?;
    let held = a.acquire("r").await?;
    assert_eq!(held.lease().id(), session.id());
    ctx.harness().kill_lease(ctx.ns(), &session).await?;
    within(
        loss_bound(session.ttl()),
        "session lost",
        session.watch().lost(),
    )
    .await?;
    let err = session
        .lock("r")?
        .acquire()
        .await
        .expect_err("acquired on a lost lease");
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    let again = within(
        Duration::from_secs(10),
        "acquire on a fresh session",
        a.acquire("r"),
    )
    .await??;
    assert_ne!(again.lease().id(), session.id());
    assert!(again.token() > held.token());
    drop(held);
    again.release().await?;
    Ok(())
}

/// The seed scenario: a holder paused past its lease is fenced out.
pub(super) async fn stalled_holder_is_fenced_out(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lease = a.lease_with_ttl(ctx.harness().short_ttl()).await?;
    let stale = lease.lock("report")?.acquire().await?;
    let fence = Fence::new();
    fence.check("report", stale.token())?;
    if !ctx.harness().stall_lease(ctx.ns(), &lease).await? {
        // No in-process stall on this harness: the server-side effect of a long pause
        // is the same, the lease expires while the holder still has its guard.
        ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    }
    let next = within(
        loss_bound(lease.ttl()) * 2,
        "next holder after the stall",
        b.acquire("report"),
    )
    .await??;
    assert!(next.token() > stale.token());
    within(
        loss_bound(lease.ttl()),
        "stalled holder learns it lost",
        stale.watch().lost(),
    )
    .await?;
    fence.check("report", next.token())?;
    let err = fence
        .check("report", stale.token())
        .expect_err("stale write accepted");
    assert_eq!(err.kind(), ErrorKind::StaleToken);
    next.release().await?;
    drop(stale);
    Ok(())
}
