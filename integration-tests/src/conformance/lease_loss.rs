//! Lease loss: guards learn, waiters fail fast, new work gets a new session.

use super::{wait_for_waiters, within, Ctx};
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

/// A lease killed from outside at a long TTL (etcd: revoked by another client;
/// ZooKeeper: its session expired on the server): the waiter is granted at once, long
/// before the TTL, the holder and the lease learn within the harness's
/// [`kill_notice`](crate::Harness::kill_notice) of the kill, and a new lease serves
/// later acquisitions with a higher token.
pub(super) async fn a_killed_lease_is_noticed_and_taken_over_before_its_ttl(
    ctx: Ctx,
) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    // So long that no expiry explains what follows (ZooKeeper clamps it to the
    // servers' maximum session timeout: 4 s on the test servers).
    let lease = a.lease_with_ttl(Duration::from_secs(30)).await?;
    let notice = ctx
        .harness()
        .kill_notice(lease.ttl())
        .ok_or("the harness gives no kill_notice")?;
    let held = lease.lock("x")?.acquire().await?;
    let waiter = tokio::spawn(async move { b.acquire("x").await });
    wait_for_waiters(&a, "x", 1).await?;
    let killed = Instant::now();
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    // The server deleted the holder's entry with the lease: the waiter is granted at
    // once, long before the TTL.
    let next = within(
        Duration::from_secs(2),
        "waiter granted after the kill",
        waiter,
    )
    .await???;
    assert!(
        next.token() > held.token(),
        "token {} not above {}",
        next.token(),
        held.token()
    );
    assert!(
        killed.elapsed() < lease.ttl(),
        "waiter waited for the lease's ttl"
    );
    within(
        notice.saturating_sub(killed.elapsed()),
        &format!("guard lost within {notice:?} of the kill"),
        held.watch().lost(),
    )
    .await?;
    within(
        notice.saturating_sub(killed.elapsed()),
        &format!("lease lost within {notice:?} of the kill"),
        lease.watch().lost(),
    )
    .await?;
    eprintln!(
        "{}: guard and lease lost {:?} after the kill",
        ctx.harness().name(),
        killed.elapsed()
    );
    assert_eq!(
        held.release().await.map_err(|e| e.kind()),
        Err(ErrorKind::NotHeld)
    );
    let next_token = next.token();
    next.release().await?;
    // A new lease serves later acquisitions.
    let again = a
        .lease_with_ttl(Duration::from_secs(4))
        .await?
        .lock("x")?
        .acquire()
        .await?;
    assert!(again.token() > next_token);
    again.release().await?;
    Ok(())
}

/// An operator deletes the holder's entry (etcd key, ZooKeeper node): the guard is
/// lost within the harness's [`delete_notice`](crate::Harness::delete_notice), its
/// lease is not, a native fenced write of the old guard is refused, the waiter is
/// granted, and the same lease acquires again with a higher token.
pub(super) async fn a_deleted_entry_loses_the_lock_but_not_the_lease(ctx: Ctx) -> TestResult {
    let notice = ctx
        .harness()
        .delete_notice()
        .ok_or("the harness gives no delete_notice")?;
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lease = a.lease_with_ttl(Duration::from_secs(10)).await?;
    let held = lease.lock("k")?.acquire().await?;
    let waiter = tokio::spawn(async move { b.acquire("k").await });
    wait_for_waiters(&a, "k", 1).await?;
    ctx.harness()
        .delete_holder(ctx.ns(), &LockName::new("k")?)
        .await?;
    within(
        notice,
        "guard lost after its entry was deleted",
        held.watch().lost(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        held.lease().state(),
        LockState::Held,
        "an operator's delete must not kill the lease: only the lock is lost"
    );
    if let Some(native) = ctx.harness().native_fence() {
        let err = native
            .check(&held)
            .await
            .expect_err("native fenced write without the lock");
        assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    }
    let next = within(Duration::from_secs(2), "waiter granted", waiter).await???;
    assert!(next.token() > held.token());
    let next_token = next.token();
    next.release().await?;
    let again = lease.lock("k")?.acquire().await?;
    assert!(again.token() > next_token);
    assert_eq!(
        held.release().await.map_err(|e| e.kind()),
        Err(ErrorKind::NotHeld)
    );
    again.release().await?;
    lease.close().await?;
    Ok(())
}
