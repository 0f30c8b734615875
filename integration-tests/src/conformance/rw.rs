//! The read-write lock: readers share, writers exclude, one FIFO queue with no writer
//! starvation, a release wakes only what it grants, the mutex is a writer, fencing is
//! mode-aware, cancellation leaves nothing.

use super::{check_wakeups, queue_in_order, wait_for_waiters, waiters_finished, within, Ctx};
use crate::TestResult;
use fencelock::{backend::Claim, ErrorKind, Fence, LockClient, LockGuard, RwLock};
use rand::{Rng, SeedableRng};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::task::JoinHandle;

/// Long enough for a wrongly granted waiter to show up as finished.
const SETTLE: Duration = Duration::from_millis(300);

async fn rw(client: &LockClient, name: &str) -> fencelock::Result<RwLock> {
    client.rw_lock(name).await
}

/// Queues a read (or write) on a fresh client and waits until it is queued as the
/// `queued`th waiter.
async fn queue(
    ctx: &Ctx,
    probe: &LockClient,
    name: &'static str,
    write: bool,
    queued: usize,
) -> Result<JoinHandle<fencelock::Result<LockGuard>>, crate::TestError> {
    let lock = rw(&ctx.client().await?, name).await?;
    let task = tokio::spawn(async move {
        if write {
            lock.write().await
        } else {
            lock.read().await
        }
    });
    wait_for_waiters(probe, name, queued).await?;
    Ok(task)
}

pub(super) async fn readers_share_and_writers_exclude_everyone(ctx: Ctx) -> TestResult {
    let (a, b, c) = (
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    );
    let (ra, rb, rc) = (rw(&a, "d").await?, rw(&b, "d").await?, rw(&c, "d").await?);
    let readers = [
        ra.read().await?,
        rb.try_read().await?.ok_or("second reader refused")?,
        rc.read_timeout(Duration::from_secs(5)).await?,
    ];
    let info = a.inspect("d").await?.ok_or("not held")?;
    assert_eq!(
        info.holders.len(),
        3,
        "three readers hold at once: {info:?}"
    );
    assert!(info.holders.iter().all(|h| h.claim == Claim::Read));
    assert!(readers.iter().all(|g| g.claim() == Claim::Read));
    assert!(rc.try_write().await?.is_none(), "a writer among readers");
    let err = rc
        .write_timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    for g in readers {
        g.release().await?;
    }
    let w = rb.write().await?;
    assert_eq!(w.claim(), Claim::Write);
    assert!(ra.try_read().await?.is_none(), "a reader beside the writer");
    assert!(rc.try_write().await?.is_none(), "two writers");
    let info = a.inspect("d").await?.ok_or("not held")?;
    assert_eq!(info.holders.len(), 1, "{info:?}");
    w.release().await?;
    Ok(())
}

/// W1 holds; R1, R2, W2, R3 queue. W1's release grants exactly R1 and R2 (a writer's
/// release wakes the run of readers behind it and nobody else); W2 waits for both
/// (kazoo#649 order, no cycle); R3 waits for W2 although only readers hold when it
/// arrives (no writer starvation).
pub(super) async fn mixed_queue_is_fifo_without_writer_starvation(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let w1 = rw(&probe, "q").await?.write().await?;
    let r1 = queue(&ctx, &probe, "q", false, 1).await?;
    let r2 = queue(&ctx, &probe, "q", false, 2).await?;
    let w2 = queue(&ctx, &probe, "q", true, 3).await?;
    let r3 = queue(&ctx, &probe, "q", false, 4).await?;
    tokio::time::sleep(SETTLE).await;
    assert!(
        !r1.is_finished() && !r3.is_finished(),
        "granted past a writer"
    );
    let w1_token = w1.token();
    w1.release().await?;
    let limit = Duration::from_secs(10);
    let r1 = within(limit, "first reader after the writer", r1).await???;
    let r2 = within(limit, "second reader after the writer", r2).await???;
    tokio::time::sleep(SETTLE).await;
    assert!(!w2.is_finished(), "the second writer beside readers");
    assert!(!r3.is_finished(), "a late reader passed a queued writer");
    let info = probe.inspect("q").await?.ok_or("not held")?;
    assert_eq!((info.holders.len(), info.waiters), (2, 2), "{info:?}");
    assert!(r1.token() > w1_token && r2.token() > w1_token);
    r1.release().await?;
    tokio::time::sleep(SETTLE).await;
    assert!(!w2.is_finished(), "the writer beside a reader");
    let r2_token = r2.token();
    r2.release().await?;
    let w2 = within(limit, "second writer", w2).await???;
    assert!(w2.token() > r2_token, "writer token above the readers'");
    tokio::time::sleep(SETTLE).await;
    assert!(!r3.is_finished(), "a reader beside the writer");
    w2.release().await?;
    within(limit, "last reader", r3).await???.release().await?;
    Ok(())
}

