//! Leader election: one leader at a time, increasing terms, observers that see every
//! change in order, fenced proclaims, FIFO handover, clean cancellation, and a lost
//! leader's work cancelled before the next term starts.

use super::{wait_for_waiters, within, Ctx};
use crate::{TestError, TestResult};
use fencelock::{ErrorKind, FencingToken, Leader, LeaderWatch, LockState};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// How long a forced loss may take to reach the leader: its TTL plus slack.
fn loss_bound(ttl: Duration) -> Duration {
    ttl + Duration::from_secs(2)
}

/// The next observed item, within 10 s.
async fn next(watch: &mut LeaderWatch) -> Result<Option<Leader>, TestError> {
    let item = within(
        Duration::from_secs(10),
        "the next leader change",
        watch.next(),
    )
    .await?;
    Ok(item.ok_or("the observe stream ended")??)
}

/// What an observer item says, for comparing sequences: `(term, value)`.
type Brief = Option<(FencingToken, String)>;

/// An observe stream and what it showed so far.
type Observer = (LeaderWatch, Vec<Brief>);

fn brief(item: &Option<Leader>) -> Brief {
    item.as_ref().map(|l| (l.term, l.value.clone()))
}

pub(super) async fn one_leader_at_a_time_and_terms_increase(ctx: Ctx) -> TestResult {
    let (tasks, rounds) = (3, 6);
    let leading = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let election = ctx.client().await?.election("leader")?;
        let (leading, terms) = (leading.clone(), terms.clone());
        handles.push(tokio::spawn(async move {
            for r in 0..rounds {
                let lead = election.campaign(format!("task-{t}-{r}")).await?;
                let before = leading.fetch_add(1, Ordering::SeqCst);
                terms.lock().expect("not poisoned").push(lead.term());
                tokio::time::sleep(Duration::from_millis(3)).await;
                leading.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(before, 0, "two leaders at once");
                lead.resign().await?;
            }
            Ok::<_, fencelock::Error>(())
        }));
    }
    for h in handles {
        within(Duration::from_secs(60), "campaign rounds", h).await???;
    }
    let terms = terms.lock().expect("not poisoned").clone();
    assert_eq!(terms.len(), tasks * rounds);
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "terms not strictly increasing in leadership order: {terms:?}"
    );
    Ok(())
}

pub(super) async fn observers_see_every_change_in_order(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let election = a.election("obs")?;
    let mut observers = Vec::new();
    for _ in 0..3 {
        let follower = ctx.client().await?;
        let watch = match follower.election("obs")?.observe().await {
            Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(()),
            other => other?,
        };
        observers.push((watch, Vec::new()));
    }
    // Every step waits until each observer has seen it, so none may be merged away.
    async fn step(observers: &mut [Observer], expect: Brief) -> TestResult {
        for (watch, seen) in observers.iter_mut() {
            let item = brief(&next(watch).await?);
            seen.push(item.clone());
            assert_eq!(item, expect, "observer saw {seen:?}");
        }
        Ok(())
    }
    step(&mut observers, None).await?;
    assert_eq!(election.leader().await?, None);

    let lead = election.campaign("a").await?;
    let t1 = lead.term();
    step(&mut observers, Some((t1, "a".into()))).await?;
    for value in ["b", "c"] {
        lead.proclaim(value).await?;
        assert_eq!(lead.value(), value);
        step(&mut observers, Some((t1, value.into()))).await?;
    }
    let now = election.leader().await?.ok_or("nobody leads")?;
    assert_eq!((now.term, now.value.as_str()), (t1, "c"));
    lead.resign().await?;
    step(&mut observers, None).await?;

    let second = b.election("obs")?.campaign("d").await?;
    assert!(second.term() > t1, "term did not increase");
    step(&mut observers, Some((second.term(), "d".into()))).await?;
    second.resign().await?;
    step(&mut observers, None).await?;
    Ok(())
}

pub(super) async fn proclaim_after_loss_fails(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let election = a.election("p")?.with_ttl(ctx.harness().short_ttl());
    let lead = election.campaign("first").await?;
    lead.proclaim("second").await?;
    let term = lead.term();
    let ttl = lead.lease().ttl();
    ctx.harness().kill_lease(ctx.ns(), lead.lease()).await?;
    within(
        loss_bound(ttl),
        "leader learns it lost",
        lead.watch().lost(),
    )
    .await?;
    let err = lead
        .proclaim("late")
        .await
        .expect_err("a lost leader proclaimed");
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    // Nothing was written: nobody leads, or a newer term does.
    let next = b.election("p")?.campaign("next").await?;
    assert!(next.term() > term);
    let now = b.election("p")?.leader().await?.ok_or("nobody leads")?;
    assert_eq!((now.term, now.value.as_str()), (next.term(), "next"));
    next.resign().await?;
    drop(lead);
    Ok(())
}

pub(super) async fn resign_hands_over_in_fifo_order(ctx: Ctx) -> TestResult {
    let watcher = ctx.client().await?;
    let first = ctx.client().await?.election("fifo")?.campaign("c0").await?;
    let mut pending = Vec::new();
    for i in 1..=3 {
        let election = ctx.client().await?.election("fifo")?;
        pending.push(tokio::spawn(async move {
            election.campaign(format!("c{i}")).await
        }));
        wait_for_waiters(&watcher, "fifo", i).await?;
    }
    let mut order = vec![first.value()];
    let mut last = first.term();
    first.resign().await?;
    for task in pending {
        let lead = within(Duration::from_secs(10), "handover", task).await???;
        assert!(lead.term() > last);
        last = lead.term();
        order.push(lead.value());
        lead.resign().await?;
    }
    assert_eq!(order, ["c0", "c1", "c2", "c3"]);
    Ok(())
}

