//! The counting semaphore: never more than `limit` permits, FIFO, distinct slots with
//! increasing per-slot tokens, permits back after lease loss, a limit disagreement
//! refused, cancellation leaves nothing.

use super::{
    check_wakeups, next_grant, queue_in_order, wait_for_waiters, waiters_finished, within, Ctx,
    HERD,
};
use crate::TestResult;
use fencelock::{ErrorKind, Fence, LockClient, Permit, Semaphore};
use rand::{Rng, SeedableRng};
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

const SETTLE: Duration = Duration::from_millis(300);

async fn sem(client: &LockClient, name: &str, limit: u32) -> fencelock::Result<Semaphore> {
    client.semaphore(name, limit).await
}

/// Who holds a permit right now, as the holders themselves report it.
#[derive(Default)]
struct Tally {
    slots: BTreeSet<u32>,
    max: usize,
    violations: Vec<String>,
    /// The highest token seen per slot.
    last: HashMap<u32, u64>,
}

impl Tally {
    fn enter(&mut self, p: &Permit, limit: u32) {
        let slot = p.slot();
        if slot >= limit {
            self.violations
                .push(format!("slot {slot} outside 0..{limit}"));
        }
        if !self.slots.insert(slot) {
            self.violations.push(format!("slot {slot} held twice"));
        }
        let last = self.last.entry(slot).or_default();
        if p.token().get() <= *last {
            self.violations
                .push(format!("slot {slot}: token {} after {last}", p.token()));
        }
        *last = p.token().get();
        self.max = self.max.max(self.slots.len());
        if self.slots.len() > limit as usize {
            self.violations
                .push(format!("{} permits of {limit}", self.slots.len()));
        }
    }

    fn leave(&mut self, p: &Permit) {
        self.slots.remove(&p.slot());
    }
}

/// 32 tasks on 4 clients cycle through a semaphore of 3 permits: never more than 3
/// holders, never two on one slot, per-slot tokens increasing, all 3 used.
pub(super) async fn limit_is_never_exceeded_under_a_32_task_stress(ctx: Ctx) -> TestResult {
    const LIMIT: u32 = 3;
    let mut sems = Vec::new();
    for _ in 0..4 {
        sems.push(sem(&ctx.client().await?, "stress", LIMIT).await?);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let rounds = ctx.harness().stress_size().1.min(2);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (sem, tally) = (sems[i % sems.len()].clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let p = sem.acquire().await?;
                tally.lock().expect("not poisoned").enter(&p, LIMIT);
                tokio::time::sleep(Duration::from_millis(60)).await;
                tally.lock().expect("not poisoned").leave(&p);
                p.release().await?;
            }
            Ok::<_, fencelock::Error>(())
        }));
    }
    for t in tasks {
        within(Duration::from_secs(120), "stress task", t).await???;
    }
    let tally = tally.lock().expect("not poisoned");
    assert!(tally.violations.is_empty(), "{:?}", tally.violations);
    assert_eq!(tally.max, LIMIT as usize, "the limit was never reached");
    Ok(())
}

/// Waiters get permits in arrival order, and one release grants one waiter.
pub(super) async fn waiters_get_permits_in_arrival_order_one_per_release(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let s = sem(&probe, "fifo", 2).await?;
    let (a, b) = (s.acquire().await?, s.acquire().await?);
    let mut waiting = Vec::new();
    for i in 0..3 {
        let s = sem(&ctx.client().await?, "fifo", 2).await?;
        waiting.push(tokio::spawn(async move { s.acquire().await }));
        wait_for_waiters(&probe, "fifo", i + 1).await?;
    }
    a.release().await?;
    let first = within(Duration::from_secs(10), "first waiter", waiting.remove(0)).await???;
    tokio::time::sleep(SETTLE).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "one release granted more than one waiter"
    );
    b.release().await?;
    let second = within(Duration::from_secs(10), "second waiter", waiting.remove(0)).await???;
    assert!(second.token() > first.token(), "FIFO");
    tokio::time::sleep(SETTLE).await;
    assert!(!waiting[0].is_finished(), "a third permit of two");
    first.release().await?;
    let third = within(Duration::from_secs(10), "third waiter", waiting.remove(0)).await???;
    second.release().await?;
    third.release().await?;
    Ok(())
}