/// A reader that arrives while readers hold and a writer waits does not pass the
/// writer, however many readers keep coming.
pub(super) async fn a_stream_of_readers_cannot_starve_a_writer(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let first = rw(&probe, "s").await?.read().await?;
    let writer = queue(&ctx, &probe, "s", true, 1).await?;
    let late = rw(&ctx.client().await?, "s").await?;
    for _ in 0..3 {
        assert!(
            late.try_read().await?.is_none(),
            "try_read passed the writer"
        );
        let err = late
            .read_timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    }
    first.release().await?;
    let w = within(Duration::from_secs(10), "writer", writer).await???;
    w.release().await?;
    late.try_read().await?.ok_or("free")?.release().await?;
    Ok(())
}

/// A plain mutex is an exclusive holder: it and a write lock exclude each other, and a
/// mutex waits for readers.
pub(super) async fn a_mutex_and_the_write_lock_exclude_each_other(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let mutex = a.lock("m").await?;
    let lock = rw(&b, "m").await?;
    let held = mutex.acquire().await?;
    assert!(
        lock.try_write().await?.is_none(),
        "write lock beside a mutex"
    );
    assert!(lock.try_read().await?.is_none(), "read lock beside a mutex");
    held.release().await?;
    let w = lock.write().await?;
    assert!(
        mutex.try_acquire().await?.is_none(),
        "mutex beside a writer"
    );
    w.release().await?;
    let r = lock.read().await?;
    assert!(
        mutex.try_acquire().await?.is_none(),
        "mutex beside a reader"
    );
    let waiting = {
        let mutex = mutex.clone();
        tokio::spawn(async move { mutex.acquire().await })
    };
    wait_for_waiters(&a, "m", 1).await?;
    assert!(
        lock.try_read().await?.is_none(),
        "a reader passed the mutex"
    );
    r.release().await?;
    within(Duration::from_secs(10), "mutex after the reader", waiting)
        .await???
        .release()
        .await?;
    Ok(())
}

/// Grants pass [`Fence::check_read`] / [`Fence::check_write`] in grant order, and a
/// writer's stale token is refused after a newer reader's.
pub(super) async fn tokens_pass_the_mode_aware_fence(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let (la, lb) = (rw(&a, "f").await?, rw(&b, "f").await?);
    let fence = Fence::new();
    let w = la.write().await?;
    fence.check_write("f", w.token())?;
    let stale = w.token();
    w.release().await?;
    let (r1, r2) = (la.read().await?, lb.read().await?);
    fence.check_read("f", r2.token())?;
    fence.check_read("f", r1.token())?;
    r1.release().await?;
    r2.release().await?;
    let err = fence.check_write("f", stale).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaleToken, "{err}");
    let w2 = lb.write().await?;
    fence.check_write("f", w2.token())?;
    let just_below = fencelock::FencingToken::new(w2.token().get() - 1);
    let err = fence.check_read("f", just_below).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaleToken, "{err}");
    w2.release().await?;
    Ok(())
}

/// A reader whose lease dies frees the writer queued behind it.
pub(super) async fn a_dead_readers_lease_frees_the_writer(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let lease = probe.lease_with_ttl(ctx.harness().short_ttl()).await?;
    let reader = lease.rw_lock("l")?.read().await?;
    let writer = queue(&ctx, &probe, "l", true, 1).await?;
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    let bound = lease.ttl() + Duration::from_secs(3);
    let w = within(bound, "writer after the reader's lease died", writer).await???;
    within(bound, "reader turns lost", reader.watch().lost()).await?;
    w.release().await?;
    Ok(())
}

