//! Fencing tokens.

use super::Ctx;
use crate::TestResult;
use fencelock::{ErrorKind, Fence, LockName};

pub(super) async fn tokens_increase_across_holders_and_clients(ctx: Ctx) -> TestResult {
    let clients = [
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    ];
    let mut last = None;
    for round in 0..9 {
        let guard = clients[round % 3].acquire("f").await?;
        if let Some(prev) = last {
            assert!(
                guard.token() > prev,
                "token {} not above {prev}",
                guard.token()
            );
        }
        last = Some(guard.token());
        guard.release().await?;
    }
    let other = clients[0].acquire("other-name").await?;
    assert!(
        other.token() > last.ok_or("no token")?,
        "tokens of one store are not comparable"
    );
    other.release().await?;
    Ok(())
}

pub(super) async fn fence_rejects_the_stale_holder(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let fence = Fence::new();
    let first = a.acquire("res").await?;
    let stale_token = first.token();
    fence.check("res", stale_token)?;
    first.release().await?;
    let second = b.acquire("res").await?;
    fence.check("res", second.token())?;
    fence.check("res", second.token())?;
    let err = fence
        .check("res", stale_token)
        .expect_err("stale token accepted");
    assert_eq!(err.kind(), ErrorKind::StaleToken);
    second.release().await?;
    Ok(())
}

/// The backend's native fenced writes ([`NativeFence`](crate::NativeFence)) on a data
/// entry commit only while the lock is held:
///
/// - the first holder creates the entry once (a second create finds it and writes
///   nothing), and a write at a stale stamp applies nothing;
/// - its lock broken by an operator (`delete_holder`), its next write is `NotHeld` and
///   applies nothing;
/// - the next holder (higher token) updates the entry; its lease closed, its late
///   write is `NotHeld` and applies nothing;
/// - a third holder deletes the entry at the stamp the second one wrote.
pub(super) async fn native_fenced_writes_commit_only_while_held(ctx: Ctx) -> TestResult {
    let native = ctx
        .harness()
        .native_fence()
        .ok_or("the harness gives no native_fence")?;
    let ns = ctx.ns();
    let (a, b, c) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let key = "fenced-data";
    let guard = a.lease().await?.lock("f")?.acquire().await?;
    let stamp = native
        .create(ns, &guard, key, b"v1")
        .await?
        .ok_or("the first create found the entry")?;
    assert_eq!(native.read(ns, key).await?, Some((b"v1".to_vec(), stamp)));
    // The same again: the entry exists, so nothing is written (the lock still held).
    assert_eq!(native.create(ns, &guard, key, b"v1").await?, None);
    assert!(
        !native
            .set(ns, &guard, key, b"v3", Some(stamp + 1000))
            .await?,
        "a write at a stale stamp applied"
    );
    assert_eq!(native.read(ns, key).await?, Some((b"v1".to_vec(), stamp)));
    // An operator breaks the lock: the old holder's write must not apply.
    ctx.harness()
        .delete_holder(ns, &LockName::new("f")?)
        .await?;
    let err = native
        .set(ns, &guard, key, b"v2", None)
        .await
        .expect_err("fenced write after the lock was broken");
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    assert_eq!(native.read(ns, key).await?, Some((b"v1".to_vec(), stamp)));
    assert!(a.inspect("f").await?.is_none(), "the broken lock is held");
    // The next holder writes; then its lease dies, and its late write must not apply.
    let lease = b.lease().await?;
    let next = lease.lock("f")?.acquire().await?;
    assert!(next.token() > guard.token());
    assert!(native.set(ns, &next, key, b"v2", Some(stamp)).await?);
    let (_, stamp2) = native.read(ns, key).await?.ok_or("entry gone")?;
    lease.close().await?;
    let err = native
        .set(ns, &next, key, b"late", None)
        .await
        .expect_err("late write applied");
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    assert_eq!(native.read(ns, key).await?, Some((b"v2".to_vec(), stamp2)));
    // A third holder cleans up, guarded on the stamp the second one wrote.
    let last = c.acquire("f").await?;
    assert!(last.token() > next.token());
    assert!(native.delete(ns, &last, key, stamp2).await?);
    assert_eq!(native.read(ns, key).await?, None);
    last.release().await?;
    drop((guard, next));
    Ok(())
}