/// A permit freed out of queue order goes to the next waiter at once: the first
/// holder keeps its permit throughout, the others release in reverse order, and each
/// release grants exactly the next waiter (no permit sits unused while one waits).
pub(super) async fn permits_freed_out_of_order_go_to_the_next_waiter(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let s = sem(&probe, "out-of-order", 3).await?;
    let (a, b, c) = (s.acquire().await?, s.acquire().await?, s.acquire().await?);
    let mut waiting = Vec::new();
    for i in 0..3 {
        let s = sem(&ctx.client().await?, "out-of-order", 3).await?;
        waiting.push(tokio::spawn(async move { s.acquire().await }));
        wait_for_waiters(&probe, "out-of-order", i + 1).await?;
    }
    let grant = |what: &'static str, w| within(Duration::from_secs(10), what, w);
    c.release().await?; // the newest permit first
    let first = grant("first waiter after c", waiting.remove(0)).await???;
    tokio::time::sleep(SETTLE).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "one release granted more than one waiter"
    );
    b.release().await?; // then the middle one: `a` still holds, ahead of both
    let second = grant("second waiter after b", waiting.remove(0)).await???;
    tokio::time::sleep(SETTLE).await;
    assert!(!waiting[0].is_finished(), "a fourth permit of three");
    first.release().await?; // a permit granted after waiting, freed before `a`
    let third = grant("third waiter after the first", waiting.remove(0)).await???;
    for p in [a, second, third] {
        p.release().await?;
    }
    Ok(())
}

/// Clients that disagree on the limit: the later one gets a typed error, and the
/// holders never exceed the first limit.
pub(super) async fn a_limit_disagreement_is_rejected(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let two = sem(&a, "dis", 2).await?;
    let p = two.acquire().await?;
    let five = sem(&b, "dis", 5).await?;
    let err = five.try_acquire().await.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    let err = five
        .acquire_timeout(Duration::from_secs(2))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    // The refused entry is gone (a background cleanup may take a moment).
    wait_for_waiters(&a, "dis", 0).await?;
    let info = a.inspect("dis").await?.ok_or("not held")?;
    assert_eq!(info.holders.len(), 1, "{info:?}");
    let err = sem(&a, "dis", 0).await.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    p.release().await?;
    // Once nobody holds it, another size is fine.
    five.try_acquire().await?.ok_or("free")?.release().await?;
    Ok(())
}

/// Permits held on a lease that dies come back within the lease's TTL; a waiter gets
/// one, and the slot's fence rejects the dead holder's token.
pub(super) async fn permits_return_after_their_lease_is_lost(ctx: Ctx) -> TestResult {
    let probe = ctx.client().await?;
    let lease = probe.lease_with_ttl(ctx.harness().short_ttl()).await?;
    let dead = lease.semaphore("crash", 2)?;
    let (a, b) = (dead.acquire().await?, dead.acquire().await?);
    let fence = Fence::new();
    fence.check(&a.fence_key(), a.token())?;
    let s = sem(&ctx.client().await?, "crash", 2).await?;
    let waiter = tokio::spawn(async move { s.acquire().await });
    wait_for_waiters(&probe, "crash", 1).await?;
    ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    let bound = lease.ttl() + Duration::from_secs(3);
    let next = within(bound, "a permit after the holder's lease died", waiter).await???;
    within(bound, "dead permit turns lost", a.watch().lost()).await?;
    within(bound, "dead permit turns lost", b.watch().lost()).await?;
    if next.slot() == a.slot() {
        fence.check(&next.fence_key(), next.token())?;
        let err = fence.check(&a.fence_key(), a.token()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken, "{err}");
    }
    assert!(next.token() > a.token().max(b.token()));
    next.release().await?;
    Ok(())
}