/// Readers and writers acquire with timeouts that cancel at random points, while
/// every holder checks the policy in a shared tally; afterwards nothing is left and
/// the lock is free.
pub(super) async fn random_cancellation_keeps_the_policy_and_leaves_nothing(
    ctx: Ctx,
) -> TestResult {
    let n = ctx.harness().cancellations();
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut locks = Vec::new();
    for _ in 0..3 {
        locks.push(rw(&ctx.client().await?, "storm").await?);
    }
    let (readers, writers) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let lock = locks[i % locks.len()].clone();
        let write = rng.gen_bool(0.3);
        let cancel_after = Duration::from_micros(rng.gen_range(0..20_000));
        let hold = Duration::from_micros(rng.gen_range(0..2_000));
        let (readers, writers, violations) = (readers.clone(), writers.clone(), violations.clone());
        tasks.push(tokio::spawn(async move {
            let acquire = async {
                if write {
                    lock.write().await
                } else {
                    lock.read().await
                }
            };
            let Ok(Ok(guard)) = tokio::time::timeout(cancel_after, acquire).await else {
                return;
            };
            let (mine, other) = if write {
                (&writers, &readers)
            } else {
                (&readers, &writers)
            };
            let now = mine.fetch_add(1, Ordering::SeqCst) + 1;
            if other.load(Ordering::SeqCst) > 0 || (write && now > 1) {
                violations
                    .lock()
                    .expect("not poisoned")
                    .push((write, guard.token()));
            }
            tokio::time::sleep(hold).await;
            mine.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        }));
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await?;
    }
    let violations = violations.lock().expect("not poisoned").clone();
    assert!(
        violations.is_empty(),
        "policy broken (seed {seed}): {violations:?}"
    );
    let probe = ctx.client().await?;
    let guard = within(
        Duration::from_secs(10),
        &format!("write lock free after {n} cancellations (seed {seed})"),
        rw(&probe, "storm").await?.write(),
    )
    .await??;
    let info = probe.inspect("storm").await?.ok_or("not held")?;
    assert_eq!(info.waiters, 0, "waiters left behind (seed {seed})");
    assert_eq!(info.holders.len(), 1, "{info:?}");
    guard.release().await?;
    Ok(())
}

/// W1 holds; R0..R3, W2, R5..R8 queue (9 waiters). W1's release grants the run of 4
/// readers and wakes only them: at most 4 wake-ups (and a little slack), where waking
/// every waiter costs 9 and waking every reader (a reader watching the *first* writer
/// ahead, kazoo#649) costs 8. Then, the readers released in queue order, W2 wakes
/// once (when the last reader ahead of it goes: it waits for the entry just ahead),
/// and W2's release wakes the second run of 4.
pub(super) async fn a_writers_release_wakes_only_the_readers_it_grants(ctx: Ctx) -> TestResult {
    const WRITER: usize = 4;
    const QUEUED: usize = 9;
    let probe = ctx.client().await?;
    let w1 = rw(&probe, "herd").await?.write().await?;
    let (mut granted, waiters) = queue_in_order(&ctx, &probe, "herd", QUEUED, |i, c| async move {
        let lock = c.rw_lock("herd").await?;
        match i == WRITER {
            true => lock.write().await,
            false => lock.read().await,
        }
    })
    .await?;
    let limit = Duration::from_secs(10);
    let mut readers = Vec::new();
    let before = ctx.waiter_wakeups()?;
    w1.release().await?;
    for _ in 0..WRITER {
        let (i, guard) = within(limit, "a reader after the writer", granted.recv())
            .await?
            .ok_or("a waiter failed")?;
        assert!(
            i < WRITER,
            "waiter {i} granted by the first writer's release"
        );
        readers.push((i, guard));
    }
    // Released in queue order below: the second writer waits for the reader just
    // ahead of it, so it wakes once, when the last of them goes.
    readers.sort_by_key(|(i, _)| *i);
    tokio::time::sleep(SETTLE).await;
    assert!(
        granted.try_recv().is_err(),
        "granted past the second writer"
    );
    let woken = ctx.waiter_wakeups()? - before;
    let (run, queued) = (WRITER as u64, QUEUED as u64);
    // Waking every reader of the queue (those behind the second writer too) costs 8,
    // every waiter 9: the bound catches both.
    assert!(run + 2 < queued - 1, "the bound must catch a reader herd");
    check_wakeups(
        &ctx,
        "a writer's release granting 4 readers of 9 waiters",
        woken,
        run + 2,
        queued,
    )?;
    let before = ctx.waiter_wakeups()?;
    for (_, r) in readers {
        r.release().await?;
    }
    let (i, w2) = within(limit, "the second writer", granted.recv())
        .await?
        .ok_or("a waiter failed")?;
    assert_eq!(i, WRITER, "the second writer after the readers");
    tokio::time::sleep(SETTLE).await;
    w2.release().await?;
    let mut rest = Vec::new();
    for _ in WRITER + 1..QUEUED {
        let (i, guard) = within(limit, "a reader after the second writer", granted.recv())
            .await?
            .ok_or("a waiter failed")?;
        assert!(i > WRITER, "{i} granted twice");
        rest.push(guard);
    }
    tokio::time::sleep(SETTLE).await;
    let woken = ctx.waiter_wakeups()? - before;
    // The second writer once, the second run of readers once each. Waking every
    // waiter at each release instead: 5 waiters at each of the 4 reader releases,
    // then 4 at the writer's.
    check_wakeups(
        &ctx,
        "4 reader releases and a writer's release granting 4 readers",
        woken,
        1 + run + 2,
        4 * (queued - run) + run,
    )?;
    for r in rest {
        r.release().await?;
    }
    waiters_finished(waiters).await
}
