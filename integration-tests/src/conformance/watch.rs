//! Live views: `LockClient::watch_lock` and `watch_list` follow a lock through
//! acquire, handoff and release, driven by the backend's watch.

use super::{within, Ctx};
use crate::TestResult;
use fencelock::{ErrorKind, LockInfo, LockWatch};
use futures::StreamExt;
use std::time::Duration;

/// The next snapshot, within 10 s.
async fn next<T>(watch: &mut LockWatch<T>) -> Result<T, crate::TestError> {
    let item = within(Duration::from_secs(10), "the next snapshot", watch.next()).await?;
    Ok(item.ok_or("the watch ended")??)
}

/// Reads snapshots until `done` holds for one; every one on the way must pass `ok`.
async fn until(
    watch: &mut LockWatch<Option<LockInfo>>,
    ok: impl Fn(&Option<LockInfo>) -> bool,
    done: impl Fn(&Option<LockInfo>) -> bool,
) -> Result<Option<LockInfo>, crate::TestError> {
    loop {
        let snapshot = next(watch).await?;
        if done(&snapshot) {
            return Ok(snapshot);
        }
        if !ok(&snapshot) {
            return Err(format!("unexpected snapshot on the way: {snapshot:?}").into());
        }
    }
}

pub(super) async fn a_watcher_sees_acquire_handoff_and_release(ctx: Ctx) -> TestResult {
    let (a, b, w) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let mut watch = match w.watch_lock("w").await {
        Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(()),
        other => other?,
    };
    let mut list = w.watch_list("").await?;
    assert!(next(&mut watch).await?.is_none(), "free at first");
    assert!(next(&mut list).await?.is_empty());

    let first = a.acquire("w").await?;
    let seen = next(&mut watch).await?.ok_or("held after acquire")?;
    assert_eq!((seen.token, seen.waiters), (first.token(), 0));
    let listed = next(&mut list).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token, first.token());

    let waiter = tokio::spawn(async move { b.acquire("w").await });
    let seen = next(&mut watch).await?.ok_or("held while a waiter joins")?;
    assert_eq!((seen.token, seen.waiters), (first.token(), 1));

    let token = first.token();
    first.release().await?;
    let second = within(Duration::from_secs(10), "handoff", waiter).await???;
    let seen = until(
        &mut watch,
        |s| s.as_ref().is_none_or(|i| i.token == token),
        |s| s.as_ref().is_some_and(|i| i.token == second.token()),
    )
    .await?
    .ok_or("held after handoff")?;
    assert_eq!(seen.waiters, 0);

    let token = second.token();
    second.release().await?;
    until(
        &mut watch,
        |s| s.as_ref().is_some_and(|i| i.token == token),
        Option::is_none,
    )
    .await?;
    loop {
        if next(&mut list).await?.is_empty() {
            break;
        }
    }
    Ok(())
}