pub(super) async fn cancelled_campaigns_leave_nothing_behind(ctx: Ctx) -> TestResult {
    // Each campaign grants its own lease (a ZooKeeper session): fewer than the lock
    // stress.
    let n = ctx.harness().cancellations().min(40);
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let clients = [ctx.client().await?, ctx.client().await?];
    let mut tasks = Vec::new();
    for i in 0..n {
        let election = clients[i % clients.len()].election("storm")?;
        let cancel_after = Duration::from_micros(rng.gen_range(0..30_000));
        let hold = Duration::from_micros(rng.gen_range(0..2_000));
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(lead)) =
                tokio::time::timeout(cancel_after, election.campaign(format!("c{i}"))).await
            {
                tokio::time::sleep(hold).await;
                drop(lead);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let probe = ctx.client().await?;
    let lead = within(
        Duration::from_secs(20),
        &format!("election free after {n} cancelled campaigns (seed {seed})"),
        probe.election("storm")?.campaign("probe"),
    )
    .await??;
    let info = probe.inspect("storm").await?.ok_or("nobody leads")?;
    assert_eq!(info.token, lead.term());
    assert_eq!(info.waiters, 0, "campaigns left behind (seed {seed})");
    lead.resign().await?;
    Ok(())
}

pub(super) async fn lost_leaders_work_is_cancelled_before_the_next_term(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let lead = a
        .election("run")?
        .with_ttl(ctx.harness().short_ttl())
        .campaign("old")
        .await?;
    let (term, ttl) = (lead.term(), lead.lease().ttl());
    let lease = lead.lease().clone();
    let finished = Arc::new(AtomicBool::new(false));
    let cancelled_at = Arc::new(Mutex::new(None));
    let work = {
        let (finished, cancelled_at) = (finished.clone(), cancelled_at.clone());
        tokio::spawn(async move {
            let result = lead
                .run(|_term| async move {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    finished.store(true, Ordering::SeqCst);
                })
                .await;
            *cancelled_at.lock().expect("not poisoned") = Some(Instant::now());
            result
        })
    };
    let next = {
        let election = b.election("run")?;
        tokio::spawn(async move {
            let lead = election.campaign("new").await?;
            Ok::<_, fencelock::Error>((lead, Instant::now()))
        })
    };
    wait_for_waiters(&a, "run", 1).await?;
    // A stalled keep-alive is a paused leader: its work must stop before its lease
    // can expire. Without an in-process stall, an outside kill is a forced
    // revocation, and only the cancellation itself is checked.
    let stalled = ctx.harness().stall_lease(ctx.ns(), &lease).await?;
    if !stalled {
        ctx.harness().kill_lease(ctx.ns(), &lease).await?;
    }
    let result = within(loss_bound(ttl) * 2, "the lost leader's work ends", work).await??;
    assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::LeaseLost));
    assert!(!finished.load(Ordering::SeqCst), "work ran to completion");
    let (second, started) = within(loss_bound(ttl) * 2, "the next term", next).await???;
    assert!(second.term() > term);
    let cancelled = cancelled_at
        .lock()
        .expect("not poisoned")
        .ok_or("no cancellation time")?;
    if stalled {
        assert!(
            cancelled <= started,
            "the next term started {:?} before the old leader's work was cancelled",
            cancelled - started
        );
    }
    second.resign().await?;
    Ok(())
}

pub(super) async fn a_new_campaign_after_loss_is_a_new_term_on_a_fresh_lease(
    ctx: Ctx,
) -> TestResult {
    let a = ctx.client().await?;
    let election = a.election("again")?.with_ttl(ctx.harness().short_ttl());
    let lost = election.campaign("v").await?;
    let ttl = lost.lease().ttl();
    ctx.harness().kill_lease(ctx.ns(), lost.lease()).await?;
    within(
        loss_bound(ttl),
        "leader learns it lost",
        lost.watch().lost(),
    )
    .await?;
    assert_eq!(lost.state(), LockState::Lost);
    let again = within(
        Duration::from_secs(10),
        "campaign after loss",
        election.campaign("v"),
    )
    .await??;
    assert_ne!(
        again.lease().id(),
        lost.lease().id(),
        "reused the lost lease"
    );
    assert!(again.term() > lost.term(), "continued the old term");
    assert_eq!(again.state(), LockState::Held);
    again.resign().await?;
    drop(lost);
    Ok(())
}

pub(super) async fn bad_values_are_typed_errors(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let election = a.election("bad")?;
    let long = "x".repeat(fencelock::MAX_HOLDER_LEN + 1);
    let err = election.campaign(long.clone()).await.expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let lead = election.campaign("ok").await?;
    let err = lead.proclaim(long).await.expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(lead.value(), "ok");
    assert_eq!(
        a.election("").map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::InvalidName)
    );
    lead.resign().await?;
    Ok(())
}