/// A mutex on a semaphore's name is a barrier: it waits for the permits and later
/// permits wait for it.
pub(super) async fn a_mutex_on_the_name_is_a_barrier(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let s = sem(&a, "bar", 3).await?;
    let p = s.acquire().await?;
    let mutex = b.lock("bar").await?;
    assert!(
        mutex.try_acquire().await?.is_none(),
        "mutex beside a permit"
    );
    let m = {
        let mutex = mutex.clone();
        tokio::spawn(async move { mutex.acquire().await })
    };
    wait_for_waiters(&a, "bar", 1).await?;
    assert!(
        s.try_acquire().await?.is_none(),
        "a permit passed the mutex"
    );
    p.release().await?;
    let m = within(Duration::from_secs(10), "mutex", m).await???;
    assert!(
        s.try_acquire().await?.is_none(),
        "a permit beside the mutex"
    );
    m.release().await?;
    s.try_acquire().await?.ok_or("free")?.release().await?;
    Ok(())
}

/// Acquires cancelled at random points, then: all permits free, no waiter left.
pub(super) async fn random_cancellation_leaves_every_permit_free(ctx: Ctx) -> TestResult {
    const LIMIT: u32 = 2;
    let n = ctx.harness().cancellations();
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sems = Vec::new();
    for _ in 0..3 {
        sems.push(sem(&ctx.client().await?, "storm", LIMIT).await?);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (sem, tally) = (sems[i % sems.len()].clone(), tally.clone());
        let cancel_after = Duration::from_micros(rng.gen_range(0..20_000));
        let hold = Duration::from_micros(rng.gen_range(0..2_000));
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(p)) = tokio::time::timeout(cancel_after, sem.acquire()).await {
                tally.lock().expect("not poisoned").enter(&p, LIMIT);
                tokio::time::sleep(hold).await;
                tally.lock().expect("not poisoned").leave(&p);
                drop(p);
            }
        }));
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await?;
    }
    let violations = tally.lock().expect("not poisoned").violations.clone();
    assert!(violations.is_empty(), "seed {seed}: {violations:?}");
    let client = ctx.client().await?;
    let probe = sem(&client, "storm", LIMIT).await?;
    let limit = Duration::from_secs(10);
    let what = format!("both permits free after {n} cancellations (seed {seed})");
    let p1 = within(limit, &what, probe.acquire()).await??;
    let p2 = within(limit, &what, probe.acquire()).await??;
    let info = client.inspect("storm").await?.ok_or("not held")?;
    assert_eq!(
        (info.holders.len(), info.waiters),
        (2, 0),
        "seed {seed}: {info:?}"
    );
    p1.release().await?;
    p2.release().await?;
    Ok(())
}

/// A semaphore of 2 permits with [`HERD`] waiters queued; the newest permit is
/// released each time while the oldest keeps its own (every hand-off out of queue
/// order). Each release wakes only the first waiter, and the new holder's grant
/// signal (the semaphore hand-off rule of `lock_core::backend::decide`, etcd and
/// ZooKeeper) wakes only the waiter behind it: at most 2 wake-ups per hand-off (and a
/// little slack), where waking every queued waiter costs `HERD + (HERD - 1) + … + 1`.
pub(super) async fn a_permit_release_wakes_the_next_waiter_not_a_herd(ctx: Ctx) -> TestResult {
    const LIMIT: u32 = 2;
    let probe = ctx.client().await?;
    let s = sem(&probe, "herd", LIMIT).await?;
    let mut held = vec![s.acquire().await?, s.acquire().await?];
    let (mut granted, waiters) = queue_in_order(&ctx, &probe, "herd", HERD, |_, c| async move {
        sem(&c, "herd", LIMIT).await?.acquire().await
    })
    .await?;
    let before = ctx.waiter_wakeups()?;
    let mut per_handoff = Vec::new();
    for expect in 0..HERD {
        let at = ctx.waiter_wakeups()?;
        held.pop().ok_or("no permit held")?.release().await?;
        // Also leaves time for the new holder's grant signal to wake the one behind.
        let (permit, woken) = next_grant(&ctx, &mut granted, expect, at).await?;
        held.push(permit);
        per_handoff.push(woken);
    }
    tokio::time::sleep(SETTLE).await;
    let woken = ctx.waiter_wakeups()? - before;
    let handoffs = HERD as u64;
    check_wakeups(
        &ctx,
        &format!("{handoffs} permit hand-offs (per hand-off {per_handoff:?})"),
        woken,
        2 * handoffs + 1,
        (1..=handoffs).sum(),
    )?;
    for p in held {
        p.release().await?;
    }
    waiters_finished(waiters).await
}
