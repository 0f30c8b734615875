//! A holder paused past its TTL, in process (its traffic stalled) and as a real
//! process (`SIGSTOP`): fenced out, and told so as soon as it runs again.

use super::{within, Ctx};
use crate::{holder::HolderChild, TestError, TestResult};
use fencelock::{ErrorKind, Fence, FencingToken, LockState};
use std::time::{Duration, Instant};

/// A holder paused past its TTL is fenced out, twice:
///
/// 1. In process, its traffic stalled ([`stall_lease`](crate::Harness::stall_lease)):
///    the next holder is granted within three TTLs; the stalled holder's local
///    deadline passed before that grant and it is `Lost`; the fence rejects its
///    token; once its traffic flows again, its native fenced write is refused.
/// 2. As a real process (a [`HolderChild`]) `SIGSTOP`ped for twice its TTL: the next
///    holder is granted meanwhile, its writes still in flight from before the pause
///    are rejected by the fence, and once continued it reports lost within 500 ms
///    and writes nothing more that the fence accepts.
pub(super) async fn a_paused_holder_is_fenced_out_in_process_and_as_a_process(
    ctx: Ctx,
) -> TestResult {
    stalled_in_process(&ctx).await?;
    paused_process(&ctx).await
}

async fn stalled_in_process(ctx: &Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lease = a.lease_with_ttl(Duration::from_secs(2)).await?;
    let stale = lease.lock("stalled")?.acquire().await?;
    let fence = Fence::new();
    fence.check("stalled", stale.token())?;
    // A pause, as the server sees it.
    if !ctx.harness().stall_lease(ctx.ns(), &lease).await? {
        return Err("the harness cannot stall a lease".into());
    }
    let next = within(
        lease.ttl() * 3,
        "next holder after the stall",
        b.acquire("stalled"),
    )
    .await??;
    let granted = tokio::time::Instant::now();
    assert!(next.token() > stale.token());
    // The stalled holder's belief ended by its local deadline, before the next grant.
    let deadline = stale.watch().deadline().ok_or("no local deadline")?;
    assert!(
        deadline <= granted,
        "stale holder believed past the next grant by {:?}",
        deadline - granted
    );
    assert_eq!(stale.state(), LockState::Lost);
    fence.check("stalled", next.token())?;
    // The holder wakes up and writes with its old token: rejected.
    let err = fence
        .check("stalled", stale.token())
        .expect_err("stale write accepted");
    assert_eq!(err.kind(), ErrorKind::StaleToken);
    if !ctx.harness().resume_lease(ctx.ns(), &lease).await? {
        return Err("the harness cannot resume a stalled lease".into());
    }
    if let Some(native) = ctx.harness().native_fence() {
        let err = within(
            Duration::from_secs(10),
            "stale native fenced write",
            native.check(&stale),
        )
        .await?
        .expect_err("stale native fenced write accepted");
        assert!(
            matches!(err.kind(), ErrorKind::NotHeld | ErrorKind::Unavailable),
            "{err}"
        );
    }
    next.release().await?;
    drop(stale);
    Ok(())
}

async fn paused_process(ctx: &Ctx) -> TestResult {
    let url = ctx
        .harness()
        .process_url(ctx.ns())
        .ok_or("the harness gives no process_url")?;
    let mut child = HolderChild::spawn(&url, "report")?;
    let fence = Fence::new();
    let first = within(Duration::from_secs(10), "child token", child.lines.recv())
        .await?
        .ok_or("child exited")?;
    let stale: u64 = first
        .strip_prefix("TOKEN ")
        .ok_or("no TOKEN line")?
        .parse()?;
    let write = |line: &str| -> Result<Option<fencelock::Result<()>>, TestError> {
        match line.strip_prefix("WRITE ") {
            Some(t) => Ok(Some(fence.check("report", FencingToken::new(t.parse()?)))),
            None => Ok(None),
        }
    };
    // While it holds the lock, the child's writes are accepted; those of its last
    // 100 ms before the pause are still "in flight" on a slow network.
    let (mut accepted, mut in_flight) = (0, Vec::new());
    let start = Instant::now();
    let until = start + Duration::from_millis(300);
    while let Ok(Some(line)) = tokio::time::timeout_at(until.into(), child.lines.recv()).await {
        if start.elapsed() > Duration::from_millis(200) {
            in_flight.push(line);
        } else if let Some(result) = write(&line)? {
            result?;
            accepted += 1;
        }
    }
    child.pause();
    let paused = Instant::now();
    let b = ctx.client().await?;
    let next = within(
        Duration::from_secs(8),
        "next holder while the child is paused",
        b.acquire("report"),
    )
    .await??;
    assert!(next.token().get() > stale);
    fence.check("report", next.token())?;
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(paused.elapsed())).await;
    // Writes still in flight from before the pause reach the resource late: rejected.
    let mut rejected = 0;
    for line in &in_flight {
        if let Some(result) = write(line)? {
            let err = result.expect_err("stale in-flight write accepted");
            assert_eq!(err.kind(), ErrorKind::StaleToken);
            rejected += 1;
        }
    }
    assert!(
        rejected > 0,
        "no write was in flight: the fence was not exercised"
    );
    child.resume();
    let resumed = Instant::now();
    let mut noticed = None;
    let until = Instant::now() + Duration::from_millis(600);
    while let Ok(Some(line)) = tokio::time::timeout_at(until.into(), child.lines.recv()).await {
        if let Some(result) = write(&line)? {
            assert!(noticed.is_none(), "the child wrote after reporting lost");
            let err = result.expect_err("stale write accepted");
            assert_eq!(err.kind(), ErrorKind::StaleToken);
            rejected += 1;
        }
        if line == "STATE lost" && noticed.is_none() {
            noticed = Some(resumed.elapsed());
        }
    }
    let noticed = noticed.ok_or("the paused holder never reported lost")?;
    assert!(
        noticed < Duration::from_millis(500),
        "paused holder noticed its loss after {noticed:?}"
    );
    eprintln!(
        "{accepted} writes accepted while held; paused holder reported lost {noticed:?} after SIGCONT; {rejected} stale writes rejected"
    );
    next.release().await?;
    drop(child);
    Ok(())
}
